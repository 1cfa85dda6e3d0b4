//! What a call did to the node, in order, so a failed ADD can be undone
//! whatever stopped it: an error, a trap, a panic, or the deadline dropping
//! a host call halfway.
//!
//! A link is recorded before the kernel call that makes it, under a name
//! only this call uses (64 random bits; the host renames it into place
//! afterwards), so a call dropped in flight leaves a record rollback can
//! find it by. A setting of a node link that existed before (a granted
//! bridge) is recorded with its prior value.

use crate::kernel::Ns;
use crate::kernel::link::LinkChange;
use crate::kernel::sysctl::SysctlKey;
use ipnetwork::IpNetwork;
use tokio::sync::watch;

/// A link this call is making or made.
#[derive(Debug, Clone)]
pub enum LinkRecord {
    /// Asked of the kernel under `name`; the answer is not in yet.
    Creating { ns: Ns, name: String },
    Created {
        ns: Ns,
        index: u32,
        name: String,
        bridge: bool,
    },
}

/// A change in the container to something that was there before the call.
#[derive(Debug, Clone)]
pub enum ContainerChange {
    Link { index: u32, prior: LinkChange },
    Sysctl { key: SysctlKey, prior: String },
}

/// A change to a node link that existed before the call.
#[derive(Debug, Clone)]
pub enum Change {
    /// `prior` puts the setting back.
    Link {
        index: u32,
        prior: LinkChange,
    },
    AddressAdded {
        index: u32,
        addr: IpNetwork,
    },
    AddressRemoved {
        index: u32,
        addr: IpNetwork,
    },
    Sysctl {
        index: u32,
        key: SysctlKey,
        prior: String,
    },
}

impl Change {
    /// Whether another attachment on the bridge, given its `ports`
    /// (`None`: not known), may rely on this change: on the bridge being up
    /// and on a gateway this call added, if any port is there (this call's
    /// own are gone by then, and the exclusive lock says no other ADD is
    /// halfway). A port older than the gateway may rely on it too: a
    /// concurrent ADD can make its veth first and meet the gateway later
    /// (`hostile::a_gateway_met_by_an_older_port_stays`), so link indexes
    /// cannot tell, and keeping an address is the safe side of not
    /// knowing. Nothing else is shared.
    pub fn relied_on(&self, ports: Option<&[u32]>) -> bool {
        match self {
            Change::AddressAdded { .. }
            | Change::Link {
                prior: LinkChange::Up(_),
                ..
            } => ports.is_none_or(|p| !p.is_empty()),
            _ => false,
        }
    }

    pub fn link_index(&self) -> u32 {
        match self {
            Change::Link { index, .. }
            | Change::AddressAdded { index, .. }
            | Change::AddressRemoved { index, .. }
            | Change::Sysctl { index, .. } => *index,
        }
    }
}

#[derive(Debug, Default)]
pub struct Journal {
    pub links: Vec<LinkRecord>,
    pub changes: Vec<Change>,
    /// Settings of container links this call did not create (a chained
    /// plugin's `tuning`), and container sysctls, as they were: put back,
    /// newest first, if the ADD fails. Nothing there is shared.
    pub container_changes: Vec<ContainerChange>,
    /// IPAM ADD was started (it may have reserved an address even when it
    /// failed or was stopped): undo with IPAM DEL.
    pub ipam_started: bool,
    /// This call added rules (masquerade, spoof check).
    pub rules_added: bool,
    /// The attachment's rules were removed (a DEL's `firewall.remove`), so
    /// the host need not do it again after the guest.
    pub rules_removed: bool,
    /// VLAN gateway interfaces this call made and marked, with their peers
    /// (by index): once marked, a concurrent ADD of the network may adopt
    /// one, so a rollback deletes it only when nothing relies on it.
    pub vlan_gateways: Vec<(u32, u32)>,
    /// This call forwarded host ports (and nothing else of the
    /// attachment's rules, unless `rules_added`): a rollback removes only
    /// them, since the attachment's other rules belong to an earlier
    /// plugin of its chain.
    pub ports_mapped: bool,
    /// Node ports (by index) this call put a spoof check on.
    pub spoof_checked: Vec<u32>,
    /// Its rules created these of wasm-cni's nftables tables.
    pub tables_created: Vec<crate::kernel::Table>,
    /// The firewall change in flight: awaited before anything is undone, so
    /// it cannot commit after rollback.
    pub firewall_job: Option<FirewallJob>,
    /// The removal of what the reference plugins left (DEL only), running
    /// beside the rest: it touches none of wasm-cni's rules, so it need not
    /// wait its turn.
    pub reference_job: Option<FirewallJob>,
}

/// A firewall change running in the background. Waiting on a clone leaves
/// it here for the next waiter: a wait dropped at the deadline does not
/// lose track of the change.
#[derive(Debug, Clone)]
pub struct FirewallJob(watch::Receiver<Option<Result<(), String>>>);

impl FirewallJob {
    /// Run `job` on the runtime; its outcome is kept for every waiter.
    pub fn spawn(
        job: impl std::future::Future<Output = Result<(), String>> + Send + 'static,
    ) -> Self {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let _ = tx.send(Some(job.await));
        });
        FirewallJob(rx)
    }

    pub async fn wait(mut self) -> Result<(), String> {
        match self.0.wait_for(Option::is_some).await {
            Ok(done) => done.clone().expect("waited for Some"),
            Err(_) => Err("the firewall change stopped without an answer".into()),
        }
    }
}

impl Journal {
    /// This call created the container link `name`.
    pub fn made_in_container(&self, name: &str) -> bool {
        self.links.iter().any(
            |l| matches!(l, LinkRecord::Created { ns: Ns::Container, name: n, .. } if n == name),
        )
    }

    /// A link is about to be made under `name` (unique to this call).
    pub fn creating(&mut self, ns: Ns, name: &str) {
        self.links.push(LinkRecord::Creating {
            ns,
            name: name.to_string(),
        });
    }

    fn position(&self, ns: Ns, name: &str) -> Option<usize> {
        self.links.iter().position(
            |l| matches!(l, LinkRecord::Creating { ns: n, name: m } if *n == ns && m == name),
        )
    }

    /// The kernel answered: the link made under `name` has this index.
    pub fn created(&mut self, ns: Ns, name: &str, index: u32, bridge: bool) {
        if let Some(at) = self.position(ns, name) {
            self.links[at] = LinkRecord::Created {
                ns,
                index,
                name: name.to_string(),
                bridge,
            };
        }
    }

    /// A link this call made has its final name now.
    pub fn renamed(&mut self, ns: Ns, index: u32, to: &str) {
        for l in self.links.iter_mut() {
            if let LinkRecord::Created {
                ns: n,
                index: i,
                name,
                ..
            } = l
                && (*n, *i) == (ns, index)
            {
                *name = to.to_string();
            }
        }
    }

    /// The kernel refused: nothing was made under `name`.
    pub fn not_created(&mut self, ns: Ns, name: &str) {
        if let Some(at) = self.position(ns, name) {
            self.links.remove(at);
        }
    }

    /// A link this call made is gone (the guest deleted it).
    pub fn deleted(&mut self, ns: Ns, index: u32) {
        self.links.retain(
            |l| !matches!(l, LinkRecord::Created { ns: n, index: i, .. } if (*n, *i) == (ns, index)),
        );
    }

    /// How many links this call has made or is making.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    pub fn changed(&mut self, change: Change) {
        self.changes.push(change);
    }
}
