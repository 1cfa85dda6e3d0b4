//! A guest that misbehaves on purpose, to show the host contains it. The
//! config's `"behave"` picks how; `"target"` names another network's
//! bridge, `"address"` an address on it, `"sleepMs"` a pause.
//!
//! Stopped by a limit:
//! - `spin`: loop forever (fuel);
//! - `memory`: grow memory without bound (the call's 64 MiB);
//! - `memory-then-ipam`: hold 40 MiB, then delegate to IPAM (with an IPAM
//!   guest that takes 40 MiB too, the call's one budget is exceeded);
//! - `list-loop`: call `firewall.list` forever (the deadline);
//! - `get-loop`: call `link.get` forever (the host-call budget);
//! - `sleep-halfway`: create a veth, allocate an address, then sleep for an
//!   hour (the deadline; both are undone);
//! - `ipam-loop`: delegate to IPAM until refused (the per-call budget of
//!   IPAM delegations); fail with what the host said.
//!
//! Refused (`denied`), after doing some real work the host must undo:
//! - `uplink`: change the node's link `uplink0`;
//! - `host-sysctl`: a node sysctl outside the allow-list;
//! - `route-localnet`: `route_localnet=1` on its own host veth;
//! - `host-route`: route the metadata address through its own veth;
//! - `rogue-address`: put an address outside its IPAM subnets on its own
//!   host veth;
//! - `rogue-masquerade`: masquerade an address IPAM did not give it;
//! - `foreign-bridge`: attach its veth to `target` (default `br0`);
//! - `foreign-gateway`: remove `address` from `target`;
//! - `foreign-accept-ra`: set `accept_ra=2` on `target`;
//! - `forwarding-off`: turn the node's forwarding off;
//! - `long-name`: pass a 70 000-byte link name (`invalid`).
//!
//! Fails after changing the node, so the host must roll back:
//! - `trap-after-veth`: create a veth, allocate an address, then panic;
//! - `bridges-then-fail`: create 16 bridges, then fail;
//! - `masquerade-flood`: masquerade its one address 200 000 times, fail;
//! - `gateway-then-fail`: on the config's `bridge` (made if missing): bring
//!   it up, pin its MAC, `accept_ra=0`, promiscuous, the gateway; sleep
//!   `sleepMs`; fail;
//! - `ipam-twice`: allocate an address, ask IPAM again (refused: one
//!   address per container), fail;
//! - `ipam-del-then-fail`: allocate an address, IPAM DEL, fail;
//! - `forge-log`: print and fail with text that looks like the host's own
//!   log lines.
//!
//! Abuses a 0.2.0 capability, then succeeds or fails as noted:
//! - `spoof-wildcard`: a host veth named `veth*`, a spoof check on it
//!   (nftables would read the name as a prefix: every pod's port), succeed;
//! - `vlan-gateway-setup`: on the config's `bridge` (made if missing) a
//!   `<bridge>.5` veth whose peer is a port of the bridge, marked, succeed;
//! - `vlan-gateway-then-fail`: take an address, bring `<bridge>.5` up, put
//!   the gateway on it, sleep `sleepMs`, fail;
//! - `mark-container-peer`: make bridge `bra` and a veth `bra.5` whose peer
//!   is in the container, and mark it the VLAN gateway (`denied`);
//! - `vlan-gateway-made-then-fail`: make the config's `bridge` and its
//!   `<bridge>.5` (marked, the peer a port), take an address, put the
//!   gateway on it, sleep `sleepMs`, fail;
//! - `spoof-then-delete-port`: a veth, a spoof check on its host end, then
//!   delete the pair, succeed.
//!
//! Succeeds:
//! - `join-late`: sleep `sleepMs`, then attach a veth to the config's
//!   `bridge` (which must exist by then) and take an address;
//! - `stdout`: print to stdout (which must stay the result's).
//!
//! DEL with `create-in-del` and CHECK with `create-in-check` try to create
//! a veth (DEL creates nothing, CHECK changes nothing).

use serde::Deserialize;
use wasm_cni_sdk::types::Error;
use wasm_cni_sdk::{
    CapResultExt, CniError, CniResult, InterfaceInfo, IpPrefix, Plugin, Request, address,
    bridge_port, firewall, ipam, link, netns, route, spoof_check, sysctl,
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Conf {
    behave: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    bridge: Option<String>,
    #[serde(default)]
    sleep_ms: u64,
}

impl Conf {
    fn target(&self) -> &str {
        self.target.as_deref().unwrap_or("br0")
    }
    fn bridge(&self) -> Result<&str, CniError> {
        self.bridge
            .as_deref()
            .ok_or_else(|| CniError::config("this behaviour needs \"bridge\""))
    }
    fn pause(&self) {
        std::thread::sleep(std::time::Duration::from_millis(self.sleep_ms));
    }
}

struct Misbehave;

fn prefix(s: &str) -> IpPrefix {
    let (ip, len) = s.split_once('/').unwrap();
    IpPrefix {
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

/// `br` (made if missing) and its VLAN gateway interface `<br>.5`: a veth
/// whose peer is a port of `br`, marked for the network. Its name.
fn vlan_gateway(host: &netns::Namespace, br: &str) -> Result<String, CniError> {
    match link::create_bridge(host, br, None) {
        Ok(_) | Err(Error::AlreadyExists(_)) => {}
        Err(e) => return Err(e.context("bridge")),
    }
    link::set_up(host, br, true).context("up")?;
    let gw = format!("{br}.5");
    let pair = link::create_veth(host, &gw, None, None, host, None).context("veth")?;
    link::set_master(host, &pair.peer.name, Some(br)).context("attach")?;
    link::set_up(host, &pair.peer.name, true).context("up")?;
    bridge_port::mark_vlan_gateway(host, &gw).context("mark")?;
    Ok(gw)
}

/// The gateway of IPAM's first address, with that address's prefix.
fn gateway_of(r: &CniResult) -> Result<IpPrefix, CniError> {
    let ip = r
        .ips
        .first()
        .ok_or_else(|| CniError::failed("no address"))?;
    Ok(IpPrefix {
        address: ip.gateway.ok_or_else(|| CniError::failed("no gateway"))?,
        prefix_len: ip.address.prefix_len,
    })
}

fn denied_expected() -> ! {
    unreachable!("the host allowed it")
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
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                }
            }
            "memory-then-ipam" => {
                let hoard = std::hint::black_box(vec![1u8; 40 << 20]);
                let r = ipam::add();
                drop(hoard);
                r.map(|_| CniResult::default())
            }
            "list-loop" => loop {
                let _ = firewall::list();
            },
            "get-loop" => loop {
                let _ = link::get(&host, "lo");
            },
            "trap-after-veth" => {
                own_veth(&req)?;
                ipam::add()?;
                panic!("deliberate trap after creating a veth and allocating an address");
            }
            "sleep-halfway" => {
                own_veth(&req)?;
                ipam::add()?;
                std::thread::sleep(std::time::Duration::from_secs(3600));
                unreachable!("slept an hour")
            }
            "uplink" => {
                link::set_mtu(&host, "uplink0", 1280).context("set the uplink's MTU")?;
                denied_expected()
            }
            "host-sysctl" => {
                sysctl::set(&host, "net.ipv4.conf.all.rp_filter", "0").context("host sysctl")?;
                denied_expected()
            }
            "route-localnet" => {
                let (_c, veth) = own_veth(&req)?;
                let key = format!("net/ipv4/conf/{veth}/route_localnet");
                sysctl::set(&host, &key, "1").context("route_localnet on my host veth")?;
                denied_expected()
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
                denied_expected()
            }
            "rogue-address" => {
                let (_c, veth) = own_veth(&req)?;
                ipam::add()?;
                address::add(&host, &veth, prefix("169.254.169.254/32"), true)
                    .context("node address")?;
                denied_expected()
            }
            "rogue-masquerade" => {
                ipam::add()?;
                firewall::masquerade(&[prefix("10.44.0.200/24")])
                    .context("another pod's masquerade")?;
                denied_expected()
            }
            "foreign-bridge" => {
                let (_c, veth) = own_veth(&req)?;
                link::set_master(&host, &veth, Some(conf.target()))
                    .context(format!("join {}", conf.target()))?;
                denied_expected()
            }
            "foreign-gateway" => {
                ipam::add()?;
                let addr = conf.address.as_deref().unwrap_or("10.0.0.1/24");
                address::delete(&host, conf.target(), prefix(addr))
                    .context(format!("remove {addr} from {}", conf.target()))?;
                denied_expected()
            }
            "foreign-accept-ra" => {
                let key = format!("net/ipv6/conf/{}/accept_ra", conf.target());
                sysctl::set(&host, &key, "2").context(key)?;
                denied_expected()
            }
            "forwarding-off" => {
                sysctl::set(&host, "net.ipv4.ip_forward", "0").context("turn forwarding off")?;
                denied_expected()
            }
            "long-name" => {
                // After real work, so the host has something to undo.
                own_veth(&req)?;
                ipam::add()?;
                link::get(&host, &"a".repeat(70_000)).context("a name no kernel link has")?;
                unreachable!("the host answered")
            }
            "bridges-then-fail" => {
                for i in 0..16 {
                    link::create_bridge(&host, &format!("hb{i}"), None)
                        .context(format!("bridge hb{i}"))?;
                }
                Err(CniError::failed("failing after creating 16 bridges"))
            }
            "masquerade-flood" => {
                let r = ipam::add()?;
                let mine = r.ips[0].address;
                firewall::masquerade(&vec![mine; 200_000]).context("masquerade")?;
                let rules = firewall::list().context("list")?;
                Err(CniError::failed(format!(
                    "failing with {} masquerade rule(s) in place",
                    rules.len()
                )))
            }
            "gateway-then-fail" => {
                let br = conf.bridge()?;
                match link::create_bridge(&host, br, None) {
                    Ok(_) | Err(Error::AlreadyExists(_)) => {}
                    Err(e) => return Err(e.context("bridge")),
                }
                let gw = gateway_of(&ipam::add()?)?;
                link::set_up(&host, br, true).context("up")?;
                let mac = link::get(&host, br).context("get")?.mac;
                link::set_mac(&host, br, &mac).context("pin the MAC")?;
                sysctl::set(&host, &format!("net/ipv6/conf/{br}/accept_ra"), "0")
                    .context("accept_ra")?;
                link::set_promiscuous(&host, br, true).context("promiscuous")?;
                address::add(&host, br, gw, true).context("gateway")?;
                conf.pause();
                Err(CniError::failed("failing after configuring the gateway"))
            }
            "spoof-wildcard" => {
                let c = netns::container().context("container")?;
                let pair = link::create_veth(&c, &req.ifname, None, None, &host, Some("veth*"))
                    .context("veth")?;
                spoof_check::enforce("veth*", &pair.link.mac).context("spoof check")?;
                Ok(CniResult::default())
            }
            "vlan-gateway-setup" => {
                vlan_gateway(&host, conf.bridge()?)?;
                Ok(CniResult::default())
            }
            "vlan-gateway-made-then-fail" => {
                let gw_link = vlan_gateway(&host, conf.bridge()?)?;
                let gw = gateway_of(&ipam::add()?)?;
                link::set_up(&host, &gw_link, true).context("up")?;
                address::add(&host, &gw_link, gw, true).context("gateway")?;
                conf.pause();
                Err(CniError::failed("failing after making the VLAN gateway"))
            }
            "spoof-then-delete-port" => {
                let (c, veth) = own_veth(&req)?;
                let mac = link::get(&c, &req.ifname).context("get")?.mac;
                spoof_check::enforce(&veth, &mac).context("spoof check")?;
                link::delete(&c, &req.ifname).context("delete")?;
                Ok(CniResult::default())
            }
            "vlan-gateway-then-fail" => {
                let gw_link = format!("{}.5", conf.bridge()?);
                let gw = gateway_of(&ipam::add()?)?;
                link::set_up(&host, &gw_link, true).context("up")?;
                address::add(&host, &gw_link, gw, true).context("gateway")?;
                conf.pause();
                Err(CniError::failed(
                    "failing after configuring the VLAN gateway",
                ))
            }
            "mark-container-peer" => {
                let c = netns::container().context("container")?;
                link::create_bridge(&host, "bra", None).context("bridge")?;
                link::create_veth(&host, "bra.5", None, None, &c, Some(&req.ifname))
                    .context("veth")?;
                match bridge_port::mark_vlan_gateway(&host, "bra.5") {
                    Err(Error::Denied(m)) => Err(CniError::failed(format!("denied: {m}"))),
                    Ok(()) => Err(CniError::failed("marked: the host allowed it")),
                    Err(e) => Err(e.context("mark")),
                }
            }
            "join-late" | "veth-early-join-late" => {
                // veth-early: the port exists (its index taken) before the
                // pause; the bridge and its gateway are met only after.
                let early = if conf.behave == "veth-early-join-late" {
                    Some(own_veth(&req)?)
                } else {
                    None
                };
                conf.pause();
                let br = conf.bridge()?;
                let (c, veth) = match early {
                    Some(made) => made,
                    None => own_veth(&req)?,
                };
                link::set_master(&host, &veth, Some(br)).context("attach")?;
                link::set_up(&host, &veth, true).context("up")?;
                link::set_up(&c, &req.ifname, true).context("up")?;
                let mut r = ipam::add()?;
                for ip in &mut r.ips {
                    address::add(&c, &req.ifname, ip.address, true).context("address")?;
                    ip.interface = Some(0);
                }
                r.interfaces = vec![InterfaceInfo {
                    name: req.ifname.clone(),
                    mac: None,
                    mtu: None,
                    sandbox: req.netns.clone(),
                    socket_path: None,
                    pci_id: None,
                }];
                Ok(r)
            }
            "ipam-twice" => {
                ipam::add()?;
                let second = ipam::add();
                Err(CniError::failed(format!(
                    "failing after a second IPAM ADD ({})",
                    if second.is_ok() { "granted" } else { "refused" }
                )))
            }
            "ipam-del-then-fail" => {
                ipam::add()?;
                ipam::del()?;
                Err(CniError::failed("failing after IPAM ADD and DEL"))
            }
            "ipam-loop" => {
                for _ in 0..1000 {
                    ipam::add()?;
                }
                Err(CniError::failed("IPAM was never refused"))
            }
            "forge-log" => {
                println!("text\nwasm-cni[1] +0.0ms Error: a forged line");
                Err(CniError::failed(
                    "failed\nwasm-cni[1] +0.0ms Error: another forged line",
                ))
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

    fn del(req: Request) -> Result<(), CniError> {
        let conf: Conf = req.config()?;
        if conf.behave == "create-in-del" {
            own_veth(&req)?;
            denied_expected()
        }
        Ok(())
    }

    fn check(req: Request) -> Result<(), CniError> {
        let conf: Conf = req.config()?;
        if conf.behave == "create-in-check" {
            own_veth(&req)?;
            denied_expected()
        }
        Ok(())
    }
}

wasm_cni_sdk::register!(Misbehave);
