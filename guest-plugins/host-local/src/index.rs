//! Which addresses an attachment holds, without reading the whole store.
//!
//! The reference's layout answers "what does container X hold" only by
//! reading every reservation (`GetByID` walks the directory), so its ADD
//! (the duplicate check) and DEL (the release) grow with the pods on the
//! network: with 500, that read was most of what a wasm-cni ADD or DEL
//! spent beyond the kernel's own growth. Beside the reference's files,
//! wasm-cni keeps one entry per attachment, `attachment.<hash>`, listing
//! its addresses, and a marker, `attachment-index`, that says every
//! reservation of the store is listed. The marker records each set's
//! `last_reserved_ip.<n>` as wasm-cni left it: every reservation moves its
//! set's cursor, the reference's too, so a cursor that moved says another
//! writer reserved since, and calls read the whole store until an ADD has
//! indexed it again. A store the reference or an older wasm-cni filled is
//! indexed at the end of each ADD, at most [`WRITES_PER_CALL`] entries a
//! call, the marker last.
//!
//! The index is a hint, never a grant: an address it lists counts only
//! while its reservation file still names the attachment, a DEL the index
//! knows nothing about reads the whole store, as before, and every step
//! of keeping it is best effort (an entry not written leaves the
//! attachment to that full read). What it cannot see: another writer that
//! reserved exactly the address a cursor already named (a range walked all
//! the way round, or a static address asked for again right after it was
//! released): a second ADD of that attachment is not refused, and its DEL
//! misses that address, which GC then releases. A marker found out of
//! date is removed, so a cursor that comes back to the value it recorded
//! cannot make it true again before an indexing has finished.
//!
//! The reference ignores these files: their names are not addresses (its
//! walks skip them) and their contents never equal `<id>\r\n<ifname>` or
//! `<id>` (what its release deletes by).

use crate::allocator::{Disk, LAST_RESERVED_PREFIX};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

pub const PREFIX: &str = "attachment.";
pub const MARKER: &str = "attachment-index";
/// The marker's first line; then each `last_reserved_ip.<n>` as wasm-cni
/// last left it (`<key> <address>`).
const MARKER_VERSION: &str = "wasm-cni attachment index 2";
/// An entry's first line: no container id holds a line break, so no entry
/// is ever what the reference's release deletes by.
const HEADER: &str = "wasm-cni";
/// Index entries a call writes at most while it indexes an inherited
/// store, or drops in GC: a call writes at most 256 entries, and the
/// reservations come first.
pub const WRITES_PER_CALL: usize = 32;

/// An attachment as its reservation files name it: `<id>\r\n<ifname>`, or
/// `<id>` alone in files from before ifnames were recorded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Owner(String);

impl Owner {
    pub fn new(id: &str, ifname: &str) -> Owner {
        Owner(format!("{}\r\n{ifname}", id.trim()))
    }

    pub fn legacy(id: &str) -> Owner {
        Owner(id.trim().to_string())
    }

    /// Whose a reservation file's content says it is.
    fn of_reservation(value: &str) -> Owner {
        Owner(value.trim().to_string())
    }

    /// What its reservation files hold.
    pub fn reservation(&self) -> &str {
        &self.0
    }

    fn key(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.0.as_bytes());
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("{PREFIX}{hex}")
    }
}

/// An entry: the header, then one address a line. No owner in it (the
/// key is its hash, and the reservation files say whose an address is):
/// its size depends on the range sets, not on the container id.
fn entry(ips: &[IpAddr]) -> String {
    let mut v = HEADER.to_string();
    for ip in ips {
        v.push('\n');
        v.push_str(&ip.to_string());
    }
    v
}

fn parse(value: &str) -> Vec<IpAddr> {
    let mut lines = value.split('\n');
    if lines.next() != Some(HEADER) {
        return Vec::new();
    }
    lines.filter_map(|l| l.trim().parse().ok()).collect()
}

/// Whether every reservation is listed: the index may be asked. Every
/// reservation moves its set's `last_reserved_ip.<n>` (the reference's
/// too), so a cursor that is not what the marker recorded says another
/// writer reserved since: not until an ADD has indexed the store again.
/// A marker that cannot be read (planted as something else) is none.
pub fn complete(disk: &dyn Disk) -> bool {
    let Ok(Some(marker)) = disk.get(MARKER) else {
        return false;
    };
    let mut lines = marker.lines();
    lines.next() == Some(MARKER_VERSION)
        && lines.all(|l| {
            l.split_once(' ').is_some_and(|(cursor, at)| {
                cursor.starts_with(LAST_RESERVED_PREFIX)
                    && disk
                        .get(cursor)
                        .is_ok_and(|v| v.as_deref().map(str::trim) == Some(at))
            })
        })
}

/// [`complete`], for a call that may write: a marker that is there but no
/// longer true is removed, so that only an indexing that finishes writes
/// one again (a cursor moved back to the value it recorded, by an address
/// asked for or a walk that wrapped, would otherwise make it true while
/// owners are still missing from the index).
pub fn complete_or_discard(disk: &mut dyn Disk) -> bool {
    if complete(disk) {
        return true;
    }
    if matches!(disk.get(MARKER), Ok(Some(_))) {
        let _ = disk.delete(MARKER);
    }
    false
}

/// The marker for `cursors` (`last_reserved_ip.<n>` and their values).
fn marker<'a>(cursors: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut m = MARKER_VERSION.to_string();
    for (cursor, at) in cursors {
        m.push('\n');
        m.push_str(cursor);
        m.push(' ');
        m.push_str(at.trim());
    }
    m
}

/// An ADD that found the index complete and listed every address it
/// reserved, after its reservations: the marker records the cursors of
/// its `sets` range sets as they are now (an ADD that could not list one
/// leaves the marker behind its cursors: the next ADD indexes again)
/// (best effort: a marker not rewritten only makes the next calls read
/// the whole store, and the next ADD index it again).
pub fn record(disk: &mut dyn Disk, sets: usize) {
    let mut cursors = Vec::new();
    for n in 0..sets {
        let key = format!("{LAST_RESERVED_PREFIX}{n}");
        if let Ok(Some(at)) = disk.get(&key) {
            cursors.push((key, at));
        }
    }
    let m = marker(cursors.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let _ = disk.put(MARKER, &m);
}

/// The addresses the index lists for `owner` whose reservations still
/// name it; `None` when it has no entry (or one that cannot be read).
pub fn held(disk: &dyn Disk, owner: &Owner) -> Result<Option<Vec<IpAddr>>, String> {
    let Ok(Some(value)) = disk.get(&owner.key()) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for ip in parse(&value) {
        if disk
            .get(&ip.to_string())
            .is_ok_and(|v| v.is_some_and(|v| v.trim() == owner.reservation()))
        {
            out.push(ip);
        }
    }
    Ok(Some(out))
}

/// `ip` is about to be `owner`'s: listed before it is reserved, so a call
/// killed in between lists an address it does not hold (which [`held`]
/// skips) rather than hold one it does not list. Best effort: an entry
/// that cannot be written leaves the attachment to a DEL's full read.
/// Whether it is listed now.
pub fn add(disk: &mut dyn Disk, owner: &Owner, ip: IpAddr) -> bool {
    let key = owner.key();
    let mut ips = disk
        .get(&key)
        .ok()
        .flatten()
        .map(|v| parse(&v))
        .unwrap_or_default();
    if ips.contains(&ip) {
        return true;
    }
    ips.push(ip);
    disk.put(&key, &entry(&ips)).is_ok()
}

/// `ips` are no longer `owner`'s (an ADD undoing its reservations).
pub fn remove(disk: &mut dyn Disk, owner: &Owner, ips: &[IpAddr]) {
    let key = owner.key();
    let Ok(Some(value)) = disk.get(&key) else {
        return;
    };
    let mut listed = parse(&value);
    listed.retain(|ip| !ips.contains(ip));
    let _ = if listed.is_empty() {
        disk.delete(&key).map(drop)
    } else {
        disk.put(&key, &entry(&listed))
    };
}

/// Drop `owner`'s entry (its addresses were released). Best effort: a
/// stale entry lists nothing [`held`] counts.
pub fn forget(disk: &mut dyn Disk, owner: &Owner) {
    let _ = disk.delete(&owner.key());
}

/// Index a store this index does not cover yet (an ADD's last step, best
/// effort): each owner's entry written where it is missing or differs,
/// [`WRITES_PER_CALL`] at most, and the marker once all are.
pub fn build(disk: &mut dyn Disk) {
    let Ok(entries) = disk.entries() else {
        return;
    };
    let mut owners: BTreeMap<Owner, Vec<IpAddr>> = BTreeMap::new();
    for (key, value) in &entries {
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
        let key = owner.key();
        let mut listed = present
            .get(key.as_str())
            .map(|v| parse(v))
            .unwrap_or_default();
        listed.sort();
        if listed == ips {
            continue;
        }
        if writes == WRITES_PER_CALL {
            // The next ADD goes on.
            return;
        }
        if disk.put(&key, &entry(&ips)).is_err() {
            return;
        }
        writes += 1;
    }
    let cursors = entries
        .iter()
        .filter(|(k, _)| k.starts_with(LAST_RESERVED_PREFIX))
        .map(|(k, v)| (k.as_str(), v.as_str()));
    let _ = disk.put(MARKER, &marker(cursors));
}

/// GC, after the reservations not in `kept` were released: drop entries
/// that list none of `kept`, [`WRITES_PER_CALL`] at most (a stale entry
/// is harmless, and the reservations had the call's writes first).
pub fn collect(disk: &mut dyn Disk, entries: &[(String, String)], kept: &HashSet<IpAddr>) {
    let mut writes = 0;
    for (key, value) in entries {
        if writes == WRITES_PER_CALL {
            return;
        }
        if key.starts_with(PREFIX) && !parse(value).iter().any(|ip| kept.contains(ip)) {
            let _ = disk.delete(key);
            writes += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocator::tests::{Call, MemDisk};
    use crate::allocator::{allocate_in, collect as gc, held_by, release, unreserve};
    use crate::range::{RangeSet, RawRange};

    fn set(subnet: &str) -> RangeSet {
        RangeSet::parse(&[RawRange {
            subnet: subnet.into(),
            ..Default::default()
        }])
        .unwrap()
    }

    fn v4() -> RangeSet {
        set("10.1.0.0/16")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn index_keys(d: &MemDisk) -> Vec<&String> {
        d.0.keys().filter(|k| k.starts_with(PREFIX)).collect()
    }

    /// An ADD as host-local makes it: one address per set, then a little
    /// indexing.
    fn add(c: &mut dyn Disk, sets: &[RangeSet], id: &str) -> Result<Vec<IpAddr>, String> {
        let indexed = complete_or_discard(c);
        let (mut ips, mut all_listed) = (Vec::new(), true);
        for (i, s) in sets.iter().enumerate() {
            let a = allocate_in(c, indexed, i, s, id, "eth0", None)?;
            all_listed &= a.listed;
            ips.push(a.address.ip());
        }
        if !indexed {
            build(c);
        } else if all_listed {
            record(c, sets.len());
        }
        Ok(ips)
    }

    /// `n` pods the reference added (it keeps no index).
    fn inherited(n: usize) -> MemDisk {
        let mut d = MemDisk::default();
        for i in 0..n {
            d.0.insert(
                format!("10.1.{}.{}", i / 250, 2 + i % 250),
                format!("ref{i}\r\neth0"),
            );
        }
        d
    }

    #[test]
    fn with_the_index_an_add_and_a_del_read_no_other_attachments_entries() {
        let mut d = MemDisk::default();
        for n in 0..500 {
            add(&mut Call::new(&mut d), &[v4()], &format!("c{n}")).unwrap();
        }
        assert!(complete(&d));
        assert_eq!(index_keys(&d).len(), 500);
        d.1.set(0);
        let a = add(&mut Call::new(&mut d), &[v4()], "new").unwrap();
        assert_eq!(held_by(&d, "new", "eth0").unwrap(), a);
        let dup = add(&mut Call::new(&mut d), &[v4()], "c7").unwrap_err();
        assert!(dup.contains("duplicate allocation"), "{dup}");
        assert_eq!(release(&mut Call::new(&mut d), "new", "eth0").unwrap(), 1);
        assert_eq!(d.1.get(), 0, "no call read the whole store");
        assert!(!d.0.contains_key(&a[0].to_string()));
        assert_eq!(index_keys(&d).len(), 500, "its entry went with it");
    }

    #[test]
    fn an_inherited_store_is_indexed_a_little_every_add_within_its_writes() {
        // 250 pods the reference added, one from before ifnames, and three
        // range sets: indexing once per set (300 writes) failed every ADD.
        let mut d = inherited(250);
        d.0.insert("10.3.0.9".into(), "old".into());
        let sets = [set("10.1.0.0/16"), set("10.2.0.0/16"), set("10.3.0.0/16")];
        let mut adds = 0;
        while !complete(&d) {
            let mut c = Call::new(&mut d);
            add(&mut c, &sets, &format!("new{adds}")).unwrap();
            assert!(c.writes <= 3 * 3 + WRITES_PER_CALL + 1, "{}", c.writes);
            adds += 1;
            // Meanwhile the duplicate check reads everything.
            let dup = add(&mut Call::new(&mut d), &sets, "ref200").unwrap_err();
            assert!(dup.contains("duplicate allocation"), "{dup}");
        }
        assert_eq!(adds, 251_usize.div_ceil(WRITES_PER_CALL));
        d.1.set(0);
        assert_eq!(held_by(&d, "ref10", "eth0").unwrap(), [ip("10.1.0.12")]);
        let mut c = Call::new(&mut d);
        assert_eq!(release(&mut c, "old", "eth0").unwrap(), 1);
        assert_eq!(release(&mut c, "ref10", "eth0").unwrap(), 1);
        assert_eq!(d.1.get(), 0, "the index answered");
        assert!(!d.0.contains_key("10.1.0.12") && !d.0.contains_key("10.3.0.9"));
    }

    #[test]
    fn a_walk_past_taken_addresses_spends_no_writes() {
        // .2-.201 taken, the cursor at .254: the walk wraps and passes 200
        // reservations (200 refused creates used to count as writes).
        let mut d = MemDisk::default();
        for i in 2..=201 {
            d.0.insert(format!("10.1.0.{i}"), format!("ref{i}\r\neth0"));
        }
        d.0.insert("last_reserved_ip.0".into(), "10.1.0.254".into());
        let mut c = Call::new(&mut d);
        assert_eq!(
            add(&mut c, &[set("10.1.0.0/24")], "new").unwrap(),
            [ip("10.1.0.202")]
        );
        assert!(c.writes <= 3 + WRITES_PER_CALL + 1, "{}", c.writes);
    }

    #[test]
    fn an_entry_does_not_grow_with_the_container_id() {
        let mut d = MemDisk::default();
        let long = "a".repeat(4000);
        add(&mut Call::new(&mut d), &[v4()], &long).unwrap();
        let entries: Vec<&String> =
            d.0.iter()
                .filter(|(k, _)| k.starts_with(PREFIX))
                .map(|(_, v)| v)
                .collect();
        assert_eq!(entries, [&"wasm-cni\n10.1.0.2".to_string()]);
        assert_eq!(held_by(&d, &long, "eth0").unwrap(), [ip("10.1.0.2")]);
    }

    #[test]
    fn an_add_killed_at_any_write_leaves_nothing_its_del_misses() {
        let sets = [set("10.1.0.0/24"), set("fd00::/64")];
        for dies_after in 0..12 {
            let mut d = MemDisk::default();
            add(&mut Call::new(&mut d), &sets, "before").unwrap();
            let mut c = Call::new(&mut d);
            c.dies_after = dies_after;
            let _ = add(&mut c, &sets, "killed");
            release(&mut Call::new(&mut d), "killed", "eth0").unwrap();
            let left: Vec<&String> =
                d.0.iter()
                    .filter(|(_, v)| v.contains("killed"))
                    .map(|(k, _)| k)
                    .collect();
            assert!(
                left.is_empty(),
                "killed after {dies_after} writes: {left:?} left"
            );
            assert_eq!(held_by(&d, "before", "eth0").unwrap().len(), 2);
        }
    }

    #[test]
    fn the_index_is_a_hint_the_reservation_files_decide() {
        let mut d = MemDisk::default();
        let a = add(&mut Call::new(&mut d), &[v4()], "c1").unwrap();
        let mine = a[0].to_string();
        // Another writer (the reference, run again) released c1's address
        // and gave it to c2; the index still lists it for c1.
        d.0.insert(mine.clone(), "c2\r\neth0".into());
        assert!(held_by(&d, "c1", "eth0").unwrap().is_empty());
        assert_eq!(release(&mut Call::new(&mut d), "c1", "eth0").unwrap(), 0);
        assert_eq!(d.0[&mine], "c2\r\neth0", "c2's reservation stays");
        // One it reserved after the marker, the index knows nothing of: a
        // DEL and a CHECK read the store for it.
        d.0.insert("10.1.9.9".into(), "c3\r\neth0".into());
        assert_eq!(held_by(&d, "c3", "eth0").unwrap(), [ip("10.1.9.9")]);
        assert_eq!(release(&mut Call::new(&mut d), "c3", "eth0").unwrap(), 1);
        // An entry planted to list another attachment's address lists
        // nothing.
        let key = Owner::new("c4", "eth0").key();
        d.0.insert("10.1.9.10".into(), "c5\r\neth0".into());
        d.0.insert(key, "wasm-cni\n10.1.9.10".into());
        assert!(held_by(&d, "c4", "eth0").unwrap().is_empty());
        assert_eq!(release(&mut Call::new(&mut d), "c4", "eth0").unwrap(), 0);
        assert!(d.0.contains_key("10.1.9.10"));
    }

    #[test]
    fn an_unreadable_marker_or_entry_is_no_index() {
        for planted in [MARKER, "attachment.00000000000000000000000000000000"] {
            let mut d = MemDisk::default();
            add(&mut Call::new(&mut d), &[v4()], "c1").unwrap();
            d.0.insert(planted.into(), "?".into());
            let mut c = Call::new(&mut d);
            c.unreadable = Some(planted);
            assert_eq!(add(&mut c, &[v4()], "c2").unwrap(), [ip("10.1.0.3")]);
            assert_eq!(held_by(&c, "c1", "eth0").unwrap(), [ip("10.1.0.2")]);
            assert_eq!(release(&mut c, "c1", "eth0").unwrap(), 1);
            assert!(
                add(&mut c, &[v4()], "c2")
                    .unwrap_err()
                    .contains("duplicate")
            );
        }
    }

    #[test]
    fn an_add_that_gives_back_its_addresses_takes_them_off_the_index() {
        let mut d = MemDisk::default();
        let a = add(&mut Call::new(&mut d), &[v4()], "c1").unwrap();
        let key = a[0].to_string();
        unreserve(
            &mut Call::new(&mut d),
            "c1",
            "eth0",
            std::slice::from_ref(&key),
        );
        assert!(!d.0.contains_key(&key));
        assert!(index_keys(&d).is_empty());
        assert!(complete(&d), "the marker stays");
    }

    #[test]
    fn gc_releases_first_and_drops_entries_that_list_nothing_kept() {
        // 200 stale attachments: releasing them and dropping every entry
        // too (400 writes) used to fail the GC.
        let mut d = MemDisk::default();
        for n in 0..200 {
            add(&mut Call::new(&mut d), &[v4()], &format!("gone{n}")).unwrap();
        }
        add(&mut Call::new(&mut d), &[v4()], "live").unwrap();
        let mut c = Call::new(&mut d);
        let (released, failures) = gc(&mut c, &[("live".into(), "eth0".into())]).unwrap();
        assert_eq!((released.len(), failures.len()), (200, 0), "{failures:?}");
        assert_eq!(index_keys(&d).len(), 201 - WRITES_PER_CALL);
        // The next GC goes on; the live entry stays.
        for _ in 0..10 {
            gc(&mut Call::new(&mut d), &[("live".into(), "eth0".into())]).unwrap();
        }
        assert_eq!(index_keys(&d), [&Owner::new("live", "eth0").key()]);
        assert_eq!(held_by(&d, "live", "eth0").unwrap().len(), 1);
    }

    #[test]
    fn the_references_release_and_walks_pass_the_index_by() {
        let mut d = MemDisk::default();
        add(&mut Call::new(&mut d), &[v4()], "c1").unwrap();
        // A container id may look like an address.
        add(&mut Call::new(&mut d), &[v4()], "10.1.0.2").unwrap();
        d.0.insert("10.1.3.3".into(), "legacy".into());
        for (key, value) in &d.0 {
            if key.starts_with(PREFIX) || key == MARKER {
                // Its walks take only names that parse as addresses, and
                // its release deletes by exact content.
                assert!(key.parse::<IpAddr>().is_err());
                for (id, ifname) in [("c1", "eth0"), ("10.1.0.2", "eth0"), ("legacy", "")] {
                    assert_ne!(value.trim(), format!("{id}\r\n{ifname}"));
                    assert_ne!(value.trim(), id);
                }
            }
        }
        // Nor does our own release by content take an entry for a
        // reservation.
        let entries_before = index_keys(&d).len();
        release(&mut Call::new(&mut d), "wasm-cni", "eth0").unwrap();
        assert_eq!(index_keys(&d).len(), entries_before);
    }

    /// What the reference plugin does for an ADD: the reservation, and the
    /// set's cursor.
    fn reference_add(d: &mut MemDisk, set: usize, ip: &str, id: &str) {
        d.0.insert(ip.into(), format!("{id}\r\neth0"));
        d.0.insert(format!("last_reserved_ip.{set}"), ip.into());
    }

    #[test]
    fn another_writer_since_the_marker_makes_calls_read_the_store_again() {
        let sets = [set("10.1.0.0/24"), set("fd00::/64")];
        let mut d = MemDisk::default();
        add(&mut Call::new(&mut d), &sets, "c0").unwrap();
        add(&mut Call::new(&mut d), &sets, "c1").unwrap();
        assert!(complete(&d));
        // The node switched back to the reference for a while: it released
        // c1 (the index still lists its addresses) and added c1 again with
        // other addresses, and added c2.
        d.0.remove("10.1.0.3");
        d.0.remove("fd00::3");
        reference_add(&mut d, 0, "10.1.0.9", "c1");
        reference_add(&mut d, 1, "fd00::9", "c1");
        reference_add(&mut d, 0, "10.1.0.10", "c2");
        assert!(!complete(&d), "the cursors moved");
        // A duplicate ADD is refused as the reference refuses it, and a DEL
        // releases what the reference reserved.
        let dup = add(&mut Call::new(&mut d), &sets[..1], "c2").unwrap_err();
        assert!(dup.contains("duplicate allocation"), "{dup}");
        assert_eq!(release(&mut Call::new(&mut d), "c1", "eth0").unwrap(), 2);
        assert!(!d.0.values().any(|v| v.starts_with("c1")));
        // The next ADD indexes the store again.
        add(&mut Call::new(&mut d), &sets, "c3").unwrap();
        assert!(complete(&d));
        d.1.set(0);
        assert_eq!(held_by(&d, "c2", "eth0").unwrap(), [ip("10.1.0.10")]);
        assert_eq!(d.1.get(), 0);
    }

    #[test]
    fn a_marker_of_another_format_is_no_index() {
        let mut d = MemDisk::default();
        add(&mut Call::new(&mut d), &[v4()], "c1").unwrap();
        d.0.insert(MARKER.into(), "wasm-cni attachment index 1".into());
        assert!(!complete(&d));
        d.0.insert(MARKER.into(), format!("{MARKER_VERSION}\nlock 1"));
        assert!(!complete(&d), "only cursors are compared");
    }

    #[test]
    fn an_add_of_the_most_range_sets_a_config_may_have_fits_a_calls_writes() {
        // An inherited store (indexing writes too) and 64 range sets.
        let mut d = inherited(100);
        let sets: Vec<RangeSet> = (0..crate::config::MAX_RANGE_SETS)
            .map(|i| set(&format!("10.2.{i}.0/30")))
            .collect();
        let mut c = Call::new(&mut d);
        assert_eq!(add(&mut c, &sets, "wide").unwrap().len(), sets.len());
        assert!(c.writes <= 256, "{}", c.writes);
    }

    /// A store whose index entries cannot be written.
    struct NoEntries<'a>(&'a mut MemDisk);

    impl Disk for NoEntries<'_> {
        fn entries(&self) -> Result<Vec<(String, String)>, String> {
            self.0.entries()
        }
        fn get(&self, k: &str) -> Result<Option<String>, String> {
            self.0.get(k)
        }
        fn create(&mut self, k: &str, v: &str) -> Result<bool, String> {
            self.0.create(k, v)
        }
        fn put(&mut self, k: &str, v: &str) -> Result<(), String> {
            if k.starts_with(PREFIX) {
                return Err("denied: a call writes at most 256 entries".into());
            }
            self.0.put(k, v)
        }
        fn delete(&mut self, k: &str) -> Result<bool, String> {
            self.0.delete(k)
        }
    }

    #[test]
    fn an_add_that_could_not_list_its_address_leaves_the_index_incomplete() {
        let mut d = MemDisk::default();
        add(&mut Call::new(&mut d), &[v4()], "c0").unwrap();
        assert!(complete(&d));
        add(&mut NoEntries(&mut d), &[v4()], "c1").unwrap();
        assert!(
            !complete(&d),
            "its cursor moved, and the marker was not rewritten"
        );
        // So a second ADD of c1 reads the store, and is refused.
        let dup = add(&mut Call::new(&mut d), &[v4()], "c1").unwrap_err();
        assert!(dup.contains("duplicate allocation"), "{dup}");
    }

    #[test]
    fn a_marker_out_of_date_is_removed_not_revived_by_a_cursor_coming_back() {
        let mut d = MemDisk::default();
        add(&mut Call::new(&mut d), &[set("10.1.0.0/24")], "c1").unwrap();
        release(&mut Call::new(&mut d), "c1", "eth0").unwrap();
        // 40 pods the reference added: more than one ADD indexes.
        for i in 0..40 {
            reference_add(&mut d, 0, &format!("10.1.0.{}", 3 + i), &format!("r{i}"));
        }
        // An ADD that asks for the address the marker recorded moves the
        // cursor back to it while the index is still being built.
        let mut c = Call::new(&mut d);
        let indexed = complete_or_discard(&mut c);
        assert!(!indexed);
        allocate_in(
            &mut c,
            indexed,
            0,
            &set("10.1.0.0/24"),
            "s1",
            "eth0",
            Some(ip("10.1.0.2")),
        )
        .unwrap();
        build(&mut c);
        assert_eq!(d.0["last_reserved_ip.0"], "10.1.0.2");
        assert!(
            !complete(&d),
            "the old marker went; the new one is not written yet"
        );
        // Every reference pod is found until the index is whole.
        let dup = add(&mut Call::new(&mut d), &[set("10.1.0.0/24")], "r9").unwrap_err();
        assert!(dup.contains("duplicate allocation"), "{dup}");
        add(&mut Call::new(&mut d), &[set("10.1.0.0/24")], "s2").unwrap();
        assert!(complete(&d));
        let dup = add(&mut Call::new(&mut d), &[set("10.1.0.0/24")], "r8").unwrap_err();
        assert!(dup.contains("duplicate allocation"), "{dup}");
    }
}
