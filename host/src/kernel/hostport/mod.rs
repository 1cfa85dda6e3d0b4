//! Host ports (`portmap`) in nftables, in wasm-cni's own table beside the
//! masquerade rules:
//!
//! ```text
//! table inet wasm-cni {
//!   map hostports { type inet_proto . inet_service : verdict; }
//!   chain dstnat {   # and `output` (hook output), for the node's own connections
//!     type nat hook prerouting priority dstnat; policy accept;
//!     fib daddr type local meta l4proto . th dport vmap @hostports
//!   }
//!   chain guard {
//!     type filter hook prerouting priority raw; policy accept;
//!     meta iiftype != loopback ip daddr 127.0.0.0/8 drop
//!     meta iiftype != loopback ip saddr 127.0.0.0/8 drop
//!   }
//!   chain pm-0123456789abcdef {   # one attachment's, named by a digest of its mark
//!     meta nfproto ipv4 ip daddr != 127.0.0.0/8 ip saddr 10.244.0.0/16 tcp dport 8080 meta mark set meta mark | 0x2000 comment "wasm-cni mynet c1 eth0"
//!     meta nfproto ipv4 ip daddr != 127.0.0.0/8 tcp dport 8080 dnat ip to 10.244.0.5:80 comment "wasm-cni mynet c1 eth0"
//!   }
//!   chain postrouting {
//!     ip daddr 10.244.0.5 meta mark & 0x2000 == 0x2000 masquerade comment "wasm-cni mynet c1 eth0"
//!   }
//! }
//! ```
//!
//! A host port is found by one map lookup per new connection, however many
//! pods hold ports (the reference walks an iptables chain rule by rule),
//! and it is held by one attachment on the whole node: the map's key is
//! (protocol, port), and `create element` fails with EEXIST for a key that
//! is there, atomically, so two ADDs racing for a port cannot both win and
//! no scan is needed to find that it is taken. (A map keyed by address
//! ranges too would let two pods hold one port on two node addresses, as
//! the reference does, but the kernel finds only some overlaps of ranges:
//! a range that contains an element already there is taken in.) The
//! attachment's chain then matches the address: a `hostIP`, or any but the
//! loopback ones. DNAT to a pod from 127.0.0.1 only works with
//! `route_localnet`, which wasm-cni sets only where the node policy allows
//! host ports on the loopback addresses; `guard` drops what comes from
//! another interface to or from 127.0.0.0/8 (kube-proxy's rule for the
//! same sysctl), so a pod cannot reach the node's loopback services or
//! pass for one of them.
//!
//! Hairpin traffic (a pod of the container's subnet, the container itself
//! included, to a host port that leads back into the subnet) would be
//! answered straight over the bridge, past the DNAT; it is marked and
//! masqueraded, as the reference does (its `-s <container subnet>`), so the
//! answer comes back through the node.

mod listed;
mod rules;

use crate::kernel::nft::{NftError, TableLock, run_nft};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Instant;

const MAP: &str = "hostports";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    fn from_name(s: &str) -> Option<Protocol> {
        [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
            .into_iter()
            .find(|p| p.name() == s)
    }
}

/// One host port forwarded to the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// The node address it is for; `None`: any.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub protocol: Protocol,
    /// The container's address, with its subnet's prefix.
    pub container: ipnetwork::IpNetwork,
    pub container_port: u16,
}

impl HostPort {
    /// Whether it and `other` want the same port: one attachment holds a
    /// (protocol, port) on the whole node.
    pub fn same_port(&self, other: &HostPort) -> bool {
        self.protocol == other.protocol && self.host_port == other.host_port
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = match self.host_ip {
            Some(ip @ IpAddr::V6(_)) => format!("[{ip}]"),
            Some(ip) => ip.to_string(),
            None => "*".into(),
        };
        write!(
            f,
            "{host}:{}/{} -> {}:{}",
            self.host_port,
            self.protocol.name(),
            self.container.ip(),
            self.container_port
        )
    }
}

/// What one `map` asks for.
#[derive(Debug, Clone)]
pub struct Forward {
    pub mappings: Vec<HostPort>,
    /// Mark and masquerade hairpin (and loopback) traffic.
    pub snat: bool,
    /// The mark's bit, 0-31.
    pub mark_bit: u8,
    /// Host ports on 127.0.0.0/8 too (the node policy allows them).
    pub loopback: bool,
}

/// The unspecified address of `ip`'s family (`0.0.0.0`, `::`): any.
pub fn unspecified(ip: IpAddr) -> bool {
    ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED) || ip == IpAddr::V6(Ipv6Addr::UNSPECIFIED)
}

/// The chain of the attachment marked `owner`.
pub fn chain_name(owner: &str) -> String {
    let digest = Sha256::digest(owner.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("pm-{hex}")
}

fn is_attachment_chain(name: &str) -> bool {
    name.strip_prefix("pm-")
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn submit(commands: Vec<Value>, deadline: Instant) -> Result<(), NftError> {
    let batch = json!({"nftables": commands}).to_string();
    run_nft(&["-f", "-"], Some(&batch), deadline).map(drop)
}

/// What nft says when an element or a chain is there already.
const EXISTS: &str = "File exists";

/// Forward `fwd`'s ports to the container in the attachment marked
/// `owner`, all in one transaction; true when this created the table's
/// host-port part (so a rollback can take the table away again). A port
/// another attachment holds, or an attachment that holds ports already
/// (an ADD again without a DEL): `AlreadyExists`, and nothing changed.
pub fn map(
    owner: &str,
    fwd: &Forward,
    deadline: Instant,
    locks: Option<&Path>,
) -> io::Result<bool> {
    let pm = chain_name(owner);
    let (rules, create) = rules::attachment_objects(owner, &pm, fwd);
    let batch = |infra: bool| {
        let mut b: Vec<Value> = Vec::new();
        if infra {
            b.extend(
                rules::infrastructure()
                    .into_iter()
                    .map(|o| json!({"add": o})),
            );
        }
        // `create`: the attachment's chain must be new, as its ports.
        b.push(json!({"create": rules::chain(&pm)}));
        b.extend(rules.iter().map(|o| json!({"add": o})));
        b.push(create.clone());
        b
    };
    let first = {
        let _shared = TableLock::take(locks, false, deadline);
        submit(batch(false), deadline)
    };
    let outcome = match first {
        Ok(()) => Ok(false),
        Err(NftError::Missing(_)) => {
            // The node's first host port: the table's part for them, made
            // under the table's lock held alone, so two first mappings do
            // not both add the hooks' rules.
            let _alone = TableLock::take(locks, true, deadline);
            match submit(batch(false), deadline) {
                Ok(()) => Ok(false),
                Err(NftError::Missing(_)) => submit(batch(true), deadline).map(|()| true),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(created) => Ok(created),
        Err(NftError::Failed(said)) if said.contains(EXISTS) => Err(held(&pm, fwd, deadline)),
        Err(e) => Err(e.into()),
    }
}

/// Why a `map` found something there already.
fn held(pm: &str, fwd: &Forward, deadline: Instant) -> io::Error {
    let objects = listed::table(deadline).ok().flatten().unwrap_or_default();
    let why = if listed::chain_exists(&objects, pm) {
        "this attachment forwards host ports already (an ADD again without a DEL)".to_string()
    } else {
        let ports: Vec<String> = fwd
            .mappings
            .iter()
            .map(|m| format!("{}/{}", m.host_port, m.protocol.name()))
            .fold(Vec::new(), |mut v, p| {
                if !v.contains(&p) {
                    v.push(p);
                }
                v
            });
        format!(
            "host port {} is held by another attachment (one attachment holds a port on the whole node)",
            ports.join(", ")
        )
    };
    io::Error::new(io::ErrorKind::AlreadyExists, why)
}

/// Which of an attachment's postrouting rules go with its host ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masquerades {
    /// Only the host ports' hairpin masquerade (a failed `portmap` ADD:
    /// the bridge's masquerade of the attachment stays).
    Hairpin,
    /// Every rule of the attachment (its DEL): one listing and one
    /// transaction for the whole table.
    All,
}

/// Remove the host ports of the attachment marked `owner` and its
/// postrouting rules as `which` says; how many mappings and rules went.
pub fn unmap(owner: &str, which: Masquerades, deadline: Instant) -> io::Result<usize> {
    let Some(objects) = listed::table(deadline)? else {
        return Ok(0);
    };
    let pm = chain_name(owner);
    let mut count = listed::mappings_in(&objects, &pm).len();
    let mut commands = listed::removal(&objects, &pm);
    for r in listed::rules_of(&objects, rules::POSTROUTING).filter(|r| {
        r["comment"].as_str() == Some(owner)
            && (which == Masquerades::All || listed::is_hairpin_masquerade(r))
    }) {
        commands.push(delete_rule(r));
        count += 1;
    }
    if !commands.is_empty() {
        submit(commands, deadline)?;
    }
    Ok(count)
}

fn delete_rule(r: &Value) -> Value {
    json!({"delete": {"rule": {"family": "inet", "table": crate::kernel::nft::TABLE,
        "chain": r["chain"], "handle": r["handle"]}}})
}

/// The attachments' chains: (chain, the mark on its rules).
fn attachment_chains(objects: &[Value]) -> Vec<(&str, &str)> {
    objects
        .iter()
        .filter_map(|o| o["chain"]["name"].as_str())
        .filter(|n| is_attachment_chain(n))
        .filter_map(|pm| {
            let owner = listed::rules_of(objects, pm).find_map(|r| r["comment"].as_str())?;
            Some((pm, owner))
        })
        .collect()
}

/// Remove the host ports and postrouting rules of the attachments marked
/// with `prefix` (a network's) but not with any of `keep`: GC, in one
/// listing and one transaction. How many mappings and rules went.
pub fn retain(network: &str, keep: &[String], deadline: Instant) -> io::Result<usize> {
    let Some(objects) = listed::table(deadline)? else {
        return Ok(0);
    };
    let stale =
        |owner: &str| super::nft::of_network(owner, network) && !keep.iter().any(|k| k == owner);
    let chains: Vec<&str> = attachment_chains(&objects)
        .into_iter()
        .filter(|(_, owner)| stale(owner))
        .map(|(pm, _)| pm)
        .collect();
    let mut commands: Vec<Value> = chains
        .iter()
        .flat_map(|pm| listed::removal(&objects, pm))
        .collect();
    let mut count: usize = chains
        .iter()
        .map(|pm| listed::mappings_in(&objects, pm).len())
        .sum();
    for r in listed::rules_of(&objects, rules::POSTROUTING)
        .filter(|r| r["comment"].as_str().is_some_and(stale))
    {
        commands.push(delete_rule(r));
        count += 1;
    }
    if !commands.is_empty() {
        submit(commands, deadline)?;
    }
    Ok(count)
}

/// Whether the table holds anything of an attachment: a rule with a mark,
/// or a map element. `None`: no table.
pub(crate) fn table_in_use(deadline: Instant) -> io::Result<Option<bool>> {
    Ok(listed::table(deadline)?.map(|objects| {
        objects.iter().any(|o| {
            o["rule"]["comment"].is_string()
                || o["map"]["elem"].as_array().is_some_and(|e| !e.is_empty())
        })
    }))
}

/// The host ports the attachment marked `owner` holds, read back from its
/// chain's DNAT rules: the container's address alone (full-length prefix;
/// the subnet a hairpin is judged by is not read back).
pub fn mapped(owner: &str, deadline: Instant) -> io::Result<Vec<HostPort>> {
    let Some(objects) = listed::table(deadline)? else {
        return Ok(Vec::new());
    };
    Ok(listed::mappings_in(&objects, &chain_name(owner)))
}

/// The attachments whose ports take the node's loopback addresses: (its
/// mark, the container address).
pub fn loopback_ports(deadline: Instant) -> io::Result<Vec<(String, IpAddr)>> {
    let Some(objects) = listed::table(deadline)? else {
        return Ok(Vec::new());
    };
    Ok(attachment_chains(&objects)
        .into_iter()
        .flat_map(|(pm, owner)| {
            listed::rules_of(&objects, pm)
                .filter_map(listed::loopback_target)
                .map(move |ip| (owner.to_string(), ip))
                .collect::<Vec<_>>()
        })
        .collect())
}

/// Every attachment's host ports: (its mark, the mapping).
pub fn all_mapped(deadline: Instant) -> io::Result<Vec<(String, HostPort)>> {
    let Some(objects) = listed::table(deadline)? else {
        return Ok(Vec::new());
    };
    Ok(attachment_chains(&objects)
        .into_iter()
        .flat_map(|(pm, owner)| {
            listed::mappings_in(&objects, pm)
                .into_iter()
                .map(move |m| (owner.to_string(), m))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_are_named_by_a_digest_of_the_mark() {
        let a = chain_name("wasm-cni mynet c1 eth0");
        assert!(is_attachment_chain(&a), "{a}");
        assert_ne!(a, chain_name("wasm-cni mynet c1 eth1"));
        assert!(!is_attachment_chain("postrouting") && !is_attachment_chain("pm-xyz"));
    }

    #[test]
    fn a_port_is_one_attachments_on_the_whole_node() {
        let web = |host_ip: Option<&str>, protocol| HostPort {
            host_ip: host_ip.map(|s| s.parse().unwrap()),
            host_port: 8080,
            protocol,
            container: "10.244.0.5/16".parse().unwrap(),
            container_port: 80,
        };
        let any = web(None, Protocol::Tcp);
        assert!(any.same_port(&web(Some("192.0.2.1"), Protocol::Tcp)));
        assert!(!any.same_port(&web(None, Protocol::Udp)));
        let other = HostPort {
            host_port: 8081,
            ..any.clone()
        };
        assert!(!any.same_port(&other));
    }
}
