//! The bridge plugin as a wasm-cni guest: a veth pair from the container
//! to a Linux bridge on the node, addresses from IPAM, the gateway on the
//! bridge, forwarding and masquerade. It decides; the host carries it out
//! through the capabilities of the interface-plugin world.

mod add;
mod check;
mod config;
mod del;
mod gateway;
mod vlan;

use config::TeardownConf;
use wasm_cni_sdk::{
    Attachment, CapResultExt, CniError, CniResult, GcRequest, Plugin, Request, StatusRequest,
    attachments, ipam_lifecycle,
};

struct Bridge;

impl Plugin for Bridge {
    fn add(req: Request) -> Result<CniResult, CniError> {
        add::add(&req)
    }

    fn del(req: Request) -> Result<(), CniError> {
        del::del(&req)
    }

    fn check(req: Request) -> Result<(), CniError> {
        check::check(&req)
    }

    /// Remove the rules of attachments that are gone, then pass GC on to
    /// IPAM; both run, and their errors are reported together.
    fn gc(req: GcRequest) -> Result<(), CniError> {
        let conf = TeardownConf::read(&req.config);
        let valid: Vec<Attachment> = req.valid_attachments.clone();
        let mut failures = Vec::new();
        match attachments::retain(&valid).context("remove stale rules") {
            Ok(0) => {}
            Ok(n) => wasm_cni_sdk::info!("GC removed {n} rule(s) of attachments that are gone"),
            Err(e) => failures.push(e),
        }
        if conf.has_ipam
            && let Err(e) = ipam_lifecycle::gc()
        {
            failures.push(e);
        }
        match failures.len() {
            0 => Ok(()),
            1 => Err(failures.remove(0)),
            _ => Err(CniError::failed(
                failures
                    .iter()
                    .map(|e| e.msg.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
        }
    }

    /// Ready when IPAM is (an L2-only network always is).
    fn status(req: StatusRequest) -> Result<(), CniError> {
        if TeardownConf::read(&req.config).has_ipam {
            ipam_lifecycle::status()?;
        }
        Ok(())
    }
}

wasm_cni_sdk::register!(Bridge);
