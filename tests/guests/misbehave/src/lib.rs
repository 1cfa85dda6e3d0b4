//! A guest that misbehaves on purpose, to show the host contains it. The
//! config's `"behave"` picks how:
//!
//! - `spin`: loop forever (the host stops it by fuel);
//! - `trap-after-veth`: create a veth, allocate an address, then panic
//!   (the host must undo both);
//! - `sleep-after-veth`: create a veth, then sleep for an hour (the host
//!   stops it at the call's deadline and undoes the veth);
//! - `memory`: grow memory without bound (the host's limit stops it);
//! - `uplink`: try to change the node's link `uplink0` (denied);
//! - `host-sysctl`: set a host sysctl outside the grant (denied);
//! - `host-route`: add a host route through no granted link (denied);
//! - `stdout`: print to stdout, then succeed (stdout must stay the result's).

use serde::Deserialize;
use wasm_cni_sdk::{
    CapResultExt, CniError, CniResult, Plugin, Request, ipam, link, netns, route, sysctl,
};

#[derive(Deserialize)]
struct Conf {
    behave: String,
}

struct Misbehave;

impl Plugin for Misbehave {
    fn add(req: Request) -> Result<CniResult, CniError> {
        let conf: Conf = req.config()?;
        let host = netns::host();
        match conf.behave.as_str() {
            "spin" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "trap-after-veth" => {
                let c = netns::container().context("container")?;
                link::create_veth(&c, &req.ifname, None, None, &host, None).context("veth")?;
                ipam::add()?;
                panic!("deliberate trap after creating a veth and allocating an address");
            }
            "sleep-after-veth" => {
                let c = netns::container().context("container")?;
                link::create_veth(&c, &req.ifname, None, None, &host, None).context("veth")?;
                std::thread::sleep(std::time::Duration::from_secs(3600));
                unreachable!("slept an hour")
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                }
            }
            "uplink" => {
                link::set_mtu(&host, "uplink0", 1280).context("set the uplink's MTU")?;
                unreachable!("the host allowed it")
            }
            "host-sysctl" => {
                sysctl::set(&host, "net.ipv4.conf.all.rp_filter", "0").context("host sysctl")?;
                unreachable!("the host allowed it")
            }
            "host-route" => {
                let entry = route::RouteEntry {
                    dst: wasm_cni_sdk::IpPrefix {
                        address: wasm_cni_sdk::IpAddress::V4((0, 0, 0, 0)),
                        prefix_len: 0,
                    },
                    gw: Some(wasm_cni_sdk::IpAddress::V4((192, 0, 2, 1))),
                    link: None,
                    priority: None,
                    mtu: None,
                    advmss: None,
                    table: None,
                    scope: None,
                };
                route::add(&host, &entry).context("host default route")?;
                unreachable!("the host allowed it")
            }
            "stdout" => {
                for i in 0..100 {
                    println!("{{\"not\":\"the result\",\"line\":{i}}}");
                }
                Ok(CniResult::default())
            }
            other => Err(CniError::config(format!("unknown behave {other:?}"))),
        }
    }
}

wasm_cni_sdk::register!(Misbehave);
