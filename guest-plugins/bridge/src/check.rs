//! CHECK: what prevResult lists is still in place: the bridge (and its
//! promiscuous mode, as configured), the host veth on it, the container
//! interface with its MAC, addresses and routes, the IPAM reservation and
//! the masquerade rules.

use crate::config::BridgeConf;
use std::net::IpAddr;
use wasm_cni_sdk::{
    CapResultExt, CniError, InterfaceInfo, Request, address, bridge_port, firewall, ipam, link,
    netns, route,
};

fn fail(msg: String) -> CniError {
    CniError::failed(msg)
}

pub fn check(req: &Request) -> Result<(), CniError> {
    let conf = BridgeConf::load(req)?;
    let prev = req
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::config("required prevResult missing"))?;
    if conf.has_ipam() {
        ipam::check()?;
    }
    let host = netns::host();
    let container = netns::container().context("open the container namespace")?;

    let br = link::get(&host, &conf.bridge).context(format!("bridge {}", conf.bridge))?;
    if br.kind != "bridge" {
        return Err(fail(format!("{:?} is not a bridge", conf.bridge)));
    }
    let promisc =
        bridge_port::promiscuous(&host, &conf.bridge).context(format!("bridge {}", conf.bridge))?;
    if promisc != conf.promisc_mode {
        return Err(fail(format!(
            "Bridge interface {} configured Promisc Mode {} doesn't match current state: {promisc}",
            conf.bridge, conf.promisc_mode
        )));
    }
    let same_mac = |want: &Option<String>, have: &str| {
        want.as_deref().is_none_or(|w| w.eq_ignore_ascii_case(have))
    };
    if let Some(i) = prev.interfaces.iter().find(|i| i.name == conf.bridge)
        && !same_mac(&i.mac, &br.mac)
    {
        return Err(fail(format!(
            "bridge {} has MAC {}, prevResult says {:?}",
            br.name, br.mac, i.mac
        )));
    }

    let is_container_if =
        |i: &InterfaceInfo| i.name == req.ifname && i.sandbox.is_some() && i.sandbox == req.netns;
    let cont_idx = prev
        .interfaces
        .iter()
        .position(is_container_if)
        .ok_or_else(|| {
            fail(format!(
                "interface {} in {:?} is not in prevResult",
                req.ifname, req.netns
            ))
        })?;
    let cont = link::get(&container, &req.ifname)
        .context(format!("container interface {}", req.ifname))?;
    if !same_mac(&prev.interfaces[cont_idx].mac, &cont.mac) {
        return Err(fail(format!(
            "{} has MAC {}, prevResult says {:?}",
            req.ifname, cont.mac, prev.interfaces[cont_idx].mac
        )));
    }
    if let Some(v) = prev
        .interfaces
        .iter()
        .find(|i| i.sandbox.is_none() && i.name != conf.bridge)
    {
        let veth = link::get(&host, &v.name).context(format!("host veth {}", v.name))?;
        if veth.master != Some(br.index) {
            return Err(fail(format!(
                "host veth {} is not attached to {}",
                v.name, conf.bridge
            )));
        }
    }

    let have =
        address::list(&container, &req.ifname).context(format!("addresses of {}", req.ifname))?;
    let mine: Vec<_> = prev
        .ips
        .iter()
        .filter(|ip| ip.interface.is_none_or(|i| i as usize == cont_idx))
        .collect();
    for ip in &mine {
        if !have.contains(&ip.address) {
            return Err(fail(format!(
                "{} is missing address {}",
                req.ifname, ip.address
            )));
        }
    }
    let mut tables: Vec<Option<u32>> = prev.routes.iter().map(|r| r.table).collect();
    tables.dedup();
    let mut routes = Vec::new();
    for table in tables {
        routes.extend(route::list(&container, table).context("routes in the container")?);
    }
    for r in &prev.routes {
        let found = routes
            .iter()
            .any(|k| k.dst.network() == r.dst.network() && r.gw.is_none_or(|gw| k.gw == Some(gw)));
        if !found {
            return Err(fail(format!(
                "route to {} is missing in the container",
                r.dst
            )));
        }
    }
    if conf.ip_masq && conf.has_ipam() {
        let masq: Vec<IpAddr> = firewall::list()
            .context("masquerade rules")?
            .into_iter()
            .map(|p| p.address.into())
            .collect();
        for ip in &mine {
            let addr: IpAddr = ip.address.address.into();
            if !masq.contains(&addr) {
                return Err(fail(format!("no masquerade rule for {addr}")));
            }
        }
    }
    Ok(())
}
