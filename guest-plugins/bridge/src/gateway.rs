//! Gateways and default routes from an IPAM result, as the reference
//! bridge computes them (calcGateways), without its "file exists" bug.

use ipnetwork::IpNetwork;
use std::net::IpAddr;
use wasm_cni_sdk::{IpAddress, IpConfig, IpPrefix, Route};

/// The first address of the network an IP config is in: `10.244.0.1` for
/// `10.244.0.5/16`.
pub fn default_gateway(address: &IpPrefix) -> IpAddress {
    let net = address.network();
    let first = match net.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 1).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 1).into()),
    };
    first.into()
}

/// Point every address at the container interface (index 2 in the
/// result) and, when the bridge is the gateway, fill in missing gateways
/// (as the reference does: without isGateway there may be none, and routes
/// without a gateway stay on-link).
pub fn complete_ips(ips: &mut [IpConfig], is_gateway: bool) {
    for ip in ips {
        ip.interface = Some(2);
        if ip.gateway.is_none() && is_gateway {
            ip.gateway = Some(default_gateway(&ip.address));
        }
    }
}

fn is_default(dst: &IpPrefix) -> bool {
    dst.prefix_len == 0
}

/// With isDefaultGateway: a default route via the gateway for each family
/// that has an address, unless IPAM already routes that family's default
/// (the reference adds a second one then and fails with "file exists").
pub fn add_default_routes(ips: &[IpConfig], routes: &mut Vec<Route>) {
    for v4 in [true, false] {
        let Some(gw) = ips
            .iter()
            .find(|ip| ip.address.address.is_v4() == v4)
            .and_then(|ip| ip.gateway)
        else {
            continue;
        };
        if routes
            .iter()
            .any(|r| r.dst.address.is_v4() == v4 && is_default(&r.dst))
        {
            continue;
        }
        let any: IpNetwork = if v4 {
            "0.0.0.0/0".parse().unwrap()
        } else {
            "::/0".parse().unwrap()
        };
        routes.push(Route {
            dst: any.into(),
            gw: Some(gw),
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        });
    }
}

/// The gateway a route without one uses: the first address's of its family.
pub fn family_gateway(ips: &[IpConfig], v4: bool) -> Option<IpAddress> {
    ips.iter()
        .find(|ip| ip.address.address.is_v4() == v4)
        .and_then(|ip| ip.gateway)
}
