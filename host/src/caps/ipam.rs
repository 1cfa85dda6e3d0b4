//! `wasm-cni:plugin/ipam`: delegation to the IPAM plugin the config names.
//! How it runs (a wasm module in-process, a native plugin from `CNI_PATH`)
//! is the runtime's business, behind [`Delegate`].

use super::Shared;
use crate::cni::error::code;
use crate::cni::{Call, CniError, CniResult, Command};
use crate::contract::convert::{error_to_wit, result_to_wit};
use crate::contract::wasm_cni::plugin::ipam;
use crate::contract::wasm_cni::plugin::types as wit;
use crate::contract::wasm_cni::plugin_v2::ipam_lifecycle;
use crate::grant::AssignedIp;
use futures::future::BoxFuture;
use std::sync::Arc;

/// Runs the IPAM plugin of a call.
pub trait Delegate: Send + Sync {
    /// `command` (ADD, DEL, CHECK, GC or STATUS) for `call`, within the IPAM's share of
    /// the call's time.
    fn run<'a>(
        &'a self,
        call: &'a Call,
        command: Command,
    ) -> BoxFuture<'a, Result<Option<CniResult>, CniError>>;
}

pub struct IpamCtx {
    delegate: Arc<dyn Delegate>,
    call: Arc<Call>,
    shared: Shared,
    /// IPAM ADDs that succeeded in this call.
    added: u32,
}

impl IpamCtx {
    pub fn new(delegate: Arc<dyn Delegate>, call: Arc<Call>, shared: Shared) -> Self {
        IpamCtx {
            delegate,
            call,
            shared,
            added: 0,
        }
    }

    async fn run(&mut self, command: Command) -> Result<Option<CniResult>, wit::CniError> {
        if let Err(e) = self.shared.lock().grant.ipam(command.as_str()) {
            return Err(error_to_wit(CniError::new(
                code::PLUGIN_FAILED,
                e.to_string(),
            )));
        }
        self.delegate
            .run(&self.call, command)
            .await
            .map_err(error_to_wit)
    }
}

impl ipam::Host for IpamCtx {
    async fn add(&mut self) -> wasmtime::Result<Result<wit::CniResult, wit::CniError>> {
        if self.shared.lock().grant.ipam("ADD").is_ok() {
            // Before it starts: an ADD that fails or is stopped halfway may
            // have reserved an address, and only IPAM DEL releases it.
            self.shared.lock().journal.ipam_started = true;
        }
        let outcome = self.run(Command::Add).await;
        match &outcome {
            Ok(_) => self.added += 1,
            // It answered: a failed IPAM ADD has undone its own work (one
            // stopped halfway never gets here, and its DEL runs on
            // rollback). What an earlier ADD of this call holds still needs
            // the DEL.
            Err(_) if self.added == 0 => self.shared.lock().journal.ipam_started = false,
            Err(_) => {}
        }
        Ok(outcome.map(|r| {
            let r = r.unwrap_or_default();
            self.shared
                .lock()
                .grant
                .record_assigned(r.ips.iter().map(|ip| AssignedIp {
                    address: ip.address,
                    gateway: ip.gateway,
                }));
            result_to_wit(&r)
        }))
    }

    async fn del(&mut self) -> wasmtime::Result<Result<(), wit::CniError>> {
        Ok(self.run(Command::Del).await.map(drop))
    }

    async fn check(&mut self) -> wasmtime::Result<Result<(), wit::CniError>> {
        Ok(self.run(Command::Check).await.map(drop))
    }
}

impl ipam_lifecycle::Host for IpamCtx {
    async fn gc(&mut self) -> wasmtime::Result<Result<(), wit::CniError>> {
        Ok(self.run(Command::Gc).await.map(drop))
    }

    async fn status(&mut self) -> wasmtime::Result<Result<(), wit::CniError>> {
        self.shared.lock().ipam_status_asked = true;
        Ok(self.run(Command::Status).await.map(drop))
    }
}
