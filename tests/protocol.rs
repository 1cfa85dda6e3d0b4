//! The CNI protocol through the real binary: VERSION, and every bad input
//! that must end in one JSON error on stdout, the spec's code and exit 1
//! before anything is touched. No root needed.

use serde_json::Value;
use std::process::Command;
use wasm_cni_tests::{CLASSIC, CniOutput, install, sandbox::run_with_stdin};

struct Call<'a> {
    plugin: &'a str,
    env: Vec<(&'a str, String)>,
}

fn call(plugin: &str) -> Call<'_> {
    Call {
        plugin,
        env: vec![
            ("CNI_COMMAND", "ADD".into()),
            ("CNI_CONTAINERID", "c1".into()),
            ("CNI_NETNS", "/var/run/netns/does-not-exist".into()),
            ("CNI_IFNAME", "eth0".into()),
            ("CNI_PATH", install().bin.display().to_string()),
        ],
    }
}

impl<'a> Call<'a> {
    fn set(mut self, k: &'a str, v: &str) -> Self {
        self.env.retain(|(n, _)| *n != k);
        self.env.push((k, v.to_string()));
        self
    }

    fn unset(mut self, k: &str) -> Self {
        self.env.retain(|(n, _)| *n != k);
        self
    }

    fn run(&self, stdin: &str) -> CniOutput {
        let inst = install();
        let cache = tempfile::tempdir().unwrap();
        let mut c = Command::new(inst.bin.join(self.plugin));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WASM_CNI_MODULE_PATH", &inst.wasm)
            .env("WASM_CNI_POLICY", &inst.policy)
            .env("WASM_CNI_CACHE_DIR", cache.path());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        run_with_stdin(c, stdin)
    }
}

/// Exit 1, exactly one JSON document on stdout: the error.
#[track_caller]
fn expect_error(out: &CniOutput, code: u64, text: &str) -> Value {
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "one document on stdout: {out:?}"
    );
    let j = out.json();
    assert_eq!(j["code"].as_u64(), Some(code), "{out:?}");
    let all = format!(
        "{} {}",
        j["msg"].as_str().unwrap_or(""),
        j["details"].as_str().unwrap_or("")
    );
    assert!(all.contains(text), "expected {text:?} in {all}");
    assert!(j["cniVersion"].is_string(), "{j}");
    j
}

#[test]
fn version_lists_every_supported_version_and_echoes_the_asked_one() {
    let all = [
        "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
    ];
    for v in all {
        let out = call("bridge")
            .set("CNI_COMMAND", "VERSION")
            .run(&format!(r#"{{"cniVersion":"{v}"}}"#));
        assert_eq!(out.code, 0, "{out:?}");
        let j = out.json();
        assert_eq!(j["cniVersion"], v);
        assert_eq!(j["supportedVersions"], serde_json::json!(all));
    }
}

#[test]
fn version_probe_as_podman_sends_it() {
    // podman 4 probes with an empty container id and dummy values.
    let out = call("bridge")
        .set("CNI_COMMAND", "VERSION")
        .set("CNI_CONTAINERID", "")
        .set("CNI_NETNS", "dummy")
        .set("CNI_IFNAME", "dummy")
        .set("CNI_PATH", "dummy")
        .run(r#"{"cniVersion":"1.0.0"}"#);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["cniVersion"], "1.0.0");
}

#[test]
fn environment_errors_are_code_4() {
    expect_error(
        &call("bridge").unset("CNI_COMMAND").run(CLASSIC),
        4,
        "CNI_COMMAND",
    );
    expect_error(
        &call("bridge").set("CNI_COMMAND", "ATTACH").run(CLASSIC),
        4,
        "ATTACH",
    );
    expect_error(
        &call("bridge").unset("CNI_NETNS").run(CLASSIC),
        4,
        "CNI_NETNS",
    );
    expect_error(
        &call("bridge")
            .unset("CNI_IFNAME")
            .set("CNI_COMMAND", "DEL")
            .run(CLASSIC),
        4,
        "CNI_IFNAME",
    );
    expect_error(
        &call("bridge")
            .set("CNI_CONTAINERID", "no/slash")
            .run(CLASSIC),
        4,
        "CNI_CONTAINERID",
    );
    expect_error(
        &call("bridge")
            .set("CNI_IFNAME", "much-too-long-ifname")
            .run(CLASSIC),
        4,
        "15 bytes",
    );
    expect_error(
        &call("bridge")
            .set("CNI_ARGS", "IgnoreUnknown=1;broken")
            .run(CLASSIC),
        4,
        "broken",
    );
}

#[test]
fn config_errors_name_the_field() {
    expect_error(&call("bridge").run("{not json"), 6, "not valid JSON");
    expect_error(&call("bridge").run(""), 6, "not valid JSON");
    expect_error(
        &call("bridge").run(r#"{"cniVersion":1,"name":"n","type":"bridge"}"#),
        7,
        "cniVersion",
    );
    expect_error(
        &call("bridge").run(r#"{"cniVersion":"1.0.0","type":"bridge"}"#),
        7,
        "\"name\"",
    );
    expect_error(
        &call("bridge").run(r#"{"cniVersion":"1.0.0","name":"a/b"}"#),
        7,
        "network name",
    );
    expect_error(
        &call("bridge").run(r#"{"cniVersion":"1.0.0","name":"n","ipam":"host-local"}"#),
        7,
        "ipam",
    );
    expect_error(
        &call("bridge")
            .run(r#"{"cniVersion":"1.0.0","name":"n","prevResult":{"ips":[{"address":"bogus"}]}}"#),
        6,
        "prevResult",
    );
}

#[test]
fn unsupported_versions_are_code_1_with_what_is_supported() {
    let j = expect_error(
        &call("bridge").run(&CLASSIC.replace("0.3.1", "9.9.9")),
        1,
        "incompatible",
    );
    assert_eq!(
        j["details"],
        r#"config is "9.9.9", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]"#
    );
    expect_error(
        &call("bridge").run(&CLASSIC.replace("0.3.1", "0.5.0")),
        1,
        "0.5.0",
    );
    // CHECK came with 0.4.0.
    expect_error(
        &call("bridge").set("CNI_COMMAND", "CHECK").run(CLASSIC),
        1,
        "CHECK",
    );
}

#[test]
fn gc_and_status_below_1_1_0_are_code_1() {
    // Refused before anything is touched (so safe outside a sandbox); the
    // 1.1.0 behaviour is in tests/lifecycle.rs, in namespaces.
    for cmd in ["GC", "STATUS"] {
        expect_error(
            &call("bridge").set("CNI_COMMAND", cmd).run(CLASSIC),
            1,
            "needs 1.1.0",
        );
    }
}

#[test]
fn module_resolution_errors() {
    // Called by its own name, the config must say which module to run.
    expect_error(&call("wasm-cni").run(CLASSIC), 7, "\"plugin\"");
    let cfg = CLASSIC.replace(
        r#""type":"bridge""#,
        r#""type":"wasm-cni","plugin":"no-such-plugin""#,
    );
    expect_error(&call("wasm-cni").run(&cfg), 7, "no-such-plugin.wasm");
    let cfg = CLASSIC.replace(
        r#""type":"bridge""#,
        r#""type":"wasm-cni","plugin":"relative/bridge.wasm""#,
    );
    expect_error(&call("wasm-cni").run(&cfg), 7, "absolute path");
}

#[test]
fn a_bad_netns_is_refused_before_the_guest_runs() {
    expect_error(&call("bridge").run(CLASSIC), 4, "does-not-exist");
    expect_error(
        &call("bridge")
            .set("CNI_NETNS", "/etc/hostname")
            .run(CLASSIC),
        4,
        "not a usable network namespace",
    );
    // The plugin's own namespace is the node's, never a container's:
    // the reference's ErrInvalidNetNS.
    expect_error(
        &call("bridge")
            .set("CNI_NETNS", "/proc/self/ns/net")
            .run(CLASSIC),
        8,
        "node's own",
    );
}

#[test]
fn logs_never_reach_stdout() {
    let out = call("bridge").set("WASM_CNI_LOG", "debug").run(CLASSIC);
    assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr.contains("wasm-cni["),
        "logs go to stderr: {out:?}"
    );
}

// --- The node policy and what a config may name. No root needed: each is
// refused before a namespace is opened.

fn with_policy(policy: &wasm_cni_tests::Policy) -> Call<'_> {
    call("bridge").set("WASM_CNI_POLICY", policy.path.to_str().unwrap())
}

#[test]
fn a_broken_or_unsafe_policy_fails_every_call_closed() {
    use std::os::unix::fs::PermissionsExt;
    let cases = [
        ("{\"version\": 1,", "EOF while parsing"),
        (
            r#"{"version": 1, "storeRoot": ["/srv"]}"#,
            "unknown field `storeRoot`",
        ),
        (r#"{"version": 2}"#, "reads version 1"),
        (r#"{"version": 1, "storeRoots": ["/"]}"#, "anywhere"),
    ];
    for (text, want) in cases {
        let policy = wasm_cni_tests::Policy::new(serde_json::json!({}));
        std::fs::write(&policy.path, text).unwrap();
        for command in ["VERSION", "ADD", "DEL"] {
            let out = with_policy(&policy)
                .set("CNI_COMMAND", command)
                .run(CLASSIC);
            let e = expect_error(&out, 7, want);
            assert!(
                e["msg"]
                    .as_str()
                    .unwrap()
                    .contains(policy.path.to_str().unwrap()),
                "names the file: {e}"
            );
        }
    }
    // Others could change it: as good as someone else's policy.
    let open = wasm_cni_tests::Policy::new(serde_json::json!({"version": 1}));
    std::fs::set_permissions(&open.path, std::fs::Permissions::from_mode(0o666)).unwrap();
    expect_error(
        &with_policy(&open).run(CLASSIC),
        7,
        "writable by group or others",
    );
    // A file the environment names must exist.
    expect_error(
        &call("bridge")
            .set("WASM_CNI_POLICY", "/nonexistent/policy.json")
            .run(CLASSIC),
        7,
        "/nonexistent/policy.json",
    );
}

/// A module outside the test install's module directory.
fn stray_module() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("loopback.wasm");
    std::fs::copy(install().wasm.join("loopback.wasm"), &p).unwrap();
    let s = p.to_str().unwrap().to_string();
    (dir, s)
}

#[test]
fn a_config_loads_modules_only_from_the_module_directories() {
    let (_dir, stray) = stray_module();
    let cfg = |plugin: &str| {
        serde_json::json!({"cniVersion": "1.0.0", "name": "n", "type": "wasm-cni", "plugin": plugin})
            .to_string()
    };
    let e = expect_error(
        &call("wasm-cni").run(&cfg(&stray)),
        7,
        "outside the module directories",
    );
    assert!(e["msg"].as_str().unwrap().contains(&stray), "names it: {e}");
    // Inside them, by path: loaded (and then refused for its namespace).
    let inside = install().wasm.join("loopback.wasm");
    expect_error(
        &call("wasm-cni").run(&cfg(inside.to_str().unwrap())),
        4,
        "does-not-exist",
    );
    // The node may allow modules elsewhere.
    let open = wasm_cni_tests::Policy::new(
        serde_json::json!({"version": 1, "allowModulesOutsideModuleDirs": true}),
    );
    expect_error(
        &call("wasm-cni")
            .set("WASM_CNI_POLICY", open.path.to_str().unwrap())
            .run(&cfg(&stray)),
        4,
        "does-not-exist",
    );
    // Names are one path component, for "plugin" and "ipam.type" alike.
    for bad in ["../loopback", "sub/loopback", ".loopback"] {
        expect_error(&call("wasm-cni").run(&cfg(bad)), 7, "plugin");
        let ipam = CLASSIC.replace(r#""type":"host-local""#, &format!(r#""type":"{bad}""#));
        expect_error(&call("bridge").run(&ipam), 7, "ipam.type");
    }
    let ipam = CLASSIC.replace(r#""type":"host-local""#, &format!(r#""type":"{stray}""#));
    expect_error(&call("bridge").run(&ipam), 7, "ipam.type");
}

#[test]
fn ipam_state_stays_in_the_store_roots() {
    let cfg = |dir: &str| {
        CLASSIC.replace(
            r#""type":"host-local","#,
            &format!(r#""type":"host-local","dataDir":"{dir}","#),
        )
    };
    for bad in [
        "/",
        "/etc",
        "/var/lib/cni",
        "/var/lib/cni/networks/../results",
        "/var/lib/cni/networksX",
    ] {
        expect_error(&call("bridge").run(&cfg(bad)), 7, "ipam.dataDir");
    }
    // A root itself is fine (the call goes on to its namespace); beneath
    // one is not: a store there could sit inside another network's.
    expect_error(
        &call("bridge").run(&cfg("/run/cni/networks")),
        4,
        "does-not-exist",
    );
    for beneath in ["/run/cni/networks/sub", "/var/lib/cni/networks/vnet"] {
        expect_error(&call("bridge").run(&cfg(beneath)), 7, "ipam.dataDir");
    }
    // The node may add roots.
    let roots =
        wasm_cni_tests::Policy::new(serde_json::json!({"version": 1, "storeRoots": ["/srv/ipam"]}));
    expect_error(
        &with_policy(&roots).run(&cfg("/srv/ipam")),
        4,
        "does-not-exist",
    );
    expect_error(
        &with_policy(&roots).run(&cfg("/var/lib/cni/networks")),
        7,
        "/srv/ipam",
    );
    // Go plugins read keys without regard to case: one spelling only.
    let variant = CLASSIC.replace(
        r#""type":"host-local","#,
        r#""type":"host-local","DataDir":"/tmp/x","#,
    );
    expect_error(&call("bridge").run(&variant), 7, "spelled differently");
    // And the network name becomes one directory, never a path.
    for bad in ["../etc", "a/b", ".x"] {
        expect_error(
            &call("bridge")
                .run(&CLASSIC.replace(r#""name":"mynet""#, &format!(r#""name":"{bad}""#))),
            7,
            "network name",
        );
    }
}

#[test]
fn modules_over_the_size_cap_are_refused() {
    let small =
        wasm_cni_tests::Policy::new(serde_json::json!({"version": 1, "maxModuleBytes": 1000}));
    let e = expect_error(&with_policy(&small).run(CLASSIC), 101, "maxModuleBytes");
    assert!(e["msg"].as_str().unwrap().contains("bridge.wasm"), "{e}");
}

#[test]
fn a_fifo_as_cni_netns_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("netns");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let start = std::time::Instant::now();
    expect_error(
        &call("bridge")
            .set("CNI_NETNS", fifo.to_str().unwrap())
            .run(CLASSIC),
        4,
        "not a namespace file",
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_held_compile_lock_delays_a_cold_start_only_until_its_deadline() {
    // Another process compiling (or stuck) holds the cache's compile lock.
    let cache = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        cache.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let lock = std::fs::File::create(cache.path().join(".compile.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let start = std::time::Instant::now();
    let inst = install();
    let mut c = Command::new(inst.bin.join("bridge"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WASM_CNI_MODULE_PATH", &inst.wasm)
        .env("WASM_CNI_POLICY", &inst.policy)
        .env("WASM_CNI_CACHE_DIR", cache.path())
        .env("WASM_CNI_TIMEOUT", "4");
    for (k, v) in &call("bridge").env {
        c.env(k, v);
    }
    let child = wasm_cni_tests::sandbox::spawn_with_stdin(c, CLASSIC);
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(30));
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    });
    let out = wasm_cni_tests::sandbox::finish(child);
    drop(watchdog);
    // It compiled without the lock after a quarter of its time, and went
    // on to the (missing) namespace.
    expect_error(&out, 4, "does-not-exist");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    drop(lock);
}
