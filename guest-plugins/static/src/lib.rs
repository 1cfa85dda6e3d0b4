//! `static`: the reference static IPAM plugin as a wasm module. It gives
//! out exactly the addresses it is told: `ipam.addresses` in the config,
//! then `args.cni.ips`, then `runtimeConfig.ips` (the `ips` capability),
//! then `IP` in `CNI_ARGS` (comma-separated CIDRs); `GATEWAY` in
//! `CNI_ARGS` sets the gateway of the addresses it lies in. Routes and DNS
//! come from the config. It keeps no state: DEL, GC and STATUS have
//! nothing to do, and it needs no capability at all (the host gives it
//! the ipam-plugin world and nothing of the node).

use ipnetwork::IpNetwork;
use serde::Deserialize;
use std::net::IpAddr;
use wasm_cni_sdk::config::{DnsConf, RouteConf};
use wasm_cni_sdk::{CniError, CniResult, IpConfig, IpPrefix, Plugin, Request};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Conf {
    #[serde(default)]
    cni_version: String,
    #[serde(default)]
    ipam: Ipam,
    #[serde(default)]
    args: Option<ConfArgs>,
    #[serde(default)]
    runtime_config: Option<Ips>,
}

#[derive(Deserialize, Default)]
struct Ipam {
    #[serde(default)]
    addresses: Vec<AddressConf>,
    #[serde(default)]
    routes: Vec<RouteConf>,
    #[serde(default)]
    dns: DnsConf,
}

#[derive(Deserialize)]
struct AddressConf {
    address: String,
    #[serde(default)]
    gateway: Option<String>,
}

/// `args.cni`: what a runtime passes in the config.
#[derive(Deserialize, Default)]
struct ConfArgs {
    #[serde(default)]
    cni: Option<Ips>,
}

#[derive(Deserialize, Default)]
struct Ips {
    #[serde(default)]
    ips: Vec<String>,
}

/// An address to give, host bits kept (`10.10.0.5/24`).
struct Address {
    address: IpNetwork,
    gateway: Option<IpAddr>,
}

fn cidr(s: &str, field: &str) -> Result<IpNetwork, CniError> {
    let s = s.trim();
    match s.parse::<IpNetwork>() {
        Ok(n) if s.contains('/') => Ok(n),
        _ => Err(CniError::config(format!(
            "{field}: {s:?} is not an address in CIDR notation (such as 10.10.0.5/24)"
        ))),
    }
}

fn ip(s: &str, field: &str) -> Result<IpAddr, CniError> {
    s.trim()
        .parse()
        .map_err(|_| CniError::config(format!("{field}: {s:?} is not an IP address")))
}

/// Every address the call is to get, in the reference's order.
fn addresses(req: &Request, conf: &Conf) -> Result<Vec<Address>, CniError> {
    let mut out = Vec::new();
    for a in &conf.ipam.addresses {
        out.push(Address {
            address: cidr(&a.address, "\"ipam.addresses\"")?,
            gateway: match a.gateway.as_deref().filter(|g| !g.is_empty()) {
                Some(g) => Some(ip(g, "\"ipam.addresses\" gateway")?),
                None => None,
            },
        });
    }
    let listed = [
        (
            conf.args.as_ref().and_then(|a| a.cni.as_ref()),
            "\"args.cni.ips\"",
        ),
        (conf.runtime_config.as_ref(), "\"runtimeConfig.ips\""),
    ];
    for (ips, field) in listed {
        for s in ips.map(|i| i.ips.as_slice()).unwrap_or_default() {
            out.push(Address {
                address: cidr(s, field)?,
                gateway: None,
            });
        }
    }
    let args = req.cni_args(&["IP", "GATEWAY"])?;
    if let Some(list) = args.get("IP").filter(|v| !v.is_empty()) {
        for s in list.split(',') {
            out.push(Address {
                address: cidr(s, "CNI_ARGS IP")?,
                gateway: None,
            });
        }
    }
    if let Some(list) = args.get("GATEWAY").filter(|v| !v.is_empty()) {
        for s in list.split(',') {
            let gw = ip(s, "CNI_ARGS GATEWAY")?;
            for a in out.iter_mut().filter(|a| a.address.contains(gw)) {
                a.gateway = Some(gw);
            }
        }
    }
    // CNI 0.2.0 and earlier results hold one address per family.
    let old = matches!(conf.cni_version.as_str(), "0.1.0" | "0.2.0");
    for v4 in [true, false] {
        let n = out.iter().filter(|a| a.address.is_ipv4() == v4).count();
        if old && n > 1 {
            return Err(CniError::new(
                wasm_cni_sdk::codes::INCOMPATIBLE_VERSION,
                format!(
                    "CNI version {} does not support more than 1 address per family",
                    conf.cni_version
                ),
            ));
        }
    }
    Ok(out)
}

fn load(req: &Request) -> Result<(Conf, Vec<Address>), CniError> {
    let conf: Conf = req.config()?;
    let addrs = addresses(req, &conf)?;
    Ok((conf, addrs))
}

struct Static;

impl Plugin for Static {
    fn add(req: Request) -> Result<CniResult, CniError> {
        let (conf, addrs) = load(&req)?;
        let routes = conf
            .ipam
            .routes
            .iter()
            .map(|r| r.route("ipam.routes"))
            .collect::<Result<_, _>>()?;
        Ok(CniResult {
            interfaces: Vec::new(),
            ips: addrs
                .into_iter()
                .map(|a| IpConfig {
                    address: IpPrefix::from(a.address),
                    gateway: a.gateway.map(Into::into),
                    interface: None,
                })
                .collect(),
            routes,
            dns: conf.ipam.dns.into(),
        })
    }

    /// Nothing was kept: nothing to release.
    fn del(_req: Request) -> Result<(), CniError> {
        Ok(())
    }

    /// What ADD gave is still what the config says (nothing else is kept).
    fn check(req: Request) -> Result<(), CniError> {
        load(&req).map(drop)
    }
}

wasm_cni_sdk::register!(Static);
