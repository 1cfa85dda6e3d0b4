//! Which addresses an attachment holds, without reading the whole store.
//!
//! The reference's layout answers "what does container X hold" only by
//! reading every reservation (`GetByID` walks the directory), so its ADD
//! (the duplicate check) and DEL (the release) grow with the pods on the
//! network: with 500, that read was most of what a wasm-cni ADD or DEL
//! spent beyond the kernel's own growth. Beside the reference's files,
//! wasm-cni keeps one entry per attachment, `attachment.<hash>`, listing
//! its addresses, and a marker, `attachment-index`, that says every
//! reservation of the store is listed (a store the reference or an older
//! wasm-cni filled is indexed by a later ADD first, at most
//! [`WRITES_PER_CALL`] entries a call, the marker last).
//!
//! The index is a hint, never a grant: an address it lists counts only
//! when its reservation file still names the attachment (another writer,
//! such as the reference plugin run again on this node, does not keep the
//! index), and a DEL the index knows nothing about reads the whole store,
//! as before. What another writer adds after the marker is missed only by
//! the duplicate check of a second ADD of the same attachment.
//!
//! The reference ignores these files: their names are not addresses (its
//! walks skip them) and their contents never equal `<id>\r\n<ifname>` or
//! `<id>` (what its release deletes by).

use crate::allocator::Disk;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

pub const PREFIX: &str = "attachment.";
pub const MARKER: &str = "attachment-index";
const MARKER_VALUE: &str = "wasm-cni attachment index 1";
/// Entries written per call while an inherited store is indexed (a call
/// may write 256).
pub const WRITES_PER_CALL: usize = 100;

/// An attachment as its reservation files name it: `<id>\r\n<ifname>`, or
/// `<id>` alone in files from before ifnames were recorded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Owner {
    pub id: String,
    pub ifname: Option<String>,
}

impl Owner {
    pub fn new(id: &str, ifname: &str) -> Owner {
        Owner {
            id: id.trim().to_string(),
            ifname: Some(ifname.to_string()),
        }
    }

    pub fn legacy(id: &str) -> Owner {
        Owner {
            id: id.trim().to_string(),
            ifname: None,
        }
    }

    /// Whose a reservation file's content says it is.
    pub fn of_reservation(value: &str) -> Owner {
        match value.trim().split_once("\r\n") {
            Some((id, ifname)) => Owner::new(id, ifname),
            None => Owner::legacy(value),
        }
    }

    /// What its reservation files hold.
    pub fn reservation(&self) -> String {
        match &self.ifname {
            Some(ifname) => format!("{}\r\n{ifname}", self.id),
            None => self.id.clone(),
        }
    }

    fn key(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.reservation().as_bytes());
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("{PREFIX}{hex}")
    }

    /// Whether `valid` (GC's `(container id, ifname)` pairs) has it: a
    /// legacy owner by its id alone.
    pub fn is_in(&self, valid: &[(String, String)]) -> bool {
        valid.iter().any(|(id, ifname)| {
            id.trim() == self.id && self.ifname.as_ref().is_none_or(|f| f == ifname)
        })
    }
}

/// An entry: the owner's id and ifname (empty for a legacy owner) on two
/// lines, then one address a line.
fn entry(owner: &Owner, ips: &[IpAddr]) -> String {
    let mut v = format!("{}\n{}", owner.id, owner.ifname.as_deref().unwrap_or(""));
    for ip in ips {
        v.push('\n');
        v.push_str(&ip.to_string());
    }
    v
}

fn parse(value: &str) -> Option<(Owner, Vec<IpAddr>)> {
    let mut lines = value.split('\n');
    let id = lines.next()?;
    let ifname = lines.next()?;
    let owner = if ifname.is_empty() {
        Owner::legacy(id)
    } else {
        Owner::new(id, ifname)
    };
    Some((owner, lines.filter_map(|l| l.trim().parse().ok()).collect()))
}

/// Whether every reservation is listed: the index may be asked.
pub fn complete(disk: &dyn Disk) -> Result<bool, String> {
    Ok(disk.get(MARKER)?.is_some_and(|v| v == MARKER_VALUE))
}

/// The addresses the index lists for `owner` whose reservations still
/// name it; `None` when it has no entry.
pub fn held(disk: &dyn Disk, owner: &Owner) -> Result<Option<Vec<IpAddr>>, String> {
    let Some((listed_for, ips)) = disk.get(&owner.key())?.as_deref().and_then(parse) else {
        return Ok(None);
    };
    let want = owner.reservation();
    let mut out = Vec::new();
    if listed_for == *owner {
        for ip in ips {
            if disk.get(&ip.to_string())?.is_some_and(|v| v.trim() == want) {
                out.push(ip);
            }
        }
    }
    Ok(Some(out))
}

/// `ip` is now `owner`'s: add it to the owner's entry.
pub fn add(disk: &mut dyn Disk, owner: &Owner, ip: IpAddr) -> Result<(), String> {
    let key = owner.key();
    let mut ips = match disk.get(&key)?.as_deref().and_then(parse) {
        Some((o, ips)) if o == *owner => ips,
        _ => Vec::new(),
    };
    if !ips.contains(&ip) {
        ips.push(ip);
    }
    disk.put(&key, &entry(owner, &ips))
}

/// `ips` are no longer `owner`'s (an ADD undoing its reservations).
pub fn remove(disk: &mut dyn Disk, owner: &Owner, ips: &[IpAddr]) -> Result<(), String> {
    let key = owner.key();
    let Some((o, mut listed)) = disk.get(&key)?.as_deref().and_then(parse) else {
        return Ok(());
    };
    listed.retain(|ip| !ips.contains(ip));
    if o != *owner || listed.is_empty() {
        disk.delete(&key).map(drop)
    } else {
        disk.put(&key, &entry(owner, &listed))
    }
}

/// Drop `owner`'s entry (its addresses were released).
pub fn forget(disk: &mut dyn Disk, owner: &Owner) -> Result<(), String> {
    disk.delete(&owner.key()).map(drop)
}

/// Index a store this index does not cover yet, from `entries` (the whole
/// store, just read): each owner's entry written where it is missing or
/// differs, [`WRITES_PER_CALL`] at most, and the marker once all are.
pub fn build(disk: &mut dyn Disk, entries: &[(String, String)]) -> Result<(), String> {
    let mut owners: BTreeMap<Owner, Vec<IpAddr>> = BTreeMap::new();
    for (key, value) in entries {
        if let Ok(ip) = key.parse::<IpAddr>() {
            owners
                .entry(Owner::of_reservation(value))
                .or_default()
                .push(ip);
        }
    }
    let present: HashMap<&str, &str> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut writes = 0;
    for (owner, mut ips) in owners {
        ips.sort();
        let (key, want) = (owner.key(), entry(&owner, &ips));
        let listed = present.get(key.as_str()).and_then(|v| parse(v));
        if listed.is_some_and(|(o, mut l)| {
            l.sort();
            o == owner && l == ips
        }) {
            continue;
        }
        if writes == WRITES_PER_CALL {
            // The next ADD goes on.
            return Ok(());
        }
        disk.put(&key, &want)?;
        writes += 1;
    }
    disk.put(MARKER, MARKER_VALUE)
}

/// GC: drop the entries of attachments that are not `valid`.
pub fn collect(
    disk: &mut dyn Disk,
    entries: &[(String, String)],
    valid: &[(String, String)],
) -> Vec<String> {
    let mut failures = Vec::new();
    for (key, value) in entries {
        if !key.starts_with(PREFIX) {
            continue;
        }
        if parse(value).is_some_and(|(owner, _)| owner.is_in(valid)) {
            continue;
        }
        if let Err(e) = disk.delete(key) {
            failures.push(format!("forget {key}: {e}"));
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocator::tests::MemDisk;
    use crate::allocator::{allocate, collect as gc, held_by, release, unreserve};
    use crate::range::{RangeSet, RawRange};

    fn set() -> RangeSet {
        RangeSet::parse(&[RawRange {
            subnet: "10.1.0.0/16".into(),
            ..Default::default()
        }])
        .unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn index_keys(d: &MemDisk) -> Vec<&String> {
        d.0.keys().filter(|k| k.starts_with(PREFIX)).collect()
    }

    #[test]
    fn with_the_index_an_add_and_a_del_read_no_other_attachments_entries() {
        let mut d = MemDisk::default();
        for n in 0..500 {
            allocate(&mut d, 0, &set(), &format!("c{n}"), "eth0", None).unwrap();
        }
        assert!(complete(&d).unwrap());
        assert_eq!(index_keys(&d).len(), 500);
        d.1.set(0);
        let a = allocate(&mut d, 0, &set(), "new", "eth0", None).unwrap();
        assert_eq!(held_by(&d, "new", "eth0").unwrap(), [a.address.ip()]);
        let dup = allocate(&mut d, 0, &set(), "c7", "eth0", None).unwrap_err();
        assert!(dup.contains("duplicate allocation"), "{dup}");
        assert_eq!(release(&mut d, "new", "eth0").unwrap(), 1);
        assert_eq!(d.1.get(), 0, "no call read the whole store");
        assert!(!d.0.contains_key(&a.address.ip().to_string()));
        assert_eq!(index_keys(&d).len(), 500, "its entry went with it");
    }

    #[test]
    fn an_inherited_store_is_indexed_a_bounded_number_of_entries_a_call() {
        // 250 pods the reference added (and one from before ifnames).
        let mut d = MemDisk::default();
        for n in 0..250 {
            d.0.insert(format!("10.1.1.{n}"), format!("ref{n}\r\neth0"));
        }
        d.0.insert("10.1.2.1".into(), "old\n".into());
        d.0.insert("last_reserved_ip.0".into(), "10.1.1.249".into());
        allocate(&mut d, 0, &set(), "a", "eth0", None).unwrap();
        assert!(!complete(&d).unwrap());
        assert_eq!(index_keys(&d).len(), WRITES_PER_CALL + 1, "+ a's own");
        // Meanwhile the duplicate check still reads everything.
        let dup = allocate(&mut d, 0, &set(), "ref200", "eth0", None).unwrap_err();
        assert!(dup.contains("duplicate allocation"), "{dup}");
        allocate(&mut d, 0, &set(), "b", "eth0", None).unwrap();
        allocate(&mut d, 0, &set(), "c", "eth0", None).unwrap();
        assert!(complete(&d).unwrap());
        assert_eq!(index_keys(&d).len(), 251 + 3);
        // Now the index answers, the legacy owner included.
        d.1.set(0);
        assert_eq!(held_by(&d, "ref10", "eth0").unwrap(), [ip("10.1.1.10")]);
        assert_eq!(release(&mut d, "old", "eth0").unwrap(), 1);
        assert_eq!(release(&mut d, "ref10", "eth0").unwrap(), 1);
        assert_eq!(d.1.get(), 0);
        assert!(!d.0.contains_key("10.1.1.10") && !d.0.contains_key("10.1.2.1"));
        assert!(d.0.contains_key("10.1.1.11"));
    }

    #[test]
    fn the_index_is_a_hint_the_reservation_files_decide() {
        let mut d = MemDisk::default();
        let a = allocate(&mut d, 0, &set(), "c1", "eth0", None).unwrap();
        let mine = a.address.ip().to_string();
        // Another writer (the reference, run again) released c1's address
        // and gave it to c2; the index still lists it for c1.
        d.0.insert(mine.clone(), "c2\r\neth0".into());
        assert!(held_by(&d, "c1", "eth0").unwrap().is_empty());
        assert_eq!(release(&mut d, "c1", "eth0").unwrap(), 0);
        assert_eq!(d.0[&mine], "c2\r\neth0", "c2's reservation stays");
        // And one it reserved after the marker, the index knows nothing
        // of: a DEL and a CHECK read the store for it.
        d.0.insert("10.1.9.9".into(), "c3\r\neth0".into());
        assert_eq!(held_by(&d, "c3", "eth0").unwrap(), [ip("10.1.9.9")]);
        assert_eq!(release(&mut d, "c3", "eth0").unwrap(), 1);
        // An entry that names another attachment (a planted or colliding
        // one) lists nothing.
        let key = Owner::new("c4", "eth0").key();
        d.0.insert("10.1.9.10".into(), "c5\r\neth0".into());
        d.0.insert(key, "c5\neth0\n10.1.9.10".into());
        assert!(held_by(&d, "c4", "eth0").unwrap().is_empty());
        assert_eq!(release(&mut d, "c4", "eth0").unwrap(), 0);
        assert!(d.0.contains_key("10.1.9.10"));
    }

    #[test]
    fn an_add_that_gives_back_its_addresses_takes_them_off_the_index() {
        let mut d = MemDisk::default();
        let a = allocate(&mut d, 0, &set(), "c1", "eth0", None).unwrap();
        let key = a.address.ip().to_string();
        unreserve(&mut d, "c1", "eth0", std::slice::from_ref(&key));
        assert!(!d.0.contains_key(&key));
        assert!(index_keys(&d).is_empty());
        assert!(complete(&d).unwrap(), "the marker stays");
    }

    #[test]
    fn gc_drops_the_entries_of_attachments_that_are_gone() {
        let mut d = MemDisk::default();
        for id in ["live", "gone"] {
            allocate(&mut d, 0, &set(), id, "eth0", None).unwrap();
        }
        let (released, failures) = gc(&mut d, &[("live".into(), "eth0".into())]).unwrap();
        assert_eq!((released.len(), failures.len()), (1, 0));
        assert_eq!(index_keys(&d), [&Owner::new("live", "eth0").key()]);
        assert_eq!(held_by(&d, "live", "eth0").unwrap().len(), 1);
    }

    #[test]
    fn the_references_release_and_walks_pass_the_index_by() {
        let mut d = MemDisk::default();
        allocate(&mut d, 0, &set(), "c1", "eth0", None).unwrap();
        d.0.insert("10.1.3.3".into(), "legacy".into());
        release(&mut d, "nobody", "eth0").unwrap();
        allocate(&mut d, 0, &set(), "c2", "eth1", None).unwrap();
        for (key, value) in &d.0 {
            if key.starts_with(PREFIX) || key == MARKER {
                // Its walks take only names that parse as addresses, and
                // its release deletes by exact content.
                assert!(key.parse::<IpAddr>().is_err());
                for (id, ifname) in [("c1", "eth0"), ("c2", "eth1"), ("legacy", "")] {
                    assert_ne!(value.trim(), format!("{id}\r\n{ifname}"));
                    assert_ne!(value.trim(), id);
                }
            }
        }
    }
}
