//! A simulated node, seeded by the test, and its files.

use crate::{CONTAINER_ID, IFNAME, NETNS, Ns, NsView, Snapshot};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasm_cni::kernel::Kernel;
use wasm_cni::kernel::sim::SimNode;
use wasm_cni::kernel::sysctl::SysctlKey;
use wasm_cni::runtime::node::{Node as RunOn, Simulated};

/// A node in memory: its namespace (`lo` only), a container namespace at
/// [`NETNS`] (`lo`, down), no rules, no IPAM state. Seed it with what the test
/// needs; what a call leaves is in [`Node::snapshot`] and [`Node::store`].
pub struct Node {
    sim: Arc<SimNode>,
    files: tempfile::TempDir,
}

impl Default for Node {
    fn default() -> Self {
        Node::new()
    }
}

/// Where compiled modules are kept between tests, private to this user:
/// `WASM_CNI_TESTKIT_CACHE`, else `$XDG_CACHE_HOME/wasm-cni-testkit` or
/// `~/.cache/wasm-cni-testkit`, else a directory in the temporary one.
/// (A directory that is not this user's is not used: modules are then
/// compiled on every call, slower but the same.)
pub(crate) fn cache_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let dir = var("WASM_CNI_TESTKIT_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("wasm-cni-testkit")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/wasm-cni-testkit")))
        .filter(|d| d.is_absolute())
        .unwrap_or_else(|| {
            let uid = rustix::process::geteuid().as_raw();
            std::env::temp_dir().join(format!("wasm-cni-testkit-{uid}"))
        });
    use std::os::unix::fs::DirBuilderExt;
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir);
    dir
}

/// Where a seeded namespace is: the node's, or the default container's.
fn at(ns: Ns) -> Option<&'static str> {
    match ns {
        Ns::Host => None,
        Ns::Container => Some(NETNS),
    }
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

impl Node {
    pub fn new() -> Node {
        let sim = Arc::new(SimNode::new());
        sim.add_container(NETNS);
        Node {
            sim,
            files: tempfile::Builder::new()
                .prefix("wasm-cni-testkit-node")
                .tempdir()
                .expect("a temporary directory for the simulated node's files"),
        }
    }

    pub(crate) fn as_node(&self) -> RunOn {
        RunOn::Simulated(Simulated {
            kernel: self.sim.clone(),
            root: self.files.path().to_path_buf(),
            read_only_cache: false,
            own_config_files: true,
        })
    }

    /// The simulation itself, for what this API does not cover.
    pub fn sim(&self) -> &Arc<SimNode> {
        &self.sim
    }

    /// Where a node path (`/var/lib/cni/networks`) is for this node.
    pub fn path(&self, p: &str) -> PathBuf {
        self.files.path().join(p.trim_start_matches('/'))
    }

    pub(crate) fn write_policy(&self, json: &str) -> PathBuf {
        let p = self.path("/etc/wasm-cni/policy.json");
        std::fs::create_dir_all(p.parent().unwrap()).expect("policy directory");
        std::fs::write(&p, json).expect("policy file");
        p
    }

    /// A file of the node (a `resolv.conf` a config names, ...).
    pub fn file(&self, path: &str, contents: &str) -> &Self {
        let p = self.path(path);
        std::fs::create_dir_all(p.parent().unwrap()).expect("directory");
        std::fs::write(&p, contents).expect("file");
        self
    }

    /// Another container namespace, at `netns` (a call names it with
    /// `Call::var("CNI_NETNS", netns)`).
    pub fn add_container(&self, netns: &str) -> &Self {
        self.sim.add_container(netns);
        self
    }

    /// A link of `kind` (`bridge`, `veth`, `""` for a device of no kind);
    /// its index.
    pub fn link(&self, ns: Ns, name: &str, kind: &str) -> u32 {
        self.sim
            .add_link(at(ns), name, kind)
            .unwrap_or_else(|e| panic!("seed link {name}: {e}"))
    }

    /// A bridge in the node's namespace, up; its index.
    pub fn bridge(&self, name: &str) -> u32 {
        let i = self.link(Ns::Host, name, "bridge");
        self.up(Ns::Host, name);
        i
    }

    fn index(&self, ns: Ns, link: &str) -> u32 {
        self.sim
            .with(at(ns), |n| n.by_name(link).map(|l| l.state.index))
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no link {link} in the {ns}"))
    }

    pub fn up(&self, ns: Ns, link: &str) -> &Self {
        let i = self.index(ns, link);
        self.sim
            .with(at(ns), |n| {
                n.change(i, wasm_cni::kernel::link::LinkChange::Up(true))
            })
            .and_then(|r| r)
            .expect("up");
        self
    }

    /// An address (`10.22.0.1/16`) on a link.
    pub fn address(&self, ns: Ns, link: &str, cidr: &str) -> &Self {
        let i = self.index(ns, link);
        let a = cidr.parse().unwrap_or_else(|e| panic!("{cidr}: {e}"));
        self.sim
            .with(at(ns), |n| n.addr_add(i, a))
            .and_then(|r| r)
            .unwrap_or_else(|e| panic!("seed address {cidr}: {e}"));
        self
    }

    /// Take an address off a link (as someone else on the node might).
    pub fn remove_address(&self, ns: Ns, link: &str, cidr: &str) -> &Self {
        let i = self.index(ns, link);
        let a = cidr.parse().unwrap_or_else(|e| panic!("{cidr}: {e}"));
        self.sim
            .with(at(ns), |n| n.addr_del(i, a))
            .and_then(|r| r)
            .unwrap_or_else(|e| panic!("remove address {cidr}: {e}"));
        self
    }

    /// A sysctl's value (`net.ipv4.ip_forward`).
    pub fn set_sysctl(&self, ns: Ns, key: &str, value: &str) -> &Self {
        let k = SysctlKey::parse(key).expect("a key under net");
        self.sim
            .with(at(ns), |n| n.sysctl_write(&k, value))
            .and_then(|r| r)
            .unwrap_or_else(|e| panic!("seed sysctl {key}: {e}"));
        self
    }

    /// A sysctl's value now, as a plugin would read it.
    pub fn sysctl(&self, ns: Ns, key: &str) -> Option<String> {
        let k = SysctlKey::parse(key).ok()?;
        self.sim
            .with(at(ns), |n| n.sysctl_read(&k).ok())
            .ok()
            .flatten()
    }

    /// A host-local reservation of `ip` in `network` (the default store
    /// root), as the reference host-local writes it.
    pub fn reserve(&self, network: &str, ip: &str, container_id: &str, ifname: &str) -> &Self {
        self.store_put(network, ip, &format!("{container_id}\r\n{ifname}"))
    }

    /// [`Node::reserve`] for the default container and interface.
    pub fn reserve_default(&self, network: &str, ip: &str) -> &Self {
        self.reserve(network, ip, CONTAINER_ID, IFNAME)
    }

    /// An entry of `network`'s IPAM store (default store root).
    pub fn store_put(&self, network: &str, key: &str, value: &str) -> &Self {
        self.file(&format!("/var/lib/cni/networks/{network}/{key}"), value)
    }

    /// The entries of `network`'s IPAM store (default store root), but its
    /// lock.
    pub fn store(&self, network: &str) -> BTreeMap<String, String> {
        let dir = self.path(&format!("/var/lib/cni/networks/{network}"));
        let Ok(entries) = std::fs::read_dir(dir) else {
            return BTreeMap::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_name() != "lock")
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The default container namespace is gone (a DEL after the runtime
    /// removed it).
    pub fn remove_container(&self) -> &Self {
        self.sim.remove_container(NETNS);
        self
    }

    pub fn snapshot(&self) -> Snapshot {
        self.sim.snapshot()
    }

    /// The node's namespace now.
    pub fn host(&self) -> NsView {
        self.snapshot().host
    }

    /// The default container's namespace now.
    pub fn container(&self) -> NsView {
        self.container_at(NETNS)
    }

    /// The namespace of the container at `netns` now.
    pub fn container_at(&self, netns: &str) -> NsView {
        self.snapshot()
            .containers
            .remove(netns)
            .unwrap_or_else(|| panic!("no container namespace {netns}"))
    }

    /// A link's routes in the container, `ip route` style.
    pub fn routes(&self, ns: Ns) -> Vec<String> {
        match ns {
            Ns::Host => self.host().routes,
            Ns::Container => self.container().routes,
        }
    }

    /// The node as the default container's calls see it (for tests that
    /// call the kernel, such as the conformance suite).
    pub fn kernel(&self) -> Arc<dyn Kernel> {
        Arc::new(self.sim.kernel(Some(NETNS)))
    }

    /// Run a future to completion (for tests that call the kernel).
    pub fn block<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        block(f)
    }

    /// Whether the node has a file (or directory) at `p`.
    pub fn path_exists(&self, p: &str) -> bool {
        Path::new(&self.path(p)).exists()
    }
}
