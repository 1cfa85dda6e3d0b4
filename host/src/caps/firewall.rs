//! `wasm-cni:plugin/firewall`: masquerade owned by this request's
//! attachment (network, container id, ifname), for the addresses this
//! call's IPAM assigned, each once.
//!
//! Changes run in the background, one at a time, in order. Every nftables
//! commit that deletes waits for an RCU grace period (~15 ms here), and so
//! does deleting a veth; running the two side by side halves a DEL. The
//! guest's call returns once the change is started; the host waits for it
//! (`finish`) before answering the runtime, and a change that failed fails
//! the CNI command. The change in flight lives in the call's journal, so a
//! rollback awaits it whatever happened to the guest, and it is bounded by
//! the call's deadline (`nft` is killed there), so it can never commit
//! after the call has answered.

use super::{CapError, CapResult, Shared};
use crate::contract::convert::{prefix_from_wit, prefix_to_wit};
use crate::contract::wasm_cni::plugin::firewall;
use crate::contract::wasm_cni::plugin::types::IpPrefix;
use crate::contract::wasm_cni::plugin_v2::{attachments, lifecycle::Attachment, reference_cleanup};
use crate::grant::Standing;
use crate::kernel::{Kernel, Ns, Table};
use crate::undo::journal::FirewallJob;
use ipnetwork::IpNetwork;
use std::sync::Arc;
use std::time::Instant;

pub struct FirewallCtx {
    pub(crate) kernel: Arc<dyn Kernel>,
    pub(crate) shared: Shared,
    /// The network whose rules these are.
    network: String,
    /// The request's attachment: container id and ifname.
    attachment: (String, String),
    /// The comment that marks this attachment's rules.
    owner: String,
    deadline: Instant,
}

/// Wait for the firewall change in flight, if any.
pub async fn finish(shared: &Shared) -> Result<(), String> {
    let Some(job) = shared.lock().journal.firewall_job.clone() else {
        return Ok(());
    };
    let outcome = job.wait().await;
    shared.lock().journal.firewall_job = None;
    outcome
}

/// Wait for every change in flight: the host's last step before it
/// answers.
pub async fn finish_all(shared: &Shared) -> Result<(), String> {
    let side = shared.lock().journal.reference_job.take();
    let main = finish(shared).await;
    let side = match side {
        Some(job) => job.wait().await,
        None => Ok(()),
    };
    main.and(side)
}

impl FirewallCtx {
    pub fn new(
        kernel: Arc<dyn Kernel>,
        shared: Shared,
        attachment: (&str, &str, &str),
        deadline: Instant,
    ) -> Self {
        let (network, container_id, ifname) = attachment;
        FirewallCtx {
            kernel,
            shared,
            network: network.to_string(),
            attachment: (container_id.to_string(), ifname.to_string()),
            owner: crate::kernel::nft::owner_comment(network, container_id, ifname),
            deadline,
        }
    }

    /// Start `job` once the change before it is done.
    pub(crate) async fn start(
        &mut self,
        what: &'static str,
        job: impl std::future::Future<Output = std::io::Result<()>> + Send + 'static,
    ) -> CapResult<()> {
        finish(&self.shared).await.map_err(CapError::other)?;
        // One at a time: a second call waits for the first (which stays
        // in the journal until it is done, so the host waits for it
        // whatever happens to this call).
        let earlier = self.shared.lock().journal.reference_job.clone();
        if let Some(earlier) = earlier {
            earlier.wait().await.map_err(CapError::other)?;
        }
        let job = FirewallJob::spawn(async move { job.await.map_err(|e| format!("{what}: {e}")) });
        self.shared.lock().journal.firewall_job = Some(job);
        Ok(())
    }

    /// An address IPAM gave this call may still be another network's (two
    /// configs can hand out one range): a rule for it would rewrite that
    /// network's pods' traffic. So: no address the node routes through a
    /// link that is not this call's or its network's (a route to it via
    /// another bridge, the LAN, a blackhole).
    async fn not_routed_elsewhere(&self, addrs: &[IpNetwork]) -> CapResult<()> {
        let io = |e| CapError::io("routes in the node's namespace", e);
        let mut unique: Vec<IpNetwork> = Vec::new();
        for a in addrs {
            if !unique.contains(a) {
                unique.push(*a);
            }
        }
        // Only the families asked for: a node's IPv6 table grows with its
        // links (link-local and local routes), an IPv4 masquerade never
        // needs it.
        let mut routes = Vec::new();
        for v6 in [false, true] {
            if unique.iter().any(|a| a.is_ipv6() == v6) {
                routes.extend(self.kernel.route_list_of(Ns::Host, v6).await.map_err(io)?);
            }
        }
        for a in &unique {
            for r in routes.iter().filter(|r| r.dst_len > 0) {
                let Ok(dst) = IpNetwork::new(r.dst, r.dst_len) else {
                    continue;
                };
                if dst.is_ipv4() != a.is_ipv4() || !dst.contains(a.ip()) {
                    continue;
                }
                let through = match r.oif {
                    Some(i) => Some(self.kernel.link_get_index(Ns::Host, i).await.map_err(io)?),
                    None => None,
                };
                let ours = through
                    .as_ref()
                    .is_some_and(|l| self.shared.lock().grant.standing(l) != Standing::Foreign);
                if !ours {
                    let via = through.map_or("no link at all".to_string(), |l| l.name);
                    return Err(CapError::denied(format!(
                        "masquerade for {a}: the node routes {dst} through {via}, not a link of this call or its network"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The mark of this attachment's rules.
    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The request's interface (`CNI_IFNAME`).
    pub(crate) fn ifname(&self) -> &str {
        &self.attachment.1
    }

    /// What a job needs: the node, the rules' mark, the deadline.
    pub(crate) fn parts(&self) -> (Arc<dyn Kernel>, String, Instant) {
        (self.kernel.clone(), self.owner.clone(), self.deadline)
    }
}

impl firewall::Host for FirewallCtx {
    async fn masquerade(&mut self, addresses: Vec<IpPrefix>) -> CapResult<()> {
        let addrs = addresses
            .into_iter()
            .map(prefix_from_wit)
            .collect::<CapResult<Vec<_>>>()?;
        // The grant first (it bounds and dedups what is looked up here).
        self.shared.lock().grant.check_masquerade(&addrs)?;
        self.not_routed_elsewhere(&addrs).await?;
        let new = self.shared.lock().grant.masquerade(&addrs)?;
        if new.is_empty() {
            return Ok(());
        }
        self.shared.lock().journal.rules_added = true;
        let (k, owner, deadline) = self.parts();
        let shared = self.shared.clone();
        self.start("masquerade", async move {
            if k.masquerade(&owner, &new, deadline).await? {
                shared.lock().journal.tables_created.push(Table::Masquerade);
            }
            Ok(())
        })
        .await
    }

    async fn remove(&mut self) -> CapResult<()> {
        self.shared.lock().grant.unmasquerade()?;
        let (k, owner, deadline) = self.parts();
        let shared = self.shared.clone();
        self.start("remove the attachment's rules", async move {
            k.unmasquerade(&owner, deadline).await?;
            shared.lock().journal.rules_removed = true;
            Ok(())
        })
        .await
    }

    async fn list(&mut self) -> CapResult<Vec<IpPrefix>> {
        finish(&self.shared).await.map_err(CapError::other)?;
        let addrs = self
            .kernel
            .masqueraded(&self.owner, self.deadline)
            .await
            .map_err(|e| CapError::io("list masquerade rules", e))?;
        Ok(addrs.into_iter().map(prefix_to_wit).collect())
    }
}

/// The most valid attachments a GC may name: a node runs a few hundred
/// pods, and each one costs a comment to compare.
const MAX_VALID: usize = 65_536;

impl attachments::Host for FirewallCtx {
    async fn retain(&mut self, valid: Vec<Attachment>) -> CapResult<u32> {
        self.shared.lock().grant.retain_rules()?;
        if valid.len() > MAX_VALID {
            return Err(CapError::invalid(format!(
                "{} valid attachments, more than {MAX_VALID}",
                valid.len()
            )));
        }
        finish(&self.shared).await.map_err(CapError::other)?;
        let keep: Vec<String> = valid
            .iter()
            .map(|a| crate::kernel::nft::owner_comment(&self.network, &a.container_id, &a.ifname))
            .collect();
        let removed = self
            .kernel
            .retain_rules(&self.network, &keep, self.deadline)
            .await
            .map_err(|e| CapError::io("remove stale rules", e))?;
        Ok(u32::try_from(removed).unwrap_or(u32::MAX))
    }
}

impl reference_cleanup::Host for FirewallCtx {
    /// Runs in the background like the attachment's own rules' removal (it
    /// is a few `iptables` and `nft` runs, time the kernel spends deleting
    /// the veth meanwhile); the host waits for it before answering, and a
    /// failure fails the DEL (to be retried).
    async fn remove_masquerade(&mut self) -> CapResult<()> {
        self.shared.lock().grant.remove_reference_leftovers()?;
        let (k, network, deadline) = (self.kernel.clone(), self.network.clone(), self.deadline);
        let (container_id, ifname) = self.attachment.clone();
        // One at a time: a second call waits for the first (which stays
        // in the journal until it is done, so the host waits for it
        // whatever happens to this call).
        let earlier = self.shared.lock().journal.reference_job.clone();
        if let Some(earlier) = earlier {
            earlier.wait().await.map_err(CapError::other)?;
        }
        let job = FirewallJob::spawn(async move {
            let removed = k
                .remove_reference_masquerade(&network, &container_id, &ifname, deadline)
                .await
                .map_err(|e| format!("remove the reference plugin's masquerade rules: {e}"))?;
            if removed > 0 {
                crate::log::info(&format!(
                    "removed {removed} masquerade rule(s) and chain(s) the reference bridge left for {container_id} {ifname}"
                ));
            }
            Ok(())
        });
        self.shared.lock().journal.reference_job = Some(job);
        Ok(())
    }
}
