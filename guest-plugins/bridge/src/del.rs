//! DEL: remove the container interface (its veth peer goes with it),
//! release the addresses, remove the attachment's rules (ours, and what
//! the reference plugin left). Every step succeeds when its object is
//! already gone, so DEL can be repeated, and it works when the container
//! namespace no longer exists. It never refuses a config for its options:
//! what ADD would reject must still be removable.

use crate::config::TeardownConf;
use wasm_cni_sdk::types::Error;
use wasm_cni_sdk::{
    CapResultExt, CniError, Request, firewall, ipam, link, netns, reference_cleanup,
};

pub fn del(req: &Request) -> Result<(), CniError> {
    let conf = TeardownConf::read(&req.config);
    // First: the host removes the rules while the kernel deletes the veth.
    // Whatever `ipMasq` says now: an earlier config may have set it, and
    // the rules of a MAC spoof check go the same way.
    // Both run in the background while the kernel deletes the veth; the
    // host waits for them before it answers.
    reference_cleanup::remove_masquerade()
        .context("remove the reference plugin's masquerade rules")?;
    firewall::remove().context("remove the attachment's rules")?;
    match netns::container() {
        Ok(container) => match link::delete(&container, &req.ifname) {
            Ok(()) | Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e.context(format!("delete {}", req.ifname))),
        },
        // No CNI_NETNS, or the sandbox is gone: nothing to delete there.
        Err(Error::NotFound(_)) => {}
        Err(e) => return Err(e.context("open the container namespace")),
    }
    if conf.has_ipam {
        ipam::del()?;
    }
    Ok(())
}
