//! `wasm-cni:plugin/firewall`: masquerade scoped to this request's network
//! and container id.

use super::{CapError, CapResult};
use crate::kernel::nft;
use crate::runtime::bindings::wasm_cni::plugin::firewall;
use crate::runtime::bindings::wasm_cni::plugin::types::IpPrefix;
use crate::runtime::convert::{prefix_from_wit, prefix_to_wit};

pub struct FirewallCtx {
    network: String,
    container_id: String,
    /// This call added rules: a failed ADD removes them.
    added: bool,
}

impl FirewallCtx {
    pub fn new(network: &str, container_id: &str) -> Self {
        FirewallCtx {
            network: network.to_string(),
            container_id: container_id.to_string(),
            added: false,
        }
    }

    /// Undo a failed ADD.
    pub fn rollback(&mut self) -> Vec<String> {
        if !std::mem::take(&mut self.added) {
            return Vec::new();
        }
        match nft::remove(&self.network, &self.container_id) {
            Ok(_) => Vec::new(),
            Err(e) => vec![format!("remove masquerade rules: {e}")],
        }
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
        nft::masquerade(&self.network, &self.container_id, &addrs)
            .map_err(|e| CapError::io("masquerade", e))?;
        self.added = true;
        Ok(())
    }

    async fn remove(&mut self) -> CapResult<()> {
        nft::remove(&self.network, &self.container_id)
            .map_err(|e| CapError::io("remove masquerade rules", e))?;
        self.added = false;
        Ok(())
    }

    async fn list(&mut self) -> CapResult<Vec<IpPrefix>> {
        let addrs = nft::masqueraded(&self.network, &self.container_id)
            .map_err(|e| CapError::io("list masquerade rules", e))?;
        Ok(addrs.into_iter().map(prefix_to_wit).collect())
    }
}
