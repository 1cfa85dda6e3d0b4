//! The `host-local` IPAM plugin, tested with the test kit: its store on
//! the simulated node's files, no root (`kit_tests_pass_as_nobody`).

use serde_json::{Value, json};
use wasm_cni_testkit::Node;
use wasm_cni_tests::{kit_plugins, kit_tests_pass_as_nobody};

fn conf(ipam: Value) -> String {
    let mut ipam = ipam;
    ipam["type"] = json!("host-local");
    json!({"cniVersion":"1.1.0","name":"hl","type":"host-local","ipam":ipam}).to_string()
}

#[test]
fn add_reserves_the_first_free_address_as_the_reference_lays_it_out() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let c = conf(json!({"subnet":"10.40.0.0/24","gateway":"10.40.0.1",
        "routes":[{"dst":"0.0.0.0/0"}]}));
    let r = plugins.add(&node, &c).ok();
    assert_eq!(r["ips"][0]["address"], "10.40.0.2/24");
    assert_eq!(r["ips"][0]["gateway"], "10.40.0.1");
    assert_eq!(r["routes"][0]["dst"], "0.0.0.0/0");
    let store = node.store("hl");
    assert_eq!(store["10.40.0.2"], "testkit-container\r\neth0");
    assert_eq!(store["last_reserved_ip.0"], "10.40.0.2");
    // Nothing on the node's links: IPAM only reserves.
    assert_eq!(node.host().links.len(), 1);
}

#[test]
fn ranges_bound_it_and_two_families_give_two_addresses() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let c = conf(json!({"ranges":[
        [{"subnet":"10.41.0.0/24","rangeStart":"10.41.0.100","rangeEnd":"10.41.0.101"}],
        [{"subnet":"fd00:41::/64"}]]}));
    let r = plugins.add(&node, &c).ok();
    assert_eq!(r["ips"][0]["address"], "10.41.0.100/24");
    assert_eq!(r["ips"][1]["address"], "fd00:41::2/64");
    let second = plugins.call(&node, "ADD").container_id("b").run(&c).ok();
    assert_eq!(second["ips"][0]["address"], "10.41.0.101/24");
    // The IPv4 range is spent: the third ADD fails and reserves nothing.
    let before = node.store("hl");
    let (code, msg) = plugins.call(&node, "ADD").container_id("c").run(&c).err();
    assert!(msg.contains("10.41.0.100-10.41.0.101"), "{code} {msg}");
    assert_eq!(node.store("hl"), before);
}

#[test]
fn del_releases_only_this_attachment() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let c = conf(json!({"subnet":"10.42.0.0/24"}));
    node.reserve("hl", "10.42.0.9", "other", "eth0");
    plugins.add(&node, &c).ok();
    assert_eq!(plugins.del(&node, &c).ok(), Value::Null);
    let store = node.store("hl");
    assert!(!store.contains_key("10.42.0.2"));
    assert_eq!(store["10.42.0.9"], "other\r\neth0");
    // A reservation written by an old host-local holds the ID alone.
    node.store_put("hl", "10.42.0.7", "legacy-id");
    plugins
        .call(&node, "DEL")
        .container_id("legacy-id")
        .run(&c)
        .ok();
    assert!(!node.store("hl").contains_key("10.42.0.7"));
}

#[test]
fn gc_keeps_valid_attachments_and_the_cursor() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let mut c: Value = serde_json::from_str(&conf(json!({"subnet":"10.43.0.0/24"}))).unwrap();
    for id in ["a", "b"] {
        plugins
            .call(&node, "ADD")
            .container_id(id)
            .run(&c.to_string())
            .ok();
    }
    c["cni.dev/valid-attachments"] = json!([{"containerID":"b","ifname":"eth0"}]);
    assert_eq!(
        plugins.call(&node, "GC").run(&c.to_string()).ok(),
        Value::Null
    );
    let store = node.store("hl");
    let kept: Vec<&String> = store
        .keys()
        .filter(|k| !k.starts_with("attachment."))
        .collect();
    assert_eq!(
        kept,
        ["10.43.0.3", "attachment-index", "last_reserved_ip.0"]
    );
    let index: Vec<&String> = store
        .iter()
        .filter(|(k, _)| k.starts_with("attachment."))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(index, ["wasm-cni\n10.43.0.3"], "a's index entry went");
}

#[test]
fn dns_comes_from_a_resolv_conf_the_policy_allows() {
    let (plugins, node) = (kit_plugins(), Node::new());
    node.file(
        "/etc/kit-resolv.conf",
        "nameserver 10.0.0.53\nsearch example.test\noptions ndots:2\n",
    );
    let c = conf(json!({"subnet":"10.44.0.0/24","resolvConf":"/etc/kit-resolv.conf"}));
    let r = plugins.add(&node, &c).ok();
    assert_eq!(r["dns"]["nameservers"], json!(["10.0.0.53"]));
    assert_eq!(r["dns"]["search"], json!(["example.test"]));
    // Outside the policy's directories: refused, nothing reserved.
    node.file("/srv/secret", "nameserver 10.0.0.54\n");
    let c = conf(json!({"subnet":"10.45.0.0/24","resolvConf":"/srv/secret"}));
    let (code, msg) = plugins.call(&node, "ADD").container_id("x").run(&c).err();
    assert!(msg.contains("/srv/secret"), "{code} {msg}");
    assert!(node.store("hl").keys().all(|k| !k.starts_with("10.45.")));
}

#[test]
fn a_data_dir_outside_the_store_roots_is_refused_with_code_7() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let c = conf(json!({"subnet":"10.46.0.0/24","dataDir":"/etc"}));
    let (code, msg) = plugins.add(&node, &c).err();
    assert_eq!(code, 7, "{msg}");
    assert!(msg.contains("\"ipam.dataDir\" /etc"), "{msg}");
    assert!(!node.path_exists("/etc/hl"));
}

#[test]
fn a_config_without_a_subnet_names_what_is_missing() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let (code, msg) = plugins.add(&node, &conf(json!({}))).err();
    assert!(
        code != 0 && msg.contains("subnet") || msg.contains("ranges"),
        "{code} {msg}"
    );
    assert!(node.store("hl").is_empty());
}

#[test]
fn runs_as_an_ordinary_user() {
    kit_tests_pass_as_nobody("runs_as_an_ordinary_user");
}
