//! `wasm-cni:plugin/resolv-conf` (0.2.0): a resolv.conf read for an IPAM
//! plugin, from where the node policy allows (`resolvConfDirs`, default
//! `/etc` and `/run`). The guest names a path; the host judges it against
//! the policy on the path as written and opens exactly that (see
//! `kernel::resolv_conf`), and hands back only the parsed DNS settings.

use super::{CapError, CapResult};
use crate::contract::wasm_cni::plugin::types::Dns;
use crate::contract::wasm_cni::plugin_v2::resolv_conf;
use crate::grant::Phase;
use std::path::{Path, PathBuf};

pub struct ResolvConfCtx {
    dirs: Vec<PathBuf>,
    phase: Phase,
    /// Where the node's configuration files are as the call reaches them:
    /// `None` on the node itself, a directory of its own for a simulated
    /// node (a path, not the runtime's `Node`: capabilities do not depend
    /// on the runtime).
    files_root: Option<PathBuf>,
}

impl ResolvConfCtx {
    /// Judged against `dirs`; read beneath `files_root` if given (a
    /// simulated node's files are beneath a directory of its own).
    pub fn new(dirs: Vec<PathBuf>, phase: Phase, files_root: Option<PathBuf>) -> Self {
        ResolvConfCtx {
            dirs,
            phase,
            files_root,
        }
    }

    /// The allowed directory `path` lies beneath, and the rest of it.
    fn locate(&self, path: &str) -> CapResult<(PathBuf, PathBuf)> {
        let p = crate::policy::normalized(Path::new(path))
            .map_err(|e| CapError::invalid(format!("resolvConf {path:?}: {e}")))?;
        self.dirs
            .iter()
            .find_map(|d| {
                let rest = p.strip_prefix(d).ok()?;
                (!rest.as_os_str().is_empty()).then(|| (d.clone(), rest.to_path_buf()))
            })
            .ok_or_else(|| {
                let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
                CapError::denied(format!(
                    "resolvConf {path:?} is not beneath a directory the node policy allows [{}] (\"resolvConfDirs\")",
                    dirs.join(", ")
                ))
            })
    }
}

impl resolv_conf::Host for ResolvConfCtx {
    async fn read(&mut self, path: String) -> CapResult<Dns> {
        if !matches!(self.phase, Phase::Add | Phase::Check) {
            return Err(CapError::denied(
                "resolvConf is read for ADD and CHECK only",
            ));
        }
        let (dir, rest) = self.locate(&path)?;
        let dir = match &self.files_root {
            Some(root) => root.join(dir.strip_prefix("/").unwrap_or(&dir)),
            None => dir,
        };
        let read =
            tokio::task::spawn_blocking(move || crate::kernel::resolv_conf::read(&dir, &rest))
                .await
                .map_err(|e| CapError::other(format!("reading resolvConf: {e}")))?;
        let conf = read.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                CapError::not_found(format!("resolvConf {path:?}: {e}"))
            }
            std::io::ErrorKind::PermissionDenied => {
                CapError::denied(format!("resolvConf {path:?}: {e}"))
            }
            _ => CapError::invalid(format!("resolvConf {path:?}: {e}")),
        })?;
        Ok(Dns {
            nameservers: conf.nameservers,
            domain: conf.domain,
            search: conf.search,
            options: conf.options,
        })
    }
}
