//! The compiled-module cache: compile once, then load; refuse directories
//! others could write; survive a corrupt artifact.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use wasm_cni_tests::{CLASSIC, Sandbox};

fn artifacts(dir: &Path) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                e.metadata().unwrap().mtime_nsec(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_warm_add_compiles_nothing() {
    let Some(mut sb) = Sandbox::for_test("a_warm_add_compiles_nothing") else {
        return;
    };
    let c1 = sb.container("c1");
    let c2 = sb.container("c2");
    let debug = [("WASM_CNI_LOG", "debug")];
    let cold = sb.cni_env("bridge", "ADD", "c1", Some(&c1), "eth0", CLASSIC, &debug);
    cold.ok();
    assert!(
        cold.stderr.contains("module bridge: ") && cold.stderr.contains("cache Compiled"),
        "{}",
        cold.stderr
    );
    let dir = sb.cache_dir();
    let first = artifacts(&dir);
    assert_eq!(first.len(), 2, "bridge and host-local: {first:?}");
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let warm = sb.cni_env("bridge", "ADD", "c2", Some(&c2), "eth0", CLASSIC, &debug);
    warm.ok();
    assert_eq!(
        warm.stderr.matches("cache Hit").count(),
        2,
        "{}",
        warm.stderr
    );
    assert!(!warm.stderr.contains("cache Compiled"), "{}", warm.stderr);
    assert_eq!(artifacts(&dir), first, "nothing rewritten");
}

#[test]
fn an_unsafe_cache_directory_is_not_used() {
    let Some(mut sb) = Sandbox::for_test("an_unsafe_cache_directory_is_not_used") else {
        return;
    };
    let c1 = sb.container("c1");
    let open = tempfile::tempdir().unwrap();
    fs::set_permissions(open.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let out = sb.cni_env(
        "bridge",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        CLASSIC,
        &[("WASM_CNI_CACHE_DIR", open.path().to_str().unwrap())],
    );
    out.ok();
    assert!(out.stderr.contains("cache disabled"), "{}", out.stderr);
    assert_eq!(
        fs::read_dir(open.path()).unwrap().count(),
        0,
        "nothing loaded from or written to it"
    );
}

#[test]
fn a_corrupt_artifact_is_replaced() {
    let Some(mut sb) = Sandbox::for_test("a_corrupt_artifact_is_replaced") else {
        return;
    };
    let c1 = sb.container("c1");
    let c2 = sb.container("c2");
    sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", CLASSIC)
        .ok();
    for (name, _) in artifacts(&sb.cache_dir()) {
        fs::write(sb.cache_dir().join(name), b"not a compiled module").unwrap();
    }
    let out = sb.cni_env(
        "bridge",
        "ADD",
        "c2",
        Some(&c2),
        "eth0",
        CLASSIC,
        &[("WASM_CNI_LOG", "debug")],
    );
    out.ok();
    assert!(out.stderr.contains("ignoring cached"), "{}", out.stderr);
    assert_eq!(
        out.stderr.matches("cache Compiled").count(),
        2,
        "{}",
        out.stderr
    );
    for (name, _) in artifacts(&sb.cache_dir()) {
        assert!(fs::metadata(sb.cache_dir().join(name)).unwrap().len() > 1000);
    }
}

fn sha256_of(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn pinned_modules_load_only_with_their_digest() {
    let Some(mut sb) = Sandbox::for_test("pinned_modules") else {
        return;
    };
    let c1 = sb.container("c1");
    let wasm = &wasm_cni_tests::install().wasm;
    let bridge = sha256_of(&wasm.join("bridge.wasm"));
    let host_local = sha256_of(&wasm.join("host-local.wasm"));
    // A module that is not what was pinned: refused, both digests named,
    // nothing done.
    let before = wasm_cni_tests::NodeState::take(&sb);
    let other = "0".repeat(64);
    sb.use_policy(serde_json::json!({"version": 1, "modulePins": {"bridge": other}}));
    let e = sb
        .cni("bridge", "ADD", "c1", Some(&c1), "eth0", CLASSIC)
        .err(101);
    let msg = e["msg"].as_str().unwrap();
    assert!(msg.contains(&other) && msg.contains(&bridge), "{e}");
    // Required pins: an unpinned module (here host-local) is refused.
    sb.use_policy(serde_json::json!({"version": 1, "requirePins": true,
        "modulePins": {"bridge": bridge}}));
    let e = sb
        .cni("bridge", "ADD", "c1", Some(&c1), "eth0", CLASSIC)
        .err(101);
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.contains("host-local") && msg.contains("requirePins"),
        "{e}"
    );
    before.assert_unchanged(&wasm_cni_tests::NodeState::take(&sb), "refused modules");
    // A pin that is not a digest breaks the policy: every call fails closed.
    sb.use_policy(serde_json::json!({"version": 1, "modulePins": {"bridge": "abc"}}));
    let e = sb
        .cni("bridge", "ADD", "c1", Some(&c1), "eth0", CLASSIC)
        .err(7);
    assert!(e["msg"].as_str().unwrap().contains("modulePins"), "{e}");
    // Matching pins (one spelled with its prefix, in capitals): it loads.
    sb.use_policy(
        serde_json::json!({"version": 1, "requirePins": true, "modulePins": {
        "bridge": format!("sha256:{}", bridge.to_uppercase()), "host-local": host_local}}),
    );
    sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", CLASSIC)
        .ok();
    sb.cni("bridge", "DEL", "c1", Some(&c1), "eth0", CLASSIC)
        .ok();
}

/// Rewrite the cache's own `.sum` beside `artifact` so that it vouches for
/// the bytes now there, as anything that can write the cache could.
fn forge_sum(artifact: &Path, module_digest: &str) {
    use sha2::Digest;
    let code = fs::read(artifact).unwrap();
    let mut sum = b"wasm-cni cwasm 1".to_vec();
    sum.extend((0..32).map(|i| u8::from_str_radix(&module_digest[2 * i..2 * i + 2], 16).unwrap()));
    sum.extend(sha2::Sha256::digest(&code));
    let mut path = artifact.as_os_str().to_owned();
    path.push(".sum");
    fs::write(path, sum).unwrap();
}

#[test]
fn a_pinned_module_runs_only_code_its_install_vouched_for() {
    let Some(mut sb) = Sandbox::for_test("tampered_pinned_artifact") else {
        return;
    };
    let wasm = &wasm_cni_tests::install().wasm;
    let (bridge, host_local) = (
        sha256_of(&wasm.join("bridge.wasm")),
        sha256_of(&wasm.join("host-local.wasm")),
    );
    sb.use_policy(serde_json::json!({"version": 1, "modulePins": {
        "bridge": bridge, "host-local": host_local}}));
    let debug = [("WASM_CNI_LOG", "debug")];
    let add = |sb: &mut Sandbox, id: &str| {
        let ns = sb.container(id);
        let out = sb.cni_env("bridge", "ADD", id, Some(&ns), "eth0", CLASSIC, &debug);
        out.ok();
        out
    };
    // Not precompiled: compiled for each call, nothing written.
    let out = add(&mut sb, "c0");
    assert_eq!(
        out.stderr.matches("compiled for this call only").count(),
        2,
        "{}",
        out.stderr
    );
    assert!(
        artifacts(&sb.cache_dir()).is_empty(),
        "a call writes no pinned artifact"
    );
    // Installed: loaded as vouched for.
    sb.precompile(&["bridge", "host-local"]);
    let out = add(&mut sb, "c1");
    assert_eq!(out.stderr.matches("cache Hit").count(), 2, "{}", out.stderr);
    // One byte of code changed and the cache's own sum forged to match
    // (what anything that writes the cache could do): not run.
    let mut originals = Vec::new();
    for (name, _) in artifacts(&sb.cache_dir())
        .iter()
        .filter(|(n, _)| n.contains(&bridge) || n.contains(&host_local))
    {
        let path = sb.cache_dir().join(name);
        let mut bytes = fs::read(&path).unwrap();
        originals.push((path.clone(), bytes.clone()));
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let digest = if name.contains(&bridge) {
            &bridge
        } else {
            &host_local
        };
        forge_sum(&path, digest);
    }
    let out = add(&mut sb, "c2");
    assert!(
        out.stderr
            .matches("its code is not what was written")
            .count()
            >= 2,
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.matches("cache Compiled").count(),
        2,
        "{}",
        out.stderr
    );
    // Another module's code under bridge's name, its sum forged: bridge
    // still runs bridge's code (a bridge result, not misbehave's).
    let (path, _) = &originals[0];
    let misbehave = sha256_of(&wasm.join("misbehave.wasm"));
    sb.use_policy(serde_json::json!({"version": 1}));
    let ns = sb.container("m");
    let conf = serde_json::json!({"cniVersion": "1.0.0", "name": "m", "type": "misbehave", "behave": "stdout"}).to_string();
    sb.cni("misbehave", "ADD", "m", Some(&ns), "eth0", &conf);
    let theirs = artifacts(&sb.cache_dir())
        .into_iter()
        .find(|(n, _)| n.contains(&misbehave))
        .expect("misbehave compiled");
    fs::copy(sb.cache_dir().join(&theirs.0), path).unwrap();
    let own = if path.to_str().unwrap().contains(&bridge) {
        &bridge
    } else {
        &host_local
    };
    forge_sum(path, own);
    sb.use_policy(serde_json::json!({"version": 1, "modulePins": {
        "bridge": bridge, "host-local": host_local}}));
    let out = add(&mut sb, "c3");
    let r = out.json();
    assert_eq!(
        r["ips"][0]["address"], "10.244.0.5/16",
        "bridge and host-local ran: {r}"
    );
    assert!(out.stderr.contains("of a pinned module"), "{}", out.stderr);
}

#[test]
fn a_link_with_another_name_does_not_dodge_a_pin() {
    let Some(mut sb) = Sandbox::for_test("pin_through_link") else {
        return;
    };
    let c1 = sb.container("c1");
    let wasm = &wasm_cni_tests::install().wasm;
    // "plugin" names a link, outside the module directories, to the pinned
    // bridge.wasm in them: what loads is bridge.wasm, so its pin applies.
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("x.wasm");
    std::os::unix::fs::symlink(wasm.join("bridge.wasm"), &link).unwrap();
    let other = "0".repeat(64);
    sb.use_policy(serde_json::json!({"version": 1, "modulePins": {"bridge": other}}));
    let cfg = CLASSIC.replace(
        r#""type":"bridge""#,
        &format!(r#""type":"wasm-cni","plugin":"{}""#, link.display()),
    );
    let before = wasm_cni_tests::NodeState::take(&sb);
    let e = sb
        .cni("wasm-cni", "ADD", "c1", Some(&c1), "eth0", &cfg)
        .err(101);
    assert!(e["msg"].as_str().unwrap().contains(&other), "{e}");
    before.assert_unchanged(
        &wasm_cni_tests::NodeState::take(&sb),
        "a module dodging its pin",
    );
}
