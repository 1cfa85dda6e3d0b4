//! The `tuning` plugin, tested with the test kit: settings applied in the
//! container, put back on DEL from the attachment's state, checked by
//! CHECK, nothing left by a failed ADD; no root (`kit_tests_pass_as_nobody`).

use serde_json::{Value, json};
use wasm_cni_testkit::{Node, Ns};
use wasm_cni_tests::{kit_plugins, kit_tests_pass_as_nobody};

fn conf(settings: Value) -> String {
    let mut c = json!({"cniVersion":"1.0.0","name":"tn","type":"tuning",
        "prevResult":{"cniVersion":"1.0.0",
            "interfaces":[{"name":"eth0","mac":"0a:58:00:00:00:01","sandbox":wasm_cni_testkit::NETNS}],
            "ips":[{"address":"10.1.0.5/24","interface":0}]}});
    for (k, v) in settings.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

/// The interface the plugin before tuning made.
fn node() -> Node {
    let node = Node::new();
    node.link(Ns::Container, "eth0", "veth");
    node.up(Ns::Container, "eth0");
    node
}

fn eth0(node: &Node) -> wasm_cni_testkit::LinkView {
    node.container().link("eth0").cloned().expect("eth0")
}

/// The files of the network's attachment states on the node.
fn states(node: &Node) -> Vec<String> {
    std::fs::read_dir(node.path("/var/lib/wasm-cni/attachments/tn"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

const ALL: &str = r#"{"sysctl":{"net.ipv4.conf.eth0.arp_notify":"1","net/ipv6/conf/eth0/accept_ra":"0"},
    "mac":"0A-58-0A-01-00-05","mtu":1400,"promisc":true,"allmulti":true,"txQLen":2000}"#;

#[test]
fn add_applies_every_setting_in_the_container_and_del_puts_them_back() {
    let (plugins, node) = (kit_plugins(), node());
    let before = eth0(&node);
    let c = conf(serde_json::from_str(ALL).unwrap());
    let r = plugins.add(&node, &c).ok();
    assert_eq!(r["interfaces"][0]["mac"], "0a:58:0a:01:00:05");
    let now = eth0(&node);
    assert_eq!(
        (now.mac.as_str(), now.mtu, now.promiscuous),
        ("0a:58:0a:01:00:05", 1400, true)
    );
    let s = node.sim().with(Some(wasm_cni_testkit::NETNS), |n| {
        let l = n.by_name("eth0").unwrap();
        (l.state.allmulti, l.state.txqlen)
    });
    assert_eq!(s.unwrap(), (true, 2000));
    assert_eq!(
        node.sysctl(Ns::Container, "net/ipv4/conf/eth0/arp_notify")
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        node.sysctl(Ns::Container, "net/ipv6/conf/eth0/accept_ra")
            .as_deref(),
        Some("0")
    );
    // The node's own sysctls are untouched.
    assert!(node.host().sysctls.is_empty());
    assert_eq!(states(&node).len(), 1);

    assert_eq!(plugins.check(&node, &c).ok(), Value::Null);
    assert_eq!(plugins.del(&node, &c).ok(), Value::Null);
    let after = eth0(&node);
    assert_eq!(
        (after.mac, after.mtu, after.promiscuous),
        (before.mac, before.mtu, before.promiscuous)
    );
    let s = node.sim().with(Some(wasm_cni_testkit::NETNS), |n| {
        let l = n.by_name("eth0").unwrap();
        (l.state.allmulti, l.state.txqlen)
    });
    assert_eq!(s.unwrap(), (false, 1000));
    assert!(states(&node).is_empty(), "the state stays after DEL");
    // DEL again, and with the container gone: still a success.
    assert!(plugins.del(&node, &c).is_ok());
    node.remove_container();
    assert!(plugins.del(&node, &c).is_ok());
}

#[test]
fn check_notices_a_changed_setting() {
    let (plugins, node) = (kit_plugins(), node());
    let c = conf(json!({"mtu":1400,"sysctl":{"net.ipv4.conf.eth0.arp_notify":"1"}}));
    plugins.add(&node, &c).ok();
    node.set_sysctl(Ns::Container, "net.ipv4.conf.eth0.arp_notify", "0");
    let (_, msg) = plugins.check(&node, &c).err();
    assert!(msg.contains("arp_notify"), "{msg}");
}

#[test]
fn a_failed_add_puts_back_what_it_changed_and_keeps_no_state() {
    let (plugins, node) = (kit_plugins(), node());
    let before = node.snapshot();
    // The MAC goes first and works; the MTU is refused by the kernel.
    let c = conf(json!({"mac":"0a:58:0a:01:00:06","mtu":70000}));
    let (code, msg) = plugins.add(&node, &c).err();
    assert!(code != 0 && msg.contains("MTU 70000"), "{code} {msg}");
    assert_eq!(node.snapshot(), before);
    assert!(states(&node).is_empty());
}

#[test]
fn bad_settings_are_refused_with_code_7() {
    let (plugins, node) = (kit_plugins(), node());
    let before = node.snapshot();
    for bad in [
        json!({"sysctl":{"kernel.panic":"1"}}),
        json!({"mac":"not-a-mac"}),
    ] {
        let (code, msg) = plugins.add(&node, &conf(bad.clone())).err();
        assert_eq!(code, 7, "{bad}: {msg}");
    }
    let bare = json!({"cniVersion":"1.0.0","name":"tn","type":"tuning"}).to_string();
    let (code, msg) = plugins.add(&node, &bare).err();
    assert!(code == 7 && msg.contains("chained"), "{msg}");
    assert_eq!(node.snapshot(), before);
}

#[test]
fn the_mac_comes_from_args_runtime_config_and_cni_args_in_the_references_order() {
    let (plugins, node) = (kit_plugins(), node());
    let c = conf(json!({"mac":"0a:58:00:00:00:11","runtimeConfig":{"mac":"0a:58:00:00:00:22"}}));
    plugins
        .call(&node, "ADD")
        .args("MAC=0a:58:00:00:00:33")
        .run(&c)
        .ok();
    assert_eq!(eth0(&node).mac, "0a:58:00:00:00:22");
    plugins.del(&node, &c).ok();
    let c = conf(json!({"mac":"0a:58:00:00:00:11","args":{"cni":{"mac":"0a:58:00:00:00:44"}}}));
    plugins.add(&node, &c).ok();
    assert_eq!(eth0(&node).mac, "0a:58:00:00:00:44");
}

#[test]
fn gc_removes_the_state_of_attachments_that_are_gone() {
    let (plugins, node) = (kit_plugins(), node());
    let c = conf(json!({"mtu":1400}));
    plugins.add(&node, &c).ok();
    assert_eq!(states(&node).len(), 1);
    let mut gc: Value = serde_json::from_str(&conf(json!({"mtu":1400}))).unwrap();
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID":"testkit-container","ifname":"eth0"}]);
    plugins.call(&node, "GC").run(&gc.to_string()).ok();
    assert_eq!(states(&node).len(), 1, "a valid attachment's state stays");
    gc["cni.dev/valid-attachments"] = json!([]);
    plugins.call(&node, "GC").run(&gc.to_string()).ok();
    assert!(states(&node).is_empty());
}

#[test]
fn runs_as_an_ordinary_user() {
    kit_tests_pass_as_nobody("runs_as_an_ordinary_user");
}

#[test]
fn a_failed_add_after_the_guest_is_undone_by_the_host() {
    let (plugins, node) = (kit_plugins(), node());
    let before = node.snapshot();
    // The guest succeeds; the host then cannot print a 0.2.0 result
    // without an address, and the ADD fails: the host puts the interface
    // back as it was and keeps no state.
    let c = json!({"cniVersion":"0.2.0","name":"tn","type":"tuning","mtu":1280,
        "mac":"0a:58:0a:01:00:07","prevResult":{"cniVersion":"0.2.0"}})
    .to_string();
    let (_, msg) = plugins.add(&node, &c).err();
    assert!(
        msg.contains("cannot convert"),
        "the guest was to succeed: {msg}"
    );
    assert_eq!(node.snapshot(), before);
    assert!(states(&node).is_empty());
}

#[test]
fn two_tunings_in_a_chain_keep_apart_and_del_restores_everything() {
    let (plugins, node) = (kit_plugins(), node());
    let first = conf(json!({"mtu":1280}));
    let second = conf(json!({"sysctl":{"net.ipv4.conf.IFNAME.arp_notify":"1"}}));
    plugins.add(&node, &first).ok();
    plugins.add(&node, &second).ok();
    // IFNAME stands for the interface.
    assert_eq!(
        node.sysctl(Ns::Container, "net/ipv4/conf/eth0/arp_notify")
            .as_deref(),
        Some("1")
    );
    // The state is the module's, and a sysctl-only instance keeps none
    // (two instances that both change settings share one record, as the
    // reference's share one backup file).
    let files = states(&node);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".tuning"), "{files:?}");
    // DEL in reverse order.
    plugins.del(&node, &second).ok();
    plugins.del(&node, &first).ok();
    assert_eq!(eth0(&node).mtu, 1500);
    assert!(states(&node).is_empty());
}

#[test]
fn gc_without_valid_attachments_named_removes_no_state() {
    let (plugins, node) = (kit_plugins(), node());
    let c = conf(json!({"mtu":1400}));
    plugins.add(&node, &c).ok();
    let mut gc: Value = serde_json::from_str(&c).unwrap();
    gc["cniVersion"] = json!("1.1.0");
    plugins.call(&node, "GC").run(&gc.to_string()).ok();
    assert_eq!(
        states(&node).len(),
        1,
        "a config without the key removed a state"
    );
}

#[test]
fn del_succeeds_whatever_it_cannot_restore() {
    let (plugins, node) = (kit_plugins(), node());
    let c = conf(json!({"mtu":1400}));
    plugins.add(&node, &c).ok();
    let file = node
        .path("/var/lib/wasm-cni/attachments/tn")
        .join(&states(&node)[0]);
    std::fs::write(&file, "not json").unwrap();
    assert_eq!(plugins.del(&node, &c).ok(), Value::Null);
    assert!(states(&node).is_empty());
}

#[test]
fn check_compares_promiscuous_mode_either_way_and_results_match_by_name() {
    let (plugins, node) = (kit_plugins(), node());
    let mut c: Value = serde_json::from_str(&conf(json!({"mac":"0a:58:0a:01:00:08"}))).unwrap();
    c["prevResult"]["interfaces"][0]["sandbox"] = json!("/some/other/path");
    let r = plugins.add(&node, &c.to_string()).ok();
    assert_eq!(r["interfaces"][0]["mac"], "0a:58:0a:01:00:08");
    node.sim()
        .with(Some(wasm_cni_testkit::NETNS), |n| {
            let i = n.by_name("eth0").unwrap().state.index;
            n.change(i, wasm_cni::kernel::link::LinkChange::Promiscuous(true))
        })
        .unwrap()
        .unwrap();
    let (_, msg) = plugins.check(&node, &c.to_string()).err();
    assert!(msg.contains("promiscuous"), "{msg}");
}
