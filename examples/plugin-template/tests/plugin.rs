//! my-plugin, tested on a simulated node with wasm-cni's test kit: build
//! the module first (`cargo build --release --target wasm32-wasip2`),
//! then `cargo test`. No root, no namespaces.

use serde_json::json;
use std::path::PathBuf;
use wasm_cni_testkit::{Node, Ns, Plugins};

/// The module `cargo build --target wasm32-wasip2 --release` made.
fn built() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("wasm32-wasip2/release/my_plugin.wasm")
}

fn plugins() -> Plugins {
    Plugins::new().module("my-plugin", built())
}

/// What the plugin before it in the chain made: eth0 in the container.
fn node_with_eth0() -> Node {
    let node = Node::new();
    node.link(Ns::Container, "eth0", "veth");
    node
}

fn conf(arp_notify: bool) -> String {
    json!({"cniVersion":"1.0.0","name":"mynet","type":"my-plugin","arpNotify":arp_notify,
        "prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.5/24"}]}})
    .to_string()
}

#[test]
fn add_sets_arp_notify_and_passes_the_result_on() {
    let node = node_with_eth0();
    let result = plugins().add(&node, &conf(true)).ok();
    assert_eq!(result["ips"][0]["address"], "10.1.0.5/24");
    assert_eq!(
        node.sysctl(Ns::Container, "net/ipv4/conf/eth0/arp_notify")
            .as_deref(),
        Some("1")
    );
    // Nothing on the node's side.
    assert!(node.host().sysctls.is_empty());
    assert!(plugins().check(&node, &conf(true)).is_ok());
    let (_, msg) = plugins().check(&node, &conf(false)).err();
    assert!(msg.contains("arp_notify"), "{msg}");
}

#[test]
fn add_without_a_previous_result_is_a_config_error() {
    let node = node_with_eth0();
    let bare = json!({"cniVersion":"1.0.0","name":"mynet","type":"my-plugin"}).to_string();
    let (code, msg) = plugins().add(&node, &bare).err();
    assert_eq!(code, 7, "{msg}");
}

#[test]
fn add_fails_cleanly_when_the_interface_is_missing() {
    let node = Node::new();
    let before = node.snapshot();
    let (_, msg) = plugins().add(&node, &conf(true)).err();
    assert!(msg.contains("eth0"), "{msg}");
    assert_eq!(node.snapshot(), before);
}

#[test]
fn runs_as_an_ordinary_user() {
    // As a plugin author runs it; CI runs it as `nobody` too.
    if std::env::var_os("WASM_CNI_KIT_AS_NOBODY").is_some() {
        assert_ne!(rustix_euid(), 0);
    }
}

fn rustix_euid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        })
        .unwrap_or(u32::MAX)
}
