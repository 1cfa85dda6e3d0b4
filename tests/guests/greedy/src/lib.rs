//! A guest that imports from both worlds (the IPAM store and network
//! namespaces). No world grants both, so the host refuses to load it.

use wasm_cni_sdk::{CapResultExt, CniError, CniResult, Plugin, Request, netns, store};

struct Greedy;

impl Plugin for Greedy {
    fn add(_req: Request) -> Result<CniResult, CniError> {
        let _lock = store::acquire_lock().context("lock")?;
        let _c = netns::container().context("container")?;
        Err(CniError::failed("should never have been loaded"))
    }
}

wasm_cni_sdk::register!(Greedy);
