//! One simulated network namespace: links, addresses, routes and sysctls,
//! with the kernel's rules for each as far as plugins can observe them.
//! Errors carry the errno the kernel answers with, so the capabilities
//! turn them into the same WIT variants as on a real node.

use crate::kernel::link::{LinkChange, LinkState, OperState, PortVlan};
use crate::kernel::route::{RT_SCOPE_LINK, RT_TABLE_MAIN, RouteKind, RouteSpec, RouteTo};
use crate::kernel::sysctl::SysctlKey;
use ipnetwork::IpNetwork;
use rustix::io::Errno;
use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;

/// The kernel's answer: the errno alone, as netlink and `/proc` give it,
/// so that the message and the WIT variant are those of a real node. What
/// was wrong is for the caller to say, as it is on a real node.
pub(super) fn errno(e: Errno, _what: impl std::fmt::Display) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// A link and what the kernel keeps with it.
#[derive(Debug, Clone)]
pub struct SimLink {
    pub state: LinkState,
    pub vlans: Vec<PortVlan>,
    pub hairpin: bool,
}

/// `conf` parameters every link (and `all`, `default`) has, with the
/// kernel's defaults for a new link.
const CONF_V4: &[(&str, &str)] = &[
    ("forwarding", "0"),
    ("arp_notify", "0"),
    ("proxy_arp", "0"),
    ("rp_filter", "0"),
    ("route_localnet", "0"),
    ("send_redirects", "1"),
    ("accept_redirects", "1"),
    ("accept_local", "0"),
];
const CONF_V6: &[(&str, &str)] = &[
    ("forwarding", "0"),
    ("accept_ra", "1"),
    ("accept_dad", "1"),
    ("disable_ipv6", "0"),
    ("keep_addr_on_down", "0"),
    ("proxy_ndp", "0"),
    ("accept_redirects", "1"),
];
/// Parameters outside `conf` that a fresh namespace has.
const GLOBAL: &[(&str, &str)] = &[
    ("net/ipv4/ip_forward", "0"),
    ("net/ipv4/ip_local_port_range", "32768\t60999"),
    ("net/ipv4/ping_group_range", "1\t0"),
    ("net/ipv4/ip_unprivileged_port_start", "1024"),
    ("net/ipv4/tcp_syncookies", "1"),
    ("net/ipv6/route/max_size", "2147483647"),
    ("net/core/somaxconn", "4096"),
];

#[derive(Debug, Clone, Default)]
pub struct Namespace {
    pub links: BTreeMap<u32, SimLink>,
    pub addresses: Vec<(u32, IpNetwork)>,
    pub routes: Vec<RouteSpec>,
    /// Values written or seeded, by key (`net/ipv4/ip_forward`); others
    /// have their defaults.
    pub sysctls: BTreeMap<String, String>,
}

impl Namespace {
    /// A fresh namespace: `lo`, down, index 1.
    pub fn fresh() -> Namespace {
        let mut ns = Namespace::default();
        ns.links.insert(
            1,
            SimLink {
                state: link_state(1, "lo", "", vec![0; 6], 65536),
                vlans: Vec::new(),
                hairpin: false,
            },
        );
        ns
    }

    pub fn by_name(&self, name: &str) -> Option<&SimLink> {
        self.links.values().find(|l| l.state.name == name)
    }

    pub fn get(&self, index: u32) -> io::Result<&SimLink> {
        self.links
            .get(&index)
            .ok_or_else(|| errno(Errno::NODEV, format!("no link with index {index}")))
    }

    fn get_mut(&mut self, index: u32) -> io::Result<&mut SimLink> {
        self.links
            .get_mut(&index)
            .ok_or_else(|| errno(Errno::NODEV, format!("no link with index {index}")))
    }

    /// A link as netlink reports it: the operational state and a port's
    /// forwarding follow from the flags (no STP: a port forwards once up).
    pub fn observe(&self, link: &SimLink, peer_up: bool) -> LinkState {
        let mut s = link.state.clone();
        let carrier = match s.kind.as_str() {
            "veth" => s.up && peer_up,
            "bridge" => {
                s.up && self
                    .links
                    .values()
                    .any(|p| p.state.master == Some(s.index) && p.state.up)
            }
            _ => s.up,
        };
        s.oper = match (s.kind.as_str(), s.up, carrier) {
            ("", true, _) => OperState::Unknown,
            (_, true, true) => OperState::Up,
            (_, true, false) => OperState::LowerLayerDown,
            _ => OperState::Down,
        };
        if s.master.is_some() {
            s.port_forwarding = Some(s.up);
            s.isolated = s.isolated.or(Some(false));
        }
        s
    }

    pub fn check_new_name(&self, name: &str) -> io::Result<()> {
        crate::kernel::link::check_name(name).map_err(|e| errno(Errno::INVAL, e))?;
        if self.by_name(name).is_some() {
            return Err(errno(Errno::EXIST, format!("a link named {name} exists")));
        }
        Ok(())
    }

    pub fn change(&mut self, index: u32, change: LinkChange) -> io::Result<()> {
        let link = self.get(index)?.state.clone();
        match change {
            LinkChange::Master(Some(m)) => {
                let master = self.get(m)?;
                if master.state.kind != "bridge" {
                    return Err(errno(
                        Errno::OPNOTSUPP,
                        format!("{} is not a bridge", master.state.name),
                    ));
                }
                if m == index {
                    return Err(errno(Errno::INVAL, "a link cannot be its own master"));
                }
                self.get_mut(index)?.state.master = Some(m);
                // The kernel gives a new port the default VLAN.
                let vlans = &mut self.get_mut(index)?.vlans;
                vlans.clear();
                vlans.push(PortVlan {
                    vid: 1,
                    end: None,
                    pvid: true,
                    untagged: true,
                });
            }
            LinkChange::Master(None) => {
                let l = self.get_mut(index)?;
                l.state.master = None;
                l.state.port_forwarding = None;
                l.state.isolated = None;
                l.vlans.clear();
                l.hairpin = false;
            }
            // Loopback's addresses are the kernel's, its routes in the
            // `local` table (not modelled).
            LinkChange::Up(up) if link.name == "lo" => {
                self.get_mut(index)?.state.up = up;
                for a in ["127.0.0.1/8", "::1/128"] {
                    let a: IpNetwork = a.parse().expect("an address");
                    if up && !self.addresses.contains(&(index, a)) {
                        self.addresses.push((index, a));
                    }
                }
            }
            LinkChange::Up(up) => {
                self.get_mut(index)?.state.up = up;
                self.link_local(index, up);
                self.connected_routes(index, up);
            }
            LinkChange::Mtu(mtu) => {
                let max = if link.kind == "bridge" || link.kind == "veth" {
                    65535
                } else {
                    65536
                };
                if !(68..=max).contains(&mtu) {
                    return Err(errno(Errno::INVAL, format!("MTU {mtu} out of range")));
                }
                self.get_mut(index)?.state.mtu = mtu;
            }
            LinkChange::Mac(mac) => {
                if mac.len() != 6 || mac[0] & 1 == 1 || mac.iter().all(|b| *b == 0) {
                    return Err(errno(
                        Errno::ADDRNOTAVAIL,
                        format!("{mac:02x?} is not a unicast MAC address"),
                    ));
                }
                self.get_mut(index)?.state.mac = mac;
            }
            LinkChange::Promiscuous(on) => self.get_mut(index)?.state.promiscuous = on,
            LinkChange::AllMulti(on) => self.get_mut(index)?.state.allmulti = on,
            LinkChange::TxQLen(len) => self.get_mut(index)?.state.txqlen = len,
            LinkChange::Alias(a) => {
                self.get_mut(index)?.state.alias = Some(a).filter(|a| !a.is_empty());
            }
            // Kernels since 6.x rename a link that is up, as the
            // conformance suite found.
            LinkChange::Name(name) => {
                if name != link.name {
                    self.check_new_name(&name)?;
                    self.rename_sysctls(&link.name, &name);
                }
                self.get_mut(index)?.state.name = name;
            }
            LinkChange::Hairpin(on) | LinkChange::Isolated(on) if link.master.is_none() => {
                let _ = on;
                return Err(errno(
                    Errno::OPNOTSUPP,
                    format!("{} is not a bridge port", link.name),
                ));
            }
            LinkChange::Hairpin(on) => self.get_mut(index)?.hairpin = on,
            LinkChange::Isolated(on) => self.get_mut(index)?.state.isolated = Some(on),
            LinkChange::VlanFiltering(on) => {
                if link.kind != "bridge" {
                    return Err(errno(
                        Errno::OPNOTSUPP,
                        format!("{} is not a bridge", link.name),
                    ));
                }
                self.get_mut(index)?.state.vlan_filtering = Some(on);
            }
        }
        Ok(())
    }

    /// Remove a link with its addresses, routes, ports and `conf` keys.
    pub fn remove(&mut self, index: u32) -> Option<SimLink> {
        let link = self.links.remove(&index)?;
        self.addresses.retain(|(i, _)| *i != index);
        self.routes.retain(|r| r.oif != Some(index));
        for l in self.links.values_mut() {
            if l.state.master == Some(index) {
                l.state.master = None;
                l.state.port_forwarding = None;
                l.state.isolated = None;
                l.vlans.clear();
            }
        }
        let name = link.state.name.clone();
        self.sysctls.retain(|k, _| conf_link_of(k) != Some(&name));
        Some(link)
    }

    pub fn addr_add(&mut self, index: u32, addr: IpNetwork) -> io::Result<()> {
        self.get(index)?;
        if self
            .addresses
            .iter()
            .any(|(i, a)| *i == index && a.ip() == addr.ip())
        {
            return Err(errno(
                Errno::EXIST,
                format!("{addr} is already on link {index}"),
            ));
        }
        self.addresses.push((index, addr));
        if self.get(index)?.state.up {
            self.add_connected(index, addr);
        }
        Ok(())
    }

    pub fn addr_del(&mut self, index: u32, addr: IpNetwork) -> io::Result<()> {
        self.get(index)?;
        let before = self.addresses.len();
        self.addresses
            .retain(|(i, a)| !(*i == index && a.ip() == addr.ip() && a.prefix() == addr.prefix()));
        if self.addresses.len() == before {
            return Err(errno(
                Errno::ADDRNOTAVAIL,
                format!("{addr} is not on link {index}"),
            ));
        }
        let net = connected(addr);
        let still = self
            .addresses
            .iter()
            .any(|(i, a)| *i == index && connected(*a) == net);
        if !still {
            self.routes
                .retain(|r| !(r.oif == Some(index) && r.scope == RT_SCOPE_LINK && same(r, net)));
        }
        Ok(())
    }

    /// The prefix routes of a link's addresses, there while it is up (as
    /// the kernel adds and removes them).
    fn connected_routes(&mut self, index: u32, up: bool) {
        let addrs: Vec<IpNetwork> = self
            .addresses
            .iter()
            .filter(|(i, _)| *i == index)
            .map(|(_, a)| *a)
            .collect();
        for a in addrs {
            if up {
                self.add_connected(index, a);
            } else {
                let net = connected(a);
                self.routes
                    .retain(|r| !(r.oif == Some(index) && same(r, net)));
            }
        }
    }

    /// The IPv6 link-local address (EUI-64, from the MAC) a link gets when
    /// it comes up, and loses when it goes down; not on `lo`, nor where
    /// IPv6 is disabled.
    fn link_local(&mut self, index: u32, up: bool) {
        let Ok(link) = self.get(index) else { return };
        let (name, m) = (link.state.name.clone(), link.state.mac.clone());
        let disabled = |k: &str| {
            SysctlKey::parse(&format!("net/ipv6/conf/{k}/disable_ipv6"))
                .ok()
                .and_then(|key| self.sysctl_read(&key).ok())
                .is_some_and(|v| v == "1")
        };
        if name == "lo" || m.len() != 6 || disabled(&name) || disabled("all") {
            return;
        }
        let is_ll = |a: &IpNetwork| match a {
            IpNetwork::V6(v) => v.ip().segments()[0] == 0xfe80,
            IpNetwork::V4(_) => false,
        };
        if !up {
            self.addresses.retain(|(i, a)| !(*i == index && is_ll(a)));
            return;
        }
        if self.addresses.iter().any(|(i, a)| *i == index && is_ll(a)) {
            return;
        }
        let ip = std::net::Ipv6Addr::new(
            0xfe80,
            0,
            0,
            0,
            u16::from_be_bytes([m[0] ^ 2, m[1]]),
            u16::from_be_bytes([m[2], 0xff]),
            u16::from_be_bytes([0xfe, m[3]]),
            u16::from_be_bytes([m[4], m[5]]),
        );
        let a = IpNetwork::new(ip.into(), 64).expect("a /64");
        self.addresses.push((index, a));
    }

    fn add_connected(&mut self, index: u32, addr: IpNetwork) {
        let net = connected(addr);
        let host_route = matches!(addr, IpNetwork::V4(_)) && addr.prefix() == 32
            || matches!(addr, IpNetwork::V6(_)) && addr.prefix() == 128;
        if host_route
            || self
                .routes
                .iter()
                .any(|r| r.oif == Some(index) && same(r, net))
        {
            return;
        }
        self.routes.push(RouteSpec {
            unicast: true,
            dst: net.network(),
            dst_len: net.prefix(),
            gw: None,
            oif: Some(index),
            priority: if net.is_ipv6() { Some(256) } else { None },
            mtu: None,
            advmss: None,
            table: RT_TABLE_MAIN,
            scope: RT_SCOPE_LINK,
        });
    }

    /// The kernel's lookup of `dst`, as far as the simulation models
    /// it: the namespace's own addresses (and IPv4 subnet broadcasts, IPv6
    /// subnet-router anycasts of them) are local; else the longest-prefix
    /// route, the first of equals. No policy rules.
    pub fn route_to(&self, dst: IpAddr) -> Option<RouteTo> {
        // As the kernel answers: a local address leaves by `lo`, a
        // broadcast or anycast one by its link.
        for (index, a) in &self.addresses {
            let (kind, oif) = match a {
                _ if a.ip() == dst => (RouteKind::Local, 1),
                IpNetwork::V4(n) if n.prefix() < 31 && IpAddr::V4(n.broadcast()) == dst => {
                    (RouteKind::Broadcast, *index)
                }
                IpNetwork::V6(n) if n.prefix() < 127 && IpAddr::V6(n.network()) == dst => {
                    (RouteKind::Anycast, *index)
                }
                _ => continue,
            };
            return Some(RouteTo {
                kind,
                oif: Some(oif),
            });
        }
        let mut best: Option<&RouteSpec> = None;
        for r in &self.routes {
            let Ok(net) = IpNetwork::new(r.dst, r.dst_len) else {
                continue;
            };
            if net.is_ipv4() == dst.is_ipv4()
                && net.contains(dst)
                && best.is_none_or(|b| r.dst_len > b.dst_len)
            {
                best = Some(r);
            }
        }
        best.map(|r| RouteTo {
            kind: if r.unicast {
                RouteKind::Unicast
            } else {
                RouteKind::Other
            },
            oif: r.oif,
        })
    }

    pub fn route_add(&mut self, route: &RouteSpec) -> io::Result<()> {
        if let Some(oif) = route.oif {
            let link = self.get(oif)?;
            if !link.state.up {
                return Err(errno(
                    Errno::NETDOWN,
                    format!("link {} is down", link.state.name),
                ));
            }
        }
        if let Some(gw) = route.gw {
            let reachable = self.routes.iter().any(|r| {
                r.unicast
                    && r.gw.is_none()
                    && route.oif.is_none_or(|o| r.oif == Some(o))
                    && IpNetwork::new(r.dst, r.dst_len).is_ok_and(|n| n.contains(gw))
            });
            if !reachable {
                return Err(errno(
                    Errno::NETUNREACH,
                    format!("gateway {gw} is not reachable"),
                ));
            }
        }
        if self.routes.iter().any(|r| key(r) == key(route)) {
            return Err(errno(
                Errno::EXIST,
                format!("a route to {}/{} exists", route.dst, route.dst_len),
            ));
        }
        self.routes.push(route.clone());
        Ok(())
    }

    pub fn route_del(&mut self, route: &RouteSpec) -> io::Result<()> {
        // As the kernel matches a delete: what the request names.
        let matches = |r: &RouteSpec| {
            r.dst == route.dst
                && r.dst_len == route.dst_len
                && r.table == route.table
                && route.gw.is_none_or(|g| r.gw == Some(g))
                && route.oif.is_none_or(|o| r.oif == Some(o))
                && route.priority.is_none_or(|p| r.priority == Some(p))
        };
        match self.routes.iter().position(matches) {
            Some(i) => {
                self.routes.remove(i);
                Ok(())
            }
            None => Err(errno(
                Errno::SRCH,
                format!("no route to {}/{}", route.dst, route.dst_len),
            )),
        }
    }

    fn rename_sysctls(&mut self, from: &str, to: &str) {
        let moved: Vec<(String, String)> = self
            .sysctls
            .iter()
            .filter(|(k, _)| conf_link_of(k) == Some(from))
            .map(|(k, v)| {
                (
                    k.replacen(&format!("/{from}/"), &format!("/{to}/"), 1),
                    v.clone(),
                )
            })
            .collect();
        self.sysctls.retain(|k, _| conf_link_of(k) != Some(from));
        self.sysctls.extend(moved);
    }

    /// A parameter's value; `ENOENT` when the namespace has no such file.
    pub fn sysctl_read(&self, key: &SysctlKey) -> io::Result<String> {
        self.sysctl_read_from(key, None)
    }

    /// A parameter's value: as written here, else as `source` (the real
    /// node) has it, else the kernel's default. A link's `conf` key is
    /// there only while the link is (here, whatever the real node has).
    pub fn sysctl_read_from(
        &self,
        key: &SysctlKey,
        source: Option<&super::ReadSysctl>,
    ) -> io::Result<String> {
        let k = key.to_string();
        let missing = || errno(Errno::NOENT, format!("/proc/sys/{k}: no such file"));
        if let Some(v) = self.sysctls.get(&k) {
            return Ok(v.clone());
        }
        if let Some(link) = key.conf_link()
            && self.by_name(link).is_none()
        {
            return Err(missing());
        }
        source
            .and_then(|f| f(&k))
            .or_else(|| self.sysctl_default(key))
            .ok_or_else(missing)
    }

    pub fn sysctl_write(&mut self, key: &SysctlKey, value: &str) -> io::Result<()> {
        self.sysctl_read(key)?;
        let v = value.trim_end_matches('\n');
        if v.is_empty() || v.contains('\n') {
            return Err(errno(Errno::INVAL, format!("{value:?} for {key}")));
        }
        self.sysctls.insert(key.to_string(), v.to_string());
        Ok(())
    }

    fn sysctl_default(&self, key: &SysctlKey) -> Option<String> {
        let c = key.components();
        if let [_, ip, conf, dev, param] = c
            && conf == "conf"
        {
            let table = match ip.as_str() {
                "ipv4" => CONF_V4,
                "ipv6" => CONF_V6,
                _ => return None,
            };
            let exists = dev == "all" || dev == "default" || self.by_name(dev).is_some();
            return table
                .iter()
                .find(|(p, _)| p == param)
                .filter(|_| exists)
                .map(|(_, v)| v.to_string());
        }
        GLOBAL
            .iter()
            .find(|(k, _)| *k == key.to_string())
            .map(|(_, v)| v.to_string())
    }
}

/// Whether `value` is of the kind the kernel takes where `now` is: a
/// parameter that holds integers (most of `net`) takes as many integers
/// (`"1"`, `"32768\t60999"`), nothing else (`EINVAL`, as the kernel's
/// `proc_dointvec` answers `yes` or `7x`). Ranges are not modelled.
pub fn check_sysctl_value(now: &str, value: &str) -> io::Result<()> {
    let ints = |s: &str| -> Option<usize> {
        let fields: Vec<&str> = s.split_whitespace().collect();
        (!fields.is_empty() && fields.iter().all(|f| f.parse::<i64>().is_ok()))
            .then_some(fields.len())
    };
    match ints(now) {
        Some(n) if ints(value) != Some(n) => Err(errno(
            Errno::INVAL,
            format!("{value:?} is not {n} integer(s)"),
        )),
        _ => Ok(()),
    }
}

/// The link a `net/ipv{4,6}/conf/<link>/<param>` key names.
fn conf_link_of(key: &str) -> Option<&str> {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        ["net", _, "conf", dev, _] => Some(dev),
        _ => None,
    }
}

fn connected(a: IpNetwork) -> IpNetwork {
    IpNetwork::new(a.network(), a.prefix()).expect("same prefix")
}

fn same(r: &RouteSpec, net: IpNetwork) -> bool {
    r.dst == net.network() && r.dst_len == net.prefix()
}

/// What makes two routes the same to the kernel.
fn key(r: &RouteSpec) -> (std::net::IpAddr, u8, u32, Option<u32>) {
    (r.dst, r.dst_len, r.table, r.priority)
}

pub fn link_state(index: u32, name: &str, kind: &str, mac: Vec<u8>, mtu: u32) -> LinkState {
    LinkState {
        index,
        name: name.to_string(),
        kind: kind.to_string(),
        mac,
        mtu,
        up: false,
        promiscuous: false,
        allmulti: false,
        // The kernel's default (`lo`, bridges and veths alike).
        txqlen: 1000,
        oper: OperState::Down,
        master: None,
        port_forwarding: None,
        alias: None,
        vlan_filtering: (kind == "bridge").then_some(false),
        isolated: None,
        peer: None,
        peer_elsewhere: false,
    }
}
