//! `tuning` on a real kernel, under the host's Landlock and seccomp
//! confinement, chained after `bridge`: the settings land on the
//! container's interface, the replaced ones are kept in the attachment's
//! state (in the sandbox's private /var/lib), DEL puts them back and
//! removes the state.

use serde_json::{Value, json};
use wasm_cni_tests::{CLASSIC, Sandbox};

fn chained(prev: &Value) -> String {
    json!({"cniVersion":"1.0.0","name":"mynet","type":"tuning",
        "sysctl":{"net.ipv4.conf.eth0.arp_notify":"1"},
        "mac":"0a:58:0a:f4:00:63","mtu":1400,"promisc":true,"allmulti":true,"txQLen":2000,
        "prevResult":prev})
    .to_string()
}

#[test]
fn tuning_changes_the_interface_and_del_puts_it_back() {
    let Some(mut sb) = Sandbox::for_test("tuning_changes_the_interface_and_del_puts_it_back")
    else {
        return;
    };
    let c1 = sb.container("c1");
    let conf = CLASSIC.replace("0.3.1", "1.0.0");
    let prev = sb
        .cni("bridge", "ADD", "c1", Some(&c1), "eth0", &conf)
        .ok()
        .json();
    let before = sb.link("c1", "eth0").unwrap();
    let tuned = chained(&prev);
    let result = sb
        .cni("tuning", "ADD", "c1", Some(&c1), "eth0", &tuned)
        .ok()
        .json();
    let eth0 = result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "eth0")
        .unwrap()
        .clone();
    assert_eq!(eth0["mac"], "0a:58:0a:f4:00:63");
    let now = sb.link("c1", "eth0").unwrap();
    assert_eq!(now["address"], "0a:58:0a:f4:00:63");
    assert_eq!(now["mtu"], 1400);
    assert_eq!(now["txqlen"], 2000);
    let flags: Vec<&str> = now["flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(
        flags.contains(&"PROMISC") && flags.contains(&"ALLMULTI"),
        "{flags:?}"
    );
    assert_eq!(sb.sysctl("c1", "net/ipv4/conf/eth0/arp_notify"), "1");
    let states = sb.state_root().join("wasm-cni/attachments/mynet");
    assert_eq!(std::fs::read_dir(&states).unwrap().count(), 1);

    sb.cni("tuning", "CHECK", "c1", Some(&c1), "eth0", &tuned)
        .ok();
    sb.cni("tuning", "DEL", "c1", Some(&c1), "eth0", &tuned)
        .ok();
    let after = sb.link("c1", "eth0").unwrap();
    for k in ["address", "mtu", "txqlen", "flags"] {
        assert_eq!(after[k], before[k], "{k}");
    }
    assert_eq!(std::fs::read_dir(&states).unwrap().count(), 0);
    sb.cni("bridge", "DEL", "c1", Some(&c1), "eth0", &conf).ok();
}

#[test]
fn a_refused_namespace_leaves_no_state_directory() {
    let Some(sb) = Sandbox::for_test("tuning_refused_netns") else {
        return;
    };
    let conf = chained(&json!({"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}]}));
    // The node's own namespace as the container's: code 8, before anything.
    let own = std::path::Path::new("/proc/self/ns/net");
    sb.cni("tuning", "ADD", "c1", Some(own), "eth0", &conf)
        .err(8);
    assert!(!sb.state_root().join("wasm-cni/attachments").exists());
}
