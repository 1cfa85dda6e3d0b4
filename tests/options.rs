//! The bridge plugin's options beyond the classic config.

use serde_json::{Value, json};
use wasm_cni_tests::Sandbox;

fn conf(extra: Value) -> String {
    let mut c = json!({
        "cniVersion": "1.0.0", "name": "opts", "type": "bridge", "bridge": "optbr",
        "ipam": {"type": "host-local", "subnet": "10.77.0.0/24"}
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

fn flags(l: &Value) -> Vec<String> {
    l["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn default_gateway_mtu_hairpin_and_mac() {
    let Some(mut sb) = Sandbox::for_test("default_gateway_mtu_hairpin_and_mac") else {
        return;
    };
    let c1 = sb.container("c1");
    // isDefaultGateway with an IPAM default route too: the reference fails
    // with "file exists" here.
    let mut cfg: Value = serde_json::from_str(&conf(json!({
        "isDefaultGateway": true, "mtu": 1400, "hairpinMode": true,
        "runtimeConfig": {"mac": "0a:58:0a:4d:00:99"}
    })))
    .unwrap();
    cfg["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}]);
    let cfg = cfg.to_string();
    let r = sb
        .cni_env(
            "bridge",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &cfg,
            &[("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web-0")],
        )
        .ok()
        .json();
    assert_eq!(r["interfaces"][2]["mac"], "0a:58:0a:4d:00:99");
    let eth0 = sb.link("c1", "eth0").unwrap();
    assert_eq!(eth0["address"], "0a:58:0a:4d:00:99");
    assert_eq!(eth0["mtu"], 1400);
    assert_eq!(sb.link("host", "optbr").unwrap()["mtu"], 1400);
    let veth = sb
        .link("host", r["interfaces"][1]["name"].as_str().unwrap())
        .unwrap();
    assert_eq!(veth["mtu"], 1400);
    assert_eq!(
        veth["linkinfo"]["info_slave_data"]["hairpin"], true,
        "{veth}"
    );
    let routes = sb.ip_json("c1", &["route", "show", "default"]);
    assert_eq!(
        routes.as_array().unwrap().len(),
        1,
        "one default route: {routes}"
    );
    assert_eq!(routes[0]["gateway"], "10.77.0.1");
    assert!(
        sb.addresses("host", "optbr")
            .contains(&"10.77.0.1/24".into()),
        "isDefaultGateway implies isGateway"
    );
    sb.cni("bridge", "DEL", "c1", Some(&c1), "eth0", &cfg).ok();
}

#[test]
fn promiscuous_mode_l2_only_dns_and_requested_ip() {
    let Some(mut sb) = Sandbox::for_test("promiscuous_mode_l2_only_dns") else {
        return;
    };
    let c1 = sb.container("c1");
    let c2 = sb.container("c2");
    let l2 = conf(
        json!({"promiscMode": true, "ipam": {}, "dns": {"nameservers": ["10.77.0.10"], "search": ["svc"]}}),
    );
    let r = sb
        .cni("bridge", "ADD", "c1", Some(&c1), "eth0", &l2)
        .ok()
        .json();
    assert!(r.get("ips").is_none(), "L2 only: {r}");
    assert_eq!(
        r["dns"],
        json!({"nameservers": ["10.77.0.10"], "search": ["svc"]})
    );
    assert!(flags(&sb.link("host", "optbr").unwrap()).contains(&"PROMISC".to_string()));
    assert!(
        sb.addresses("c1", "eth0")
            .iter()
            .all(|a| a.starts_with("fe80"))
    );
    sb.cni("bridge", "DEL", "c1", Some(&c1), "eth0", &l2).ok();

    // A requested address, passed as kubelet would.
    let cfg = conf(json!({"isGateway": true}));
    let r = sb
        .cni_env(
            "bridge",
            "ADD",
            "c2",
            Some(&c2),
            "eth0",
            &cfg,
            &[("CNI_ARGS", "IgnoreUnknown=1;IP=10.77.0.77")],
        )
        .ok()
        .json();
    assert_eq!(r["ips"][0]["address"], "10.77.0.77/24");
    sb.cni("bridge", "DEL", "c2", Some(&c2), "eth0", &cfg).ok();
    assert!(sb.ip_files("opts").is_empty());
}

#[test]
fn force_address_removes_no_address_this_call_did_not_assign() {
    // The reference replaces whatever IPv4 address the bridge has; here a
    // plugin may take off a node link only an address it may put on (the
    // gateway IPAM assigned in this call), so a stale or foreign address
    // stays, and the ADD says which and why.
    let Some(mut sb) = Sandbox::for_test("force_address_removes_no_address") else {
        return;
    };
    let c1 = sb.container("c1");
    sb.run_in("host", &["ip", "link", "add", "optbr", "type", "bridge"]);
    sb.run_in(
        "host",
        &["ip", "addr", "add", "10.99.0.1/24", "dev", "optbr"],
    );
    // The operator gives this network their bridge.
    sb.use_policy(json!({"version": 1, "sharedBridges": {"optbr": ["opts"]}}));
    let plain = conf(json!({"isGateway": true}));
    let e = sb
        .cni("bridge", "ADD", "c1", Some(&c1), "eth0", &plain)
        .err(100);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("already has an IP address"),
        "{e}"
    );
    assert!(
        sb.ip_files("opts").is_empty(),
        "the failed ADD released its address"
    );
    let forced = conf(json!({"isGateway": true, "forceAddress": true}));
    let e = sb
        .cni("bridge", "ADD", "c1", Some(&c1), "eth0", &forced)
        .err(100);
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.contains("denied") && msg.contains("10.99.0.1/24"),
        "{e}"
    );
    assert_eq!(
        sb.addresses("host", "optbr"),
        ["10.99.0.1/24"],
        "nothing changed"
    );
    assert!(sb.ip_files("opts").is_empty());
    assert!(sb.link("c1", "eth0").is_none() && sb.host_veths().is_empty());
    // Once the operator takes the stale address off, the ADD goes through.
    sb.run_in("host", &["ip", "addr", "flush", "dev", "optbr"]);
    sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", &forced)
        .ok();
    assert!(
        sb.addresses("host", "optbr")
            .contains(&"10.77.0.1/24".to_string())
    );
}

#[test]
fn bad_option_combinations_are_config_errors() {
    let Some(mut sb) = Sandbox::for_test("bad_option_combinations") else {
        return;
    };
    let c1 = sb.container("c1");
    let e = sb
        .cni(
            "bridge",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &conf(json!({"hairpinMode": true, "promiscMode": true})),
        )
        .err(7);
    assert!(e["msg"].as_str().unwrap().contains("hairpin"), "{e}");
    let e = sb
        .cni(
            "bridge",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &conf(json!({"vlan": 5000})),
        )
        .err(7);
    assert!(
        e["msg"].as_str().unwrap().contains("invalid VLAN ID"),
        "{e}"
    );
    let e = sb
        .cni(
            "bridge",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &conf(json!({"mtu": "big"})),
        )
        .err(7);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("invalid network config"),
        "{e}"
    );
    let e = sb
        .cni_env(
            "bridge",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &conf(json!({})),
            &[("CNI_ARGS", "FOO=bar")],
        )
        .err(4);
    assert!(e["msg"].as_str().unwrap().contains("FOO"), "{e}");
    let bad_range = conf(json!({"ipam": {"type": "host-local", "subnet": "10.77.0.1/24"}}));
    let e = sb
        .cni("bridge", "ADD", "c1", Some(&c1), "eth0", &bad_range)
        .err(7);
    assert!(e["msg"].as_str().unwrap().contains("host bits"), "{e}");
    // Nothing was left by any of them.
    assert!(sb.host_veths().is_empty());
    assert!(sb.link("c1", "eth0").is_none());
    assert!(sb.ip_files("opts").is_empty());
}

#[test]
fn without_is_gateway_no_gateway_is_invented() {
    let Some(path) =
        wasm_cni_tests::cni_path_with_reference("without_is_gateway_no_gateway_is_invented")
    else {
        return;
    };
    let Some(mut sb) = Sandbox::for_test("no_invented_gateway") else {
        return;
    };
    let c1 = sb.container("c1");
    // `static` IPAM with no gateway, and a route with none either.
    let cfg = json!({"cniVersion": "1.0.0", "name": "nogw", "type": "bridge", "bridge": "nogwbr",
        "ipam": {"type": "static", "addresses": [{"address": "10.56.0.9/24"}],
                 "routes": [{"dst": "192.168.99.0/24"}]}})
    .to_string();
    let r = sb
        .cni_env(
            "bridge",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &cfg,
            &[("CNI_PATH", &path)],
        )
        .ok()
        .json();
    assert!(r["ips"][0].get("gateway").is_none(), "{r}");
    let route = sb.ip_json("c1", &["route", "show", "192.168.99.0/24"]);
    assert!(route[0].get("gateway").is_none(), "on-link: {route}");
    assert_eq!(route[0]["scope"], "link", "{route}");
    sb.cni_env(
        "bridge",
        "DEL",
        "c1",
        Some(&c1),
        "eth0",
        &cfg,
        &[("CNI_PATH", &path)],
    )
    .ok();
}

#[test]
fn bridge_macs_are_pinned_once() {
    // An unpinned bridge takes its lowest port's MAC, so containers would
    // see their gateway's MAC change; but every pin flushes the bridge's
    // neighbour cache. So: a bridge someone else made is pinned when it is
    // the gateway; one wasm-cni made is pinned at birth, never again.
    let Some(mut sb) = Sandbox::for_test("bridge_macs_pinned_once") else {
        return;
    };
    let (c1, c2, c3) = (sb.container("c1"), sb.container("c2"), sb.container("c3"));
    let assign_type = |sb: &Sandbox, br: &str| {
        let path = format!("/sys/class/net/{br}/addr_assign_type");
        String::from_utf8(sb.run_in("host", &["cat", &path]).stdout)
            .unwrap()
            .trim()
            .to_string()
    };
    // Someone else's bridge, shared with the network: pinned (type 3, "set").
    sb.run_in("host", &["ip", "link", "add", "optbr", "type", "bridge"]);
    sb.use_policy(json!({"version": 1, "sharedBridges": {"optbr": ["opts"]}}));
    assert_eq!(
        assign_type(&sb, "optbr"),
        "1",
        "random, as the kernel made it"
    );
    sb.cni(
        "bridge",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        &conf(json!({"isGateway": true})),
    )
    .ok();
    assert_eq!(assign_type(&sb, "optbr"), "3");
    let pinned = sb.link("host", "optbr").unwrap()["address"].clone();
    sb.cni(
        "bridge",
        "ADD",
        "c2",
        Some(&c2),
        "eth0",
        &conf(json!({"isGateway": true})),
    )
    .ok();
    assert_eq!(
        sb.link("host", "optbr").unwrap()["address"],
        pinned,
        "stable as ports come"
    );

    // wasm-cni's own bridge: a later ADD leaves its neighbour cache alone.
    let own = json!({"cniVersion": "1.0.0", "name": "own", "type": "bridge", "bridge": "ownbr", "isGateway": true,
        "ipam": {"type": "host-local", "subnet": "10.78.0.0/24"}});
    sb.cni("bridge", "ADD", "c1", Some(&c1), "eth1", &own.to_string())
        .ok();
    assert_eq!(assign_type(&sb, "ownbr"), "3", "pinned at birth");
    let neigh = [
        "ip",
        "neigh",
        "add",
        "10.78.0.50",
        "lladdr",
        "02:00:00:00:00:50",
        "dev",
        "ownbr",
        "nud",
        "permanent",
    ];
    assert!(sb.run_in("host", &neigh).status.success());
    sb.cni("bridge", "ADD", "c3", Some(&c3), "eth0", &own.to_string())
        .ok();
    let left = String::from_utf8(
        sb.run_in("host", &["ip", "neigh", "show", "dev", "ownbr"])
            .stdout,
    )
    .unwrap();
    assert!(
        left.contains("10.78.0.50"),
        "the neighbour cache was not flushed: {left:?}"
    );
}

#[test]
fn a_cni0_left_by_the_reference_plugin_is_used_when_the_node_shares_it() {
    // A node switching over: the reference bridge made cni0 (no mark).
    // Naming it in a config is not enough (a config is anyone's, and
    // docker0 looks the same); the node's root shares it in the policy.
    let Some(mut sb) = Sandbox::for_test("reference_cni0") else {
        return;
    };
    let c1 = sb.container("c1");
    sb.run_in("host", &["ip", "link", "add", "cni0", "type", "bridge"]);
    let cfg = json!({"cniVersion": "1.0.0", "name": "dflt", "type": "bridge", "bridge": "cni0",
        "isGateway": true, "ipam": {"type": "host-local", "subnet": "10.79.0.0/24"}})
    .to_string();
    let e = sb
        .cni("bridge", "ADD", "c1", Some(&c1), "eth0", &cfg)
        .err(100);
    assert!(e["msg"].as_str().unwrap().contains("sharedBridges"), "{e}");
    assert!(sb.addresses("host", "cni0").is_empty() && sb.host_veths().is_empty());
    sb.use_policy(json!({"version": 1, "sharedBridges": {"cni0": ["dflt"]}}));
    let r = sb
        .cni("bridge", "ADD", "c1", Some(&c1), "eth0", &cfg)
        .ok()
        .json();
    assert_eq!(r["interfaces"][0]["name"], "cni0");
    assert!(sb.ping("c1", "10.79.0.1"));
}
