//! `wasm-cni:plugin/attachment-state` (0.2.0): a small store of one
//! attachment's own, kept between its ADD and its DEL (`tuning` keeps the
//! settings it replaced, to put them back).
//!
//! One JSON object per attachment, in the file named by the sha256 of its
//! container ID and interface, in `/var/lib/wasm-cni/attachments/<network>`
//! (wasm-cni's own state, where no config may point a store, beside the
//! network locks; GC removes what reboots leave): the same
//! directory walk and descriptor-relative, link-refusing file operations
//! as the IPAM store (`kernel::store`). The grant: ADD writes; CHECK reads;
//! DEL reads and deletes; GC and STATUS see nothing. The host removes an
//! attachment's state after its successful DEL, removes the state of
//! attachments a GC does not name valid, and puts back what a failed ADD
//! wrote (`Prior`).

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

/// What the state file held before this call first wrote it (`None`
/// inside: there was none), to put back if the ADD fails.
pub type Prior = Arc<Mutex<Option<Option<Vec<u8>>>>>;

/// The directory of a network's attachment states, under `root` (the
/// node's `STATE_ROOT`, or a simulated node's).
pub fn location(root: &Path, network: &str) -> StoreLocation {
    StoreLocation {
        root: root.to_path_buf(),
        below: PathBuf::from(network),
    }
}

/// The state file's name: the attachment, hashed (any container ID and
/// interface name make one plain path component).
pub fn file_name(container_id: &str, ifname: &str) -> String {
    Sha256::digest(format!("{container_id}\0{ifname}"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
        attachment: (&str, &str),
        phase: Phase,
        limits: &Arc<CallLimits>,
        prior: Prior,
    ) -> Self {
        AttachmentStateCtx {
            location,
            file: file_name(attachment.0, attachment.1),
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
            return Err(CapError::denied("a call writes at most so many entries"));
        }
        self.prior
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(before);
        let dir = self
            .dir(self.phase == Phase::Add)
            .await?
            .ok_or_else(|| CapError::not_found("the attachment has no state"))?;
        let file = self.file.clone();
        let done = if map.is_empty() {
            blocking(move || dir.remove(&file).map(drop)).await
        } else {
            let bytes = serde_json::to_vec(&map).expect("a map of strings");
            blocking(move || dir.replace(&file, &bytes)).await
        };
        done.map_err(|e| CapError::io("write the attachment's state", e))
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
pub async fn rollback(location: &StoreLocation, file: &str, prior: Prior) -> Result<(), String> {
    let Some(before) = prior.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return Ok(());
    };
    let (loc, file) = (location.clone(), file.to_string());
    blocking(move || {
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

/// Remove the states of a network's attachments but `keep` (file names):
/// DEL (keep none but others') and GC. How many went.
pub async fn retain(location: &StoreLocation, remove: RemoveWhich) -> Result<usize, String> {
    let loc = location.clone();
    blocking(move || {
        let Some(dir) = StoreDir::open(&loc.root, &loc.below, false)? else {
            return Ok(0);
        };
        let mut n = 0;
        for name in dir.names()? {
            let goes = match &remove {
                RemoveWhich::One(f) => name == *f,
                RemoveWhich::AllBut(keep) => !keep.contains(&name),
            };
            if goes && dir.remove(&name)? {
                n += 1;
            }
        }
        Ok(n)
    })
    .await
    .map_err(|e: std::io::Error| format!("remove attachments' state: {e}"))
}

/// Which states [`retain`] removes.
pub enum RemoveWhich {
    /// This attachment's (after its DEL).
    One(String),
    /// Every one not named (GC: the valid attachments' files).
    AllBut(Vec<String>),
}
