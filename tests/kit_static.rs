//! The `static` IPAM plugin, tested with the test kit: as the reference
//! static plugin, from the config, `args.cni.ips`, `runtimeConfig.ips` and
//! `CNI_ARGS`; stateless; no root (`kit_tests_pass_as_nobody`).

use serde_json::{Value, json};
use wasm_cni_testkit::Node;
use wasm_cni_tests::{kit_plugins, kit_tests_pass_as_nobody};

fn conf(version: &str, extra: Value) -> String {
    let mut c = json!({"cniVersion":version,"name":"st","type":"static",
        "ipam":{"type":"static",
            "addresses":[{"address":"10.50.0.5/24","gateway":"10.50.0.1"},
                         {"address":"fd00:50::5/64"}],
            "routes":[{"dst":"0.0.0.0/0"},{"dst":"10.60.0.0/16","gw":"10.50.0.254"}],
            "dns":{"nameservers":["10.50.0.53"],"domain":"example.test","search":["example.test"]}}});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

#[test]
fn add_returns_the_configured_addresses_routes_and_dns() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let before = node.snapshot();
    let r = plugins.add(&node, &conf("1.0.0", json!({}))).ok();
    assert_eq!(r["ips"][0]["address"], "10.50.0.5/24");
    assert_eq!(r["ips"][0]["gateway"], "10.50.0.1");
    assert_eq!(r["ips"][1]["address"], "fd00:50::5/64");
    assert_eq!(
        r["routes"][1],
        json!({"dst":"10.60.0.0/16","gw":"10.50.0.254"})
    );
    assert_eq!(r["dns"]["nameservers"], json!(["10.50.0.53"]));
    assert_eq!(r["dns"]["domain"], "example.test");
    // Stateless: the node and its files are as they were.
    assert_eq!(node.snapshot(), before);
    assert!(node.store("st").is_empty());
    assert_eq!(
        plugins.del(&node, &conf("1.0.0", json!({}))).ok(),
        Value::Null
    );
    assert_eq!(
        plugins.check(&node, &conf("1.0.0", json!({}))).ok(),
        Value::Null
    );
    assert_eq!(
        plugins.status(&node, &conf("1.1.0", json!({}))).ok(),
        Value::Null
    );
}

#[test]
fn cni_args_add_addresses_and_set_gateways() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let c = conf("1.0.0", json!({}));
    let r = plugins
        .call(&node, "ADD")
        .args("IP=10.70.0.9/24,fd00:70::9/64;GATEWAY=10.70.0.1")
        .run(&c)
        .ok();
    let ips: Vec<(&str, Option<&str>)> = r["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["address"].as_str().unwrap(), i["gateway"].as_str()))
        .collect();
    assert_eq!(
        ips,
        [
            ("10.50.0.5/24", Some("10.50.0.1")),
            ("fd00:50::5/64", None),
            ("10.70.0.9/24", Some("10.70.0.1")),
            ("fd00:70::9/64", None)
        ]
    );
    // A key static does not know, without IgnoreUnknown: error 4.
    let (code, msg) = plugins
        .call(&node, "ADD")
        .args("K8S_POD_NAME=x")
        .run(&c)
        .err();
    assert_eq!(code, 4, "{msg}");
    let ok = plugins
        .call(&node, "ADD")
        .args("IgnoreUnknown=1;K8S_POD_NAME=x")
        .run(&c);
    assert!(ok.is_ok(), "{}", ok.stdout);
}

#[test]
fn args_and_runtime_config_ips_are_added_in_order() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let c = json!({"cniVersion":"1.0.0","name":"st","type":"static",
        "ipam":{"type":"static"},
        "args":{"cni":{"ips":["10.80.0.2/24"]}},
        "runtimeConfig":{"ips":["10.81.0.2/24"]}})
    .to_string();
    let r = plugins.add(&node, &c).ok();
    assert_eq!(r["ips"][0]["address"], "10.80.0.2/24");
    assert_eq!(r["ips"][1]["address"], "10.81.0.2/24");
}

#[test]
fn bad_input_is_an_error_naming_it() {
    let (plugins, node) = (kit_plugins(), Node::new());
    let bad = json!({"cniVersion":"1.0.0","name":"st","type":"static",
        "ipam":{"type":"static","addresses":[{"address":"10.50.0.5"}]}})
    .to_string();
    let (code, msg) = plugins.add(&node, &bad).err();
    assert_eq!(code, 7);
    assert!(
        msg.contains("\"10.50.0.5\"") && msg.contains("ipam.addresses"),
        "{msg}"
    );
    let (code, msg) = plugins
        .call(&node, "ADD")
        .args("GATEWAY=nonsense")
        .run(&conf("1.0.0", json!({})))
        .err();
    assert_eq!(code, 7);
    assert!(msg.contains("GATEWAY"), "{msg}");
    // 0.2.0 results hold one address per family.
    let (code, msg) = plugins
        .call(&node, "ADD")
        .args("IP=10.90.0.2/24")
        .run(&conf("0.2.0", json!({})))
        .err();
    assert_eq!(code, 1, "{msg}");
}

#[test]
fn it_needs_no_capability() {
    // The ipam-plugin world, and nothing of the node: no store, no log.
    let inspected = std::process::Command::new(wasm_cni_tests::host_binary())
        .args(["inspect", "--json"])
        .arg(wasm_cni_tests::module("static-ipam"))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(v["role"], "ipam", "{v}");
    let caps: Vec<&str> = v["imports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .filter(|n| {
            n.starts_with("wasm-cni:plugin/")
                && !n.contains("/types@")
                && !n.contains("/lifecycle@")
        })
        .collect();
    assert!(caps.is_empty(), "{caps:?}");
}

#[test]
fn runs_as_an_ordinary_user() {
    kit_tests_pass_as_nobody("runs_as_an_ordinary_user");
}
