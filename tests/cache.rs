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

#[test]
fn a_tampered_artifact_of_a_pinned_module_is_not_run() {
    let Some(mut sb) = Sandbox::for_test("tampered_pinned_artifact") else {
        return;
    };
    let (c1, c2) = (sb.container("c1"), sb.container("c2"));
    let wasm = &wasm_cni_tests::install().wasm;
    sb.use_policy(serde_json::json!({"version": 1, "modulePins": {
        "bridge": sha256_of(&wasm.join("bridge.wasm")),
        "host-local": sha256_of(&wasm.join("host-local.wasm"))}}));
    sb.cni("bridge", "ADD", "c1", Some(&c1), "eth0", CLASSIC)
        .ok();
    // One byte of compiled code changed on disk (the file still trusted:
    // ours, 0644, in our directory).
    let mut originals = Vec::new();
    for (name, _) in artifacts(&sb.cache_dir()) {
        let path = sb.cache_dir().join(&name);
        let mut bytes = fs::read(&path).unwrap();
        originals.push((path.clone(), bytes.clone()));
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
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
    // Both modules' (each looked at twice: before and under the lock).
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
    for (path, original) in originals {
        assert_eq!(
            fs::read(&path).unwrap(),
            original,
            "compiled again and rewritten"
        );
    }
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
