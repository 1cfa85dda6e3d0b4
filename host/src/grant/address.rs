//! Which addresses a call may put on (or take off) the node's links: the
//! gateway its IPAM assigned, and nothing that could capture the node's own
//! traffic.
//!
//! An address on a node link is a route too (its subnet, through that
//! link), so an address chosen by a hostile IPAM result or config could
//! draw the node's traffic to a container: the metadata service's
//! `169.254.169.254`, the node's loopback, a slice of the node's LAN, a
//! public resolver. Hence: only the gateway of an address IPAM assigned in
//! this call (or the subnet's first address when IPAM named no gateway and
//! the plugin fills one in, as the reference bridge does), inside that
//! subnet, with a prefix no shorter than the subnet's and never shorter
//! than /8 (IPv4) or /16 (IPv6); a subnet inside the node policy's
//! `gatewaySubnets` (by default the private ranges, so no public
//! destination can be captured); never loopback, link-local, multicast,
//! unspecified or broadcast; never an address another node link has, nor
//! a subnet overlapping another node link's or any route of the node's but
//! the default one (in any table).

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

/// A route of the node's (unicast, any table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRoute {
    pub dst: IpNetwork,
    /// Its output link, when it names one.
    pub oif: Option<u32>,
    pub table: u32,
}

/// Where gateway subnets may lie when the node policy does not say: the
/// private ranges (RFC 1918, the shared address space, unique local IPv6).
pub const PRIVATE_SUBNETS: [&str; 5] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
];

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

/// The subnet an address with its prefix stands for.
fn subnet(addr: &IpNetwork) -> IpNetwork {
    IpNetwork::new(addr.network(), addr.prefix()).expect("a prefix that fit already")
}

fn overlap(a: &IpNetwork, b: &IpNetwork) -> bool {
    a.is_ipv4() == b.is_ipv4() && (a.contains(b.network()) || b.contains(a.network()))
}

/// `addr` is the gateway of an address IPAM assigned in this call, in a
/// subnet `allowed` covers.
pub fn gateway_of(
    assigned: &[AssignedIp],
    addr: &IpNetwork,
    allowed: &[IpNetwork],
) -> Result<(), String> {
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
    if !is_gateway {
        return Err(
            "not the gateway of an address IPAM assigned in this call (with a prefix no shorter than its subnet's)"
                .to_string(),
        );
    }
    let net = subnet(addr);
    let inside = allowed.iter().any(|a| {
        a.is_ipv4() == net.is_ipv4() && a.contains(net.network()) && net.prefix() >= a.prefix()
    });
    if !inside {
        let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        return Err(format!(
            "its subnet {net} is outside the node's gateway subnets [{}] (\"gatewaySubnets\" in the node policy)",
            list.join(", ")
        ));
    }
    Ok(())
}

/// `addr` on the link `index` clashes with nothing else on the node: not
/// another link's address or subnet, not a route but the default one.
pub fn clear_of_the_node(
    index: u32,
    addr: &IpNetwork,
    node: &[NodeAddress],
    routes: &[NodeRoute],
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
    for r in routes {
        let own = r.oif == Some(index);
        if r.dst.prefix() > 0 && !own && special(&r.dst.ip()).is_none() && overlap(&r.dst, addr) {
            return Err(format!(
                "its subnet overlaps the node's route to {} (table {})",
                r.dst, r.table
            ));
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

    fn private() -> Vec<IpNetwork> {
        PRIVATE_SUBNETS.iter().map(|s| net(s)).collect()
    }

    fn gateway(assigned: &[AssignedIp], addr: &str) -> Result<(), String> {
        gateway_of(assigned, &net(addr), &private())
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
            assert!(gateway(&a, ok).is_ok(), "{ok}");
        }
        for bad in [
            "10.244.0.1/8",  // shorter than the subnet
            "10.244.0.2/16", // not the gateway
            "10.244.0.5/16", // the container's own address
            "10.245.0.1/16", // another subnet
            "fd00::2/64",    // IPAM named no gateway: only the first address
            "fd00::1/48",
        ] {
            assert!(gateway(&a, bad).is_err(), "{bad}");
        }
        assert!(gateway(&[], "10.244.0.1/16").is_err(), "nothing assigned");
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
            assert!(
                gateway_of(hostile.as_slice(), &gw, &private()).is_err(),
                "{gw}"
            );
        }
    }

    #[test]
    fn gateways_only_in_the_allowed_subnets() {
        let public = [ip("9.9.9.5/8", Some("9.9.9.1")), ip("2001:db8::5/64", None)];
        assert!(
            gateway(&public, "9.9.9.1/8").is_err(),
            "a public resolver's /8"
        );
        assert!(gateway(&public, "2001:db8::1/64").is_err());
        assert!(
            gateway(&[ip("172.32.0.5/24", None)], "172.32.0.1/24").is_err(),
            "past 172.16/12"
        );
        let policy = [net("9.9.0.0/16"), net("2001:db8::/48")];
        assert!(
            gateway_of(&public, &net("9.9.9.1/8"), &policy).is_err(),
            "wider than allowed"
        );
        let narrow = [
            ip("9.9.9.5/24", Some("9.9.9.1")),
            ip("2001:db8::5/64", None),
        ];
        assert!(gateway_of(&narrow, &net("9.9.9.1/24"), &policy).is_ok());
        assert!(gateway_of(&narrow, &net("2001:db8::1/64"), &policy).is_ok());
    }

    #[test]
    fn nothing_another_node_link_has() {
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
        let clear = |index, a: &str| clear_of_the_node(index, &net(a), &node, &[]);
        assert!(clear(7, "10.244.0.1/16").is_ok(), "its own");
        assert!(clear(9, "10.244.0.1/16").is_err(), "same address");
        assert!(clear(9, "10.244.9.1/24").is_err(), "inside cni0's");
        assert!(clear(9, "192.168.0.1/16").is_err(), "covers the LAN");
        assert!(clear(9, "10.88.0.1/16").is_ok());
        assert!(clear(9, "fd00::1/64").is_ok(), "link-local is per link");
    }

    #[test]
    fn no_subnet_over_a_route_of_the_node_but_the_default() {
        let routes = [
            NodeRoute {
                dst: net("0.0.0.0/0"),
                oif: Some(2),
                table: 254,
            },
            NodeRoute {
                dst: net("10.2.0.0/16"),
                oif: Some(2),
                table: 254,
            },
            NodeRoute {
                dst: net("10.244.0.0/16"),
                oif: Some(7),
                table: 254,
            },
            NodeRoute {
                dst: net("10.96.0.0/12"),
                oif: None,
                table: 100,
            },
            NodeRoute {
                dst: net("fe80::/64"),
                oif: Some(2),
                table: 254,
            },
        ];
        let clear = |index, a: &str| clear_of_the_node(index, &net(a), &[], &routes);
        assert!(clear(9, "10.2.5.1/24").is_err(), "inside a routed range");
        assert!(clear(9, "10.0.0.1/8").is_err(), "covers one");
        assert!(clear(9, "10.100.0.1/16").is_err(), "another table's");
        assert!(clear(7, "10.244.0.1/16").is_ok(), "the link's own route");
        assert!(clear(9, "10.244.0.1/16").is_err(), "another bridge's route");
        assert!(
            clear(9, "10.88.0.1/16").is_ok(),
            "only the default route covers it"
        );
        assert!(clear(9, "fd00::1/64").is_ok());
    }
}
