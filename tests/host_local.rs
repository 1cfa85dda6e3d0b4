//! host-local's options as the reference v1.7.1 accepts them: `resolvConf`
//! (read by the host, only where the node policy allows), route attributes,
//! ranges bounded by the network and broadcast addresses, legacy id-only
//! reservations; and results in every CNI version, 0.1.0 and 0.2.0 too.

use serde_json::{Value, json};
use std::path::Path;
use wasm_cni_tests::{NodeState, Sandbox};

fn ipam_conf(version: &str, network: &str, ipam: Value) -> String {
    json!({"cniVersion": version, "name": network, "type": "bridge", "ipam": ipam}).to_string()
}

/// host-local called directly, as an interface plugin delegates to it.
fn ipam_call(sb: &Sandbox, command: &str, id: &str, cfg: &str) -> wasm_cni_tests::CniOutput {
    let ns = sb.ns_path("c");
    sb.cni("host-local", command, id, Some(&ns), "eth0", cfg)
}

#[test]
fn resolv_conf_is_read_from_where_the_policy_allows_and_nowhere_else() {
    let Some(mut sb) = Sandbox::for_test("resolv_conf") else {
        return;
    };
    sb.container("c");
    let allowed = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    sb.use_policy(json!({"version": 1, "resolvConfDirs": [allowed.path()]}));
    let good = allowed.path().join("resolv.conf");
    std::fs::write(
        &good,
        "# a comment\n; another\nnameserver 10.96.0.10\nnameserver fd00::10\n\
         domain cluster.local\nsearch svc.cluster.local cluster.local\noptions ndots:5\n",
    )
    .unwrap();
    let conf = |path: &Path| {
        ipam_conf(
            "1.0.0",
            "dns",
            json!({"type": "host-local", "subnet": "10.85.0.0/24", "resolvConf": path}),
        )
    };
    let r = ipam_call(&sb, "ADD", "c1", &conf(&good)).ok().json();
    assert_eq!(
        r["dns"],
        json!({"nameservers": ["10.96.0.10", "fd00::10"], "domain": "cluster.local",
            "search": ["svc.cluster.local", "cluster.local"], "options": ["ndots:5"]})
    );
    ipam_call(&sb, "DEL", "c1", &conf(&good)).ok();

    // Refused, each with code 7 naming the field, and nothing reserved.
    std::os::unix::fs::symlink(&good, allowed.path().join("link.conf")).unwrap();
    std::fs::write(elsewhere.path().join("resolv.conf"), "nameserver 1.1.1.1\n").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        allowed.path().join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    std::fs::write(allowed.path().join("big"), vec![b'#'; 70 << 10]).unwrap();
    let before = NodeState::take(&sb);
    for (path, why) in [
        (elsewhere.path().join("resolv.conf"), "not beneath"),
        (allowed.path().join("link.conf"), "symbolic link"),
        (allowed.path().join("../x/resolv.conf"), ".."),
        (allowed.path().join("fifo"), "regular file"),
        (allowed.path().join("big"), "more than"),
        (allowed.path().join("missing"), "No such file"),
    ] {
        let start = std::time::Instant::now();
        let e = ipam_call(&sb, "ADD", "c2", &conf(&path)).err(7);
        let msg = e["msg"].as_str().unwrap();
        assert!(
            msg.contains("ipam.resolvConf") && msg.contains(why),
            "{path:?}: {e}"
        );
        assert!(start.elapsed().as_secs() < 5, "{path:?} did not block");
    }
    before.assert_unchanged(&NodeState::take(&sb), "refused resolvConf paths");
}

#[test]
fn route_attributes_pass_through_in_every_version_that_has_them() {
    let Some(mut sb) = Sandbox::for_test("route_attributes") else {
        return;
    };
    sb.container("c");
    let routes = json!([
        {"dst": "0.0.0.0/0", "gw": "10.86.0.1", "mtu": 1400, "advmss": 1360, "priority": 50,
         "table": 100, "scope": 0},
        {"dst": "192.168.0.0/16"}
    ]);
    for version in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let cfg = ipam_conf(
            version,
            "routes",
            json!({"type": "host-local", "subnet": "10.86.0.0/24", "routes": routes}),
        );
        let r = ipam_call(&sb, "ADD", "c1", &cfg).ok().json();
        assert_eq!(r["routes"], routes, "{version}: {r}");
        ipam_call(&sb, "DEL", "c1", &cfg).ok();
    }
    let cfg = ipam_conf(
        "0.2.0",
        "routes",
        json!({"type": "host-local", "subnet": "10.86.0.0/24", "routes": routes}),
    );
    let r = ipam_call(&sb, "ADD", "c1", &cfg).ok().json();
    assert_eq!(
        r["ip4"]["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.86.0.1"}, {"dst": "192.168.0.0/16"}]),
        "0.2.0 routes carry dst and gw only: {r}"
    );
    ipam_call(&sb, "DEL", "c1", &cfg).ok();
}

#[test]
fn ranges_may_start_on_the_network_and_end_on_the_broadcast_address() {
    let Some(mut sb) = Sandbox::for_test("range_bounds") else {
        return;
    };
    sb.container("c");
    let cfg = ipam_conf(
        "1.0.0",
        "bounds",
        json!({"type": "host-local", "ranges": [[{"subnet": "10.87.0.0/29",
            "rangeStart": "10.87.0.0", "rangeEnd": "10.87.0.7"}]]}),
    );
    let mut got = Vec::new();
    for i in 0..5 {
        let r = ipam_call(&sb, "ADD", &format!("c{i}"), &cfg).ok().json();
        got.push(r["ips"][0]["address"].as_str().unwrap().to_string());
    }
    assert_eq!(
        got,
        [
            "10.87.0.2/29",
            "10.87.0.3/29",
            "10.87.0.4/29",
            "10.87.0.5/29",
            "10.87.0.6/29"
        ],
        "never .0 (network), .1 (gateway) or .7 (broadcast)"
    );
    let e = ipam_call(&sb, "ADD", "c9", &cfg).err(100);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("no IP addresses available"),
        "{e}"
    );
    // Asking for the broadcast address is refused.
    let e = sb
        .cni_env(
            "host-local",
            "ADD",
            "c9",
            Some(&sb.ns_path("c")),
            "eth0",
            &cfg,
            &[("CNI_ARGS", "IP=10.87.0.7")],
        )
        .err(100);
    assert!(e["msg"].as_str().unwrap().contains("broadcast"), "{e}");
}

#[test]
fn legacy_id_only_reservations_count_in_the_duplicate_check_and_check() {
    let Some(mut sb) = Sandbox::for_test("legacy_ids") else {
        return;
    };
    sb.container("c");
    let cfg = ipam_conf(
        "1.0.0",
        "legacy",
        json!({"type": "host-local", "subnet": "10.88.0.0/24"}),
    );
    // A reservation written before host-local recorded ifnames.
    let dir = sb.state_dir("legacy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("10.88.0.9"), "old").unwrap();
    ipam_call(&sb, "CHECK", "old", &cfg).ok();
    let e = ipam_call(&sb, "ADD", "old", &cfg).err(100);
    assert!(e["msg"].as_str().unwrap().contains("duplicate"), "{e}");
    ipam_call(&sb, "CHECK", "new", &cfg).err(100);
    ipam_call(&sb, "DEL", "old", &cfg).ok();
    assert!(sb.ip_files("legacy").is_empty());
}

#[test]
fn results_in_0_1_0_and_0_2_0_have_the_ip4_ip6_shape() {
    let Some(mut sb) = Sandbox::for_test("results_0_2_0") else {
        return;
    };
    for (n, version) in ["0.1.0", "0.2.0", ""].iter().enumerate() {
        let id = format!("c{n}");
        let ns = sb.container(&id);
        let cfg = json!({"cniVersion": version, "name": "old", "type": "bridge", "bridge": "oldbr",
            "isGateway": true, "ipam": {"type": "host-local", "ranges": [
                [{"subnet": "10.89.0.0/24"}], [{"subnet": "fd89::/64"}]],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}})
        .to_string();
        let r = sb
            .cni("bridge", "ADD", &id, Some(&ns), "eth0", &cfg)
            .ok()
            .json();
        let want = if version.is_empty() { "0.1.0" } else { version };
        assert_eq!(r["cniVersion"], want);
        assert!(
            r.get("interfaces").is_none() && r.get("ips").is_none(),
            "{r}"
        );
        assert!(
            r["ip4"]["ip"].as_str().unwrap().starts_with("10.89.0."),
            "{r}"
        );
        assert_eq!(r["ip4"]["gateway"], "10.89.0.1");
        assert_eq!(r["ip4"]["routes"], json!([{"dst": "0.0.0.0/0"}]));
        assert_eq!(r["ip6"]["routes"], json!([{"dst": "::/0"}]));
        assert!(
            r["ip6"]["ip"].as_str().unwrap().starts_with("fd89::"),
            "{r}"
        );
        assert_eq!(r["dns"], json!({}));
        sb.cni("bridge", "DEL", &id, Some(&ns), "eth0", &cfg).ok();
    }
}

#[test]
fn an_add_without_addresses_cannot_be_answered_in_0_2_0_and_is_undone() {
    let Some(mut sb) = Sandbox::for_test("results_0_2_0_l2") else {
        return;
    };
    let ns = sb.container("l2");
    let before = NodeState::take(&sb);
    let cfg = json!({"cniVersion": "0.2.0", "name": "l2", "type": "bridge", "bridge": "l2br",
        "ipam": {}})
    .to_string();
    let e = sb
        .cni("bridge", "ADD", "l2", Some(&ns), "eth0", &cfg)
        .err(1);
    assert!(
        e["msg"].as_str().unwrap().contains("no valid IP addresses"),
        "{e}"
    );
    assert!(sb.link("l2", "eth0").is_none());
    before.assert_unchanged(&NodeState::take(&sb), "an ADD that cannot be answered");
}

#[test]
fn resolv_conf_never_opens_what_is_not_a_regular_file_nor_crosses_a_mount() {
    let Some(mut sb) = Sandbox::for_test("resolv_conf_open") else {
        return;
    };
    sb.container("c");
    let allowed = tempfile::tempdir().unwrap();
    sb.use_policy(json!({"version": 1, "resolvConfDirs": [allowed.path()]}));
    let conf = |path: &Path| {
        ipam_conf(
            "1.0.0",
            "dns2",
            json!({"type": "host-local", "subnet": "10.85.1.0/24", "resolvConf": path}),
        )
    };
    // A FIFO with a writer waiting: opening it for reading, even without
    // blocking, would let the writer through (a device's open can do worse).
    let fifo = allowed.path().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let writer_path = fifo.clone();
    std::thread::spawn(move || {
        let opened = std::fs::OpenOptions::new().write(true).open(&writer_path);
        let _ = tx.send(opened.is_ok());
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    let e = ipam_call(&sb, "ADD", "c1", &conf(&fifo)).err(7);
    assert!(e["msg"].as_str().unwrap().contains("regular file"), "{e}");
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(300))
            .is_err(),
        "the FIFO was opened"
    );
    // Let the writer go.
    drop(std::fs::File::open(&fifo));

    // A file on another mount beneath an allowed directory (a container's
    // rootfs under /run is one): not reached. The mount is made in the
    // call's own mount namespace.
    let sub = allowed.path().join("mnt");
    std::fs::create_dir(&sub).unwrap();
    let inst = wasm_cni_tests::install();
    let script = format!(
        "mount -t tmpfs none {sub} && echo 'nameserver 10.0.0.53' > {sub}/resolv.conf && exec {bin}",
        sub = sub.display(),
        bin = inst.bin.join("host-local").display()
    );
    let ns = sb.ns_path("c");
    let mut c = sb.cni_command("host-local", "ADD", "c1", Some(&ns), "eth0", &[]);
    let mut shell = sb.command(&["sh", "-c", &script]);
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            shell.env(k, v);
        }
    }
    let _ = &mut c;
    let out = wasm_cni_tests::sandbox::run_with_stdin(shell, &conf(&sub.join("resolv.conf")));
    let e = out.err(7);
    assert!(
        e["msg"].as_str().unwrap().contains("ipam.resolvConf"),
        "{e}"
    );
    assert!(sb.ip_files("dns2").is_empty());
}

#[test]
fn a_config_with_more_range_sets_than_an_add_can_write_is_refused_up_front() {
    let Some(sb) = Sandbox::for_test("too_many_range_sets") else {
        return;
    };
    let sets: Vec<Value> = (0..65)
        .map(|i| json!([{"subnet": format!("10.88.{i}.0/30")}]))
        .collect();
    let cfg = ipam_conf(
        "1.0.0",
        "wide",
        json!({"type": "host-local", "ranges": sets}),
    );
    let e = ipam_call(&sb, "ADD", "c1", &cfg).err(7);
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.contains("65 range sets") && msg.contains("at most 64"),
        "{e}"
    );
    assert!(sb.ip_files("wide").is_empty());
}
