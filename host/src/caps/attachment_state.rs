//! `wasm-cni:plugin/attachment-state` (0.2.0): a small store of one
//! attachment's own, kept between its ADD and its DEL (`tuning` keeps the
//! settings it replaced, to put them back).
//!
//! One JSON object per attachment and module (two plugins of a chain keep
//! apart), in the file `<sha256 of container ID and interface>.<module>`,
//! in `/var/lib/wasm-cni/attachments/<network>`
//! (wasm-cni's own state, where no config may point a store, beside the
//! network locks; GC removes what reboots leave): the same
//! directory walk and descriptor-relative, link-refusing file operations
//! as the IPAM store (`kernel::store`). The grant: ADD writes; CHECK reads;
//! DEL reads and deletes; GC and STATUS see nothing. The host removes a
//! module's state of an attachment after its successful DEL, removes the
//! state of attachments a GC names not valid (only when the runtime named
//! the valid ones: a config without the key removes nothing), puts back
//! what a failed ADD wrote (`Written`), and removes a network's directory
//! once it is empty.

use super::{CapError, CapResult};
use crate::contract::wasm_cni::plugin_v2::attachment_state;
use crate::grant::{Phase, store_write};
use crate::kernel::netns::blocking;
use crate::kernel::store::StoreDir;
use crate::limits::CallLimits;
use crate::policy::StoreLocation;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where attachments' states are, one directory per network.
pub const STATE_ROOT: &str = "/var/lib/wasm-cni/attachments";
const MAX_KEYS: usize = 16;
const MAX_KEY: usize = 64;
const MAX_VALUE: usize = 4096;
/// The largest file, as written (JSON escapes make a value longer).
const MAX_FILE: usize = 16 << 10;

/// What this call wrote to the state, shared with the host so a failed
/// ADD can be undone whatever became of the guest.
#[derive(Default)]
pub struct Written {
    /// What the file held before this call first wrote it (`None` inside:
    /// there was none).
    prior: Mutex<Option<Option<Vec<u8>>>>,
    /// Held by every file write and by the rollback; true once rolled
    /// back: a write still running when the guest was stopped (at the
    /// deadline) then cannot land after the rollback.
    io: Mutex<bool>,
}

pub type Prior = Arc<Written>;

/// The directory of a network's attachment states, under `root` (the
/// node's `STATE_ROOT`, or a simulated node's).
pub fn location(root: &Path, network: &str) -> StoreLocation {
    StoreLocation {
        root: root.to_path_buf(),
        below: PathBuf::from(network),
    }
}

/// An attachment, hashed: any container ID and interface name make one
/// plain path component.
pub fn attachment_tag(container_id: &str, ifname: &str) -> String {
    Sha256::digest(format!("{container_id}\0{ifname}"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The state file of `module` for an attachment.
pub fn file_name(container_id: &str, ifname: &str, module: &str) -> String {
    format!("{}.{module}", attachment_tag(container_id, ifname))
}

pub struct AttachmentStateCtx {
    location: StoreLocation,
    file: String,
    phase: Phase,
    limits: Arc<CallLimits>,
    prior: Prior,
}

fn check_key(key: &str) -> CapResult<()> {
    let ok = (1..=MAX_KEY).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CapError::invalid(format!(
            "attachment-state key {key:?}: 1 to {MAX_KEY} letters, digits, '-', '_' or '.'"
        )))
    }
}

impl AttachmentStateCtx {
    pub fn new(
        location: StoreLocation,
        file: String,
        phase: Phase,
        limits: &Arc<CallLimits>,
        prior: Prior,
    ) -> Self {
        AttachmentStateCtx {
            location,
            file,
            phase,
            limits: limits.clone(),
            prior,
        }
    }

    async fn dir(&self, create: bool) -> CapResult<Option<Arc<StoreDir>>> {
        let loc = self.location.clone();
        blocking(move || StoreDir::open(&loc.root, &loc.below, create))
            .await
            .map(|d| d.map(Arc::new))
            .map_err(|e| CapError::io("open the attachment's state", e))
    }

    async fn read(&self) -> CapResult<(Option<Vec<u8>>, BTreeMap<String, String>)> {
        let Some(dir) = self.dir(false).await? else {
            return Ok((None, BTreeMap::new()));
        };
        let file = self.file.clone();
        let bytes = blocking(move || dir.read(&file))
            .await
            .map_err(|e| CapError::io("read the attachment's state", e))?;
        let map = match &bytes {
            Some(b) => serde_json::from_slice(b).map_err(|e| {
                CapError::other(format!(
                    "the attachment's state is not what the host wrote: {e}"
                ))
            })?,
            None => BTreeMap::new(),
        };
        Ok((bytes, map))
    }

    /// Write `map` (none left: the file goes), keeping what was there
    /// before this call's first write.
    async fn write(&self, before: Option<Vec<u8>>, map: BTreeMap<String, String>) -> CapResult<()> {
        if !self.limits.store_write() {
            return Err(CapError::denied(format!(
                "a call writes at most {} entries",
                crate::limits::MAX_STORE_WRITES
            )));
        }
        let bytes = serde_json::to_vec(&map).expect("a map of strings");
        if bytes.len() > MAX_FILE {
            return Err(CapError::invalid(format!(
                "an attachment's state is at most {MAX_FILE} bytes as written"
            )));
        }
        self.prior
            .prior
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(before);
        let dir = self
            .dir(self.phase == Phase::Add)
            .await?
            .ok_or_else(|| CapError::not_found("the attachment has no state"))?;
        let (file, written) = (self.file.clone(), self.prior.clone());
        blocking(move || {
            let rolled_back = written.io.lock().unwrap_or_else(|e| e.into_inner());
            if *rolled_back {
                return Err(std::io::Error::other("the call was rolled back"));
            }
            if map.is_empty() {
                dir.remove(&file).map(drop)
            } else {
                dir.replace(&file, &bytes)
            }
        })
        .await
        .map_err(|e| CapError::io("write the attachment's state", e))
    }
}

impl attachment_state::Host for AttachmentStateCtx {
    async fn get(&mut self, key: String) -> CapResult<Option<String>> {
        check_key(&key)?;
        if matches!(self.phase, Phase::Gc | Phase::Status) {
            return Err(CapError::denied(
                "attachment state is for ADD, CHECK and DEL",
            ));
        }
        Ok(self.read().await?.1.remove(&key))
    }

    async fn put(&mut self, key: String, value: String) -> CapResult<()> {
        check_key(&key)?;
        if self.phase != Phase::Add {
            return Err(CapError::denied(format!(
                "attachment state {key:?}: only ADD writes it ({} reads)",
                self.phase.name()
            )));
        }
        store_write(self.phase, "attachment state", true)?;
        if value.len() > MAX_VALUE {
            return Err(CapError::invalid(format!(
                "attachment state {key:?}: a value is at most {MAX_VALUE} bytes"
            )));
        }
        let (before, mut map) = self.read().await?;
        map.insert(key, value);
        if map.len() > MAX_KEYS {
            return Err(CapError::invalid(format!(
                "an attachment keeps at most {MAX_KEYS} keys"
            )));
        }
        self.write(before, map).await
    }

    async fn delete(&mut self, key: String) -> CapResult<bool> {
        check_key(&key)?;
        if !matches!(self.phase, Phase::Add | Phase::Del) {
            return Err(CapError::denied(format!(
                "attachment state {key:?}: {} only reads",
                self.phase.name()
            )));
        }
        let (before, mut map) = self.read().await?;
        if map.remove(&key).is_none() {
            return Ok(false);
        }
        self.write(before, map).await.map(|()| true)
    }
}

/// Put back an attachment's state as it was before a failed ADD.
pub async fn rollback(location: &StoreLocation, file: &str, written: Prior) -> Result<(), String> {
    let (loc, file) = (location.clone(), file.to_string());
    blocking(move || {
        // No write of the call's lands after this one.
        let mut rolled_back = written.io.lock().unwrap_or_else(|e| e.into_inner());
        *rolled_back = true;
        let Some(before) = written
            .prior
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return Ok(());
        };
        let Some(dir) = StoreDir::open(&loc.root, &loc.below, false)? else {
            return Ok(());
        };
        match before {
            Some(bytes) => dir.replace(&file, &bytes),
            None => dir.remove(&file).map(drop),
        }
    })
    .await
    .map_err(|e| format!("put back the attachment's state: {e}"))
}

/// Remove states of a network's attachments (`remove`), then its
/// directory if nothing is left in it. How many went.
pub async fn retain(location: &StoreLocation, remove: RemoveWhich) -> Result<usize, String> {
    let loc = location.clone();
    blocking(move || {
        let Some(dir) = StoreDir::open(&loc.root, &loc.below, false)? else {
            return Ok(0);
        };
        let mut n = 0;
        for name in dir.names()? {
            let attachment = name.split('.').next().unwrap_or_default();
            let goes = match &remove {
                RemoveWhich::One(f) => name == *f,
                RemoveWhich::AllBut(keep) => !keep.iter().any(|k| k == attachment),
            };
            if goes && dir.remove(&name)? {
                n += 1;
            }
        }
        // A network with no state left keeps no directory (a directory is
        // removed only when empty; a link there was refused by the walk).
        // Under Landlock it stays: removing it needs a right on its parent
        // that a call is not given (one empty directory per network, as an
        // IPAM store's).
        if dir.is_empty()? {
            let _ = std::fs::remove_dir(loc.root.join(&loc.below));
        }
        Ok(n)
    })
    .await
    .map_err(|e: std::io::Error| format!("remove attachments' state: {e}"))
}

/// Which states [`retain`] removes.
pub enum RemoveWhich {
    /// One module's of one attachment (after its DEL).
    One(String),
    /// Every attachment's but these (GC: the valid attachments' tags).
    AllBut(Vec<String>),
}
