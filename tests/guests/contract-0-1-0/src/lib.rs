//! An IPAM plugin built against `wasm-cni:plugin@0.1.0` exactly as a
//! plugin author did before 0.2.0 existed: bindings straight from the
//! frozen `wit/v0.1.0` folder, no SDK. The host must keep loading and
//! running it (one linker per contract version), and answer GC and STATUS
//! for it, since 0.1.0 has neither.
//!
//! It hands out the one address `ipam.address` names (`10.250.0.5/24`),
//! recording the attachment in its store as host-local does.

wit_bindgen::generate!({
    path: "../../../wit/v0.1.0",
    world: "wasm-cni:plugin/ipam-plugin@0.1.0",
    generate_all,
});

use exports::wasm_cni::plugin::plugin::Guest;
use wasm_cni::plugin::store;
use wasm_cni::plugin::types::{CniError, CniResult, Dns, IpAddress, IpConfig, IpPrefix, Request};

struct Fixed;

fn fail(msg: impl Into<String>) -> CniError {
    CniError {
        code: 100,
        msg: msg.into(),
        details: String::new(),
    }
}

fn owner(req: &Request) -> String {
    format!("{}\r\n{}", req.container_id, req.ifname)
}

impl Guest for Fixed {
    fn add(req: Request) -> Result<CniResult, CniError> {
        let conf: serde_json::Value =
            serde_json::from_str(&req.config).map_err(|e| fail(e.to_string()))?;
        let text = conf["ipam"]["address"]
            .as_str()
            .ok_or_else(|| fail("ipam.address is missing"))?;
        let (ip, len) = text
            .split_once('/')
            .ok_or_else(|| fail("ipam.address needs a prefix"))?;
        let octets: Vec<u8> = ip.split('.').filter_map(|o| o.parse().ok()).collect();
        let [a, b, c, d] = octets[..] else {
            return Err(fail("ipam.address must be IPv4"));
        };
        let _lock = store::acquire_lock().map_err(|e| fail(format!("{e:?}")))?;
        if !store::create(ip, &owner(&req)).map_err(|e| fail(format!("{e:?}")))? {
            return Err(fail(format!("{ip} is taken")));
        }
        Ok(CniResult {
            interfaces: Vec::new(),
            ips: vec![IpConfig {
                address: IpPrefix {
                    address: IpAddress::V4((a, b, c, d)),
                    prefix_len: len.parse().map_err(|_| fail("bad prefix"))?,
                },
                gateway: Some(IpAddress::V4((a, b, c, 1))),
                interface: None,
            }],
            routes: Vec::new(),
            dns: Dns {
                nameservers: Vec::new(),
                domain: None,
                search: Vec::new(),
                options: Vec::new(),
            },
        })
    }

    fn del(req: Request) -> Result<(), CniError> {
        let _lock = store::acquire_lock().map_err(|e| fail(format!("{e:?}")))?;
        for e in store::entries().map_err(|e| fail(format!("{e:?}")))? {
            if e.value == owner(&req) {
                store::delete(&e.key).map_err(|e| fail(format!("{e:?}")))?;
            }
        }
        Ok(())
    }

    fn check(_req: Request) -> Result<(), CniError> {
        Ok(())
    }
}

export!(Fixed);
