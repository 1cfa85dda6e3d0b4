//! The classic bridge + host-local network end to end, in namespaces each
//! test makes and removes (root only).

use serde_json::Value;
use std::fs;
use wasm_cni_tests::{CLASSIC, Sandbox};

#[test]
fn classic_config_two_containers() {
    let Some(mut sb) = Sandbox::for_test("classic_config_two_containers") else {
        return;
    };
    let c1 = sb.container("c1");
    let c2 = sb.container("c2");

    let r1 = sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", CLASSIC);
    r1.ok();
    let r1 = r1.json();
    let r2 = sb
        .cni("bridge", "ADD", "c2", Some(&c2), "eth0", CLASSIC)
        .ok()
        .json();

    // The result, in the 0.3.1 shape the config asked for.
    assert_eq!(r1["cniVersion"], "0.3.1");
    let ifaces = r1["interfaces"].as_array().unwrap();
    assert_eq!(ifaces.len(), 3, "{r1}");
    assert_eq!(ifaces[0]["name"], "mybridge");
    assert!(
        ifaces[1]["name"].as_str().unwrap().starts_with("veth"),
        "{r1}"
    );
    assert_eq!(ifaces[2]["name"], "eth0");
    assert_eq!(ifaces[2]["sandbox"], c1.to_str().unwrap());
    assert_eq!(r1["ips"][0]["version"], "4");
    assert_eq!(r1["ips"][0]["interface"], 2);
    assert_eq!(r1["ips"][0]["address"], "10.244.0.2/16");
    assert_eq!(r1["ips"][0]["gateway"], "10.244.0.1");
    assert_eq!(r2["ips"][0]["address"], "10.244.0.3/16");
    assert_eq!(r1["routes"], serde_json::json!([{"dst": "0.0.0.0/0"}]));
    assert_eq!(r1["dns"], serde_json::json!({}));

    // The kernel agrees.
    let br = sb.link("host", "mybridge").expect("bridge exists");
    assert_eq!(br["linkinfo"]["info_kind"], "bridge");
    assert_eq!(
        br["address"], ifaces[0]["mac"],
        "the reported bridge MAC is the real one"
    );
    assert!(
        sb.addresses("host", "mybridge")
            .contains(&"10.244.0.1/16".to_string())
    );
    for (r, c) in [(&r1, "c1"), (&r2, "c2")] {
        let veth = r["interfaces"][1]["name"].as_str().unwrap();
        let l = sb.link("host", veth).expect("host veth");
        assert_eq!(l["master"], "mybridge");
        assert!(l["flags"].as_array().unwrap().contains(&Value::from("UP")));
        let eth0 = sb.link(c, "eth0").expect("container eth0");
        assert_eq!(eth0["address"], r["interfaces"][2]["mac"]);
        assert_eq!(eth0["operstate"], "UP");
        let routes = sb.ip_json(c, &["route", "show", "default"]);
        assert_eq!(routes[0]["gateway"], "10.244.0.1", "{routes}");
        assert_eq!(routes[0]["dev"], "eth0");
    }
    assert!(
        sb.addresses("c1", "eth0")
            .contains(&"10.244.0.2/16".to_string())
    );
    assert_eq!(sb.sysctl("host", "net.ipv4.ip_forward"), "1");
    // Best effort in the guest, so only this shows the grant for a
    // bridge's `conf` keys works.
    assert_eq!(sb.sysctl("host", "net.ipv6.conf.mybridge.accept_ra"), "0");
    assert_eq!(sb.sysctl("c1", "net.ipv4.conf.eth0.arp_notify"), "1");

    // Traffic: container to gateway, container to container.
    assert!(sb.ping("c1", "10.244.0.1"), "c1 -> gateway");
    assert!(sb.ping("c1", "10.244.0.3"), "c1 -> c2");
    assert!(sb.ping("c2", "10.244.0.2"), "c2 -> c1");

    // Masquerade: one rule per container, commented with its owner.
    let nft = sb.nft();
    assert!(nft.contains("table inet wasm-cni"), "{nft}");
    assert!(
        nft.contains("type nat hook postrouting priority srcnat"),
        "{nft}"
    );
    assert!(
        nft.contains(r#"ip saddr 10.244.0.2 ip daddr != 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade comment "wasm-cni mynet c1 eth0""#),
        "{nft}"
    );
    assert!(nft.contains(r#"comment "wasm-cni mynet c2 eth0""#), "{nft}");

    // host-local's files, byte for byte as the reference writes them.
    let dir = sb.state_dir("mynet");
    assert_eq!(fs::read(dir.join("10.244.0.2")).unwrap(), b"c1\r\neth0");
    assert_eq!(fs::read(dir.join("10.244.0.3")).unwrap(), b"c2\r\neth0");
    assert_eq!(
        fs::read(dir.join("last_reserved_ip.0")).unwrap(),
        b"10.244.0.3"
    );
    assert!(dir.join("lock").is_file());

    // DEL leaves no link, rule or state file; DEL again succeeds.
    for (id, ns) in [("c1", &c1), ("c2", &c2)] {
        sb.cni("bridge", "DEL", id, Some(ns), "eth0", CLASSIC).ok();
        sb.cni("bridge", "DEL", id, Some(ns), "eth0", CLASSIC).ok();
    }
    assert_eq!(sb.host_veths(), Vec::<String>::new());
    assert!(sb.link("c1", "eth0").is_none());
    assert!(
        sb.ip_files("mynet").is_empty(),
        "{:?}",
        sb.ip_files("mynet")
    );
    let nft = sb.nft();
    assert!(!nft.contains("masquerade"), "{nft}");
    // The bridge stays (as in the reference), with its pinned, non-zero MAC.
    let br = sb.link("host", "mybridge").unwrap();
    assert_eq!(br["address"], ifaces[0]["mac"]);
}

#[test]
fn del_after_the_netns_is_gone_still_releases_everything() {
    let Some(mut sb) = Sandbox::for_test("del_after_the_netns_is_gone") else {
        return;
    };
    let c1 = sb.container("c1");
    sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", CLASSIC)
        .ok();
    assert_eq!(sb.ip_files("mynet"), ["10.244.0.2"]);
    sb.remove_container("c1");
    sb.cni("bridge", "DEL", "c1", Some(&c1), "eth0", CLASSIC)
        .ok();
    sb.cni("bridge", "DEL", "c1", None, "eth0", CLASSIC).ok();
    assert!(sb.ip_files("mynet").is_empty());
    assert!(
        !sb.nft().contains("masquerade"),
        "the rule is found by its comment, not the IP"
    );
    assert!(
        sb.host_veths().is_empty(),
        "the host end went with the namespace"
    );
}

#[test]
fn del_with_a_stale_netns_file_still_releases_everything() {
    let Some(mut sb) = Sandbox::for_test("del_with_a_stale_netns_file") else {
        return;
    };
    let c1 = sb.container("c1");
    sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", CLASSIC)
        .ok();
    sb.remove_container("c1");
    // What a torn-down sandbox often leaves: its netns path, unmounted.
    let stale = tempfile::NamedTempFile::new().unwrap();
    sb.cni("bridge", "DEL", "c1", Some(stale.path()), "eth0", CLASSIC)
        .ok();
    assert!(sb.ip_files("mynet").is_empty());
    assert_eq!(sb.masquerade_rules(), 0);
    // ADD still refuses it, with the environment error.
    let e = sb
        .cni("bridge", "ADD", "c2", Some(stale.path()), "eth0", CLASSIC)
        .err(4);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("not a usable network namespace"),
        "{e}"
    );
}

#[test]
fn two_attachments_of_one_container_are_separate() {
    // The spec's attachment key is (container id, network, ifname): a DEL
    // of eth1 must leave eth0's address and masquerade rule alone.
    let Some(mut sb) = Sandbox::for_test("two_attachments") else {
        return;
    };
    let c1 = sb.container("c1");
    sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", CLASSIC)
        .ok();
    sb.cni("bridge", "ADD", "c1", Some(&c1), "eth1", CLASSIC)
        .ok();
    let nft = sb.nft();
    assert!(
        nft.contains(r#"comment "wasm-cni mynet c1 eth0""#)
            && nft.contains(r#"comment "wasm-cni mynet c1 eth1""#),
        "{nft}"
    );
    sb.cni("bridge", "DEL", "c1", Some(&c1), "eth1", CLASSIC)
        .ok();
    assert_eq!(sb.ip_files("mynet"), ["10.244.0.2"]);
    assert_eq!(sb.masquerade_rules(), 1);
    assert!(sb.nft().contains(r#"comment "wasm-cni mynet c1 eth0""#));
    assert!(sb.ping("c1", "10.244.0.1"));
}

#[test]
fn del_when_add_never_ran_succeeds() {
    let Some(mut sb) = Sandbox::for_test("del_when_add_never_ran") else {
        return;
    };
    let c1 = sb.container("c1");
    sb.cni("bridge", "DEL", "never", Some(&c1), "eth0", CLASSIC)
        .ok();
    assert!(sb.ip_files("mynet").is_empty());
}

#[test]
fn add_of_an_existing_interface_fails_and_changes_nothing() {
    let Some(mut sb) = Sandbox::for_test("add_of_an_existing_interface") else {
        return;
    };
    let c1 = sb.container("c1");
    sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", CLASSIC)
        .ok();
    let e = sb
        .cni("bridge", "ADD", "c1-again", Some(&c1), "eth0", CLASSIC)
        .err(100);
    assert!(e["msg"].as_str().unwrap().contains("eth0"), "{e}");
    assert_eq!(
        sb.ip_files("mynet"),
        ["10.244.0.2"],
        "no second address leaked"
    );
    assert_eq!(sb.host_veths().len(), 1);
    assert_eq!(sb.nft().matches("masquerade comment").count(), 1);
}
