//! The conformance suite: what the capabilities rely on the kernel for,
//! asked of a [`Kernel`] and checked step by step. It runs against the
//! simulated node (any user) and against the real kernel (root, in
//! namespaces of its own: `tests/conformance.rs`), so that a plugin that
//! passes its tests on the simulation meets the same answers on a node.
//!
//! Errors are compared as the WIT variant a guest would get
//! (`CapError::io`), not as text.

use std::net::IpAddr;
use std::time::{Duration, Instant};
use wasm_cni::caps::CapError;
use wasm_cni::contract::wasm_cni::plugin::types::Error as WitError;
use wasm_cni::kernel::link::{LinkChange, LinkState, OperState, PortVlan};
use wasm_cni::kernel::route::{RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, RT_TABLE_MAIN, RouteSpec};
use wasm_cni::kernel::sysctl::SysctlKey;
use wasm_cni::kernel::{Kernel, Ns, Table};

/// The names the suite uses; the namespaces it runs in must not have them.
pub const BRIDGE: &str = "wcc-br0";
pub const HOST_END: &str = "wcc-v0";
pub const CONTAINER_END: &str = "wcc-c0";
const NETWORK: &str = "wcc-net";

/// The WIT variant of a result (`ok`, `not-found`, `already-exists`, ...).
fn variant<T>(r: &std::io::Result<T>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => {
            let copy = std::io::Error::new(e.kind(), e.to_string());
            let e = match e.raw_os_error() {
                Some(n) => std::io::Error::from_raw_os_error(n),
                None => copy,
            };
            match CapError::io("", e) {
                CapError::Guest(WitError::NotFound(_)) => "not-found",
                CapError::Guest(WitError::AlreadyExists(_)) => "already-exists",
                CapError::Guest(WitError::Invalid(_)) => "invalid",
                CapError::Guest(WitError::Busy(_)) => "busy",
                CapError::Guest(WitError::Denied(_)) => "denied",
                CapError::Guest(WitError::Other(_)) => "other",
                CapError::Trap(_) => "trap",
            }
        }
    }
}

/// How a run went.
#[derive(Debug, Default)]
pub struct Report {
    /// How many steps were checked.
    pub checked: usize,
    /// The steps that did not answer as the kernel does: `step: got X,
    /// want Y`.
    pub failed: Vec<String>,
    /// What this kernel cannot do, and the steps left out for it.
    pub skipped: Vec<String>,
}

impl Report {
    fn check(&mut self, step: &str, got: impl std::fmt::Debug, want: impl std::fmt::Debug) {
        self.checked += 1;
        let (g, w) = (format!("{got:?}"), format!("{want:?}"));
        if g != w {
            self.failed.push(format!("{step}: got {g}, want {w}"));
        }
    }
}

fn route(dst: &str, len: u8, gw: Option<&str>, oif: u32) -> RouteSpec {
    RouteSpec {
        unicast: true,
        dst: dst.parse().unwrap(),
        dst_len: len,
        gw: gw.map(|g| g.parse().unwrap()),
        oif: Some(oif),
        priority: None,
        mtu: None,
        advmss: None,
        table: RT_TABLE_MAIN,
        scope: if gw.is_some() {
            RT_SCOPE_UNIVERSE
        } else {
            RT_SCOPE_LINK
        },
    }
}

fn has_route(routes: &[RouteSpec], dst: &str, len: u8, gw: Option<&str>) -> bool {
    let dst: IpAddr = dst.parse().unwrap();
    let gw: Option<IpAddr> = gw.map(|g| g.parse().unwrap());
    routes
        .iter()
        .any(|r| r.dst == dst && r.dst_len == len && r.gw == gw)
}

/// Run the suite against `k`, whose container namespace exists and is
/// empty but for `lo`. Everything it makes, it removes.
pub async fn run(k: &dyn Kernel) -> Report {
    let mut r = Report::default();
    let far = || Instant::now() + Duration::from_secs(10);

    // Namespaces.
    r.check(
        "open the container",
        variant(&k.open_container().await),
        "ok",
    );
    r.check(
        "two namespaces",
        k.namespace_id(Ns::Host) != k.namespace_id(Ns::Container),
        true,
    );
    let lo = k.link_get(Ns::Container, "lo").await;
    r.check(
        "container lo",
        lo.as_ref().map(|l| (l.up, l.kind.as_str())).ok(),
        Some((false, "")),
    );

    let lo = lo.map(|l| l.index).unwrap_or(0);
    r.check(
        "container lo up",
        variant(&k.link_set(Ns::Container, lo, LinkChange::Up(true)).await),
        "ok",
    );
    let mut lo_addrs: Vec<String> = k
        .addr_list(Ns::Container, Some(lo))
        .await
        .map(|l| l.iter().map(|(_, a)| a.to_string()).collect())
        .unwrap_or_default();
    lo_addrs.sort();
    r.check("lo's addresses", lo_addrs, ["127.0.0.1/8", "::1/128"]);
    r.check(
        "no route of lo's in main",
        k.route_list(Ns::Container, Some(RT_TABLE_MAIN))
            .await
            .map(|rs| rs.len())
            .ok(),
        Some(0),
    );

    // Links.
    r.check(
        "get a missing link",
        variant(&k.link_get(Ns::Host, "wcc-nope").await),
        "not-found",
    );
    r.check(
        "get a missing index",
        variant(&k.link_get_index(Ns::Host, 999_999).await),
        "not-found",
    );
    r.check(
        "add a bridge",
        variant(&k.bridge_add(Ns::Host, BRIDGE, Some(1400)).await),
        "ok",
    );
    r.check(
        "add it again",
        variant(&k.bridge_add(Ns::Host, BRIDGE, None).await),
        "already-exists",
    );
    let br = k.link_get(Ns::Host, BRIDGE).await;
    r.check(
        "the bridge",
        br.as_ref()
            .map(|b| (b.kind.as_str(), b.mtu, b.up, b.vlan_filtering, b.mac.len()))
            .ok(),
        Some(("bridge", 1400, true, Some(false), 6)),
    );
    let br = br.map(|b| b.index).unwrap_or(0);
    r.check(
        "a veth pair across namespaces",
        variant(
            &k.veth_add(
                (Ns::Host, HOST_END),
                (Ns::Container, CONTAINER_END),
                Some(1400),
                Some(vec![0x0a, 0x58, 1, 2, 3, 4]),
            )
            .await,
        ),
        "ok",
    );
    r.check(
        "a name taken in the container",
        variant(
            &k.veth_add(
                (Ns::Host, "wcc-v1"),
                (Ns::Container, CONTAINER_END),
                None,
                None,
            )
            .await,
        ),
        "already-exists",
    );
    r.check(
        "the failed pair left nothing",
        variant(&k.link_get(Ns::Host, "wcc-v1").await),
        "not-found",
    );
    let (v0, c0) = (
        k.link_get(Ns::Host, HOST_END).await,
        k.link_get(Ns::Container, CONTAINER_END).await,
    );
    let peer_of = |l: &LinkState| (l.kind.clone(), l.mtu, l.peer_elsewhere, l.peer.is_some());
    r.check(
        "the node's end",
        v0.as_ref().map(peer_of).ok(),
        Some(("veth".to_string(), 1400, true, true)),
    );
    r.check(
        "the MAC is the first end's",
        v0.as_ref().map(|l| l.mac.clone()).ok(),
        Some(vec![0x0a, 0x58, 1, 2, 3, 4]),
    );
    r.check(
        "the container's end",
        c0.as_ref().map(peer_of).ok(),
        Some(("veth".to_string(), 1400, true, true)),
    );
    let v0 = v0.map(|l| l.index).unwrap_or(0);
    let c0 = c0.map(|l| l.index).unwrap_or(0);
    r.check(
        "a master that is not a bridge",
        variant(&k.link_set(Ns::Host, br, LinkChange::Master(Some(v0))).await),
        "other",
    );
    r.check(
        "into the bridge",
        variant(&k.link_set(Ns::Host, v0, LinkChange::Master(Some(br))).await),
        "ok",
    );
    for (ns, i, what) in [
        (Ns::Host, br, "bridge up"),
        (Ns::Host, v0, "port up"),
        (Ns::Container, c0, "container end up"),
    ] {
        r.check(
            what,
            variant(&k.link_set(ns, i, LinkChange::Up(true)).await),
            "ok",
        );
    }
    let fwd = k
        .wait_forwarding(Ns::Host, HOST_END, Duration::from_secs(5))
        .await;
    r.check(
        "the port forwards",
        fwd.map(|l| (l.oper, l.port_forwarding, l.master == Some(br)))
            .ok(),
        Some((OperState::Up, Some(true), true)),
    );
    r.check(
        "MTU too small",
        variant(&k.link_set(Ns::Container, c0, LinkChange::Mtu(10)).await),
        "invalid",
    );
    r.check(
        "a multicast MAC",
        variant(
            &k.link_set(Ns::Container, c0, LinkChange::Mac(vec![1, 0, 0, 0, 0, 1]))
                .await,
        ),
        "not-found",
    );
    for (to, what) in [("wcc-c1", "rename while up"), (CONTAINER_END, "and back")] {
        r.check(
            what,
            variant(
                &k.link_set(Ns::Container, c0, LinkChange::Name(to.into()))
                    .await,
            ),
            "ok",
        );
    }
    let c0_state = k.link_get_index(Ns::Container, c0).await;
    r.check(
        "a new veth's queue and multicast",
        c0_state.map(|l| (l.txqlen, l.allmulti)).ok(),
        Some((1000, false)),
    );
    for (change, what) in [
        (LinkChange::TxQLen(500), "a shorter queue"),
        (LinkChange::AllMulti(true), "all multicast"),
    ] {
        r.check(
            what,
            variant(&k.link_set(Ns::Container, c0, change).await),
            "ok",
        );
    }
    r.check(
        "both changed",
        k.link_get_index(Ns::Container, c0)
            .await
            .map(|l| (l.txqlen, l.allmulti))
            .ok(),
        Some((500, true)),
    );
    r.check(
        "hairpin on the port",
        variant(&k.link_set(Ns::Host, v0, LinkChange::Hairpin(true)).await),
        "ok",
    );
    let filtering = k
        .link_set(Ns::Host, br, LinkChange::VlanFiltering(true))
        .await;
    if variant(&filtering) == "other" {
        r.skipped.push(format!(
            "VLAN filtering (this kernel has no CONFIG_BRIDGE_VLAN_FILTERING: {})",
            filtering.unwrap_err()
        ));
    } else {
        r.check("VLAN filtering on the bridge", variant(&filtering), "ok");
        vlans(&mut r, k, v0).await;
    }

    // Addresses and routes.
    let a = "10.99.0.2/24".parse().unwrap();
    r.check(
        "an address",
        variant(&k.addr_add(Ns::Container, c0, a, false).await),
        "ok",
    );
    r.check(
        "the same address",
        variant(&k.addr_add(Ns::Container, c0, a, false).await),
        "already-exists",
    );
    r.check(
        "on a missing link",
        variant(&k.addr_add(Ns::Container, 999_999, a, false).await),
        "not-found",
    );
    let listed = k.addr_list(Ns::Container, Some(c0)).await;
    r.check(
        "listed",
        listed
            .as_ref()
            .map(|l| {
                l.iter()
                    .filter(|(_, a)| a.is_ipv4())
                    .copied()
                    .collect::<Vec<_>>()
            })
            .ok(),
        Some(vec![(c0, a)]),
    );
    r.check(
        "with an IPv6 link-local address, the link being up",
        listed
            .map(|l| {
                l.iter().any(|(_, a)| {
                    a.is_ipv6() && a.prefix() == 64 && a.ip().to_string().starts_with("fe80::")
                })
            })
            .ok(),
        Some(true),
    );
    let main = k.route_list(Ns::Container, Some(RT_TABLE_MAIN)).await;
    r.check(
        "its prefix route",
        main.as_ref()
            .map(|rs| has_route(rs, "10.99.0.0", 24, None))
            .ok(),
        Some(true),
    );
    // The namespace's own lookup (`ip route get`).
    use wasm_cni::kernel::route::{RouteKind, RouteTo};
    for (dst, want, what) in [
        (
            "10.99.0.2",
            Some((RouteKind::Local, false)),
            "its own address is local",
        ),
        (
            "10.99.0.255",
            Some((RouteKind::Broadcast, true)),
            "its subnet's broadcast",
        ),
        (
            "10.99.0.7",
            Some((RouteKind::Unicast, true)),
            "a neighbour, out of its link",
        ),
        ("10.200.0.1", None, "unreachable without a default route"),
    ] {
        r.check(
            what,
            k.route_to(Ns::Container, dst.parse().unwrap())
                .await
                .map(|to| to.map(|RouteTo { kind, oif }| (kind, oif == Some(c0))))
                .ok(),
            Some(want),
        );
    }
    let default = route("0.0.0.0", 0, Some("10.99.0.1"), c0);
    r.check(
        "a default route",
        variant(&k.route_add(Ns::Container, &default).await),
        "ok",
    );
    r.check(
        "it again",
        variant(&k.route_add(Ns::Container, &default).await),
        "already-exists",
    );
    r.check(
        "a gateway off every subnet",
        variant(
            &k.route_add(
                Ns::Container,
                &route("10.200.0.0", 16, Some("10.98.0.1"), c0),
            )
            .await,
        ),
        "other",
    );
    r.check(
        "listed",
        k.route_list(Ns::Container, Some(RT_TABLE_MAIN))
            .await
            .map(|rs| has_route(&rs, "0.0.0.0", 0, Some("10.99.0.1")))
            .ok(),
        Some(true),
    );
    r.check(
        "delete it",
        variant(&k.route_del(Ns::Container, &default).await),
        "ok",
    );
    r.check(
        "delete it again",
        variant(&k.route_del(Ns::Container, &default).await),
        "not-found",
    );
    r.check(
        "delete an address not there",
        variant(
            &k.addr_del(Ns::Container, c0, "10.99.0.3/24".parse().unwrap())
                .await,
        ),
        "not-found",
    );
    r.check(
        "delete the address",
        variant(&k.addr_del(Ns::Container, c0, a).await),
        "ok",
    );
    r.check(
        "its prefix route went with it",
        k.route_list(Ns::Container, Some(RT_TABLE_MAIN))
            .await
            .map(|rs| has_route(&rs, "10.99.0.0", 24, None))
            .ok(),
        Some(false),
    );

    // Sysctls.
    let key = |k: &str| SysctlKey::parse(k).unwrap();
    let notify = key(&format!("net/ipv4/conf/{CONTAINER_END}/arp_notify"));
    r.check(
        "a link's parameter",
        k.sysctl_read(Ns::Container, &notify).await.ok(),
        Some("0".to_string()),
    );
    r.check(
        "written",
        variant(&k.sysctl_write(Ns::Container, &notify, "1").await),
        "ok",
    );
    r.check(
        "read back",
        k.sysctl_read(Ns::Container, &notify).await.ok(),
        Some("1".to_string()),
    );
    for bad in ["yes", "7x"] {
        r.check(
            "a value that is not a number",
            variant(&k.sysctl_write(Ns::Container, &notify, bad).await),
            "invalid",
        );
    }
    r.check(
        "left as it was",
        k.sysctl_read(Ns::Container, &notify).await.ok(),
        Some("1".to_string()),
    );
    r.check(
        "a missing link's parameter",
        variant(
            &k.sysctl_read(Ns::Container, &key("net/ipv4/conf/wcc-nope/arp_notify"))
                .await,
        ),
        "not-found",
    );
    r.check(
        "a fresh namespace does not forward",
        k.sysctl_read(Ns::Container, &key("net/ipv4/ip_forward"))
            .await
            .ok(),
        Some("0".to_string()),
    );

    // wasm-cni's rules.
    let owner = wasm_cni::kernel::nft::owner_comment(NETWORK, "c1", "eth0");
    let other = wasm_cni::kernel::nft::owner_comment(NETWORK, "c2", "eth0");
    let addr = "10.99.0.2/24".parse().unwrap();
    r.check(
        "the first masquerade makes the table",
        k.masquerade(&owner, &[addr], far()).await.ok(),
        Some(true),
    );
    r.check(
        "the next does not",
        k.masquerade(&other, &["10.99.0.3/24".parse().unwrap()], far())
            .await
            .ok(),
        Some(false),
    );
    r.check(
        "rules of an owner",
        k.masqueraded(&owner, far()).await.ok(),
        Some(vec![addr]),
    );
    // An IPv6 one reads back as written (however it was sent).
    let six: ipnetwork::IpNetwork = "fd99::2/64".parse().unwrap();
    r.check(
        "an IPv6 masquerade",
        k.masquerade(&other, &[six], far()).await.ok(),
        Some(false),
    );
    r.check(
        "its rules, both families",
        k.masqueraded(&other, far()).await.ok(),
        Some(vec!["10.99.0.3/24".parse().unwrap(), six]),
    );
    host_ports(&mut r, k, &owner, &other).await;
    r.check(
        "GC keeps the valid (the other's two go)",
        k.retain_rules(NETWORK, std::slice::from_ref(&owner), far())
            .await
            .ok(),
        Some(2),
    );
    r.check(
        "a table in use stays",
        k.drop_table_if_unused(Table::Masquerade, far()).await.ok(),
        Some(false),
    );
    r.check(
        "a spoof check makes its table",
        k.spoof_check(&owner, v0, "0a:58:01:02:03:04", far())
            .await
            .ok(),
        Some(true),
    );
    r.check(
        "DEL removes the owner's rules (masquerade, spoof check, host port)",
        k.unmasquerade(&owner, far()).await.ok(),
        Some(3),
    );
    r.check(
        "no host port left",
        k.mapped_ports(&owner, far()).await.map(|v| v.len()).ok(),
        Some(0),
    );
    r.check(
        "none left",
        k.masquerade_rules(far()).await.map(|v| v.len()).ok(),
        Some(0),
    );
    for (t, what) in [
        (Table::Masquerade, "the empty nat table goes"),
        (Table::SpoofCheck, "the empty bridge table goes"),
    ] {
        r.check(
            what,
            k.drop_table_if_unused(t, far()).await.ok(),
            Some(true),
        );
    }

    // Deleting a veth end takes its peer and its addresses.
    r.check(
        "delete the port",
        variant(&k.link_del(Ns::Host, v0).await),
        "ok",
    );
    r.check(
        "its peer went too",
        variant(&k.link_get(Ns::Container, CONTAINER_END).await),
        "not-found",
    );
    r.check(
        "the container's parameters went too",
        variant(&k.sysctl_read(Ns::Container, &notify).await),
        "not-found",
    );
    r.check(
        "delete the bridge",
        variant(&k.link_del(Ns::Host, br).await),
        "ok",
    );
    r.check(
        "deleted twice",
        variant(&k.link_del(Ns::Host, br).await),
        "not-found",
    );
    r
}

/// Host ports: the first makes the table's part for them; one another
/// owner holds is refused (on any address), another protocol is free; an
/// owner's read back; removed by owner.
async fn host_ports(r: &mut Report, k: &dyn Kernel, owner: &str, other: &str) {
    use wasm_cni::kernel::hostport::{Forward, HostPort, Protocol};
    let far = || Instant::now() + Duration::from_secs(10);
    let port = |host_ip: Option<&str>, protocol| HostPort {
        host_ip: host_ip.map(|a| a.parse().unwrap()),
        host_port: 18080,
        protocol,
        container: "10.99.0.2/24".parse().unwrap(),
        container_port: 80,
    };
    let fwd = |m: HostPort| Forward {
        mappings: vec![m],
        snat: false,
        mark_bit: 13,
        loopback: false,
    };
    let web = port(None, Protocol::Tcp);
    r.check(
        "the first host port makes the table's part for them",
        k.map_ports(owner, &fwd(web.clone()), far()).await.ok(),
        Some(true),
    );
    r.check(
        "a port another owner holds is refused",
        variant(
            &k.map_ports(other, &fwd(port(Some("192.0.2.1"), Protocol::Tcp)), far())
                .await,
        ),
        "already-exists",
    );
    r.check(
        "on another protocol it is free",
        k.map_ports(other, &fwd(port(None, Protocol::Udp)), far())
            .await
            .ok(),
        Some(false),
    );
    r.check(
        "an owner's host ports read back",
        k.mapped_ports(owner, far()).await.ok(),
        Some(vec![HostPort {
            container: "10.99.0.2/32".parse().unwrap(),
            ..web.clone()
        }]),
    );
    r.check(
        "an owner's second set is refused (an ADD again without a DEL)",
        variant(
            &k.map_ports(owner, &fwd(port(None, Protocol::Sctp)), far())
                .await,
        ),
        "already-exists",
    );
    r.check(
        "removed by owner, only its own",
        k.unmap_ports(other, far()).await.ok(),
        Some(1),
    );
    r.check(
        "the other's are still there",
        k.mapped_ports(owner, far()).await.map(|v| v.len()).ok(),
        Some(1),
    );
}

/// A port's VLANs, on a kernel that filters by VLAN.
async fn vlans(r: &mut Report, k: &dyn Kernel, v0: u32) {
    r.check(
        "a new port's VLAN",
        k.port_vlans(Ns::Host, v0).await.ok(),
        Some(vec![PortVlan {
            vid: 1,
            end: None,
            pvid: true,
            untagged: true,
        }]),
    );
    let range = PortVlan {
        vid: 100,
        end: Some(102),
        pvid: false,
        untagged: false,
    };
    r.check(
        "VLANs 100-102",
        variant(&k.port_vlan_change(Ns::Host, v0, true, range).await),
        "ok",
    );
    let one = PortVlan {
        vid: 101,
        end: None,
        pvid: false,
        untagged: false,
    };
    r.check(
        "without 101",
        variant(&k.port_vlan_change(Ns::Host, v0, false, one).await),
        "ok",
    );
    r.check(
        "the port's VLANs now",
        k.port_vlans(Ns::Host, v0)
            .await
            .map(|v| v.iter().map(|v| (v.vid, v.end)).collect::<Vec<_>>())
            .ok(),
        Some(vec![(1, None::<u16>), (100, None), (102, None)]),
    );
}
