//! host-local's configuration: the `ipam` section, plus the requested
//! addresses from `CNI_ARGS`, `args.cni.ips` and `runtimeConfig`.

use crate::range::{RangeSet, RawRange};
use serde::Deserialize;
use std::net::IpAddr;
use wasm_cni_sdk::config::RouteConf;
use wasm_cni_sdk::{CniError, Request, Route};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    #[serde(default)]
    ipam: RawIpam,
    #[serde(default)]
    args: Option<RawArgs>,
    #[serde(default)]
    runtime_config: Option<RawRuntimeConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    #[serde(flatten)]
    range: Option<LegacyRange>,
    #[serde(default)]
    ranges: Vec<Vec<RawRange>>,
    #[serde(default)]
    routes: Vec<RouteConf>,
    #[serde(default)]
    resolv_conf: Option<String>,
}

/// The top-level `subnet`/`rangeStart`/`rangeEnd`/`gateway` of old configs.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LegacyRange {
    subnet: Option<String>,
    range_start: Option<String>,
    range_end: Option<String>,
    gateway: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawArgs {
    #[serde(default)]
    cni: Option<RawCniArgs>,
}

#[derive(Deserialize, Default)]
struct RawCniArgs {
    #[serde(default)]
    ips: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawRuntimeConfig {
    #[serde(default)]
    ips: Vec<String>,
    #[serde(default)]
    ip_ranges: Vec<Vec<RawRange>>,
}

pub struct IpamConf {
    pub ranges: Vec<RangeSet>,
    pub routes: Vec<Route>,
    /// `resolvConf`: a file the host reads for us (the guest has no file
    /// system), checked against the node policy there.
    pub resolv_conf: Option<String>,
    /// Addresses asked for, each to be placed in the set that holds it.
    pub requested: Vec<IpAddr>,
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::config(msg)
}

impl IpamConf {
    pub fn load(req: &Request) -> Result<IpamConf, CniError> {
        let args = req.cni_args(&["IP"])?;
        Self::parse(&req.config, args.get("IP"))
    }

    /// The config alone (GC and STATUS have no `CNI_ARGS`).
    pub fn parse(config: &str, arg_ip: Option<&str>) -> Result<IpamConf, CniError> {
        let raw: RawConf = serde_json::from_str(config)
            .map_err(|e| invalid(format!("invalid network config: {e}")))?;
        let mut requested = Vec::new();
        if let Some(ip) = arg_ip {
            requested.push(parse_requested(ip)?);
        }
        if let Some(cni) = raw.args.and_then(|a| a.cni) {
            for ip in &cni.ips {
                requested.push(parse_requested(ip)?);
            }
        }
        let runtime = raw.runtime_config.unwrap_or_default();
        for ip in &runtime.ips {
            requested.push(parse_requested(ip)?);
        }
        // The same address asked for twice (CNI_ARGS and runtimeConfig) is
        // one request, as in the reference.
        let mut seen = std::collections::HashSet::new();
        requested.retain(|ip| seen.insert(*ip));

        let mut raw_sets: Vec<Vec<RawRange>> = runtime.ip_ranges;
        if let Some(legacy) = raw
            .ipam
            .range
            .filter(|l| l.subnet.as_deref().is_some_and(|s| !s.is_empty()))
        {
            raw_sets.push(vec![RawRange {
                subnet: legacy.subnet.unwrap_or_default(),
                range_start: legacy.range_start,
                range_end: legacy.range_end,
                gateway: legacy.gateway,
            }]);
        }
        raw_sets.extend(raw.ipam.ranges);
        if raw_sets.is_empty() {
            return Err(invalid(
                "no IP ranges specified: set \"ipam.subnet\" or \"ipam.ranges\"",
            ));
        }
        // An ADD writes three entries per range set (reservation, cursor,
        // index entry) and a call may write 256: more sets than this would
        // fail every ADD on the store's write limit instead of here.
        if raw_sets.len() > MAX_RANGE_SETS {
            return Err(invalid(format!(
                "{} range sets in \"ipam.ranges\" (with \"runtimeConfig.ipRanges\"): at most {MAX_RANGE_SETS}",
                raw_sets.len()
            )));
        }
        let ranges = raw_sets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                RangeSet::parse(s).map_err(|e| invalid(format!("invalid range set {i}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (i, a) in ranges.iter().enumerate() {
            for (j, b) in ranges.iter().enumerate().skip(i + 1) {
                if a.overlaps(b) {
                    return Err(invalid(format!("range set {i} overlaps with {j}")));
                }
            }
        }
        let routes = raw
            .ipam
            .routes
            .iter()
            .map(|r| r.route("ipam.routes"))
            .collect::<Result<_, _>>()?;
        Ok(IpamConf {
            ranges,
            routes,
            resolv_conf: raw.ipam.resolv_conf.filter(|r| !r.is_empty()),
            requested,
        })
    }
}

/// Range sets a config may have (one address each per ADD).
pub const MAX_RANGE_SETS: usize = 64;

fn parse_requested(s: &str) -> Result<IpAddr, CniError> {
    s.split('/')
        .next()
        .unwrap_or(s)
        .parse()
        .map_err(|_| invalid(format!("cannot understand requested ip {s:?}")))
}
