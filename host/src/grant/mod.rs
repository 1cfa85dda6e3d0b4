//! What one CNI call may change: the one place that decides.
//!
//! The capabilities gather the facts (which link, in which namespace, what
//! the kernel says about it) and ask the call's [`Grant`]; it answers yes
//! or `denied`, and nothing else in the host makes such a decision.
//!
//! In the container namespace a guest may do anything (it is the request's
//! own sandbox), except what the command forbids: DEL creates nothing, and
//! CHECK changes nothing. In the node's namespace a link has a standing:
//!
//! - **own**: created by this call (the host end of its veth, its bridge).
//!   Anything.
//! - **granted bridge**: a bridge granted to this call's network: one
//!   wasm-cni created for the network (its alias is the network's mark,
//!   `owner::bridge_mark`); one the config names in `"bridge"` that no
//!   other network marked and that has no port but veths (a bridge the
//!   reference plugins or an operator made for pods); or one the node
//!   policy shares with the network (`sharedBridges`). It may be brought
//!   up, have its MAC pinned, be made promiscuous, carry the gateway
//!   (`address`), have the allow-listed sysctls set (`sysctl`), and take
//!   the call's own links as ports. Not: down, MTU, a master, hairpin,
//!   deletion.
//! - **foreign**: everything else (the uplink, other pods' veths, another
//!   network's bridge, a bridge on the node's LAN). Read only.
//!
//! Beyond links: node addresses follow what IPAM assigned in this call
//! (`address`), masquerade covers only the addresses IPAM assigned, routes
//! in the node's namespace are not granted (one through the call's own veth
//! could draw the node's traffic into the container), and reading is
//! always allowed.

pub mod address;
pub mod sysctl;

use crate::caps::CapError;
use crate::kernel::Ns;
use crate::kernel::link::LinkState;
use crate::kernel::sysctl::SysctlKey;
use crate::owner::{BridgeOwner, bridge_owner};
pub use address::{AssignedIp, NodeAddress};
use ipnetwork::IpNetwork;
use std::collections::HashSet;
use std::fmt;

/// The CNI command the call serves, as far as grants go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Add,
    /// Undoes: creates nothing (no links, addresses, rules, reservations).
    Del,
    /// Only reads.
    Check,
}

/// Where a node-namespace link stands with this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Own,
    GrantedBridge,
    Foreign,
}

/// A node-namespace link, as far as the grant cares.
#[derive(Debug, Clone, Copy)]
pub struct HostLink<'a> {
    pub name: &'a str,
    pub is_bridge: bool,
    pub standing: Standing,
}

/// A change to a link.
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
}

/// How a bridge wasm-cni did not make for a network is granted to it.
const BRIDGE_GRANT: &str = "a bridge wasm-cni did not create for the network is granted only when the config names it in \"bridge\", no other network's mark is on it and its only ports are veths, or when the node policy's \"sharedBridges\" shares it";

/// The most links one call may create: a plugin needs two or three.
pub const MAX_CREATED: usize = 16;

/// The grant of one call: its network, its command, what the config and the
/// node policy give it, and what it has made so far.
#[derive(Debug)]
pub struct Grant {
    network: String,
    phase: Phase,
    /// The config's `"bridge"`: a bridge nobody marked may be used.
    named_bridge: Option<String>,
    /// Bridges the node policy shares with this network.
    shared_bridges: Vec<String>,
    /// Links this call created, by namespace and index.
    created: HashSet<(Ns, u32)>,
    /// What IPAM assigned in this call.
    assigned: Vec<AssignedIp>,
    /// Addresses this call masqueraded already.
    masqueraded: Vec<IpNetwork>,
}

fn denied(what: impl fmt::Display) -> CapError {
    CapError::denied(what)
}

impl Grant {
    pub fn new(
        network: &str,
        phase: Phase,
        named_bridge: Option<String>,
        shared_bridges: Vec<String>,
    ) -> Self {
        Grant {
            network: network.to_string(),
            phase,
            named_bridge,
            shared_bridges,
            created: HashSet::new(),
            assigned: Vec::new(),
            masqueraded: Vec::new(),
        }
    }

    pub fn network(&self) -> &str {
        &self.network
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    // --- What the call learns as it goes.

    pub fn record_created(&mut self, ns: Ns, index: u32) {
        self.created.insert((ns, index));
    }

    pub fn forget_created(&mut self, ns: Ns, index: u32) {
        self.created.remove(&(ns, index));
    }

    pub fn created(&self, ns: Ns, index: u32) -> bool {
        self.created.contains(&(ns, index))
    }

    pub fn record_assigned(&mut self, ips: impl IntoIterator<Item = AssignedIp>) {
        self.assigned.extend(ips);
    }

    // --- Standing.

    /// The one case where standing depends on a bridge's ports: a bridge no
    /// network marked, named by the config.
    pub fn needs_ports(&self, link: &LinkState) -> bool {
        link.kind == "bridge"
            && !self.created(Ns::Host, link.index)
            && !self.shared_bridges.contains(&link.name)
            && bridge_owner(link.alias.as_deref(), &self.network) == BridgeOwner::Unmarked
            && self.named_bridge.as_deref() == Some(link.name.as_str())
    }

    /// Where a node link stands; `ports` are the bridge's ports when
    /// [`Grant::needs_ports`] asked for them.
    pub fn standing(&self, link: &LinkState, ports: Option<&[LinkState]>) -> Standing {
        if self.created(Ns::Host, link.index) {
            return Standing::Own;
        }
        if link.kind != "bridge" {
            return Standing::Foreign;
        }
        if self.shared_bridges.contains(&link.name) {
            return Standing::GrantedBridge;
        }
        match bridge_owner(link.alias.as_deref(), &self.network) {
            BridgeOwner::This => Standing::GrantedBridge,
            BridgeOwner::Other => Standing::Foreign,
            // Taken over only when nothing but pods hangs off it: a bridge
            // with the node's uplink or a VM tap on it is the LAN's.
            BridgeOwner::Unmarked
                if self.named_bridge.as_deref() == Some(link.name.as_str())
                    && ports.is_some_and(|p| p.iter().all(|l| l.kind == "veth")) =>
            {
                Standing::GrantedBridge
            }
            BridgeOwner::Unmarked => Standing::Foreign,
        }
    }

    // --- Decisions, one per operation.

    fn phase_allows(&self, what: &str, creates: bool) -> Result<(), CapError> {
        match self.phase {
            Phase::Check => Err(denied(format_args!("{what}: CHECK only reads"))),
            Phase::Del if creates => Err(denied(format_args!("{what}: DEL creates nothing"))),
            _ => Ok(()),
        }
    }

    /// Creating a link (a bridge or a veth pair).
    pub fn create_link(&self, ns: Ns, what: &str, created_so_far: usize) -> Result<(), CapError> {
        self.phase_allows(&format!("create {what} in the {ns}"), true)?;
        if created_so_far >= MAX_CREATED {
            return Err(denied(format_args!(
                "create {what}: a call may create at most {MAX_CREATED} links"
            )));
        }
        Ok(())
    }

    /// Changing a link: anything in the container, by standing on the node.
    pub fn change_link(&self, ns: Ns, link: HostLink<'_>, op: LinkOp) -> Result<(), CapError> {
        self.phase_allows(&format!("{op:?} on link {:?}", link.name), false)?;
        if ns == Ns::Container {
            return Ok(());
        }
        let allowed = match link.standing {
            Standing::Own => true,
            Standing::GrantedBridge => {
                matches!(op, LinkOp::Up | LinkOp::Mac | LinkOp::Promiscuous)
            }
            Standing::Foreign => false,
        };
        if allowed {
            Ok(())
        } else if link.is_bridge && link.standing == Standing::Foreign {
            Err(denied(format_args!(
                "{op:?} on bridge {:?} in the node's namespace: it is not granted to network {:?} ({BRIDGE_GRANT})",
                link.name, self.network
            )))
        } else {
            Err(denied(format_args!(
                "{op:?} on link {:?} ({:?}) in the node's namespace: a plugin changes only links it created and bridges granted to network {:?}",
                link.name, link.standing, self.network
            )))
        }
    }

    /// Enslaving `port` to `master` (`None`: releasing it).
    pub fn set_master(
        &self,
        ns: Ns,
        port: HostLink<'_>,
        master: Option<HostLink<'_>>,
    ) -> Result<(), CapError> {
        self.change_link(ns, port, LinkOp::SetMaster)?;
        if ns == Ns::Container {
            return Ok(());
        }
        match master {
            Some(m) if !m.is_bridge => Err(denied(format_args!("{:?} is not a bridge", m.name))),
            Some(m) if m.standing == Standing::Foreign => Err(denied(format_args!(
                "bridge {:?} is not granted to network {:?} ({BRIDGE_GRANT})",
                m.name, self.network
            ))),
            _ => Ok(()),
        }
    }

    /// Adding `addr` to `link`; `node` is every address on the node's links.
    pub fn add_address(
        &self,
        ns: Ns,
        link: HostLink<'_>,
        index: u32,
        addr: &IpNetwork,
        node: &[NodeAddress],
    ) -> Result<(), CapError> {
        self.phase_allows(&format!("add {addr} to {:?}", link.name), true)?;
        if ns == Ns::Container {
            return Ok(());
        }
        self.node_address(link, addr)?;
        address::clear_of_other_links(index, addr, node)
            .map_err(|why| denied(format_args!("address {addr} on {:?}: {why}", link.name)))
    }

    /// Removing `addr` from `link`: on the node, only addresses this call
    /// may add.
    pub fn remove_address(
        &self,
        ns: Ns,
        link: HostLink<'_>,
        addr: &IpNetwork,
    ) -> Result<(), CapError> {
        self.phase_allows(&format!("remove {addr} from {:?}", link.name), false)?;
        if ns == Ns::Container {
            return Ok(());
        }
        self.node_address(link, addr)
    }

    fn node_address(&self, link: HostLink<'_>, addr: &IpNetwork) -> Result<(), CapError> {
        if link.standing == Standing::Foreign {
            return Err(denied(format_args!(
                "addresses on link {:?} (Foreign) in the node's namespace: not created by this call nor a bridge granted to network {:?}",
                link.name, self.network
            )));
        }
        address::gateway_of(&self.assigned, addr)
            .map_err(|why| denied(format_args!("address {addr} on {:?}: {why}", link.name)))
    }

    /// Changing a route: anything in the container, nothing on the node.
    pub fn change_route(&self, ns: Ns, dst: &IpNetwork, creates: bool) -> Result<(), CapError> {
        self.phase_allows(&format!("route to {dst}"), creates)?;
        match ns {
            Ns::Container => Ok(()),
            Ns::Host => Err(denied(format_args!(
                "route to {dst} in the node's namespace: routes there are not granted"
            ))),
        }
    }

    /// Writing a sysctl. `link` is the node link a `conf.<link>` key names.
    pub fn write_sysctl(
        &self,
        ns: Ns,
        key: &SysctlKey,
        value: &str,
        link: Option<HostLink<'_>>,
    ) -> Result<(), CapError> {
        self.phase_allows(&format!("sysctl {key}"), false)?;
        if ns == Ns::Container {
            return Ok(());
        }
        sysctl::allowed(key, value, link.map(|l| l.standing))
            .map(drop)
            .map_err(|why| {
                denied(format_args!(
                    "sysctl {key}={value} in the node's namespace: {why}"
                ))
            })
    }

    /// Masquerading `addrs`: only what IPAM assigned in this call, each
    /// once. The addresses not masqueraded yet, which are then recorded.
    pub fn masquerade(&mut self, addrs: &[IpNetwork]) -> Result<Vec<IpNetwork>, CapError> {
        self.phase_allows("masquerade", true)?;
        let mut new = Vec::new();
        for a in addrs {
            if !self.assigned.iter().any(|ip| ip.address == *a) {
                return Err(denied(format_args!(
                    "masquerade for {a}: not an address IPAM assigned in this call"
                )));
            }
            if !self.masqueraded.contains(a) && !new.contains(a) {
                new.push(*a);
            }
        }
        self.masqueraded.extend(&new);
        Ok(new)
    }

    /// Removing this attachment's masquerade rules.
    pub fn unmasquerade(&self) -> Result<(), CapError> {
        self.phase_allows("remove masquerade rules", false)
    }

    /// Delegating to IPAM: ADD is creating; CHECK may only check.
    pub fn ipam(&self, command: &str) -> Result<(), CapError> {
        match command {
            "CHECK" => Ok(()),
            "ADD" => self.phase_allows("IPAM ADD", true),
            _ => self.phase_allows(&format!("IPAM {command}"), false),
        }
    }
}

/// The IPAM store, for an IPAM plugin serving `phase`: DEL only removes
/// entries, CHECK only reads.
pub fn store_write(phase: Phase, what: &str, creates: bool) -> Result<(), CapError> {
    match phase {
        Phase::Check => Err(denied(format_args!("{what}: CHECK only reads"))),
        Phase::Del if creates => Err(denied(format_args!("{what}: DEL creates no entries"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
