//! host-local IPAM as a wasm-cni guest: addresses from range sets, state
//! in the host's per-network store, byte-compatible with the reference
//! plugin's `/var/lib/cni/networks/<net>/` so a node can switch either way.

mod allocator;
mod config;
mod index;
mod range;

use allocator::Disk;
use config::IpamConf;
use std::collections::HashSet;
use std::net::IpAddr;
use wasm_cni_sdk::store::{self, Lock};
use wasm_cni_sdk::types::Error;
use wasm_cni_sdk::{
    CapResultExt, CniError, CniResult, GcRequest, IpConfig, IpPrefix, Plugin, Request,
    StatusRequest, codes, resolv_conf,
};

struct HostLocal;

/// The host's store, locked for as long as this value lives.
struct LockedStore {
    _lock: Lock,
}

impl LockedStore {
    fn acquire() -> Result<Self, CniError> {
        Ok(LockedStore {
            _lock: store::acquire_lock().context("lock the IPAM store")?,
        })
    }
}

fn msg(e: wasm_cni_sdk::types::Error) -> String {
    e.describe()
}

impl Disk for LockedStore {
    fn entries(&self) -> Result<Vec<(String, String)>, String> {
        Ok(store::entries()
            .map_err(msg)?
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect())
    }
    fn get(&self, key: &str) -> Result<Option<String>, String> {
        store::get(key).map_err(msg)
    }
    fn create(&mut self, key: &str, value: &str) -> Result<bool, String> {
        store::create(key, value).map_err(msg)
    }
    fn put(&mut self, key: &str, value: &str) -> Result<(), String> {
        store::put(key, value).map_err(msg)
    }
    fn delete(&mut self, key: &str) -> Result<bool, String> {
        store::delete(key).map_err(msg)
    }
}

impl Plugin for HostLocal {
    fn add(req: Request) -> Result<CniResult, CniError> {
        let conf = IpamConf::load(&req)?;
        let mut disk = LockedStore::acquire()?;
        let indexed = index::complete_or_discard(&mut disk);
        let mut all_listed = true;
        let mut requested = conf.requested.clone();
        let mut ips = Vec::new();
        let mut taken: Vec<String> = Vec::new();
        let undo = |disk: &mut LockedStore, taken: &[String]| {
            allocator::unreserve(disk, &req.container_id, &req.ifname, taken)
        };
        for (idx, set) in conf.ranges.iter().enumerate() {
            let want = requested
                .iter()
                .position(|ip| set.contains(*ip))
                .map(|i| requested.remove(i));
            match allocator::allocate_in(
                &mut disk,
                indexed,
                idx,
                set,
                &req.container_id,
                &req.ifname,
                want,
            ) {
                Ok(a) => {
                    all_listed &= a.listed;
                    taken.push(a.address.ip().to_string());
                    ips.push(IpConfig {
                        address: IpPrefix::from(a.address),
                        gateway: Some(a.gateway.into()),
                        interface: None,
                    });
                }
                Err(e) => {
                    undo(&mut disk, &taken);
                    return Err(CniError::failed(format!(
                        "failed to allocate for range {idx}: {e}"
                    )));
                }
            }
        }
        if !requested.is_empty() {
            undo(&mut disk, &taken);
            let list: Vec<String> = requested.iter().map(|ip| ip.to_string()).collect();
            return Err(CniError::failed(format!(
                "failed to allocate all requested IPs: {}",
                list.join(" ")
            )));
        }
        let dns = match &conf.resolv_conf {
            Some(path) => match resolv_conf::read(path) {
                Ok(dns) => dns,
                Err(e) => {
                    undo(&mut disk, &taken);
                    let what = format!("\"ipam.resolvConf\" {path:?}");
                    return Err(match e {
                        // The config named a file it may not, or none.
                        Error::Denied(_) | Error::Invalid(_) | Error::NotFound(_) => {
                            CniError::config(format!("{what}: {}", e.describe()))
                        }
                        e => e.context(what),
                    });
                }
            },
            None => Default::default(),
        };
        // The marker follows this ADD's cursors; a store the reference
        // filled (or wrote to since) is indexed a little every ADD.
        if !indexed {
            index::build(&mut disk);
        } else if all_listed {
            index::record(&mut disk, conf.ranges.len());
        }
        Ok(CniResult {
            ips,
            routes: conf.routes,
            dns,
            ..CniResult::default()
        })
    }

    /// Release by container id and ifname. Needs no valid ranges: a broken
    /// or changed config must not keep addresses allocated forever.
    fn del(req: Request) -> Result<(), CniError> {
        let mut disk = LockedStore::acquire()?;
        let released = allocator::release(&mut disk, &req.container_id, &req.ifname)
            .map_err(CniError::failed)?;
        wasm_cni_sdk::debug!(
            "released {released} address(es) of {} {}",
            req.container_id,
            req.ifname
        );
        Ok(())
    }

    /// Release every reservation of an attachment the runtime no longer
    /// has, under the lock; `lock` and the `last_reserved_ip.*` cursors
    /// stay. Failures are collected and reported together.
    fn gc(req: GcRequest) -> Result<(), CniError> {
        let mut disk = LockedStore::acquire()?;
        let valid: Vec<(String, String)> = req
            .valid_attachments
            .iter()
            .map(|a| (a.container_id.clone(), a.ifname.clone()))
            .collect();
        let (released, failures) =
            allocator::collect(&mut disk, &valid).map_err(CniError::failed)?;
        if !released.is_empty() {
            wasm_cni_sdk::info!("GC released {}", released.join(" "));
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(CniError::failed(format!("GC: {}", failures.join("; "))))
        }
    }

    /// Not available (50) when every range set is full; otherwise ready.
    fn status(req: StatusRequest) -> Result<(), CniError> {
        let conf = IpamConf::parse(&req.config, None)?;
        let taken: HashSet<IpAddr> = match store::entries() {
            Ok(entries) => entries.iter().filter_map(|e| e.key.parse().ok()).collect(),
            // A network nothing was allocated in yet.
            Err(e) if e.is_not_found() => HashSet::new(),
            Err(e) => return Err(e.context("read the IPAM store")),
        };
        let full: Vec<String> = conf
            .ranges
            .iter()
            .filter(|set| {
                let capacity: u128 = set.0.iter().map(|r| r.capacity()).sum();
                let used = taken
                    .iter()
                    .filter(|ip| set.0.iter().any(|r| r.contains(**ip) && !r.reserved(**ip)))
                    .count() as u128;
                used >= capacity
            })
            .map(ToString::to_string)
            .collect();
        if !full.is_empty() && full.len() == conf.ranges.len() {
            return Err(CniError::new(
                codes::NOT_AVAILABLE,
                format!("no IP addresses available in range set: {}", full.join(" ")),
            ));
        }
        Ok(())
    }

    fn check(req: Request) -> Result<(), CniError> {
        IpamConf::load(&req)?;
        let disk = LockedStore::acquire()?;
        let held =
            allocator::held_by(&disk, &req.container_id, &req.ifname).map_err(CniError::failed)?;
        if held.is_empty() {
            return Err(CniError::failed(format!(
                "host-local: Failed to find address added by container {}",
                req.container_id
            )));
        }
        Ok(())
    }
}

wasm_cni_sdk::register!(HostLocal);
