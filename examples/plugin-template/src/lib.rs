//! `my-plugin`: a chained plugin that turns on gratuitous ARP for the
//! container's interface (`net.ipv4.conf.<ifname>.arp_notify = 1`), so
//! neighbours learn its MAC at once, and passes the previous plugin's
//! result on. Replace it with your own: the shape stays the same.
//!
//! ```json
//! {"cniVersion":"1.0.0","name":"mynet","plugins":[
//!   {"type":"bridge", ...},
//!   {"type":"my-plugin","arpNotify":true}]}
//! ```

use serde::Deserialize;
use wasm_cni_sdk::types::Error;
use wasm_cni_sdk::{CapResultExt, CniError, CniResult, Plugin, Request, netns, sysctl};

/// This plugin's keys in the network config (others are ignored).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Conf {
    #[serde(default = "yes")]
    arp_notify: bool,
}

fn yes() -> bool {
    true
}

fn key(ifname: &str) -> String {
    // Slashes: an interface name may hold a dot.
    format!("net/ipv4/conf/{ifname}/arp_notify")
}

struct MyPlugin;

impl Plugin for MyPlugin {
    fn add(req: Request) -> Result<CniResult, CniError> {
        let conf: Conf = req.config()?;
        // Chained: the interface is the previous plugin's.
        let Some(prev) = req.prev_result.clone() else {
            return Err(CniError::config(
                "my-plugin is chained after an interface plugin: it needs a prevResult",
            ));
        };
        let container = netns::container().context("open the container namespace")?;
        let value = if conf.arp_notify { "1" } else { "0" };
        sysctl::set(&container, &key(&req.ifname), value)
            .context(format!("set arp_notify on {}", req.ifname))?;
        Ok(prev)
    }

    fn del(req: Request) -> Result<(), CniError> {
        // The interface goes with the container: nothing to undo, and DEL
        // must succeed when everything is gone already.
        let _ = req;
        Ok(())
    }

    fn check(req: Request) -> Result<(), CniError> {
        let conf: Conf = req.config()?;
        let container = netns::container().context("open the container namespace")?;
        let want = if conf.arp_notify { "1" } else { "0" };
        match sysctl::get(&container, &key(&req.ifname)) {
            Ok(v) if v == want => Ok(()),
            Ok(v) => Err(CniError::failed(format!(
                "arp_notify on {} is {v}, not {want}",
                req.ifname
            ))),
            Err(Error::NotFound(_)) => Err(CniError::failed(format!(
                "no interface {} in the container",
                req.ifname
            ))),
            Err(e) => Err(e.context("read arp_notify")),
        }
    }
}

wasm_cni_sdk::register!(MyPlugin);
