//! What a guest may change in the host namespace.
//!
//! In the container namespace a guest may do anything: it is the request's
//! sandbox. The host namespace is the node, so there a guest may:
//!
//! - create bridges and veths;
//! - change, address, route through and delete the links it created in
//!   this call (the host end of its veth);
//! - on other bridges (one it reuses, e.g. `cni0`): bring them up, pin
//!   their MAC, set promiscuous mode, add or replace addresses (the
//!   gateway), enslave its own links to them, and set their
//!   `net.ipv{4,6}.conf.<bridge>.*` keys; not take them down, change their
//!   MTU, move them under a master or delete them;
//! - set the forwarding sysctls;
//! - read anything.
//!
//! Everything else (the node's uplink, other pods' veths, other keys) is
//! `denied`. A later release can make this configurable; the shape of the
//! checks stays.

use super::CapError;
use crate::kernel::sysctl::SysctlKey;

/// A link in the host namespace, as far as the policy cares.
#[derive(Debug, Clone, Copy)]
pub struct HostLink<'a> {
    pub name: &'a str,
    pub is_bridge: bool,
    /// Created by this CNI call.
    pub created: bool,
}

/// A change to a host-namespace link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkOp {
    Up,
    Down,
    Mtu,
    Mac,
    Promiscuous,
    Hairpin,
    /// Enslave to (or release from) a bridge.
    SetMaster,
    Delete,
    /// Add or remove an address, or route through the link.
    Address,
}

pub fn check_link(link: HostLink<'_>, op: LinkOp) -> Result<(), CapError> {
    if link.created {
        return Ok(());
    }
    let allowed = link.is_bridge
        && matches!(
            op,
            LinkOp::Up | LinkOp::Mac | LinkOp::Promiscuous | LinkOp::Address
        );
    if allowed {
        Ok(())
    } else {
        Err(CapError::denied(format!(
            "{op:?} on host link {:?}: a plugin may change only the links it created and, in part, bridges",
            link.name
        )))
    }
}

/// Enslaving `port` to `master` (`None`: releasing it).
pub fn check_master(port: HostLink<'_>, master: Option<HostLink<'_>>) -> Result<(), CapError> {
    check_link(port, LinkOp::SetMaster)?;
    match master {
        Some(m) if !m.is_bridge => Err(CapError::denied(format!(
            "host link {:?} is not a bridge",
            m.name
        ))),
        _ => Ok(()),
    }
}

/// Writing a host-namespace sysctl. `link` resolves the link a
/// `net.ipv{4,6}.conf.<link>.*` key names.
pub fn check_sysctl_write(
    key: &SysctlKey,
    link: impl for<'a> Fn(&'a str) -> Option<HostLink<'a>>,
) -> Result<(), CapError> {
    let c: Vec<&str> = key.components().iter().map(String::as_str).collect();
    let ok = match c.as_slice() {
        ["net", "ipv4", "ip_forward"] => true,
        [
            "net",
            "ipv4" | "ipv6",
            "conf",
            "all" | "default",
            "forwarding",
        ] => true,
        ["net", "ipv4" | "ipv6", "conf", dev, _param] if *dev != "all" && *dev != "default" => {
            return match link(dev) {
                Some(l) => check_link(l, LinkOp::Address),
                None => Err(CapError::not_found(format!(
                    "no host link {dev:?} for sysctl {key}"
                ))),
            };
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(CapError::denied(format!(
            "sysctl {key} in the host namespace"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETH0: HostLink<'static> = HostLink {
        name: "eth0",
        is_bridge: false,
        created: false,
    };
    const CNI0: HostLink<'static> = HostLink {
        name: "cni0",
        is_bridge: true,
        created: false,
    };
    const MY_VETH: HostLink<'static> = HostLink {
        name: "veth1234abcd",
        is_bridge: false,
        created: true,
    };

    #[test]
    fn own_links_are_fully_granted() {
        for op in [
            LinkOp::Up,
            LinkOp::Down,
            LinkOp::Mtu,
            LinkOp::Mac,
            LinkOp::Hairpin,
            LinkOp::SetMaster,
            LinkOp::Delete,
            LinkOp::Address,
        ] {
            assert!(check_link(MY_VETH, op).is_ok(), "{op:?}");
        }
    }

    #[test]
    fn the_uplink_is_untouchable() {
        for op in [
            LinkOp::Up,
            LinkOp::Down,
            LinkOp::Mtu,
            LinkOp::Mac,
            LinkOp::Promiscuous,
            LinkOp::SetMaster,
            LinkOp::Delete,
            LinkOp::Address,
        ] {
            let e = check_link(ETH0, op).unwrap_err();
            assert!(
                matches!(
                    e.guest(),
                    Some(crate::runtime::bindings::wasm_cni::plugin::types::Error::Denied(_))
                ),
                "{op:?}"
            );
        }
    }

    #[test]
    fn reused_bridges_are_granted_in_part() {
        for op in [
            LinkOp::Up,
            LinkOp::Mac,
            LinkOp::Promiscuous,
            LinkOp::Address,
        ] {
            assert!(check_link(CNI0, op).is_ok(), "{op:?}");
        }
        for op in [
            LinkOp::Down,
            LinkOp::Mtu,
            LinkOp::SetMaster,
            LinkOp::Delete,
            LinkOp::Hairpin,
        ] {
            assert!(check_link(CNI0, op).is_err(), "{op:?}");
        }
    }

    #[test]
    fn ports_go_only_under_bridges() {
        assert!(check_master(MY_VETH, Some(CNI0)).is_ok());
        assert!(check_master(MY_VETH, Some(ETH0)).is_err());
        assert!(
            check_master(ETH0, Some(CNI0)).is_err(),
            "cannot steal the uplink"
        );
        assert!(check_master(MY_VETH, None).is_ok());
    }

    #[test]
    fn host_sysctls_are_forwarding_and_granted_links_only() {
        fn lookup(name: &str) -> Option<HostLink<'_>> {
            match name {
                "cni0" => Some(CNI0),
                "eth0" => Some(ETH0),
                _ => None,
            }
        }
        let key = |k: &str| SysctlKey::parse(k).unwrap();
        assert!(check_sysctl_write(&key("net.ipv4.ip_forward"), lookup).is_ok());
        assert!(check_sysctl_write(&key("net.ipv6.conf.all.forwarding"), lookup).is_ok());
        assert!(check_sysctl_write(&key("net/ipv6/conf/cni0/accept_ra"), lookup).is_ok());
        assert!(check_sysctl_write(&key("net/ipv4/conf/eth0/rp_filter"), lookup).is_err());
        assert!(check_sysctl_write(&key("net.ipv4.conf.all.rp_filter"), lookup).is_err());
        assert!(check_sysctl_write(&key("net.core.somaxconn"), lookup).is_err());
        assert!(check_sysctl_write(&key("net/ipv4/conf/nosuch/arp_notify"), lookup).is_err());
    }
}
