//! What one CNI call may change: the one place that decides.
//!
//! The capabilities gather the facts (which link, in which namespace, what
//! the kernel says about it) and ask the call's [`Grant`]; it answers yes
//! or `denied`, and nothing else in the host makes such a decision.
//!
//! In the container namespace a guest may do anything (it is the request's
//! own sandbox), except what the command forbids: DEL creates nothing, and
//! CHECK changes nothing. On the node (the namespace the plugin was called
//! in) a DEL changes nothing either (it deletes the container's interface,
//! the attachment's rules and its IPAM reservation, none of which is a
//! node link), and for ADD a link has a standing:
//!
//! - **own**: created by this call (the host end of its veth, its bridge).
//!   Anything.
//! - **granted bridge**: a bridge wasm-cni created for this call's network
//!   (its alias is the network's mark, `owner::bridge_mark`), or one the
//!   node policy shares with the network (`sharedBridges`). It may be
//!   brought up, have its MAC pinned, be made promiscuous, carry the
//!   gateway (`address`), have the allow-listed sysctls set (`sysctl`), and
//!   take the call's own links as ports. Not: down, MTU, a master, hairpin,
//!   deletion.
//! - **foreign**: everything else: the uplink, other pods' veths, another
//!   network's bridge, and any bridge wasm-cni did not make, even one a
//!   config names (`docker0` has only veth ports too, and a config is
//!   anyone's: only the node's root can give a bridge away). Read only.
//!
//! Beyond links: node addresses follow what IPAM assigned in this call
//! (`address`), masquerade covers only the addresses IPAM assigned, routes
//! in the node's namespace are not granted (one through the call's own veth
//! could draw the node's traffic into the container), and reading is
//! always allowed.

pub mod address;
pub mod host_port;
pub mod sysctl;

use crate::caps::CapError;
use crate::kernel::Ns;
use crate::kernel::link::LinkState;
use crate::kernel::sysctl::SysctlKey;
use crate::owner::{BridgeOwner, bridge_owner};
pub use address::{AssignedIp, NodeAddress, NodeRoute};
use ipnetwork::IpNetwork;
use std::collections::HashSet;
use std::fmt;

/// The CNI command the call serves, as far as grants go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Add,
    /// Undoes: creates nothing anywhere, changes nothing on the node.
    Del,
    /// Only reads.
    Check,
    /// Removes what the network keeps for attachments that are gone: their
    /// rules and IPAM reservations. Creates nothing, changes no link.
    Gc,
    /// Only reads.
    Status,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Add => "ADD",
            Phase::Del => "DEL",
            Phase::Check => "CHECK",
            Phase::Gc => "GC",
            Phase::Status => "STATUS",
        }
    }
}

/// Where a node-namespace link stands with this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Own,
    GrantedBridge,
    /// The `<bridge>.<vid>` veth a call of this network made to carry a
    /// VLAN's gateway (marked like the network's bridges): up, and gateway
    /// addresses.
    VlanGateway,
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
    /// All-multicast reception.
    AllMulti,
    /// The transmit queue's length.
    TxQLen,
    Hairpin,
    /// Enslave to (or release from) a bridge.
    SetMaster,
    Delete,
    /// A bridge's VLAN filtering.
    VlanFiltering,
    /// A port's VLANs.
    Vlans,
    /// A port's isolation.
    Isolated,
    /// Mark as the network's VLAN gateway interface.
    MarkVlanGateway,
}

/// `<bridge>.<vid>`: the bridge's name and a VLAN id (1 to 4094).
pub fn vlan_gateway_name(name: &str) -> Option<(&str, u16)> {
    let (bridge, digits) = name.rsplit_once('.')?;
    let vid: u16 = digits.parse().ok()?;
    // One spelling per VLAN: no sign, no leading zeros.
    (!bridge.is_empty() && (1..=4094).contains(&vid) && digits == vid.to_string())
        .then_some((bridge, vid))
}

/// How a bridge wasm-cni did not make for a network is granted to it.
const BRIDGE_GRANT: &str = "a bridge is granted to the network wasm-cni created it for, or to the networks the node policy's \"sharedBridges\" lists for it";

/// The most links one call may create: a plugin needs two or three.
pub const MAX_CREATED: usize = 16;

/// The grant of one call: its network, its command, what the node policy
/// gives it, and what it has made so far.
#[derive(Debug)]
pub struct Grant {
    network: String,
    phase: Phase,
    /// Bridges the node policy shares with this network.
    shared_bridges: Vec<String>,
    /// Where gateway subnets may lie (the node policy's `gatewaySubnets`).
    gateway_subnets: Vec<IpNetwork>,
    /// Links this call created, by namespace and index.
    created: HashSet<(Ns, u32)>,
    /// What IPAM assigned in this call.
    assigned: Vec<AssignedIp>,
    /// Addresses this call masqueraded already.
    masqueraded: Vec<IpNetwork>,
    /// The node policy allows host ports on 127.0.0.0/8.
    localhost_host_ports: bool,
    /// The host ports the node policy allows (`hostPorts`).
    host_port_ranges: Vec<(u16, u16)>,
    /// This call mapped host ports already (once per call).
    ports_mapped: bool,
}

fn denied(what: impl fmt::Display) -> CapError {
    CapError::denied(what)
}

impl Grant {
    pub fn new(
        network: &str,
        phase: Phase,
        shared_bridges: Vec<String>,
        gateway_subnets: Vec<IpNetwork>,
    ) -> Self {
        Grant {
            network: network.to_string(),
            phase,
            shared_bridges,
            gateway_subnets,
            created: HashSet::new(),
            assigned: Vec::new(),
            masqueraded: Vec::new(),
            localhost_host_ports: false,
            host_port_ranges: vec![(1, u16::MAX)],
            ports_mapped: false,
        }
    }

    /// The host ports the node policy allows (`hostPorts`).
    pub fn allow_host_ports(mut self, ranges: Vec<(u16, u16)>) -> Self {
        self.host_port_ranges = ranges;
        self
    }

    /// Host ports on the node's loopback addresses, as the node policy
    /// says (`localhostHostPorts`).
    pub fn allow_localhost_host_ports(mut self, allowed: bool) -> Self {
        self.localhost_host_ports = allowed;
        self
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

    /// Where a node link stands with this call.
    pub fn standing(&self, link: &LinkState) -> Standing {
        let marked = bridge_owner(link.alias.as_deref(), &self.network) == BridgeOwner::This;
        if self.created(Ns::Host, link.index) {
            Standing::Own
        } else if link.kind == "bridge" && (self.shared_bridges.contains(&link.name) || marked) {
            Standing::GrantedBridge
        } else if link.kind == "veth" && marked && vlan_gateway_name(&link.name).is_some() {
            Standing::VlanGateway
        } else {
            Standing::Foreign
        }
    }

    // --- Decisions, one per operation.

    /// What the command allows at all: CHECK changes nothing, DEL creates
    /// nothing and leaves the node alone.
    fn phase_allows(&self, ns: Ns, what: &str, creates: bool) -> Result<(), CapError> {
        match self.phase {
            Phase::Check | Phase::Status => Err(denied(format_args!(
                "{what}: {} only reads",
                self.phase.name()
            ))),
            Phase::Gc => Err(denied(format_args!(
                "{what}: GC removes only the network's rules and IPAM reservations"
            ))),
            Phase::Del if creates => Err(denied(format_args!("{what}: DEL creates nothing"))),
            Phase::Del if ns == Ns::Host => Err(denied(format_args!(
                "{what} in the {ns}: DEL changes nothing on the node but the attachment's own rules"
            ))),
            _ => Ok(()),
        }
    }

    /// Creating a link (a bridge or a veth pair).
    pub fn create_link(&self, ns: Ns, what: &str, created_so_far: usize) -> Result<(), CapError> {
        self.phase_allows(ns, &format!("create {what}"), true)?;
        if created_so_far >= MAX_CREATED {
            return Err(denied(format_args!(
                "create {what}: a call may create at most {MAX_CREATED} links"
            )));
        }
        Ok(())
    }

    /// Changing a link: anything in the container, by standing on the node.
    pub fn change_link(&self, ns: Ns, link: HostLink<'_>, op: LinkOp) -> Result<(), CapError> {
        self.phase_allows(ns, &format!("{op:?} on link {:?}", link.name), false)?;
        if ns == Ns::Container {
            return Ok(());
        }
        let allowed = match link.standing {
            // A mark is the host's word that the network owns the link:
            // only for a `<bridge>.<vid>` veth (see `mark_vlan_gateway`).
            Standing::Own => op != LinkOp::MarkVlanGateway,
            Standing::GrantedBridge => {
                matches!(op, LinkOp::Up | LinkOp::Mac | LinkOp::Promiscuous)
            }
            Standing::VlanGateway => op == LinkOp::Up,
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

    /// Marking `link` (made by this call) the network's VLAN gateway
    /// interface: a veth named `<bridge>.<vid>` for a bridge granted to the
    /// network (`bridge`, as the node has it), whose peer is a port of that
    /// bridge this call made (`peer_on_bridge`): the gateway's subnet is
    /// routed to it, so its other end must be the bridge, not a container.
    pub fn mark_vlan_gateway(
        &self,
        link: HostLink<'_>,
        kind: &str,
        bridge: Option<HostLink<'_>>,
        peer_on_bridge: bool,
    ) -> Result<(), CapError> {
        self.phase_allows(Ns::Host, &format!("mark {:?}", link.name), true)?;
        let why = if link.standing != Standing::Own {
            Some("only a link this call created can be marked")
        } else if kind != "veth" {
            Some("only a veth is a VLAN gateway interface")
        } else if vlan_gateway_name(link.name).is_none() {
            Some("its name is not <bridge>.<vlan id>")
        } else if !bridge.is_some_and(|b| {
            b.is_bridge && matches!(b.standing, Standing::Own | Standing::GrantedBridge)
        }) {
            Some("<bridge> is not a bridge granted to the network")
        } else if !peer_on_bridge {
            Some("its peer is not a port of <bridge> made by this call")
        } else {
            None
        };
        match why {
            Some(why) => Err(denied(format_args!(
                "mark {:?} as network {:?}'s VLAN gateway: {why}",
                link.name, self.network
            ))),
            None => Ok(()),
        }
    }

    /// Enforcing a MAC on `port`: a port this call created, in ADD.
    pub fn spoof_check(&self, port: HostLink<'_>) -> Result<(), CapError> {
        self.phase_allows(Ns::Host, &format!("spoof check on {:?}", port.name), true)?;
        if port.standing != Standing::Own {
            return Err(denied(format_args!(
                "spoof check on {:?}: only a port this call created",
                port.name
            )));
        }
        Ok(())
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

    /// Adding `addr` to `link`; `node` and `routes` are every address and
    /// route the node has.
    pub fn add_address(
        &self,
        ns: Ns,
        link: HostLink<'_>,
        index: u32,
        addr: &IpNetwork,
        node: &[NodeAddress],
        routes: &[NodeRoute],
    ) -> Result<(), CapError> {
        self.phase_allows(ns, &format!("add {addr} to {:?}", link.name), true)?;
        if ns == Ns::Container {
            return Ok(());
        }
        self.node_address(link, addr)?;
        address::clear_of_the_node(index, addr, node, routes)
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
        self.phase_allows(ns, &format!("remove {addr} from {:?}", link.name), false)?;
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
        address::gateway_of(&self.assigned, addr, &self.gateway_subnets)
            .map_err(|why| denied(format_args!("address {addr} on {:?}: {why}", link.name)))
    }

    /// Changing a route: anything in the container, nothing on the node.
    pub fn change_route(&self, ns: Ns, dst: &IpNetwork, creates: bool) -> Result<(), CapError> {
        self.phase_allows(ns, &format!("route to {dst}"), creates)?;
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
        self.phase_allows(ns, &format!("sysctl {key}"), false)?;
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

    /// Masquerading `addrs` is allowed: only what IPAM assigned in this
    /// call (the firewall also checks how the node routes it).
    pub fn check_masquerade(&self, addrs: &[IpNetwork]) -> Result<(), CapError> {
        self.phase_allows(Ns::Host, "masquerade", true)?;
        match addrs
            .iter()
            .find(|a| !self.assigned.iter().any(|ip| ip.address == **a))
        {
            Some(a) => Err(denied(format_args!(
                "masquerade for {a}: not an address IPAM assigned in this call"
            ))),
            None => Ok(()),
        }
    }

    /// Masquerading `addrs`: each once. The addresses not masqueraded yet,
    /// which are then recorded.
    pub fn masquerade(&mut self, addrs: &[IpNetwork]) -> Result<Vec<IpNetwork>, CapError> {
        self.check_masquerade(addrs)?;
        let mut new = Vec::new();
        for a in addrs {
            if !self.masqueraded.contains(a) && !new.contains(a) {
                new.push(*a);
            }
        }
        self.masqueraded.extend(&new);
        Ok(new)
    }

    /// Removing this attachment's masquerade rules: what a DEL does (and an
    /// ADD undoing its own).
    pub fn unmasquerade(&self) -> Result<(), CapError> {
        match self.phase {
            Phase::Add | Phase::Del => Ok(()),
            p => Err(denied(format_args!(
                "remove the attachment's rules: {} does not (GC uses `attachments`)",
                p.name()
            ))),
        }
    }

    /// Removing the rules of this network's attachments that are not
    /// valid any more (the network is the grant's own, so no other
    /// network's rules are reachable): GC only.
    pub fn retain_rules(&self) -> Result<(), CapError> {
        match self.phase {
            Phase::Gc => Ok(()),
            p => Err(denied(format_args!(
                "remove rules of other attachments: only GC does, {} does not",
                p.name()
            ))),
        }
    }

    /// Removing what the reference plugins left for this attachment: a DEL.
    pub fn remove_reference_leftovers(&self) -> Result<(), CapError> {
        match self.phase {
            Phase::Del => Ok(()),
            p => Err(denied(format_args!(
                "remove the reference plugins' rules: only DEL does, {} does not",
                p.name()
            ))),
        }
    }

    /// Delegating `command` to IPAM: each command passes on its own (and
    /// CHECK, which only reads, is allowed to all); an ADD's failure path
    /// runs DEL.
    pub fn ipam(&self, command: &str) -> Result<(), CapError> {
        let what = format!("IPAM {command}");
        match (self.phase, command) {
            (_, "CHECK") => Ok(()),
            (Phase::Add, "ADD" | "DEL") | (Phase::Del, "DEL") => Ok(()),
            (Phase::Gc, "GC") | (Phase::Status, "STATUS") => Ok(()),
            (p, _) => Err(denied(format_args!("{what}: not part of a {}", p.name()))),
        }
    }
}

/// The IPAM store, for an IPAM plugin serving `phase`: DEL only removes
/// entries, CHECK only reads.
pub fn store_write(phase: Phase, what: &str, creates: bool) -> Result<(), CapError> {
    match phase {
        Phase::Check | Phase::Status => {
            Err(denied(format_args!("{what}: {} only reads", phase.name())))
        }
        Phase::Del | Phase::Gc if creates => Err(denied(format_args!(
            "{what}: {} creates no entries",
            phase.name()
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
