//! What a guest may change in the host namespace (the node).
//!
//! In the container namespace a guest may do anything: it is the request's
//! sandbox. In the host namespace a link has a standing:
//!
//! - **own**: created by this call (the host end of its veth). Anything.
//! - **granted bridge**: a bridge wasm-cni created (the host marks every
//!   bridge it creates with the alias `wasm-cni`), or the bridge the
//!   network config names in `"bridge"` (the operator's choice; for the
//!   bridge plugin, its default `cni0` when absent). It may be
//!   brought up, have its MAC pinned, be made promiscuous, have addresses
//!   managed and `net.ipv{4,6}.conf.<bridge>.*` set, and take the guest's
//!   own links as ports. Not: down, MTU, a master, deletion.
//! - **foreign**: everything else (the uplink, other pods' veths, a bridge
//!   like `docker0` or a physical LAN's `br0`). Read only.
//!
//! And beyond links: addresses put on the node's links must lie in a subnet
//! this call's IPAM assigned (the gateway); masquerade covers only the
//! addresses this call's IPAM assigned; forwarding may be turned on, not
//! off; routes in the host namespace are not granted (no built-in plugin
//! needs one). Reading is always allowed. Everything else is `denied`.

use super::CapError;
use crate::kernel::sysctl::SysctlKey;
use ipnetwork::IpNetwork;
use std::sync::{Arc, Mutex};

/// The alias the host gives every bridge it creates.
pub const BRIDGE_MARK: &str = "wasm-cni";

/// Where a host-namespace link stands with this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Own,
    GrantedBridge,
    Foreign,
}

/// A link in the host namespace, as far as the policy cares.
#[derive(Debug, Clone, Copy)]
pub struct HostLink<'a> {
    pub name: &'a str,
    pub is_bridge: bool,
    pub standing: Standing,
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
    /// Add or remove an address, or set a `conf.<link>` sysctl.
    Address,
}

fn denied(what: impl std::fmt::Display) -> CapError {
    CapError::denied(format!("{what} in the host namespace"))
}

pub fn check_link(link: HostLink<'_>, op: LinkOp) -> Result<(), CapError> {
    let allowed = match link.standing {
        Standing::Own => true,
        Standing::GrantedBridge => matches!(
            op,
            LinkOp::Up | LinkOp::Mac | LinkOp::Promiscuous | LinkOp::Address
        ),
        Standing::Foreign => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(denied(format_args!(
            "{op:?} on link {:?} ({:?}): a plugin changes only links it created and bridges granted to its network",
            link.name, link.standing
        )))
    }
}

/// Enslaving `port` to `master` (`None`: releasing it).
pub fn check_master(port: HostLink<'_>, master: Option<HostLink<'_>>) -> Result<(), CapError> {
    check_link(port, LinkOp::SetMaster)?;
    match master {
        Some(m) if !m.is_bridge => Err(denied(format_args!("{:?} is not a bridge", m.name))),
        Some(m) if m.standing == Standing::Foreign => Err(denied(format_args!(
            "bridge {:?} is not granted to this network",
            m.name
        ))),
        _ => Ok(()),
    }
}

/// Adding `address` to a host-namespace link.
pub fn check_address(
    link: HostLink<'_>,
    address: &IpNetwork,
    assigned: &Assigned,
) -> Result<(), CapError> {
    check_link(link, LinkOp::Address)?;
    if assigned.covers(address) {
        Ok(())
    } else {
        Err(denied(format_args!(
            "address {address} on {:?}: not in a subnet this call's IPAM assigned",
            link.name
        )))
    }
}

/// Masquerading `address`.
pub fn check_masquerade(address: &IpNetwork, assigned: &Assigned) -> Result<(), CapError> {
    if assigned.holds(address) {
        Ok(())
    } else {
        Err(denied(format_args!(
            "masquerade for {address}: not an address this call's IPAM assigned"
        )))
    }
}

/// Writing a host-namespace sysctl. `link` resolves the link a
/// `net.ipv{4,6}.conf.<link>.*` key names.
pub fn check_sysctl_write(
    key: &SysctlKey,
    value: &str,
    link: impl for<'a> Fn(&'a str) -> Option<HostLink<'a>>,
) -> Result<(), CapError> {
    let c: Vec<&str> = key.components().iter().map(String::as_str).collect();
    match c.as_slice() {
        ["net", "ipv4", "ip_forward"]
        | [
            "net",
            "ipv4" | "ipv6",
            "conf",
            "all" | "default",
            "forwarding",
        ] => {
            if value.trim() == "1" {
                Ok(())
            } else {
                Err(denied(format_args!(
                    "sysctl {key}={value}: forwarding may be turned on, not off"
                )))
            }
        }
        ["net", "ipv4" | "ipv6", "conf", dev, _param] if *dev != "all" && *dev != "default" => {
            match link(dev) {
                Some(l) => check_link(l, LinkOp::Address),
                None => Err(CapError::not_found(format!(
                    "no host link {dev:?} for sysctl {key}"
                ))),
            }
        }
        _ => Err(denied(format_args!("sysctl {key}"))),
    }
}

/// What this call's IPAM assigned, shared by the capabilities whose grant
/// depends on it (addresses on node links, masquerade).
#[derive(Debug, Clone, Default)]
pub struct Assigned(Arc<Mutex<Vec<IpNetwork>>>);

impl Assigned {
    pub fn record(&self, addresses: impl IntoIterator<Item = IpNetwork>) {
        self.0.lock().expect("not poisoned").extend(addresses);
    }

    /// `net` lies in an assigned subnet, with that subnet's prefix length
    /// (the gateway `10.244.0.1/16` for `10.244.0.2/16`).
    pub fn covers(&self, net: &IpNetwork) -> bool {
        self.0
            .lock()
            .expect("not poisoned")
            .iter()
            .any(|a| a.prefix() == net.prefix() && a.contains(net.ip()))
    }

    /// `net` is an assigned address itself.
    pub fn holds(&self, net: &IpNetwork) -> bool {
        self.0
            .lock()
            .expect("not poisoned")
            .iter()
            .any(|a| a == net)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETH0: HostLink<'static> = HostLink {
        name: "eth0",
        is_bridge: false,
        standing: Standing::Foreign,
    };
    const BR0: HostLink<'static> = HostLink {
        name: "br0",
        is_bridge: true,
        standing: Standing::Foreign,
    };
    const CNI0: HostLink<'static> = HostLink {
        name: "cni0",
        is_bridge: true,
        standing: Standing::GrantedBridge,
    };
    const MY_VETH: HostLink<'static> = HostLink {
        name: "veth1234abcd",
        is_bridge: false,
        standing: Standing::Own,
    };
    const ALL: [LinkOp; 9] = [
        LinkOp::Up,
        LinkOp::Down,
        LinkOp::Mtu,
        LinkOp::Mac,
        LinkOp::Promiscuous,
        LinkOp::Hairpin,
        LinkOp::SetMaster,
        LinkOp::Delete,
        LinkOp::Address,
    ];

    fn is_denied(r: Result<(), CapError>) -> bool {
        matches!(
            r.err().and_then(|e| e.guest().cloned()),
            Some(crate::runtime::bindings::wasm_cni::plugin::types::Error::Denied(_))
        )
    }

    #[test]
    fn own_links_are_fully_granted() {
        for op in ALL {
            assert!(check_link(MY_VETH, op).is_ok(), "{op:?}");
        }
    }

    #[test]
    fn foreign_links_and_bridges_are_untouchable() {
        for link in [ETH0, BR0] {
            for op in ALL {
                assert!(is_denied(check_link(link, op)), "{op:?} on {}", link.name);
            }
        }
    }

    #[test]
    fn granted_bridges_are_granted_in_part() {
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
            assert!(is_denied(check_link(CNI0, op)), "{op:?}");
        }
    }

    #[test]
    fn own_ports_go_only_under_granted_bridges() {
        assert!(check_master(MY_VETH, Some(CNI0)).is_ok());
        assert!(
            is_denied(check_master(MY_VETH, Some(BR0))),
            "not onto the node's LAN bridge"
        );
        assert!(is_denied(check_master(MY_VETH, Some(ETH0))));
        assert!(
            is_denied(check_master(ETH0, Some(CNI0))),
            "cannot steal the uplink"
        );
        assert!(check_master(MY_VETH, None).is_ok());
    }

    #[test]
    fn node_addresses_and_masquerade_follow_what_ipam_assigned() {
        let assigned = Assigned::default();
        let gw: IpNetwork = "10.244.0.1/16".parse().unwrap();
        assert!(
            is_denied(check_address(CNI0, &gw, &assigned)),
            "nothing assigned yet"
        );
        assigned.record(["10.244.0.2/16".parse().unwrap()]);
        assert!(check_address(CNI0, &gw, &assigned).is_ok());
        for bad in [
            "169.254.169.254/32",
            "10.244.0.1/8",
            "0.0.0.0/0",
            "10.245.0.1/16",
        ] {
            assert!(
                is_denied(check_address(CNI0, &bad.parse().unwrap(), &assigned)),
                "{bad}"
            );
        }
        assert!(
            is_denied(check_address(BR0, &gw, &assigned)),
            "not on a foreign bridge"
        );
        assert!(check_masquerade(&"10.244.0.2/16".parse().unwrap(), &assigned).is_ok());
        assert!(
            is_denied(check_masquerade(
                &"10.244.0.3/16".parse().unwrap(),
                &assigned
            )),
            "another pod's"
        );
    }

    #[test]
    fn host_sysctls_are_forwarding_on_and_granted_links_only() {
        fn lookup(name: &str) -> Option<HostLink<'_>> {
            match name {
                "cni0" => Some(CNI0),
                "eth0" => Some(ETH0),
                "br0" => Some(BR0),
                _ => None,
            }
        }
        let key = |k: &str| SysctlKey::parse(k).unwrap();
        assert!(check_sysctl_write(&key("net.ipv4.ip_forward"), "1", lookup).is_ok());
        assert!(check_sysctl_write(&key("net.ipv6.conf.all.forwarding"), "1", lookup).is_ok());
        assert!(
            is_denied(check_sysctl_write(&key("net.ipv4.ip_forward"), "0", lookup)),
            "never off"
        );
        assert!(check_sysctl_write(&key("net/ipv6/conf/cni0/accept_ra"), "0", lookup).is_ok());
        assert!(is_denied(check_sysctl_write(
            &key("net/ipv6/conf/br0/accept_ra"),
            "0",
            lookup
        )));
        assert!(is_denied(check_sysctl_write(
            &key("net/ipv4/conf/eth0/rp_filter"),
            "0",
            lookup
        )));
        assert!(is_denied(check_sysctl_write(
            &key("net.ipv4.conf.all.rp_filter"),
            "0",
            lookup
        )));
        assert!(is_denied(check_sysctl_write(
            &key("net.core.somaxconn"),
            "1",
            lookup
        )));
        assert!(check_sysctl_write(&key("net/ipv4/conf/nosuch/arp_notify"), "1", lookup).is_err());
    }
}
