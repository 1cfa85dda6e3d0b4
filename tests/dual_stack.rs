//! IPv4 + IPv6 range sets: one address of each family per container,
//! gateways on the bridge, both default routes, traffic in both families.

use std::fs;
use wasm_cni_tests::Sandbox;

const DUAL: &str = r#"{"cniVersion":"1.0.0","name":"dual","type":"bridge","bridge":"dualbr",
  "isGateway":true,"ipMasq":true,
  "ipam":{"type":"host-local",
          "ranges":[[{"subnet":"10.88.0.0/24"}],[{"subnet":"fd00:88::/64"}]],
          "routes":[{"dst":"0.0.0.0/0"},{"dst":"::/0"}]}}"#;

#[test]
fn dual_stack_range_sets() {
    let Some(mut sb) = Sandbox::for_test("dual_stack_range_sets") else {
        return;
    };
    let c1 = sb.container("c1");
    let c2 = sb.container("c2");
    let r1 = sb
        .cni("bridge", "ADD", "c1", Some(&c1), "eth0", DUAL)
        .ok()
        .json();
    sb.cni("bridge", "ADD", "c2", Some(&c2), "eth0", DUAL).ok();

    assert_eq!(r1["cniVersion"], "1.0.0");
    assert_eq!(r1["ips"][0]["address"], "10.88.0.2/24");
    assert_eq!(r1["ips"][0]["gateway"], "10.88.0.1");
    assert_eq!(r1["ips"][1]["address"], "fd00:88::2/64");
    assert_eq!(r1["ips"][1]["gateway"], "fd00:88::1");
    assert!(
        r1["ips"][0].get("version").is_none(),
        "1.0.0 has no ips[].version"
    );

    let br = sb.addresses("host", "dualbr");
    assert!(
        br.contains(&"10.88.0.1/24".into()) && br.contains(&"fd00:88::1/64".into()),
        "{br:?}"
    );
    let eth0 = sb.addresses("c1", "eth0");
    assert!(
        eth0.contains(&"10.88.0.2/24".into()) && eth0.contains(&"fd00:88::2/64".into()),
        "{eth0:?}"
    );
    let r6 = sb.ip_json("c1", &["-6", "route", "show", "default"]);
    assert_eq!(r6[0]["gateway"], "fd00:88::1", "{r6}");
    assert_eq!(sb.sysctl("host", "net.ipv6.conf.all.forwarding"), "1");
    assert_eq!(sb.sysctl("c1", "net.ipv6.conf.eth0.accept_dad"), "0");

    // No DAD wait: both families answer right after ADD.
    assert!(sb.ping("c1", "10.88.0.1") && sb.ping("c1", "10.88.0.3"));
    assert!(sb.ping("c1", "fd00:88::1"), "c1 -> IPv6 gateway");
    assert!(sb.ping("c1", "fd00:88::3"), "c1 -> c2 over IPv6");

    let nft = sb.nft();
    assert!(
        nft.contains(
            "ip6 saddr fd00:88::2 ip6 daddr != fd00:88::/64 ip6 daddr != ff00::/8 masquerade"
        ),
        "{nft}"
    );
    let dir = sb.state_dir("dual");
    assert_eq!(fs::read(dir.join("fd00:88::2")).unwrap(), b"c1\r\neth0");
    assert_eq!(
        fs::read(dir.join("last_reserved_ip.1")).unwrap(),
        b"fd00:88::3"
    );

    for (id, ns) in [("c1", &c1), ("c2", &c2)] {
        sb.cni("bridge", "DEL", id, Some(ns), "eth0", DUAL).ok();
    }
    assert!(sb.ip_files("dual").is_empty());
    assert_eq!(sb.masquerade_rules(), 0);
    assert!(sb.host_veths().is_empty());
}
