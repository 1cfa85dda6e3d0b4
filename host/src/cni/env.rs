//! The `CNI_*` environment of one invocation, validated as the spec requires
//! for each command.

use super::args::parse_cni_args;
use super::error::CniError;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Result<Self, CniError> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            other => return Err(CniError::env(format!("unknown CNI_COMMAND: {other:?}"))),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }
}

/// What the runtime told us in `CNI_*` variables.
#[derive(Debug, Clone)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: String,
    /// Empty is allowed on DEL (the sandbox may be gone).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    pub path: Vec<PathBuf>,
}

impl CniEnv {
    /// Read and validate the environment. `vars` is the process environment
    /// (a map, so tests need not touch the real one).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, CniError> {
        let get = |k: &str| vars.get(k).map(String::as_str).unwrap_or("");
        let command = match get("CNI_COMMAND") {
            "" => {
                return Err(CniError::env(
                    "required env variables [CNI_COMMAND] missing",
                ));
            }
            c => Command::parse(c)?,
        };
        let required: &[&str] = match command {
            Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
            Command::Gc | Command::Status | Command::Version => &[],
        };
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|k| get(k).is_empty())
            .collect();
        if !missing.is_empty() {
            return Err(CniError::env(format!(
                "required env variables [{}] missing",
                missing.join(" ")
            )));
        }
        let needs_container = required.contains(&"CNI_CONTAINERID");
        let container_id = get("CNI_CONTAINERID").to_string();
        let ifname = get("CNI_IFNAME").to_string();
        if needs_container {
            validate_container_id(&container_id)?;
            validate_ifname(&ifname)?;
        }
        let netns = match get("CNI_NETNS") {
            "" => None,
            p if needs_container && !p.starts_with('/') => {
                return Err(CniError::env(format!(
                    "CNI_NETNS must be an absolute path, got {p:?}"
                )));
            }
            p => Some(PathBuf::from(p)),
        };
        let args = if needs_container {
            parse_cni_args(get("CNI_ARGS"))?
        } else {
            Vec::new()
        };
        let path = get("CNI_PATH")
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        Ok(CniEnv {
            command,
            container_id,
            netns,
            ifname,
            args,
            path,
        })
    }
}

/// The spec's container id grammar: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(CniError::env("invalid characters in CNI_CONTAINERID").with_details(id.to_string()))
    }
}

/// Linux interface names: 1..=15 bytes, no `/`, `:` or whitespace, not `.`/`..`.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let bad = |why: &str| Err(CniError::env(format!("invalid CNI_IFNAME {name:?}: {why}")));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 15 {
        return bad("longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("not a valid name");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return bad("contains '/', ':' or whitespace");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::error::code;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn add_vars() -> Vec<(&'static str, &'static str)> {
        vec![
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc123"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
        ]
    }

    #[test]
    fn add_is_parsed() {
        let env = CniEnv::from_vars(&vars(&add_vars())).unwrap();
        assert_eq!(env.command, Command::Add);
        assert_eq!(env.container_id, "abc123");
        assert_eq!(
            env.netns.as_deref(),
            Some(std::path::Path::new("/var/run/netns/x"))
        );
        assert_eq!(
            env.path,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
    }

    #[test]
    fn missing_command_and_unknown_command_are_code_4() {
        let e = CniEnv::from_vars(&vars(&[])).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (4, "required env variables [CNI_COMMAND] missing")
        );
        let e = CniEnv::from_vars(&vars(&[("CNI_COMMAND", "FROB")])).unwrap_err();
        assert_eq!(e.code, code::INVALID_ENVIRONMENT);
        assert!(e.msg.contains("FROB"));
    }

    #[test]
    fn add_lists_every_missing_variable() {
        let e = CniEnv::from_vars(&vars(&[("CNI_COMMAND", "ADD")])).unwrap_err();
        assert_eq!(
            e.msg,
            "required env variables [CNI_CONTAINERID CNI_NETNS CNI_IFNAME] missing"
        );
    }

    #[test]
    fn del_does_not_need_netns_and_version_needs_nothing() {
        let env = CniEnv::from_vars(&vars(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ]))
        .unwrap();
        assert_eq!(env.netns, None);
        // podman probes VERSION with an empty container id and dummy values.
        let env = CniEnv::from_vars(&vars(&[
            ("CNI_COMMAND", "VERSION"),
            ("CNI_CONTAINERID", ""),
            ("CNI_NETNS", "dummy"),
            ("CNI_IFNAME", "dummy"),
        ]))
        .unwrap();
        assert_eq!(env.command, Command::Version);
    }

    #[test]
    fn bad_container_id_ifname_and_netns_are_code_4() {
        for (k, v) in [
            ("CNI_CONTAINERID", "-leading-dash"),
            ("CNI_CONTAINERID", "has space"),
            ("CNI_CONTAINERID", "a/b"),
            ("CNI_IFNAME", "eth0:1"),
            ("CNI_IFNAME", "sixteen-bytes-xx"),
            ("CNI_IFNAME", ".."),
            ("CNI_IFNAME", "a/b"),
            ("CNI_NETNS", "relative/path"),
        ] {
            let mut pairs = add_vars();
            pairs.retain(|(name, _)| *name != k);
            pairs.push((k, v));
            let e = CniEnv::from_vars(&vars(&pairs)).unwrap_err();
            assert_eq!(e.code, code::INVALID_ENVIRONMENT, "{k}={v}: {e}");
        }
    }

    #[test]
    fn fifteen_byte_ifname_is_fine() {
        assert!(validate_ifname("fifteen-bytes-x").is_ok());
    }
}
