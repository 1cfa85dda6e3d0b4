//! The grant, tested without a kernel: every operation against every
//! standing and command.

use super::*;
use crate::contract::wasm_cni::plugin::types::Error as WitError;
use crate::kernel::link::OperState;

fn link(index: u32, name: &str, kind: &str, alias: Option<&str>) -> LinkState {
    LinkState {
        allmulti: false,
        txqlen: 1000,
        index,
        name: name.into(),
        kind: kind.into(),
        mac: vec![2, 0, 0, 0, 0, index as u8],
        mtu: 1500,
        up: true,
        promiscuous: false,
        oper: OperState::Up,
        master: None,
        port_forwarding: None,
        alias: alias.map(str::to_string),
        vlan_filtering: None,
        isolated: None,
        peer: None,
        peer_elsewhere: false,
    }
}

fn host<'a>(name: &'a str, is_bridge: bool, standing: Standing) -> HostLink<'a> {
    HostLink {
        name,
        is_bridge,
        standing,
    }
}

fn is_denied(r: Result<impl Sized, CapError>) -> bool {
    matches!(
        r.err().and_then(|e| e.guest().cloned()),
        Some(WitError::Denied(_))
    )
}

fn private() -> Vec<IpNetwork> {
    address::PRIVATE_SUBNETS
        .iter()
        .map(|s| s.parse().unwrap())
        .collect()
}

fn add_grant() -> Grant {
    Grant::new("mynet", Phase::Add, vec!["br-lan".into()], private())
}

const ALL: [LinkOp; 8] = [
    LinkOp::Up,
    LinkOp::Down,
    LinkOp::Mtu,
    LinkOp::Mac,
    LinkOp::Promiscuous,
    LinkOp::Hairpin,
    LinkOp::SetMaster,
    LinkOp::Delete,
];

#[test]
fn bridges_are_granted_to_the_network_that_made_them_or_the_policy_shares_them_with() {
    let mut g = add_grant();
    assert_eq!(
        g.standing(&link(3, "mybr", "bridge", Some("wasm-cni mynet"))),
        Standing::GrantedBridge
    );
    assert_eq!(
        g.standing(&link(4, "cni0", "bridge", Some("wasm-cni other"))),
        Standing::Foreign,
        "another network's"
    );
    // Made by someone else: never granted because a config names it.
    for alias in [None, Some("wasm-cni"), Some("lan")] {
        assert_eq!(
            g.standing(&link(5, "docker0", "bridge", alias)),
            Standing::Foreign,
            "{alias:?}"
        );
    }
    // Shared by the node policy, whoever marked it.
    assert_eq!(
        g.standing(&link(7, "br-lan", "bridge", Some("wasm-cni other"))),
        Standing::GrantedBridge
    );
    assert_eq!(
        g.standing(&link(8, "br-lan", "veth", None)),
        Standing::Foreign,
        "only as a bridge"
    );
    // Created here.
    g.record_created(Ns::Host, 9);
    assert_eq!(
        g.standing(&link(9, "x", "bridge", Some("wasm-cni other"))),
        Standing::Own
    );
    assert_eq!(g.standing(&link(9, "x", "veth", None)), Standing::Own);
    assert!(!g.created(Ns::Container, 9), "indexes are per namespace");
    g.forget_created(Ns::Host, 9);
    assert_eq!(g.standing(&link(9, "x", "veth", None)), Standing::Foreign);
    assert_eq!(g.standing(&link(2, "eth0", "", None)), Standing::Foreign);
}

#[test]
fn links_by_standing() {
    let g = add_grant();
    for op in ALL {
        assert!(
            g.change_link(Ns::Host, host("veth1", false, Standing::Own), op)
                .is_ok(),
            "{op:?}"
        );
        assert!(
            g.change_link(Ns::Container, host("eth0", false, Standing::Foreign), op)
                .is_ok(),
            "container {op:?}"
        );
        assert!(
            is_denied(g.change_link(Ns::Host, host("eth0", false, Standing::Foreign), op)),
            "{op:?}"
        );
        let on_bridge = g.change_link(Ns::Host, host("cni0", true, Standing::GrantedBridge), op);
        if matches!(op, LinkOp::Up | LinkOp::Mac | LinkOp::Promiscuous) {
            assert!(on_bridge.is_ok(), "{op:?}");
        } else {
            assert!(is_denied(on_bridge), "{op:?}");
        }
    }
}

#[test]
fn own_ports_go_only_under_granted_bridges() {
    let g = add_grant();
    let mine = host("veth1", false, Standing::Own);
    assert!(
        g.set_master(
            Ns::Host,
            mine,
            Some(host("cni0", true, Standing::GrantedBridge))
        )
        .is_ok()
    );
    assert!(
        g.set_master(Ns::Host, mine, Some(host("mine", true, Standing::Own)))
            .is_ok()
    );
    assert!(is_denied(g.set_master(
        Ns::Host,
        mine,
        Some(host("br0", true, Standing::Foreign))
    )));
    assert!(is_denied(g.set_master(
        Ns::Host,
        mine,
        Some(host("eth0", false, Standing::Foreign))
    )));
    assert!(
        is_denied(g.set_master(
            Ns::Host,
            host("eth0", false, Standing::Foreign),
            Some(host("cni0", true, Standing::GrantedBridge))
        )),
        "cannot steal the uplink"
    );
    assert!(g.set_master(Ns::Host, mine, None).is_ok());
}

#[test]
fn node_addresses_are_the_assigned_gateway_on_granted_links() {
    let mut g = add_grant();
    let cni0 = host("cni0", true, Standing::GrantedBridge);
    let gw: IpNetwork = "10.244.0.1/16".parse().unwrap();
    assert!(
        is_denied(g.add_address(Ns::Host, cni0, 7, &gw, &[], &[])),
        "nothing assigned yet"
    );
    g.record_assigned([AssignedIp {
        address: "10.244.0.2/16".parse().unwrap(),
        gateway: Some("10.244.0.1".parse().unwrap()),
    }]);
    assert!(g.add_address(Ns::Host, cni0, 7, &gw, &[], &[]).is_ok());
    assert!(
        g.remove_address(Ns::Host, cni0, &gw).is_ok(),
        "what it may add, it may remove"
    );
    let other: IpNetwork = "10.9.0.1/16".parse().unwrap();
    assert!(
        is_denied(g.remove_address(Ns::Host, cni0, &other)),
        "not another address"
    );
    assert!(is_denied(g.add_address(
        Ns::Host,
        host("br0", true, Standing::Foreign),
        8,
        &gw,
        &[],
        &[]
    )));
    let taken = [NodeAddress {
        index: 2,
        link: "eth0".into(),
        address: "10.244.0.1/24".parse().unwrap(),
    }];
    assert!(
        is_denied(g.add_address(Ns::Host, cni0, 7, &gw, &taken, &[])),
        "another link has it"
    );
    let routed = [NodeRoute {
        dst: "10.244.0.0/20".parse().unwrap(),
        oif: Some(2),
        table: 254,
    }];
    assert!(
        is_denied(g.add_address(Ns::Host, cni0, 7, &gw, &[], &routed)),
        "the node routes part of it elsewhere"
    );
    assert!(
        g.add_address(
            Ns::Container,
            host("eth0", false, Standing::Foreign),
            3,
            &other,
            &[],
            &[]
        )
        .is_ok(),
        "anything in the container"
    );
}

#[test]
fn routes_only_in_the_container() {
    let g = add_grant();
    let dst: IpNetwork = "169.254.169.254/32".parse().unwrap();
    assert!(g.change_route(Ns::Container, &dst, true).is_ok());
    assert!(is_denied(g.change_route(Ns::Host, &dst, true)));
    assert!(is_denied(g.change_route(Ns::Host, &dst, false)));
}

#[test]
fn masquerade_covers_assigned_addresses_once() {
    let mut g = add_grant();
    let a: IpNetwork = "10.244.0.2/16".parse().unwrap();
    let b: IpNetwork = "10.244.0.3/16".parse().unwrap();
    assert!(is_denied(g.masquerade(&[a])), "nothing assigned");
    g.record_assigned([AssignedIp {
        address: a,
        gateway: None,
    }]);
    assert!(is_denied(g.masquerade(&[a, b])), "another pod's address");
    let many = vec![a; 200_000];
    assert_eq!(g.masquerade(&many).unwrap(), [a], "deduplicated");
    assert!(
        g.masquerade(&[a]).unwrap().is_empty(),
        "and never twice in a call"
    );
}

#[test]
fn del_creates_nothing_and_check_changes_nothing() {
    let mut del = Grant::new("mynet", Phase::Del, vec![], private());
    let mut check = Grant::new("mynet", Phase::Check, vec![], private());
    let a: IpNetwork = "10.244.0.2/16".parse().unwrap();
    for g in [&mut del, &mut check] {
        g.record_assigned([AssignedIp {
            address: a,
            gateway: None,
        }]);
        assert!(is_denied(g.create_link(Ns::Container, "veth", 0)));
        assert!(is_denied(g.create_link(Ns::Host, "bridge", 0)));
        assert!(is_denied(g.add_address(
            Ns::Container,
            host("eth0", false, Standing::Foreign),
            3,
            &a,
            &[],
            &[]
        )));
        assert!(is_denied(g.change_route(Ns::Container, &a, true)));
        assert!(is_denied(g.masquerade(&[a])));
        assert!(is_denied(g.ipam("ADD")));
        assert!(g.ipam("CHECK").is_ok());
        assert!(is_denied(store_write(g.phase(), "create", true)));
    }
    // DEL still undoes.
    assert!(
        del.change_link(
            Ns::Container,
            host("eth0", false, Standing::Foreign),
            LinkOp::Delete
        )
        .is_ok()
    );
    assert!(del.change_route(Ns::Container, &a, false).is_ok());
    assert!(del.unmasquerade().is_ok());
    assert!(del.ipam("DEL").is_ok());
    assert!(store_write(Phase::Del, "delete", false).is_ok());
    // CHECK does not.
    assert!(is_denied(check.change_link(
        Ns::Container,
        host("eth0", false, Standing::Foreign),
        LinkOp::Delete
    )));
    assert!(is_denied(check.unmasquerade()));
    assert!(is_denied(check.ipam("DEL")));
    assert!(is_denied(store_write(Phase::Check, "delete", false)));
    let key = crate::kernel::sysctl::SysctlKey::parse("net.ipv4.ip_forward").unwrap();
    assert!(is_denied(check.write_sysctl(Ns::Host, &key, "1", None)));
    // Nor does DEL change the node: a plugin's DEL deletes the
    // container's interface, its rules and its reservation, no node link.
    assert!(is_denied(del.write_sysctl(Ns::Host, &key, "1", None)));
    let bridge = host("mybr", true, Standing::GrantedBridge);
    for op in [LinkOp::Up, LinkOp::Mac, LinkOp::Promiscuous] {
        assert!(is_denied(del.change_link(Ns::Host, bridge, op)), "{op:?}");
    }
    assert!(is_denied(del.remove_address(Ns::Host, bridge, &a)));
}

#[test]
fn a_call_creates_at_most_sixteen_links() {
    let g = add_grant();
    assert!(g.create_link(Ns::Host, "bridge", MAX_CREATED - 1).is_ok());
    assert!(is_denied(g.create_link(Ns::Host, "bridge", MAX_CREATED)));
}

#[test]
fn node_sysctls_follow_the_allow_list_and_standing() {
    let g = add_grant();
    let key = |k: &str| crate::kernel::sysctl::SysctlKey::parse(k).unwrap();
    assert!(
        g.write_sysctl(Ns::Host, &key("net.ipv4.ip_forward"), "1", None)
            .is_ok()
    );
    assert!(is_denied(g.write_sysctl(
        Ns::Host,
        &key("net.ipv4.ip_forward"),
        "0",
        None
    )));
    let veth = Some(host("veth1", false, Standing::Own));
    assert!(is_denied(g.write_sysctl(
        Ns::Host,
        &key("net/ipv4/conf/veth1/route_localnet"),
        "1",
        veth
    )));
    let br = Some(host("other", true, Standing::Foreign));
    assert!(is_denied(g.write_sysctl(
        Ns::Host,
        &key("net/ipv6/conf/other/accept_ra"),
        "2",
        br
    )));
    assert!(
        g.write_sysctl(
            Ns::Container,
            &key("net/ipv4/conf/eth0/route_localnet"),
            "1",
            None
        )
        .is_ok(),
        "the container is the request's"
    );
}

fn grant(phase: Phase) -> Grant {
    Grant::new("mynet", phase, vec!["br-lan".into()], private())
}

#[test]
fn vlan_filtering_only_on_a_bridge_this_call_made_vlans_and_isolation_only_on_its_ports() {
    let g = add_grant();
    let own_br = host("newbr", true, Standing::Own);
    let granted = host("mybr", true, Standing::GrantedBridge);
    let foreign = host("docker0", true, Standing::Foreign);
    assert!(
        g.change_link(Ns::Host, own_br, LinkOp::VlanFiltering)
            .is_ok()
    );
    // Turning filtering on under other pods would cut them off.
    assert!(is_denied(g.change_link(
        Ns::Host,
        granted,
        LinkOp::VlanFiltering
    )));
    assert!(is_denied(g.change_link(
        Ns::Host,
        foreign,
        LinkOp::VlanFiltering
    )));
    let own_port = host("veth1", false, Standing::Own);
    let other_pod = host("veth2", false, Standing::Foreign);
    for op in [LinkOp::Vlans, LinkOp::Isolated] {
        assert!(g.change_link(Ns::Host, own_port, op).is_ok(), "{op:?}");
        assert!(is_denied(g.change_link(Ns::Host, other_pod, op)), "{op:?}");
        assert!(is_denied(g.change_link(Ns::Host, granted, op)), "{op:?}");
        assert!(g.change_link(Ns::Container, own_port, op).is_ok(), "{op:?}");
        for phase in [Phase::Del, Phase::Check, Phase::Gc, Phase::Status] {
            assert!(
                is_denied(grant(phase).change_link(Ns::Host, own_port, op)),
                "{op:?} in {phase:?}"
            );
        }
    }
}

#[test]
fn a_vlan_gateway_is_a_marked_bridge_dot_vid_veth_of_this_network() {
    let mut g = add_grant();
    let marked = Some("wasm-cni mynet");
    assert_eq!(
        g.standing(&link(10, "mybr.100", "veth", marked)),
        Standing::VlanGateway
    );
    for (name, kind, alias) in [
        ("mybr.100", "veth", Some("wasm-cni other")),
        ("mybr.100", "veth", None),
        ("veth1234", "veth", marked),
        ("mybr.0100", "veth", marked),
        ("mybr.4095", "veth", marked),
        ("mybr.100", "vlan", marked),
    ] {
        assert_eq!(
            g.standing(&link(11, name, kind, alias)),
            Standing::Foreign,
            "{name} {kind} {alias:?}"
        );
    }
    // It may come up and carry the gateway, nothing else.
    let gw = host("mybr.100", false, Standing::VlanGateway);
    for op in ALL {
        let r = g.change_link(Ns::Host, gw, op);
        assert_eq!(r.is_ok(), op == LinkOp::Up, "{op:?}");
    }
    g.record_assigned([AssignedIp {
        address: "10.1.0.5/24".parse().unwrap(),
        gateway: Some("10.1.0.1".parse().unwrap()),
    }]);
    let addr: IpNetwork = "10.1.0.1/24".parse().unwrap();
    assert!(g.add_address(Ns::Host, gw, 10, &addr, &[], &[]).is_ok());
    let other: IpNetwork = "10.9.0.1/24".parse().unwrap();
    assert!(is_denied(g.add_address(Ns::Host, gw, 10, &other, &[], &[])));
}

#[test]
fn only_a_veth_this_call_made_named_for_a_granted_bridge_can_be_marked() {
    let g = add_grant();
    let own = |name| host(name, false, Standing::Own);
    let bridge = Some(host("mybr", true, Standing::GrantedBridge));
    let new_bridge = Some(host("newbr", true, Standing::Own));
    assert!(
        g.mark_vlan_gateway(own("mybr.100"), "veth", bridge, true)
            .is_ok()
    );
    assert!(
        g.mark_vlan_gateway(own("newbr.7"), "veth", new_bridge, true)
            .is_ok()
    );
    let docker = Some(host("docker0", true, Standing::Foreign));
    let not_a_bridge = Some(host("mybr", false, Standing::Own));
    let foreign = host("mybr.100", false, Standing::Foreign);
    let marked = host("mybr.100", false, Standing::VlanGateway);
    for (link, kind, bridge, peer_on_bridge) in [
        (own("mybr.100"), "bridge", bridge, true),
        (own("mybr.100"), "veth", None, true),
        (own("docker0.5"), "veth", docker, true),
        (own("mybr.100"), "veth", not_a_bridge, true),
        (own("mybr"), "veth", bridge, true),
        (foreign, "veth", bridge, true),
        (marked, "veth", bridge, true),
        // Its peer elsewhere (a container) or not on the bridge: the
        // gateway's subnet would be routed to whoever holds the peer.
        (own("mybr.100"), "veth", bridge, false),
    ] {
        assert!(
            is_denied(g.mark_vlan_gateway(link, kind, bridge, peer_on_bridge)),
            "{link:?} {kind} {peer_on_bridge}"
        );
    }
    // Marking is a change on the node: ADD only.
    let del = grant(Phase::Del);
    assert!(is_denied(del.mark_vlan_gateway(
        own("mybr.100"),
        "veth",
        bridge,
        true
    )));
    // And never through a plain link change.
    let plain = g.change_link(Ns::Host, own("mybr.100"), LinkOp::MarkVlanGateway);
    assert!(is_denied(plain));
}

#[test]
fn spoof_checks_only_on_a_port_this_call_made_during_add() {
    let g = add_grant();
    assert!(g.spoof_check(host("veth1", false, Standing::Own)).is_ok());
    assert!(is_denied(g.spoof_check(host(
        "veth2",
        false,
        Standing::Foreign
    ))));
    assert!(is_denied(g.spoof_check(host(
        "mybr",
        true,
        Standing::GrantedBridge
    ))));
    for phase in [Phase::Del, Phase::Check, Phase::Gc, Phase::Status] {
        assert!(is_denied(grant(phase).spoof_check(host(
            "veth1",
            false,
            Standing::Own
        ))));
    }
}

#[test]
fn gc_removes_rules_and_reservations_and_nothing_else() {
    let gc = grant(Phase::Gc);
    assert!(gc.retain_rules().is_ok());
    assert!(gc.ipam("GC").is_ok());
    for command in ["ADD", "DEL", "STATUS"] {
        assert!(is_denied(gc.ipam(command)), "{command}");
    }
    assert!(is_denied(gc.unmasquerade()));
    assert!(is_denied(gc.remove_reference_leftovers()));
    assert!(is_denied(gc.create_link(Ns::Host, "bridge", 0)));
    assert!(is_denied(gc.change_link(
        Ns::Host,
        host("mybr", true, Standing::GrantedBridge),
        LinkOp::Up
    )));
    assert!(is_denied(store_write(Phase::Gc, "put", true)));
    assert!(store_write(Phase::Gc, "delete", false).is_ok());
    // Other commands never sweep.
    for phase in [Phase::Add, Phase::Del, Phase::Check, Phase::Status] {
        assert!(is_denied(grant(phase).retain_rules()), "{phase:?}");
    }
    // The reference's leftovers go on DEL only.
    assert!(grant(Phase::Del).remove_reference_leftovers().is_ok());
    assert!(is_denied(add_grant().remove_reference_leftovers()));
}

#[test]
fn status_only_reads_and_asks_ipam() {
    let st = grant(Phase::Status);
    assert!(st.ipam("STATUS").is_ok());
    assert!(st.ipam("CHECK").is_ok());
    for command in ["ADD", "DEL", "GC"] {
        assert!(is_denied(st.ipam(command)), "{command}");
    }
    assert!(is_denied(store_write(Phase::Status, "delete", false)));
    assert!(is_denied(st.unmasquerade()));
    assert!(is_denied(st.create_link(Ns::Container, "veth", 0)));
}

mod host_ports {
    use super::*;
    use crate::grant::host_port::{MAX_HOST_PORTS, Node, Via};
    use crate::kernel::hostport::{HostPort, Protocol};

    fn web(host_ip: Option<&str>, container: &str) -> HostPort {
        HostPort {
            host_ip: host_ip.map(|s| s.parse().unwrap()),
            host_port: 8080,
            protocol: Protocol::Tcp,
            container: container.parse().unwrap(),
            container_port: 80,
        }
    }

    /// A pod with 10.244.0.5/16 and fd00::5/64 behind the network's bridge.
    fn node() -> Node {
        let via = Via::Link("mybr".to_string(), Standing::GrantedBridge);
        Node {
            container_addrs: vec![
                "10.244.0.5/16".parse().unwrap(),
                "fd00::5/64".parse().unwrap(),
            ],
            routes: vec![
                ("10.244.0.5".parse().unwrap(), via.clone()),
                ("fd00::5".parse().unwrap(), via),
            ],
            local_host_ips: vec!["10.244.0.1".parse().unwrap(), "192.0.2.1".parse().unwrap()],
            listeners: vec![],
        }
    }

    fn is_invalid(r: Result<impl Sized, CapError>) -> bool {
        matches!(
            r.err().and_then(|e| e.guest().cloned()),
            Some(WitError::Invalid(_))
        )
    }

    #[test]
    fn only_during_add_and_once() {
        for phase in [Phase::Del, Phase::Check, Phase::Gc, Phase::Status] {
            assert!(is_denied(grant(phase).may_map_host_ports()), "{phase:?}");
        }
        let mut g = add_grant();
        let m = [web(None, "10.244.0.5/16")];
        assert_eq!(
            g.map_host_ports(&m, &node(), 13).unwrap(),
            (m.to_vec(), false)
        );
        assert!(is_denied(g.map_host_ports(&m, &node(), 13)), "twice");
    }

    #[test]
    fn only_to_the_containers_own_addresses_with_their_prefixes() {
        for other in [
            "10.244.0.6/16",
            "10.244.0.5/0",
            "10.244.0.5/32",
            "fd00::6/64",
        ] {
            let mut g = add_grant();
            assert!(
                is_denied(g.map_host_ports(&[web(None, other)], &node(), 13)),
                "{other}"
            );
        }
    }

    #[test]
    fn only_to_a_pods_address_behind_a_link_of_the_network() {
        // The container's interface may hold any address (its IPAM is the
        // config's): loopback, link-local, the node's own, another
        // network's pod, one the node routes out of its uplink.
        let granted = || Via::Link("mybr".into(), Standing::GrantedBridge);
        let cases = [
            ("127.0.0.1/8", granted()),
            ("169.254.0.5/16", granted()),
            ("fe80::5/64", granted()),
            ("0.1.2.3/8", granted()),
            ("240.0.0.5/4", granted()),
            ("10.244.255.255/16", Via::Node),
            (
                "10.90.0.3/24",
                Via::Link("otherbr".into(), Standing::Foreign),
            ),
            ("8.8.8.8/32", Via::Nowhere),
        ];
        for (addr, via) in cases {
            let net: IpNetwork = addr.parse().unwrap();
            let facts = Node {
                container_addrs: vec![net],
                routes: vec![(net.ip(), via)],
                ..node()
            };
            let mut g = add_grant();
            assert!(
                is_denied(g.map_host_ports(&[web(None, addr)], &facts, 13)),
                "{addr}"
            );
        }
    }

    #[test]
    fn not_a_port_the_node_serves_nor_one_the_policy_leaves_out() {
        let serving = |addr: &str| Node {
            listeners: vec![(Protocol::Tcp, addr.parse().unwrap(), 8080)],
            ..node()
        };
        let any = [web(None, "10.244.0.5/16")];
        for addr in ["0.0.0.0", "::", "192.0.2.1"] {
            assert!(
                is_denied(add_grant().map_host_ports(&any, &serving(addr), 13)),
                "{addr}"
            );
        }
        // On loopback only: a mapping that leaves loopback out is fine, as
        // is one for another node address.
        assert!(
            add_grant()
                .map_host_ports(&any, &serving("127.0.0.1"), 13)
                .is_ok()
        );
        let other = [web(Some("10.244.0.1"), "10.244.0.5/16")];
        assert!(
            add_grant()
                .map_host_ports(&other, &serving("192.0.2.1"), 13)
                .is_ok()
        );
        let udp = [HostPort {
            protocol: Protocol::Udp,
            ..any[0].clone()
        }];
        assert!(
            add_grant()
                .map_host_ports(&udp, &serving("0.0.0.0"), 13)
                .is_ok()
        );
        let narrow = || add_grant().allow_host_ports(vec![(30000, 32767)]);
        assert!(is_denied(narrow().map_host_ports(&any, &node(), 13)));
        let inside = [HostPort {
            host_port: 30080,
            ..any[0].clone()
        }];
        assert!(narrow().map_host_ports(&inside, &node(), 13).is_ok());
    }

    #[test]
    fn a_host_address_is_the_nodes_and_one_port_goes_one_place() {
        let elsewhere = [web(Some("10.93.0.10"), "10.244.0.5/16")];
        assert!(is_denied(add_grant().map_host_ports(
            &elsewhere,
            &node(),
            13
        )));
        let own = [web(Some("192.0.2.1"), "10.244.0.5/16")];
        assert!(add_grant().map_host_ports(&own, &node(), 13).is_ok());
        let two = [
            web(None, "10.244.0.5/16"),
            HostPort {
                container_port: 81,
                ..web(None, "10.244.0.5/16")
            },
        ];
        assert!(is_invalid(add_grant().map_host_ports(&two, &node(), 13)));
        // One port on two node addresses, or in two families, is fine.
        let spread = [
            web(Some("192.0.2.1"), "10.244.0.5/16"),
            web(Some("10.244.0.1"), "10.244.0.5/16"),
            web(None, "fd00::5/64"),
        ];
        assert!(add_grant().map_host_ports(&spread, &node(), 13).is_ok());
    }

    #[test]
    fn loopback_only_by_policy_and_never_ipv6() {
        let lo = [web(Some("127.0.0.1"), "10.244.0.5/16")];
        assert!(is_denied(add_grant().map_host_ports(&lo, &node(), 13)));
        let mut allowed = add_grant().allow_localhost_host_ports(true);
        assert!(allowed.map_host_ports(&lo, &node(), 13).unwrap().1);
        // With the policy, a mapping for any address takes loopback too.
        let mut any = add_grant().allow_localhost_host_ports(true);
        let m = [web(None, "10.244.0.5/16")];
        assert!(any.map_host_ports(&m, &node(), 13).unwrap().1);
        let mut g = add_grant().allow_localhost_host_ports(true);
        let m = [web(Some("::1"), "fd00::5/64")];
        assert!(is_denied(g.map_host_ports(&m, &node(), 13)));
        let mut g = add_grant().allow_localhost_host_ports(true);
        let m = [web(Some("::ffff:127.0.0.1"), "fd00::5/64")];
        assert!(is_invalid(g.map_host_ports(&m, &node(), 13)));
    }

    #[test]
    fn malformed_mappings_are_invalid() {
        let zero = HostPort {
            host_port: 0,
            ..web(None, "10.244.0.5/16")
        };
        let families = web(Some("192.0.2.1"), "fd00::5/64");
        let multicast = web(Some("224.0.0.1"), "10.244.0.5/16");
        for bad in [vec![zero], vec![families], vec![multicast]] {
            assert!(
                is_invalid(add_grant().map_host_ports(&bad, &node(), 13)),
                "{bad:?}"
            );
        }
        let many = vec![web(None, "10.244.0.5/16"); MAX_HOST_PORTS + 1];
        assert!(is_invalid(add_grant().map_host_ports(&many, &node(), 13)));
        assert!(is_invalid(add_grant().map_host_ports(&[], &node(), 32)));
        // The same mapping twice is one.
        let twice = vec![web(None, "10.244.0.5/16"); 2];
        assert_eq!(
            add_grant()
                .map_host_ports(&twice, &node(), 13)
                .unwrap()
                .0
                .len(),
            1
        );
    }
}
