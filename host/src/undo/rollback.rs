//! Undo a failed ADD from its journal, with the call's own handles on the
//! node, whatever state the guest's store was left in.
//!
//! The caller has awaited the firewall change in flight before it took the
//! journal (the change notes the tables it made in the call's journal when
//! it ends; it is bounded by the call's deadline and killed there, so it
//! cannot commit later). In order: this attachment's rules removed; IPAM DEL, when IPAM ADD was started; the
//! links the call made (its veths, and any link still under a name only
//! this call uses); then, holding the network's lock exclusively, the
//! bridges it made or changed. A bridge with a port this call did not make
//! is relied on by another attachment: it stays, up, with the gateway this
//! call gave it (that attachment may be using it), and every other change
//! (an address taken off, its MAC, promiscuity, sysctls) is put back.
//! Otherwise a bridge the call made is deleted, and one that existed gets
//! everything back.
//! Forwarding is never turned back off: it is node-wide, and other networks
//! (or the node itself) may rely on it by now.
//!
//! Failures are collected, not dropped: the caller reports them with the
//! ADD's error.

use super::journal::{Change, Journal, LinkRecord};
use super::lock::NetworkLock;
use crate::kernel::link::LinkChange;
use crate::kernel::{Kernel, Ns, ports};
use futures::future::BoxFuture;
use std::io;
use std::time::Duration;

/// How long rollback waits for the network's lock before it keeps shared
/// state as it is.
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// How long the removal of this attachment's rules may take.
pub const FIREWALL_TIME: Duration = Duration::from_secs(10);

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || e.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error())
        || e.raw_os_error() == Some(rustix::io::Errno::ADDRNOTAVAIL.raw_os_error())
}

pub struct Rollback<'a> {
    pub kernel: &'a dyn Kernel,
    /// The attachment's rule mark.
    pub owner: &'a str,
    /// IPAM DEL for this call.
    pub ipam_del: Option<BoxFuture<'a, Result<(), String>>>,
    pub lock: Option<&'a mut NetworkLock>,
}

impl Rollback<'_> {
    pub async fn run(mut self, journal: Journal) -> Vec<String> {
        let mut failures = Vec::new();
        let mut fail = |what: String| {
            crate::log::error(&format!("rollback: {what}"));
            crate::audit::rollback(what.clone(), false);
            failures.push(what);
        };
        // A step that was taken (or deliberately not), for the log and the
        // audit trail.
        let done = |what: String| {
            crate::log::debug(&format!("rollback: {what}"));
            crate::audit::rollback(what, true);
        };
        let kept = |what: String| {
            crate::log::info(&format!("rollback: {what}"));
            crate::audit::rollback(what, true);
        };

        if journal.rules_added || journal.ports_mapped {
            let deadline = std::time::Instant::now() + FIREWALL_TIME;
            let removed = if journal.rules_added {
                self.kernel.unmasquerade(self.owner, deadline).await
            } else {
                self.kernel.unmap_ports(self.owner, deadline).await
            };
            if let Err(e) = removed {
                fail(format!("remove the attachment's rules: {e}"));
            } else {
                done("removed the attachment's firewall rules".into());
                for table in &journal.tables_created {
                    if let Err(e) = self.kernel.drop_table_if_unused(*table, deadline).await {
                        fail(format!(
                            "remove the nftables table {table:?} this call created: {e}"
                        ));
                    }
                }
            }
        }
        if journal.ipam_started
            && let Some(del) = self.ipam_del.take()
        {
            match del.await {
                Ok(()) => done("IPAM DEL released the attachment's addresses".into()),
                Err(e) => fail(format!("IPAM DEL: {e}")),
            }
        }

        // The container's settings this call changed on what it did not
        // create, newest first (a link or key gone since has nothing to
        // put back).
        for c in journal.container_changes.iter().rev() {
            let (r, what) = match c {
                super::ContainerChange::Link { index, prior } => (
                    self.kernel
                        .link_set(Ns::Container, *index, prior.clone())
                        .await,
                    format!("put back {prior:?} on container link {index}"),
                ),
                super::ContainerChange::Sysctl { key, prior } => (
                    self.kernel.sysctl_write(Ns::Container, key, prior).await,
                    format!("put back container sysctl {key} = {prior:?}"),
                ),
            };
            match r {
                Ok(()) => done(what),
                Err(e) if not_found(&e) => done(format!("{what}: gone")),
                Err(e) => fail(format!("{what}: {e}")),
            }
        }

        // Links, newest first; bridges after their ports, and VLAN gateway
        // interfaces (with their peers) under the lock too.
        let mut bridges = Vec::new();
        let deferred = |i: &u32| journal.vlan_gateways.iter().any(|(g, p)| g == i || p == i);
        for rec in journal.links.iter().rev() {
            match rec {
                LinkRecord::Created {
                    ns,
                    index,
                    bridge: true,
                    ..
                } if *ns == Ns::Host => bridges.push((*index, true)),
                LinkRecord::Created { ns, index, .. } if *ns == Ns::Host && deferred(index) => {}
                LinkRecord::Created {
                    ns, index, name, ..
                } => match self.kernel.link_del(*ns, *index).await {
                    Ok(()) => done(format!("deleted {name} in the {ns}")),
                    Err(e) if not_found(&e) => {}
                    Err(e) => fail(format!("delete link {name} in the {ns}: {e}")),
                },
                // The kernel call was dropped before it answered: whatever
                // holds this call's unique name is the call's own.
                LinkRecord::Creating { ns, name } => match self.kernel.link_get(*ns, name).await {
                    Ok(l) => match self.kernel.link_del(*ns, l.index).await {
                        Ok(()) => done(format!("deleted {name}, made by a dropped call")),
                        Err(e) if not_found(&e) => {}
                        Err(e) => fail(format!("delete link {name} in the {ns}: {e}")),
                    },
                    Err(e) if not_found(&e) => {}
                    Err(e) => fail(format!("look for link {name} in the {ns}: {e}")),
                },
            }
        }
        for c in &journal.changes {
            let i = c.link_index();
            if !bridges.iter().any(|(b, _)| *b == i) {
                bridges.push((i, false));
            }
        }
        if bridges.is_empty() && journal.vlan_gateways.is_empty() {
            return failures;
        }

        let locked = match self.lock.as_deref_mut() {
            Some(lock) => {
                lock.exclusive(tokio::time::Instant::now() + LOCK_WAIT)
                    .await
            }
            None => false,
        };
        for (gateway, peer) in &journal.vlan_gateways {
            // Maybe adopted by an ADD of the network while this call ran:
            // any port on its bridge but its own peer (this call's ports
            // are gone by now). Not only ports newer than it: a concurrent
            // ADD may make its veth first and meet the gateway later (see
            // `Change::relied_on`).
            let adopted = if !locked {
                true
            } else {
                match dependents(self.kernel, *gateway).await {
                    Ok(p) => p.iter().any(|l| l.index != *peer),
                    Err(e) => {
                        fail(format!(
                            "list what relies on VLAN gateway {gateway} (it stays): {e}"
                        ));
                        true
                    }
                }
            };
            if adopted {
                kept(format!(
                    "kept VLAN gateway {gateway}: another attachment may rely on it"
                ));
                continue;
            }
            match self.kernel.link_del(Ns::Host, *gateway).await {
                Ok(()) => done(format!("deleted VLAN gateway {gateway}")),
                Err(e) if not_found(&e) => {}
                Err(e) => fail(format!("delete VLAN gateway {gateway}: {e}")),
            }
        }
        for (index, made_here) in bridges {
            // Its ports (by index), when the lock says they are all there
            // is: no other ADD of the network is halfway.
            let ports: Option<Vec<u32>> = if !locked {
                crate::log::warn(&format!(
                    "rollback: the network's lock was not free within {} s: bridge {index}, its being up and its gateway stay, as another ADD may rely on them",
                    LOCK_WAIT.as_secs()
                ));
                None
            } else {
                match dependents(self.kernel, index).await {
                    Ok(p) => Some(p.iter().map(|l| l.index).collect()),
                    Err(e) => {
                        fail(format!("list the ports of bridge {index} (it stays): {e}"));
                        None
                    }
                }
            };
            let ports = ports.as_deref();
            if made_here && ports.is_some_and(|p| p.is_empty()) {
                match self.kernel.link_del(Ns::Host, index).await {
                    Ok(()) => done(format!("deleted bridge {index}")),
                    Err(e) if not_found(&e) => {}
                    Err(e) => fail(format!("delete bridge {index}: {e}")),
                }
                continue;
            }
            for c in journal
                .changes
                .iter()
                .rev()
                .filter(|c| c.link_index() == index)
            {
                if c.relied_on(ports) {
                    kept(format!(
                        "kept {c:?}: another attachment on bridge {index} may rely on it"
                    ));
                } else if let Err(e) = self.restore(c).await {
                    fail(format!("restore bridge {index} ({c:?}): {e}"));
                }
            }
        }
        failures
    }

    async fn restore(&self, change: &Change) -> io::Result<()> {
        let k = self.kernel;
        let r = match change {
            Change::Link { index, prior } => k.link_set(Ns::Host, *index, prior.clone()).await,
            Change::AddressAdded { index, addr, .. } => k.addr_del(Ns::Host, *index, *addr).await,
            Change::AddressRemoved { index, addr } => {
                k.addr_add(Ns::Host, *index, *addr, true).await
            }
            Change::Sysctl { key, prior, .. } => k.sysctl_write(Ns::Host, key, prior).await,
        };
        match r {
            Err(e) if not_found(&e) => Ok(()),
            other => other,
        }
    }
}

/// The ports whose attachments may rely on a link's settings: a bridge's
/// own; for a VLAN's gateway interface `<bridge>.<vid>` (a veth, with no
/// ports of its own), its bridge's.
async fn dependents(
    kernel: &dyn Kernel,
    index: u32,
) -> io::Result<Vec<crate::kernel::link::LinkState>> {
    let link = match kernel.link_get_index(Ns::Host, index).await {
        Ok(l) => l,
        // Gone: nobody relies on it, and there is nothing to put back.
        Err(e) if not_found(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    if link.kind == "veth"
        && let Some((bridge, _)) = crate::grant::vlan_gateway_name(&link.name)
    {
        return match kernel.link_get(Ns::Host, bridge).await {
            Ok(bridge) => ports(kernel, Ns::Host, bridge.index).await,
            // Its bridge is gone: nothing behind it relies on it.
            Err(e) if not_found(&e) => Ok(Vec::new()),
            Err(e) => Err(e),
        };
    }
    ports(kernel, Ns::Host, index).await
}

/// The setting a change to a live link replaces, to put back later.
pub fn prior_of(change: &LinkChange, link: &crate::kernel::link::LinkState) -> Option<LinkChange> {
    Some(match change {
        LinkChange::Up(_) => LinkChange::Up(link.up),
        LinkChange::Mtu(_) => LinkChange::Mtu(link.mtu),
        LinkChange::Mac(_) => LinkChange::Mac(link.mac.clone()),
        LinkChange::Promiscuous(_) => LinkChange::Promiscuous(link.promiscuous),
        LinkChange::AllMulti(_) => LinkChange::AllMulti(link.allmulti),
        LinkChange::TxQLen(_) => LinkChange::TxQLen(link.txqlen),
        LinkChange::Master(_) => LinkChange::Master(link.master),
        LinkChange::Alias(_) => LinkChange::Alias(link.alias.clone().unwrap_or_default()),
        LinkChange::Name(_) => LinkChange::Name(link.name.clone()),
        LinkChange::Hairpin(_) => return None,
        LinkChange::Isolated(_) => LinkChange::Isolated(link.isolated.unwrap_or(false)),
        LinkChange::VlanFiltering(_) => {
            LinkChange::VlanFiltering(link.vlan_filtering.unwrap_or(false))
        }
    })
}
