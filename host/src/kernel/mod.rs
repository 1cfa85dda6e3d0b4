//! The node, as the capabilities see it: a [`Kernel`] trait with one real
//! implementation ([`linux::Linux`]: rtnetlink, namespaces, `/proc/sys/net`,
//! nftables). The capabilities decide nothing here and this layer knows
//! nothing of wasm or grants, so a simulated node can take its place.
//!
//! Namespaces are named by [`Ns`]: the node's (`Host`, the namespace the
//! plugin was called in) and the request's container (`CNI_NETNS`). Links
//! are changed by index, so what a grant checked is what changes.

pub mod addr;
pub mod conntrack;
pub mod exec;
pub mod hostport;
pub mod link;
pub mod linux;
pub mod listeners;
pub mod netlink;
pub mod netns;
pub mod nfnetlink;
pub mod nft;
pub mod reference;
pub mod resolv_conf;
pub mod route;
pub mod sim;
pub mod spawn;
pub mod spoof_check;
pub mod store;
pub mod sysctl;

use futures::future::BoxFuture;
use hostport::{Forward, HostPort};
use ipnetwork::IpNetwork;
use link::{LinkChange, LinkState, PortVlan};
use route::RouteSpec;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use sysctl::SysctlKey;

/// The two namespaces a call may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ns {
    Host,
    Container,
}

impl fmt::Display for Ns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ns::Host => "node's namespace",
            Ns::Container => "container namespace",
        })
    }
}

/// An address on a link: (link index, address with prefix).
pub type LinkAddress = (u32, IpNetwork);

pub type KFuture<'a, T> = BoxFuture<'a, io::Result<T>>;

/// What the capabilities ask of the node. Errors carry the kernel's errno.
pub trait Kernel: Send + Sync {
    /// Open the container namespace now, if not yet. `NotFound` when the
    /// request has none or it is gone; `InvalidInput` when the path is not
    /// a network namespace.
    fn open_container(&self) -> KFuture<'_, ()>;
    /// (device, inode) of a namespace, once open.
    fn namespace_id(&self, ns: Ns) -> Option<(u64, u64)>;

    fn link_get<'a>(&'a self, ns: Ns, name: &'a str) -> KFuture<'a, LinkState>;
    fn link_get_index(&self, ns: Ns, index: u32) -> KFuture<'_, LinkState>;
    fn link_list(&self, ns: Ns) -> KFuture<'_, Vec<LinkState>>;
    /// A bridge under `name`, up (as rtnetlink's builder makes it).
    fn bridge_add<'a>(&'a self, ns: Ns, name: &'a str, mtu: Option<u32>) -> KFuture<'a, ()>;
    /// A veth pair in one request, each end born in its namespace.
    fn veth_add<'a>(
        &'a self,
        end: (Ns, &'a str),
        peer: (Ns, &'a str),
        mtu: Option<u32>,
        mac: Option<Vec<u8>>,
    ) -> KFuture<'a, ()>;
    fn link_set(&self, ns: Ns, index: u32, change: LinkChange) -> KFuture<'_, ()>;
    fn link_del(&self, ns: Ns, index: u32) -> KFuture<'_, ()>;
    /// The VLANs of a bridge port.
    fn port_vlans(&self, ns: Ns, index: u32) -> KFuture<'_, Vec<PortVlan>>;
    /// Add (`add`) or remove VLANs on a bridge port.
    fn port_vlan_change(&self, ns: Ns, index: u32, add: bool, vlan: PortVlan) -> KFuture<'_, ()>;
    /// Wait until the link is up and, if a bridge port, forwarding.
    fn wait_forwarding<'a>(
        &'a self,
        ns: Ns,
        name: &'a str,
        timeout: Duration,
    ) -> KFuture<'a, LinkState>;

    /// Addresses on one link, or on every link of the namespace.
    fn addr_list(&self, ns: Ns, index: Option<u32>) -> KFuture<'_, Vec<LinkAddress>>;
    /// Every address of one family (`v6`) in `ns`.
    fn addr_list_of(&self, ns: Ns, v6: bool) -> KFuture<'_, Vec<LinkAddress>> {
        Box::pin(async move {
            let all = self.addr_list(ns, None).await?;
            Ok(all.into_iter().filter(|(_, a)| a.is_ipv6() == v6).collect())
        })
    }
    fn addr_add(&self, ns: Ns, index: u32, addr: IpNetwork, no_dad: bool) -> KFuture<'_, ()>;
    fn addr_del(&self, ns: Ns, index: u32, addr: IpNetwork) -> KFuture<'_, ()>;

    /// Unicast routes in `table`, or in every table.
    fn route_list(&self, ns: Ns, table: Option<u32>) -> KFuture<'_, Vec<RouteSpec>>;
    /// Every route of one family (`v6`) in `ns`, all tables.
    fn route_list_of(&self, ns: Ns, v6: bool) -> KFuture<'_, Vec<RouteSpec>> {
        Box::pin(async move {
            let all = self.route_list(ns, None).await?;
            Ok(all.into_iter().filter(|r| r.dst.is_ipv6() == v6).collect())
        })
    }
    /// The route the namespace would take to `dst` (`ip route get`);
    /// `None`: unreachable.
    fn route_to(&self, ns: Ns, dst: IpAddr) -> KFuture<'_, Option<route::RouteTo>>;
    fn route_add<'a>(&'a self, ns: Ns, route: &'a RouteSpec) -> KFuture<'a, ()>;
    fn route_del<'a>(&'a self, ns: Ns, route: &'a RouteSpec) -> KFuture<'a, ()>;

    fn sysctl_read<'a>(&'a self, ns: Ns, key: &'a SysctlKey) -> KFuture<'a, String>;
    fn sysctl_write<'a>(&'a self, ns: Ns, key: &'a SysctlKey, value: &'a str) -> KFuture<'a, ()>;

    /// Masquerade `addrs` in rules marked `owner`, in the node's namespace;
    /// given up (and never committed later) at `deadline`. True when this
    /// created wasm-cni's table.
    fn masquerade<'a>(
        &'a self,
        owner: &'a str,
        addrs: &'a [IpNetwork],
        deadline: Instant,
    ) -> KFuture<'a, bool>;
    /// Remove one of wasm-cni's tables if it holds no rule; true if it did.
    fn drop_table_if_unused(&self, table: Table, deadline: Instant) -> KFuture<'_, bool>;
    /// Drop frames from the node link with index `port` whose source MAC
    /// is not `mac`, in a rule marked `owner`; true when this created the
    /// table.
    fn spoof_check<'a>(
        &'a self,
        owner: &'a str,
        port: u32,
        mac: &'a str,
        deadline: Instant,
    ) -> KFuture<'a, bool>;
    /// Remove the rules marked `owner` (masquerade, spoof check, host
    /// ports); how many there were.
    fn unmasquerade<'a>(&'a self, owner: &'a str, deadline: Instant) -> KFuture<'a, usize>;
    /// Remove every rule of `network` whose mark is not in `keep`; how many
    /// went.
    fn retain_rules<'a>(
        &'a self,
        network: &'a str,
        keep: &'a [String],
        deadline: Instant,
    ) -> KFuture<'a, usize>;
    /// Remove what the reference bridge left for this attachment's
    /// masquerade (see `reference`); how many rules and chains went.
    fn remove_reference_masquerade<'a>(
        &'a self,
        network: &'a str,
        container_id: &'a str,
        ifname: &'a str,
        deadline: Instant,
    ) -> KFuture<'a, usize>;
    /// Forward host ports to the container in rules marked `owner`; true
    /// when this created wasm-cni's table's host-port part. A port another
    /// attachment holds: `AlreadyExists`, and nothing changed.
    fn map_ports<'a>(
        &'a self,
        owner: &'a str,
        fwd: &'a Forward,
        deadline: Instant,
    ) -> KFuture<'a, bool>;
    /// The host ports held by rules marked `owner`.
    fn mapped_ports<'a>(&'a self, owner: &'a str, deadline: Instant) -> KFuture<'a, Vec<HostPort>>;
    /// Remove only the host ports marked `owner` (a failed `portmap` ADD:
    /// the attachment's other rules stay); how many there were.
    fn unmap_ports<'a>(&'a self, owner: &'a str, deadline: Instant) -> KFuture<'a, usize>;
    /// The attachments whose host ports take the node's loopback
    /// addresses: (mark, container address).
    fn loopback_ports(&self, deadline: Instant) -> KFuture<'_, Vec<(String, IpAddr)>>;
    /// Delete the node's UDP conntrack entries to these (node address,
    /// port) pairs; how many.
    fn clear_udp_conntrack<'a>(&'a self, targets: &'a [(IpAddr, u16)]) -> KFuture<'a, usize>;
    /// The sockets that serve in the node's namespace (TCP listening, UDP
    /// bound): what a host port must not take over.
    fn listeners(&self) -> KFuture<'_, Vec<listeners::Listener>>;
    /// Every masquerade rule in wasm-cni's table: (its mark, its address).
    fn masquerade_rules(&self, deadline: Instant) -> KFuture<'_, Vec<(String, IpNetwork)>>;
    /// The addresses masqueraded by rules marked `owner`.
    fn masqueraded<'a>(&'a self, owner: &'a str, deadline: Instant) -> KFuture<'a, Vec<IpNetwork>>;
}

/// wasm-cni's nftables tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `inet wasm-cni`: masquerade and host ports.
    Masquerade,
    /// `bridge wasm-cni`: MAC spoof checks.
    SpoofCheck,
}

/// The ports of the bridge with this index.
pub async fn ports(kernel: &dyn Kernel, ns: Ns, bridge: u32) -> io::Result<Vec<LinkState>> {
    Ok(kernel
        .link_list(ns)
        .await?
        .into_iter()
        .filter(|l| l.master == Some(bridge))
        .collect())
}
