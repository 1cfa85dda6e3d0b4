//! An example third-party plugin: the reference `loopback`, as a wasm-cni
//! guest. Build it, drop `loopback.wasm` into `/opt/cni/wasm`, link
//! `/opt/cni/bin/loopback -> wasm-cni`, and a config with
//! `"type": "loopback"` runs it.
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2 -p loopback
//! ```
//!
//! A plugin is a type implementing `Plugin` and one `register!`. It uses
//! capabilities of its world (here `netns`, `link`, `address`) and never
//! formats CNI JSON: the host prints the result in the runtime's version.

use wasm_cni_sdk::types::Error;
use wasm_cni_sdk::{
    CapResultExt, CniError, CniResult, InterfaceInfo, IpConfig, Plugin, Request, address, link,
    netns,
};

/// Whatever `CNI_IFNAME` says, this plugin only handles `lo`.
const LO: &str = "lo";

struct Loopback;

impl Plugin for Loopback {
    fn add(req: Request) -> Result<CniResult, CniError> {
        let container = netns::container().context("open the container namespace")?;
        link::set_up(&container, LO, true).context("bring lo up")?;
        let addrs = address::list(&container, LO).context("addresses of lo")?;
        if let Some(bad) = addrs
            .iter()
            .find(|a| !std::net::IpAddr::from(a.address).is_loopback())
        {
            return Err(CniError::failed(format!(
                "loopback interface found with non-loopback address {bad}"
            )));
        }
        // Chained after another plugin, pass its result on unchanged.
        if let Some(prev) = req.prev_result {
            return Ok(prev);
        }
        let ips = [true, false]
            .into_iter()
            .filter_map(|v4| addrs.iter().find(|a| a.address.is_v4() == v4))
            .map(|a| IpConfig {
                address: *a,
                gateway: None,
                interface: Some(0),
            })
            .collect();
        Ok(CniResult {
            interfaces: vec![InterfaceInfo {
                name: LO.into(),
                mac: Some("00:00:00:00:00:00".into()),
                mtu: None,
                sandbox: req.netns.clone(),
                socket_path: None,
                pci_id: None,
            }],
            ips,
            ..CniResult::default()
        })
    }

    fn del(_req: Request) -> Result<(), CniError> {
        match netns::container() {
            Ok(container) => match link::set_up(&container, LO, false) {
                Ok(()) | Err(Error::NotFound(_)) => Ok(()),
                Err(e) => Err(e.context("bring lo down")),
            },
            // The sandbox is gone, and its loopback with it.
            Err(Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e.context("open the container namespace")),
        }
    }

    fn check(_req: Request) -> Result<(), CniError> {
        let container = netns::container().context("open the container namespace")?;
        let lo = link::get(&container, LO).context("lo")?;
        if !lo.up {
            return Err(CniError::failed("loopback interface is down"));
        }
        Ok(())
    }
}

wasm_cni_sdk::register!(Loopback);
