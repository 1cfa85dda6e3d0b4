//! `portmap` on a real kernel, chained after the wasm `bridge` in a
//! sandbox: a host port another attachment holds, or a second set for the
//! same attachment, is refused and the node's rules stay as they were; so
//! is a port the node serves, and a mapping to an address that is not a
//! pod's of this network (the node's loopback, another network's pod);
//! loopback host ports are refused without the node policy, and with it
//! they work while the guard keeps pods off the node's 127.0.0.0/8 (the
//! CVE-2020-8558 class); IPv6 host ports work as IPv4's.

use serde_json::{Value, json};
use std::net::IpAddr;
use wasm_cni_tests::traffic::{
    TcpServer, tcp_line, udp_receive, udp_send, udp_socket, udp_socket_at,
};
use wasm_cni_tests::{CniOutput, Sandbox};

fn bridge() -> String {
    json!({"cniVersion":"1.0.0","name":"pmnet","type":"bridge","bridge":"pmbr",
        "isGateway":true,"ipMasq":true,
        "ipam":{"type":"host-local","subnet":"10.38.0.0/24"}})
    .to_string()
}

fn portmap(prev: &Value, mappings: Value) -> String {
    json!({"cniVersion":"1.0.0","name":"pmnet","type":"portmap",
        "runtimeConfig":{"portMappings":mappings},"prevResult":prev})
    .to_string()
}

fn web(host_ip: Option<&str>) -> Value {
    let mut m = json!({"hostPort":18080,"containerPort":80,"protocol":"tcp"});
    if let Some(ip) = host_ip {
        m["hostIP"] = json!(ip);
    }
    json!([m])
}

/// A call for container `id` (its namespace is the sandbox's of that
/// name), on `eth0`.
fn cni(sb: &Sandbox, plugin: &str, command: &str, id: &str, config: &str) -> CniOutput {
    sb.cni(plugin, command, id, Some(&sb.ns_path(id)), "eth0", config)
}

/// wasm-cni's table, as nft lists it.
fn table(sb: &Sandbox) -> String {
    let out = sb.run_in("host", &["nft", "list", "table", "inet", "wasm-cni"]);
    String::from_utf8(out.stdout).unwrap()
}

/// DEL of c2 and c1 (portmap, then bridge), and no rule of theirs left.
fn delete_both(sb: &Sandbox, prev: &Value) {
    for id in ["c2", "c1"] {
        let ns = sb.ns_path(id);
        let conf = portmap(prev, web(None));
        sb.cni("portmap", "DEL", id, Some(&ns), "eth0", &conf).ok();
        sb.cni("bridge", "DEL", id, Some(&ns), "eth0", &bridge())
            .ok();
    }
    assert_eq!(table(sb).matches("comment").count(), 0, "{}", table(sb));
}

const GATEWAY: &str = "10.38.0.1";

fn gateway() -> IpAddr {
    GATEWAY.parse().unwrap()
}

#[test]
fn a_held_host_port_is_refused_and_the_rules_stay_as_they_were() {
    let Some(mut sb) = Sandbox::for_test("portmap_held") else {
        return;
    };
    let (c1, _c2) = (sb.container("c1"), sb.container("c2"));
    let p1 = cni(&sb, "bridge", "ADD", "c1", &bridge()).ok().json();
    cni(&sb, "portmap", "ADD", "c1", &portmap(&p1, web(None))).ok();
    let p2 = cni(&sb, "bridge", "ADD", "c2", &bridge()).ok().json();
    let before = table(&sb);
    let _web = TcpServer::start(&c1, 80, "c1");
    for clash in [web(None), web(Some(GATEWAY))] {
        let e = cni(&sb, "portmap", "ADD", "c2", &portmap(&p2, clash)).err(100);
        assert!(
            e["msg"]
                .as_str()
                .unwrap()
                .contains("held by another attachment"),
            "{e}"
        );
        assert_eq!(table(&sb), before, "the failed ADD changed the rules");
    }
    // The holder still has it.
    let node = sb.ns_path("host");
    assert_eq!(
        tcp_line(&node, (gateway(), 18080).into()).as_deref(),
        Some(format!("c1 from {GATEWAY}").as_str())
    );
    delete_both(&sb, &p1);
}

#[test]
fn loopback_host_ports_need_the_policy_and_then_pods_cannot_reach_the_nodes_loopback() {
    let Some(mut sb) = Sandbox::for_test("portmap_loopback") else {
        return;
    };
    let (c1, c2) = (sb.container("c1"), sb.container("c2"));
    let node = sb.ns_path("host");
    let p1 = cni(&sb, "bridge", "ADD", "c1", &bridge()).ok().json();
    let _web = TcpServer::start(&c1, 80, "c1");
    let loopback = (IpAddr::from([127, 0, 0, 1]), 18080).into();

    // Without the policy: 127.0.0.1 refused, code 2, nothing changed; a
    // mapping for any address does not take the node's loopback.
    let before = table(&sb);
    let e = cni(
        &sb,
        "portmap",
        "ADD",
        "c1",
        &portmap(&p1, web(Some("127.0.0.1"))),
    )
    .err(2);
    assert!(
        e["msg"].as_str().unwrap().contains("localhostHostPorts"),
        "{e}"
    );
    assert_eq!(table(&sb), before);
    assert_eq!(sb.sysctl("host", "net.ipv4.conf.pmbr.route_localnet"), "0");
    cni(&sb, "portmap", "ADD", "c1", &portmap(&p1, web(None))).ok();
    assert!(tcp_line(&node, (gateway(), 18080).into()).is_some());
    assert_eq!(tcp_line(&node, loopback), None);
    cni(&sb, "portmap", "DEL", "c1", &portmap(&p1, web(None))).ok();

    // With it: the node's 127.0.0.1:18080 reaches the pod.
    sb.use_policy(json!({"version": 1, "localhostHostPorts": true}));
    cni(
        &sb,
        "portmap",
        "ADD",
        "c1",
        &portmap(&p1, web(Some("127.0.0.1"))),
    )
    .ok();
    assert_eq!(sb.sysctl("host", "net.ipv4.conf.pmbr.route_localnet"), "1");
    assert_eq!(
        tcp_line(&node, loopback).as_deref(),
        Some(format!("c1 from {GATEWAY}").as_str()),
        "masqueraded to the bridge's address, so the answer can come back"
    );

    // A pod that routes 127.0.0.0/8 to the node (its own namespace, its
    // own sysctls) finds nothing there: the guard drops it.
    cni(&sb, "bridge", "ADD", "c2", &bridge()).ok();
    let _node_only = TcpServer::start(&node, 19999, "node-local");
    for argv in [
        vec!["sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1"],
        vec![
            "ip",
            "route",
            "add",
            "127.0.0.5/32",
            "via",
            GATEWAY,
            "dev",
            "eth0",
        ],
    ] {
        assert!(sb.run_in("c2", &argv).status.success(), "{argv:?}");
    }
    let attack = (IpAddr::from([127, 0, 0, 5]), 19999).into();
    assert_eq!(
        tcp_line(&c2, attack),
        None,
        "a pod reached the node's loopback"
    );
    // Nor pass for one of the node's loopback clients (a UDP service
    // that trusts 127.0.0.0/8 sources).
    let trusting = udp_socket(&node, 19997);
    let own_loopback = ["ip", "addr", "add", "127.0.0.6/32", "dev", "eth0"];
    assert!(sb.run_in("c2", &own_loopback).status.success());
    let spoofer = udp_socket_at(&c2, (IpAddr::from([127, 0, 0, 6]), 0).into());
    udp_send(&spoofer, (gateway(), 19997).into(), "from 127.0.0.6");
    assert_eq!(
        udp_receive(&trusting),
        None,
        "a pod passed for the node's loopback"
    );
    // The same without the guard (so this test can tell): it gets in.
    assert!(
        sb.run_in(
            "host",
            &["nft", "flush", "chain", "inet", "wasm-cni", "guard"]
        )
        .status
        .success()
    );
    assert!(
        tcp_line(&c2, attack).is_some(),
        "the attack itself did not work"
    );
    udp_send(&spoofer, (gateway(), 19997).into(), "from 127.0.0.6");
    assert_eq!(
        udp_receive(&trusting).as_deref(),
        Some("from 127.0.0.6"),
        "the spoofing itself did not work"
    );

    delete_both(&sb, &p1);
    assert_eq!(
        sb.sysctl("host", "net.ipv4.conf.pmbr.route_localnet"),
        "0",
        "the last loopback port's DEL takes route_localnet back"
    );
}

#[test]
fn host_ports_reach_the_container_over_ipv6_too() {
    let Some(mut sb) = Sandbox::for_test("portmap_ipv6") else {
        return;
    };
    let c1 = sb.container("c1");
    let dual = json!({"cniVersion":"1.0.0","name":"pmnet6","type":"bridge","bridge":"pmbr6",
        "isGateway":true,
        "ipam":{"type":"host-local","ranges":[[{"subnet":"10.39.0.0/24"}],[{"subnet":"fd39::/64"}]]}})
    .to_string();
    let prev = cni(&sb, "bridge", "ADD", "c1", &dual).ok().json();
    let mut conf: Value = serde_json::from_str(&portmap(&prev, web(None))).unwrap();
    conf["name"] = json!("pmnet6");
    cni(&sb, "portmap", "ADD", "c1", &conf.to_string()).ok();
    let _web = TcpServer::start(&c1, 80, "c1");
    let node = sb.ns_path("host");
    for gw in ["fd39::1", "10.39.0.1"] {
        let to: IpAddr = gw.parse().unwrap();
        assert_eq!(
            tcp_line(&node, (to, 18080).into()).as_deref(),
            Some(format!("c1 from {gw}").as_str())
        );
    }
    // `::1` is not taken (it cannot be forwarded): refused at the node.
    assert_eq!(
        tcp_line(
            &node,
            (IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), 18080).into()
        ),
        None
    );
    cni(&sb, "portmap", "DEL", "c1", &conf.to_string()).ok();
    cni(&sb, "bridge", "DEL", "c1", &dual).ok();
    assert_eq!(table(&sb).matches("comment").count(), 0, "{}", table(&sb));
}

#[test]
fn a_port_the_node_serves_and_a_second_set_are_refused() {
    let Some(mut sb) = Sandbox::for_test("portmap_node_port") else {
        return;
    };
    let c1 = sb.container("c1");
    let node = sb.ns_path("host");
    let _kubelet = TcpServer::start(&node, 18080, "kubelet");
    let p1 = cni(&sb, "bridge", "ADD", "c1", &bridge()).ok().json();
    let before = table(&sb);
    let e = cni(&sb, "portmap", "ADD", "c1", &portmap(&p1, web(None))).err(2);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("the node serves 18080/tcp"),
        "{e}"
    );
    assert_eq!(table(&sb), before);
    assert_eq!(
        tcp_line(&node, (gateway(), 18080).into()).as_deref(),
        Some(format!("kubelet from {GATEWAY}").as_str()),
        "the node's service still answers"
    );
    // Another port; then a second set for the same attachment (an ADD
    // again without a DEL) is refused and keeps the first.
    let _web = TcpServer::start(&c1, 80, "c1");
    let other = json!([{"hostPort":18081,"containerPort":80,"protocol":"tcp"}]);
    cni(&sb, "portmap", "ADD", "c1", &portmap(&p1, other.clone())).ok();
    let held = table(&sb);
    let again = json!([{"hostPort":18082,"containerPort":80,"protocol":"tcp"}]);
    let e = cni(&sb, "portmap", "ADD", "c1", &portmap(&p1, again)).err(100);
    assert!(e["msg"].as_str().unwrap().contains("without a DEL"), "{e}");
    assert_eq!(table(&sb), held);
    assert_eq!(
        tcp_line(&node, (gateway(), 18081).into()).as_deref(),
        Some(format!("c1 from {GATEWAY}").as_str())
    );
    cni(&sb, "portmap", "DEL", "c1", &portmap(&p1, other)).ok();
    cni(&sb, "bridge", "DEL", "c1", &bridge()).ok();
    assert_eq!(table(&sb).matches("comment").count(), 0, "{}", table(&sb));
}

#[test]
fn a_config_cannot_forward_to_the_nodes_loopback_or_another_networks_pod() {
    let Some(mut sb) = Sandbox::for_test("portmap_targets") else {
        return;
    };
    let (_c1, _c2) = (sb.container("c1"), sb.container("c2"));
    let node = sb.ns_path("host");
    let _secret = TcpServer::start(&node, 18022, "node-loopback");
    cni(&sb, "bridge", "ADD", "c1", &bridge()).ok();
    let before = table(&sb);
    // An IPAM that puts the node's 127.0.0.1 on the pod's interface, and
    // one that hands out the first pod's address on another bridge.
    let lo = json!({"cniVersion":"1.0.0","name":"pmlo","type":"bridge","bridge":"pmbrlo",
        "isGateway":false,
        "ipam":{"type":"host-local","ranges":[[{"subnet":"127.0.0.0/8",
            "rangeStart":"127.0.0.1","rangeEnd":"127.0.0.1","gateway":"127.0.0.9"}]]}});
    let steal = json!({"cniVersion":"1.0.0","name":"pmsteal","type":"bridge","bridge":"pmbrst",
        "isGateway":false,
        "ipam":{"type":"host-local","ranges":[[{"subnet":"10.38.0.0/24",
            "rangeStart":"10.38.0.2","rangeEnd":"10.38.0.2"}]]}});
    // And one of this network that hands out its bridge's broadcast
    // address (a wider subnet on the same bridge).
    let broadcast = json!({"cniVersion":"1.0.0","name":"pmnet","type":"bridge","bridge":"pmbr",
        "isGateway":false,
        "ipam":{"type":"host-local","ranges":[[{"subnet":"10.38.0.0/23",
            "rangeStart":"10.38.0.255","rangeEnd":"10.38.0.255","gateway":"10.38.0.1"}]]}});
    for (net, conf, says) in [
        ("pmlo", &lo, "not a pod's address"),
        ("pmsteal", &steal, "not a link of this call or its network"),
        ("pmnet", &broadcast, "the node's own"),
    ] {
        let prev = cni(&sb, "bridge", "ADD", "c2", &conf.to_string())
            .ok()
            .json();
        let mut pm: Value = serde_json::from_str(&portmap(&prev, web(None))).unwrap();
        pm["name"] = json!(net);
        let e = cni(&sb, "portmap", "ADD", "c2", &pm.to_string()).err(2);
        assert!(e["msg"].as_str().unwrap().contains(says), "{net}: {e}");
        assert_eq!(table(&sb), before, "{net}");
        cni(&sb, "bridge", "DEL", "c2", &conf.to_string()).ok();
    }
    assert_eq!(tcp_line(&node, (gateway(), 18080).into()), None);
    cni(&sb, "bridge", "DEL", "c1", &bridge()).ok();
}
