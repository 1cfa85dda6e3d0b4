//! The `portmap` plugin, tested with the test kit after the wasm `bridge`
//! on a simulated node: host ports forwarded to the container's own
//! address only, a port another attachment holds refused with nothing
//! changed, loopback ports only where the node policy allows them, the
//! reference's options checked as it checks them, DEL and GC removing the
//! attachment's ports; no root (`kit_tests_pass_as_nobody`).

use serde_json::{Value, json};
use wasm_cni_testkit::{CONTAINER_ID, Node, Ns, Plugins, RuleView};
use wasm_cni_tests::{kit_plugins, kit_tests_pass_as_nobody};

const OTHER: &str = "/var/run/netns/other";

fn bridge() -> String {
    json!({"cniVersion":"1.0.0","name":"pm","type":"bridge","bridge":"pmbr0",
        "isGateway":true,"ipMasq":true,
        "ipam":{"type":"host-local","subnet":"10.40.0.0/24"}})
    .to_string()
}

/// `portmap` chained after `prev` (bridge's result), with `extra` keys.
fn portmap(prev: &Value, mappings: Value, extra: Value) -> String {
    let mut c = json!({"cniVersion":"1.0.0","name":"pm","type":"portmap",
        "capabilities":{"portMappings":true},
        "runtimeConfig":{"portMappings":mappings},"prevResult":prev});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

fn web(host_port: u16) -> Value {
    json!([{"hostPort":host_port,"containerPort":80,"protocol":"tcp"}])
}

/// The bridge's ADD for the default container, or another one.
fn attach(plugins: &Plugins, node: &Node, who: Option<(&str, &str)>) -> Value {
    let call = plugins.call(node, "ADD");
    let call = match who {
        Some((id, netns)) => call.container_id(id).netns(netns),
        None => call,
    };
    call.run(&bridge()).ok()
}

/// The default pod holding host port 8080, and another pod attached (its
/// bridge's result).
fn two_pods(plugins: &Plugins, node: &Node) -> Value {
    let first = attach(plugins, node, None);
    plugins
        .add(node, &portmap(&first, web(8080), json!({})))
        .ok();
    node.add_container(OTHER);
    attach(plugins, node, Some(("other", OTHER)))
}

/// An ADD for the other container.
fn add_other(plugins: &Plugins, node: &Node, config: &str) -> wasm_cni_testkit::Outcome {
    plugins
        .call(node, "ADD")
        .container_id("other")
        .netns(OTHER)
        .run(config)
}

fn host_ports(node: &Node) -> Vec<RuleView> {
    node.snapshot()
        .rules
        .into_iter()
        .filter(|r| r.kind == "host-port")
        .collect()
}

#[test]
fn add_forwards_each_mapping_to_the_containers_address_and_passes_the_result_on() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let prev = attach(&plugins, &node, None);
    let ip = prev["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let maps = json!([{"hostPort":8080,"containerPort":80,"protocol":"tcp"},
        {"hostPort":5353,"containerPort":53,"protocol":"UDP","hostIP":"10.40.0.1"},
        {"hostPort":9000,"containerPort":9000,"protocol":"sctp","hostIP":"fd00::7"}]);
    let r = plugins.add(&node, &portmap(&prev, maps, json!({}))).ok();
    let mut expected = prev.clone();
    expected["cniVersion"] = json!("1.0.0");
    assert_eq!(r, expected, "the result is the previous one");
    let got: Vec<String> = host_ports(&node).into_iter().map(|r| r.matches).collect();
    // The IPv6 entry has no IPv6 container address to go to: skipped, as
    // the reference skips it.
    assert_eq!(
        got,
        [
            format!("*:8080/tcp -> {ip}:80"),
            format!("10.40.0.1:5353/udp -> {ip}:53")
        ]
    );
    let owners: Vec<String> = host_ports(&node).into_iter().map(|r| r.owner).collect();
    assert!(
        owners
            .iter()
            .all(|o| o == &format!("wasm-cni pm {CONTAINER_ID} eth0"))
    );
}

#[test]
fn a_port_another_attachment_holds_is_refused_and_nothing_changes() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let second = two_pods(&plugins, &node);
    let before = node.snapshot().rules;
    for clash in [
        web(8080),
        json!([{"hostPort":8080,"containerPort":81,"protocol":"tcp","hostIP":"10.40.0.1"}]),
        json!([{"hostPort":8081,"containerPort":81,"protocol":"tcp"},
               {"hostPort":8080,"containerPort":80,"protocol":"tcp"}]),
    ] {
        let (code, msg) =
            add_other(&plugins, &node, &portmap(&second, clash.clone(), json!({}))).err();
        assert_eq!(code, 100, "{msg}");
        assert!(msg.contains("held by another attachment"), "{msg}");
        // Not even the other, free port of the same call; and the second
        // pod's masquerade (its bridge's) is still there.
        assert_eq!(node.snapshot().rules, before, "{clash}");
    }
    // Another protocol on the same port is free.
    let udp = json!([{"hostPort":8080,"containerPort":80,"protocol":"udp"}]);
    add_other(&plugins, &node, &portmap(&second, udp, json!({}))).ok();
    assert_eq!(host_ports(&node).len(), 2);
}

#[test]
fn a_repeated_add_is_refused_and_keeps_the_ports() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let prev = attach(&plugins, &node, None);
    plugins
        .add(&node, &portmap(&prev, web(8080), json!({})))
        .ok();
    let before = node.snapshot().rules;
    let again = json!([{"hostPort":9090,"containerPort":8000,"protocol":"tcp"}]);
    let (code, msg) = plugins.add(&node, &portmap(&prev, again, json!({}))).err();
    assert_eq!(code, 100, "{msg}");
    assert!(msg.contains("without a DEL"), "{msg}");
    // Its rollback took nothing of what the first ADD made.
    assert_eq!(node.snapshot().rules, before);
}

#[test]
fn a_port_the_node_serves_or_the_policy_leaves_out_is_refused() {
    use wasm_cni::kernel::hostport::Protocol;
    let (plugins, node) = (kit_plugins(), Node::new());
    let prev = attach(&plugins, &node, None);
    // The kubelet's port, on every address.
    node.sim()
        .listen((Protocol::Tcp, "0.0.0.0".parse().unwrap(), 10250));
    let (code, msg) = plugins
        .add(&node, &portmap(&prev, web(10250), json!({})))
        .err();
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("the node serves 10250/tcp"), "{msg}");
    let narrow = kit_plugins().policy(r#"{"version":1,"hostPorts":["30000-32767"]}"#);
    let (code, msg) = narrow
        .add(&node, &portmap(&prev, web(8080), json!({})))
        .err();
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("hostPorts"), "{msg}");
    assert!(host_ports(&node).is_empty());
    narrow
        .add(&node, &portmap(&prev, web(30080), json!({})))
        .ok();
    assert_eq!(host_ports(&node).len(), 1);
}

#[test]
fn a_network_cannot_forward_to_another_networks_pod() {
    let (plugins, node) = (kit_plugins(), Node::new());
    attach(&plugins, &node, None);
    // Another network whose IPAM hands its pod the first pod's address:
    // the node routes that address through the first network's bridge.
    node.add_container(OTHER);
    let steal = json!({"cniVersion":"1.0.0","name":"steal","type":"bridge","bridge":"stealbr",
        "isGateway":false,
        "ipam":{"type":"host-local","ranges":[[{"subnet":"10.40.0.0/24",
            "rangeStart":"10.40.0.2","rangeEnd":"10.40.0.2"}]]}})
    .to_string();
    let prev = plugins
        .call(&node, "ADD")
        .container_id("other")
        .netns(OTHER)
        .run(&steal)
        .ok();
    let mut conf: Value = serde_json::from_str(&portmap(&prev, web(6000), json!({}))).unwrap();
    conf["name"] = json!("steal");
    let (code, msg) = add_other(&plugins, &node, &conf.to_string()).err();
    assert_eq!(code, 2, "{msg}");
    assert!(
        msg.contains("not a link of this call or its network"),
        "{msg}"
    );
    assert!(host_ports(&node).is_empty());
}

#[test]
fn loopback_host_ports_need_the_node_policy() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let prev = attach(&plugins, &node, None);
    let lo = json!([{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":"127.0.0.1"}]);
    let (code, msg) = plugins
        .add(&node, &portmap(&prev, lo.clone(), json!({})))
        .err();
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("localhostHostPorts"), "{msg}");
    assert!(host_ports(&node).is_empty());
    let route_localnet = "net/ipv4/conf/pmbr0/route_localnet";
    assert_ne!(node.sysctl(Ns::Host, route_localnet).as_deref(), Some("1"));
    // IPv6's loopback never.
    let six = json!([{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":"::1"}]);
    let mut prev6 = prev.clone();
    prev6["ips"] = json!([{"address":"fd00::5/64","interface":2}]);
    let (code, msg) = plugins.add(&node, &portmap(&prev6, six, json!({}))).err();
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("::1"), "{msg}");

    // Allowed by the node's root: forwarded, with route_localnet on the
    // bridge the pod is reached through.
    let allowed = kit_plugins().policy(r#"{"version":1,"localhostHostPorts":true}"#);
    allowed.add(&node, &portmap(&prev, lo, json!({}))).ok();
    let got: Vec<String> = host_ports(&node).into_iter().map(|r| r.matches).collect();
    assert!(got[0].starts_with("127.0.0.1:8080/tcp"), "{got:?}");
    assert_eq!(node.sysctl(Ns::Host, route_localnet).as_deref(), Some("1"));
    // Its DEL takes route_localnet back: no loopback port is left.
    allowed
        .del(&node, &portmap(&prev, json!([]), json!({})))
        .ok();
    assert!(host_ports(&node).is_empty());
    assert_eq!(node.sysctl(Ns::Host, route_localnet).as_deref(), Some("0"));
}

#[test]
fn a_mapping_only_reaches_this_calls_own_container() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let prev = attach(&plugins, &node, None);
    // A prevResult that claims another pod's address (or an address of
    // the node): refused, nothing forwarded.
    for claimed in ["10.40.0.99/24", "10.40.0.1/24", "10.40.0.2/0"] {
        let mut forged = prev.clone();
        forged["ips"][0]["address"] = json!(claimed);
        let (code, msg) = plugins
            .add(&node, &portmap(&forged, web(8080), json!({})))
            .err();
        assert_eq!(code, 2, "{claimed}: {msg}");
        assert!(
            msg.contains("not an address of the request's interface"),
            "{msg}"
        );
        assert!(host_ports(&node).is_empty());
    }
}

#[test]
fn the_references_options_are_checked_as_it_checks_them() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let prev = attach(&plugins, &node, None);
    let cases = [
        (
            json!({"externalSetMarkChain":"KUBE-MARK-MASQ"}),
            web(8080),
            2,
            "iptables chain",
        ),
        (
            json!({"externalSetMarkChain":"X","markMasqBit":14}),
            web(8080),
            7,
            "cannot specify",
        ),
        (json!({"markMasqBit":32}), web(8080), 7, "markMasqBit"),
        (json!({"markMasqBit":-1}), web(8080), 7, "markMasqBit"),
        (
            json!({"conditionsV4":["-s","1.2.3.4"]}),
            web(8080),
            2,
            "conditionsV4",
        ),
        (json!({}), web(0), 7, "host port"),
        (
            json!({}),
            json!([{"hostPort":70000,"containerPort":80}]),
            7,
            "host port",
        ),
        (
            json!({}),
            json!([{"hostPort":80,"containerPort":0}]),
            7,
            "container port",
        ),
        (
            json!({}),
            json!([{"hostPort":80,"containerPort":80,"protocol":"icmp"}]),
            7,
            "protocol",
        ),
        (
            json!({}),
            json!([{"hostPort":80,"containerPort":80,"hostIP":"x"}]),
            7,
            "hostIP",
        ),
        (
            json!({}),
            json!([{"hostPort":80,"containerPort":80,"hostIP":"192.0.2.7"}]),
            2,
            "not an address of the node",
        ),
        (
            json!({}),
            json!([{"hostPort":80,"containerPort":80},{"hostPort":80,"containerPort":81}]),
            7,
            "one port to two places",
        ),
    ];
    for (options, maps, want, says) in cases {
        let (code, msg) = plugins
            .add(&node, &portmap(&prev, maps, options.clone()))
            .err();
        assert_eq!(code, want, "{options}: {msg}");
        assert!(msg.contains(says), "{options}: {msg}");
        assert!(host_ports(&node).is_empty());
    }
    // The mark bit in the hairpin rules is the configured one: one more
    // mapping works with markMasqBit 14 (kube-proxy's).
    plugins
        .add(
            &node,
            &portmap(&prev, web(8080), json!({"markMasqBit":14,"snat":true})),
        )
        .ok();
    assert_eq!(host_ports(&node).len(), 1);
}

#[test]
fn no_mappings_forward_nothing() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let prev = attach(&plugins, &node, None);
    let before = node.snapshot().rules;
    let r = plugins
        .add(&node, &portmap(&prev, json!([]), json!({})))
        .ok();
    assert_eq!(r["ips"], prev["ips"]);
    assert_eq!(node.snapshot().rules, before);
    let (code, msg) = plugins
        .add(
            &node,
            &json!({"cniVersion":"1.0.0","name":"pm","type":"portmap"}).to_string(),
        )
        .err();
    assert_eq!(code, 7, "{msg}");
    assert!(msg.contains("prevResult"), "{msg}");
}

#[test]
fn check_sees_the_ports_and_del_removes_them_with_the_attachments_rules() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let prev = attach(&plugins, &node, None);
    let c = portmap(&prev, web(8080), json!({}));
    plugins.add(&node, &c).ok();
    assert_eq!(plugins.check(&node, &c).ok(), Value::Null);
    let (_, msg) = plugins
        .check(&node, &portmap(&prev, web(8081), json!({})))
        .err();
    assert!(msg.contains("8081"), "{msg}");
    assert_eq!(plugins.del(&node, &c).ok(), Value::Null);
    assert!(
        node.snapshot().rules.is_empty(),
        "{:?}",
        node.snapshot().rules
    );
    let (_, msg) = plugins.check(&node, &c).err();
    assert!(msg.contains("not forwarded"), "{msg}");
    // Twice: nothing left to remove is no error.
    assert_eq!(plugins.del(&node, &c).ok(), Value::Null);
}

#[test]
fn gc_removes_the_ports_of_attachments_that_are_gone() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let second = two_pods(&plugins, &node);
    add_other(&plugins, &node, &portmap(&second, web(8081), json!({}))).ok();
    let gc = json!({"cniVersion":"1.1.0","name":"pm","type":"portmap",
        "cni.dev/valid-attachments":[{"containerID":CONTAINER_ID,"ifname":"eth0"}]})
    .to_string();
    assert_eq!(plugins.call(&node, "GC").run(&gc).ok(), Value::Null);
    let left: Vec<String> = host_ports(&node).into_iter().map(|r| r.matches).collect();
    assert_eq!(left.len(), 1);
    assert!(left[0].starts_with("*:8080/tcp"), "{left:?}");
}

#[test]
fn runs_as_an_ordinary_user() {
    kit_tests_pass_as_nobody("runs_as_an_ordinary_user");
}
