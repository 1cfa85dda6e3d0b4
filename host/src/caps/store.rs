//! `wasm-cni:plugin/store`: an IPAM plugin's state, one file per entry in
//! `<dataDir>/<network>`, exactly as the reference host-local lays it out
//! (so a node can switch between it and wasm-cni either way): values are
//! written byte for byte, files are 0644, the directory 0755, and the lock
//! is `flock(LOCK_EX)` on the file `lock` (0600).
//!
//! Where the directory may be is the node policy's decision
//! (`Policy::store_location`); every file operation then goes through the
//! directory's descriptor (`kernel::store`), off the runtime's thread.

use super::{CapError, CapResult};
use crate::contract::LockHandle;
use crate::contract::wasm_cni::plugin::store::{self, Entry};
use crate::grant::{Phase, store_write};
use crate::kernel::netns::blocking;
use crate::kernel::store::StoreDir;
use crate::limits::{CallLimits, MAX_STORE_WRITES};
use crate::policy::StoreLocation;
use rustix::fs::{FlockOperation, flock};
use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use wasmtime::component::Resource;

const LOCK_FILE: &str = "lock";
/// The longest pause between two tries for the lock.
const LOCK_POLL_MAX: Duration = Duration::from_millis(25);
/// How long a rollback waits for the lock.
const ROLLBACK_LOCK_WAIT: Duration = Duration::from_secs(3);
/// The largest value an entry may hold.
const MAX_VALUE: usize = 4096;

/// A temporary lives from its write to its rename, microseconds: one
/// older than this is a killed call's, and GC removes it.
const TEMPORARY_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// An entry a call wrote or removed: what it held before and after the
/// call's write (`None`: no entry).
#[derive(Debug, Clone)]
pub struct Written {
    pub key: String,
    pub prior: Option<Vec<u8>>,
    pub value: Option<String>,
}

/// The entries a call wrote, to put back if its ADD fails. Kept outside
/// the store, so a panic does not lose them.
pub type Created = Arc<Mutex<Vec<Written>>>;

enum Lock {
    Held(#[allow(dead_code)] File),
    /// DEL or CHECK of a network that has no store: nothing to guard.
    Nothing,
}

pub struct StoreCtx {
    location: StoreLocation,
    phase: Phase,
    dir: Option<Arc<StoreDir>>,
    lock: Option<Lock>,
    /// Give up waiting for the lock then: the holder may be stuck, and a
    /// blocking flock would hang every ADD on the node with it.
    lock_deadline: Instant,
    created: Created,
    limits: Arc<CallLimits>,
}

fn check_key(key: &str) -> CapResult<()> {
    let bad = |why: &str| Err(CapError::invalid(format!("store key {key:?}: {why}")));
    if key.is_empty() || key.len() > 255 {
        return bad("must be 1 to 255 bytes");
    }
    if key.contains('/') || key.contains('\0') {
        return bad("must not contain '/' or NUL");
    }
    if key.starts_with('.') || key == LOCK_FILE {
        return bad("reserved");
    }
    Ok(())
}

/// Take the store's lock, polling with backoff until `deadline`.
async fn lock(dir: &Arc<StoreDir>, deadline: Instant, what: &str) -> CapResult<File> {
    let d = dir.clone();
    let f = blocking(move || d.lock_file(LOCK_FILE))
        .await
        .map_err(|e| CapError::io(format!("open the lock of {what}"), e))?;
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match flock(&f, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(f),
            Err(rustix::io::Errno::WOULDBLOCK) if Instant::now() + pause < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LOCK_POLL_MAX);
            }
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(CapError::busy(format!(
                    "the IPAM store {what} is locked by another process (waited {} ms)",
                    started.elapsed().as_millis()
                )));
            }
            Err(e) => return Err(CapError::io(format!("lock {what}"), e.into())),
        }
    }
}

impl StoreCtx {
    pub fn new(
        location: StoreLocation,
        phase: Phase,
        lock_deadline: Instant,
        created: Created,
        limits: &Arc<CallLimits>,
    ) -> Self {
        StoreCtx {
            location,
            phase,
            dir: None,
            lock: None,
            lock_deadline,
            created,
            limits: limits.clone(),
        }
    }

    fn what(&self) -> String {
        self.location
            .root
            .join(&self.location.below)
            .display()
            .to_string()
    }

    fn io(&self, what: &str, e: io::Error) -> CapError {
        CapError::io(format!("{what} in {}", self.what()), e)
    }

    /// The store's directory, opened once; created when `create`. `None`
    /// when it does not exist (and need not).
    async fn dir(&mut self, create: bool) -> CapResult<Option<Arc<StoreDir>>> {
        if let Some(d) = &self.dir {
            return Ok(Some(d.clone()));
        }
        let loc = self.location.clone();
        let opened = blocking(move || StoreDir::open(&loc.root, &loc.below, create))
            .await
            .map_err(|e| self.io("open the store", e))?;
        self.dir = opened.map(Arc::new);
        Ok(self.dir.clone())
    }

    fn record(&self, w: Written) {
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(w);
    }

    /// A write is allowed: by the command, the lock, the size, and the
    /// call's total (a store is a few files per container, not a disk to
    /// fill).
    fn may_write(&mut self, what: &str, value: &str, creates: bool) -> CapResult<()> {
        store_write(self.phase, what, creates)?;
        if self.lock.is_none() {
            return Err(CapError::denied(format!(
                "{what} needs the store lock: call acquire-lock first"
            )));
        }
        if value.len() > MAX_VALUE {
            return Err(CapError::invalid(format!(
                "{what}: a value is at most {MAX_VALUE} bytes"
            )));
        }
        if !self.limits.store_write() {
            return Err(CapError::denied(format!(
                "{what}: a call writes at most {MAX_STORE_WRITES} entries"
            )));
        }
        Ok(())
    }
}

/// Undo a failed ADD: put back every entry it wrote that still holds what
/// it wrote (an entry it created is removed; one it replaced, such as
/// `last_reserved_ip.0`, gets its prior value). Under the lock when it can
/// be had within a few seconds (the ADD may have failed for want of it);
/// past that, anyway: the entries are this call's, by content. The
/// directory and its lock file stay: another process may be waiting on
/// that very lock.
pub async fn rollback(location: &StoreLocation, written: Vec<Written>) -> Vec<String> {
    let created = written;
    if created.is_empty() {
        return Vec::new();
    }
    let loc = location.clone();
    let dir = match blocking(move || StoreDir::open(&loc.root, &loc.below, false)).await {
        Ok(Some(d)) => Arc::new(d),
        Ok(None) => return Vec::new(),
        Err(e) => return vec![format!("open the IPAM store: {e}")],
    };
    let what = location.root.join(&location.below).display().to_string();
    let _held = lock(&dir, Instant::now() + ROLLBACK_LOCK_WAIT, &what)
        .await
        .ok();
    let removed = blocking(move || {
        let mut failures = Vec::new();
        for w in created.into_iter().rev() {
            let now = match dir.read(&w.key) {
                Ok(now) => now,
                Err(e) => {
                    failures.push(format!("read {}: {e}", w.key));
                    continue;
                }
            };
            // Someone else changed it since: theirs now.
            if now.as_deref() != w.value.as_ref().map(String::as_bytes) {
                continue;
            }
            let undone = match &w.prior {
                None => dir.remove(&w.key).map(drop),
                Some(prior) => dir.replace(&w.key, prior),
            };
            if let Err(e) = undone {
                failures.push(format!("restore {}: {e}", w.key));
            }
        }
        Ok(failures)
    })
    .await;
    removed.unwrap_or_else(|e| vec![e.to_string()])
}

impl store::HostLock for StoreCtx {
    async fn drop(&mut self, _lock: Resource<LockHandle>) -> wasmtime::Result<()> {
        // Closing the descriptor releases the flock.
        self.lock = None;
        Ok(())
    }
}

impl store::Host for StoreCtx {
    async fn acquire_lock(&mut self) -> CapResult<Resource<LockHandle>> {
        if self.lock.is_some() {
            // A second flock on a new descriptor would wait for ourselves.
            return Err(CapError::invalid(
                "the store lock is already held by this plugin",
            ));
        }
        self.lock = Some(match self.dir(self.phase == Phase::Add).await? {
            Some(dir) => {
                let held = lock(&dir, self.lock_deadline, &self.what()).await?;
                if self.phase == Phase::Gc {
                    // Temporaries of calls killed midway (see
                    // `StoreDir::create_new`): older than any call lives.
                    let swept = blocking(move || dir.sweep_temporaries(TEMPORARY_AGE)).await;
                    if let Err(e) = swept {
                        crate::log::warn(&format!("GC: {}: {e}", self.what()));
                    }
                }
                Lock::Held(held)
            }
            None => Lock::Nothing,
        });
        Ok(Resource::new_own(0))
    }

    async fn get(&mut self, key: String) -> CapResult<Option<String>> {
        check_key(&key)?;
        let Some(dir) = self.dir(false).await? else {
            return Ok(None);
        };
        let k = key.clone();
        let bytes = blocking(move || dir.read(&k))
            .await
            .map_err(|e| self.io(&format!("read {key}"), e))?;
        bytes
            .map(|b| {
                String::from_utf8(b).map_err(|_| {
                    CapError::other(format!("entry {key:?} in {} is not UTF-8", self.what()))
                })
            })
            .transpose()
    }

    async fn entries(&mut self) -> CapResult<Vec<Entry>> {
        let Some(dir) = self.dir(false).await? else {
            return Ok(Vec::new());
        };
        let listed = blocking(move || {
            let mut out = Vec::new();
            for key in dir.names()? {
                if check_key(&key).is_err() {
                    continue;
                }
                // An entry removed meanwhile, or not text, is not ours to list.
                if let Ok(Some(bytes)) = dir.read(&key)
                    && let Ok(value) = String::from_utf8(bytes)
                {
                    out.push(Entry { key, value });
                }
            }
            Ok(out)
        })
        .await;
        listed.map_err(|e| self.io("list", e))
    }

    async fn create(&mut self, key: String, value: String) -> CapResult<bool> {
        check_key(&key)?;
        self.may_write("create", &value, true)?;
        let dir = self.dir(true).await?.expect("created");
        let (k, v) = (key.clone(), value.clone());
        let made = blocking(move || dir.create_new(&k, v.as_bytes()))
            .await
            .map_err(|e| self.io(&format!("create {key}"), e))?;
        if made {
            self.record(Written {
                key,
                prior: None,
                value: Some(value),
            });
        }
        Ok(made)
    }

    async fn put(&mut self, key: String, value: String) -> CapResult<()> {
        check_key(&key)?;
        self.may_write("put", &value, true)?;
        let dir = self.dir(true).await?.expect("created");
        let (k, v) = (key.clone(), value.clone());
        let prior = blocking(move || {
            let prior = dir.read(&k)?;
            dir.replace(&k, v.as_bytes())?;
            Ok(prior)
        })
        .await
        .map_err(|e| self.io(&format!("write {key}"), e))?;
        self.record(Written {
            key,
            prior,
            value: Some(value),
        });
        Ok(())
    }

    async fn delete(&mut self, key: String) -> CapResult<bool> {
        check_key(&key)?;
        self.may_write("delete", "", false)?;
        let Some(dir) = self.dir(false).await? else {
            return Ok(false);
        };
        let k = key.clone();
        let (removed, prior) = blocking(move || match dir.read(&k) {
            Ok(None) => Ok((false, None)),
            Ok(Some(prior)) => dir.remove(&k).map(|r| (r, Some(prior))),
            // Not an entry (a link or a FIFO someone left): removed, and
            // not put back.
            Err(_) => dir.remove(&k).map(|r| (r, None)),
        })
        .await
        .map_err(|e| self.io(&format!("delete {key}"), e))?;
        if removed && prior.is_some() {
            // An ADD that fails puts it back.
            self.record(Written {
                key,
                prior,
                value: None,
            });
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests;
