//! What one CNI call may use, across every guest instance it runs (the
//! interface plugin and an in-process IPAM plugin share one budget):
//!
//! - linear memory: 64 MiB in all, so two guests cannot take twice that;
//! - host calls: every exit from a guest into the host (a capability, WASI,
//!   a builtin) counts, and each is refused once the call's deadline has
//!   passed, so a guest looping on a cheap call is stopped at the latest at
//!   the deadline, and one looping on a call that allocates host memory is
//!   stopped long before it adds up;
//! - IPAM store writes (256), guest log and output (256 KiB), and IPAM
//!   delegations (16): counted per call, not per guest instance, so a
//!   plugin that runs its IPAM plugin again and again gets no more;
//! - tables and instances, per store, as wasmtime counts them.
//!
//! Fuel (set per store in `engine`) bounds computing; the deadline bounds
//! waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Instant;
use wasmtime::{CallHook, ResourceLimiter, Store};

/// Linear memory all guests of one call may hold together.
pub const MAX_MEMORY: usize = 64 << 20;
/// Exits into the host per call. The bridge plugin's ADD makes a few
/// hundred (most of them WASI and canonical-ABI builtins); a loop makes
/// this many in well under a second.
pub const MAX_HOST_CALLS: u32 = 50_000;
/// Instances, tables and memories per store: a component is a handful.
pub const MAX_INSTANCES: usize = 32;
/// Elements per table (function references): a Rust plugin uses a few
/// hundred, and every element is host memory the memory limit does not see.
pub const MAX_TABLE_ELEMENTS: usize = 10_000;
/// IPAM store entries written per call: a store is a few files per
/// container, not a disk to fill.
pub const MAX_STORE_WRITES: usize = 256;
/// What guests may log (and print) in all during one call; past it,
/// messages are dropped (once said so), so a guest cannot flood the node's
/// logs.
pub const MAX_LOG_BYTES: usize = 256 << 10;
/// IPAM delegations per call: a plugin runs its IPAM once or twice.
pub const MAX_IPAM_CALLS: u32 = 16;

/// Why a guest was stopped by a limit (the trap's error).
#[derive(Debug)]
pub struct Stopped(pub String);

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stopped {}

/// The budget of one call, shared by its stores.
#[derive(Debug)]
pub struct CallLimits {
    deadline: Instant,
    host_calls: AtomicU32,
    memory: AtomicUsize,
    store_writes: AtomicUsize,
    log_bytes: AtomicUsize,
    ipam_calls: AtomicU32,
}

impl CallLimits {
    pub fn new(deadline: Instant) -> Arc<Self> {
        Arc::new(CallLimits {
            deadline,
            host_calls: AtomicU32::new(0),
            memory: AtomicUsize::new(0),
            store_writes: AtomicUsize::new(0),
            log_bytes: AtomicUsize::new(0),
            ipam_calls: AtomicU32::new(0),
        })
    }

    /// One more IPAM store write; false past the call's budget.
    pub fn store_write(&self) -> bool {
        self.store_writes.fetch_add(1, Ordering::Relaxed) < MAX_STORE_WRITES
    }

    /// `bytes` more of guest log: `Ok(())` while within the budget,
    /// `Err(true)` for the write that crosses it (say so, once),
    /// `Err(false)` past it.
    pub fn log(&self, bytes: usize) -> Result<(), bool> {
        let before = self.log_bytes.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes <= MAX_LOG_BYTES {
            Ok(())
        } else {
            Err(before <= MAX_LOG_BYTES)
        }
    }

    /// One more IPAM delegation; false past the call's budget.
    pub fn ipam_call(&self) -> bool {
        self.ipam_calls.fetch_add(1, Ordering::Relaxed) < MAX_IPAM_CALLS
    }

    /// A guest is about to call into the host.
    fn enter_host(&self) -> Result<(), Stopped> {
        let n = self.host_calls.fetch_add(1, Ordering::Relaxed) + 1;
        if n > MAX_HOST_CALLS {
            return Err(Stopped(format!(
                "made more than {MAX_HOST_CALLS} host calls (the per-call budget)"
            )));
        }
        if Instant::now() >= self.deadline {
            return Err(Stopped(
                "did not finish in time and was stopped (WASM_CNI_TIMEOUT)".into(),
            ));
        }
        Ok(())
    }

    /// Put `store` under this budget.
    pub fn install<T: Send + 'static>(
        self: &Arc<Self>,
        store: &mut Store<T>,
        limiter: fn(&mut T) -> &mut StoreLimiter,
    ) {
        store.limiter(move |s| limiter(s) as &mut dyn ResourceLimiter);
        let limits = self.clone();
        store.call_hook(move |_, hook| match hook {
            CallHook::CallingHost => limits.enter_host().map_err(wasmtime::Error::new),
            _ => Ok(()),
        });
        // A guest computing without calling the host meets its deadline at
        // the next epoch tick (`engine::EPOCH_TICK`).
        let deadline = self.deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Error::new(Stopped(
                    "did not finish in time and was stopped (WASM_CNI_TIMEOUT)".into(),
                )))
            } else {
                Ok(wasmtime::UpdateDeadline::Continue(1))
            }
        });
    }
}

/// One store's share of the call's budget; gives its memory back when the
/// store is dropped.
#[derive(Debug)]
pub struct StoreLimiter {
    call: Arc<CallLimits>,
    memory: usize,
}

impl StoreLimiter {
    pub fn new(call: &Arc<CallLimits>) -> Self {
        StoreLimiter {
            call: call.clone(),
            memory: 0,
        }
    }
}

impl Drop for StoreLimiter {
    fn drop(&mut self) {
        self.call.memory.fetch_sub(self.memory, Ordering::Relaxed);
    }
}

impl ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let more = desired.saturating_sub(current);
        let total = self.call.memory.fetch_add(more, Ordering::Relaxed) + more;
        if total > MAX_MEMORY {
            self.call.memory.fetch_sub(more, Ordering::Relaxed);
            return Err(wasmtime::Error::new(Stopped(format!(
                "asked for more than {} MiB of linear memory (the limit for all of a call's plugins together)",
                MAX_MEMORY >> 20
            ))));
        }
        self.memory += more;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(wasmtime::Error::new(Stopped(format!(
                "asked for a table of more than {MAX_TABLE_ELEMENTS} elements"
            ))));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_INSTANCES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_one_budget_for_every_store_of_a_call() {
        let call = CallLimits::new(Instant::now() + std::time::Duration::from_secs(60));
        let mut a = StoreLimiter::new(&call);
        let mut b = StoreLimiter::new(&call);
        assert!(a.memory_growing(0, 40 << 20, None).unwrap());
        assert!(
            b.memory_growing(0, 30 << 20, None).is_err(),
            "70 MiB together"
        );
        assert!(b.memory_growing(0, 20 << 20, None).unwrap());
        drop(a);
        assert!(
            b.memory_growing(20 << 20, 60 << 20, None).unwrap(),
            "a's share came back"
        );
    }

    #[test]
    fn host_calls_end_at_the_budget_or_the_deadline() {
        let call = CallLimits::new(Instant::now() + std::time::Duration::from_secs(60));
        for _ in 0..MAX_HOST_CALLS {
            call.enter_host().unwrap();
        }
        assert!(call.enter_host().unwrap_err().0.contains("host calls"));
        let late = CallLimits::new(Instant::now());
        assert!(late.enter_host().unwrap_err().0.contains("in time"));
    }
}
