//! The `bridge` plugin, tested with the test kit on a simulated node: no
//! root, no namespaces (`kit_tests_pass_as_nobody` proves it in CI).

use serde_json::{Value, json};
use wasm_cni_testkit::{Node, Ns};
use wasm_cni_tests::{CLASSIC, kit_plugins, kit_tests_pass_as_nobody};

fn v1(extra: Value) -> String {
    let mut c = json!({"cniVersion":"1.1.0","name":"kitnet","type":"bridge","bridge":"kbr0",
        "isGateway":true,"ipMasq":true,
        "ipam":{"type":"host-local","subnet":"10.30.0.0/24","routes":[{"dst":"0.0.0.0/0"}]}});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

#[test]
fn the_classic_config_gives_the_reference_network() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let result = plugins.add(&node, CLASSIC).ok();
    assert_eq!(result["cniVersion"], "0.3.1");
    assert_eq!(result["ips"][0]["address"], "10.244.0.2/16");
    assert_eq!(result["ips"][0]["gateway"], "10.244.0.1");

    let host = node.host();
    let br = host.link("mybridge").expect("the bridge");
    assert_eq!((br.kind.as_str(), br.up), ("bridge", true));
    assert_eq!(br.addresses[0], "10.244.0.1/16");
    let port = host
        .links
        .iter()
        .find(|l| l.master.as_deref() == Some("mybridge"))
        .expect("a port on the bridge");
    assert!(port.up && port.kind == "veth");
    assert_eq!(port.peer.as_deref(), Some("eth0 (other namespace)"));
    assert_eq!(
        node.sysctl(Ns::Host, "net.ipv4.ip_forward").as_deref(),
        Some("1")
    );

    let c = node.container();
    let eth0 = c.link("eth0").expect("eth0 in the container");
    assert!(eth0.up);
    assert!(eth0.addresses.contains(&"10.244.0.2/16".to_string()));
    assert!(
        c.routes
            .contains(&"default via 10.244.0.1 dev eth0".to_string()),
        "{:?}",
        c.routes
    );
    assert_eq!(result["interfaces"][2]["mac"], eth0.mac);

    let rules = node.snapshot().rules;
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(
        (rules[0].kind, rules[0].matches.as_str()),
        ("masquerade", "10.244.0.2/16")
    );

    let store = node.store("mynet");
    assert_eq!(store["10.244.0.2"], "testkit-container\r\neth0");
    assert_eq!(store["last_reserved_ip.0"], "10.244.0.2");
}

#[test]
fn del_removes_the_attachment_and_keeps_the_bridge() {
    let (plugins, node) = (kit_plugins(), Node::new());
    plugins.add(&node, CLASSIC).ok();
    assert_eq!(plugins.del(&node, CLASSIC).ok(), Value::Null);
    let host = node.host();
    assert!(host.link("mybridge").is_some());
    assert_eq!(host.links.len(), 2, "lo and the bridge: {:?}", host.links);
    assert!(node.container().link("eth0").is_none());
    assert!(node.snapshot().rules.is_empty());
    assert!(!node.store("mynet").contains_key("10.244.0.2"));
    // Again, with the namespace gone: still a success.
    node.remove_container();
    assert!(plugins.del(&node, CLASSIC).is_ok());
}

#[test]
fn check_passes_after_add_and_fails_once_the_address_is_gone() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let conf = v1(json!({}));
    let added = plugins.add(&node, &conf).ok();
    let with_prev = v1(json!({"prevResult": added}));
    assert_eq!(plugins.check(&node, &with_prev).ok(), Value::Null);

    // Someone took the container's address away.
    node.remove_address(Ns::Container, "eth0", "10.30.0.2/24");
    let (code, msg) = plugins.check(&node, &with_prev).err();
    assert!(code > 0 && msg.contains("10.30.0.2"), "{code} {msg}");
}

#[test]
fn addresses_reserved_by_others_are_skipped() {
    let (plugins, node) = (kit_plugins(), Node::new());
    node.reserve("kitnet", "10.30.0.2", "other-container", "eth0");
    let result = plugins.add(&node, &v1(json!({}))).ok();
    assert_eq!(result["ips"][0]["address"], "10.30.0.3/24");
    assert_eq!(node.store("kitnet")["10.30.0.2"], "other-container\r\neth0");
}

#[test]
fn an_existing_bridge_is_used_as_it_is() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let conf = v1(json!({}));
    plugins.add(&node, &conf).ok();
    // A second container on the same network: one bridge, one gateway.
    node.add_container("/run/netns/second");
    let second = plugins.call(&node, "ADD").container_id("second");
    second.netns("/run/netns/second").run(&conf).ok();
    let host = node.host();
    let br = host.link("kbr0").unwrap();
    assert_eq!(
        br.addresses
            .iter()
            .filter(|a| a.starts_with("10.30."))
            .count(),
        1
    );
    let ports = host
        .links
        .iter()
        .filter(|l| l.master.as_deref() == Some("kbr0"))
        .count();
    assert_eq!(ports, 2);
}

#[test]
fn a_failed_add_leaves_the_node_as_it_was() {
    let (plugins, node) = (kit_plugins(), Node::new());
    // The interface name is taken in the container.
    node.link(Ns::Container, "eth0", "veth");
    let before = node.snapshot();
    let (code, msg) = plugins.add(&node, &v1(json!({}))).err();
    assert!(code != 0 && msg.contains("eth0"), "{code} {msg}");
    assert_eq!(node.snapshot(), before);
    let store = node.store("kitnet");
    assert!(
        store.keys().all(|k| !k.starts_with("10.30.")),
        "a leaked reservation: {store:?}"
    );
}

#[test]
fn another_networks_bridge_is_refused() {
    let (plugins, node) = (kit_plugins(), Node::new());
    plugins.add(&node, &v1(json!({}))).ok();
    node.add_container("/run/netns/c2");
    let before = node.snapshot();
    let other = v1(json!({"name":"othernet","ipam":{"type":"host-local","subnet":"10.31.0.0/24"}}));
    let c2 = plugins
        .call(&node, "ADD")
        .container_id("c2")
        .netns("/run/netns/c2");
    let (code, msg) = c2.run(&other).err();
    assert!(code != 0 && msg.contains("kbr0"), "{code} {msg}");
    assert_eq!(node.snapshot(), before);
}

#[test]
fn gc_removes_what_no_valid_attachment_holds() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let conf = v1(json!({}));
    plugins.add(&node, &conf).ok();
    node.add_container("/run/netns/keep");
    let keep = plugins.call(&node, "ADD").container_id("keep");
    keep.netns("/run/netns/keep").run(&conf).ok();
    assert_eq!(node.snapshot().rules.len(), 2);
    let gc = v1(json!({"cni.dev/valid-attachments":[{"containerID":"keep","ifname":"eth0"}]}));
    assert_eq!(plugins.call(&node, "GC").run(&gc).ok(), Value::Null);
    let rules = node.snapshot().rules;
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].matches, "10.30.0.3/24");
    let store = node.store("kitnet");
    assert!(!store.contains_key("10.30.0.2"));
    assert_eq!(store["10.30.0.3"], "keep\r\neth0");
}

#[test]
fn status_is_ready_until_the_range_is_full() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let small = v1(json!({"ipam":{"type":"host-local","subnet":"10.32.0.0/30"}}));
    assert_eq!(plugins.status(&node, &small).ok(), Value::Null);
    // A /30 has one address to give (.2; .1 is the gateway).
    node.reserve("kitnet", "10.32.0.2", "someone", "eth0");
    let (code, msg) = plugins.status(&node, &small).err();
    assert_eq!(code, 50, "{msg}");
}

#[test]
fn runs_as_an_ordinary_user() {
    kit_tests_pass_as_nobody("runs_as_an_ordinary_user");
}

#[test]
fn a_port_may_not_lower_a_bridge_others_use() {
    let (plugins, node) = (kit_plugins(), Node::new());
    plugins.add(&node, &v1(json!({}))).ok();
    node.add_container("/run/netns/small");
    let before = node.snapshot();
    let small = v1(json!({"mtu": 576}));
    let (code, msg) = plugins
        .call(&node, "ADD")
        .container_id("small")
        .netns("/run/netns/small")
        .run(&small)
        .err();
    assert!(code != 0 && msg.contains("MTU 576"), "{code} {msg}");
    assert_eq!(node.snapshot(), before);
}

#[test]
fn an_early_error_answers_in_the_configs_version() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let conf = v1(json!({"cniVersion":"1.0.0"}));
    // The environment is refused before the config is read in full.
    let out = plugins.call(&node, "ADD").ifname("bad name").run(&conf);
    assert_eq!(out.json()["cniVersion"], "1.0.0", "{:?}", out.json());
    // So is a prevResult that does not decode.
    let mut bad: Value = serde_json::from_str(&conf).unwrap();
    bad["prevResult"] = json!({"ips":[{"address":"not an address"}]});
    let out = plugins.add(&node, &bad.to_string());
    assert_eq!(out.json()["cniVersion"], "1.0.0", "{:?}", out.json());
    assert!(!out.is_ok());
}
