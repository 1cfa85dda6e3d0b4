//! Host ports (`port-mapping`): what one call may forward from the node to
//! its container. The capability gathers what the node says ([`Node`]);
//! this decides.

use super::{Grant, Standing, denied};
use crate::caps::CapError;
use crate::kernel::Ns;
use crate::kernel::hostport::{HostPort, unspecified};
use crate::kernel::listeners::Listener;
use ipnetwork::IpNetwork;
use std::net::IpAddr;

/// The most host ports one call may map: a pod has a few (Kubernetes
/// allows one per container port), and each costs a map element and up to
/// three rules, all in one nftables transaction.
pub const MAX_HOST_PORTS: usize = 1024;

const LOOPBACK_V4: &str = "host ports on 127.0.0.0/8 need route_localnet on the link to the pod, which the node policy does not allow (\"localhostHostPorts\")";

/// What the node says about a call's mappings.
#[derive(Debug, Default)]
pub struct Node {
    /// The addresses of the request's interface in its container.
    pub container_addrs: Vec<IpNetwork>,
    /// How the node reaches each container address (its own lookup, as
    /// `ip route get`).
    pub routes: Vec<(IpAddr, Via)>,
    /// The mappings' host addresses that are the node's own.
    pub local_host_ips: Vec<IpAddr>,
    /// Sockets that serve in the node's namespace.
    pub listeners: Vec<Listener>,
}

/// Where the node sends traffic for an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// Out of this link, which stands so with the call.
    Link(String, Standing),
    /// Nowhere else: it is the node's own (local, broadcast, anycast).
    Node,
    /// Nowhere: unreachable, a blackhole.
    Nowhere,
}

impl Grant {
    /// Mapping host ports at all: during ADD, once per call.
    pub fn may_map_host_ports(&self) -> Result<(), CapError> {
        self.phase_allows(Ns::Host, "map host ports", true)?;
        if self.ports_mapped {
            return Err(denied("map host ports: once per call"));
        }
        Ok(())
    }

    /// Forwarding `mappings` (with the mark bit `mark_bit`) to this call's
    /// container: during ADD, once; only to addresses of the request's
    /// interface (with their own prefixes) that are a pod's (not the
    /// node's, not loopback or link-local, routed by the node through a
    /// link of this call or its network); host ports the policy allows
    /// (`hostPorts`) that no socket of the node serves; no port 0, no two
    /// mappings of one port to different places, no host address of the
    /// other family, none on loopback unless the policy allows it (never
    /// `::1`). The mappings deduplicated, and whether any takes the
    /// loopback addresses (then the host sets `route_localnet`).
    pub fn map_host_ports(
        &mut self,
        mappings: &[HostPort],
        node: &Node,
        mark_bit: u8,
    ) -> Result<(Vec<HostPort>, bool), CapError> {
        self.may_map_host_ports()?;
        if mappings.len() > MAX_HOST_PORTS {
            return Err(CapError::invalid(format!(
                "{} host ports, more than {MAX_HOST_PORTS}",
                mappings.len()
            )));
        }
        if mark_bit > 31 {
            return Err(CapError::invalid(format!(
                "mark bit {mark_bit}: a packet mark has bits 0-31"
            )));
        }
        let mut unique: Vec<HostPort> = Vec::new();
        let mut loopback = false;
        for m in mappings {
            if m.host_port == 0 || m.container_port == 0 {
                return Err(CapError::invalid(format!("{m}: port 0")));
            }
            if let Some(ip) = m.host_ip.filter(|ip| !unspecified(*ip)) {
                check_host_ip(ip, m, self.localhost_host_ports)?;
                if !ip.is_loopback() && !node.local_host_ips.contains(&ip) {
                    return Err(denied(format_args!(
                        "{m}: {ip} is not an address of the node"
                    )));
                }
            }
            let two_places = |u: &&HostPort| {
                u.same_port(m)
                    && u.host_ip == m.host_ip
                    && u.container.is_ipv4() == m.container.is_ipv4()
                    && *u != m
            };
            if let Some(other) = unique.iter().find(two_places) {
                return Err(CapError::invalid(format!(
                    "host ports {other} and {m} are one port to two places"
                )));
            }
            self.check_host_port(m, node)?;
            check_target(m, node)?;
            loopback |= m.container.is_ipv4()
                && self.localhost_host_ports
                && m.host_ip
                    .is_none_or(|ip| unspecified(ip) || ip.is_loopback());
            if unique.contains(m) {
                continue;
            }
            unique.push(m.clone());
        }
        self.ports_mapped = true;
        Ok((unique, loopback))
    }

    /// The host port itself: one the policy allows, that no socket of the
    /// node serves on the addresses the mapping takes.
    fn check_host_port(&self, m: &HostPort, node: &Node) -> Result<(), CapError> {
        if !self
            .host_port_ranges
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&m.host_port))
        {
            return Err(denied(format_args!(
                "{m}: host port {} is not one the node policy allows (\"hostPorts\")",
                m.host_port
            )));
        }
        let takes = |addr: IpAddr| match m.host_ip.filter(|ip| !unspecified(*ip)) {
            _ if unspecified(addr) => true,
            Some(ip) => ip == addr,
            None if addr.is_loopback() => self.localhost_host_ports && addr.is_ipv4(),
            None => addr.is_ipv4() == m.container.is_ipv4(),
        };
        if let Some((_, addr, _)) = node
            .listeners
            .iter()
            .find(|(p, addr, port)| *p == m.protocol && *port == m.host_port && takes(*addr))
        {
            return Err(denied(format_args!(
                "{m}: the node serves {}/{} on {addr} itself, and a host port would take it over",
                m.host_port,
                m.protocol.name()
            )));
        }
        Ok(())
    }
}

/// The container address a mapping goes to: one of the request
/// interface's own, a pod's, behind a link of this call or its network.
fn check_target(m: &HostPort, node: &Node) -> Result<(), CapError> {
    let ip = m.container.ip();
    let refuse = |why: String| Err(denied(format_args!("{m}: {why}")));
    if !node.container_addrs.contains(&m.container) {
        return refuse(format!(
            "{} is not an address of the request's interface in its container",
            m.container
        ));
    }
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    if ip.is_loopback() || ip.is_multicast() || ip.is_unspecified() || link_local {
        return refuse(format!(
            "{ip} is not a pod's address (loopback, link-local or multicast)"
        ));
    }
    let reserved = match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 0 || v4.octets()[0] >= 240,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
    };
    if reserved {
        return refuse(format!("{ip} is not a pod's address (reserved)"));
    }
    match node
        .routes
        .iter()
        .find(|(a, _)| *a == ip)
        .map(|(_, via)| via)
    {
        Some(Via::Link(_, standing)) if *standing != Standing::Foreign => Ok(()),
        Some(Via::Link(link, _)) => refuse(format!(
            "the node routes {ip} through {link}, not a link of this call or its network"
        )),
        Some(Via::Node) => refuse(format!(
            "{ip} is the node's own (a local, broadcast or anycast address)"
        )),
        Some(Via::Nowhere) | None => refuse(format!("the node has no route to {ip}")),
    }
}

fn check_host_ip(ip: IpAddr, m: &HostPort, localhost: bool) -> Result<(), CapError> {
    if ip.is_ipv4() != m.container.is_ipv4() {
        return Err(CapError::invalid(format!(
            "{m}: host address and container address are of different families"
        )));
    }
    if ip.is_multicast() || ip == IpAddr::V4(std::net::Ipv4Addr::BROADCAST) {
        return Err(CapError::invalid(format!(
            "{m}: {ip} is not an address of a node"
        )));
    }
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Err(CapError::invalid(format!(
            "{m}: {ip} is an IPv4-mapped address; name the IPv4 address"
        ))),
        IpAddr::V6(v6) if v6.is_loopback() => Err(denied(format_args!(
            "{m}: Linux cannot forward from ::1 to another host (no route_localnet for IPv6)"
        ))),
        IpAddr::V4(v4) if v4.is_loopback() && !localhost => {
            Err(denied(format_args!("{m}: {LOOPBACK_V4}")))
        }
        _ => Ok(()),
    }
}
