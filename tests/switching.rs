//! Switching a node from the reference plugins to wasm-cni with pods
//! running: a DEL by wasm-cni removes what the reference made for the
//! attachment (its iptables chain and jump, its `cni_plugins_masquerade`
//! rules) and never refuses a config for its options or a prevResult it
//! cannot read; and `CNI_NETNS` naming the node's own namespace is code 8.

use serde_json::{Value, json};
use std::path::Path;
use wasm_cni::kernel::reference;
use wasm_cni_tests::sandbox::run_with_stdin;
use wasm_cni_tests::{CniOutput, NodeState, Sandbox, reference_plugins};

/// Run the reference bridge (Debian's 1.1.1, iptables masquerade) in the
/// sandbox, with its own host-local from `/usr/lib/cni`.
fn reference_bridge(sb: &Sandbox, command: &str, id: &str, netns: &Path, cfg: &str) -> CniOutput {
    let mut c = sb.command(&["/usr/lib/cni/bridge"]);
    c.env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni");
    run_with_stdin(c, cfg)
}

/// `iptables -t nat -S` in the sandbox's host namespace (v4 and v6).
fn nat_rules(sb: &Sandbox) -> String {
    let mut out = String::new();
    for program in ["iptables", "ip6tables"] {
        let o = sb.run_in("host", &[program, "-w", "-t", "nat", "-S"]);
        out.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    out
}

#[test]
fn a_pod_added_by_the_reference_is_deleted_by_wasm_cni_leaving_nothing() {
    if reference_plugins().is_none() {
        eprintln!("SKIPPED: no reference plugins in /usr/lib/cni (tests/setup.sh --interop)");
        return;
    }
    let Some(mut sb) = Sandbox::for_test("reference_add_wasm_del") else {
        return;
    };
    let c1 = sb.container("c1");
    let c2 = sb.container("c2");
    let cfg = json!({"cniVersion": "0.4.0", "name": "switch", "type": "bridge", "bridge": "swbr",
        "isGateway": true, "ipMasq": true,
        "ipam": {"type": "host-local", "subnet": "10.81.0.0/24"}});
    let add1 = reference_bridge(&sb, "ADD", "pod1", &c1, &cfg.to_string());
    add1.ok();
    reference_bridge(&sb, "ADD", "pod2", &c2, &cfg.to_string()).ok();
    let chain1 = reference::chain_name("switch", "pod1");
    let chain2 = reference::chain_name("switch", "pod2");
    let before = nat_rules(&sb);
    assert!(before.contains(&format!("-N {chain1}")), "{before}");
    assert!(before.contains(&format!("-j {chain1}")), "{before}");
    assert_eq!(sb.ip_files("switch").len(), 2);

    // DEL as the runtime sends it after the switch: wasm-cni installed as
    // `bridge`, the cached result of the reference's ADD as prevResult.
    let mut del = cfg.clone();
    del["prevResult"] = add1.json();
    sb.cni("bridge", "DEL", "pod1", Some(&c1), "eth0", &del.to_string())
        .ok();
    let after = nat_rules(&sb);
    assert!(
        !after.contains(&chain1),
        "pod1's chain and jump went: {after}"
    );
    assert!(
        after.contains(&format!("-N {chain2}")) && after.contains(&format!("-j {chain2}")),
        "pod2's stayed: {after}"
    );
    assert!(sb.link("c1", "eth0").is_none());
    assert_eq!(sb.ip_files("switch").len(), 1, "pod1's address released");
    assert_eq!(sb.host_veths().len(), 1);
    // Repeated, and with the namespace gone: still nothing to fail on.
    sb.remove_container("c1");
    sb.cni("bridge", "DEL", "pod1", None, "eth0", &del.to_string())
        .ok();
    // pod2 still reaches its gateway through the reference's bridge.
    assert!(sb.ping("c2", "10.81.0.1"));
}

#[test]
fn the_attachments_rules_in_cni_plugins_masquerade_are_removed() {
    let Some(sb) = Sandbox::for_test("cni_plugins_masquerade") else {
        return;
    };
    // The table as containernetworking/plugins v1.7.1 (nftables backend)
    // builds it, for two pods of one network and one of another.
    let comment = |net: &str, id: &str| {
        format!(
            "{}, net: {net}, if: eth0, id: {id}",
            reference::nft_instance_hash(net, "eth0", id)
        )
    };
    let ruleset = format!(
        r#"table inet cni_plugins_masquerade {{
  comment "Masquerading for plugins from github.com/containernetworking/plugins"
  chain masq_checks {{
    comment "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet"
    ip saddr 10.82.0.5 ip daddr != 10.82.0.0/24 masquerade comment "{}"
    ip saddr 10.82.0.6 ip daddr != 10.82.0.0/24 masquerade comment "{}"
    ip saddr 10.83.0.5 ip daddr != 10.83.0.0/24 masquerade comment "{}"
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    ip daddr 224.0.0.0/4 return
    ip6 daddr ff00::/8 return
    goto masq_checks
  }}
}}
"#,
        comment("nfnet", "pod1"),
        comment("nfnet", "pod2"),
        comment("other", "pod1"),
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), ruleset).unwrap();
    let out = sb.run_in("host", &["nft", "-f", file.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = json!({"cniVersion": "1.0.0", "name": "nfnet", "type": "bridge", "bridge": "nfbr",
        "ipMasq": true, "ipMasqBackend": "nftables",
        "ipam": {"type": "host-local", "subnet": "10.82.0.0/24"}});
    sb.cni("bridge", "DEL", "pod1", None, "eth0", &cfg.to_string())
        .ok();
    let nft = sb.nft();
    assert!(!nft.contains(&comment("nfnet", "pod1")), "{nft}");
    assert!(nft.contains(&comment("nfnet", "pod2")), "{nft}");
    assert!(nft.contains(&comment("other", "pod1")), "{nft}");
    assert!(
        nft.contains("goto masq_checks"),
        "the reference's chains stay: {nft}"
    );
}

#[test]
fn del_never_refuses_a_config_for_its_options_or_an_unreadable_prev_result() {
    let Some(mut sb) = Sandbox::for_test("del_tolerant") else {
        return;
    };
    let c1 = sb.container("c1");
    let cfg = json!({"cniVersion": "1.0.0", "name": "tol", "type": "bridge", "bridge": "tolbr",
        "isGateway": true, "ipMasq": true,
        "ipam": {"type": "host-local", "subnet": "10.84.0.0/24"}});
    sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", &cfg.to_string())
        .ok();
    // What ADD would refuse, and a cached result nobody can decode.
    let mut del: Value = cfg.clone();
    for (k, v) in [
        ("vlan", json!(99999)),
        ("mtu", json!("big")),
        ("ipMasqBackend", json!("pf")),
        ("hairpinMode", json!(true)),
        ("promiscMode", json!(true)),
        ("prevResult", json!({"ips": [{"address": "bogus"}]})),
    ] {
        del[k] = v;
    }
    sb.cni("bridge", "DEL", "c1", Some(&c1), "eth0", &del.to_string())
        .ok();
    assert!(sb.link("c1", "eth0").is_none());
    assert!(sb.ip_files("tol").is_empty());
    assert_eq!(sb.masquerade_rules(), 0);
    assert!(sb.host_veths().is_empty());
    // The node's policy still holds on DEL: no store outside its roots.
    let mut outside = cfg.clone();
    outside["ipam"]["dataDir"] = json!("/tmp/elsewhere");
    sb.cni(
        "bridge",
        "DEL",
        "c1",
        Some(&c1),
        "eth0",
        &outside.to_string(),
    )
    .err(7);
}

#[test]
fn cni_netns_naming_the_nodes_own_namespace_is_code_8_and_changes_nothing() {
    let Some(sb) = Sandbox::for_test("netns_is_the_node") else {
        return;
    };
    let node = sb.ns_path("host");
    let before = NodeState::take(&sb);
    for command in ["ADD", "CHECK", "DEL"] {
        let e = sb
            .cni(
                "bridge",
                command,
                "c1",
                Some(&node),
                "eth0",
                wasm_cni_tests::CLASSIC.replace("0.3.1", "1.0.0").as_str(),
            )
            .err(8);
        assert!(
            e["msg"]
                .as_str()
                .unwrap()
                .contains("should not be the same"),
            "{command}: {e}"
        );
    }
    assert_eq!(NodeState::take(&sb), before);
}

#[test]
fn a_chain_another_attachment_shares_by_hash_is_left_alone() {
    let Some(sb) = Sandbox::for_test("reference_chain_collision") else {
        return;
    };
    // The reference hashes network + container id with no separator:
    // ("ab", "c") and ("a", "bc") name the same chain. The chain and jump
    // belong to ("ab", "c"); a DEL of ("a", "bc") must not touch them.
    let chain = reference::chain_name("ab", "c");
    assert_eq!(chain, reference::chain_name("a", "bc"));
    let comment = reference::iptables_comment("ab", "c");
    for args in [
        vec!["-N", chain.as_str()],
        vec![
            "-A",
            &chain,
            "-d",
            "10.86.0.0/24",
            "-j",
            "ACCEPT",
            "-m",
            "comment",
            "--comment",
            &comment,
        ],
        vec![
            "-A",
            &chain,
            "!",
            "-d",
            "224.0.0.0/4",
            "-j",
            "MASQUERADE",
            "-m",
            "comment",
            "--comment",
            &comment,
        ],
        vec![
            "-A",
            "POSTROUTING",
            "-s",
            "10.86.0.5",
            "-j",
            &chain,
            "-m",
            "comment",
            "--comment",
            &comment,
        ],
    ] {
        let mut argv = vec!["iptables", "-w", "-t", "nat"];
        argv.extend(args);
        let out = sb.run_in("host", &argv);
        assert!(
            out.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let before = nat_rules(&sb);
    let cfg = json!({"cniVersion": "1.0.0", "name": "a", "type": "bridge", "bridge": "abr",
        "ipam": {"type": "host-local", "subnet": "10.86.0.0/24"}});
    sb.cni("bridge", "DEL", "bc", None, "eth0", &cfg.to_string())
        .ok();
    assert_eq!(
        nat_rules(&sb),
        before,
        "the other attachment's chain is intact"
    );
}

#[test]
fn a_del_looks_only_where_the_reference_left_something_for_its_pod() {
    let Some(mut sb) = Sandbox::for_test("reference_nowhere") else {
        return;
    };
    let c1 = sb.container("c1");
    let cfg = json!({"cniVersion": "1.0.0", "name": "nowhere", "type": "bridge", "bridge": "nwbr",
        "isGateway": true, "ipMasq": true,
        "ipam": {"type": "host-local", "subnet": "10.87.0.0/24"}});
    // The reference ran here for another pod: its `nat` table and that
    // pod's chain exist, and its nftables backend's table too.
    let other = reference::chain_name("nowhere", "other-pod");
    for args in [
        vec!["iptables", "-w", "-t", "nat", "-N", other.as_str()],
        vec![
            "nft",
            "add table inet cni_plugins_masquerade; add chain inet cni_plugins_masquerade masq_checks",
        ],
    ] {
        let out = sb.run_in("host", &args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    // ADD, then DEL with the debug log: what the DEL said.
    let add_del = |sb: &Sandbox, id: &str, netns: &Path| {
        sb.cni("bridge", "ADD", id, Some(netns), "eth0", &cfg.to_string())
            .ok();
        let del = sb.cni_env(
            "bridge",
            "DEL",
            id,
            Some(netns),
            "eth0",
            &cfg.to_string(),
            &[("WASM_CNI_LOG", "debug")],
        );
        del.ok();
        del.stderr
    };
    // Not in iptables (no chain of this pod's) and not in nft's table
    // (its chain is there: its rules are looked at, no process for
    // iptables).
    let said = add_del(&sb, "c1", &c1);
    assert!(
        said.contains("reference cleanup: looking in Present { v4: false, v6: false, nft: true }"),
        "{said}"
    );
    // A node the reference never ran on: nowhere.
    let mut clean = Sandbox::for_test("reference_nowhere_clean").unwrap();
    let c2 = clean.container("c2");
    let said = add_del(&clean, "c2", &c2);
    assert!(
        said.contains("reference cleanup: nothing of the reference's here"),
        "{said}"
    );
    // What was there stays.
    assert!(nat_rules(&sb).contains(&format!("-N {other}")));
    assert!(sb.nft().contains("masq_checks"));
}
