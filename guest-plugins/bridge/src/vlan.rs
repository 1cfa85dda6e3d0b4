//! VLANs as the reference bridge sets them up: an access VLAN (`vlan`) is
//! the port's PVID and leaves it untagged, trunk VLANs (`vlanTrunk`) are
//! tagged, VLAN 1 stays unless `preserveDefaultVlan` is false; and with a
//! gateway, the VLAN's gateway addresses live on `<bridge>.<vid>`, a veth
//! whose peer is a port of the bridge in that VLAN.

use crate::config::{BridgeConf, ranges};
use wasm_cni_sdk::bridge_port::{self, Vlan};
use wasm_cni_sdk::link::LinkInfo;
use wasm_cni_sdk::netns::Namespace;
use wasm_cni_sdk::types::Error;
use wasm_cni_sdk::{CapResultExt, CniError, link};

/// The port's VLANs: the access VLAN, or the trunk.
pub fn configure_port(host: &Namespace, port: &str, conf: &BridgeConf) -> Result<(), CniError> {
    let access = conf.vlan();
    if access.is_none() && conf.trunk.is_empty() {
        return Ok(());
    }
    if !conf.preserve_default_vlan {
        remove_all(host, port)?;
    }
    if let Some(vid) = access {
        add(host, port, vid, None, true)?;
    }
    for (first, last) in ranges(&conf.trunk) {
        add(host, port, first, (last != first).then_some(last), false)?;
    }
    Ok(())
}

fn add(
    host: &Namespace,
    port: &str,
    vid: u16,
    end: Option<u16>,
    access: bool,
) -> Result<(), CniError> {
    let vlan = Vlan {
        vid,
        vid_end: end,
        pvid: access,
        untagged: access,
    };
    bridge_port::add_vlan(host, port, vlan)
        .context(format!("failed to setup vlan tag on interface {port:?}"))
}

/// What the port has (normally the default VLAN 1) goes.
fn remove_all(host: &Namespace, port: &str) -> Result<(), CniError> {
    let have = bridge_port::vlans(host, port).context(format!("VLANs of {port}"))?;
    for v in have {
        bridge_port::del_vlan(host, port, v.vid, v.vid_end).context(format!(
            "failed to remove default vlan on interface {port:?}"
        ))?;
    }
    Ok(())
}

/// `<bridge>.<vid>`, made once per network and VLAN (later calls find it
/// as it is, as the reference does).
pub fn gateway_interface(
    host: &Namespace,
    conf: &BridgeConf,
    vid: u16,
    mtu: u32,
) -> Result<LinkInfo, CniError> {
    let name = format!("{}.{vid}", conf.bridge);
    match link::get(host, &name) {
        Ok(l) => return Ok(l),
        Err(Error::NotFound(_)) => {}
        Err(e) => return Err(e.context(format!("failed to find interface {name:?}"))),
    }
    if name.len() > 15 {
        return Err(CniError::config(format!(
            "the VLAN gateway interface {name:?} would be longer than 15 bytes: use a shorter bridge name"
        )));
    }
    let pair = match link::create_veth(host, &name, Some(mtu), None, host, None) {
        Ok(p) => p,
        // Another ADD of the network made it meanwhile.
        Err(Error::AlreadyExists(_)) => {
            return link::get(host, &name).context(format!("find {name}"));
        }
        Err(e) => return Err(e.context(format!("failed to create vlan gateway {name:?}"))),
    };
    let peer = pair.peer.name;
    link::set_master(host, &peer, Some(&conf.bridge))
        .context(format!("attach {peer} to {}", conf.bridge))?;
    // Once its peer is a port of the bridge (the host checks).
    bridge_port::mark_vlan_gateway(host, &name).context(format!("mark {name}"))?;
    if !conf.preserve_default_vlan {
        remove_all(host, &peer)?;
    }
    add(host, &peer, vid, None, true)?;
    link::set_up(host, &peer, true).context(format!("bring {peer} up"))?;
    link::set_up(host, &name, true).context(format!("bring {name} up"))?;
    link::get(host, &name).context(format!("find {name}"))
}
