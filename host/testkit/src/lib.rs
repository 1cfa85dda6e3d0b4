//! Test a wasm-cni plugin without root, without namespaces, without a
//! node: load its built `.wasm`, run ADD, CHECK, DEL, GC or STATUS against
//! a simulated node ([`Node`]) that the test seeds, and assert on the CNI
//! answer ([`Outcome`]) and on what the node looks like after.
//!
//! ```no_run
//! use wasm_cni_testkit::{Node, Plugins};
//!
//! let built = "target/wasm32-wasip2/release";
//! let plugins = Plugins::new()
//!     .module("bridge", format!("{built}/bridge.wasm"))
//!     .module("host-local", format!("{built}/host_local.wasm"));
//! let node = Node::new();
//! let conf = r#"{"cniVersion":"1.0.0","name":"net1","type":"bridge","bridge":"cni0",
//!   "isGateway":true,"ipam":{"type":"host-local","subnet":"10.22.0.0/16"}}"#;
//! let added = plugins.add(&node, conf).ok();
//! assert_eq!(added["ips"][0]["address"], "10.22.0.2/16");
//! let cni0 = node.host().link("cni0").cloned().unwrap();
//! assert_eq!(cni0.addresses, ["10.22.0.1/16"]);
//! plugins.del(&node, conf).ok();
//! ```
//!
//! The call goes through wasm-cni's own code from the CNI environment
//! and config to the answer: the same module lookup, node policy, grants,
//! limits, rollback and errors as on a node; only the kernel is simulated
//! (`wasm_cni::kernel::sim`) and the node's files (IPAM stores,
//! `resolv.conf`) live in a temporary directory of the node's.

pub mod conformance;
mod node;
mod outcome;

pub use node::Node;
pub use outcome::Outcome;
pub use wasm_cni::kernel::Ns;
pub use wasm_cni::kernel::sim::{LinkView, NsView, RuleView, Snapshot, Unknown};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The container ID and interface a call uses unless told otherwise.
pub const CONTAINER_ID: &str = "testkit-container";
pub const IFNAME: &str = "eth0";
/// What `CNI_NETNS` says (the simulated container namespace has no path).
pub const NETNS: &str = "/var/run/netns/testkit";

/// The modules tests call, found as a node finds them: by the name a
/// config's `type` and `ipam.type` give.
#[derive(Debug, Clone)]
pub struct Plugins {
    /// Modules registered by name (`module`), copied here.
    own: Arc<tempfile::TempDir>,
    dirs: Vec<PathBuf>,
    policy: String,
}

impl Default for Plugins {
    fn default() -> Self {
        Plugins::new()
    }
}

impl Plugins {
    /// No modules yet.
    pub fn new() -> Plugins {
        let own = tempfile::Builder::new()
            .prefix("wasm-cni-testkit-modules")
            .tempdir()
            .expect("a temporary directory for modules");
        Plugins {
            own: Arc::new(own),
            dirs: Vec::new(),
            policy: r#"{"version":1}"#.into(),
        }
    }

    /// The module at `path` under `name` (a crate builds `my_plugin.wasm`;
    /// configs call it `my-plugin`).
    pub fn module(self, name: &str, path: impl AsRef<Path>) -> Plugins {
        let path = path.as_ref();
        let to = self.own.path().join(format!("{name}.wasm"));
        std::fs::copy(path, &to)
            .unwrap_or_else(|e| panic!("{}: {e} (is the module built?)", path.display()));
        self
    }

    /// Every `<name>.wasm` in `dir` too, as installed on a node.
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Plugins {
        self.dirs.push(dir.as_ref().to_path_buf());
        self
    }

    /// The node policy the calls run under (JSON, as in
    /// `/etc/wasm-cni/policy.json`); by default `{"version":1}`, the
    /// defaults every node starts with.
    pub fn policy(mut self, json: &str) -> Plugins {
        self.policy = json.to_string();
        self
    }

    /// A call of `command` (`ADD`, `DEL`, `CHECK`, `GC`, `STATUS`).
    pub fn call<'a>(&'a self, node: &'a Node, command: &str) -> Call<'a> {
        Call {
            plugins: self,
            node,
            vars: [
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", CONTAINER_ID),
                ("CNI_NETNS", NETNS),
                ("CNI_IFNAME", IFNAME),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        }
    }

    pub fn add(&self, node: &Node, config: &str) -> Outcome {
        self.call(node, "ADD").run(config)
    }

    pub fn del(&self, node: &Node, config: &str) -> Outcome {
        self.call(node, "DEL").run(config)
    }

    pub fn check(&self, node: &Node, config: &str) -> Outcome {
        self.call(node, "CHECK").run(config)
    }

    pub fn status(&self, node: &Node, config: &str) -> Outcome {
        self.call(node, "STATUS").run(config)
    }
}

/// One CNI call, its environment set up as a runtime would.
pub struct Call<'a> {
    plugins: &'a Plugins,
    node: &'a Node,
    vars: HashMap<String, String>,
}

impl Call<'_> {
    pub fn container_id(self, id: &str) -> Self {
        self.var("CNI_CONTAINERID", id)
    }

    pub fn ifname(self, name: &str) -> Self {
        self.var("CNI_IFNAME", name)
    }

    /// `CNI_NETNS`: another container's namespace (`Node::add_container`).
    pub fn netns(self, path: &str) -> Self {
        self.var("CNI_NETNS", path)
    }

    /// `CNI_ARGS` (`IP=10.1.0.5;K8S_POD_NAME=x`).
    pub fn args(self, args: &str) -> Self {
        self.var("CNI_ARGS", args)
    }

    /// Any variable of the call's environment (`CNI_NETNS`, or "" to
    /// remove one).
    pub fn var(mut self, key: &str, value: &str) -> Self {
        if value.is_empty() {
            self.vars.remove(key);
        } else {
            self.vars.insert(key.to_string(), value.to_string());
        }
        self
    }

    /// Run with `config` on stdin. The module is the config's `type`, as a
    /// runtime execs `/opt/cni/bin/<type>`.
    pub fn run(self, config: &str) -> Outcome {
        let node = self.node;
        let mut vars = self.vars;
        let dirs: Vec<String> = std::iter::once(self.plugins.own.path())
            .chain(self.plugins.dirs.iter().map(PathBuf::as_path))
            .map(|d| d.display().to_string())
            .collect();
        vars.insert("WASM_CNI_MODULE_PATH".into(), dirs.join(":"));
        vars.insert(
            "WASM_CNI_POLICY".into(),
            node.write_policy(&self.plugins.policy)
                .display()
                .to_string(),
        );
        vars.insert(
            "WASM_CNI_CACHE_DIR".into(),
            node::cache_dir().display().to_string(),
        );
        vars.entry("CNI_PATH".into())
            .or_insert_with(|| node.path("/opt/cni/bin").display().to_string());
        let ty = serde_json::from_str::<serde_json::Value>(config)
            .ok()
            .and_then(|c| c["type"].as_str().map(str::to_string))
            .unwrap_or_else(|| "wasm-cni".into());
        let out = wasm_cni::invoke::invoke_on(&ty, &vars, config.as_bytes(), &node.as_node());
        Outcome::new(out.exit_code, out.stdout)
    }
}
