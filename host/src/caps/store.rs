//! `wasm-cni:plugin/store`: an IPAM plugin's state, one file per entry in
//! `<dataDir>/<network>`, exactly as the reference host-local lays it out
//! (so a node can switch between it and wasm-cni either way): values are
//! written byte for byte, files are 0644, the directory 0755, and the lock
//! is `flock(LOCK_EX)` on the file `lock` (0600).

use super::{CapError, CapResult};
use crate::runtime::bindings::wasm_cni::plugin::store::{self, Entry};
use rustix::fs::{FlockOperation, flock};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;
use wasmtime::component::Resource;

/// The WIT `lock` resource; the held lock itself lives in `StoreCtx`.
pub struct LockHandle;

/// Where host-local keeps state when the config names no `dataDir`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";
const LOCK_FILE: &str = "lock";

pub struct StoreCtx {
    dir: PathBuf,
    lock: Option<File>,
    /// Give up waiting for the lock then: the holder may be stuck, and a
    /// blocking flock would hang every ADD on the node with it.
    lock_deadline: Instant,
    /// Entries created in this call, to remove if the ADD fails.
    created: Vec<(String, String)>,
    writes: usize,
}

/// The longest pause between two tries for the lock.
const LOCK_POLL_MAX: Duration = Duration::from_millis(25);
/// How long a rollback waits for the lock.
const ROLLBACK_LOCK_WAIT: Duration = Duration::from_secs(3);
/// The largest value an entry may hold.
const MAX_VALUE: usize = 4096;
/// The most entries one call may write.
const MAX_WRITES: usize = 256;

impl StoreCtx {
    /// The store of `network` under `data_dir` (already validated: an
    /// absolute path, and a network name with no `/`).
    pub fn new(data_dir: Option<&Path>, network: &str, lock_deadline: Instant) -> Self {
        let root = data_dir.unwrap_or(Path::new(DEFAULT_DATA_DIR));
        StoreCtx {
            dir: root.join(network),
            lock: None,
            lock_deadline,
            created: Vec::new(),
            writes: 0,
        }
    }

    fn path(&self, key: &str) -> CapResult<PathBuf> {
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
        Ok(self.dir.join(key))
    }

    /// A write is allowed: the lock is held, the value is small, and the
    /// call has not written too much already (a store is a few files per
    /// container, not a disk to fill).
    fn may_write(&mut self, what: &str, value: &str) -> CapResult<()> {
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
        if self.writes >= MAX_WRITES {
            return Err(CapError::denied(format!(
                "{what}: a call writes at most {MAX_WRITES} entries"
            )));
        }
        self.writes += 1;
        Ok(())
    }

    fn io(&self, what: &str, e: io::Error) -> CapError {
        CapError::io(format!("{what} in {}", self.dir.display()), e)
    }

    /// Undo a failed ADD: remove the entries it created, if they still
    /// hold what it wrote. Under the lock when it can be had within a few
    /// seconds (the ADD may have failed for want of it); past that, the
    /// entries are removed anyway: they are this call's, by content.
    pub async fn rollback(&mut self) -> Vec<String> {
        let created = std::mem::take(&mut self.created);
        let mut failures = Vec::new();
        let mut _held = None;
        if !created.is_empty() && self.lock.is_none() {
            self.lock_deadline = Instant::now() + ROLLBACK_LOCK_WAIT;
            if self.lock_dir().await.is_ok() {
                _held = self.lock.take();
            }
        }
        for (key, value) in created {
            let path = self.dir.join(&key);
            if fs::read_to_string(&path).is_ok_and(|v| v == value)
                && let Err(e) = fs::remove_file(&path)
            {
                failures.push(format!("remove {}: {e}", path.display()));
            }
        }
        failures
    }

    /// Take the lock, polling (with backoff) until the deadline.
    async fn lock_dir(&mut self) -> CapResult<()> {
        let open = || -> io::Result<File> {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&self.dir)?;
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(self.dir.join(LOCK_FILE))
        };
        let f = open().map_err(|e| self.io("open the lock", e))?;
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match flock(&f, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {
                    self.lock = Some(f);
                    return Ok(());
                }
                Err(rustix::io::Errno::WOULDBLOCK)
                    if Instant::now() + pause < self.lock_deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(LOCK_POLL_MAX);
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(CapError::busy(format!(
                        "the IPAM store {} is locked by another process (waited {} ms)",
                        self.dir.display(),
                        started.elapsed().as_millis()
                    )));
                }
                Err(e) => return Err(self.io("lock", e.into())),
            }
        }
    }
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
        self.lock_dir().await?;
        Ok(Resource::new_own(0))
    }

    async fn get(&mut self, key: String) -> CapResult<Option<String>> {
        let path = self.path(&key)?;
        match fs::read(&path) {
            Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
                CapError::other(format!(
                    "entry {key:?} in {} is not UTF-8",
                    self.dir.display()
                ))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(&format!("read {key}"), e)),
        }
    }

    async fn entries(&mut self) -> CapResult<Vec<Entry>> {
        let dir = match fs::read_dir(&self.dir) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io("list", e)),
        };
        let mut out = Vec::new();
        for ent in dir {
            let ent = ent.map_err(|e| self.io("list", e))?;
            let Ok(key) = ent.file_name().into_string() else {
                continue;
            };
            if key.starts_with('.')
                || key == LOCK_FILE
                || !ent.file_type().is_ok_and(|t| t.is_file())
            {
                continue;
            }
            let mut value = String::new();
            // An entry removed meanwhile, or not text, is not ours to list.
            if File::open(ent.path())
                .and_then(|mut f| f.read_to_string(&mut value))
                .is_ok()
            {
                out.push(Entry { key, value });
            }
        }
        Ok(out)
    }

    async fn create(&mut self, key: String, value: String) -> CapResult<bool> {
        let path = self.path(&key)?;
        self.may_write("create", &value)?;
        let mut f = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(self.io(&format!("create {key}"), e)),
        };
        if let Err(e) = f.write_all(value.as_bytes()) {
            let _ = fs::remove_file(&path);
            return Err(self.io(&format!("write {key}"), e));
        }
        self.created.push((key, value));
        Ok(true)
    }

    async fn put(&mut self, key: String, value: String) -> CapResult<()> {
        let path = self.path(&key)?;
        self.may_write("put", &value)?;
        let write = || -> io::Result<()> {
            let mut tmp = tempfile::Builder::new()
                .prefix(".wasm-cni-")
                .tempfile_in(&self.dir)?;
            tmp.write_all(value.as_bytes())?;
            tmp.as_file()
                .set_permissions(fs::Permissions::from_mode(0o644))?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        write().map_err(|e| self.io(&format!("write {key}"), e))
    }

    async fn delete(&mut self, key: String) -> CapResult<bool> {
        let path = self.path(&key)?;
        if self.lock.is_none() {
            return Err(CapError::denied(
                "delete needs the store lock: call acquire-lock first",
            ));
        }
        match fs::remove_file(&path) {
            Ok(()) => {
                self.created.retain(|(k, _)| *k != key);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io(&format!("delete {key}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::wasm_cni::plugin::store::Host;
    use crate::runtime::bindings::wasm_cni::plugin::store::HostLock;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn new_store(dir: &Path, net: &str) -> StoreCtx {
        StoreCtx::new(Some(dir), net, Instant::now() + Duration::from_secs(5))
    }

    #[test]
    fn entries_are_the_reference_files_byte_for_byte() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = new_store(tmp.path(), "mynet");
        block_on(async {
            assert!(
                s.create("10.244.0.2".into(), "c1\r\neth0".into())
                    .await
                    .is_err(),
                "needs the lock"
            );
            let lock = s.acquire_lock().await.unwrap();
            assert!(
                s.create("10.244.0.2".into(), "c1\r\neth0".into())
                    .await
                    .unwrap()
            );
            assert!(
                !s.create("10.244.0.2".into(), "c2\r\neth0".into())
                    .await
                    .unwrap(),
                "taken"
            );
            s.put("last_reserved_ip.0".into(), "10.244.0.2".into())
                .await
                .unwrap();
            s.drop(lock).await.unwrap();
        });
        let dir = tmp.path().join("mynet");
        assert_eq!(fs::read(dir.join("10.244.0.2")).unwrap(), b"c1\r\neth0");
        assert_eq!(
            fs::read(dir.join("last_reserved_ip.0")).unwrap(),
            b"10.244.0.2"
        );
        let mode = |p: &str| fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            (mode("10.244.0.2"), mode("last_reserved_ip.0"), mode("lock")),
            (0o644, 0o644, 0o600)
        );
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["10.244.0.2", "last_reserved_ip.0", "lock"],
            "no temporary files left"
        );
        let entries = block_on(s.entries()).unwrap();
        assert_eq!(entries.len(), 2, "the lock file is not an entry");
    }

    #[test]
    fn keys_cannot_escape_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = new_store(tmp.path(), "n");
        for bad in ["", "../x", "a/b", ".", "..", "lock", ".hidden", "a\0b"] {
            assert!(block_on(s.get(bad.into())).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rollback_removes_only_what_this_call_wrote() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = new_store(tmp.path(), "n");
        block_on(async {
            let _lock = s.acquire_lock().await.unwrap();
            s.create("10.0.0.2".into(), "c1\r\neth0".into())
                .await
                .unwrap();
            s.create("10.0.0.3".into(), "c1\r\neth1".into())
                .await
                .unwrap();
        });
        fs::write(tmp.path().join("n/10.0.0.3"), "someone else").unwrap();
        assert!(block_on(s.rollback()).is_empty());
        assert!(!tmp.path().join("n/10.0.0.2").exists());
        assert!(tmp.path().join("n/10.0.0.3").exists());
    }

    #[test]
    fn the_lock_excludes_other_processes_holders() {
        let tmp = tempfile::tempdir().unwrap();
        let mut a = new_store(tmp.path(), "n");
        block_on(a.acquire_lock()).unwrap();
        // Another open file description (another process) cannot take it.
        let f = File::open(tmp.path().join("n/lock")).unwrap();
        assert!(flock(&f, FlockOperation::NonBlockingLockExclusive).is_err());
        a.lock = None;
        assert!(flock(&f, FlockOperation::NonBlockingLockExclusive).is_ok());
    }

    #[test]
    fn a_lock_held_elsewhere_is_busy_at_the_deadline_not_a_hang() {
        let tmp = tempfile::tempdir().unwrap();
        let mut holder = new_store(tmp.path(), "n");
        block_on(holder.acquire_lock()).unwrap();
        let mut waiter = StoreCtx::new(
            Some(tmp.path()),
            "n",
            Instant::now() + Duration::from_millis(200),
        );
        let start = std::time::Instant::now();
        let e = block_on(waiter.acquire_lock()).unwrap_err();
        assert!(
            matches!(
                e.guest(),
                Some(crate::runtime::bindings::wasm_cni::plugin::types::Error::Busy(_))
            ),
            "{e}"
        );
        assert!(
            start.elapsed() >= Duration::from_millis(150)
                && start.elapsed() < Duration::from_secs(2)
        );
        // Once released, the next caller gets it.
        holder.lock = None;
        let mut next = new_store(tmp.path(), "n");
        assert!(block_on(next.acquire_lock()).is_ok());
    }
}
