//! `wasm-cni:plugin/firewall`: masquerade owned by this request's
//! attachment (network, container id, ifname), for the addresses this
//! call's IPAM assigned.
//!
//! Changes run in the background, one at a time, in order. Every nftables
//! commit that deletes waits for an RCU grace period (~15 ms here), and so
//! does deleting a veth; running the two side by side halves a DEL. The
//! guest's call returns once the change is started; the host waits for it
//! (`finish`) before answering the runtime, and a change that failed fails
//! the CNI command.

use super::grant::{self, Assigned};
use super::{CapError, CapResult};
use crate::kernel::nft;
use crate::runtime::bindings::wasm_cni::plugin::firewall;
use crate::runtime::bindings::wasm_cni::plugin::types::IpPrefix;
use crate::runtime::convert::{prefix_from_wit, prefix_to_wit};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The longest the host waits for a firewall change to land.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(15);

pub struct FirewallCtx {
    /// The comment that marks this attachment's rules.
    owner: String,
    assigned: Assigned,
    /// This call added rules: a failed ADD removes them.
    added: bool,
    in_flight: Option<JoinHandle<Result<(), String>>>,
}

impl FirewallCtx {
    /// `owner` is (network, container id, ifname).
    pub fn new(owner: (&str, &str, &str), assigned: Assigned) -> Self {
        let (network, container_id, ifname) = owner;
        FirewallCtx {
            owner: nft::owner_comment(network, container_id, ifname),
            assigned,
            added: false,
            in_flight: None,
        }
    }

    /// Wait for the change in flight, if any.
    pub async fn finish(&mut self) -> Result<(), String> {
        let Some(job) = self.in_flight.take() else {
            return Ok(());
        };
        match tokio::time::timeout(CHANGE_TIMEOUT, job).await {
            Ok(joined) => joined.map_err(|e| format!("firewall change did not complete: {e}"))?,
            Err(_) => Err(format!(
                "firewall change did not complete within {} s",
                CHANGE_TIMEOUT.as_secs()
            )),
        }
    }

    fn start(
        &mut self,
        what: &'static str,
        job: impl FnOnce(&str) -> std::io::Result<()> + Send + 'static,
    ) {
        let owner = self.owner.clone();
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            job(&owner).map_err(|e| format!("{what}: {e}"))
        }));
    }

    /// Undo a failed ADD.
    pub async fn rollback(&mut self) -> Vec<String> {
        let mut failures: Vec<String> = self.finish().await.err().into_iter().collect();
        if std::mem::take(&mut self.added)
            && let Err(e) = nft::remove(&self.owner)
        {
            failures.push(format!("remove masquerade rules: {e}"));
        }
        failures
    }
}

impl firewall::Host for FirewallCtx {
    async fn masquerade(&mut self, addresses: Vec<IpPrefix>) -> CapResult<()> {
        let addrs = addresses
            .into_iter()
            .map(prefix_from_wit)
            .collect::<CapResult<Vec<_>>>()?;
        for a in &addrs {
            grant::check_masquerade(a, &self.assigned)?;
        }
        if addrs.is_empty() {
            return Ok(());
        }
        self.finish().await.map_err(CapError::other)?;
        self.added = true;
        self.start("masquerade", move |owner| nft::masquerade(owner, &addrs));
        Ok(())
    }

    async fn remove(&mut self) -> CapResult<()> {
        self.finish().await.map_err(CapError::other)?;
        self.added = false;
        self.start("remove masquerade rules", |owner| {
            nft::remove(owner).map(drop)
        });
        Ok(())
    }

    async fn list(&mut self) -> CapResult<Vec<IpPrefix>> {
        self.finish().await.map_err(CapError::other)?;
        let addrs =
            nft::masqueraded(&self.owner).map_err(|e| CapError::io("list masquerade rules", e))?;
        Ok(addrs.into_iter().map(prefix_to_wit).collect())
    }
}
