//! ADD: bridge, veth pair, addresses, routes, gateway, forwarding, NAT.
//!
//! A failed ADD needs no cleanup code here: the host undoes what the call
//! created (the veth, the masquerade rules) and releases IPAM, whether
//! this guest returned an error or trapped.

use crate::config::BridgeConf;
use crate::{gateway, vlan};
use wasm_cni_sdk::link::LinkInfo;
use wasm_cni_sdk::netns::Namespace;
use wasm_cni_sdk::route::RouteEntry;
use wasm_cni_sdk::types::Error;
use wasm_cni_sdk::{
    CapResultExt, CniError, CniResult, InterfaceInfo, IpConfig, IpPrefix, Request, address,
    bridge_port, firewall, ipam, link, netns, random_mac, route, spoof_check, sysctl,
};

/// How long to wait for the host end of the veth to forward.
const PORT_WAIT_MS: u32 = 5_000;
const ZERO_MAC: &str = "00:00:00:00:00:00";

pub fn add(req: &Request) -> Result<CniResult, CniError> {
    let conf = BridgeConf::load(req)?;
    let mac = conf.mac(req)?;
    let host = netns::host();
    let container = netns::container().context("open the container namespace")?;

    let bridge = ensure_bridge(&host, &conf)?;
    if link::get(&container, &req.ifname).is_ok() {
        return Err(CniError::failed(format!(
            "container interface {:?} already exists",
            req.ifname
        )));
    }
    let pair = link::create_veth(
        &container,
        &req.ifname,
        conf.mtu,
        mac.as_deref(),
        &host,
        None,
    )
    .context(format!("create the veth pair for {}", req.ifname))?;
    let host_veth = pair.peer.name.clone();
    // `disableContainerInterface`: the runtime brings it up itself.
    if !conf.disable_container_interface {
        link::set_up(&container, &req.ifname, true).context("bring the container interface up")?;
    }
    link::set_master(&host, &host_veth, Some(&conf.bridge))
        .context(format!("attach {host_veth} to {}", conf.bridge))?;
    if conf.hairpin_mode {
        link::set_hairpin(&host, &host_veth, true)
            .context(format!("hairpin mode on {host_veth}"))?;
    }
    if conf.port_isolation {
        bridge_port::set_isolated(&host, &host_veth, true)
            .context(format!("isolate {host_veth}"))?;
    }
    vlan::configure_port(&host, &host_veth, &conf)?;
    // Before the port forwards anything (and before IPAM, as the
    // reference does): only the container's MAC may enter from it.
    if conf.macspoofchk {
        spoof_check::enforce(&host_veth, &pair.link.mac).context("failed to setup spoof-check")?;
    }
    link::set_up(&host, &host_veth, true).context(format!("bring {host_veth} up"))?;

    let mut result = CniResult::default();
    let mut vlan_gateway: Option<LinkInfo> = None;
    if conf.has_ipam() {
        let from_ipam = ipam::add()?;
        if from_ipam.ips.is_empty() {
            return Err(CniError::failed("IPAM plugin returned no IP addresses"));
        }
        result.ips = from_ipam.ips;
        result.routes = from_ipam.routes;
        result.dns = from_ipam.dns;
        gateway::complete_ips(&mut result.ips, conf.is_gateway);
        if conf.is_default_gateway {
            gateway::add_default_routes(&result.ips, &mut result.routes);
        }
        // Started first: the host applies it while the rest goes on.
        if conf.ip_masq {
            let addrs: Vec<IpPrefix> = result.ips.iter().map(|ip| ip.address).collect();
            firewall::masquerade(&addrs).context("masquerade the container's addresses")?;
        }
        configure_container(&container, req, &conf, &result)?;
        if conf.is_gateway {
            // With an access VLAN the gateway is `<bridge>.<vid>`, in it.
            let gateway_link = match conf.vlan() {
                Some(vid) => {
                    let l = vlan::gateway_interface(&host, &conf, vid, bridge.mtu)?;
                    vlan_gateway = Some(l.clone());
                    l.name
                }
                None => conf.bridge.clone(),
            };
            configure_gateway(&host, &conf, &gateway_link, &result.ips)?;
        }
    }
    if conf.promisc_mode {
        link::set_promiscuous(&host, &conf.bridge, true)
            .context(format!("promiscuous mode on {}", conf.bridge))?;
    }
    // A port whose container side stays down never forwards.
    if !conf.disable_container_interface {
        link::wait_forwarding(&host, &host_veth, PORT_WAIT_MS)
            .context(format!("wait for {host_veth} to forward"))?;
    }

    // The bridge's MAC may have changed as ports joined: report it now.
    let bridge = link::get(&host, &conf.bridge).unwrap_or(bridge);
    result.interfaces = vec![
        InterfaceInfo {
            name: bridge.name,
            mac: Some(bridge.mac),
            mtu: None,
            sandbox: None,
            socket_path: None,
            pci_id: None,
        },
        InterfaceInfo {
            name: host_veth,
            mac: Some(pair.peer.mac),
            mtu: None,
            sandbox: None,
            socket_path: None,
            pci_id: None,
        },
        InterfaceInfo {
            name: req.ifname.clone(),
            mac: Some(pair.link.mac),
            mtu: None,
            sandbox: req.netns.clone(),
            socket_path: None,
            pci_id: None,
        },
    ];
    if let Some(l) = vlan_gateway {
        result.interfaces.push(InterfaceInfo {
            name: l.name,
            mac: Some(l.mac),
            mtu: None,
            sandbox: None,
            socket_path: None,
            pci_id: None,
        });
    }
    if let Some(dns) = conf.dns() {
        result.dns = dns;
    }
    Ok(result)
}

/// Find or create the bridge, bring it up, and pin its MAC (an unpinned
/// bridge takes its lowest port's MAC, and an emptied one may fall to all
/// zeros, a reference bug that breaks the next ADD). Not again and again:
/// every set flushes the bridge's neighbour cache.
fn ensure_bridge(host: &Namespace, conf: &BridgeConf) -> Result<LinkInfo, CniError> {
    let mut created = false;
    let br = match link::get(host, &conf.bridge) {
        Ok(l) if l.kind != "bridge" => {
            return Err(CniError::config(format!(
                "{:?} already exists but is not a bridge",
                conf.bridge
            )));
        }
        Ok(l) => l,
        Err(Error::NotFound(_)) => match link::create_bridge(host, &conf.bridge, conf.mtu) {
            Ok(l) => {
                created = true;
                // A new bridge filters by VLAN when the config uses VLANs;
                // an existing one is left as it is, as the reference does.
                if conf.vlan_filtering() {
                    bridge_port::set_vlan_filtering(host, &conf.bridge, true)
                        .context(format!("VLAN filtering on {}", conf.bridge))?;
                }
                // We own its routes: no router advertisements on the bridge.
                let key = format!("net/ipv6/conf/{}/accept_ra", conf.bridge);
                if let Err(e) = sysctl::set(host, &key, "0") {
                    wasm_cni_sdk::debug!("{key}: {}", e.describe());
                }
                l
            }
            // Another ADD created it meanwhile.
            Err(Error::AlreadyExists(_)) => {
                link::get(host, &conf.bridge).context("find the bridge")?
            }
            Err(e) => return Err(e.context(format!("create bridge {}", conf.bridge))),
        },
        Err(e) => return Err(e.context(format!("find bridge {}", conf.bridge))),
    };
    // Pinned once: at birth for a bridge wasm-cni made (it carries the
    // mark); a bridge someone else made is pinned when it is the gateway,
    // as the reference does, since its MAC would follow its ports.
    let ours = wasm_cni_sdk::made_by_wasm_cni(br.alias.as_deref());
    let mac = if br.mac == ZERO_MAC {
        random_mac()
    } else {
        br.mac.clone()
    };
    if created || br.mac == ZERO_MAC || (conf.is_gateway && !ours) {
        link::set_mac(host, &conf.bridge, &mac)
            .context(format!("pin the MAC of {}", conf.bridge))?;
    }
    if !br.up {
        link::set_up(host, &conf.bridge, true).context(format!("bring {} up", conf.bridge))?;
    }
    Ok(LinkInfo { mac, ..br })
}

/// Addresses and routes in the container, as the reference ConfigureIface.
fn configure_container(
    container: &Namespace,
    req: &Request,
    conf: &BridgeConf,
    result: &CniResult,
) -> Result<(), CniError> {
    let ifname = &req.ifname;
    let has_v4 = result.ips.iter().any(|ip| ip.address.address.is_v4());
    let has_v6 = result.ips.iter().any(|ip| !ip.address.address.is_v4());
    if has_v4 {
        sysctl::set(
            container,
            &format!("net/ipv4/conf/{ifname}/arp_notify"),
            "1",
        )
        .context("arp_notify")?;
    }
    if conf.enabledad {
        // Enhanced DAD (RFC 7527) tells a looped-back probe from a real
        // duplicate; a kernel without IPv6 has neither key.
        for (key, value) in [("enhanced_dad", "1"), ("accept_dad", "1")] {
            match sysctl::set(container, &format!("net/ipv6/conf/{ifname}/{key}"), value) {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e.context(key)),
            }
        }
    } else if has_v6 {
        sysctl::set(
            container,
            &format!("net/ipv6/conf/{ifname}/accept_dad"),
            "0",
        )
        .context("turn off DAD")?;
    }
    for ip in &result.ips {
        match address::add(container, ifname, ip.address, !conf.enabledad) {
            Ok(()) | Err(Error::AlreadyExists(_)) => {}
            Err(e) => return Err(e.context(format!("add {} to {ifname}", ip.address))),
        }
    }
    for r in &result.routes {
        let v4 = r.dst.address.is_v4();
        let entry = RouteEntry {
            dst: r.dst,
            gw: r.gw.or_else(|| gateway::family_gateway(&result.ips, v4)),
            link: Some(ifname.clone()),
            priority: r.priority,
            mtu: r.mtu,
            advmss: r.advmss,
            table: r.table,
            scope: r.scope,
        };
        match route::add(container, &entry) {
            Ok(()) | Err(Error::AlreadyExists(_)) => {}
            Err(e) => return Err(e.context(format!("add route to {} via {ifname}", r.dst))),
        }
    }
    Ok(())
}

/// The gateway addresses on `link` (the bridge, or a VLAN's gateway
/// interface), and forwarding.
fn configure_gateway(
    host: &Namespace,
    conf: &BridgeConf,
    link: &str,
    ips: &[IpConfig],
) -> Result<(), CniError> {
    for ip in ips {
        let Some(gw) = ip.gateway else { continue };
        let want = IpPrefix {
            address: gw,
            prefix_len: ip.address.prefix_len,
        };
        ensure_address(host, conf, link, want)?;
    }
    if ips.iter().any(|ip| ip.address.address.is_v4()) {
        sysctl::set(host, "net.ipv4.ip_forward", "1").context("enable IPv4 forwarding")?;
    }
    if ips.iter().any(|ip| !ip.address.address.is_v4()) {
        sysctl::set(host, "net.ipv6.conf.all.forwarding", "1").context("enable IPv6 forwarding")?;
    }
    Ok(())
}

/// The reference's ensureAddr: a bridge holds one IPv4 gateway (another
/// one is an error unless forceAddress replaces it) and any number of IPv6
/// ones in different subnets.
fn ensure_address(
    host: &Namespace,
    conf: &BridgeConf,
    br: &str,
    want: IpPrefix,
) -> Result<(), CniError> {
    let want_net = want.network();
    for have in address::list(host, br).context(format!("addresses of {br}"))? {
        if have.address.is_v4() != want.address.is_v4() {
            continue;
        }
        if have == want {
            return Ok(());
        }
        let have_net = have.network();
        let clashes = want.address.is_v4()
            || have_net.contains(want.address.into())
            || want_net.contains(have.address.into());
        if clashes {
            if !conf.force_address {
                return Err(CniError::failed(format!(
                    "{br:?} already has an IP address different from {want}"
                )));
            }
            address::delete(host, br, have).context(format!("remove {have} from {br}"))?;
        }
    }
    // IPv6: no DAD on the gateway, so it answers at once.
    match address::add(host, br, want, true) {
        Ok(()) | Err(Error::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e.context(format!("add {want} to {br}"))),
    }
}
