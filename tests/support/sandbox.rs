//! A sandbox: a "host" network namespace the plugin runs in, container
//! namespaces, and a private /var/lib. Everything the plugin changes lives
//! in those and goes away when the sandbox is dropped, also on panic.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

pub struct Sandbox {
    prefix: String,
    namespaces: Vec<String>,
    /// Bind-mounted over /var/lib for every command run in the sandbox, so
    /// the default state and cache paths work and stay private.
    pub varlib: tempfile::TempDir,
    /// The node policy calls get (the test install's defaults if none).
    policy: Option<super::Policy>,
}

/// What a CNI call printed and returned.
#[derive(Debug)]
pub struct CniOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CniOutput {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:?}"))
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        self
    }

    /// Expect failure with this CNI error code; the error document.
    #[track_caller]
    pub fn err(&self, code: u64) -> Value {
        assert_eq!(self.code, 1, "expected exit 1: {self:?}");
        let j = self.json();
        assert_eq!(j["code"].as_u64(), Some(code), "wrong error: {self:?}");
        assert!(
            j["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "no msg: {self:?}"
        );
        j
    }
}

const WRAP: &str =
    r#"mount --bind "$1" /var/lib && ns="$2" && shift 2 && exec ip netns exec "$ns" "$@""#;

impl Sandbox {
    /// A sandbox for a root-only test, or `None` (and a line saying the
    /// test was skipped) when not root.
    pub fn for_test(test: &str) -> Option<Sandbox> {
        super::root_or_skip(test).then(|| Sandbox::new(test))
    }

    pub fn new(test: &str) -> Sandbox {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let prefix = format!(
            "wcni-{}-{}-{n}",
            &test[..test.len().min(12)],
            std::process::id() % 100000
        );
        let varlib = tempfile::Builder::new()
            .prefix("wasm-cni-varlib-")
            .tempdir()
            .unwrap();
        let mut s = Sandbox {
            prefix,
            namespaces: Vec::new(),
            varlib,
            policy: None,
        };
        s.add_ns("host");
        s.run_in("host", &["ip", "link", "set", "lo", "up"]);
        s
    }

    /// The node policy for the calls that follow (`extra` still wins).
    pub fn use_policy(&mut self, policy: serde_json::Value) {
        self.policy = Some(super::Policy::new(policy));
    }

    fn ns_name(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    fn add_ns(&mut self, short: &str) -> PathBuf {
        let name = self.ns_name(short);
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.namespaces.push(name.clone());
        PathBuf::from("/var/run/netns").join(name)
    }

    /// A new container namespace; its CNI_NETNS path.
    pub fn container(&mut self, short: &str) -> PathBuf {
        self.add_ns(short)
    }

    /// The bind-mounted path of one of the sandbox's namespaces.
    pub fn ns_path(&self, short: &str) -> PathBuf {
        PathBuf::from("/var/run/netns").join(self.ns_name(short))
    }

    /// Delete a container namespace now (the sandbox is gone before DEL).
    pub fn remove_container(&mut self, short: &str) {
        let name = self.ns_name(short);
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        self.namespaces.retain(|n| *n != name);
    }

    /// The host-local state directory of `network` (default dataDir).
    pub fn state_dir(&self, network: &str) -> PathBuf {
        self.varlib.path().join("cni/networks").join(network)
    }

    /// The sandbox's private /var/lib.
    pub fn state_root(&self) -> PathBuf {
        self.varlib.path().to_path_buf()
    }

    /// The compiled-module cache (default location).
    pub fn cache_dir(&self) -> PathBuf {
        self.varlib.path().join("wasm-cni/cache")
    }

    /// A command in the host namespace with the private /var/lib.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("unshare");
        c.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            WRAP,
            "sh",
        ]);
        c.arg(self.varlib.path())
            .arg(self.ns_name("host"))
            .args(argv);
        c
    }

    /// `wasm-cni compile MODULES...` into the sandbox's cache, as an
    /// installer would: calls then never compile.
    pub fn precompile(&self, modules: &[&str]) {
        let out = self.compile_output(modules);
        assert!(
            out.status.success(),
            "wasm-cni compile: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `wasm-cni compile MODULES...`, which must fail.
    pub fn precompile_expecting_failure(&self, modules: &[&str]) {
        let out = self.compile_output(modules);
        assert!(
            !out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    fn compile_output(&self, modules: &[&str]) -> Output {
        let inst = super::install();
        let bin = inst.bin.join("wasm-cni");
        let mut argv = vec![bin.to_str().unwrap(), "compile"];
        argv.extend(modules);
        self.command(&argv)
            .env("WASM_CNI_MODULE_PATH", &inst.wasm)
            .env(
                "WASM_CNI_POLICY",
                self.policy.as_ref().map_or(&inst.policy, |p| &p.path),
            )
            .output()
            .unwrap()
    }

    /// Call a plugin the way a runtime does: `CNI_*` and the config on stdin.
    pub fn cni(
        &self,
        plugin: &str,
        command: &str,
        container_id: &str,
        netns: Option<&Path>,
        ifname: &str,
        config: &str,
    ) -> CniOutput {
        self.cni_env(plugin, command, container_id, netns, ifname, config, &[])
    }

    #[allow(clippy::too_many_arguments)]
    pub fn cni_env(
        &self,
        plugin: &str,
        command: &str,
        container_id: &str,
        netns: Option<&Path>,
        ifname: &str,
        config: &str,
        extra: &[(&str, &str)],
    ) -> CniOutput {
        let c = self.cni_command(plugin, command, container_id, netns, ifname, extra);
        run_with_stdin(c, config)
    }

    /// The command for a CNI call, with the test install's modules and
    /// policy (`extra` overrides), to run or spawn.
    pub fn cni_command(
        &self,
        plugin: &str,
        command: &str,
        container_id: &str,
        netns: Option<&Path>,
        ifname: &str,
        extra: &[(&str, &str)],
    ) -> Command {
        let inst = super::install();
        let bin = inst.bin.join(plugin);
        let mut c = self.command(&[bin.to_str().unwrap()]);
        c.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env(
                "CNI_NETNS",
                netns.map(|p| p.to_str().unwrap()).unwrap_or(""),
            )
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &inst.bin)
            .env("WASM_CNI_MODULE_PATH", &inst.wasm)
            .env(
                "WASM_CNI_POLICY",
                self.policy.as_ref().map_or(&inst.policy, |p| &p.path),
            );
        for (k, v) in extra {
            c.env(k, v);
        }
        c
    }

    /// Run a command in one of the sandbox's namespaces ("host", or a
    /// container's short name).
    pub fn run_in(&self, ns: &str, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns_name(ns)])
            .args(argv)
            .output()
            .unwrap()
    }

    /// `ip -j ...` in a namespace, parsed.
    pub fn ip_json(&self, ns: &str, args: &[&str]) -> Value {
        let mut argv = vec!["ip", "-j"];
        argv.extend_from_slice(args);
        let out = self.run_in(ns, &argv);
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]))
    }

    /// Links in a namespace by name.
    pub fn links(&self, ns: &str) -> Vec<Value> {
        self.ip_json(ns, &["-d", "link", "show"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn link(&self, ns: &str, name: &str) -> Option<Value> {
        self.links(ns).into_iter().find(|l| l["ifname"] == name)
    }

    /// `addr/prefix` strings on a link.
    pub fn addresses(&self, ns: &str, link: &str) -> Vec<String> {
        let v = self.ip_json(ns, &["addr", "show", "dev", link]);
        v[0]["addr_info"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| format!("{}/{}", i["local"].as_str().unwrap(), i["prefixlen"]))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn ping(&self, from: &str, to: &str) -> bool {
        let flag = if to.contains(':') { "-6" } else { "-4" };
        self.run_in(from, &["ping", flag, "-c", "1", "-W", "2", to])
            .status
            .success()
    }

    /// The host namespace's nftables ruleset, as text.
    pub fn nft(&self) -> String {
        String::from_utf8(self.run_in("host", &["nft", "list", "ruleset"]).stdout).unwrap()
    }

    /// veth links in the host namespace.
    pub fn host_veths(&self) -> Vec<String> {
        self.links("host")
            .into_iter()
            .filter(|l| l["linkinfo"]["info_kind"] == "veth")
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect()
    }

    /// The address files in a network's host-local state, sorted.
    pub fn ip_files(&self, network: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.state_dir(network))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        names.retain(|n| n.parse::<std::net::IpAddr>().is_ok());
        names.sort();
        names
    }

    /// Masquerade rules in the host namespace.
    pub fn masquerade_rules(&self) -> usize {
        self.nft().matches(" masquerade").count()
    }

    pub fn sysctl(&self, ns: &str, key: &str) -> String {
        String::from_utf8(self.run_in(ns, &["sysctl", "-n", key]).stdout)
            .unwrap()
            .trim()
            .to_string()
    }
}

pub fn run_with_stdin(c: Command, stdin: &str) -> CniOutput {
    finish(spawn_with_stdin(c, stdin))
}

/// Start a call in the background, its config on stdin.
pub fn spawn_with_stdin(mut c: Command, stdin: &str) -> std::process::Child {
    use std::io::Write;
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    // A call that exits without reading all of it is not our failure.
    let _ = pipe.write_all(stdin.as_bytes());
    child
}

/// Wait for a call started by `spawn_with_stdin`.
pub fn finish(child: std::process::Child) -> CniOutput {
    let out = child.wait_with_output().unwrap();
    CniOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for name in self.namespaces.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}
