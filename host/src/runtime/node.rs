//! The node a call runs against: the real one, or a simulation
//! (`kernel::sim`) for plugin tests and `wasm-cni plan`.
//!
//! A simulated node has files of its own beneath a directory: the node
//! policy's paths (IPAM store roots, `resolvConf` directories, the
//! network locks) are read there, rebased, after the policy has judged
//! them as it would on a real node. The IPAM store is real files in that
//! directory rather than a map in memory: the store's code (the walk that
//! follows no link, `O_NOFOLLOW`, the `flock` lock, host-local's file
//! layout) is then what a plugin's tests exercise, and it needs no
//! privilege.

use crate::kernel::Kernel;
use crate::kernel::sim::SimNode;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone, Default)]
pub enum Node {
    #[default]
    Real,
    Simulated(Simulated),
}

#[derive(Clone)]
pub struct Simulated {
    pub kernel: Arc<SimNode>,
    /// Where the node's files are: `/var/lib/cni` is `<root>/var/lib/cni`.
    pub root: PathBuf,
    /// The real node's compiled-module cache is read, never written
    /// (`wasm-cni plan`); else it is used as by a call.
    pub read_only_cache: bool,
    /// Whether the node's configuration files (a `resolvConf`) are
    /// beneath `root` too (a test's node), or the real node's, read as a
    /// call reads them (`wasm-cni plan`: nothing is copied).
    pub own_config_files: bool,
}

impl Simulated {
    /// A node path, beneath the simulation's root.
    pub fn path(&self, p: &Path) -> PathBuf {
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }

    /// The node as a call with this `CNI_NETNS` sees it.
    pub fn kernel(&self, netns: Option<&Path>) -> Arc<dyn Kernel> {
        Arc::new(
            self.kernel
                .kernel(netns.map(|p| p.to_string_lossy()).as_deref()),
        )
    }
}

impl Node {
    pub fn simulated(&self) -> Option<&Simulated> {
        match self {
            Node::Real => None,
            Node::Simulated(s) => Some(s),
        }
    }

    /// A node path as the call reaches it.
    pub fn path(&self, p: &Path) -> PathBuf {
        match self {
            Node::Real => p.to_path_buf(),
            Node::Simulated(s) => s.path(p),
        }
    }

    /// Where the node's configuration files (read only) are as the call
    /// reaches them: `None` for the node's own.
    pub fn config_files_root(&self) -> Option<PathBuf> {
        match self {
            Node::Simulated(s) if s.own_config_files => Some(s.path(Path::new("/"))),
            _ => None,
        }
    }
}
