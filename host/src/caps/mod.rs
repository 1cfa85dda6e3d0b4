//! The capabilities guests import, one module per WIT interface. Each
//! capability owns its slice of the store's state (a `*Ctx` type) and is
//! linked through a `HasData` projection onto that slice, as wasmtime-wasi
//! does, so no capability can reach another's state. What they share is
//! the call's [`Shared`] state: its grant (what it may change) and its
//! journal (what it did, for rollback), kept outside the store so that a
//! rollback can read it whatever became of the store.

pub mod address;
pub mod attachment_state;
pub mod bridge_port;
pub mod firewall;
pub mod ipam;
pub mod link;
pub mod link_tuning;
pub mod log;
pub mod netns;
pub mod port_mapping;
pub mod resolv_conf;
pub mod route;
pub mod spoof_check;
pub mod store;
pub mod sysctl;

pub use crate::contract::{CapError, CapResult};
use crate::grant::Grant;
use crate::undo::Journal;
use std::sync::{Arc, Mutex, MutexGuard};

/// The grant and the journal of one call.
#[derive(Debug)]
pub struct CallState {
    pub grant: Grant,
    pub journal: Journal,
    /// The plugin asked its IPAM for STATUS itself (else the runtime does).
    pub ipam_status_asked: bool,
}

#[derive(Debug, Clone)]
pub struct Shared(Arc<Mutex<CallState>>);

impl Shared {
    pub fn new(grant: Grant) -> Self {
        Shared(Arc::new(Mutex::new(CallState {
            grant,
            journal: Journal::default(),
            ipam_status_asked: false,
        })))
    }

    /// The state, also after a panic elsewhere poisoned the lock: rollback
    /// must still read the journal then.
    pub fn lock(&self) -> MutexGuard<'_, CallState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn take_journal(&self) -> Journal {
        std::mem::take(&mut self.lock().journal)
    }
}

/// Every capability context converts its errors the same way: guest errors
/// are returned, traps trap.
macro_rules! convert_cap_errors {
    ($($ctx:ty),* $(,)?) => {$(
        impl crate::contract::wasm_cni::plugin::types::Host for $ctx {
            fn convert_error(
                &mut self,
                err: crate::caps::CapError,
            ) -> wasmtime::Result<crate::contract::wasm_cni::plugin::types::Error> {
                crate::audit::failed(&err);
                match err {
                    crate::caps::CapError::Guest(e) => Ok(e),
                    crate::caps::CapError::Trap(e) => Err(e),
                }
            }
        }
    )*};
}

convert_cap_errors!(
    netns::NetCtx,
    attachment_state::AttachmentStateCtx,
    firewall::FirewallCtx,
    ipam::IpamCtx,
    store::StoreCtx,
    resolv_conf::ResolvConfCtx,
    log::LogCtx
);
