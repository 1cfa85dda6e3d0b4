//! Allocation over the on-disk layout of the reference host-local
//! (backend/disk): `<ip>` holds `<container id>\r\n<ifname>`,
//! `last_reserved_ip.<set index>` the last address handed out.

use crate::index::{self, Owner};
use crate::range::RangeSet;
use ipnetwork::IpNetwork;
use std::net::IpAddr;

/// What the allocator needs of the store (the host's `store` interface in
/// production, a map in tests). Callers hold the lock.
pub trait Disk {
    fn entries(&self) -> Result<Vec<(String, String)>, String>;
    fn get(&self, key: &str) -> Result<Option<String>, String>;
    /// Create only if absent: false when taken.
    fn create(&mut self, key: &str, value: &str) -> Result<bool, String>;
    fn put(&mut self, key: &str, value: &str) -> Result<(), String>;
    fn delete(&mut self, key: &str) -> Result<bool, String>;
}

pub const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";

/// The bytes an allocation file holds.
pub fn owner(id: &str, ifname: &str) -> String {
    format!("{}\r\n{ifname}", id.trim())
}

/// What the index says `id` + `ifname` holds (and `id` alone), when it
/// covers the store.
fn indexed_held(disk: &dyn Disk, id: &str, ifname: &str) -> Result<Option<Vec<IpAddr>>, String> {
    indexed_held_if(disk, index::complete(disk), id, ifname)
}

fn indexed_held_if(
    disk: &dyn Disk,
    indexed: bool,
    id: &str,
    ifname: &str,
) -> Result<Option<Vec<IpAddr>>, String> {
    if !indexed {
        return Ok(None);
    }
    let mut held = Vec::new();
    for o in [Owner::new(id, ifname), Owner::legacy(id)] {
        held.extend(index::held(disk, &o)?.unwrap_or_default());
    }
    Ok(Some(held))
}

/// Addresses held by `id` + `ifname`, and by `id` alone in files from
/// before ifnames were recorded (the reference's GetByID matches both):
/// from the index, else (nothing there, or no index yet) read from every
/// entry, so a reservation another writer made is found too.
pub fn held_by(disk: &dyn Disk, id: &str, ifname: &str) -> Result<Vec<IpAddr>, String> {
    if let Some(held) = indexed_held(disk, id, ifname)?
        && !held.is_empty()
    {
        return Ok(held);
    }
    let want = owner(id, ifname);
    Ok(disk
        .entries()?
        .into_iter()
        .filter(|(_, v)| v.trim() == want || v.trim() == id.trim())
        .filter_map(|(k, _)| k.parse().ok())
        .collect())
}

/// Whether an entry is a reservation (its key an address), not the lock
/// or a `last_reserved_ip.*` cursor.
pub fn is_reservation(key: &str) -> bool {
    key.parse::<IpAddr>().is_ok()
}

/// GC: release every reservation whose attachment is not `valid`
/// (`(container id, ifname)` pairs; a legacy id-only file is valid when
/// its id is). Keeps going past a failed delete; the keys released and the
/// failures.
pub fn collect(
    disk: &mut dyn Disk,
    valid: &[(String, String)],
) -> Result<(Vec<String>, Vec<String>), String> {
    let mut released = Vec::new();
    let mut failures = Vec::new();
    let entries = disk.entries()?;
    for (key, value) in &entries {
        if !is_reservation(key) {
            continue;
        }
        let value = value.trim();
        let in_use = match value.split_once("\r\n") {
            Some((id, ifname)) => valid.iter().any(|(i, f)| i.trim() == id && f == ifname),
            None => valid.iter().any(|(i, _)| i.trim() == value),
        };
        if in_use {
            continue;
        }
        match disk.delete(key) {
            Ok(_) => released.push(key.clone()),
            Err(e) => failures.push(format!("release {key}: {e}")),
        }
    }
    let kept: std::collections::HashSet<IpAddr> = entries
        .iter()
        .filter(|(k, _)| !released.contains(k))
        .filter_map(|(k, _)| k.parse().ok())
        .collect();
    index::collect(disk, &entries, &kept);
    Ok((released, failures))
}

/// An allocated address with its prefix, and its range's gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub address: IpNetwork,
    pub gateway: IpAddr,
    /// Whether the attachment index lists it (see `index::add`).
    pub listed: bool,
}

/// Allocate one address of `set` (index `set_index`) to `id` + `ifname`:
/// `requested`, or the next free one after the last reserved.
#[cfg(test)]
pub fn allocate(
    disk: &mut dyn Disk,
    set_index: usize,
    set: &RangeSet,
    id: &str,
    ifname: &str,
    requested: Option<IpAddr>,
) -> Result<Allocation, String> {
    let indexed = index::complete(disk);
    allocate_in(disk, indexed, set_index, set, id, ifname, requested)
}

/// [`allocate`], in an ADD that found the index covering the store
/// (`indexed`) when it began: its own reservations move the cursors the
/// index is checked by.
pub fn allocate_in(
    disk: &mut dyn Disk,
    indexed: bool,
    set_index: usize,
    set: &RangeSet,
    id: &str,
    ifname: &str,
    requested: Option<IpAddr>,
) -> Result<Allocation, String> {
    let value = owner(id, ifname);
    let last_key = format!("{LAST_RESERVED_PREFIX}{set_index}");
    let listed = std::cell::Cell::new(false);
    let reserve = |disk: &mut dyn Disk, ip: IpAddr| -> Result<bool, String> {
        let key = ip.to_string();
        // Looked at first, under the lock: a walk past taken addresses
        // spends no writes (a call may write 256 entries). Anything there,
        // even unreadable, is taken.
        if !matches!(disk.get(&key), Ok(None)) {
            return Ok(false);
        }
        listed.set(index::add(disk, &Owner::new(id, ifname), ip));
        if !disk.create(&key, &value)? {
            return Ok(false);
        }
        disk.put(&last_key, &key)?;
        Ok(true)
    };
    if let Some(ip) = requested {
        let r = set
            .range_for(ip)
            .ok_or_else(|| format!("{ip} not in range set {set}"))?;
        if ip == r.gateway {
            return Err(format!("requested ip {ip} is subnet's gateway"));
        }
        if r.reserved(ip) {
            return Err(format!(
                "requested ip {ip} is the network or broadcast address of {}",
                r.subnet
            ));
        }
        if !reserve(disk, ip)? {
            return Err(format!(
                "requested IP address {ip} is not available in range set {set}"
            ));
        }
        return Ok(Allocation {
            address: IpNetwork::new(ip, r.subnet.prefix()).expect("prefix"),
            gateway: r.gateway,
            listed: listed.get(),
        });
    }
    // The index alone, once it covers the store: reading every entry on
    // every ADD is what it saves (see `index`).
    let held = match indexed_held_if(disk, indexed, id, ifname)? {
        Some(held) => held,
        None => held_by(disk, id, ifname)?,
    };
    if let Some(ip) = held.into_iter().find(|ip| set.contains(*ip)) {
        return Err(format!(
            "{ip} has been allocated to {id}, duplicate allocation is not allowed"
        ));
    }
    let last = disk.get(&last_key)?.and_then(|s| s.trim().parse().ok());
    for (address, gateway) in set.iter_from(last) {
        if reserve(disk, address.ip())? {
            return Ok(Allocation {
                address,
                gateway,
                listed: listed.get(),
            });
        }
    }
    Err(format!("no IP addresses available in range set: {set}"))
}

/// Release what `id` + `ifname` holds; entries from before ifnames were
/// recorded (the id alone) are released when nothing else matched. The
/// index answers when it covers the store and knows the attachment; else
/// every entry is read.
pub fn release(disk: &mut dyn Disk, id: &str, ifname: &str) -> Result<usize, String> {
    let owners = [Owner::new(id, ifname), Owner::legacy(id)];
    if index::complete(disk) {
        for o in &owners {
            match index::held(disk, o)? {
                Some(ips) if !ips.is_empty() => {
                    for ip in &ips {
                        disk.delete(&ip.to_string())?;
                    }
                    index::forget(disk, o);
                    return Ok(ips.len());
                }
                // Listed, but its reservations are gone or another's.
                Some(_) => index::forget(disk, o),
                None => {}
            }
        }
    }
    let entries = disk.entries()?;
    let mine = |want: &str| -> Vec<String> {
        entries
            .iter()
            .filter(|(k, v)| v.trim() == want && is_reservation(k))
            .map(|(k, _)| k.clone())
            .collect()
    };
    let mut keys = mine(&owner(id, ifname));
    if keys.is_empty() {
        keys = mine(id.trim());
    }
    for k in &keys {
        disk.delete(k)?;
    }
    if !keys.is_empty() {
        for o in &owners {
            index::forget(disk, o);
        }
    }
    Ok(keys.len())
}

/// An ADD that fails after reserving `keys` for `id` + `ifname` gives them
/// back.
pub fn unreserve(disk: &mut dyn Disk, id: &str, ifname: &str, keys: &[String]) {
    for key in keys {
        let _ = disk.delete(key);
    }
    let ips: Vec<IpAddr> = keys.iter().filter_map(|k| k.parse().ok()).collect();
    index::remove(disk, &Owner::new(id, ifname), &ips);
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::range::{RangeSet, RawRange};
    use std::collections::BTreeMap;

    /// A store in memory; `.1` counts the reads of every entry.
    #[derive(Default)]
    pub struct MemDisk(pub BTreeMap<String, String>, pub std::cell::Cell<usize>);

    impl Disk for MemDisk {
        fn entries(&self) -> Result<Vec<(String, String)>, String> {
            self.1.set(self.1.get() + 1);
            Ok(self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        fn get(&self, key: &str) -> Result<Option<String>, String> {
            Ok(self.0.get(key).cloned())
        }
        fn create(&mut self, key: &str, value: &str) -> Result<bool, String> {
            if self.0.contains_key(key) {
                return Ok(false);
            }
            self.0.insert(key.into(), value.into());
            Ok(true)
        }
        fn put(&mut self, key: &str, value: &str) -> Result<(), String> {
            self.0.insert(key.into(), value.into());
            Ok(())
        }
        fn delete(&mut self, key: &str) -> Result<bool, String> {
            Ok(self.0.remove(key).is_some())
        }
    }

    /// One call's view of a store, with the host's limit on writes (256),
    /// every write refused past `dies_after` (a process killed there), and
    /// `unreadable` an entry that is there but cannot be read (planted as
    /// a FIFO): the host's `entries` skips it, `get` fails.
    pub struct Call<'a> {
        pub disk: &'a mut MemDisk,
        pub writes: usize,
        pub dies_after: usize,
        pub unreadable: Option<&'static str>,
    }

    impl<'a> Call<'a> {
        pub fn new(disk: &'a mut MemDisk) -> Call<'a> {
            Call {
                disk,
                writes: 0,
                dies_after: usize::MAX,
                unreadable: None,
            }
        }

        fn write(&mut self) -> Result<(), String> {
            if self.writes >= self.dies_after.min(256) {
                return Err("denied: a call writes at most 256 entries".into());
            }
            self.writes += 1;
            Ok(())
        }
    }

    impl Disk for Call<'_> {
        fn entries(&self) -> Result<Vec<(String, String)>, String> {
            let mut all = self.disk.entries()?;
            all.retain(|(k, _)| Some(k.as_str()) != self.unreadable);
            Ok(all)
        }
        fn get(&self, key: &str) -> Result<Option<String>, String> {
            if Some(key) == self.unreadable && self.disk.0.contains_key(key) {
                return Err(format!("{key:?} is not a regular file"));
            }
            self.disk.get(key)
        }
        fn create(&mut self, key: &str, value: &str) -> Result<bool, String> {
            self.write()?;
            self.disk.create(key, value)
        }
        fn put(&mut self, key: &str, value: &str) -> Result<(), String> {
            self.write()?;
            self.disk.put(key, value)
        }
        fn delete(&mut self, key: &str) -> Result<bool, String> {
            self.write()?;
            self.disk.delete(key)
        }
    }

    fn small_set() -> RangeSet {
        // .1 is the gateway, so .2 and .3 are all there is.
        RangeSet::parse(&[RawRange {
            subnet: "10.1.0.0/29".into(),
            range_end: Some("10.1.0.3".into()),
            ..Default::default()
        }])
        .unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn allocations_skip_the_gateway_and_use_the_reference_format() {
        let mut d = MemDisk::default();
        let a = allocate(&mut d, 0, &small_set(), "c1", "eth0", None).unwrap();
        assert_eq!(
            (a.address.to_string(), a.gateway.to_string()),
            ("10.1.0.2/29".into(), "10.1.0.1".into())
        );
        assert_eq!(d.0["10.1.0.2"], "c1\r\neth0");
        assert_eq!(d.0["last_reserved_ip.0"], "10.1.0.2");
    }

    #[test]
    fn exhaustion_names_the_range() {
        let mut d = MemDisk::default();
        allocate(&mut d, 0, &small_set(), "c1", "eth0", None).unwrap();
        allocate(&mut d, 0, &small_set(), "c2", "eth0", None).unwrap();
        let e = allocate(&mut d, 0, &small_set(), "c3", "eth0", None).unwrap_err();
        assert_eq!(
            e,
            "no IP addresses available in range set: 10.1.0.1-10.1.0.3"
        );
    }

    #[test]
    fn round_robin_wraps_and_reuses_released_addresses_last() {
        let mut d = MemDisk::default();
        let set = small_set();
        allocate(&mut d, 0, &set, "c1", "eth0", None).unwrap(); // .2
        allocate(&mut d, 0, &set, "c2", "eth0", None).unwrap(); // .3
        assert_eq!(release(&mut d, "c1", "eth0").unwrap(), 1);
        // After .3 the walk wraps past the gateway to .2, now free.
        let a = allocate(&mut d, 0, &set, "c3", "eth0", None).unwrap();
        assert_eq!(a.address.ip(), ip("10.1.0.2"));
        release(&mut d, "c2", "eth0").unwrap();
        // Last reserved is .2, so the walk starts at .3, free again.
        let b = allocate(&mut d, 0, &set, "c4", "eth0", None).unwrap();
        assert_eq!(b.address.ip(), ip("10.1.0.3"));
    }

    #[test]
    fn requested_addresses_and_duplicates() {
        let mut d = MemDisk::default();
        let set = small_set();
        let a = allocate(&mut d, 0, &set, "c1", "eth0", Some(ip("10.1.0.3"))).unwrap();
        assert_eq!(a.address.to_string(), "10.1.0.3/29");
        assert!(
            allocate(&mut d, 0, &set, "c2", "eth0", Some(ip("10.1.0.3")))
                .unwrap_err()
                .contains("not available")
        );
        assert!(
            allocate(&mut d, 0, &set, "c2", "eth0", Some(ip("10.1.0.1")))
                .unwrap_err()
                .contains("gateway")
        );
        assert!(
            allocate(&mut d, 0, &set, "c2", "eth0", Some(ip("10.9.0.1")))
                .unwrap_err()
                .contains("not in range set")
        );
        assert!(
            allocate(&mut d, 0, &set, "c1", "eth0", None)
                .unwrap_err()
                .contains("duplicate allocation")
        );
        // Same container, another interface: fine.
        assert!(allocate(&mut d, 0, &set, "c1", "eth1", None).is_ok());
    }

    #[test]
    fn release_matches_id_and_ifname_then_legacy_id_alone() {
        let mut d = MemDisk::default();
        d.0.insert("10.1.0.2".into(), "c1\r\neth0".into());
        d.0.insert("10.1.0.3".into(), "c1\r\neth1".into());
        d.0.insert("10.1.0.4".into(), "legacy\n".into());
        d.0.insert("last_reserved_ip.0".into(), "10.1.0.4".into());
        assert_eq!(release(&mut d, "c1", "eth0").unwrap(), 1);
        assert!(d.0.contains_key("10.1.0.3"));
        assert_eq!(release(&mut d, "legacy", "eth0").unwrap(), 1);
        assert_eq!(
            release(&mut d, "unknown", "eth0").unwrap(),
            0,
            "unknown ids release nothing, successfully"
        );
        assert!(d.0.contains_key("last_reserved_ip.0"));
    }

    #[test]
    fn legacy_id_only_files_count_as_held() {
        let mut d = MemDisk::default();
        d.0.insert("10.1.0.2".into(), "old".into());
        assert_eq!(held_by(&d, "old", "eth0").unwrap(), vec![ip("10.1.0.2")]);
        let err = allocate(&mut d, 0, &small_set(), "old", "eth0", None).unwrap_err();
        assert!(err.contains("duplicate allocation"), "{err}");
    }

    #[test]
    fn gc_releases_what_no_valid_attachment_holds() {
        let mut d = MemDisk::default();
        d.0.insert("10.1.0.2".into(), "live\r\neth0".into());
        d.0.insert("10.1.0.3".into(), "live\r\neth1".into());
        d.0.insert("10.1.0.4".into(), "stale\r\neth0".into());
        d.0.insert("10.1.0.5".into(), "live".into());
        d.0.insert("10.1.0.6".into(), "gone".into());
        d.0.insert("last_reserved_ip.0".into(), "10.1.0.6".into());
        let valid = vec![("live".to_string(), "eth0".to_string())];
        let (mut released, failures) = collect(&mut d, &valid).unwrap();
        released.sort();
        assert_eq!(released, ["10.1.0.3", "10.1.0.4", "10.1.0.6"]);
        assert!(failures.is_empty());
        let left: Vec<&String> = d.0.keys().collect();
        assert_eq!(left, ["10.1.0.2", "10.1.0.5", "last_reserved_ip.0"]);
        // Nothing valid: every reservation goes, the cursor stays.
        collect(&mut d, &[]).unwrap();
        assert_eq!(d.0.keys().collect::<Vec<_>>(), ["last_reserved_ip.0"]);
    }

    #[test]
    fn ipv6_addresses_are_written_canonically() {
        let mut d = MemDisk::default();
        let set = RangeSet::parse(&[RawRange {
            subnet: "fd00:0:0:0::/64".into(),
            ..Default::default()
        }])
        .unwrap();
        let a = allocate(&mut d, 1, &set, "c1", "eth0", None).unwrap();
        assert_eq!(a.address.to_string(), "fd00::2/64");
        assert_eq!(d.0["last_reserved_ip.1"], "fd00::2");
        assert!(d.0.contains_key("fd00::2"));
    }
}
