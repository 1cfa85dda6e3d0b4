//! The network configuration on stdin, as far as the host acts on it. The
//! plugin's own keys stay in the JSON the guest reads (as the host read
//! it: see `NetConf::raw`).

use super::error::CniError;
use super::result::CniResult;
use super::version::CniVersion;
use serde_json::{Map, Value};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct NetConf {
    pub cni_version: CniVersion,
    /// The network name: scopes IPAM state and firewall rules.
    pub name: String,
    /// `type`: the plugin the runtime thinks it is calling.
    pub plugin_type: String,
    /// `plugin`: the wasm module to run when called as `wasm-cni` itself.
    pub plugin: Option<String>,
    pub ipam: Option<IpamRef>,
    pub prev_result: Option<CniResult>,
    /// GC's `cni.dev/valid-attachments` (or the older
    /// `cni.dev/attachments`); empty when absent: none is valid.
    pub valid_attachments: Vec<Attachment>,
    /// The runtime named the valid attachments (the key was there).
    pub valid_attachments_named: bool,
    /// `logLevel` and `logFile`, as Multus and Calico take them.
    pub log_level: Option<String>,
    pub log_file: Option<String>,
    /// The config as the host read it, written out again: handed to guests
    /// and IPAM delegates, so every one of them reads what was checked.
    pub raw: String,
}

/// One attachment a runtime still uses, as GC lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

/// The keys GC reads, newest first.
const VALID_ATTACHMENTS: [&str; 2] = ["cni.dev/valid-attachments", "cni.dev/attachments"];

/// The `ipam` section, as far as the host needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamRef {
    /// `ipam.type`; empty means no IPAM (L2 only).
    pub plugin_type: String,
    /// `ipam.dataDir`: the root of the IPAM state store.
    pub data_dir: Option<PathBuf>,
    /// `ipam.resolvConf`: a file the reference host-local reads.
    pub resolv_conf: Option<String>,
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        Self::parse_for(stdin, false)
    }

    /// Parse for a command; `tolerant` (DEL) reads a `prevResult` it
    /// cannot decode as none.
    pub fn parse_for(stdin: &[u8], tolerant: bool) -> Result<Self, CniError> {
        let text = std::str::from_utf8(stdin)
            .map_err(|_| CniError::decode("network config on stdin is not UTF-8"))?;
        let value: Value = serde_json::from_str(text).map_err(|e| {
            CniError::decode(format!("network config on stdin is not valid JSON: {e}"))
        })?;
        let Value::Object(obj) = value else {
            return Err(CniError::decode(
                "network config on stdin is not a JSON object",
            ));
        };
        one_spelling(
            &obj,
            &[
                "cniVersion",
                "name",
                "type",
                "plugin",
                "ipam",
                "prevResult",
                "logLevel",
                "logFile",
            ],
            "",
        )?;
        // No version (or an empty one) is 0.1.0, as libcni reads it.
        let version = string_field(&obj, "cniVersion")?.unwrap_or_default();
        let cni_version = CniVersion::require(&version)?;
        let name = string_field(&obj, "name")?
            .ok_or_else(|| CniError::config("network config is missing \"name\""))?;
        validate_network_name(&name)?;
        let plugin_type = string_field(&obj, "type")?.unwrap_or_default();
        let plugin = string_field(&obj, "plugin")?.filter(|p| !p.is_empty());
        let ipam = match obj.get("ipam") {
            None | Some(Value::Null) => None,
            Some(Value::Object(ipam)) => Some(IpamRef::parse(ipam)?),
            Some(_) => {
                return Err(CniError::config(
                    "network config field \"ipam\" must be an object",
                ));
            }
        };
        let prev_result = match obj.get("prevResult") {
            None | Some(Value::Null) => None,
            // A result is an object: serde would read an array as one
            // with its fields in order (`[]`: an empty result).
            Some(v) if !v.is_object() && !tolerant => {
                return Err(CniError::decode("prevResult: not a JSON object"));
            }
            Some(v) if !v.is_object() => None,
            Some(v) => match CniResult::from_json(v) {
                Ok(r) => Some(r),
                // DEL must remove what ADD made, whatever the cached
                // result looks like (one written by another plugin, or
                // damaged): the teardown needs no prevResult.
                Err(e) if tolerant => {
                    crate::log::warn(&format!("prevResult ignored: {}", e.msg));
                    None
                }
                Err(e) => {
                    return Err(CniError {
                        msg: format!("prevResult: {}", e.msg),
                        ..e
                    });
                }
            },
        };
        let valid_attachments = valid_attachments(&obj)?;
        let valid_attachments_named = VALID_ATTACHMENTS.iter().any(|k| obj.contains_key(*k));
        let log_level = string_field(&obj, "logLevel")?.filter(|l| !l.is_empty());
        let log_file = string_field(&obj, "logFile")?.filter(|l| !l.is_empty());
        // What guests and delegated plugins get is the document as read
        // here, written out again, not stdin: two parsers can read one text
        // two ways (a key given twice is the last one here; in Go, a second
        // `null` keeps the first value and a second object is merged into
        // the first), and then a plugin would act on what was never checked.
        let raw = Value::Object(obj).to_string();
        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            plugin,
            ipam,
            prev_result,
            valid_attachments,
            valid_attachments_named,
            log_level,
            log_file,
            raw,
        })
    }

    /// `ipam.type`, when the config names one.
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam
            .as_ref()
            .map(|i| i.plugin_type.as_str())
            .filter(|t| !t.is_empty())
    }
}

/// GC's list of valid attachments: `[{"containerID", "ifname"}]`.
fn valid_attachments(obj: &Map<String, Value>) -> Result<Vec<Attachment>, CniError> {
    let Some((key, list)) = VALID_ATTACHMENTS
        .iter()
        .find_map(|k| obj.get(*k).map(|v| (*k, v)))
    else {
        return Ok(Vec::new());
    };
    let bad = |why: &str| CniError::config(format!("network config field {key:?}: {why}"));
    let Value::Array(list) = list else {
        return Err(bad(
            "must be a list of {\"containerID\", \"ifname\"} objects",
        ));
    };
    list.iter()
        .map(|item| {
            let field = |name: &str| match item.get(name) {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err(bad(&format!(
                    "every entry needs a string {name:?}, got {item}"
                ))),
            };
            Ok(Attachment {
                container_id: field("containerID")?,
                ifname: field("ifname")?,
            })
        })
        .collect()
}

impl IpamRef {
    fn parse(ipam: &Map<String, Value>) -> Result<Self, CniError> {
        one_spelling(ipam, &["type", "dataDir", "resolvConf"], "ipam.")?;
        let plugin_type = string_field(ipam, "type")
            .map_err(|e| prefixed(e, "ipam."))?
            .unwrap_or_default();
        let data_dir = string_field(ipam, "dataDir")
            .map_err(|e| prefixed(e, "ipam."))?
            .filter(|d| !d.is_empty())
            .map(|d| {
                if d.starts_with('/') {
                    Ok(PathBuf::from(d))
                } else {
                    Err(CniError::config(format!(
                        "\"ipam.dataDir\" must be an absolute path, got {d:?}"
                    )))
                }
            })
            .transpose()?;
        let resolv_conf = string_field(ipam, "resolvConf")
            .map_err(|e| prefixed(e, "ipam."))?
            .filter(|r| !r.is_empty());
        Ok(IpamRef {
            plugin_type,
            data_dir,
            resolv_conf,
        })
    }
}

fn prefixed(e: CniError, prefix: &str) -> CniError {
    CniError {
        msg: e.msg.replacen("field \"", &format!("field \"{prefix}"), 1),
        ..e
    }
}

/// Go's `encoding/json`, which the native plugins a config may reach (an
/// IPAM plugin from `CNI_PATH`) decode with, matches keys without regard to
/// case: `DataDir` is `dataDir`, and by Unicode simple folding `cniVerſion`
/// is `cniVersion`. A key the host checks must then have one spelling only,
/// or the plugin would act on a value the host never saw.
fn one_spelling(obj: &Map<String, Value>, checked: &[&str], prefix: &str) -> Result<(), CniError> {
    fn fold(s: &str) -> String {
        s.chars()
            .map(|c| match c {
                '\u{17f}' => 's',  // LATIN SMALL LETTER LONG S
                '\u{212a}' => 'k', // KELVIN SIGN
                c => c.to_ascii_lowercase(),
            })
            .collect()
    }
    for key in obj.keys() {
        if let Some(want) = checked.iter().find(|c| **c != key && fold(c) == fold(key)) {
            return Err(CniError::config(format!(
                "network config field \"{prefix}{key}\" is \"{prefix}{want}\" spelled differently: plugins written in Go read them as one, so only \"{prefix}{want}\" is accepted"
            )));
        }
    }
    Ok(())
}

fn string_field(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(CniError::config(format!(
            "network config field \"{key}\" must be a string, got {other}"
        ))),
    }
}

/// libcni's rule for network names (`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`). It
/// matters here: the name becomes a directory under the IPAM data dir.
pub fn validate_network_name(name: &str) -> Result<(), CniError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::config(format!(
            "invalid network name {name:?}: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::error::code;

    const CLASSIC: &str = r#"{"cniVersion":"0.3.1","name":"mynet","type":"bridge","bridge":"mybridge",
 "isGateway":true,"ipMasq":true,
 "ipam":{"type":"host-local","subnet":"10.244.0.0/16","routes":[{"dst":"0.0.0.0/0"}]}}"#;

    #[test]
    fn classic_config() {
        let c = NetConf::parse(CLASSIC.as_bytes()).unwrap();
        assert_eq!(c.cni_version, CniVersion::V0_3_1);
        assert_eq!(
            (c.name.as_str(), c.plugin_type.as_str()),
            ("mynet", "bridge")
        );
        assert_eq!(c.ipam_type(), Some("host-local"));
        assert_eq!(
            serde_json::from_str::<Value>(&c.raw).unwrap(),
            serde_json::from_str::<Value>(CLASSIC).unwrap()
        );
        assert!(c.prev_result.is_none());
    }

    #[test]
    fn prev_result_and_data_dir() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"wasm-cni","plugin":"bridge",
                 "ipam":{"type":"host-local","dataDir":"/run/ipam"},
                 "prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}}"#,
        )
        .unwrap();
        assert_eq!(c.plugin.as_deref(), Some("bridge"));
        assert_eq!(c.ipam.unwrap().data_dir, Some(PathBuf::from("/run/ipam")));
        assert_eq!(
            c.prev_result.unwrap().ips[0].address.to_string(),
            "10.0.0.2/24"
        );
    }

    #[test]
    fn each_bad_input_has_its_code_and_names_the_field() {
        let cases: &[(&str, u32, &str)] = &[
            ("not json", code::DECODE_FAILURE, "not valid JSON"),
            ("[1,2]", code::DECODE_FAILURE, "not a JSON object"),
            (
                r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"host-local","DataDir":"/x"}}"#,
                code::INVALID_CONFIG,
                "\"ipam.DataDir\" is \"ipam.dataDir\" spelled differently",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"ok","Name":"../x"}"#,
                code::INVALID_CONFIG,
                "\"Name\"",
            ),
            (
                "{\"cniVersion\":\"1.0.0\",\"cniVer\u{17f}ion\":\"0.1.0\",\"name\":\"n\"}",
                code::INVALID_CONFIG,
                "spelled differently",
            ),
            (
                r#"{"cniVersion":5,"name":"n"}"#,
                code::INVALID_CONFIG,
                "\"cniVersion\"",
            ),
            (
                r#"{"cniVersion":"9.9.9","name":"n"}"#,
                code::INCOMPATIBLE_VERSION,
                "incompatible",
            ),
            (
                r#"{"cniVersion":"1.0.0"}"#,
                code::INVALID_CONFIG,
                "\"name\"",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"../etc"}"#,
                code::INVALID_CONFIG,
                "invalid network name",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":7}"#,
                code::INVALID_CONFIG,
                "\"name\" must be a string",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","ipam":[]}"#,
                code::INVALID_CONFIG,
                "\"ipam\"",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":3}}"#,
                code::INVALID_CONFIG,
                "\"ipam.type\"",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","ipam":{"dataDir":"rel"}}"#,
                code::INVALID_CONFIG,
                "ipam.dataDir",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","prevResult":{"ips":[{"address":"x"}]}}"#,
                code::DECODE_FAILURE,
                "prevResult",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","prevResult":[]}"#,
                code::DECODE_FAILURE,
                "prevResult",
            ),
        ];
        for (input, want_code, want_text) in cases {
            let e = NetConf::parse(input.as_bytes()).unwrap_err();
            assert_eq!(e.code, *want_code, "{input}: {e}");
            assert!(e.to_string().contains(want_text), "{input}: {e}");
        }
    }

    #[test]
    fn a_config_without_a_version_is_0_1_0() {
        for input in [r#"{"name":"n"}"#, r#"{"cniVersion":"","name":"n"}"#] {
            let c = NetConf::parse(input.as_bytes()).unwrap();
            assert_eq!(c.cni_version, CniVersion::V0_1_0, "{input}");
        }
    }

    #[test]
    fn unknown_keys_are_tolerated() {
        let c = NetConf::parse(br#"{"cniVersion":"1.1.0","name":"n","capabilities":{"portMappings":true},"x":{"y":1}}"#);
        assert!(c.is_ok());
    }
}
