//! The reference bridge's options beyond the classic config (v1.7.1):
//! VLANs (access, trunk ranges, the default VLAN, the `<bridge>.<vid>`
//! gateway), MAC spoof checking, port isolation, a container interface
//! left down, enhanced DAD, `ipMasqBackend`, and promiscuous mode in CHECK.
//! Where the option is about traffic, traffic shows it.

use serde_json::{Value, json};
use wasm_cni_tests::{NodeState, Sandbox};

fn conf(network: &str, bridge: &str, subnet: &str, extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.1.0", "name": network, "type": "bridge", "bridge": bridge,
        "ipam": {"type": "host-local", "subnet": subnet}});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn add(sb: &mut Sandbox, id: &str, cfg: &Value) -> Value {
    let ns = sb.container(id);
    sb.cni("bridge", "ADD", id, Some(&ns), "eth0", &cfg.to_string())
        .ok()
        .json()
}

fn address_of(result: &Value) -> String {
    result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// `bridge -j vlan show dev PORT`: (vid, vidEnd, flags) per entry.
fn port_vlans(sb: &Sandbox, port: &str) -> Vec<(u64, u64, Vec<String>)> {
    let out = sb.run_in("host", &["bridge", "-j", "vlan", "show", "dev", port]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(json!([]));
    let mut vlans = Vec::new();
    for port in v.as_array().cloned().unwrap_or_default() {
        for e in port["vlans"].as_array().cloned().unwrap_or_default() {
            let vid = e["vlan"].as_u64().unwrap();
            let end = e["vlanEnd"].as_u64().unwrap_or(vid);
            let mut flags: Vec<String> = e["flags"]
                .as_array()
                .map(|f| f.iter().map(|x| x.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            flags.sort();
            vlans.push((vid, end, flags));
        }
    }
    vlans
}

/// Whether this kernel filters bridge traffic by VLAN
/// (CONFIG_BRIDGE_VLAN_FILTERING; the CI VMs' kernels lack it), probed in
/// the sandbox's own namespace. Without it, the test checks instead that a
/// VLAN config fails cleanly, saying why, and leaves the node as it was.
fn vlans_supported(sb: &mut Sandbox, test: &str, cfg: &Value) -> bool {
    let probe = [
        "ip",
        "link",
        "add",
        "vlprobe",
        "type",
        "bridge",
        "vlan_filtering",
        "1",
    ];
    if sb.run_in("host", &probe).status.success() {
        sb.run_in("host", &["ip", "link", "del", "vlprobe"]);
        return true;
    }
    eprintln!(
        "SKIPPED {test}: this kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING); checking that a VLAN config fails cleanly instead"
    );
    let ns = sb.container("novlan");
    let before = NodeState::take(sb);
    let e = sb
        .cni(
            "bridge",
            "ADD",
            "novlan",
            Some(&ns),
            "eth0",
            &cfg.to_string(),
        )
        .err(100);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("CONFIG_BRIDGE_VLAN_FILTERING"),
        "{e}"
    );
    assert!(sb.link("novlan", "eth0").is_none());
    before.assert_unchanged(
        &NodeState::take(sb),
        "a VLAN config on a kernel without VLANs",
    );
    false
}

fn host_port(result: &Value) -> String {
    result["interfaces"][1]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn containers_on_one_vlan_reach_each_other_and_not_another_vlan() {
    let Some(mut sb) = Sandbox::for_test("vlan_traffic") else {
        return;
    };
    let v100 = conf("vl", "vlbr", "10.90.0.0/24", json!({"vlan": 100}));
    let v200 = conf("vl", "vlbr", "10.90.0.0/24", json!({"vlan": 200}));
    if !vlans_supported(&mut sb, "vlan_traffic", &v100) {
        return;
    }
    let a = add(&mut sb, "a", &v100);
    let b = add(&mut sb, "b", &v100);
    let c = add(&mut sb, "c", &v200);
    let br = sb.link("host", "vlbr").unwrap();
    assert_eq!(
        br["linkinfo"]["info_data"]["vlan_filtering"], 1,
        "a new bridge filters by VLAN: {br}"
    );
    assert_eq!(
        port_vlans(&sb, &host_port(&a)),
        [
            (1, 1, vec!["Egress Untagged".to_string()]),
            (100, 100, vec!["Egress Untagged".into(), "PVID".into()])
        ],
        "access VLAN 100, and VLAN 1 kept (preserveDefaultVlan)"
    );
    assert!(sb.ping("a", &address_of(&b)), "same VLAN");
    assert!(!sb.ping("a", &address_of(&c)), "another VLAN");
    for (id, cfg) in [("a", &v100), ("b", &v100), ("c", &v200)] {
        let ns = sb.ns_path(id);
        sb.cni("bridge", "DEL", id, Some(&ns), "eth0", &cfg.to_string())
            .ok();
    }
    assert!(sb.host_veths().is_empty());
}

#[test]
fn trunk_ranges_and_the_default_vlan() {
    let Some(mut sb) = Sandbox::for_test("vlan_trunk") else {
        return;
    };
    let trunk = json!([{"minID": 101, "maxID": 103}, {"id": 200}, {"id": 102}]);
    // The reference's validation, as code 7, leaving nothing (any kernel).
    let c = sb.container("c");
    let before = NodeState::take(&sb);
    for (extra, msg) in [
        (json!({"vlan": 5000}), "invalid VLAN ID 5000"),
        (json!({"vlan": -1}), "invalid VLAN ID -1"),
        (json!({"vlanTrunk": [{"minID": 5}]}), "maxID is missing"),
        (json!({"vlanTrunk": [{"maxID": 5}]}), "minID is missing"),
        (
            json!({"vlanTrunk": [{"minID": 9, "maxID": 5}]}),
            "minID is greater",
        ),
        (json!({"vlanTrunk": [{"id": 4095}]}), "incorrect trunk id"),
        (
            json!({"vlan": 5, "vlanTrunk": [{"id": 6}]}),
            "at the same time",
        ),
    ] {
        let cfg = conf("tr", "trbr", "10.92.0.0/24", extra.clone()).to_string();
        let e = sb.cni("bridge", "ADD", "c", Some(&c), "eth0", &cfg).err(7);
        assert!(e["msg"].as_str().unwrap().contains(msg), "{extra}: {e}");
    }
    before.assert_unchanged(&NodeState::take(&sb), "refused VLAN configs");
    let trunked = conf("tr", "trbr", "10.92.0.0/24", json!({"vlanTrunk": trunk}));
    if !vlans_supported(&mut sb, "vlan_trunk", &trunked) {
        return;
    }
    let kept = add(
        &mut sb,
        "a",
        &conf("tr", "trbr", "10.92.0.0/24", json!({"vlanTrunk": trunk})),
    );
    let tagged = Vec::<String>::new;
    assert_eq!(
        port_vlans(&sb, &host_port(&kept)),
        [
            (1, 1, vec!["Egress Untagged".to_string(), "PVID".into()]),
            (101, 103, tagged()),
            (200, 200, tagged()),
        ]
    );
    let dropped = add(
        &mut sb,
        "b",
        &conf(
            "tr",
            "trbr",
            "10.92.0.0/24",
            json!({"vlanTrunk": trunk, "preserveDefaultVlan": false}),
        ),
    );
    assert_eq!(
        port_vlans(&sb, &host_port(&dropped)),
        [(101, 103, tagged()), (200, 200, tagged())],
        "preserveDefaultVlan false removes VLAN 1"
    );
}

#[test]
fn a_vlan_gateway_lives_on_bridge_dot_vid() {
    let Some(mut sb) = Sandbox::for_test("vlan_gateway") else {
        return;
    };
    let cfg = conf(
        "vg",
        "vgbr",
        "10.91.0.0/24",
        json!({"vlan": 100, "isGateway": true, "preserveDefaultVlan": false}),
    );
    if !vlans_supported(&mut sb, "vlan_gateway", &cfg) {
        return;
    }
    let a = add(&mut sb, "a", &cfg);
    let gw = sb.link("host", "vgbr.100").expect("vgbr.100 exists");
    assert_eq!(gw["linkinfo"]["info_kind"], "veth", "{gw}");
    assert_eq!(sb.addresses("host", "vgbr.100"), ["10.91.0.1/24"]);
    assert!(
        sb.addresses("host", "vgbr").is_empty(),
        "the gateway is not on the bridge"
    );
    let names: Vec<&str> = a["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[3], "vgbr.100", "{a}");
    // Its peer is a port of the bridge, in VLAN 100 only.
    let peer = sb
        .links("host")
        .into_iter()
        .find(|l| l["master"] == "vgbr" && l["ifname"] != a["interfaces"][1]["name"])
        .unwrap();
    assert_eq!(
        port_vlans(&sb, peer["ifname"].as_str().unwrap()),
        [(100, 100, vec!["Egress Untagged".to_string(), "PVID".into()])]
    );
    assert!(sb.ping("a", "10.91.0.1"));
    // The next pod finds it as it is.
    add(&mut sb, "b", &cfg);
    assert!(sb.ping("b", "10.91.0.1"));
    assert_eq!(
        sb.links("host")
            .iter()
            .filter(|l| l["ifname"].as_str().unwrap().starts_with("vgbr."))
            .count(),
        1
    );
}

#[test]
fn a_container_that_changes_its_mac_can_no_longer_send() {
    let Some(mut sb) = Sandbox::for_test("macspoofchk") else {
        return;
    };
    let cfg = conf(
        "spoof",
        "spbr",
        "10.93.0.0/24",
        json!({"macspoofchk": true}),
    );
    add(&mut sb, "a", &cfg);
    let b = add(&mut sb, "b", &cfg);
    assert!(sb.ping("a", &address_of(&b)));
    assert!(sb.nft().contains("wasm-cni spoof a eth0"), "{}", sb.nft());
    let out = sb.run_in(
        "a",
        &["ip", "link", "set", "eth0", "address", "02:00:00:00:00:99"],
    );
    assert!(out.status.success());
    sb.run_in("a", &["ip", "neigh", "flush", "all"]);
    assert!(!sb.ping("a", &address_of(&b)), "spoofed frames are dropped");
    // DEL takes the rule with it.
    let ns = sb.ns_path("a");
    sb.cni("bridge", "DEL", "a", Some(&ns), "eth0", &cfg.to_string())
        .ok();
    assert!(!sb.nft().contains("wasm-cni spoof a eth0"), "{}", sb.nft());
    assert!(sb.nft().contains("wasm-cni spoof b eth0"));
}

#[test]
fn gc_removes_the_spoof_checks_of_stale_attachments() {
    let Some(mut sb) = Sandbox::for_test("gc_spoof") else {
        return;
    };
    let cfg = conf("gcs", "gcsbr", "10.94.0.0/24", json!({"macspoofchk": true}));
    add(&mut sb, "live", &cfg);
    add(&mut sb, "gone", &cfg);
    let mut gc = cfg.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "live", "ifname": "eth0"}]);
    sb.cni("bridge", "GC", "", None, "", &gc.to_string()).ok();
    let nft = sb.nft();
    assert!(nft.contains("wasm-cni gcs live eth0"), "{nft}");
    assert!(!nft.contains("wasm-cni gcs gone eth0"), "{nft}");
    assert_eq!(sb.ip_files("gcs").len(), 1);
}

#[test]
fn isolated_ports_reach_the_gateway_but_not_each_other() {
    let Some(mut sb) = Sandbox::for_test("port_isolation") else {
        return;
    };
    let cfg = conf(
        "iso",
        "isobr",
        "10.95.0.0/24",
        json!({"portIsolation": true, "isGateway": true}),
    );
    let a = add(&mut sb, "a", &cfg);
    let b = add(&mut sb, "b", &cfg);
    let port = sb.link("host", &host_port(&a)).unwrap();
    assert_eq!(
        port["linkinfo"]["info_slave_data"]["isolated"], true,
        "{port}"
    );
    assert!(sb.ping("a", "10.95.0.1"), "the gateway");
    assert!(sb.ping("b", "10.95.0.1"));
    assert!(!sb.ping("a", &address_of(&b)), "not each other");
}

#[test]
fn a_disabled_container_interface_stays_down_and_needs_no_ipam() {
    let Some(mut sb) = Sandbox::for_test("disable_container_if") else {
        return;
    };
    let l2 = json!({"cniVersion": "1.0.0", "name": "dis", "type": "bridge", "bridge": "disbr",
        "disableContainerInterface": true, "ipam": {}});
    add(&mut sb, "a", &l2);
    let eth0 = sb.link("a", "eth0").unwrap();
    assert!(
        !eth0["flags"].as_array().unwrap().contains(&json!("UP")),
        "{eth0}"
    );
    let c = sb.container("b");
    let mut with_ipam = l2.clone();
    with_ipam["ipam"] = json!({"type": "host-local", "subnet": "10.96.0.0/24"});
    let e = sb
        .cni(
            "bridge",
            "ADD",
            "b",
            Some(&c),
            "eth0",
            &with_ipam.to_string(),
        )
        .err(7);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("DisableContainerInterface"),
        "{e}"
    );
    assert!(sb.link("b", "eth0").is_none());
}

#[test]
fn enabledad_turns_on_enhanced_dad_in_the_container() {
    let Some(mut sb) = Sandbox::for_test("enhanced_dad") else {
        return;
    };
    let cfg = conf("dad", "dadbr", "fd97::/64", json!({"enabledad": true}));
    add(&mut sb, "a", &cfg);
    assert_eq!(sb.sysctl("a", "net.ipv6.conf.eth0.enhanced_dad"), "1");
    assert_eq!(sb.sysctl("a", "net.ipv6.conf.eth0.accept_dad"), "1");
    let cfg = conf("dad", "dadbr", "fd97::/64", json!({}));
    add(&mut sb, "b", &cfg);
    assert_eq!(sb.sysctl("b", "net.ipv6.conf.eth0.accept_dad"), "0");
}

#[test]
fn ip_masq_backend_is_iptables_or_nftables_and_wasm_cni_uses_its_own_table() {
    let Some(mut sb) = Sandbox::for_test("ip_masq_backend") else {
        return;
    };
    for (id, backend) in [("a", "iptables"), ("b", "nftables")] {
        let cfg = conf(
            "mb",
            "mbbr",
            "10.98.0.0/24",
            json!({"ipMasq": true, "ipMasqBackend": backend}),
        );
        add(&mut sb, id, &cfg);
        assert!(
            sb.nft().contains(&format!("wasm-cni mb {id} eth0")),
            "{}",
            sb.nft()
        );
    }
    let c = sb.container("c");
    let before = NodeState::take(&sb);
    let cfg = conf(
        "mb",
        "mbbr",
        "10.98.0.0/24",
        json!({"ipMasq": true, "ipMasqBackend": "pf"}),
    );
    let e = sb
        .cni("bridge", "ADD", "c", Some(&c), "eth0", &cfg.to_string())
        .err(7);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("unknown ipmasq backend \"pf\""),
        "{e}"
    );
    before.assert_unchanged(&NodeState::take(&sb), "an invalid ipMasqBackend");
}

#[test]
fn check_compares_the_bridges_promiscuous_mode() {
    let Some(mut sb) = Sandbox::for_test("check_promisc") else {
        return;
    };
    let cfg = conf("pr", "prbr", "10.99.0.0/24", json!({"promiscMode": true}));
    let r = add(&mut sb, "a", &cfg);
    let mut check = cfg.clone();
    check["prevResult"] = r;
    let ns = sb.ns_path("a");
    sb.cni(
        "bridge",
        "CHECK",
        "a",
        Some(&ns),
        "eth0",
        &check.to_string(),
    )
    .ok();
    sb.run_in("host", &["ip", "link", "set", "prbr", "promisc", "off"]);
    let e = sb
        .cni(
            "bridge",
            "CHECK",
            "a",
            Some(&ns),
            "eth0",
            &check.to_string(),
        )
        .err(100);
    assert!(
        e["msg"].as_str().unwrap().contains("Promisc Mode true"),
        "{e}"
    );
    check["promiscMode"] = json!(false);
    sb.cni(
        "bridge",
        "CHECK",
        "a",
        Some(&ns),
        "eth0",
        &check.to_string(),
    )
    .ok();
}
