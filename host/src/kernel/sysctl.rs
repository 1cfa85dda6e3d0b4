//! Per-namespace kernel parameters under `/proc/sys/net`.
//!
//! A `/proc/sys/net` file belongs to the namespace of the thread that opens
//! it, so a container's keys are opened on a thread inside its namespace.

use super::netns::Netns;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// A validated key under `net`: its components, as sysctl(8) splits them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlKey(Vec<String>);

impl SysctlKey {
    /// `net.ipv4.ip_forward` or `net/ipv4/conf/eth0.100/arp_notify` (slashes
    /// are needed when a link name contains a dot).
    pub fn parse(key: &str) -> Result<SysctlKey, String> {
        let sep = if key.contains('/') { '/' } else { '.' };
        let parts: Vec<String> = key.split(sep).map(str::to_string).collect();
        if parts.first().map(String::as_str) != Some("net") {
            return Err(format!("sysctl key {key:?} is not under \"net\""));
        }
        if parts.len() < 2 {
            return Err(format!("sysctl key {key:?} names no parameter"));
        }
        if let Some(bad) = parts
            .iter()
            .find(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\0'))
        {
            return Err(format!(
                "sysctl key {key:?} has an invalid component {bad:?}"
            ));
        }
        Ok(SysctlKey(parts))
    }

    pub fn components(&self) -> &[String] {
        &self.0
    }

    /// The link a `net.ipv{4,6}.conf.<link>.<param>` key names (not
    /// `all` or `default`).
    pub fn conf_link(&self) -> Option<&str> {
        match self.0.as_slice() {
            [net, ip, conf, dev, _]
                if net == "net" && (ip == "ipv4" || ip == "ipv6") && conf == "conf" =>
            {
                Some(dev.as_str()).filter(|d| *d != "all" && *d != "default")
            }
            _ => None,
        }
    }

    fn path(&self) -> PathBuf {
        let mut p = PathBuf::from("/proc/sys");
        p.extend(&self.0);
        p
    }
}

impl std::fmt::Display for SysctlKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

/// Read a parameter, without the trailing newline. Off the runtime's
/// thread: a `/proc/sys/net` file is opened in its namespace.
pub async fn read(ns: Option<&Netns>, key: &SysctlKey) -> io::Result<String> {
    let path = key.path();
    super::netns::run(ns, move || {
        let mut s = String::new();
        File::open(&path)?.read_to_string(&mut s)?;
        Ok(s.trim_end_matches('\n').to_string())
    })
    .await
}

/// Write a parameter. Off the runtime's thread: writing `forwarding` takes
/// the kernel's RTNL lock, which a busy node holds for a while.
pub async fn write(ns: Option<&Netns>, key: &SysctlKey, value: &str) -> io::Result<()> {
    let path = key.path();
    let value = value.to_string();
    super::netns::run(ns, move || {
        OpenOptions::new()
            .write(true)
            .open(&path)?
            .write_all(value.as_bytes())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_dotted_or_slashed_and_stay_under_net() {
        assert_eq!(
            SysctlKey::parse("net.ipv4.ip_forward").unwrap().to_string(),
            "net/ipv4/ip_forward"
        );
        let k = SysctlKey::parse("net/ipv4/conf/eth0.100/arp_notify").unwrap();
        assert_eq!(k.components()[3], "eth0.100");
        for bad in [
            "kernel.panic",
            "net",
            "net..ipv4",
            "net/ipv4/../../kernel/panic",
            "net/./x",
            "",
            "vm/x",
        ] {
            assert!(SysctlKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn conf_keys_name_their_link() {
        let link = |k: &str| SysctlKey::parse(k).unwrap().conf_link().map(str::to_string);
        assert_eq!(
            link("net/ipv6/conf/cni0/accept_ra").as_deref(),
            Some("cni0")
        );
        assert_eq!(
            link("net/ipv4/conf/eth0.100/arp_notify").as_deref(),
            Some("eth0.100")
        );
        assert_eq!(link("net.ipv4.conf.all.forwarding"), None);
        assert_eq!(link("net.ipv6.conf.default.forwarding"), None);
        assert_eq!(link("net.ipv4.ip_forward"), None);
    }

    #[test]
    fn reads_a_real_parameter() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let v = rt
            .block_on(read(
                None,
                &SysctlKey::parse("net.ipv4.ip_forward").unwrap(),
            ))
            .unwrap();
        assert!(v == "0" || v == "1", "{v}");
    }
}
