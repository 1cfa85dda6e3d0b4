//! `wasm-cni:plugin/firewall`: masquerade scoped to this request's network
//! and container id.
//!
//! Changes run in the background, one at a time, in order. Every nftables
//! commit that deletes waits for an RCU grace period (~15 ms here), and so
//! does deleting a veth; running the two side by side halves a DEL. The
//! guest's call returns once the change is started; the host waits for it
//! (`finish`) before answering the runtime, and a change that failed fails
//! the CNI command.

use super::{CapError, CapResult};
use crate::kernel::nft;
use crate::runtime::bindings::wasm_cni::plugin::firewall;
use crate::runtime::bindings::wasm_cni::plugin::types::IpPrefix;
use crate::runtime::convert::{prefix_from_wit, prefix_to_wit};
use tokio::task::JoinHandle;

pub struct FirewallCtx {
    network: String,
    container_id: String,
    /// This call added rules: a failed ADD removes them.
    added: bool,
    in_flight: Option<JoinHandle<Result<(), String>>>,
}

impl FirewallCtx {
    pub fn new(network: &str, container_id: &str) -> Self {
        FirewallCtx {
            network: network.to_string(),
            container_id: container_id.to_string(),
            added: false,
            in_flight: None,
        }
    }

    /// Wait for the change in flight, if any.
    pub async fn finish(&mut self) -> Result<(), String> {
        match self.in_flight.take() {
            None => Ok(()),
            Some(job) => job
                .await
                .map_err(|e| format!("firewall change did not complete: {e}"))?,
        }
    }

    fn start(
        &mut self,
        what: &'static str,
        job: impl FnOnce(&str, &str) -> std::io::Result<()> + Send + 'static,
    ) {
        let (network, container_id) = (self.network.clone(), self.container_id.clone());
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            job(&network, &container_id).map_err(|e| format!("{what}: {e}"))
        }));
    }

    /// Undo a failed ADD.
    pub async fn rollback(&mut self) -> Vec<String> {
        let mut failures: Vec<String> = self.finish().await.err().into_iter().collect();
        if std::mem::take(&mut self.added) {
            if let Err(e) = nft::remove(&self.network, &self.container_id) {
                failures.push(format!("remove masquerade rules: {e}"));
            }
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
        if let Some(a) = addrs
            .iter()
            .find(|a| a.ip().is_multicast() || a.ip().is_unspecified())
        {
            return Err(CapError::invalid(format!("cannot masquerade from {a}")));
        }
        if addrs.is_empty() {
            return Ok(());
        }
        self.finish().await.map_err(CapError::other)?;
        self.added = true;
        self.start("masquerade", move |net, id| {
            nft::masquerade(net, id, &addrs)
        });
        Ok(())
    }

    async fn remove(&mut self) -> CapResult<()> {
        self.finish().await.map_err(CapError::other)?;
        self.added = false;
        self.start("remove masquerade rules", |net, id| {
            nft::remove(net, id).map(drop)
        });
        Ok(())
    }

    async fn list(&mut self) -> CapResult<Vec<IpPrefix>> {
        self.finish().await.map_err(CapError::other)?;
        let addrs = nft::masqueraded(&self.network, &self.container_id)
            .map_err(|e| CapError::io("list masquerade rules", e))?;
        Ok(addrs.into_iter().map(prefix_to_wit).collect())
    }
}
