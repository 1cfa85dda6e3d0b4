//! The hostile-guest matrix: configs and guests that try to reach beyond
//! their own attachment, and calls that fail halfway. Each case asserts the
//! CNI error AND that the node is exactly as before (links, addresses,
//! routes, sysctls, nftables, IPAM state and every other file under the
//! sandbox's /var/lib). Resource cases print time and peak RSS.

use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use wasm_cni_tests::sandbox::{finish, spawn_with_stdin};
use wasm_cni_tests::{CniOutput, NodeState, Policy, Sandbox};

/// A config for network `net`, merged with `extra`.
fn conf(net: &str, plugin: &str, extra: Value) -> String {
    let mut c = json!({"cniVersion": "1.0.0", "name": net, "type": plugin,
        "ipam": {"type": "host-local", "subnet": "10.44.0.0/24"}});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

fn misbehave(behave: &str, extra: Value) -> String {
    let mut extra = extra;
    extra["behave"] = behave.into();
    conf("bad", "misbehave", extra)
}

/// An ADD by `plugin` in container `c1` that must fail with `code`, its
/// message saying `says`, and leave the node as it found it.
#[track_caller]
fn fails_cleanly(sb: &Sandbox, plugin: &str, cfg: &str, code: u64, says: &str) {
    let before = NodeState::take(sb);
    let netns = sb.ns_path("c1");
    let e = sb
        .cni(plugin, "ADD", "c1", Some(&netns), "eth0", cfg)
        .err(code);
    assert!(e["msg"].as_str().unwrap().contains(says), "{says}: {e}");
    before.assert_unchanged(&NodeState::take(sb), says);
}

#[track_caller]
fn denied(out: &CniOutput, what: &str) {
    let e = out.err(100);
    let msg = e["msg"].as_str().unwrap();
    assert!(msg.contains("denied"), "{what}: {e}");
}

/// Run a call, with its wall time and the peak RSS of its process (what
/// `/usr/bin/time -f %M` prints), in KiB.
fn measured(c: std::process::Command, stdin: &str) -> (CniOutput, Duration, i64) {
    use std::io::Read;
    let start = Instant::now();
    // Waited for with wait4, below, for its resource usage.
    #[allow(clippy::zombie_processes)]
    let mut child = spawn_with_stdin(c, stdin);
    let pid = child.id() as libc::pid_t;
    let mut pipes = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipes.1.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let _ = pipes.0.read_to_string(&mut stdout);
    let mut status = 0;
    // SAFETY: plain FFI; `usage` is written by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    let elapsed = start.elapsed();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let out = CniOutput {
        code,
        stdout: stdout.trim().to_string(),
        stderr: err.join().unwrap(),
    };
    (out, elapsed, usage.ru_maxrss)
}

#[test]
fn another_networks_bridge_gateway_and_sysctls_are_out_of_reach() {
    let Some(mut sb) = Sandbox::for_test("another_networks_bridge") else {
        return;
    };
    // Network B has a pod on its bridge.
    let cb = sb.container("cb");
    let net_b = json!({"cniVersion": "1.0.0", "name": "netb", "type": "bridge", "bridge": "brb",
        "isGateway": true, "ipam": {"type": "host-local", "subnet": "10.55.0.0/24"}});
    sb.cni("bridge", "ADD", "cb", Some(&cb), "eth0", &net_b.to_string())
        .ok();
    let c1 = sb.container("c1");
    let before = NodeState::take(&sb);
    let b = |extra: Value| {
        let mut e = json!({"target": "brb", "address": "10.55.0.1/24"});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };
    for (behave, extra) in [
        ("foreign-bridge", b(json!({}))),
        // Naming B's bridge in A's config gives A nothing.
        ("foreign-bridge", b(json!({"bridge": "brb"}))),
        ("foreign-gateway", b(json!({}))),
        ("foreign-gateway", b(json!({"bridge": "brb"}))),
        ("foreign-accept-ra", b(json!({"bridge": "brb"}))),
    ] {
        let out = sb.cni(
            "misbehave",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &misbehave(behave, extra),
        );
        denied(&out, behave);
        before.assert_unchanged(&NodeState::take(&sb), behave);
    }
    // A's bridge plugin naming B's bridge is refused too, and leaves it be.
    let grab = json!({"cniVersion": "1.0.0", "name": "neta", "type": "bridge", "bridge": "brb",
        "isGateway": true, "ipam": {"type": "host-local", "subnet": "10.56.0.0/24"}});
    denied(
        &sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", &grab.to_string()),
        "grab",
    );
    before.assert_unchanged(&NodeState::take(&sb), "the bridge plugin of network A");
    assert!(sb.ping("cb", "10.55.0.1"), "B's pod keeps its gateway");
}

#[test]
fn node_sysctls_follow_the_allow_list() {
    let Some(mut sb) = Sandbox::for_test("node_sysctls_allow_list") else {
        return;
    };
    sb.container("c1");
    for behave in ["route-localnet", "host-sysctl", "forwarding-off"] {
        fails_cleanly(
            &sb,
            "misbehave",
            &misbehave(behave, json!({})),
            100,
            "denied",
        );
    }
}

#[test]
fn a_bridge_on_the_lan_is_used_only_when_the_policy_shares_it() {
    let Some(mut sb) = Sandbox::for_test("lan_bridge_shared") else {
        return;
    };
    let c1 = sb.container("c1");
    // An operator's bridge with a non-pod port (a VM's tap).
    for cmd in [
        &["ip", "link", "add", "br-lan", "type", "bridge"][..],
        &["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"],
        &["ip", "link", "set", "tap0", "master", "br-lan"],
    ] {
        assert!(sb.run_in("host", cmd).status.success(), "{cmd:?}");
    }
    let cfg = json!({"cniVersion": "1.0.0", "name": "lan", "type": "bridge", "bridge": "br-lan",
        "isGateway": true, "ipam": {"type": "host-local", "subnet": "10.66.0.0/24"}})
    .to_string();
    let before = NodeState::take(&sb);
    denied(
        &sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", &cfg),
        "named LAN bridge",
    );
    before.assert_unchanged(&NodeState::take(&sb), "a config naming the LAN bridge");
    let elsewhere = Policy::new(json!({"version": 1, "sharedBridges": {"br-lan": ["other"]}}));
    denied(
        &sb.cni_env(
            "bridge",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &cfg,
            &[elsewhere.env()],
        ),
        "shared with another network",
    );
    before.assert_unchanged(
        &NodeState::take(&sb),
        "a bridge shared with another network",
    );
    let shared = Policy::new(json!({"version": 1, "sharedBridges": {"br-lan": ["lan"]}}));
    sb.cni_env(
        "bridge",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        &cfg,
        &[shared.env()],
    )
    .ok();
    assert!(sb.ping("c1", "10.66.0.1"));
    sb.cni_env(
        "bridge",
        "DEL",
        "c1",
        Some(&c1),
        "eth0",
        &cfg,
        &[shared.env()],
    )
    .ok();
}

#[test]
fn a_failed_add_removes_the_bridges_it_made() {
    let Some(mut sb) = Sandbox::for_test("failed_add_bridges") else {
        return;
    };
    sb.container("c1");
    let cfg = misbehave("bridges-then-fail", json!({}));
    fails_cleanly(&sb, "misbehave", &cfg, 100, "16 bridges");
}

#[test]
fn a_failed_add_puts_back_a_bridge_it_did_not_make() {
    let Some(mut sb) = Sandbox::for_test("failed_add_restores") else {
        return;
    };
    let c1 = sb.container("c1");
    // An operator's bridge for pods, down, no address, RAs accepted.
    sb.run_in("host", &["ip", "link", "add", "opbr", "type", "bridge"]);
    sb.run_in("host", &["sysctl", "-w", "net.ipv6.conf.opbr.accept_ra=1"]);
    sb.use_policy(json!({"version": 1, "sharedBridges": {"opbr": ["bad"]}}));
    let before = NodeState::take(&sb);
    let cfg = misbehave("gateway-then-fail", json!({"bridge": "opbr"}));
    let e = sb
        .cni("misbehave", "ADD", "c1", Some(&c1), "eth0", &cfg)
        .err(100);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("after configuring the gateway"),
        "{e}"
    );
    before.assert_unchanged(&NodeState::take(&sb), "a gateway on the operator's bridge");
    // And a bridge the failed call made itself is gone.
    let cfg = misbehave("gateway-then-fail", json!({"bridge": "newbr"}));
    sb.cni("misbehave", "ADD", "c1", Some(&c1), "eth0", &cfg)
        .err(100);
    before.assert_unchanged(&NodeState::take(&sb), "a bridge made by a failed call");
}

#[test]
fn a_failed_add_keeps_what_another_attachment_relies_on() {
    let Some(mut sb) = Sandbox::for_test("failed_add_keeps_shared") else {
        return;
    };
    let (c1, c2) = (sb.container("c1"), sb.container("c2"));
    let ipam = json!({"type": "host-local", "subnet": "10.46.0.0/24"});
    let good = json!({"cniVersion": "1.0.0", "name": "shared", "type": "bridge", "bridge": "shbr",
        "isGateway": true, "ipam": ipam});
    sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", &good.to_string())
        .ok();
    let bad = conf(
        "shared",
        "misbehave",
        json!({"behave": "gateway-then-fail", "bridge": "shbr", "ipam": ipam}),
    );
    sb.cni("misbehave", "ADD", "c2", Some(&c2), "eth0", &bad)
        .err(100);
    assert!(
        sb.addresses("host", "shbr")
            .contains(&"10.46.0.1/24".to_string())
    );
    assert!(sb.ping("c1", "10.46.0.1"), "the survivor keeps its gateway");
    assert_eq!(
        sb.link("host", "shbr").unwrap()["promiscuity"],
        0,
        "but not the failed call's other changes"
    );
    assert_eq!(
        sb.ip_files("shared"),
        ["10.46.0.2"],
        "the failed call's address is released"
    );
}

#[test]
fn a_rollback_waits_for_other_adds_of_its_network_before_it_decides() {
    let Some(mut sb) = Sandbox::for_test("rollback_waits") else {
        return;
    };
    let (c1, c2) = (sb.container("c1"), sb.container("c2"));
    // Warm: c1's 300 ms head start must not go to compiling (a cold cache
    // on a busy machine let c2 decide before c1 took the network's lock).
    sb.precompile(&["misbehave", "host-local"]);
    let ipam = json!({"type": "host-local", "subnet": "10.47.0.0/24"});
    // c1 starts first and joins the bridge only after c2 has made it (and
    // failed): while c1 runs, c2's rollback must not delete the bridge.
    let late = conf(
        "race",
        "misbehave",
        json!({"behave": "join-late", "bridge": "rbr", "sleepMs": 1500, "ipam": ipam}),
    );
    let fail = conf(
        "race",
        "misbehave",
        json!({"behave": "gateway-then-fail", "bridge": "rbr", "ipam": ipam}),
    );
    let joiner = spawn_with_stdin(
        sb.cni_command("misbehave", "ADD", "c1", Some(&c1), "eth0", &[]),
        &late,
    );
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let failed = finish(spawn_with_stdin(
        sb.cni_command("misbehave", "ADD", "c2", Some(&c2), "eth0", &[]),
        &fail,
    ));
    let waited = start.elapsed();
    failed.err(100);
    finish(joiner).ok();
    assert!(
        waited >= Duration::from_millis(800),
        "decided without waiting: {waited:?}"
    );
    let rbr = sb.link("host", "rbr").expect("the bridge c1 uses stays");
    let port = sb.links("host").into_iter().find(|l| l["master"] == "rbr");
    assert!(port.is_some(), "c1's veth is on it: {rbr}");
    assert!(
        sb.addresses("host", "rbr")
            .contains(&"10.47.0.1/24".to_string())
    );
}

/// An ADD that made its veth before a failing ADD added the bridge's
/// gateway, and met that gateway after: its port is older than the
/// gateway, and it relies on it all the same. The failed ADD's rollback
/// keeps the gateway (link indexes cannot tell who relies on it).
#[test]
fn a_gateway_met_by_an_older_port_stays() {
    let Some(mut sb) = Sandbox::for_test("older_port") else {
        return;
    };
    let (c1, c2) = (sb.container("c1"), sb.container("c2"));
    let ipam = json!({"type": "host-local", "subnet": "10.48.0.0/24"});
    // The network's bridge exists, without a gateway (made by an earlier
    // pod of the network that had none).
    let plain = conf(
        "race",
        "bridge",
        json!({"bridge": "obr", "isGateway": false, "ipam": ipam}),
    );
    sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", &plain)
        .ok();
    sb.cni("bridge", "DEL", "c1", Some(&c1), "eth0", &plain)
        .ok();
    assert!(sb.link("host", "obr").is_some());
    assert!(
        !sb.addresses("host", "obr")
            .contains(&"10.48.0.1/24".to_string())
    );
    let early = conf(
        "race",
        "misbehave",
        json!({"behave": "veth-early-join-late", "bridge": "obr", "sleepMs": 1500, "ipam": ipam}),
    );
    let fail = conf(
        "race",
        "misbehave",
        json!({"behave": "gateway-then-fail", "bridge": "obr", "sleepMs": 100, "ipam": ipam}),
    );
    let joiner = spawn_with_stdin(
        sb.cni_command("misbehave", "ADD", "c1", Some(&c1), "eth0", &[]),
        &early,
    );
    // c1's veth exists before c2 adds the gateway.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sb.host_veths().is_empty() {
        assert!(Instant::now() < deadline, "c1 never made its veth");
        std::thread::sleep(Duration::from_millis(20));
    }
    finish(spawn_with_stdin(
        sb.cni_command("misbehave", "ADD", "c2", Some(&c2), "eth0", &[]),
        &fail,
    ))
    .err(100);
    let r = finish(joiner).ok().json();
    assert_eq!(r["ips"][0]["gateway"], "10.48.0.1", "{r}");
    assert!(
        sb.addresses("host", "obr")
            .contains(&"10.48.0.1/24".to_string()),
        "c1 relies on the gateway c2 added"
    );
    assert!(sb.ping("c1", "10.48.0.1"), "c1 reaches its gateway");
}

#[test]
fn a_panic_in_a_host_call_is_rolled_back() {
    let Some(mut sb) = Sandbox::for_test("panic_rolled_back") else {
        return;
    };
    let c1 = sb.container("c1");
    // Forwarding, once on, stays on (node-wide; see `undo::rollback`): on
    // from the start, as after any network's first pod.
    let on = sb.run_in("host", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    assert!(on.status.success(), "{on:?}");
    let before = NodeState::take(&sb);
    // Inside capabilities, on the namespace helper thread (the guest only
    // sees an I/O error there), and in the host's own work after the guest.
    for point in [
        "link.create-veth",
        "address.add",
        "netns.helper",
        "add.after-guest",
    ] {
        let e = sb
            .cni_env(
                "bridge",
                "ADD",
                "c1",
                Some(&c1),
                "eth0",
                wasm_cni_tests::CLASSIC,
                &[("WASM_CNI_TEST_PANIC", point)],
            )
            .err(102);
        assert!(
            e["msg"].as_str().unwrap().contains("WASM_CNI_TEST_PANIC"),
            "{point}: {e}"
        );
        before.assert_unchanged(&NodeState::take(&sb), point);
        assert!(sb.link("c1", "eth0").is_none(), "{point}");
    }
}

#[test]
fn del_creates_nothing_and_check_changes_nothing() {
    let Some(mut sb) = Sandbox::for_test("del_check_create_nothing") else {
        return;
    };
    let c1 = sb.container("c1");
    let before = NodeState::take(&sb);
    for (command, behave) in [("DEL", "create-in-del"), ("CHECK", "create-in-check")] {
        let out = sb.cni(
            "misbehave",
            command,
            "c1",
            Some(&c1),
            "eth0",
            &misbehave(behave, json!({})),
        );
        denied(&out, behave);
        before.assert_unchanged(&NodeState::take(&sb), command);
        assert!(sb.link("c1", "eth0").is_none(), "{command}");
    }
}

/// A directory of executables, for `CNI_PATH` or `WASM_CNI_NFT`.
fn stubs(scripts: &[(&str, &str)]) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in scripts {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

#[test]
fn a_native_ipam_add_that_was_stopped_still_gets_its_del() {
    let Some(mut sb) = Sandbox::for_test("native_ipam_stopped") else {
        return;
    };
    let c1 = sb.container("c1");
    // Reserves, then hangs (as a plugin stuck on a lock or a server would).
    let bin = stubs(&[(
        "slow-ipam",
        "#!/bin/sh\nd=/var/lib/slow-ipam\ncase \"$CNI_COMMAND\" in\n\
         ADD) echo \"$CNI_CONTAINERID\" > $d/reserved; exec sleep 3600 ;;\n\
         DEL) rm -f $d/reserved ;;\nesac\n",
    )]);
    std::fs::create_dir(sb.varlib.path().join("slow-ipam")).unwrap();
    // A shell script: its tools and its state are the node's to allow.
    sb.use_policy(json!({"version": 1, "ipamPlugins": ["slow-ipam"],
        "landlock": {"execute": ["/usr/bin", "/bin"], "readWrite": ["/var/lib/slow-ipam"]}}));
    let cfg = conf(
        "slow",
        "bridge",
        json!({"bridge": "slowbr", "ipam": {"type": "slow-ipam"}}),
    );
    let before = NodeState::take(&sb);
    let path = bin.path().to_str().unwrap();
    let out = sb.cni_env(
        "bridge",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        &cfg,
        &[("CNI_PATH", path), ("WASM_CNI_TIMEOUT", "2")],
    );
    let e = out.err(11);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("did not answer in time"),
        "{e}"
    );
    before.assert_unchanged(&NodeState::take(&sb), "a stopped native IPAM ADD");
}

/// `nft`, but every change that adds something waits `secs` first. A shell
/// script: the node policy lets it run its tools.
fn slow_nft(sb: &mut Sandbox, secs: u32, on: &str) -> tempfile::TempDir {
    sb.use_policy(json!({"version": 1, "landlock": {"execute": ["/usr/bin", "/bin"]}}));
    stubs(&[(
        "nft",
        &format!(
            "#!/bin/sh\nif [ \"$2\" = \"-f\" ]; then in=$(cat); case \"$in\" in *'{on}'*) sleep {secs};; esac\n\
             printf '%s' \"$in\" | exec /usr/sbin/nft \"$@\"; fi\nexec /usr/sbin/nft \"$@\"\n"
        ),
    )])
}

#[test]
fn a_firewall_change_cannot_commit_after_the_rollback() {
    let Some(mut sb) = Sandbox::for_test("late_firewall") else {
        return;
    };
    let c1 = sb.container("c1");
    let nft = slow_nft(&mut sb, 4, "\"add\"");
    let nft = nft.path().join("nft");
    let before = NodeState::take(&sb);
    let start = Instant::now();
    // The deadline fires while the guest waits in firewall.list for the
    // slow masquerade; the rollback must stop it, not outlive it.
    let out = sb.cni_env(
        "misbehave",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        &misbehave("masquerade-flood", json!({})),
        &[
            ("WASM_CNI_NFT", nft.to_str().unwrap()),
            ("WASM_CNI_TIMEOUT", "2"),
        ],
    );
    out.err(100);
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    std::thread::sleep(Duration::from_secs(5).saturating_sub(start.elapsed()));
    before.assert_unchanged(
        &NodeState::take(&sb),
        "a masquerade given up at the deadline",
    );
}

#[test]
fn a_host_killed_mid_add_leaves_nothing_after_the_runtimes_del() {
    let Some(mut sb) = Sandbox::for_test("killed_mid_add") else {
        return;
    };
    let c1 = sb.container("c1");
    let nft = slow_nft(&mut sb, 3, "\"add\"");
    let nft = nft.path().join("nft");
    let cfg = wasm_cni_tests::CLASSIC;
    let child = spawn_with_stdin(
        sb.cni_command(
            "bridge",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &[("WASM_CNI_NFT", nft.to_str().unwrap())],
        ),
        cfg,
    );
    let start = Instant::now();
    while sb.ip_files("mynet").is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: plain FFI.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(finish(child).code, -1, "killed");
    assert!(!sb.ip_files("mynet").is_empty(), "it was killed halfway");
    sb.cni("bridge", "DEL", "c1", Some(&c1), "eth0", cfg).ok();
    // Long enough for the slow nft it had started to commit, had it lived.
    std::thread::sleep(Duration::from_secs(4));
    assert!(sb.ip_files("mynet").is_empty());
    assert!(sb.host_veths().is_empty());
    assert_eq!(sb.masquerade_rules(), 0, "{}", sb.nft());
}

#[test]
fn guests_looping_on_host_calls_end_at_the_deadline_or_the_budget() {
    let Some(mut sb) = Sandbox::for_test("host_call_loops") else {
        return;
    };
    let c1 = sb.container("c1");
    let before = NodeState::take(&sb);
    // Every nft run takes a second: the loop must still end at the deadline.
    let nft = slow_nft(&mut sb, 1, "");
    let nft = nft.path().join("nft");
    let c = sb.cni_command(
        "misbehave",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        &[
            ("WASM_CNI_NFT", nft.to_str().unwrap()),
            ("WASM_CNI_TIMEOUT", "3"),
        ],
    );
    let (out, took, rss) = measured(c, &misbehave("list-loop", json!({})));
    eprintln!("firewall.list loop with a slow nft: stopped after {took:?}, peak RSS {rss} KiB");
    let e = out.err(100);
    assert!(
        e["msg"].as_str().unwrap().contains("in time"),
        "the deadline ended it: {e}"
    );
    assert!(took < Duration::from_millis(4500), "{took:?}");
    let c = sb.cni_command("misbehave", "ADD", "c1", Some(&c1), "eth0", &[]);
    let (out, took, rss) = measured(c, &misbehave("get-loop", json!({})));
    eprintln!("link.get loop: stopped after {took:?}, peak RSS {rss} KiB");
    out.err(100);
    assert!(took < Duration::from_secs(10), "{took:?}");
    let e = sb
        .cni(
            "misbehave",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &misbehave("get-loop", json!({})),
        )
        .err(100);
    assert!(e["msg"].as_str().unwrap().contains("host calls"), "{e}");
    before.assert_unchanged(&NodeState::take(&sb), "host-call loops");
}

#[test]
fn a_flood_of_duplicate_masquerades_is_bounded() {
    let Some(mut sb) = Sandbox::for_test("masquerade_flood") else {
        return;
    };
    let c1 = sb.container("c1");
    let cfg = misbehave("masquerade-flood", json!({}));
    // Warm the compiled-module cache: the cold compile is not the point.
    sb.cni("misbehave", "ADD", "c1", Some(&c1), "eth0", &cfg)
        .err(100);
    let before = NodeState::take(&sb);
    let e = sb
        .cni("misbehave", "ADD", "c1", Some(&c1), "eth0", &cfg)
        .err(100);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("with 1 masquerade rule(s)"),
        "one rule: {e}"
    );
    let c = sb.cni_command("misbehave", "ADD", "c1", Some(&c1), "eth0", &[]);
    let (out, took, rss) = measured(c, &cfg);
    eprintln!("200 000 duplicate masquerades: {took:?}, peak RSS {rss} KiB");
    assert_eq!(out.code, 1);
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(rss < 64 * 1024, "{rss} KiB");
    before.assert_unchanged(&NodeState::take(&sb), "a masquerade flood");
}

#[test]
fn every_guest_of_a_call_shares_one_memory_budget() {
    let Some(mut sb) = Sandbox::for_test("one_memory_budget") else {
        return;
    };
    let c1 = sb.container("c1");
    let ipam = |behave: &str| json!({"type": "hostile-ipam", "behave": behave});
    let before = NodeState::take(&sb);
    // 40 MiB in the interface plugin and 40 MiB in its IPAM plugin.
    let both = conf(
        "mem",
        "misbehave",
        json!({"behave": "memory-then-ipam", "ipam": ipam("hog")}),
    );
    let e = sb
        .cni("misbehave", "ADD", "c1", Some(&c1), "eth0", &both)
        .err(100);
    assert!(e["msg"].as_str().unwrap().contains("64 MiB"), "{e}");
    before.assert_unchanged(&NodeState::take(&sb), "two guests over the budget");
    // Either alone fits.
    let one = conf(
        "mem",
        "misbehave",
        json!({"behave": "memory-then-ipam", "ipam": ipam("")}),
    );
    sb.cni("misbehave", "ADD", "c1", Some(&c1), "eth0", &one)
        .ok();
}

#[test]
fn a_config_cannot_put_ipam_state_or_code_outside_what_the_node_allows() {
    let Some(mut sb) = Sandbox::for_test("config_outside_policy") else {
        return;
    };
    let c1 = sb.container("c1");
    let before = NodeState::take(&sb);
    // /var/lib is this sandbox's own: even if a check failed, the real one
    // is untouched.
    // (Nor inside another network's store: a network named "lock" in
    // /var/lib/cni/networks/vnet would be a directory where vnet's lock
    // file must be.)
    for dir in [
        "/var/lib",
        "/var/lib/cni/networks/../../victim",
        "/var/lib/cni",
        "/var/lib/cni/networks/vnet",
    ] {
        let cfg = conf(
            "victim",
            "bridge",
            json!({"bridge": "vbr",
            "ipam": {"type": "host-local", "subnet": "10.48.0.0/24", "dataDir": dir}}),
        );
        let e = sb
            .cni("bridge", "ADD", "c1", Some(&c1), "eth0", &cfg)
            .err(7);
        assert!(
            e["msg"].as_str().unwrap().contains("ipam.dataDir"),
            "{dir}: {e}"
        );
        before.assert_unchanged(&NodeState::take(&sb), dir);
    }
    // An IPAM guest's keys stay in its store.
    let cfg = conf(
        "esc",
        "bridge",
        json!({"bridge": "ebr",
        "ipam": {"type": "hostile-ipam", "behave": "escape"}}),
    );
    let e = sb
        .cni("bridge", "ADD", "c1", Some(&c1), "eth0", &cfg)
        .err(100);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("every escape was refused"),
        "{e}"
    );
    before.assert_unchanged(&NodeState::take(&sb), "store keys that try to escape");
    // Code from elsewhere on the node.
    let stray = tempfile::tempdir().unwrap();
    let module = stray.path().join("m.wasm");
    std::fs::copy(
        wasm_cni_tests::install().wasm.join("misbehave.wasm"),
        &module,
    )
    .unwrap();
    let cfg = json!({"cniVersion": "1.0.0", "name": "bad", "type": "wasm-cni",
        "plugin": module.to_str().unwrap(), "behave": "uplink"})
    .to_string();
    let e = sb
        .cni("wasm-cni", "ADD", "c1", Some(&c1), "eth0", &cfg)
        .err(7);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("outside the module directories"),
        "{e}"
    );
    before.assert_unchanged(
        &NodeState::take(&sb),
        "a module outside the module directories",
    );
    assert!(!Path::new("/var/lib/victim").exists());
}

#[test]
fn an_ipam_type_that_is_wasm_cni_itself_is_refused() {
    let Some(mut sb) = Sandbox::for_test("ipam_type_self") else {
        return;
    };
    let c1 = sb.container("c1");
    let before = NodeState::take(&sb);
    // wasm-cni by its name, or through a link that has no module behind
    // it: each level would read the same config and delegate again.
    let sbr = wasm_cni_tests::install().bin.join("sbr");
    let _ = std::os::unix::fs::symlink("wasm-cni", &sbr);
    let cfg = |ty: &str| {
        conf(
            "rec",
            "bridge",
            json!({"bridge": "recbr", "ipam": {"type": ty}}),
        )
    };
    // Not a native IPAM plugin the node allows: refused, and a DEL has
    // nothing to release.
    for ty in ["wasm-cni", "sbr", "ptp"] {
        let e = sb
            .cni("bridge", "ADD", "c1", Some(&c1), "eth0", &cfg(ty))
            .err(7);
        assert!(
            e["msg"]
                .as_str()
                .unwrap()
                .contains("not a native IPAM plugin this node allows"),
            "{ty}: {e}"
        );
        sb.cni("bridge", "DEL", "c1", Some(&c1), "eth0", &cfg(ty))
            .ok();
        before.assert_unchanged(&NodeState::take(&sb), ty);
    }
    // Even if the node's root lists it by mistake.
    sb.use_policy(json!({"version": 1, "ipamPlugins": ["wasm-cni", "sbr"]}));
    for ty in ["wasm-cni", "sbr"] {
        for command in ["ADD", "DEL"] {
            let start = Instant::now();
            let e = sb
                .cni("bridge", command, "c1", Some(&c1), "eth0", &cfg(ty))
                .err(7);
            assert!(
                e["msg"].as_str().unwrap().contains("wasm-cni itself"),
                "{ty} {command}: {e}"
            );
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{:?}",
                start.elapsed()
            );
            before.assert_unchanged(&NodeState::take(&sb), ty);
        }
    }
    // A copy of the binary elsewhere is caught by the mark its parent sets.
    let e = sb
        .cni_env(
            "bridge",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            wasm_cni_tests::CLASSIC,
            &[("WASM_CNI_DELEGATED", "1")],
        )
        .err(7);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("started as an IPAM plugin by wasm-cni"),
        "{e}"
    );
}

#[test]
fn gateways_cannot_capture_the_nodes_routes_or_public_destinations() {
    let Some(mut sb) = Sandbox::for_test("gateway_capture") else {
        return;
    };
    let c1 = sb.container("c1");
    // The node's uplink, and a route to a private range behind its router.
    for cmd in [
        &[
            "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p",
        ][..],
        &["ip", "addr", "add", "192.168.50.10/24", "dev", "uplink0"],
        &["ip", "link", "set", "uplink0", "up"],
        &["ip", "link", "set", "uplink0p", "up"],
        &["ip", "route", "add", "10.2.0.0/16", "via", "192.168.50.1"],
        &["ip", "route", "add", "default", "via", "192.168.50.1"],
        // Kept from going anywhere (as Calico does for its blocks).
        &["ip", "route", "add", "blackhole", "10.50.0.0/16"],
    ] {
        let out = sb.run_in("host", cmd);
        assert!(out.status.success(), "{cmd:?}: {out:?}");
    }
    let cfg = |net: &str, subnet: &str| {
        conf(
            net,
            "bridge",
            json!({"bridge": format!("{net}br"), "isGateway": true,
            "ipam": {"type": "host-local", "subnet": subnet}}),
        )
    };
    let before = NodeState::take(&sb);
    for (net, subnet) in [
        ("routed", "10.2.5.0/24"),    // inside the route to 10.2/16
        ("holed", "10.50.1.0/24"),    // inside a blackhole
        ("covers", "10.0.0.0/8"),     // over it
        ("lan", "192.168.50.0/25"),   // inside the uplink's subnet
        ("public", "9.0.0.0/8"),      // a public resolver's range
        ("public6", "2001:db8::/64"), // outside the default gateway subnets
    ] {
        let out = sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", &cfg(net, subnet));
        denied(&out, subnet);
        before.assert_unchanged(&NodeState::take(&sb), subnet);
    }
    let route = sb.run_in("host", &["ip", "route", "get", "10.2.5.7"]);
    assert!(String::from_utf8_lossy(&route.stdout).contains("uplink0"));
    // A subnet the node policy allows, clear of its routes, works.
    sb.use_policy(json!({"version": 1, "gatewaySubnets": ["9.9.0.0/16"]}));
    sb.cni(
        "bridge",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        &cfg("mine", "9.9.9.0/24"),
    )
    .ok();
    assert!(sb.ping("c1", "9.9.9.1"));
}

#[test]
fn a_bridge_wasm_cni_did_not_make_is_not_taken_over_by_naming_it() {
    let Some(mut sb) = Sandbox::for_test("docker0_takeover") else {
        return;
    };
    let c1 = sb.container("c1");
    sb.container("other");
    // docker0 with its gateway and one container on a veth port.
    let other_ns = sb.ns_path("other");
    let other_ns = other_ns.to_str().unwrap();
    for cmd in [
        &["ip", "link", "add", "docker0", "type", "bridge"][..],
        &["ip", "addr", "add", "172.17.0.1/16", "dev", "docker0"],
        &["ip", "link", "set", "docker0", "up"],
        &[
            "ip", "link", "add", "vethd0", "type", "veth", "peer", "name", "eth0", "netns",
            other_ns,
        ],
        &["ip", "link", "set", "vethd0", "master", "docker0", "up"],
    ] {
        let out = sb.run_in("host", cmd);
        assert!(out.status.success(), "{cmd:?}: {out:?}");
    }
    for cmd in [
        &["ip", "addr", "add", "172.17.0.2/16", "dev", "eth0"][..],
        &["ip", "link", "set", "eth0", "up"],
    ] {
        assert!(sb.run_in("other", cmd).status.success(), "{cmd:?}");
    }
    let before = NodeState::take(&sb);
    let ipam = json!({"type": "host-local", "subnet": "172.17.0.0/16",
        "rangeStart": "172.17.0.100", "gateway": "172.17.0.1"});
    let cfg = conf(
        "evil",
        "bridge",
        json!({"bridge": "docker0", "isGateway": true, "ipam": ipam}),
    );
    denied(
        &sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", &cfg),
        "join docker0",
    );
    before.assert_unchanged(&NodeState::take(&sb), "a config naming docker0");
    for behave in ["foreign-gateway", "gateway-then-fail", "foreign-bridge"] {
        let cfg = conf(
            "evil",
            "misbehave",
            json!({"behave": behave, "bridge": "docker0",
            "target": "docker0", "address": "172.17.0.1/16", "ipam": ipam}),
        );
        denied(
            &sb.cni("misbehave", "ADD", "c1", Some(&c1), "eth0", &cfg),
            behave,
        );
        before.assert_unchanged(&NodeState::take(&sb), behave);
    }
    assert!(
        sb.ping("other", "172.17.0.1"),
        "docker's container keeps its gateway"
    );
}

#[test]
fn a_second_refused_ipam_add_does_not_hide_the_first() {
    let Some(mut sb) = Sandbox::for_test("ipam_twice") else {
        return;
    };
    sb.container("c1");
    let cfg = misbehave("ipam-twice", json!({}));
    fails_cleanly(&sb, "misbehave", &cfg, 100, "(refused)");
}

#[test]
fn ipam_delegations_are_bounded_per_call() {
    let Some(mut sb) = Sandbox::for_test("ipam_loop") else {
        return;
    };
    let c1 = sb.container("c1");
    let cfg = conf(
        "loop",
        "misbehave",
        json!({"behave": "ipam-loop", "ipam": {"type": "hostile-ipam"}}),
    );
    let e = sb
        .cni("misbehave", "ADD", "c1", Some(&c1), "eth0", &cfg)
        .err(100);
    assert!(
        e["msg"].as_str().unwrap().contains("at most 16 times"),
        "{e}"
    );
}

#[test]
fn a_guest_cannot_forge_the_hosts_log_lines() {
    let Some(mut sb) = Sandbox::for_test("forge_log") else {
        return;
    };
    let c1 = sb.container("c1");
    let out = sb.cni_env(
        "misbehave",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        &misbehave("forge-log", json!({})),
        &[("WASM_CNI_LOG", "info")],
    );
    out.err(100);
    assert!(out.stderr.contains("forged line"), "{}", out.stderr);
    for line in out.stderr.lines() {
        assert!(!line.starts_with("wasm-cni[1] "), "forged: {line}");
    }
}

#[test]
fn a_network_cannot_masquerade_another_networks_pod() {
    let Some(mut sb) = Sandbox::for_test("masquerade_other_pod") else {
        return;
    };
    let (cv, ca) = (sb.container("cv"), sb.container("ca"));
    let victim = json!({"cniVersion": "1.0.0", "name": "mynet", "type": "bridge", "bridge": "mybr",
        "isGateway": true, "ipMasq": false, "ipam": {"type": "host-local", "subnet": "10.244.0.0/24"}});
    let r = sb
        .cni(
            "bridge",
            "ADD",
            "cv",
            Some(&cv),
            "eth0",
            &victim.to_string(),
        )
        .ok()
        .json();
    assert_eq!(r["ips"][0]["address"], "10.244.0.2/24");
    // Another network hands out the same address and asks to NAT it.
    let evil = json!({"cniVersion": "1.0.0", "name": "evil", "type": "bridge", "bridge": "evilbr",
        "ipMasq": true, "ipam": {"type": "host-local", "subnet": "10.244.0.0/24",
        "rangeStart": "10.244.0.2", "rangeEnd": "10.244.0.2"}});
    let before = NodeState::take(&sb);
    let out = sb.cni("bridge", "ADD", "ca", Some(&ca), "eth0", &evil.to_string());
    denied(&out, "masquerade another network's pod");
    assert!(
        out.json()["msg"].as_str().unwrap().contains("mybr"),
        "{out:?}"
    );
    before.assert_unchanged(
        &NodeState::take(&sb),
        "a masquerade for another network's pod",
    );
}

#[test]
fn an_ipam_del_inside_a_failed_add_is_put_back() {
    let Some(mut sb) = Sandbox::for_test("ipam_del_in_add") else {
        return;
    };
    sb.container("c1");
    // Another container's reservation in the store the IPAM plugin wipes.
    let store = sb.state_dir("wipe");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("10.45.0.9"), "other").unwrap();
    let cfg = conf(
        "wipe",
        "misbehave",
        json!({"behave": "ipam-del-then-fail",
        "ipam": {"type": "hostile-ipam", "behave": "wipe"}}),
    );
    fails_cleanly(&sb, "misbehave", &cfg, 100, "after IPAM ADD and DEL");
    assert!(
        store.join("10.45.0.9").exists(),
        "the other container's reservation is back"
    );
}

#[test]
fn a_guests_error_is_bounded() {
    let Some(mut sb) = Sandbox::for_test("bounded_error") else {
        return;
    };
    let c1 = sb.container("c1");
    // The guest echoes the unknown behaviour in its error.
    let huge = "A".repeat(1 << 20);
    let out = sb.cni(
        "misbehave",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        &misbehave(&huge, json!({})),
    );
    let e = out.err(7);
    assert!(e["msg"].as_str().unwrap().ends_with("... (cut)"), "cut");
    assert!(
        out.stdout.len() < 32 << 10,
        "{} bytes on stdout",
        out.stdout.len()
    );
    assert!(
        out.stderr.lines().all(|l| l.len() < 64 << 10),
        "a log line stays short"
    );
}

/// `CNI_PATH` with the reference host-local as `ref-host-local`, and a
/// policy that lets configs name it; `None` without the reference plugins.
fn reference_ipam(sb: &mut Sandbox) -> Option<tempfile::TempDir> {
    let reference = wasm_cni_tests::reference_plugins()?;
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        reference.join("host-local"),
        bin.path().join("ref-host-local"),
    )
    .unwrap();
    sb.use_policy(json!({"version": 1, "ipamPlugins": ["ref-host-local"]}));
    Some(bin)
}

#[test]
fn a_native_plugin_reads_the_config_the_host_checked() {
    let Some(mut sb) = Sandbox::for_test("native_reads_checked") else {
        return;
    };
    let Some(bin) = reference_ipam(&mut sb) else {
        eprintln!(
            "SKIPPED a_native_plugin_reads_the_config_the_host_checked: no reference plugins"
        );
        return;
    };
    let c1 = sb.container("c1");
    let path = bin.path().to_str().unwrap();
    // serde_json keeps the last of two keys; Go keeps the first when the
    // second is null, and merges two objects.
    for cfg in [
        r#"{"cniVersion":"1.0.0","name":"dup","type":"bridge","bridge":"dupbr","isGateway":true,
            "ipam":{"type":"ref-host-local","subnet":"10.93.0.0/24","dataDir":"/var/lib/evil","dataDir":null}}"#,
        r#"{"cniVersion":"1.0.0","name":"dup","type":"bridge","bridge":"dupbr","isGateway":true,
            "ipam":{"type":"ref-host-local","subnet":"10.93.0.0/24","dataDir":"/var/lib/evil"},
            "ipam":{"type":"ref-host-local","subnet":"10.93.0.0/24"}}"#,
    ] {
        sb.cni_env(
            "bridge",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            cfg,
            &[("CNI_PATH", path)],
        )
        .ok();
        assert!(
            !sb.varlib.path().join("evil").exists(),
            "state outside the store roots"
        );
        assert_eq!(sb.ip_files("dup").len(), 1, "in the default store");
        sb.cni_env(
            "bridge",
            "DEL",
            "c1",
            Some(&c1),
            "eth0",
            cfg,
            &[("CNI_PATH", path)],
        )
        .ok();
        assert!(sb.ip_files("dup").is_empty());
    }
}

#[test]
fn a_native_plugin_is_not_asked_to_read_a_file_for_the_config() {
    let Some(mut sb) = Sandbox::for_test("native_resolvconf") else {
        return;
    };
    let Some(bin) = reference_ipam(&mut sb) else {
        eprintln!("SKIPPED a_native_plugin_is_not_asked_to_read_a_file: no reference plugins");
        return;
    };
    let c1 = sb.container("c1");
    std::fs::write(
        sb.varlib.path().join("secret"),
        "nameserver 10.1.2.3\nsearch secret-token\n",
    )
    .unwrap();
    let cfg = conf(
        "rc",
        "bridge",
        json!({"bridge": "rcbr",
        "ipam": {"type": "ref-host-local", "subnet": "10.94.0.0/24", "resolvConf": "/var/lib/secret"}}),
    );
    let before = NodeState::take(&sb);
    let out = sb.cni_env(
        "bridge",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        &cfg,
        &[("CNI_PATH", bin.path().to_str().unwrap())],
    );
    let e = out.err(7);
    assert!(e["msg"].as_str().unwrap().contains("resolvConf"), "{e}");
    assert!(!out.stdout.contains("secret-token"));
    before.assert_unchanged(&NodeState::take(&sb), "a resolvConf for a native plugin");
}

#[test]
fn a_masquerade_made_before_a_gateway_keeps_another_network_off_its_subnet() {
    let Some(mut sb) = Sandbox::for_test("masquerade_squat") else {
        return;
    };
    let (ca, cv) = (sb.container("ca"), sb.container("cv"));
    // No gateway on the node, so no route says whose 10.51.0.2 is yet.
    let first = json!({"cniVersion": "1.0.0", "name": "first", "type": "bridge", "bridge": "firstbr",
        "ipMasq": true, "ipam": {"type": "host-local", "subnet": "10.51.0.0/24"}});
    sb.cni("bridge", "ADD", "ca", Some(&ca), "eth0", &first.to_string())
        .ok();
    let before = NodeState::take(&sb);
    // A later network routing that subnet would have its pods NATed by it.
    let later = json!({"cniVersion": "1.0.0", "name": "later", "type": "bridge", "bridge": "laterbr",
        "isGateway": true, "ipMasq": false, "ipam": {"type": "host-local", "subnet": "10.51.0.0/24"}});
    let out = sb.cni("bridge", "ADD", "cv", Some(&cv), "eth0", &later.to_string());
    denied(&out, "a gateway over another network's masquerade");
    assert!(
        out.json()["msg"].as_str().unwrap().contains("masquerades"),
        "{out:?}"
    );
    before.assert_unchanged(
        &NodeState::take(&sb),
        "a gateway over another network's masquerade",
    );
    // The same network's next pod gets its gateway.
    let again = json!({"cniVersion": "1.0.0", "name": "first", "type": "bridge", "bridge": "firstbr",
        "isGateway": true, "ipMasq": true, "ipam": {"type": "host-local", "subnet": "10.51.0.0/24"}});
    sb.cni("bridge", "ADD", "cv", Some(&cv), "eth0", &again.to_string())
        .ok();
}

#[test]
fn a_spoof_check_reaches_only_the_calls_own_port_and_goes_with_del() {
    let Some(mut sb) = Sandbox::for_test("spoof_wildcard") else {
        return;
    };
    let (c1, c2) = (sb.container("c1"), sb.container("c2"));
    let good = json!({"cniVersion": "1.0.0", "name": "good", "type": "bridge", "bridge": "goodbr",
        "isGateway": true, "ipam": {"type": "host-local", "subnet": "10.48.0.0/24"}});
    sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", &good.to_string())
        .ok();
    assert!(sb.ping("c1", "10.48.0.1"));
    // A port named `veth*`: nftables reads a trailing `*` in a name as a
    // prefix, so a rule by name would drop every pod's frames.
    let cfg = misbehave("spoof-wildcard", json!({}));
    sb.cni("misbehave", "ADD", "c2", Some(&c2), "eth0", &cfg)
        .ok();
    assert!(sb.nft().contains("wasm-cni bad c2 eth0"), "{}", sb.nft());
    assert!(
        sb.ping("c1", "10.48.0.1"),
        "another network's pod is untouched"
    );
    // Its DEL removes nothing itself: the host removes the attachment's
    // rules anyway.
    sb.cni("misbehave", "DEL", "c2", Some(&c2), "eth0", &cfg)
        .ok();
    assert!(!sb.nft().contains("wasm-cni bad c2 eth0"), "{}", sb.nft());
}

#[test]
fn a_vlan_gateway_needs_its_peer_on_the_bridge_to_be_marked() {
    let Some(mut sb) = Sandbox::for_test("mark_container_peer") else {
        return;
    };
    sb.container("c1");
    let cfg = misbehave("mark-container-peer", json!({}));
    fails_cleanly(&sb, "misbehave", &cfg, 100, "denied: mark \"bra.5\"");
}

/// A misbehave config of network `net` on bridge `bridge`, with IPAM in
/// `subnet`, merged with `extra`.
fn on_bridge(net: &str, bridge: &str, subnet: &str, extra: Value) -> String {
    let mut e = extra;
    e["bridge"] = json!(bridge);
    e["ipam"] = json!({"type": "host-local", "subnet": subnet});
    conf(net, "misbehave", e)
}

/// An ADD in `c_fail` that fails after a pause (`failing` sleeps 2 s),
/// and meanwhile a successful one in `c_join`.
fn fail_while_another_joins(
    sb: &Sandbox,
    c_fail: &str,
    failing: &str,
    c_join: &str,
    joining: &str,
) {
    let (fail_ns, join_ns) = (sb.ns_path(c_fail), sb.ns_path(c_join));
    let failed = spawn_with_stdin(
        sb.cni_command("misbehave", "ADD", c_fail, Some(&fail_ns), "eth0", &[]),
        failing,
    );
    std::thread::sleep(Duration::from_millis(700));
    sb.cni("misbehave", "ADD", c_join, Some(&join_ns), "eth0", joining)
        .ok();
    finish(failed).err(100);
}

#[test]
fn a_failed_add_keeps_a_vlan_gateway_another_attachment_relies_on() {
    let Some(mut sb) = Sandbox::for_test("vlan_gateway_kept") else {
        return;
    };
    let c1 = sb.container("c1");
    sb.container("c2");
    sb.container("c3");
    let with = |extra| on_bridge("vr", "brv", "10.49.0.0/24", extra);
    sb.cni(
        "misbehave",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        &with(json!({"behave": "vlan-gateway-setup"})),
    )
    .ok();
    // c2 puts the gateway on brv.5 and fails later; meanwhile c3 joins and
    // uses it.
    fail_while_another_joins(
        &sb,
        "c2",
        &with(json!({"behave": "vlan-gateway-then-fail", "sleepMs": 2000})),
        "c3",
        &with(json!({"behave": "join-late"})),
    );
    let gw = sb.addresses("host", "brv.5");
    assert!(gw.contains(&"10.49.0.1/24".to_string()), "{gw:?}");
    assert!(sb.ping("c3", "10.49.0.1"), "the survivor keeps its gateway");
}

#[test]
fn a_vlan_gateway_a_failed_add_made_goes_unless_another_attachment_adopted_it() {
    let Some(mut sb) = Sandbox::for_test("vlan_gateway_adopted") else {
        return;
    };
    sb.container("c1");
    sb.container("c2");
    let with = |extra| on_bridge("vw", "brw", "10.50.0.0/24", extra);
    // Alone: everything it made goes.
    let alone = with(json!({"behave": "vlan-gateway-made-then-fail"}));
    fails_cleanly(
        &sb,
        "misbehave",
        &alone,
        100,
        "after making the VLAN gateway",
    );
    // With c2 joining the bridge and using the gateway meanwhile: it stays.
    fail_while_another_joins(
        &sb,
        "c1",
        &with(json!({"behave": "vlan-gateway-made-then-fail", "sleepMs": 2000})),
        "c2",
        &with(json!({"behave": "join-late"})),
    );
    let gw = sb.addresses("host", "brw.5");
    assert!(
        gw.contains(&"10.50.0.1/24".to_string()),
        "{:?}",
        sb.links("host")
    );
    assert!(sb.ping("c2", "10.50.0.1"), "the adopter keeps its gateway");
}

#[test]
fn an_add_that_deletes_its_spoof_checked_port_fails_and_leaves_no_rule() {
    let Some(mut sb) = Sandbox::for_test("spoof_port_deleted") else {
        return;
    };
    sb.container("c1");
    let cfg = misbehave("spoof-then-delete-port", json!({}));
    fails_cleanly(&sb, "misbehave", &cfg, 100, "spoof check on is gone");
}

/// A DEL whose container link cannot be deleted (here the container put
/// its loopback under the name) fails before IPAM DEL: the address stays
/// reserved while a link may still hold it on the bridge, and the next pod
/// cannot be given it.
#[test]
fn a_del_that_cannot_delete_the_link_keeps_the_address() {
    let Some(mut sb) = Sandbox::for_test("del_keeps_address") else {
        return;
    };
    let c1 = sb.container("c1");
    let classic = |command| {
        let config = wasm_cni_tests::CLASSIC;
        sb.cni("bridge", command, "c1", Some(&c1), "eth0", config)
    };
    let r = classic("ADD").ok().json();
    assert_eq!(r["ips"][0]["address"], "10.244.0.2/16", "{r}");
    for cmd in [
        &["ip", "link", "set", "eth0", "down"][..],
        &["ip", "link", "set", "eth0", "name", "eth9"],
        &["ip", "link", "set", "lo", "name", "eth0"],
        &["ip", "link", "set", "eth9", "up"],
    ] {
        assert!(sb.run_in("c1", cmd).status.success(), "{cmd:?}");
    }
    let out = classic("DEL");
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("delete eth0"), "{out:?}");
    assert_eq!(
        sb.ip_files("mynet"),
        ["10.244.0.2"],
        "the address is still reserved"
    );
    assert_eq!(
        sb.host_veths().len(),
        1,
        "eth9's peer is still on the bridge"
    );
}
