//! A failed ADD leaves nothing: no link, no address reservation, no rule,
//! whatever step failed.

use serde_json::json;
use wasm_cni_tests::Sandbox;

#[test]
fn exhaustion_names_the_range_and_leaves_nothing() {
    let Some(mut sb) = Sandbox::for_test("exhaustion_names_the_range") else {
        return;
    };
    let c1 = sb.container("c1");
    let c2 = sb.container("c2");
    // A /30 has one address to give once the gateway is taken out.
    let cfg = json!({"cniVersion": "1.0.0", "name": "tiny", "type": "bridge", "bridge": "tinybr",
        "isGateway": true, "ipMasq": true, "ipam": {"type": "host-local", "subnet": "10.66.0.0/30"}})
    .to_string();
    sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", &cfg).ok();
    let e = sb
        .cni("bridge", "ADD", "c2", Some(&c2), "eth0", &cfg)
        .err(100);
    assert_eq!(
        e["msg"],
        "failed to allocate for range 0: no IP addresses available in range set: 10.66.0.1-10.66.0.2"
    );
    assert!(sb.link("c2", "eth0").is_none(), "the veth was removed");
    assert_eq!(sb.host_veths().len(), 1);
    assert_eq!(sb.ip_files("tiny"), ["10.66.0.2"]);
    assert_eq!(sb.masquerade_rules(), 1);
}

#[test]
fn unknown_ipam_type_fails_add_cleanly_and_del_still_succeeds() {
    let Some(mut sb) = Sandbox::for_test("unknown_ipam_type") else {
        return;
    };
    let c1 = sb.container("c1");
    let cfg = json!({"cniVersion": "1.0.0", "name": "n", "type": "bridge", "bridge": "nbr",
        "ipam": {"type": "no-such-ipam"}})
    .to_string();
    let e = sb
        .cni("bridge", "ADD", "c1", Some(&c1), "eth0", &cfg)
        .err(7);
    assert!(e["msg"].as_str().unwrap().contains("no-such-ipam"), "{e}");
    assert!(sb.link("c1", "eth0").is_none());
    assert!(sb.host_veths().is_empty());
    // The reference bridge fails this DEL; a DEL must succeed.
    sb.cni("bridge", "DEL", "c1", Some(&c1), "eth0", &cfg).ok();
}

#[test]
fn native_ipam_plugins_are_executed_from_cni_path() {
    let Some(path) = wasm_cni_tests::cni_path_with_reference("native_ipam_plugins") else {
        return;
    };
    let Some(mut sb) = Sandbox::for_test("native_ipam_plugins") else {
        return;
    };
    let c1 = sb.container("c1");
    // `static` has no wasm module, so it runs as a process, as CNI
    // delegation specifies.
    let cfg = json!({"cniVersion": "1.0.0", "name": "st", "type": "bridge", "bridge": "stbr", "isGateway": true,
        "ipam": {"type": "static", "addresses": [{"address": "10.55.0.9/24", "gateway": "10.55.0.1"}]}})
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
    assert_eq!(r["ips"][0]["address"], "10.55.0.9/24");
    assert!(sb.ping("c1", "10.55.0.1"));
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
    assert!(sb.host_veths().is_empty());
}

#[test]
fn a_held_ipam_lock_is_try_again_later_not_a_hang() {
    let Some(mut sb) = Sandbox::for_test("a_held_ipam_lock_is_try_again_later") else {
        return;
    };
    let c1 = sb.container("c1");
    // Another process (here, this test) keeps the network's lock.
    let dir = sb.state_dir("mynet");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.join("lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let start = std::time::Instant::now();
    let out = sb.cni_env(
        "bridge",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        wasm_cni_tests::CLASSIC,
        &[("WASM_CNI_TIMEOUT", "4")],
    );
    let e = out.err(11);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("locked by another process"),
        "{e}"
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert!(sb.link("c1", "eth0").is_none());
    assert!(sb.host_veths().is_empty());
    drop(lock);
    sb.cni(
        "bridge",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        wasm_cni_tests::CLASSIC,
    )
    .ok();
}
