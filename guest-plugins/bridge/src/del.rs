//! DEL: remove the container interface (its veth peer goes with it),
//! release the addresses, remove the masquerade rules. Every step succeeds
//! when its object is already gone, so DEL can be repeated, and it works
//! when the container namespace no longer exists.

use crate::config::BridgeConf;
use wasm_cni_sdk::types::Error;
use wasm_cni_sdk::{CapResultExt, CniError, Request, firewall, ipam, link, netns};

pub fn del(req: &Request) -> Result<(), CniError> {
    let conf = BridgeConf::load(req)?;
    // First: the host removes the rules while the kernel deletes the veth.
    if conf.ip_masq {
        firewall::remove().context("remove the masquerade rules")?;
    }
    match netns::container() {
        Ok(container) => match link::delete(&container, &req.ifname) {
            Ok(()) | Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e.context(format!("delete {}", req.ifname))),
        },
        // No CNI_NETNS, or the sandbox is gone: nothing to delete there.
        Err(Error::NotFound(_)) => {}
        Err(e) => return Err(e.context("open the container namespace")),
    }
    if conf.has_ipam() {
        ipam::del()?;
    }
    Ok(())
}
