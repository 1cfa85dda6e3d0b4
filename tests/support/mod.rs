//! Test support: the built artifacts, an installed layout of them, and
//! sandboxes of network namespaces to run them in.

pub mod node;
pub mod sandbox;
pub mod traffic;

pub use node::NodeState;
pub use sandbox::{CniOutput, Sandbox};

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// A guest module built by `tests/run.sh` (`cargo build --target wasm32-wasip2`).
pub fn module(crate_name: &str) -> PathBuf {
    let p = target_dir()
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(
        p.is_file(),
        "{} is missing: build the guests first (tests/run.sh does)",
        p.display()
    );
    p
}

/// The host binary built by `cargo build --release`.
pub fn host_binary() -> PathBuf {
    let p = target_dir().join("release/wasm-cni");
    assert!(
        p.is_file(),
        "{} is missing: build it first (tests/run.sh does)",
        p.display()
    );
    p
}

/// wasm-cni installed as an operator would: `bin/wasm-cni` with `bridge`
/// and `host-local` links to it, and `wasm/<name>.wasm`. It lives under
/// `target/test-install/<pid>` (a static is never dropped, so not in /tmp);
/// installs of processes that are gone are swept first.
pub struct Install {
    pub bin: PathBuf,
    pub wasm: PathBuf,
    /// A node policy with the defaults (`{"version": 1}`), so a policy on
    /// the machine running the tests does not change them.
    pub policy: PathBuf,
}

/// Guests installed alongside the built-ins (test plugins).
pub const TEST_GUESTS: &[&str] = &[
    "misbehave",
    "greedy",
    "hostile-ipam",
    "loopback",
    "contract-0-1-0",
];

pub fn install() -> &'static Install {
    static INSTALL: OnceLock<Install> = OnceLock::new();
    INSTALL.get_or_init(|| {
        let root = target_dir().join("test-install");
        for old in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let pid = old.file_name().to_string_lossy().to_string();
            if !Path::new("/proc").join(&pid).exists() {
                let _ = std::fs::remove_dir_all(old.path());
            }
        }
        let dir = root.join(std::process::id().to_string());
        let _ = std::fs::remove_dir_all(&dir);
        let bin = dir.join("bin");
        let wasm = dir.join("wasm");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&wasm).unwrap();
        std::fs::copy(host_binary(), bin.join("wasm-cni")).unwrap();
        for m in ["bridge", "host-local", "static", "tuning", "portmap"]
            .iter()
            .chain(TEST_GUESTS)
        {
            // A package is named like its module, but `static`.
            let krate = if *m == "static" {
                "static_ipam".to_string()
            } else {
                m.replace('-', "_")
            };
            let src = target_dir()
                .join("wasm32-wasip2/release")
                .join(format!("{krate}.wasm"));
            if src.is_file() {
                std::fs::copy(&src, wasm.join(format!("{m}.wasm"))).unwrap();
                std::os::unix::fs::symlink("wasm-cni", bin.join(m)).unwrap();
            }
        }
        let policy = dir.join("policy.json");
        write_policy(&policy, &serde_json::json!({"version": 1}));
        Install { bin, wasm, policy }
    })
}

/// Write a node policy as the node's root would: 0644, never writable by
/// others.
pub fn write_policy(path: &Path, policy: &serde_json::Value) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, policy.to_string()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// A node policy in a directory of its own (gone when dropped).
pub struct Policy {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Policy {
    pub fn new(policy: serde_json::Value) -> Policy {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.json");
        write_policy(&path, &policy);
        Policy { _dir: dir, path }
    }

    pub fn env(&self) -> (&'static str, &str) {
        ("WASM_CNI_POLICY", self.path.to_str().unwrap())
    }
}

/// Root-only tests call this first and return when it says no.
pub fn root_or_skip(test: &str) -> bool {
    if rustix_is_root() {
        return true;
    }
    eprintln!("SKIPPED {test}: needs root (network namespaces); CI runs it as root");
    false
}

fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// The classic config from the product brief, verbatim.
pub const CLASSIC: &str = r#"{"cniVersion":"0.3.1","name":"mynet","type":"bridge","bridge":"mybridge",
 "isGateway":true,"ipMasq":true,
 "ipam":{"type":"host-local","subnet":"10.244.0.0/16","routes":[{"dst":"0.0.0.0/0"}]}}"#;

/// `cnitool` built by `tests/interop/build-cnitool.sh`.
pub fn cnitool() -> Option<PathBuf> {
    let p = std::env::var_os("CNITOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("cnitool/cnitool"));
    p.is_file().then_some(p)
}

/// `CNI_PATH` with wasm-cni's links first and the reference plugins after,
/// or `None` (saying why `test` skips) without the reference plugins.
pub fn cni_path_with_reference(test: &str) -> Option<String> {
    let Some(reference) = reference_plugins() else {
        eprintln!(
            "SKIPPED {test}: no reference plugins in /usr/lib/cni (tests/setup.sh --interop installs them)"
        );
        return None;
    };
    Some(format!(
        "{}:{}",
        install().bin.display(),
        reference.display()
    ))
}

pub fn reference_plugins() -> Option<&'static Path> {
    let p = Path::new("/usr/lib/cni");
    p.join("bridge").is_file().then_some(p)
}

/// The built-in plugins, for the test kit (`wasm-cni-testkit`).
pub fn kit_plugins() -> wasm_cni_testkit::Plugins {
    wasm_cni_testkit::Plugins::new()
        .module("bridge", module("bridge"))
        .module("host-local", module("host-local"))
        .module("static", module("static-ipam"))
        .module("tuning", module("tuning"))
        .module("portmap", module("portmap"))
}

/// Run this test binary again as `nobody` (when root), every test but
/// the one calling this, and fail unless all of them pass: test-kit tests
/// need no privilege, and this proves it. Run as `nobody`, it checks that
/// the effective uid is not 0.
pub fn kit_tests_pass_as_nobody(this_test: &str) {
    let euid = rustix::process::geteuid().as_raw();
    if std::env::var_os("WASM_CNI_KIT_AS_NOBODY").is_some() {
        assert_ne!(euid, 0, "meant to run as nobody");
        return;
    }
    if euid != 0 {
        eprintln!("{this_test}: already an ordinary user (uid {euid})");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    // nobody's compiled-module cache: a directory of its own, removed after.
    let cache = tempfile::tempdir().unwrap();
    let nobody = std::process::Command::new("id")
        .args(["-u", "nobody"])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(65534);
    std::os::unix::fs::chown(cache.path(), Some(nobody), None).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(&exe)
        .args(["--test-threads=2"])
        .env("WASM_CNI_KIT_AS_NOBODY", "1")
        .env("WASM_CNI_TESTKIT_CACHE", cache.path())
        .env("TMPDIR", "/tmp")
        .output()
        .expect("setpriv");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "as nobody: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed = text
        .lines()
        .find_map(|l| l.strip_prefix("test result: ok. "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    assert!(passed > 1, "as nobody, {passed} tests passed:\n{text}");
    eprintln!("{this_test}: {passed} tests passed as nobody");
}
