//! A guest that misbehaves on purpose, to show the host contains it. The
//! config's `"behave"` picks how:
//!
//! - `spin`: loop forever (the host stops it by fuel);
//! - `trap-after-veth`: create a veth, allocate an address, then panic
//!   (the host must undo both);
//! - `sleep-halfway`: create a veth, allocate an address, then sleep for an
//!   hour (the host stops it at the call's deadline and undoes both);
//! - `memory`: grow memory without bound (the host's limit stops it);
//! - `uplink`: try to change the node's link `uplink0` (denied);
//! - `host-sysctl`: set a host sysctl outside the grant (denied);
//! - `host-route`: route the metadata address through its own veth (denied);
//! - `rogue-address`: put an address outside its IPAM subnets on its own
//!   host veth (denied);
//! - `rogue-masquerade`: masquerade an address IPAM did not give it (denied);
//! - `foreign-bridge`: attach its veth to the node's `br0` (denied);
//! - `forwarding-off`: turn the node's forwarding off (denied);
//! - `long-name`: after creating a veth and allocating an address, pass a
//!   70 000-byte link name (refused; the host must not crash and undoes
//!   the rest);
//! - `stdout`: print to stdout, then succeed (stdout must stay the result's).

use serde::Deserialize;
use wasm_cni_sdk::{
    CapResultExt, CniError, CniResult, Plugin, Request, address, firewall, ipam, link, netns,
    route, sysctl,
};

#[derive(Deserialize)]
struct Conf {
    behave: String,
}

struct Misbehave;

fn prefix(s: &str) -> wasm_cni_sdk::IpPrefix {
    let (ip, len) = s.split_once('/').unwrap();
    wasm_cni_sdk::IpPrefix {
        address: ip.parse::<std::net::IpAddr>().unwrap().into(),
        prefix_len: len.parse().unwrap(),
    }
}

/// A veth for this request: its container end, and its host end's name.
fn own_veth(req: &Request) -> Result<(netns::Namespace, String), CniError> {
    let c = netns::container().context("container")?;
    let pair =
        link::create_veth(&c, &req.ifname, None, None, &netns::host(), None).context("veth")?;
    Ok((c, pair.peer.name))
}

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
            "sleep-halfway" => {
                let c = netns::container().context("container")?;
                link::create_veth(&c, &req.ifname, None, None, &host, None).context("veth")?;
                ipam::add()?;
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
                // Through its own veth: would pull the node's metadata
                // traffic into the container.
                let (_c, veth) = own_veth(&req)?;
                let entry = route::RouteEntry {
                    dst: prefix("169.254.169.254/32"),
                    gw: None,
                    link: Some(veth),
                    priority: None,
                    mtu: None,
                    advmss: None,
                    table: None,
                    scope: None,
                };
                route::add(&host, &entry).context("host route through my veth")?;
                unreachable!("the host allowed it")
            }
            "rogue-address" => {
                let (_c, veth) = own_veth(&req)?;
                ipam::add()?;
                address::add(&host, &veth, prefix("169.254.169.254/32"), true)
                    .context("node address")?;
                unreachable!("the host allowed it")
            }
            "rogue-masquerade" => {
                ipam::add()?;
                firewall::masquerade(&[prefix("10.44.0.200/24")])
                    .context("another pod's masquerade")?;
                unreachable!("the host allowed it")
            }
            "foreign-bridge" => {
                let (_c, veth) = own_veth(&req)?;
                link::set_master(&host, &veth, Some("br0"))
                    .context("join the node's LAN bridge")?;
                unreachable!("the host allowed it")
            }
            "forwarding-off" => {
                sysctl::set(&host, "net.ipv4.ip_forward", "0").context("turn forwarding off")?;
                unreachable!("the host allowed it")
            }
            "long-name" => {
                // After real work, so the host has something to undo.
                own_veth(&req)?;
                ipam::add()?;
                link::get(&host, &"a".repeat(70_000)).context("a name no kernel link has")?;
                unreachable!("the host answered")
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
