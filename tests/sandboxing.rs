//! A misbehaving guest cannot hurt the node: it is stopped, refused or
//! contained, and what it did is undone.

use serde_json::json;
use std::time::{Duration, Instant};
use wasm_cni_tests::Sandbox;

fn misbehave(behave: &str) -> String {
    json!({"cniVersion": "1.0.0", "name": "bad", "type": "misbehave", "behave": behave,
        "ipam": {"type": "host-local", "subnet": "10.44.0.0/24"}})
    .to_string()
}

#[test]
fn an_endless_loop_is_stopped_by_fuel() {
    let Some(mut sb) = Sandbox::for_test("an_endless_loop_is_stopped_by_fuel") else {
        return;
    };
    let c1 = sb.container("c1");
    let start = Instant::now();
    let e = sb
        .cni(
            "misbehave",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &misbehave("spin"),
        )
        .err(100);
    assert!(
        e["msg"].as_str().unwrap().contains("ran out of fuel"),
        "{e}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "stopped in {:?}",
        start.elapsed()
    );
}

#[test]
fn a_trap_halfway_through_add_is_undone() {
    let Some(mut sb) = Sandbox::for_test("a_trap_halfway_through_add_is_undone") else {
        return;
    };
    let c1 = sb.container("c1");
    let e = sb
        .cni(
            "misbehave",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &misbehave("trap-after-veth"),
        )
        .err(100);
    assert!(e["msg"].as_str().unwrap().contains("trapped"), "{e}");
    let details = e["details"].as_str().unwrap();
    assert!(
        details.contains("deliberate trap"),
        "the guest's panic message is kept: {e}"
    );
    assert!(
        details.contains("misbehave.wasm!"),
        "with the guest's backtrace: {e}"
    );
    assert!(
        sb.link("c1", "eth0").is_none(),
        "the veth it created was deleted"
    );
    assert!(sb.host_veths().is_empty());
    assert!(
        sb.ip_files("bad").is_empty(),
        "the address it allocated was released"
    );
}

#[test]
fn a_sleeping_guest_is_stopped_at_the_deadline_and_undone() {
    let Some(mut sb) = Sandbox::for_test("a_sleeping_guest_is_stopped_at_the_deadline") else {
        return;
    };
    let c1 = sb.container("c1");
    let start = Instant::now();
    let out = sb.cni_env(
        "misbehave",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        &misbehave("sleep-halfway"),
        &[("WASM_CNI_TIMEOUT", "2")],
    );
    let e = out.err(100);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("did not finish in time"),
        "{e}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "stopped after {:?}",
        start.elapsed()
    );
    assert!(sb.link("c1", "eth0").is_none(), "its veth was deleted");
    assert!(sb.host_veths().is_empty());
    assert!(
        sb.ip_files("bad").is_empty(),
        "its address was released, with time of its own"
    );
}

#[test]
fn a_timed_out_add_releases_a_native_ipam_address_with_time_of_its_own() {
    // With a native IPAM plugin the cleanup DEL is a process that takes
    // real time: it must not inherit the ADD's spent deadline.
    let Some(reference) = wasm_cni_tests::reference_plugins() else {
        eprintln!("SKIPPED a_timed_out_add_releases_a_native_ipam_address: no reference plugins");
        return;
    };
    let Some(mut sb) = Sandbox::for_test("native_timeout") else {
        return;
    };
    sb.use_policy(json!({"version": 1, "ipamPlugins": ["ref-host-local"]}));
    let c1 = sb.container("c1");
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        reference.join("host-local"),
        bin.path().join("ref-host-local"),
    )
    .unwrap();
    let cfg = json!({"cniVersion": "1.0.0", "name": "bad", "type": "misbehave", "behave": "sleep-halfway",
        "ipam": {"type": "ref-host-local", "subnet": "10.44.0.0/24"}})
    .to_string();
    let path = bin.path().to_str().unwrap().to_string();
    let out = sb.cni_env(
        "misbehave",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        &cfg,
        &[("WASM_CNI_TIMEOUT", "2"), ("CNI_PATH", &path)],
    );
    let e = out.err(100);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("did not finish in time"),
        "{e}"
    );
    assert!(
        sb.ip_files("bad").is_empty(),
        "the Go host-local's reservation was released: {:?}",
        sb.ip_files("bad")
    );
    assert!(sb.link("c1", "eth0").is_none());
}

#[test]
fn memory_is_bounded() {
    let Some(mut sb) = Sandbox::for_test("memory_is_bounded") else {
        return;
    };
    let c1 = sb.container("c1");
    let e = sb
        .cni(
            "misbehave",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &misbehave("memory"),
        )
        .err(100);
    assert!(e["msg"].as_str().unwrap().contains("64 MiB"), "{e}");
}

#[test]
fn the_node_outside_the_grant_is_denied() {
    let Some(mut sb) = Sandbox::for_test("the_node_outside_the_grant_is_denied") else {
        return;
    };
    let c1 = sb.container("c1");
    // The node's uplink, and a LAN bridge that is not this network's, as
    // far as this sandbox's host namespace goes.
    for cmd in [
        &[
            "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p",
        ][..],
        &["ip", "link", "add", "br0", "type", "bridge"],
    ] {
        let made = sb.run_in("host", cmd);
        assert!(made.status.success(), "{made:?}");
    }
    let forwarding = sb.sysctl("host", "net.ipv4.ip_forward");
    for behave in [
        "uplink",
        "host-sysctl",
        "host-route",
        "rogue-address",
        "rogue-masquerade",
        "foreign-bridge",
        "forwarding-off",
    ] {
        let e = sb
            .cni(
                "misbehave",
                "ADD",
                "c1",
                Some(&c1),
                "eth0",
                &misbehave(behave),
            )
            .err(100);
        assert!(
            e["msg"].as_str().unwrap().contains("denied"),
            "{behave}: {e}"
        );
        // And what it did before it was refused is undone.
        assert!(sb.link("c1", "eth0").is_none(), "{behave}");
        assert!(
            sb.ip_files("bad").is_empty(),
            "{behave}: {:?}",
            sb.ip_files("bad")
        );
    }
    assert_eq!(sb.link("host", "uplink0").unwrap()["mtu"], 1500);
    assert_eq!(
        sb.sysctl("host", "net.ipv4.conf.all.rp_filter"),
        sb.sysctl("host", "net.ipv4.conf.default.rp_filter")
    );
    assert_eq!(sb.sysctl("host", "net.ipv4.ip_forward"), forwarding);
    assert!(
        sb.ip_json("host", &["route", "show", "169.254.169.254"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        sb.ip_json("host", &["addr", "show", "to", "169.254.169.254"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(sb.masquerade_rules(), 0);
    assert!(
        sb.host_veths().iter().all(|v| v.starts_with("uplink0")),
        "{:?}",
        sb.host_veths()
    );
}

#[test]
fn an_oversized_link_name_is_refused_without_crashing_the_host() {
    let Some(mut sb) = Sandbox::for_test("an_oversized_link_name") else {
        return;
    };
    let c1 = sb.container("c1");
    let e = sb
        .cni(
            "misbehave",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &misbehave("long-name"),
        )
        .err(7);
    assert!(e["msg"].as_str().unwrap().contains("link name"), "{e}");
    assert!(sb.link("c1", "eth0").is_none(), "the veth was undone");
    assert!(sb.host_veths().is_empty());
    assert!(sb.ip_files("bad").is_empty(), "the address was released");
}

#[test]
fn guest_stdout_never_mixes_with_the_result() {
    let Some(mut sb) = Sandbox::for_test("guest_stdout_never_mixes_with_the_result") else {
        return;
    };
    let c1 = sb.container("c1");
    let out = sb.cni_env(
        "misbehave",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        &misbehave("stdout"),
        &[("WASM_CNI_LOG", "info")],
    );
    out.ok();
    assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
    assert_eq!(out.json()["cniVersion"], "1.0.0");
    assert!(
        out.stderr
            .contains(r#"[misbehave] {"not":"the result","line":99}"#),
        "guest prints go to the log: {out:?}"
    );
}

#[test]
fn modules_outside_their_world_are_refused() {
    let Some(mut sb) = Sandbox::for_test("modules_outside_their_world_are_refused") else {
        return;
    };
    let c1 = sb.container("c1");
    // Imports both the IPAM store and network namespaces: no world grants that.
    let greedy = json!({"cniVersion": "1.0.0", "name": "g", "type": "greedy"}).to_string();
    let e = sb
        .cni(
            "wasm-cni",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &greedy.replace(
                r#""type":"greedy""#,
                r#""type":"wasm-cni","plugin":"greedy""#,
            ),
        )
        .err(101);
    assert!(e["msg"].as_str().unwrap().contains("both"), "{e}");
    // An interface plugin named as IPAM would get network capabilities.
    let as_ipam = json!({"cniVersion": "1.0.0", "name": "m", "type": "bridge", "bridge": "mbr",
        "ipam": {"type": "misbehave", "behave": "spin"}})
    .to_string();
    let e = sb
        .cni("bridge", "ADD", "c1", Some(&c1), "eth0", &as_ipam)
        .err(101);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("interface-plugin world"),
        "{e}"
    );
    assert!(
        sb.host_veths().is_empty(),
        "the bridge plugin's ADD was undone"
    );
}
