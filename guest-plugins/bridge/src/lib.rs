//! The bridge plugin as a wasm-cni guest: a veth pair from the container
//! to a Linux bridge on the node, addresses from IPAM, the gateway on the
//! bridge, forwarding and masquerade. It decides; the host carries it out
//! through the capabilities of the interface-plugin world.

mod add;
mod check;
mod config;
mod del;
mod gateway;

use wasm_cni_sdk::{CniError, CniResult, Plugin, Request};

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
}

wasm_cni_sdk::register!(Bridge);
