//! Least privilege: while a guest runs, the host has `no_new_privs` and only
//! `CAP_NET_ADMIN`, `CAP_SYS_ADMIN` and `CAP_NET_RAW`, in every capability
//! set; what it executes inherits no more.

use serde_json::json;
use std::time::{Duration, Instant};
use wasm_cni_tests::sandbox::{finish, spawn_with_stdin};
use wasm_cni_tests::{NodeState, Sandbox};

/// CAP_NET_ADMIN (12), CAP_NET_RAW (13), CAP_SYS_ADMIN (21), as
/// `/proc/PID/status` prints a set.
const KEPT: &str = "0000000000203000";
const NONE: &str = "0000000000000000";

/// The `Cap*` and `NoNewPrivs` lines of a `/proc/PID/status`.
fn privileges(status: &str) -> Vec<String> {
    let mut v: Vec<String> = status
        .lines()
        .filter(|l| l.starts_with("Cap") || l.starts_with("NoNewPrivs"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    v.sort();
    v
}

fn expected() -> Vec<String> {
    let mut v = vec![
        format!("CapAmb: {NONE}"),
        format!("CapBnd: {KEPT}"),
        format!("CapEff: {KEPT}"),
        format!("CapInh: {NONE}"),
        format!("CapPrm: {KEPT}"),
        "NoNewPrivs: 1".to_string(),
    ];
    v.sort();
    v
}

#[test]
fn while_a_guest_runs_the_host_holds_only_what_a_call_needs() {
    let Some(mut sb) = Sandbox::for_test("host_privileges") else {
        return;
    };
    let c1 = sb.container("c1");
    let before = NodeState::take(&sb);
    let cfg = json!({"cniVersion": "1.0.0", "name": "priv", "type": "misbehave",
        "behave": "sleep-halfway", "ipam": {"type": "host-local", "subnet": "10.51.0.0/24"}})
    .to_string();
    let child = spawn_with_stdin(
        sb.cni_command(
            "misbehave",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &[("WASM_CNI_TIMEOUT", "3")],
        ),
        &cfg,
    );
    // `unshare` and `ip netns exec` exec in place: the child becomes the
    // host. Read its status once it is wasm-cni and the guest is asleep.
    let proc = format!("/proc/{}", child.id());
    let start = Instant::now();
    let status = loop {
        let comm = std::fs::read_to_string(format!("{proc}/comm")).unwrap_or_default();
        if comm.trim() == "misbehave" || comm.trim() == "wasm-cni" {
            std::thread::sleep(Duration::from_millis(800));
            break std::fs::read_to_string(format!("{proc}/status")).unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "never became wasm-cni: {comm}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(privileges(&status), expected(), "{status}");
    let out = finish(child);
    out.err(100);
    before.assert_unchanged(&NodeState::take(&sb), "a call stopped at its deadline");
}

#[test]
fn what_the_host_executes_inherits_no_more() {
    use std::os::unix::fs::PermissionsExt;
    let Some(mut sb) = Sandbox::for_test("child_privileges") else {
        return;
    };
    sb.use_policy(json!({"version": 1, "ipamPlugins": ["show-privileges"]}));
    // A native IPAM plugin that speaks 1.1.0 and writes down its own
    // privileges when asked for STATUS.
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("status");
    let script = format!(
        "#!/bin/sh\ncat >/dev/null\ncase \"$CNI_COMMAND\" in\n\
         VERSION) echo '{{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"1.1.0\"]}}' ;;\n\
         STATUS) cat /proc/self/status > {} ;;\nesac\n",
        out_file.display()
    );
    let plugin = dir.path().join("show-privileges");
    std::fs::write(&plugin, script).unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        wasm_cni_tests::install().bin.display()
    );
    let cfg = json!({"cniVersion": "1.1.0", "name": "kids", "type": "bridge", "bridge": "kidbr",
        "ipam": {"type": "show-privileges"}})
    .to_string();
    sb.cni_env(
        "bridge",
        "STATUS",
        "",
        None,
        "",
        &cfg,
        &[("CNI_PATH", &path)],
    )
    .ok();
    let status = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(privileges(&status), expected(), "{status}");
}
