//! The audit trail: one JSON line per call in the file the node policy
//! names, with what the guests asked for and how each request ended; and
//! the log settings a network config may carry (`logLevel`, `logFile`),
//! which only write where the node policy allows.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::Path;
use wasm_cni_tests::sandbox::{finish, spawn_with_stdin};
use wasm_cni_tests::{CLASSIC, NodeState, Sandbox};

/// Every line of the audit file and its rotated files, oldest first; each
/// must be one whole JSON object.
fn lines(file: &Path) -> Vec<Value> {
    let mut files = vec![file.to_path_buf()];
    for n in 1.. {
        let rotated = file.with_file_name(format!(
            "{}.{n}",
            file.file_name().unwrap().to_str().unwrap()
        ));
        if !rotated.exists() {
            break;
        }
        files.insert(0, rotated);
    }
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        assert!(text.is_empty() || text.ends_with('\n'), "{}", f.display());
        for l in text.lines() {
            out.push(
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not one JSON line in {}: {e}: {l}", f.display())),
            );
        }
    }
    out
}

fn audited(sb: &mut Sandbox, extra: Value) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let mut policy = json!({"version": 1, "auditFile": file});
    for (k, v) in extra.as_object().unwrap() {
        policy[k] = v.clone();
    }
    sb.use_policy(policy);
    (dir, file)
}

fn sha256(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn calls<'a>(line: &'a Value, op: &str) -> Vec<&'a Value> {
    line["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["op"] == op)
        .collect()
}

#[test]
fn an_add_is_one_line_with_its_modules_and_every_capability_call() {
    let Some(mut sb) = Sandbox::for_test("audit_add") else {
        return;
    };
    let (_dir, file) = audited(&mut sb, json!({}));
    let c1 = sb.container("c1");
    let r = sb
        .cni("bridge", "ADD", "c1", Some(&c1), "eth0", CLASSIC)
        .ok()
        .json();
    let all = lines(&file);
    assert_eq!(all.len(), 1, "{all:?}");
    let l = &all[0];
    assert_eq!(l["command"], "ADD");
    assert_eq!(l["network"], "mynet");
    assert_eq!(l["containerId"], "c1");
    assert_eq!(l["ifname"], "eth0");
    assert_eq!(l["code"], 0);
    assert!(l["ms"].as_f64().unwrap() > 0.0);
    assert!(l["time"].as_str().unwrap().ends_with('Z'));
    let wasm = &wasm_cni_tests::install().wasm;
    let modules = l["modules"].as_array().unwrap();
    for (name, role) in [("bridge", "interface"), ("host-local", "ipam")] {
        let m = modules.iter().find(|m| m["name"] == name).expect(name);
        assert_eq!(m["sha256"], sha256(&wasm.join(format!("{name}.wasm"))));
        assert_eq!(m["contract"], "0.2.0");
        assert_eq!(m["role"], role);
        assert_eq!(m["engine"], "native");
    }
    // What the guests asked for, in order, with the arguments.
    let veth = calls(l, "link.create-veth");
    assert_eq!(veth.len(), 1, "{l}");
    assert!(
        veth[0]["target"]
            .as_str()
            .unwrap()
            .contains("name=\"eth0\""),
        "{l}"
    );
    assert_eq!(veth[0]["allowed"], true);
    let address = r["ips"][0]["address"].as_str().unwrap();
    let masq = calls(l, "firewall.masquerade");
    assert_eq!(masq[0]["target"], format!("addresses=[{address}]"), "{l}");
    let added = calls(l, "address.add");
    assert!(
        added[0]["target"].as_str().unwrap().contains(address),
        "{l}"
    );
    assert!(
        !calls(l, "store.create").is_empty(),
        "IPAM's calls too: {l}"
    );
    let at: Vec<f64> = l["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["atMs"].as_f64().unwrap())
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] <= w[1]),
        "in the order made: {at:?}"
    );
    assert!(l.get("rollback").is_none());
    sb.cni("bridge", "DEL", "c1", Some(&c1), "eth0", CLASSIC)
        .ok();
    let all = lines(&file);
    assert_eq!(all.len(), 2);
    assert_eq!(all[1]["command"], "DEL");
    assert!(!calls(&all[1], "link.delete").is_empty(), "{}", all[1]);
    // A guest's log call keeps its words (its argument is named like
    // tracing's own message field).
    let logged = calls(&all[1], "log.log");
    assert!(!logged.is_empty(), "{}", all[1]);
    for c in logged {
        assert!(c["target"].as_str().unwrap().contains("message=\""), "{c}");
    }
}

fn misbehaving(behave: &str) -> String {
    json!({"cniVersion": "1.0.0", "name": "bad", "type": "misbehave", "behave": behave,
        "ipam": {"type": "host-local", "subnet": "10.44.0.0/24"}})
    .to_string()
}

#[test]
fn huge_arguments_cost_the_recorder_nothing_and_are_not_rewritten() {
    let Some(mut sb) = Sandbox::for_test("audit_flood") else {
        return;
    };
    const MAX: u64 = 64 << 10;
    let (_dir, file) = audited(&mut sb, json!({"auditMaxBytes": MAX}));
    let c1 = sb.container("c1");
    let before = NodeState::take(&sb);
    // 200 000 addresses in one masquerade request: refused, undone, on
    // record, in about the time it takes without the audit.
    let start = std::time::Instant::now();
    sb.cni_env(
        "misbehave",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        &misbehaving("masquerade-flood"),
        &[("WASM_CNI_TIMEOUT", "20")],
    )
    .err(100);
    assert!(start.elapsed().as_secs() < 10, "took {:?}", start.elapsed());
    assert!(sb.ip_files("bad").is_empty(), "the address was released");
    before.assert_unchanged(&NodeState::take(&sb), "a flood");
    // A config whose bridge name reads like addresses, 2.7 MB of it.
    let mut conf: Value = serde_json::from_str(CLASSIC).unwrap();
    let name = "IpAddress::V4((1, 2, 3, 4))".repeat(100_000);
    conf["bridge"] = name.into();
    let start = std::time::Instant::now();
    sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", &conf.to_string());
    assert!(start.elapsed().as_secs() < 5, "took {:?}", start.elapsed());
    let all = lines(&file);
    assert_eq!(all.len(), 2, "both calls are on record");
    for l in &all {
        let len = serde_json::to_string(l).unwrap().len();
        assert!(len as u64 <= MAX / 4, "a line of {len} bytes");
    }
    let text = serde_json::to_string(&all[1]).unwrap();
    assert!(
        !text.contains("1.2.3.41.2.3.4"),
        "a guest's string is kept as it was: {text}"
    );
}

#[test]
fn a_config_cannot_wipe_the_history_with_a_huge_name() {
    let Some(mut sb) = Sandbox::for_test("audit_huge_name") else {
        return;
    };
    const MAX: u64 = 16 << 10;
    let (_dir, file) = audited(&mut sb, json!({"auditMaxBytes": MAX, "auditFiles": 3}));
    let c1 = sb.container("c1");
    sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", CLASSIC)
        .ok();
    let conf = json!({"cniVersion": "1.1.0", "name": format!("n{}", "a".repeat(300_000)),
        "type": "bridge", "bridge": "hugebr"})
    .to_string();
    for _ in 0..4 {
        sb.cni("bridge", "DEL", "c1", Some(&c1), "eth0", &conf);
    }
    let all = lines(&file);
    assert_eq!(all.len(), 5, "every call, the first ADD still there");
    assert_eq!(all[0]["command"], "ADD");
    for l in &all {
        let len = serde_json::to_string(l).unwrap().len();
        assert!(len as u64 <= MAX / 4, "a line of {len} bytes");
    }
}

#[test]
fn a_call_cut_short_and_a_refused_delegation_are_not_successes() {
    let Some(mut sb) = Sandbox::for_test("audit_outcomes") else {
        return;
    };
    let (_dir, file) = audited(&mut sb, json!({}));
    let c1 = sb.container("c1");
    // The host panics inside link.create-veth.
    sb.cni_env(
        "bridge",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        CLASSIC,
        &[("WASM_CNI_TEST_PANIC", "link.create-veth")],
    )
    .err(102);
    // The plugin asks IPAM twice; the second is refused.
    sb.cni(
        "misbehave",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        &misbehaving("ipam-twice"),
    )
    .err(100);
    let all = lines(&file);
    let veth = calls(&all[0], "link.create-veth");
    assert_eq!(veth[0]["outcome"], "incomplete", "{}", all[0]);
    let ipam = calls(&all[1], "ipam.add");
    assert_eq!(ipam.len(), 2, "{}", all[1]);
    assert_eq!(ipam[0]["outcome"], "ok");
    assert_eq!(ipam[1]["outcome"], "error", "{}", all[1]);
    assert!(
        ipam[1]["error"].as_str().unwrap().contains("Err("),
        "{}",
        all[1]
    );
}

#[test]
fn a_denied_request_and_a_rolled_back_add_are_on_record() {
    let Some(mut sb) = Sandbox::for_test("audit_denied") else {
        return;
    };
    let (_dir, file) = audited(&mut sb, json!({}));
    let c1 = sb.container("c1");
    let before = NodeState::take(&sb);
    let conf = |behave: &str| {
        json!({"cniVersion": "1.0.0", "name": "bad", "type": "misbehave", "behave": behave,
            "ipam": {"type": "host-local", "subnet": "10.44.0.0/24"}})
        .to_string()
    };
    let e = sb
        .cni(
            "misbehave",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &conf("route-localnet"),
        )
        .json();
    let all = lines(&file);
    let l = &all[0];
    let denied: Vec<&Value> = l["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["allowed"] == false)
        .collect();
    assert_eq!(denied.len(), 1, "{l}");
    assert_eq!(denied[0]["op"], "sysctl.set");
    assert_eq!(denied[0]["outcome"], "denied");
    assert!(
        denied[0]["target"]
            .as_str()
            .unwrap()
            .contains("route_localnet"),
        "{l}"
    );
    assert!(denied[0]["error"].as_str().unwrap().len() > 10, "{l}");
    assert_eq!(l["code"], e["code"], "the line has the call's answer");
    assert!(
        l["rollback"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["action"].as_str().unwrap().starts_with("deleted ")),
        "{l}"
    );
    // A guest that traps after making a veth and taking an address.
    sb.cni(
        "misbehave",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        &conf("trap-after-veth"),
    )
    .err(100);
    let all = lines(&file);
    let l = &all[1];
    assert_eq!(l["code"], 100);
    assert!(l["error"].as_str().unwrap().contains("trapped"), "{l}");
    let steps = l["rollback"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["ok"] == true), "{l}");
    for want in ["IPAM DEL released", "deleted "] {
        assert!(
            steps
                .iter()
                .any(|s| s["action"].as_str().unwrap().starts_with(want)),
            "{want}: {l}"
        );
    }
    before.assert_unchanged(&NodeState::take(&sb), "audited failures");
}

#[test]
fn thirty_parallel_calls_write_whole_lines_and_rotate_at_the_size() {
    let Some(mut sb) = Sandbox::for_test("audit_parallel") else {
        return;
    };
    const MAX: u64 = 16 << 10;
    let (_dir, file) = audited(&mut sb, json!({"auditMaxBytes": MAX, "auditFiles": 60}));
    let ids: Vec<String> = (0..30).map(|i| format!("p{i}")).collect();
    let namespaces: Vec<_> = ids.iter().map(|id| sb.container(id)).collect();
    for command in ["ADD", "DEL"] {
        let children: Vec<_> = ids
            .iter()
            .zip(&namespaces)
            .map(|(id, ns)| {
                spawn_with_stdin(
                    sb.cni_command("bridge", command, id, Some(ns), "eth0", &[]),
                    CLASSIC,
                )
            })
            .collect();
        for c in children {
            finish(c).ok();
        }
    }
    let all = lines(&file);
    assert_eq!(all.len(), 60, "every call, one whole line each");
    for command in ["ADD", "DEL"] {
        let mut seen: Vec<&str> = all
            .iter()
            .filter(|l| l["command"] == command)
            .map(|l| l["containerId"].as_str().unwrap())
            .collect();
        seen.sort();
        let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
        want.sort();
        assert_eq!(seen, want, "{command}");
    }
    let dir = file.parent().unwrap();
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() > 2, "rotated: {files:?}");
    for f in &files {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= MAX, "{} is {len} bytes", f.display());
    }
}

#[test]
fn a_config_log_file_is_written_only_inside_the_allowed_directories() {
    let Some(mut sb) = Sandbox::for_test("config_log_file") else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    sb.use_policy(json!({"version": 1, "logDirs": [logs.path()]}));
    let c1 = sb.container("c1");
    let before = NodeState::take(&sb);
    let with_log = |file: &str, level: &str| {
        let mut c: Value = serde_json::from_str(CLASSIC).unwrap();
        c["logFile"] = file.into();
        c["logLevel"] = level.into();
        c.to_string()
    };
    // An ADD whose log settings are refused (code 7).
    let refused = |file: &str, level: &str| {
        sb.cni(
            "bridge",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &with_log(file, level),
        )
        .err(7)
    };
    // Outside: refused before anything is done, naming the field.
    let outside = tempfile::tempdir().unwrap();
    for bad in [
        "/etc/wasm-cni-owned".to_string(),
        outside.path().join("x.log").display().to_string(),
        format!("{}/../escape.log", logs.path().display()),
        "relative.log".to_string(),
    ] {
        let e = refused(&bad, "debug");
        assert!(
            e["msg"].as_str().unwrap().contains("\"logFile\""),
            "{bad}: {e}"
        );
    }
    assert!(!Path::new("/etc/wasm-cni-owned").exists());
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    // A link inside the directory is not followed.
    let target = outside.path().join("target");
    std::fs::write(&target, "").unwrap();
    std::os::unix::fs::symlink(&target, logs.path().join("link.log")).unwrap();
    let link = logs.path().join("link.log").display().to_string();
    let e = refused(&link, "debug");
    assert!(e["msg"].as_str().unwrap().contains("link"), "{e}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
    // Nor is a second name of a file elsewhere (a hard link).
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "").unwrap();
    std::fs::hard_link(&victim, logs.path().join("hard.log")).unwrap();
    let hard = logs.path().join("hard.log").display().to_string();
    let e = refused(&hard, "debug");
    assert!(e["msg"].as_str().unwrap().contains("other names"), "{e}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "");
    // A bad level is an error too.
    let inside = logs.path().join("mynet.log").display().to_string();
    let e = refused(&inside, "loud");
    assert!(e["msg"].as_str().unwrap().contains("\"logLevel\""), "{e}");
    before.assert_unchanged(&NodeState::take(&sb), "refused log settings");
    // Inside, at the config's level: the file gets the debug lines.
    sb.cni(
        "bridge",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        &with_log(&inside, "debug"),
    )
    .ok();
    let text = std::fs::read_to_string(&inside).unwrap();
    assert!(text.contains("Debug: module bridge"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&inside).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A config cannot make its log file grow without bound: each record is
    // cut at 4 KiB, each call's share at 1 MiB.
    let before_len = std::fs::metadata(&inside).unwrap().len();
    let mut huge: Value = serde_json::from_str(&with_log(&inside, "debug")).unwrap();
    huge["ipam"]["type"] = "Y".repeat(300_000).into();
    for _ in 0..3 {
        sb.cni("bridge", "ADD", "c2", Some(&c1), "eth1", &huge.to_string())
            .err(7);
    }
    let grown = std::fs::metadata(&inside).unwrap().len() - before_len;
    assert!(grown < 64 << 10, "grew by {grown} bytes");
    // A log directory others may write to is refused.
    std::fs::set_permissions(logs.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = refused(&inside, "debug");
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("writable by group or others"),
        "{e}"
    );
    std::fs::set_permissions(logs.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    // DEL goes on with a bad one (it must be able to finish), and says so.
    let out = sb.cni(
        "bridge",
        "DEL",
        "c1",
        Some(&c1),
        "eth0",
        &with_log("/etc/wasm-cni-owned", "debug"),
    );
    out.ok();
    assert!(
        out.stderr.contains("DEL goes on without it"),
        "{}",
        out.stderr
    );
}
