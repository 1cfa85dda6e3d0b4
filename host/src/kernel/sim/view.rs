//! A simulated node as plain data, to assert on and to print: links by
//! name with their addresses, routes as `ip route` prints them, sysctls
//! that differ from a fresh namespace's, and rules.

use super::{Namespace, Rule, State};
use crate::kernel::route::RouteSpec;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub host: NsView,
    /// Containers' namespaces, by path (`CNI_NETNS`).
    pub containers: BTreeMap<String, NsView>,
    pub rules: Vec<RuleView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NsView {
    pub links: Vec<LinkView>,
    /// `10.22.0.0/16 dev cni0 scope link`, `default via 10.22.0.1 dev eth0`.
    pub routes: Vec<String>,
    /// Values written (or seeded), `net/ipv4/ip_forward` = `1`.
    pub sysctls: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkView {
    pub name: String,
    pub index: u32,
    pub kind: String,
    pub mac: String,
    pub mtu: u32,
    pub up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    pub addresses: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub promiscuous: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allmulti: bool,
    pub txqlen: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hairpin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// `1 pvid untagged`, `100-200`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan_filtering: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleView {
    /// `masquerade`, `spoof-check` or `host-port`.
    pub kind: &'static str,
    pub owner: String,
    /// The masqueraded address, `port <index> mac <mac>`, or the mapping
    /// (`*:8080/tcp -> 10.244.0.5:80`).
    pub matches: String,
}

impl NsView {
    pub fn link(&self, name: &str) -> Option<&LinkView> {
        self.links.iter().find(|l| l.name == name)
    }
}

fn mac(m: &[u8]) -> String {
    crate::contract::convert::mac_to_string(m)
}

fn ns_view(state: &State, ns: &Namespace) -> NsView {
    let name_of = |i: u32| {
        ns.links
            .get(&i)
            .map(|l| l.state.name.clone())
            .or_else(|| {
                // A veth's peer in the other namespace.
                std::iter::once(&state.host)
                    .chain(state.containers.values())
                    .find_map(|n| n.links.get(&i))
                    .map(|l| format!("{} (other namespace)", l.state.name))
            })
            .unwrap_or_else(|| format!("if{i}"))
    };
    let links = ns
        .links
        .values()
        .map(|l| {
            let s = &l.state;
            LinkView {
                name: s.name.clone(),
                index: s.index,
                kind: s.kind.clone(),
                mac: mac(&s.mac),
                mtu: s.mtu,
                up: s.up,
                master: s.master.map(name_of),
                peer: s.peer.map(name_of),
                addresses: ns
                    .addresses
                    .iter()
                    .filter(|(i, _)| *i == s.index)
                    .map(|(_, a)| a.to_string())
                    .collect(),
                promiscuous: s.promiscuous,
                allmulti: s.allmulti,
                txqlen: s.txqlen,
                hairpin: l.hairpin,
                alias: s.alias.clone(),
                vlans: l
                    .vlans
                    .iter()
                    .map(|v| {
                        let mut t = match v.end {
                            Some(e) if e != v.vid => format!("{}-{e}", v.vid),
                            _ => v.vid.to_string(),
                        };
                        if v.pvid {
                            t.push_str(" pvid");
                        }
                        if v.untagged {
                            t.push_str(" untagged");
                        }
                        t
                    })
                    .collect(),
                vlan_filtering: s.vlan_filtering,
            }
        })
        .collect();
    NsView {
        links,
        routes: ns.routes.iter().map(|r| route(r, &name_of)).collect(),
        sysctls: ns.sysctls.clone(),
    }
}

/// A route as `ip route` prints it.
pub fn route(r: &RouteSpec, name_of: &dyn Fn(u32) -> String) -> String {
    let mut t = if r.dst_len == 0 {
        "default".to_string()
    } else {
        format!("{}/{}", r.dst, r.dst_len)
    };
    if !r.unicast {
        t = format!("blackhole {t}");
    }
    if let Some(gw) = r.gw {
        t.push_str(&format!(" via {gw}"));
    }
    if let Some(oif) = r.oif {
        t.push_str(&format!(" dev {}", name_of(oif)));
    }
    if r.table != crate::kernel::route::RT_TABLE_MAIN {
        t.push_str(&format!(" table {}", r.table));
    }
    if r.scope == crate::kernel::route::RT_SCOPE_LINK {
        t.push_str(" scope link");
    }
    if let Some(p) = r.priority {
        t.push_str(&format!(" metric {p}"));
    }
    if let Some(m) = r.mtu {
        t.push_str(&format!(" mtu {m}"));
    }
    if let Some(m) = r.advmss {
        t.push_str(&format!(" advmss {m}"));
    }
    t
}

pub(super) fn snapshot(s: &State) -> Snapshot {
    Snapshot {
        host: ns_view(s, &s.host),
        containers: s
            .containers
            .iter()
            .map(|(p, c)| (p.clone(), ns_view(s, c)))
            .collect(),
        rules: s
            .rules
            .iter()
            .map(|r| match r {
                Rule::Masquerade { owner, addr } => RuleView {
                    kind: "masquerade",
                    owner: owner.clone(),
                    matches: addr.to_string(),
                },
                Rule::SpoofCheck { owner, port, mac } => RuleView {
                    kind: "spoof-check",
                    owner: owner.clone(),
                    matches: format!("port {port} mac {mac}"),
                },
                Rule::HostPort { owner, port, .. } => RuleView {
                    kind: "host-port",
                    owner: owner.clone(),
                    matches: port.to_string(),
                },
            })
            .collect(),
    }
}
