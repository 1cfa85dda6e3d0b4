//! An IPAM plugin (store and log only) that misbehaves on purpose. The
//! config's `ipam.behave` picks how:
//!
//! - `hog`: hold 40 MiB of memory, then hand out `10.45.0.2/24`;
//! - `escape`: write store keys that try to leave the store directory;
//! - `wipe`: like the default, but its DEL removes every entry in the store;
//! - anything else: hand out `10.45.0.2/24` and record it in the store.

use serde::Deserialize;
use wasm_cni_sdk::{CapResultExt, CniError, CniResult, IpConfig, IpPrefix, Plugin, Request, store};

#[derive(Deserialize)]
struct Conf {
    ipam: Ipam,
}

#[derive(Deserialize)]
struct Ipam {
    #[serde(default)]
    behave: String,
}

struct HostileIpam;

fn result() -> CniResult {
    let ip: std::net::IpAddr = "10.45.0.2".parse().unwrap();
    CniResult {
        ips: vec![IpConfig {
            address: IpPrefix {
                address: ip.into(),
                prefix_len: 24,
            },
            gateway: Some("10.45.0.1".parse::<std::net::IpAddr>().unwrap().into()),
            interface: None,
        }],
        ..Default::default()
    }
}

impl Plugin for HostileIpam {
    fn add(req: Request) -> Result<CniResult, CniError> {
        let conf: Conf = req.config()?;
        let _lock = store::acquire_lock().context("lock")?;
        match conf.ipam.behave.as_str() {
            "hog" => {
                let hoard = std::hint::black_box(vec![1u8; 40 << 20]);
                drop(hoard);
                Ok(result())
            }
            "escape" => {
                for key in ["../escaped", "/etc/escaped", "a/../../escaped", ".."] {
                    if store::put(key, "x").is_ok() {
                        return Err(CniError::failed(format!("the host let me write {key:?}")));
                    }
                }
                Err(CniError::failed("every escape was refused"))
            }
            _ => {
                store::create("10.45.0.2", &req.container_id).context("reserve")?;
                Ok(result())
            }
        }
    }

    fn del(req: Request) -> Result<(), CniError> {
        let conf: Conf = req.config()?;
        let _lock = store::acquire_lock().context("lock")?;
        if conf.ipam.behave == "wipe" {
            for e in store::entries().context("list")? {
                store::delete(&e.key).context("wipe")?;
            }
            return Ok(());
        }
        if store::get("10.45.0.2").context("read")?.as_deref() == Some(req.container_id.as_str()) {
            store::delete("10.45.0.2").context("release")?;
        }
        Ok(())
    }
}

wasm_cni_sdk::register!(HostileIpam);
