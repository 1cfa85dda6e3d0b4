//! The sysctls a plugin may write in the node's namespace: an allow-list,
//! one named entry per parameter with the reason a plugin needs it. What is
//! not listed is denied; in particular `route_localnet` (CVE-2020-8558:
//! pods reaching the node's 127.0.0.1), `rp_filter`, `proxy_arp` and
//! anything outside `net.ipv4`/`net.ipv6`.

use super::Standing;
use crate::kernel::sysctl::SysctlKey;

/// Which keys of a parameter an entry covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `net.<family>.<param>`.
    Node,
    /// `net.<family>.conf.{all,default,<any link>}.<param>`.
    AnyLink,
    /// `net.<family>.conf.<link>.<param>` of a link created by this call or
    /// a bridge granted to its network.
    OwnOrGrantedLink,
}

pub struct Entry {
    pub name: &'static str,
    pub families: &'static [&'static str],
    pub param: &'static str,
    pub scope: Scope,
    pub values: &'static [&'static str],
    pub why: &'static str,
}

/// The allow-list.
pub const NODE_SYSCTLS: &[Entry] = &[
    Entry {
        name: "ipv4-forwarding-on",
        families: &["ipv4"],
        param: "ip_forward",
        scope: Scope::Node,
        values: &["1"],
        why: "a gateway bridge routes its pods' traffic (reference bridge, isGateway); only on: turning it off would cut every other network",
    },
    Entry {
        name: "forwarding-on",
        families: &["ipv4", "ipv6"],
        param: "forwarding",
        scope: Scope::AnyLink,
        values: &["1"],
        why: "the same for IPv6 (conf.all.forwarding), as the reference does for isGateway; on one link it grants nothing conf.all does not. Note: with IPv6 forwarding on, links with accept_ra=1 stop taking router advertisements",
    },
    Entry {
        name: "no-router-advertisements",
        families: &["ipv6"],
        param: "accept_ra",
        scope: Scope::OwnOrGrantedLink,
        values: &["0"],
        why: "the plugin owns its bridge's routes: a router advertisement on a pod network must not change them",
    },
    Entry {
        name: "duplicate-address-detection",
        families: &["ipv6"],
        param: "accept_dad",
        scope: Scope::OwnOrGrantedLink,
        values: &["0", "1", "2"],
        why: "an IPv6 gateway on the bridge answers at once without DAD (enabledad turns it back on)",
    },
    Entry {
        name: "arp-notify",
        families: &["ipv4"],
        param: "arp_notify",
        scope: Scope::OwnOrGrantedLink,
        values: &["0", "1"],
        why: "announce an address that moved to this link, as the reference does for a new interface",
    },
];

/// The entry that allows writing `value` to `key`; `link` is the standing
/// of the link a `conf.<link>` key names.
pub fn allowed(
    key: &SysctlKey,
    value: &str,
    link: Option<Standing>,
) -> Result<&'static Entry, String> {
    let c: Vec<&str> = key.components().iter().map(String::as_str).collect();
    let (family, dev, param) = match c.as_slice() {
        ["net", family, param] => (*family, None, *param),
        ["net", family, "conf", dev, param] => (*family, Some(*dev), *param),
        _ => return Err("not on the node's allow-list".into()),
    };
    let entry = NODE_SYSCTLS
        .iter()
        .find(|e| {
            e.param == param
                && e.families.contains(&family)
                && match (e.scope, dev) {
                    (Scope::Node, None) => true,
                    (Scope::AnyLink, Some(_)) => true,
                    (Scope::OwnOrGrantedLink, Some(d)) => d != "all" && d != "default",
                    _ => false,
                }
        })
        .ok_or_else(|| "not on the node's allow-list".to_string())?;
    if !entry.values.contains(&value.trim_end_matches('\n')) {
        return Err(format!(
            "{} allows only {:?} ({})",
            entry.name, entry.values, entry.why
        ));
    }
    if entry.scope == Scope::OwnOrGrantedLink
        && !matches!(link, Some(Standing::Own | Standing::GrantedBridge))
    {
        return Err(format!(
            "{} only on a link this call created or a bridge granted to its network",
            entry.name
        ));
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &str, value: &str, link: Option<Standing>) -> Result<&'static str, String> {
        allowed(&SysctlKey::parse(key).unwrap(), value, link).map(|e| e.name)
    }

    #[test]
    fn forwarding_may_be_turned_on_anywhere_never_off() {
        assert_eq!(
            check("net.ipv4.ip_forward", "1", None),
            Ok("ipv4-forwarding-on")
        );
        assert!(check("net.ipv6.conf.all.forwarding", "1", None).is_ok());
        assert!(
            check(
                "net/ipv4/conf/eth0/forwarding",
                "1",
                Some(Standing::Foreign)
            )
            .is_ok()
        );
        for off in ["0", "2", "1 ", ""] {
            assert!(check("net.ipv4.ip_forward", off, None).is_err(), "{off:?}");
        }
        assert!(check("net.ipv6.conf.default.forwarding", "0", None).is_err());
    }

    #[test]
    fn link_parameters_only_on_own_or_granted_links() {
        for granted in [Standing::Own, Standing::GrantedBridge] {
            assert!(check("net/ipv6/conf/cni0/accept_ra", "0", Some(granted)).is_ok());
            assert!(check("net/ipv6/conf/cni0/accept_dad", "2", Some(granted)).is_ok());
            assert!(check("net/ipv4/conf/veth1/arp_notify", "1", Some(granted)).is_ok());
        }
        assert!(check("net/ipv6/conf/br0/accept_ra", "0", Some(Standing::Foreign)).is_err());
        assert!(
            check(
                "net/ipv6/conf/cni0/accept_ra",
                "2",
                Some(Standing::GrantedBridge)
            )
            .is_err()
        );
        assert!(
            check("net.ipv6.conf.all.accept_ra", "0", None).is_err(),
            "not node-wide"
        );
        assert!(check("net.ipv4.conf.default.arp_notify", "1", None).is_err());
    }

    #[test]
    fn everything_else_is_denied() {
        for (key, value) in [
            ("net/ipv4/conf/veth1/route_localnet", "1"),
            ("net.ipv4.conf.all.route_localnet", "1"),
            ("net/ipv4/conf/veth1/rp_filter", "0"),
            ("net/ipv4/conf/veth1/proxy_arp", "1"),
            ("net.core.somaxconn", "1"),
            ("net.ipv4.tcp_syncookies", "0"),
            ("net/ipv6/conf/veth1/disable_ipv6", "1"),
            ("net/ipv4/neigh/veth1/gc_stale_time", "1"),
        ] {
            assert!(check(key, value, Some(Standing::Own)).is_err(), "{key}");
        }
    }

    #[test]
    fn every_entry_says_why() {
        for e in NODE_SYSCTLS {
            assert!(!e.why.is_empty() && !e.values.is_empty(), "{}", e.name);
        }
    }
}
