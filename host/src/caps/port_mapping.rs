//! `wasm-cni:plugin/port-mapping` (0.2.0): host ports forwarded to the
//! container, in the attachment's chain of wasm-cni's table (see
//! `kernel::hostport`). The grant checks every mapping against the
//! container's own addresses; the kernel refuses a port another attachment
//! holds. Like masquerade, the change runs as the call's firewall job, so
//! a rollback awaits it whatever happens to the guest, and takes away
//! exactly it (`unmap_ports`), not the attachment's other rules.

use super::firewall::{FirewallCtx, finish};
use super::{CapError, CapResult};
use crate::contract::convert::{ip_from_wit, ip_to_wit, prefix_from_wit, prefix_to_wit};
use crate::contract::wasm_cni::plugin_v2::port_mapping::{
    self, Mapping, Options, Protocol as WitProto,
};
use crate::grant::host_port::{Node, Via};
use crate::kernel::hostport::{Forward, HostPort, Protocol, unspecified};
use crate::kernel::link::LinkState;
use crate::kernel::route::{RouteKind, RouteTo};
use crate::kernel::sysctl::SysctlKey;
use crate::kernel::{Kernel, Ns, Table};
use crate::undo::Change;
use ipnetwork::IpNetwork;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn from_wit(m: Mapping) -> CapResult<HostPort> {
    Ok(HostPort {
        // `0.0.0.0` and `::` are "any", as no address.
        host_ip: m.host_ip.map(ip_from_wit).filter(|ip| !unspecified(*ip)),
        host_port: m.host_port,
        protocol: match m.protocol {
            WitProto::Tcp => Protocol::Tcp,
            WitProto::Udp => Protocol::Udp,
            WitProto::Sctp => Protocol::Sctp,
        },
        container: prefix_from_wit(m.container_ip)?,
        container_port: m.container_port,
    })
}

fn to_wit(m: HostPort) -> Mapping {
    Mapping {
        host_port: m.host_port,
        container_port: m.container_port,
        protocol: match m.protocol {
            Protocol::Tcp => WitProto::Tcp,
            Protocol::Udp => WitProto::Udp,
            Protocol::Sctp => WitProto::Sctp,
        },
        host_ip: m.host_ip.map(ip_to_wit),
        container_ip: prefix_to_wit(m.container),
    }
}

impl FirewallCtx {
    /// What the node says about forwarding `asked` to this call's
    /// container: its interface's addresses, how the node reaches each,
    /// which host addresses are the node's, the node's listening sockets.
    async fn node_facts(&self, asked: &[HostPort]) -> CapResult<Node> {
        let ifname = self.ifname().to_string();
        let io = |what: String| move |e| CapError::io(what, e);
        self.kernel
            .open_container()
            .await
            .map_err(io("the container namespace".into()))?;
        let link = self
            .kernel
            .link_get(Ns::Container, &ifname)
            .await
            .map_err(io(format!("{ifname} in the container")))?;
        let container_addrs: Vec<IpNetwork> = self
            .kernel
            .addr_list(Ns::Container, Some(link.index))
            .await
            .map_err(io(format!("addresses of {ifname} in the container")))?
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        let mut routes = Vec::new();
        for a in &container_addrs {
            let via = match self.route_to(a.ip()).await? {
                Some(RouteTo {
                    kind: RouteKind::Unicast,
                    oif: Some(index),
                }) => {
                    let l = self.node_link(index).await?;
                    let standing = self.shared.lock().grant.standing(&l);
                    Via::Link(l.name, standing)
                }
                Some(RouteTo {
                    kind: RouteKind::Local | RouteKind::Broadcast | RouteKind::Anycast,
                    ..
                }) => Via::Node,
                _ => Via::Nowhere,
            };
            routes.push((a.ip(), via));
        }
        let mut local_host_ips = Vec::new();
        for ip in asked.iter().filter_map(|m| m.host_ip) {
            if !local_host_ips.contains(&ip)
                && self
                    .route_to(ip)
                    .await?
                    .is_some_and(|r| r.kind == RouteKind::Local)
            {
                local_host_ips.push(ip);
            }
        }
        let listeners = self
            .kernel
            .listeners()
            .await
            .map_err(io("the node's listening sockets".into()))?;
        Ok(Node {
            container_addrs,
            routes,
            local_host_ips,
            listeners,
        })
    }

    /// The node's own lookup of `ip` (`ip route get`).
    async fn route_to(&self, ip: IpAddr) -> CapResult<Option<RouteTo>> {
        self.kernel
            .route_to(Ns::Host, ip)
            .await
            .map_err(|e| CapError::io(format!("the node's route to {ip}"), e))
    }

    async fn node_link(&self, index: u32) -> CapResult<LinkState> {
        self.kernel
            .link_get_index(Ns::Host, index)
            .await
            .map_err(|e| CapError::io(format!("link {index} in the node's namespace"), e))
    }

    /// The node's addresses (for the UDP flows to clear).
    async fn node_addresses(&self) -> CapResult<Vec<IpAddr>> {
        Ok(self
            .kernel
            .addr_list(Ns::Host, None)
            .await
            .map_err(|e| CapError::io("the node's addresses", e))?
            .into_iter()
            .map(|(_, a)| a.ip())
            .collect())
    }

    /// `route_localnet` on the node link each IPv4 container address is
    /// routed through (one of this call or its network: the grant checked
    /// it), so packets from 127.0.0.1 may leave through it (the guard
    /// rules keep 127.0.0.0/8 from coming in). Recorded with its prior
    /// value for rollback.
    async fn route_localnet(&self, containers: &[IpNetwork]) -> CapResult<()> {
        for c in containers.iter().filter(|c| c.is_ipv4()) {
            let Some(index) = self.route_to(c.ip()).await?.and_then(|r| r.oif) else {
                continue;
            };
            let link = self.node_link(index).await?;
            let key = SysctlKey::parse(&format!("net.ipv4.conf.{}.route_localnet", link.name))
                .map_err(CapError::invalid)?;
            let what = format!("sysctl {key} in the node's namespace");
            let prior = self
                .kernel
                .sysctl_read(Ns::Host, &key)
                .await
                .map_err(|e| CapError::io(&what, e))?;
            if prior.trim() == "1" {
                continue;
            }
            self.shared.lock().journal.changed(Change::Sysctl {
                index: link.index,
                key: key.clone(),
                prior,
            });
            self.kernel
                .sysctl_write(Ns::Host, &key, "1")
                .await
                .map_err(|e| CapError::io(&what, e))?;
        }
        Ok(())
    }
}

/// The container addresses of `owner`'s host ports that take the node's
/// loopback addresses: what its DEL may release `route_localnet` for.
pub async fn loopback_targets(kernel: &dyn Kernel, owner: &str, deadline: Instant) -> Vec<IpAddr> {
    match kernel.loopback_ports(deadline).await {
        Ok(all) => all
            .into_iter()
            .filter(|(o, _)| o == owner)
            .map(|(_, ip)| ip)
            .collect(),
        Err(e) => {
            crate::log::info(&format!("reading the loopback host ports: {e}"));
            Vec::new()
        }
    }
}

/// Once an attachment's loopback host ports are gone, `route_localnet`
/// back to 0 on each link they were reached through that no other
/// attachment's loopback port is: wasm-cni set it for them (with the
/// guard as its only defence), so it goes with the last of them.
pub async fn release_route_localnet(
    kernel: &dyn Kernel,
    targets: &[IpAddr],
    deadline: Instant,
) -> Result<(), String> {
    if targets.is_empty() {
        return Ok(());
    }
    let oif = |ip: IpAddr| async move {
        kernel
            .route_to(Ns::Host, ip)
            .await
            .ok()
            .flatten()
            .filter(|r| r.kind == RouteKind::Unicast)
            .and_then(|r| r.oif)
    };
    let remaining = kernel
        .loopback_ports(deadline)
        .await
        .map_err(|e| format!("reading the loopback host ports: {e}"))?;
    let mut in_use = Vec::new();
    for (_, ip) in remaining {
        in_use.extend(oif(ip).await);
    }
    let mut done = Vec::new();
    for ip in targets {
        let Some(index) = oif(*ip)
            .await
            .filter(|i| !in_use.contains(i) && !done.contains(i))
        else {
            continue;
        };
        done.push(index);
        let Ok(link) = kernel.link_get_index(Ns::Host, index).await else {
            continue;
        };
        let key = SysctlKey::parse(&format!("net.ipv4.conf.{}.route_localnet", link.name))?;
        if kernel
            .sysctl_read(Ns::Host, &key)
            .await
            .is_ok_and(|v| v.trim() == "1")
        {
            kernel
                .sysctl_write(Ns::Host, &key, "0")
                .await
                .map_err(|e| format!("sysctl {key}: {e}"))?;
        }
    }
    Ok(())
}

/// The (node address, port) pairs whose UDP flows the new mappings take
/// over: the mapping's host address, else every node address it covers.
fn udp_targets(mappings: &[HostPort], node_addrs: &[IpAddr], loopback: bool) -> Vec<(IpAddr, u16)> {
    let mut targets = Vec::new();
    for m in mappings.iter().filter(|m| m.protocol == Protocol::Udp) {
        match m.host_ip {
            Some(ip) => targets.push((ip, m.host_port)),
            None => targets.extend(
                node_addrs
                    .iter()
                    .filter(|a| a.is_ipv4() == m.container.is_ipv4())
                    .filter(|a| !a.is_loopback() || (loopback && a.is_ipv4()))
                    .map(|a| (*a, m.host_port)),
            ),
        }
    }
    targets
}

impl port_mapping::Host for FirewallCtx {
    async fn forward(&mut self, mappings: Vec<Mapping>, options: Options) -> CapResult<()> {
        let asked = mappings
            .into_iter()
            .map(from_wit)
            .collect::<CapResult<Vec<_>>>()?;
        // The phase first: a DEL or CHECK learns nothing of the node.
        self.shared.lock().grant.may_map_host_ports()?;
        let node = self.node_facts(&asked).await?;
        let (mappings, loopback) =
            self.shared
                .lock()
                .grant
                .map_host_ports(&asked, &node, options.masq_mark_bit)?;
        if mappings.is_empty() {
            return Ok(());
        }
        if loopback {
            let containers: Vec<IpNetwork> = mappings.iter().map(|m| m.container).collect();
            self.route_localnet(&containers).await?;
        }
        let udp = udp_targets(&mappings, &self.node_addresses().await?, loopback);
        let fwd = Forward {
            mappings,
            snat: options.snat,
            mark_bit: options.masq_mark_bit,
            loopback,
        };
        // A port another attachment holds is the guest's answer, not a
        // failed change: nothing was made, and nothing is to be undone
        // (the journal learns of the ports only once they are there; the
        // host awaits this job before it reads the journal).
        let held: Arc<Mutex<Option<io::Error>>> = Arc::default();
        let (kernel, owner, deadline) = self.parts();
        let (shared, held_by_job) = (self.shared.clone(), held.clone());
        self.start("forward host ports", async move {
            match kernel.map_ports(&owner, &fwd, deadline).await {
                Ok(created) => {
                    let mut s = shared.lock();
                    s.journal.ports_mapped = true;
                    if created {
                        s.journal.tables_created.push(Table::Masquerade);
                    }
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    *held_by_job.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })
        .await?;
        finish(&self.shared).await.map_err(CapError::other)?;
        if let Some(e) = held.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(CapError::io("forward host ports", e));
        }
        // Stale UDP flows to the ports would go on past the new rules.
        if !udp.is_empty() {
            match self.kernel.clear_udp_conntrack(&udp).await {
                Ok(0) => {}
                Ok(n) => crate::log::debug(&format!("cleared {n} stale UDP conntrack entries")),
                Err(e) => crate::log::info(&format!("clearing stale UDP conntrack entries: {e}")),
            }
        }
        Ok(())
    }

    async fn forwarded(&mut self) -> CapResult<Vec<Mapping>> {
        finish(&self.shared).await.map_err(CapError::other)?;
        let ports = self
            .kernel
            .mapped_ports(self.owner(), self.deadline())
            .await
            .map_err(|e| CapError::io("list host ports", e))?;
        Ok(ports.into_iter().map(to_wit).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_flows_cleared_are_to_the_node_on_the_ports_mapped() {
        let m = |host_ip: Option<&str>, protocol, container: &str| HostPort {
            host_ip: host_ip.map(|s| s.parse().unwrap()),
            host_port: 53,
            protocol,
            container: container.parse().unwrap(),
            container_port: 53,
        };
        let node: Vec<IpAddr> = ["10.244.0.1", "127.0.0.1", "fd00::1", "192.0.2.1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let pair = |a: &str| (a.parse::<IpAddr>().unwrap(), 53);
        let any = [m(None, Protocol::Udp, "10.244.0.5/16")];
        assert_eq!(
            udp_targets(&any, &node, false),
            [pair("10.244.0.1"), pair("192.0.2.1")]
        );
        assert_eq!(udp_targets(&any, &node, true).len(), 3, "and loopback");
        let one = [m(Some("192.0.2.1"), Protocol::Udp, "10.244.0.5/16")];
        assert_eq!(udp_targets(&one, &node, false), [pair("192.0.2.1")]);
        let tcp = [m(None, Protocol::Tcp, "10.244.0.5/16")];
        assert!(udp_targets(&tcp, &node, false).is_empty());
        let six = [m(None, Protocol::Udp, "fd00::5/64")];
        assert_eq!(udp_targets(&six, &node, false), [pair("fd00::1")]);
    }
}
