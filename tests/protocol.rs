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
    for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let out = call("bridge")
            .set("CNI_COMMAND", "VERSION")
            .run(&format!(r#"{{"cniVersion":"{v}"}}"#));
        assert_eq!(out.code, 0, "{out:?}");
        let j = out.json();
        assert_eq!(j["cniVersion"], v);
        assert_eq!(
            j["supportedVersions"],
            serde_json::json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
        );
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
        &call("bridge").run(r#"{"name":"n","type":"bridge"}"#),
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
        r#"config is "9.9.9", plugin supports ["0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]"#
    );
    expect_error(
        &call("bridge").run(&CLASSIC.replace("0.3.1", "0.2.0")),
        1,
        "0.2.0",
    );
    // CHECK came with 0.4.0.
    expect_error(
        &call("bridge").set("CNI_COMMAND", "CHECK").run(CLASSIC),
        1,
        "CHECK",
    );
}

#[test]
fn gc_and_status_are_a_clean_not_supported_yet() {
    let cfg = CLASSIC.replace("0.3.1", "1.1.0");
    for cmd in ["GC", "STATUS"] {
        expect_error(
            &call("bridge").set("CNI_COMMAND", cmd).run(&cfg),
            4,
            "not supported yet",
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
    // The plugin's own namespace is the node's, never a container's.
    expect_error(
        &call("bridge")
            .set("CNI_NETNS", "/proc/self/ns/net")
            .run(CLASSIC),
        4,
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
