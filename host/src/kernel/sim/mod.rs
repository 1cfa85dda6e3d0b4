//! A simulated node: the [`Kernel`] in memory. The node's namespace and a
//! container's, their links, addresses, routes and sysctls, and
//! wasm-cni's firewall rules, with the kernel's answers (and errnos) for
//! what plugins do, so the capabilities, their grants and their errors are
//! exactly those of a real node. Plugin tests (`wasm-cni-testkit`) and
//! `wasm-cni plan` run on it; it needs no privilege and changes nothing.
//!
//! What it does not model is said where it matters: no STP (a port
//! forwards once up), no DAD, no `local` table, no bridge MTU following
//! its ports, no iptables (the reference plugins' leftovers are none).
//!
//! Parts of a node that could not be read when it was seeded (`plan`
//! without privileges) are [`Unknown`]: calls that reach them still answer,
//! as if they were empty, and are counted so that the plan can say its
//! result depends on them.

mod netns;
pub mod seed;
mod view;

pub use netns::{Namespace, SimLink};
pub use view::{LinkView, NsView, RuleView, Snapshot};

use super::hostport::{Forward, HostPort};
use super::link::{LinkChange, LinkState, PortVlan};
use super::route::RouteSpec;
use super::sysctl::SysctlKey;
use super::{KFuture, Kernel, LinkAddress, Ns, Table};
use ipnetwork::IpNetwork;
use netns::errno;
use rustix::io::Errno;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A rule in one of wasm-cni's tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `inet wasm-cni`: masquerade traffic from `addr` leaving its subnet.
    Masquerade { owner: String, addr: IpNetwork },
    /// `bridge wasm-cni`: drop frames from port `port` not from `mac`.
    SpoofCheck {
        owner: String,
        port: u32,
        mac: String,
    },
    /// `inet wasm-cni`: a host port forwarded to a container (on the
    /// loopback addresses too if `loopback`).
    HostPort {
        owner: String,
        port: HostPort,
        loopback: bool,
    },
}

impl Rule {
    pub fn owner(&self) -> &str {
        match self {
            Rule::Masquerade { owner, .. }
            | Rule::SpoofCheck { owner, .. }
            | Rule::HostPort { owner, .. } => owner,
        }
    }

    fn table(&self) -> Table {
        match self {
            Rule::Masquerade { .. } | Rule::HostPort { .. } => Table::Masquerade,
            Rule::SpoofCheck { .. } => Table::SpoofCheck,
        }
    }
}

/// A part of the node the simulation could not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unknown {
    /// The container's namespace (entering it needs privileges).
    Container,
    /// nftables (listing rules needs `CAP_NET_ADMIN`).
    Firewall,
    /// The reference plugins' iptables rules.
    Iptables,
    /// What a native IPAM plugin would answer (it is never run).
    NativeIpam,
}

#[derive(Debug, Default)]
struct State {
    host: Namespace,
    /// Containers' namespaces, by the path a runtime names them with
    /// (`CNI_NETNS`).
    containers: BTreeMap<String, Namespace>,
    /// Paths that name the node's own namespace.
    node_paths: BTreeSet<String>,
    rules: Vec<Rule>,
    tables: BTreeSet<(u8, &'static str)>,
    next_index: u32,
    next_mac: u32,
    unknown: BTreeSet<Unknown>,
    /// Calls whose answer came from a part of the node that is unknown.
    guessed: Vec<String>,
    /// Sockets that serve in the node's namespace (seeded).
    listeners: Vec<super::listeners::Listener>,
    /// Where the node's namespace's sysctls come from when nothing wrote
    /// them (a seeded node: the real `/proc/sys/net`).
    sysctl_source: Option<SysctlSource>,
}

/// Reads a sysctl of the node's namespace (`net/ipv4/ip_forward`).
pub type ReadSysctl = dyn Fn(&str) -> Option<String> + Send;

/// Where unwritten sysctls of the node's namespace come from.
pub struct SysctlSource(pub Box<ReadSysctl>);

impl std::fmt::Debug for SysctlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SysctlSource")
    }
}

/// The simulated node: its namespace and its containers'. A call sees it
/// through a [`SimKernel`], which gives `Ns::Container` the meaning of
/// its `CNI_NETNS`.
#[derive(Debug)]
pub struct SimNode {
    state: Mutex<State>,
}

/// The node as one call's [`Kernel`].
#[derive(Debug)]
pub struct SimKernel {
    node: Arc<SimNode>,
    /// The call's `CNI_NETNS`.
    netns: Option<String>,
    /// The container namespace was opened (as `CNI_NETNS` is, on first use).
    open: AtomicBool,
}

impl Default for SimNode {
    fn default() -> Self {
        SimNode::new()
    }
}

/// The host-port part of `inet wasm-cni` (its maps and hooks): made by
/// the first mapping, gone with the table.
const HOST_PORTS: (u8, &str) = (0, "inet wasm-cni host ports");

fn table_key(t: Table) -> (u8, &'static str) {
    match t {
        Table::Masquerade => (0, "inet wasm-cni"),
        Table::SpoofCheck => (1, "bridge wasm-cni"),
    }
}

impl SimNode {
    /// A node with `lo` in its namespace and no containers.
    pub fn new() -> SimNode {
        SimNode {
            state: Mutex::new(State {
                host: Namespace::fresh(),
                next_index: 2,
                next_mac: 1,
                ..Default::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A container namespace at `netns`, holding only `lo` (down), as a
    /// runtime makes it.
    pub fn add_container(&self, netns: &str) {
        self.lock()
            .containers
            .entry(netns.to_string())
            .or_insert_with(Namespace::fresh);
    }

    /// `netns` is the node's own namespace (as `/proc/self/ns/net` is).
    pub fn container_is_the_node(&self, netns: &str) {
        self.lock().node_paths.insert(netns.to_string());
    }

    /// The container namespace at `netns` is gone (a DEL after the runtime
    /// removed it).
    pub fn remove_container(&self, netns: &str) {
        self.lock().containers.remove(netns);
    }

    /// The node as a call with this `CNI_NETNS` sees it.
    pub fn kernel(self: &Arc<Self>, netns: Option<&str>) -> SimKernel {
        SimKernel {
            node: self.clone(),
            netns: netns.map(str::to_string),
            open: AtomicBool::new(false),
        }
    }

    /// Mark a part of the node as not read.
    pub fn set_unknown(&self, part: Unknown) {
        self.lock().unknown.insert(part);
    }

    /// Note a call answered from a part of the node that is unknown (a
    /// part nobody marked unknown still counts: a native IPAM plugin is
    /// never run).
    pub fn guess(&self, part: Unknown, what: String) {
        let mut s = self.lock();
        s.unknown.insert(part);
        s.guess(part, what);
    }

    /// A socket that serves in the node's namespace (a node service a
    /// host port must not take over).
    pub fn listen(&self, listener: super::listeners::Listener) {
        self.lock().listeners.push(listener);
    }

    /// The calls answered from an unknown part, in order.
    pub fn guessed(&self) -> Vec<String> {
        self.lock().guessed.clone()
    }

    /// Change a namespace directly (seeding), outside any capability:
    /// the node's (`None`) or a container's.
    pub fn with<T>(
        &self,
        netns: Option<&str>,
        f: impl FnOnce(&mut Namespace) -> T,
    ) -> io::Result<T> {
        let mut s = self.lock();
        let n = s.named_mut(netns)?;
        Ok(f(n))
    }

    /// Seed a link in the node's namespace (`None`) or a container's; its
    /// index is returned.
    pub fn add_link(&self, netns: Option<&str>, name: &str, kind: &str) -> io::Result<u32> {
        let mut s = self.lock();
        let (index, mac) = s.allocate();
        let n = s.named_mut(netns)?;
        n.check_new_name(name)?;
        n.links.insert(
            index,
            SimLink {
                state: netns::link_state(index, name, kind, mac, 1500),
                vlans: Vec::new(),
                hairpin: false,
            },
        );
        Ok(index)
    }

    /// Put a whole namespace in place (seeding from a real node): the
    /// node's (`None`) or a container's. Its link indices must not be used
    /// elsewhere in the node.
    pub fn seed_namespace(&self, netns: Option<&str>, ns: Namespace) {
        let mut s = self.lock();
        let top = ns.links.keys().max().copied().unwrap_or(0);
        s.next_index = s.next_index.max(top + 1);
        match netns {
            None => s.host = ns,
            Some(p) => {
                s.containers.insert(p.to_string(), ns);
            }
        }
    }

    /// Read the node's namespace's sysctls from `source` when nothing in
    /// the simulation wrote them.
    pub fn set_sysctl_source(&self, source: SysctlSource) {
        self.lock().sysctl_source = Some(source);
    }

    /// Seed a rule.
    pub fn add_rule(&self, rule: Rule) {
        let mut s = self.lock();
        s.tables.insert(table_key(rule.table()));
        s.rules.push(rule);
    }

    /// The node as it is now.
    pub fn snapshot(&self) -> Snapshot {
        view::snapshot(&self.lock())
    }
}

/// A namespace of the state, as one call names it.
struct View<'a> {
    s: &'a mut State,
    netns: Option<&'a str>,
    open: bool,
}

impl View<'_> {
    fn ns(&self, ns: Ns) -> io::Result<&Namespace> {
        match ns {
            Ns::Host => Ok(&self.s.host),
            Ns::Container if !self.open => Err(not_open()),
            Ns::Container => self.s.named(self.netns),
        }
    }

    fn ns_mut(&mut self, ns: Ns) -> io::Result<&mut Namespace> {
        match ns {
            Ns::Host => Ok(&mut self.s.host),
            Ns::Container if !self.open => Err(not_open()),
            Ns::Container => self.s.named_mut(self.netns),
        }
    }

    fn observe(&self, ns: Ns, link: &SimLink) -> io::Result<LinkState> {
        Ok(self.ns(ns)?.observe(link, self.s.peer_up(link)))
    }

    /// A sysctl as the namespace has it; the node's falls back to its
    /// source (the real node's, when seeded from it).
    fn sysctl(&self, ns: Ns, key: &SysctlKey) -> io::Result<String> {
        let source = match ns {
            Ns::Host => self.s.sysctl_source.as_ref().map(|f| &*f.0),
            Ns::Container => None,
        };
        self.ns(ns)?.sysctl_read_from(key, source)
    }
}

impl SimKernel {
    fn answer<T>(&self, f: impl FnOnce(&mut View<'_>) -> io::Result<T>) -> KFuture<'_, T>
    where
        T: Send + 'static,
    {
        let mut s = self.node.lock();
        let mut view = View {
            s: &mut s,
            netns: self.netns.as_deref(),
            open: self.open.load(Ordering::Relaxed),
        };
        let r = f(&mut view);
        Box::pin(async move { r })
    }
}

impl State {
    fn allocate(&mut self) -> (u32, Vec<u8>) {
        let index = self.next_index;
        self.next_index += 1;
        let m = self.next_mac;
        self.next_mac += 1;
        // Locally administered, unicast, as the kernel's random ones are.
        (
            index,
            vec![0x0a, 0x58, 0, (m >> 16) as u8, (m >> 8) as u8, m as u8],
        )
    }

    /// The node's namespace (`None`, or a path that names it) or the
    /// container's at a path.
    fn named(&self, netns: Option<&str>) -> io::Result<&Namespace> {
        match netns {
            Some(p) if !self.node_paths.contains(p) => self.containers.get(p).ok_or_else(gone),
            _ => Ok(&self.host),
        }
    }

    fn named_mut(&mut self, netns: Option<&str>) -> io::Result<&mut Namespace> {
        match netns {
            Some(p) if !self.node_paths.contains(p) => self.containers.get_mut(p).ok_or_else(gone),
            _ => Ok(&mut self.host),
        }
    }

    fn all_mut(&mut self) -> impl Iterator<Item = &mut Namespace> {
        std::iter::once(&mut self.host).chain(self.containers.values_mut())
    }

    /// Whether a veth's peer (in whatever namespace) is up.
    fn peer_up(&self, link: &SimLink) -> bool {
        let Some(p) = link.state.peer else {
            return false;
        };
        std::iter::once(&self.host)
            .chain(self.containers.values())
            .filter_map(|n| n.links.get(&p))
            .any(|l| l.state.up && l.state.peer == Some(link.state.index))
    }

    fn guess(&mut self, part: Unknown, what: String) {
        if self.unknown.contains(&part) {
            self.guessed.push(what);
        }
    }

    fn firewall(&mut self, what: &str) {
        self.guess(Unknown::Firewall, what.to_string());
    }

    /// Add rules, making the table if it is not there; true if it was not.
    fn add_rules(&mut self, rules: Vec<Rule>, table: Table) -> bool {
        let created = self.tables.insert(table_key(table));
        self.rules.extend(rules);
        created
    }
}

fn not_open() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        "the container namespace is not open",
    )
}

fn gone() -> io::Error {
    errno(Errno::NOENT, "the container namespace is gone")
}

impl Kernel for SimKernel {
    fn open_container(&self) -> KFuture<'_, ()> {
        let r = self.answer(|v| {
            v.s.guess(Unknown::Container, "open the container namespace".into());
            let Some(p) = v.netns else {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "this request has no CNI_NETNS",
                ));
            };
            v.s.named(Some(p)).map(drop)
        });
        Box::pin(async move {
            r.await?;
            self.open.store(true, Ordering::Relaxed);
            Ok(())
        })
    }

    fn namespace_id(&self, ns: Ns) -> Option<(u64, u64)> {
        match ns {
            Ns::Host => Some((0, 0)),
            Ns::Container => {
                let open = self.open.load(Ordering::Relaxed);
                let s = self.node.lock();
                let p = self.netns.as_deref()?;
                if s.node_paths.contains(p) {
                    return open.then_some((0, 0));
                }
                // Its position among the containers: distinct per path.
                let i = s.containers.keys().position(|k| k == p)?;
                open.then_some((0, i as u64 + 1))
            }
        }
    }

    fn link_get<'a>(&'a self, ns: Ns, name: &'a str) -> KFuture<'a, LinkState> {
        self.answer(|s| {
            let n = s.ns(ns)?;
            let l = n.by_name(name).ok_or_else(|| errno(Errno::NODEV, name))?;
            s.observe(ns, l)
        })
    }

    fn link_get_index(&self, ns: Ns, index: u32) -> KFuture<'_, LinkState> {
        self.answer(|s| {
            let l = s.ns(ns)?.get(index)?;
            s.observe(ns, l)
        })
    }

    fn link_list(&self, ns: Ns) -> KFuture<'_, Vec<LinkState>> {
        self.answer(|s| {
            let n = s.ns(ns)?;
            n.links.values().map(|l| s.observe(ns, l)).collect()
        })
    }

    fn bridge_add<'a>(&'a self, ns: Ns, name: &'a str, mtu: Option<u32>) -> KFuture<'a, ()> {
        self.answer(|s| {
            s.ns_mut(ns)?.check_new_name(name)?;
            let (index, mac) = s.s.allocate();
            let mut link = netns::link_state(index, name, "bridge", mac, mtu.unwrap_or(1500));
            if let Some(m) = mtu
                && !(68..=65535).contains(&m)
            {
                return Err(errno(Errno::INVAL, "mtu"));
            }
            link.mtu = mtu.unwrap_or(1500);
            link.up = true;
            s.ns_mut(ns)?.links.insert(
                index,
                SimLink {
                    state: link,
                    vlans: Vec::new(),
                    hairpin: false,
                },
            );
            Ok(())
        })
    }

    fn veth_add<'a>(
        &'a self,
        end: (Ns, &'a str),
        peer: (Ns, &'a str),
        mtu: Option<u32>,
        mac: Option<Vec<u8>>,
    ) -> KFuture<'a, ()> {
        self.answer(|s| {
            s.ns_mut(end.0)?.check_new_name(end.1)?;
            s.ns_mut(peer.0)?.check_new_name(peer.1)?;
            if end.0 == peer.0 && end.1 == peer.1 {
                return Err(errno(Errno::EXIST, end.1));
            }
            if let Some(m) = mtu
                && !(68..=65535).contains(&m)
            {
                return Err(errno(Errno::INVAL, "mtu"));
            }
            if let Some(m) = &mac
                && (m.len() != 6 || m[0] & 1 == 1)
            {
                return Err(errno(Errno::ADDRNOTAVAIL, "mac"));
            }
            let (a, mac_a) = s.s.allocate();
            let (b, mac_b) = s.s.allocate();
            let elsewhere = end.0 != peer.0;
            let mut one = netns::link_state(a, end.1, "veth", mac.unwrap_or(mac_a), 1500);
            let mut two = netns::link_state(b, peer.1, "veth", mac_b, 1500);
            one.mtu = mtu.unwrap_or(1500);
            two.mtu = mtu.unwrap_or(1500);
            (one.peer, two.peer) = (Some(b), Some(a));
            (one.peer_elsewhere, two.peer_elsewhere) = (elsewhere, elsewhere);
            for (ns, l) in [(end.0, one), (peer.0, two)] {
                s.ns_mut(ns)?.links.insert(
                    l.index,
                    SimLink {
                        state: l,
                        vlans: Vec::new(),
                        hairpin: false,
                    },
                );
            }
            Ok(())
        })
    }

    fn link_set(&self, ns: Ns, index: u32, change: LinkChange) -> KFuture<'_, ()> {
        self.answer(|s| s.ns_mut(ns)?.change(index, change))
    }

    fn link_del(&self, ns: Ns, index: u32) -> KFuture<'_, ()> {
        self.answer(|s| {
            let n = s.ns_mut(ns)?;
            let link = n.get(index)?.state.clone();
            if link.name == "lo" {
                return Err(errno(Errno::OPNOTSUPP, "lo"));
            }
            n.remove(index);
            // A veth goes with its peer, wherever that is.
            if let Some(p) = link.peer {
                for other in s.s.all_mut() {
                    if other
                        .links
                        .get(&p)
                        .is_some_and(|l| l.state.peer == Some(index))
                    {
                        other.remove(p);
                    }
                }
            }
            Ok(())
        })
    }

    fn port_vlans(&self, ns: Ns, index: u32) -> KFuture<'_, Vec<PortVlan>> {
        self.answer(|s| Ok(s.ns(ns)?.get(index)?.vlans.clone()))
    }

    fn port_vlan_change(&self, ns: Ns, index: u32, add: bool, vlan: PortVlan) -> KFuture<'_, ()> {
        self.answer(|s| {
            let n = s.ns_mut(ns)?;
            let link = n.get(index)?.state.clone();
            if link.master.is_none() && link.kind != "bridge" {
                return Err(errno(Errno::INVAL, "not a bridge port"));
            }
            let end = vlan.end.unwrap_or(vlan.vid);
            if vlan.vid == 0 || end >= 4095 || end < vlan.vid {
                return Err(errno(Errno::INVAL, "vlan"));
            }
            let vlans = &mut n.links.get_mut(&index).expect("looked up").vlans;
            // One entry per VLAN, as the kernel keeps them.
            let mut each: Vec<PortVlan> = vlans
                .iter()
                .flat_map(|v| {
                    (v.vid..=v.end.unwrap_or(v.vid)).map(move |id| PortVlan {
                        vid: id,
                        end: None,
                        ..*v
                    })
                })
                .collect();
            if add {
                for id in vlan.vid..=end {
                    if vlan.pvid {
                        for v in each.iter_mut() {
                            v.pvid = false;
                        }
                    }
                    each.retain(|v| v.vid != id);
                    each.push(PortVlan {
                        vid: id,
                        end: None,
                        pvid: vlan.pvid,
                        untagged: vlan.untagged,
                    });
                }
            } else {
                let before = each.len();
                each.retain(|v| !(vlan.vid..=end).contains(&v.vid));
                if each.len() == before {
                    return Err(errno(Errno::NOENT, "vlan"));
                }
            }
            each.sort_by_key(|v| v.vid);
            *vlans = compress(each);
            Ok(())
        })
    }

    fn wait_forwarding<'a>(
        &'a self,
        ns: Ns,
        name: &'a str,
        timeout: Duration,
    ) -> KFuture<'a, LinkState> {
        self.answer(|s| {
            let l = s
                .ns(ns)?
                .by_name(name)
                .ok_or_else(|| errno(Errno::NODEV, name))?;
            let st = s.observe(ns, l)?;
            if st.oper == super::link::OperState::Up && st.port_forwarding != Some(false) {
                Ok(st)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{name} not forwarding after {} ms (oper state {:?})",
                        timeout.as_millis(),
                        st.oper
                    ),
                ))
            }
        })
    }

    fn addr_list(&self, ns: Ns, index: Option<u32>) -> KFuture<'_, Vec<LinkAddress>> {
        self.answer(|s| {
            Ok(s.ns(ns)?
                .addresses
                .iter()
                .filter(|(i, _)| index.is_none_or(|x| x == *i))
                .copied()
                .collect())
        })
    }

    fn addr_add(&self, ns: Ns, index: u32, addr: IpNetwork, _no_dad: bool) -> KFuture<'_, ()> {
        self.answer(|s| s.ns_mut(ns)?.addr_add(index, addr))
    }

    fn addr_del(&self, ns: Ns, index: u32, addr: IpNetwork) -> KFuture<'_, ()> {
        self.answer(|s| s.ns_mut(ns)?.addr_del(index, addr))
    }

    fn route_list(&self, ns: Ns, table: Option<u32>) -> KFuture<'_, Vec<RouteSpec>> {
        self.answer(|s| {
            Ok(s.ns(ns)?
                .routes
                .iter()
                .filter(|r| table.is_none_or(|t| t == r.table))
                .cloned()
                .collect())
        })
    }

    fn route_to(
        &self,
        ns: Ns,
        dst: std::net::IpAddr,
    ) -> KFuture<'_, Option<super::route::RouteTo>> {
        self.answer(|s| Ok(s.ns(ns)?.route_to(dst)))
    }

    fn route_add<'a>(&'a self, ns: Ns, route: &'a RouteSpec) -> KFuture<'a, ()> {
        self.answer(|s| s.ns_mut(ns)?.route_add(route))
    }

    fn route_del<'a>(&'a self, ns: Ns, route: &'a RouteSpec) -> KFuture<'a, ()> {
        self.answer(|s| s.ns_mut(ns)?.route_del(route))
    }

    fn sysctl_read<'a>(&'a self, ns: Ns, key: &'a SysctlKey) -> KFuture<'a, String> {
        self.answer(|s| s.sysctl(ns, key))
    }

    fn sysctl_write<'a>(&'a self, ns: Ns, key: &'a SysctlKey, value: &'a str) -> KFuture<'a, ()> {
        self.answer(|s| {
            // It must exist to be written, and take a value of its kind.
            let now = s.sysctl(ns, key)?;
            netns::check_sysctl_value(&now, value)?;
            s.ns_mut(ns)?.sysctl_write(key, value)
        })
    }

    fn masquerade<'a>(
        &'a self,
        owner: &'a str,
        addrs: &'a [IpNetwork],
        _deadline: Instant,
    ) -> KFuture<'a, bool> {
        self.answer(|s| {
            s.s.firewall("masquerade");
            let rules = addrs
                .iter()
                .map(|a| Rule::Masquerade {
                    owner: owner.to_string(),
                    addr: *a,
                })
                .collect();
            Ok(s.s.add_rules(rules, Table::Masquerade))
        })
    }

    fn drop_table_if_unused(&self, table: Table, _deadline: Instant) -> KFuture<'_, bool> {
        self.answer(|s| {
            s.s.firewall("drop an unused table");
            if s.s.rules.iter().any(|r| r.table() == table) {
                return Ok(false);
            }
            if table == Table::Masquerade {
                s.s.tables.remove(&HOST_PORTS);
            }
            Ok(s.s.tables.remove(&table_key(table)))
        })
    }

    fn spoof_check<'a>(
        &'a self,
        owner: &'a str,
        port: u32,
        mac: &'a str,
        _deadline: Instant,
    ) -> KFuture<'a, bool> {
        self.answer(|s| {
            s.s.firewall("spoof check");
            let rule = Rule::SpoofCheck {
                owner: owner.to_string(),
                port,
                mac: mac.to_string(),
            };
            Ok(s.s.add_rules(vec![rule], Table::SpoofCheck))
        })
    }

    fn unmasquerade<'a>(&'a self, owner: &'a str, _deadline: Instant) -> KFuture<'a, usize> {
        self.answer(|s| {
            s.s.firewall("remove rules");
            let before = s.s.rules.len();
            s.s.rules.retain(|r| r.owner() != owner);
            Ok(before - s.s.rules.len())
        })
    }

    fn retain_rules<'a>(
        &'a self,
        network: &'a str,
        keep: &'a [String],
        _deadline: Instant,
    ) -> KFuture<'a, usize> {
        self.answer(|s| {
            s.s.firewall("garbage-collect rules");
            let before = s.s.rules.len();
            s.s.rules.retain(|r| {
                !super::nft::of_network(r.owner(), network) || keep.iter().any(|k| k == r.owner())
            });
            Ok(before - s.s.rules.len())
        })
    }

    fn remove_reference_masquerade<'a>(
        &'a self,
        _network: &'a str,
        _container_id: &'a str,
        _ifname: &'a str,
        _deadline: Instant,
    ) -> KFuture<'a, usize> {
        self.answer(|s| {
            s.s.guess(
                Unknown::Iptables,
                "remove the reference plugin's rules".into(),
            );
            Ok(0)
        })
    }

    fn map_ports<'a>(
        &'a self,
        owner: &'a str,
        fwd: &'a Forward,
        _deadline: Instant,
    ) -> KFuture<'a, bool> {
        self.answer(|s| {
            s.s.firewall("map host ports");
            // The kernel's answer: a (protocol, port) another attachment
            // holds is refused, as is an attachment's second set (its
            // chain is there), and the batch with it.
            let mut held = None;
            for r in &s.s.rules {
                let Rule::HostPort { owner: o, port, .. } = r else {
                    continue;
                };
                if o == owner {
                    held = Some(
                        "this attachment forwards host ports already (an ADD again without a DEL)"
                            .to_string(),
                    );
                    break;
                }
                if fwd.mappings.iter().any(|m| m.same_port(port)) {
                    held = Some(format!(
                        "host port {}/{} is held by another attachment",
                        port.host_port,
                        port.protocol.name()
                    ));
                }
            }
            if let Some(why) = held {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, why));
            }
            let created = s.s.tables.insert(HOST_PORTS);
            let rules = fwd
                .mappings
                .iter()
                .map(|m| Rule::HostPort {
                    owner: owner.to_string(),
                    port: m.clone(),
                    loopback: fwd.loopback,
                })
                .collect();
            s.s.add_rules(rules, Table::Masquerade);
            Ok(created)
        })
    }

    fn mapped_ports<'a>(
        &'a self,
        owner: &'a str,
        _deadline: Instant,
    ) -> KFuture<'a, Vec<HostPort>> {
        self.answer(|s| {
            s.s.firewall("list host ports");
            Ok(s.s
                .rules
                .iter()
                .filter_map(|r| match r {
                    // The address alone, as nft's rules read back.
                    Rule::HostPort { owner: o, port, .. } if o == owner => Some(HostPort {
                        container: IpNetwork::from(port.container.ip()),
                        ..port.clone()
                    }),
                    _ => None,
                })
                .collect())
        })
    }

    fn unmap_ports<'a>(&'a self, owner: &'a str, _deadline: Instant) -> KFuture<'a, usize> {
        self.answer(|s| {
            s.s.firewall("remove host ports");
            let before = s.s.rules.len();
            s.s.rules
                .retain(|r| !matches!(r, Rule::HostPort { owner: o, .. } if o == owner));
            Ok(before - s.s.rules.len())
        })
    }

    fn loopback_ports(&self, _deadline: Instant) -> KFuture<'_, Vec<(String, std::net::IpAddr)>> {
        self.answer(|s| {
            s.s.firewall("list loopback host ports");
            Ok(s.s
                .rules
                .iter()
                .filter_map(|r| match r {
                    Rule::HostPort {
                        owner,
                        port,
                        loopback: true,
                    } if port.container.is_ipv4()
                        && port.host_ip.is_none_or(|ip| ip.is_loopback()) =>
                    {
                        Some((owner.clone(), port.container.ip()))
                    }
                    _ => None,
                })
                .collect())
        })
    }

    fn clear_udp_conntrack<'a>(
        &'a self,
        _targets: &'a [(std::net::IpAddr, u16)],
    ) -> KFuture<'a, usize> {
        // The simulation keeps no connections.
        self.answer(|_| Ok(0))
    }

    fn listeners(&self) -> KFuture<'_, Vec<super::listeners::Listener>> {
        self.answer(|s| Ok(s.s.listeners.clone()))
    }

    fn masquerade_rules(&self, _deadline: Instant) -> KFuture<'_, Vec<(String, IpNetwork)>> {
        self.answer(|s| {
            s.s.firewall("list masquerade rules");
            Ok(s.s
                .rules
                .iter()
                .filter_map(|r| match r {
                    Rule::Masquerade { owner, addr } => Some((owner.clone(), *addr)),
                    _ => None,
                })
                .collect())
        })
    }

    fn masqueraded<'a>(
        &'a self,
        owner: &'a str,
        _deadline: Instant,
    ) -> KFuture<'a, Vec<IpNetwork>> {
        self.answer(|s| {
            s.s.firewall("list masqueraded addresses");
            Ok(s.s
                .rules
                .iter()
                .filter_map(|r| match r {
                    Rule::Masquerade { owner: o, addr } if o == owner => Some(*addr),
                    _ => None,
                })
                .collect())
        })
    }
}

/// Consecutive VLANs with the same flags as ranges, as `bridge vlan show`
/// compresses them.
fn compress(each: Vec<PortVlan>) -> Vec<PortVlan> {
    let mut out: Vec<PortVlan> = Vec::new();
    for v in each {
        if let Some(last) = out.last_mut()
            && last.end.unwrap_or(last.vid) + 1 == v.vid
            && last.pvid == v.pvid
            && last.untagged == v.untagged
            && !v.pvid
        {
            last.end = Some(v.vid);
            continue;
        }
        out.push(v);
    }
    out
}

#[cfg(test)]
mod tests;
