//! CHECK against prevResult: passes on a healthy attachment, names what
//! is missing otherwise.

use wasm_cni_tests::{CLASSIC, Sandbox};

fn with_prev(config: &str, prev: &serde_json::Value) -> String {
    let mut c: serde_json::Value = serde_json::from_str(config).unwrap();
    c["prevResult"] = prev.clone();
    c.to_string()
}

#[test]
fn check_finds_what_went_missing() {
    let Some(mut sb) = Sandbox::for_test("check_finds_what_went_missing") else {
        return;
    };
    let c1 = sb.container("c1");
    let conf = CLASSIC.replace("0.3.1", "0.4.0");
    let prev = sb
        .cni("bridge", "ADD", "c1", Some(&c1), "eth0", &conf)
        .ok()
        .json();
    let checked = with_prev(&conf, &prev);
    sb.cni("bridge", "CHECK", "c1", Some(&c1), "eth0", &checked)
        .ok();
    assert_eq!(
        sb.cni("bridge", "CHECK", "c1", Some(&c1), "eth0", &conf)
            .err(7)["msg"],
        "required prevResult missing"
    );

    // The masquerade rule is gone.
    sb.run_in(
        "host",
        &["nft", "flush", "chain", "inet", "wasm-cni", "postrouting"],
    );
    let e = sb
        .cni("bridge", "CHECK", "c1", Some(&c1), "eth0", &checked)
        .err(100);
    assert!(e["msg"].as_str().unwrap().contains("masquerade"), "{e}");

    // The address is gone.
    sb.run_in("c1", &["ip", "addr", "flush", "dev", "eth0"]);
    let e = sb
        .cni("bridge", "CHECK", "c1", Some(&c1), "eth0", &checked)
        .err(100);
    assert!(e["msg"].as_str().unwrap().contains("10.244.0.2/16"), "{e}");

    // The IPAM reservation is gone.
    std::fs::remove_file(sb.state_dir("mynet").join("10.244.0.2")).unwrap();
    let e = sb
        .cni("bridge", "CHECK", "c1", Some(&c1), "eth0", &checked)
        .err(100);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("Failed to find address"),
        "{e}"
    );

    // The interface is gone.
    sb.run_in("c1", &["ip", "link", "del", "eth0"]);
    sb.cni("bridge", "CHECK", "c1", Some(&c1), "eth0", &checked)
        .err(100);
    sb.cni("bridge", "DEL", "c1", Some(&c1), "eth0", &checked)
        .ok();
}
