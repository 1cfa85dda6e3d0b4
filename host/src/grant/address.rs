//! Which addresses a call may put on (or take off) the node's links: the
//! gateway its IPAM assigned, and nothing that could capture the node's own
//! traffic.
//!
//! An address on a node link is a route too (its subnet, through that
//! link), so an address chosen by a hostile IPAM result or guest could draw
//! the node's traffic to a container: the metadata service's
//! `169.254.169.254`, the node's loopback, a slice of the node's LAN. Hence:
//! only the gateway of an address IPAM assigned in this call (or the
//! subnet's first address when IPAM named no gateway and the plugin fills
//! one in, as the reference bridge does), inside that subnet, with a prefix
//! no shorter than the subnet's and never shorter than /8 (IPv4) or /16
//! (IPv6); never loopback, link-local, multicast, unspecified or broadcast;
//! never an address another node link has, nor a subnet that overlaps
//! another node link's.

use ipnetwork::IpNetwork;
use std::net::IpAddr;

/// An address IPAM assigned in this call, with its gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssignedIp {
    pub address: IpNetwork,
    pub gateway: Option<IpAddr>,
}

/// An address on a node link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddress {
    pub index: u32,
    pub link: String,
    pub address: IpNetwork,
}

/// The shortest prefix a node address may have.
fn min_prefix(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() { 8 } else { 16 }
}

/// The first address of `net`'s subnet: the gateway the bridge fills in.
pub fn first_address(net: &IpNetwork) -> IpAddr {
    match net.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a).wrapping_add(1)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a).wrapping_add(1)).into()),
    }
}

/// Addresses that must never be put on a node link, whatever IPAM says.
fn special(ip: &IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) if a.is_loopback() => Some("loopback"),
        IpAddr::V4(a) if a.is_link_local() => Some("link-local"),
        IpAddr::V4(a) if a.is_multicast() => Some("multicast"),
        IpAddr::V4(a) if a.is_unspecified() => Some("unspecified"),
        IpAddr::V4(a) if a.is_broadcast() => Some("broadcast"),
        IpAddr::V6(a) if a.is_loopback() => Some("loopback"),
        IpAddr::V6(a) if a.is_unicast_link_local() => Some("link-local"),
        IpAddr::V6(a) if a.is_multicast() => Some("multicast"),
        IpAddr::V6(a) if a.is_unspecified() => Some("unspecified"),
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => Some("IPv4-mapped"),
        _ => None,
    }
}

/// `addr` is the gateway of an address IPAM assigned in this call.
pub fn gateway_of(assigned: &[AssignedIp], addr: &IpNetwork) -> Result<(), String> {
    let ip = addr.ip();
    if let Some(kind) = special(&ip) {
        return Err(format!("a {kind} address is never put on a node link"));
    }
    if addr.prefix() < min_prefix(&ip) {
        return Err(format!(
            "a node address's prefix is at least /{}",
            min_prefix(&ip)
        ));
    }
    let is_gateway = assigned.iter().any(|a| {
        let gw = a.gateway.unwrap_or_else(|| first_address(&a.address));
        gw == ip && a.address.contains(gw) && addr.prefix() >= a.address.prefix()
    });
    if is_gateway {
        Ok(())
    } else {
        Err(
            "not the gateway of an address IPAM assigned in this call (with a prefix no shorter than its subnet's)"
                .to_string(),
        )
    }
}

fn overlap(a: &IpNetwork, b: &IpNetwork) -> bool {
    a.is_ipv4() == b.is_ipv4() && (a.contains(b.network()) || b.contains(a.network()))
}

/// `addr` on the link `index` clashes with nothing on the node's other
/// links: not their address, not their subnet.
pub fn clear_of_other_links(
    index: u32,
    addr: &IpNetwork,
    node: &[NodeAddress],
) -> Result<(), String> {
    for n in node.iter().filter(|n| n.index != index) {
        if n.address.ip() == addr.ip() {
            return Err(format!("{} already has it", n.link));
        }
        // Link-local subnets (every veth's fe80::/64) are per link.
        if special(&n.address.ip()).is_none() && overlap(&n.address, addr) {
            return Err(format!("its subnet overlaps {} on {}", n.address, n.link));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    fn ip(address: &str, gateway: Option<&str>) -> AssignedIp {
        AssignedIp {
            address: net(address),
            gateway: gateway.map(|g| g.parse().unwrap()),
        }
    }

    #[test]
    fn only_the_assigned_gateway_with_the_subnets_prefix_or_longer() {
        let a = [
            ip("10.244.0.5/16", Some("10.244.0.1")),
            ip("fd00::5/64", None),
        ];
        for ok in [
            "10.244.0.1/16",
            "10.244.0.1/24",
            "10.244.0.1/32",
            "fd00::1/64",
        ] {
            assert!(gateway_of(&a, &net(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "10.244.0.1/8",  // shorter than the subnet
            "10.244.0.2/16", // not the gateway
            "10.244.0.5/16", // the container's own address
            "10.245.0.1/16", // another subnet
            "fd00::2/64",    // IPAM named no gateway: only the first address
            "fd00::1/48",
        ] {
            assert!(gateway_of(&a, &net(bad)).is_err(), "{bad}");
        }
        assert!(
            gateway_of(&[], &net("10.244.0.1/16")).is_err(),
            "nothing assigned"
        );
    }

    #[test]
    fn never_special_addresses_or_huge_prefixes_whatever_ipam_says() {
        let hostile = [
            ip("127.0.0.5/8", Some("127.0.0.1")),
            ip("169.254.169.5/16", Some("169.254.169.254")),
            ip("224.0.0.5/4", Some("224.0.0.1")),
            ip("10.0.0.5/7", Some("10.0.0.1")),
            ip("fe80::5/64", Some("fe80::1")),
            ip("ff02::5/16", Some("ff02::1")),
            ip("::ffff:10.0.0.5/96", Some("::ffff:10.0.0.1")),
            ip("fd00::5/15", Some("fd00::1")),
            ip("10.9.0.5/16", Some("10.8.0.1")), // a gateway outside the subnet
        ];
        for a in &hostile {
            let gw = IpNetwork::new(a.gateway.unwrap(), a.address.prefix()).unwrap();
            assert!(gateway_of(hostile.as_slice(), &gw).is_err(), "{gw}");
        }
    }

    #[test]
    fn nothing_another_node_link_has_or_routes() {
        let node = [
            NodeAddress {
                index: 2,
                link: "eth0".into(),
                address: net("192.168.1.10/24"),
            },
            NodeAddress {
                index: 2,
                link: "eth0".into(),
                address: net("fe80::1/64"),
            },
            NodeAddress {
                index: 7,
                link: "cni0".into(),
                address: net("10.244.0.1/16"),
            },
        ];
        assert!(
            clear_of_other_links(7, &net("10.244.0.1/16"), &node).is_ok(),
            "its own"
        );
        assert!(
            clear_of_other_links(9, &net("10.244.0.1/16"), &node).is_err(),
            "same address"
        );
        assert!(
            clear_of_other_links(9, &net("10.244.9.1/24"), &node).is_err(),
            "inside cni0's"
        );
        assert!(
            clear_of_other_links(9, &net("192.168.0.1/16"), &node).is_err(),
            "covers the LAN"
        );
        assert!(clear_of_other_links(9, &net("10.88.0.1/16"), &node).is_ok());
        assert!(
            clear_of_other_links(9, &net("fd00::1/64"), &node).is_ok(),
            "link-local is per link"
        );
    }
}
