//! Golden outputs of `wasm-cni inspect` and `wasm-cni plan`, on a fixture
//! module committed to the repository (`tests/fixtures/loopback.wasm`, the
//! loopback example as built once): they change when the commands do, not
//! with every build. `WASM_CNI_BLESS=1` rewrites them.
//!
//! `plan` runs in network namespaces made for the test (the node's and a
//! container's), as root and then as `nobody`, who can read neither the
//! container's namespace nor nftables: those it prints as unknown.

use std::path::{Path, PathBuf};
use std::process::Command;
use wasm_cni_tests::{host_binary, root_or_skip};

const FIXTURE_SHA256: &str = "c2a8a0686cf89fd0b42ca1a8fa4ebac505c14337c97a9a5dff349a1321cbe2b2";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/loopback.wasm")
}

/// Compare with `tests/golden/<name>`, or write it when blessing.
fn golden(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(name);
    if std::env::var_os("WASM_CNI_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (WASM_CNI_BLESS=1 writes it)", path.display()));
    assert!(
        got == want,
        "{name} differs from the golden output ({}):\n--- got\n{got}\n--- want\n{want}",
        path.display()
    );
}

/// A module directory with the fixture, a policy pinning it, a cache.
struct Layout {
    dir: tempfile::TempDir,
}

impl Layout {
    fn new() -> Layout {
        let dir = tempfile::Builder::new()
            .prefix("wcni-golden")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("wasm")).unwrap();
        std::fs::copy(fixture(), dir.path().join("wasm/loopback.wasm")).unwrap();
        std::fs::write(
            dir.path().join("policy.json"),
            format!(r#"{{"version":1,"modulePins":{{"loopback":"{FIXTURE_SHA256}"}}}}"#),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        // Readable by nobody too (the plan runs as nobody).
        for p in ["", "wasm", "wasm/loopback.wasm", "policy.json"] {
            let mode = if p.ends_with(".wasm") || p.ends_with(".json") {
                0o644
            } else {
                0o755
            };
            std::fs::set_permissions(dir.path().join(p), std::fs::Permissions::from_mode(mode))
                .unwrap();
        }
        Layout { dir }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(host_binary());
        c.args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("WASM_CNI_MODULE_PATH", self.dir.path().join("wasm"))
            .env("WASM_CNI_POLICY", self.dir.path().join("policy.json"))
            .env("WASM_CNI_CACHE_DIR", self.dir.path().join("cache"));
        c
    }

    /// Output with this layout's paths written as `$DIR`.
    fn scrub(&self, out: &[u8]) -> String {
        String::from_utf8_lossy(out).replace(&self.dir.path().display().to_string(), "$DIR")
    }
}

#[test]
fn inspect_shows_role_contract_imports_digest_cache_and_pin() {
    assert_eq!(
        sha256_hex(&std::fs::read(fixture()).unwrap()),
        FIXTURE_SHA256,
        "the fixture changed: bless the goldens and update FIXTURE_SHA256"
    );
    let l = Layout::new();
    let out = l.command(&["inspect", "loopback"]).output().unwrap();
    assert!(out.status.success(), "{}", l.scrub(&out.stdout));
    golden("inspect-loopback.txt", &l.scrub(&out.stdout));
    let out = l
        .command(&["inspect", "loopback", "--json"])
        .output()
        .unwrap();
    golden("inspect-loopback.json", &l.scrub(&out.stdout));
    // Inspecting wrote nothing: no cache appeared.
    assert!(!l.dir.path().join("cache").exists());

    // Compiled and vouched for, it says so.
    let compiled = l.command(&["compile", "loopback"]).output().unwrap();
    assert!(compiled.status.success(), "{}", l.scrub(&compiled.stdout));
    let out = l
        .command(&["inspect", "loopback", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for e in v["cache"].as_array().unwrap() {
        assert_eq!(
            (&e["compiled"], &e["vouched"]),
            (&true.into(), &true.into()),
            "{e}"
        );
    }
}

#[test]
fn inspect_says_why_a_module_would_be_refused() {
    let l = Layout::new();
    // A pin that does not match.
    std::fs::write(
        l.dir.path().join("policy.json"),
        format!(
            r#"{{"version":1,"modulePins":{{"loopback":"{}"}}}}"#,
            "0".repeat(64)
        ),
    )
    .unwrap();
    let out = l
        .command(&["inspect", "loopback", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["pin"]
            .as_str()
            .unwrap()
            .starts_with("refused: module \"loopback\" is pinned"),
        "{v}"
    );
    // Not a component at all.
    std::fs::write(l.dir.path().join("wasm/core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let out = l.command(&["inspect", "core"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        l.scrub(&out.stdout).contains("not a component"),
        "{}",
        l.scrub(&out.stdout)
    );
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// `ip netns add` now, `ip netns del` when dropped.
struct Netns(String);

impl Netns {
    fn add(what: &str) -> Netns {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("wcni-plan-{what}{n}-{}", std::process::id());
        assert!(
            Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .unwrap()
                .success()
        );
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn plan_lists_calls_changes_result_and_what_it_could_not_read() {
    if !root_or_skip("plan_lists_calls_changes_result_and_what_it_could_not_read") {
        return;
    }
    let l = Layout::new();
    let (node, container) = (Netns::add("node"), Netns::add("ctr"));
    let netns = format!("/run/netns/{}", container.0);
    let conf = r#"{"cniVersion":"1.0.0","name":"plannet","type":"loopback"}"#;
    // Where nobody could create it.
    let log = PathBuf::from(format!("/tmp/wcni-plan-log-{}", std::process::id()));
    for (who, golden_name) in [
        ("root", "plan-loopback-root.txt"),
        ("nobody", "plan-loopback-nobody.txt"),
    ] {
        let bin = host_binary();
        let mut args = vec!["netns", "exec", &node.0];
        if who == "nobody" {
            args.extend([
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "--",
            ]);
        }
        let c = l.command(&[]);
        let mut cmd = Command::new("ip");
        cmd.args(&args)
            .arg(&bin)
            .arg("plan")
            .envs(c.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .env_remove("WASM_CNI_CACHE_DIR")
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", "plan-test")
            .env("CNI_NETNS", &netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            // Without root, seeding logs (nftables cannot be read): still
            // no log file of the node's.
            .env("WASM_CNI_LOG_FILE", &log)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = l.scrub(&out.stdout).replace(&netns, "$NETNS");
        assert!(out.status.success(), "{who}: {text}");
        golden(golden_name, &text);
        // Nothing changed: lo in the container is still down.
        let lo = Command::new("ip")
            .args(["-n", &container.0, "-o", "link", "show", "lo"])
            .output()
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&lo.stdout).contains(",UP"),
            "{who} changed the container"
        );
        assert!(!log.exists(), "{who}: plan wrote WASM_CNI_LOG_FILE");
    }
}

/// Run `wasm-cni plan --json` in `node`'s namespace with this layout,
/// `CNI_*` from `env`, the config on stdin, as root.
fn plan_json(l: &Layout, node: &Netns, env: &[(&str, &str)], conf: &str) -> serde_json::Value {
    let mut cmd = Command::new("ip");
    let c = l.command(&[]);
    cmd.args(["netns", "exec", &node.0])
        .arg(host_binary())
        .args(["plan", "--json"])
        .envs(c.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env_remove("WASM_CNI_CACHE_DIR")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn with_module(l: &Layout, name: &str, crate_name: &str) {
    let to = l.dir.path().join(format!("wasm/{name}.wasm"));
    std::fs::copy(wasm_cni_tests::module(crate_name), &to).unwrap();
}

#[test]
fn plan_neither_writes_nor_reads_beyond_what_a_call_may() {
    if !root_or_skip("plan_neither_writes_nor_reads_beyond_what_a_call_may") {
        return;
    }
    let l = Layout::new();
    with_module(&l, "host-local", "host-local");
    let t = l.dir.path();
    // A directory the policy allows for resolv.conf, a link in it to a
    // secret outside, a file a `..` path reaches.
    std::fs::create_dir(t.join("dns")).unwrap();
    std::fs::write(t.join("secret"), "nameserver 10.66.6.6\n").unwrap();
    std::os::unix::fs::symlink(t.join("secret"), t.join("dns/resolv.conf")).unwrap();
    std::fs::write(t.join("victim"), "keep").unwrap();
    std::fs::write(
        t.join("policy.json"),
        format!(
            r#"{{"version":1,"resolvConfDirs":["{}"]}}"#,
            t.join("dns").display()
        ),
    )
    .unwrap();
    let (node, container) = (Netns::add("node"), Netns::add("ctr"));
    let netns = format!("/run/netns/{}", container.0);
    let log = t.join("plan.log");
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "plan-files"),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("WASM_CNI_LOG", "debug"),
        ("WASM_CNI_LOG_FILE", log.to_str().unwrap()),
    ];
    let climb = format!("{}/../victim", t.join("dns").display());
    let link = t.join("dns/resolv.conf").display().to_string();
    for (file, why) in [
        (climb.as_str(), "a path that climbs out"),
        (link.as_str(), "a link"),
    ] {
        let conf = serde_json::json!({"cniVersion":"1.0.0","name":"plannet","type":"host-local",
            "ipam":{"type":"host-local","subnet":"10.77.0.0/24","resolvConf":file}})
        .to_string();
        let plan = plan_json(&l, &node, &env, &conf);
        // Refused as the call refuses it, and nothing of the files shown.
        assert_eq!(plan["exitCode"], 1, "{why}: {plan}");
        assert!(!plan.to_string().contains("10.66.6.6"), "{why}: {plan}");
    }
    assert_eq!(std::fs::read_to_string(t.join("victim")).unwrap(), "keep");
    assert!(!log.exists(), "plan wrote WASM_CNI_LOG_FILE");
    // The node's own namespace as the container's: refused, code 8.
    let env_self = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "plan-self"),
        ("CNI_NETNS", "/proc/self/ns/net"),
        ("CNI_IFNAME", "eth0"),
    ];
    let conf = r#"{"cniVersion":"1.0.0","name":"plannet","type":"loopback"}"#;
    let plan = plan_json(&l, &node, &env_self, conf);
    assert_eq!(
        (plan["exitCode"].clone(), plan["result"]["code"].clone()),
        (1.into(), 8.into()),
        "{plan}"
    );
}

#[test]
fn plan_sees_both_ends_of_a_veth_and_every_link_setting() {
    if !root_or_skip("plan_sees_both_ends_of_a_veth_and_every_link_setting") {
        return;
    }
    let l = Layout::new();
    with_module(&l, "bridge", "bridge");
    with_module(&l, "host-local", "host-local");
    with_module(&l, "tuning", "tuning");
    let (node, container) = (Netns::add("node"), Netns::add("ctr"));
    let ok = Command::new("ip")
        .args([
            "-n",
            &node.0,
            "link",
            "add",
            "vplan0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &container.0,
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let netns = format!("/run/netns/{}", container.0);
    let env = |command| {
        [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "plan-veth"),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", "eth0"),
        ]
    };
    // DEL deletes the container's end: the node's goes with it.
    let conf = r#"{"cniVersion":"1.0.0","name":"plannet","type":"bridge","bridge":"plbr0",
        "ipam":{"type":"host-local","subnet":"10.78.0.0/24"}}"#;
    let plan = plan_json(&l, &node, &env("DEL"), conf);
    let changes = plan["changes"].to_string();
    assert!(changes.contains("- link node vplan0"), "{changes}");
    // A MAC change shows as one.
    let conf = serde_json::json!({"cniVersion":"1.0.0","name":"plannet","type":"tuning",
        "mac":"0a:58:0a:4e:00:09","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":netns}]}})
    .to_string();
    let plan = plan_json(&l, &node, &env("ADD"), &conf);
    assert_eq!(plan["exitCode"], 0, "{plan}");
    let changes: Vec<String> = serde_json::from_value(plan["changes"].clone()).unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("+ link container") && c.contains("0a:58:0a:4e:00:09")),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("+ file /var/lib/wasm-cni/attachments/plannet/")),
        "{changes:?}"
    );
    // Nothing happened to the real interface.
    let shown = Command::new("ip")
        .args(["-n", &container.0, "link", "show", "eth0"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&shown.stdout).contains("0a:58:0a:4e:00:09"));
}

#[test]
fn inspect_does_not_follow_a_link_to_any_file() {
    let l = Layout::new();
    let t = l.dir.path();
    std::fs::write(t.join("secret"), "TOPS-SECRET").unwrap();
    std::os::unix::fs::symlink(t.join("secret"), t.join("look.wasm")).unwrap();
    let out = l
        .command(&["inspect", t.join("look.wasm").to_str().unwrap()])
        .output()
        .unwrap();
    let text = l.scrub(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("is not a .wasm file"), "{text}");
    assert!(!text.contains("TOPS") && !text.contains("sha256"), "{text}");
}

#[test]
fn inspect_knows_every_interface_the_built_in_plugins_import() {
    let l = Layout::new();
    for (name, krate) in [
        ("bridge", "bridge"),
        ("host-local", "host-local"),
        ("static", "static-ipam"),
        ("tuning", "tuning"),
    ] {
        with_module(&l, name, krate);
        let out = l.command(&["inspect", name, "--json"]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v.get("unusable").is_none(), "{name}: {v}");
        assert!(v["role"].is_string(), "{name}: {v}");
    }
}
