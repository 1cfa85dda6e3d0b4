//! `wasm-cni:plugin/ipam`: delegation to the IPAM plugin the config names.

use super::grant::Assigned;
use crate::cni::{Call, Command};
use crate::runtime::Runtime;
use crate::runtime::bindings::wasm_cni::plugin::ipam;
use crate::runtime::bindings::wasm_cni::plugin::types::{CniError, CniResult};
use crate::runtime::convert::{error_to_wit, result_to_wit};
use std::sync::Arc;

pub struct IpamCtx {
    runtime: Arc<Runtime>,
    call: Arc<Call>,
    /// Where this call's addresses are recorded for the grant checks.
    assigned: Assigned,
    /// IPAM ADD succeeded in this call: a failed ADD must release it.
    added: bool,
}

impl IpamCtx {
    pub fn new(runtime: Arc<Runtime>, call: Arc<Call>, assigned: Assigned) -> Self {
        IpamCtx {
            runtime,
            call,
            assigned,
            added: false,
        }
    }

    /// Undo a failed ADD: IPAM DEL, as the spec requires of the plugin
    /// that called IPAM ADD.
    pub async fn rollback(&mut self) -> Vec<String> {
        if !std::mem::take(&mut self.added) {
            return Vec::new();
        }
        match self.runtime.undo_ipam(&self.call).await {
            Ok(_) => Vec::new(),
            Err(e) => vec![format!("IPAM DEL: {e}")],
        }
    }
}

impl ipam::Host for IpamCtx {
    async fn add(&mut self) -> wasmtime::Result<Result<CniResult, CniError>> {
        Ok(
            match self.runtime.delegate_ipam(&self.call, Command::Add).await {
                Ok(r) => {
                    self.added = true;
                    let r = r.unwrap_or_default();
                    self.assigned.record(r.ips.iter().map(|ip| ip.address));
                    Ok(result_to_wit(&r))
                }
                Err(e) => Err(error_to_wit(e)),
            },
        )
    }

    async fn del(&mut self) -> wasmtime::Result<Result<(), CniError>> {
        let r = self.runtime.delegate_ipam(&self.call, Command::Del).await;
        if r.is_ok() {
            self.added = false;
        }
        Ok(r.map(|_| ()).map_err(error_to_wit))
    }

    async fn check(&mut self) -> wasmtime::Result<Result<(), CniError>> {
        Ok(self
            .runtime
            .delegate_ipam(&self.call, Command::Check)
            .await
            .map(|_| ())
            .map_err(error_to_wit))
    }
}
