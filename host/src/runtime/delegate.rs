//! IPAM delegation: run the plugin named by `ipam.type` for this call. A
//! wasm module runs in-process in its own store with the ipam world; any
//! other type is executed from `CNI_PATH` as CNI delegation specifies (same
//! environment but `CNI_COMMAND`, the whole config on stdin).

use super::Runtime;
use super::linker::Role;
use crate::caps::ipam::Delegate;
use crate::cni::{Call, CniError, CniResult, Command};
use crate::limits::CallLimits;
use futures::future::BoxFuture;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

impl Delegate for Runtime {
    fn run<'a>(
        &'a self,
        call: &'a Call,
        command: Command,
    ) -> BoxFuture<'a, Result<Option<CniResult>, CniError>> {
        if !self.limits.ipam_call() {
            return Box::pin(async {
                Err(CniError::plugin(format!(
                    "a call delegates to IPAM at most {} times",
                    crate::limits::MAX_IPAM_CALLS
                )))
            });
        }
        Box::pin(self.delegate_ipam_until(call, command, self.deadlines.ipam(), &self.limits))
    }
}

impl Runtime {
    /// IPAM DEL undoing a failed ADD, with time of its own: the ADD may
    /// have failed because its time ran out, and its address must still be
    /// released.
    pub async fn undo_ipam(&self, call: &Call) -> Result<Option<CniResult>, CniError> {
        let deadline = tokio::time::Instant::now() + CLEANUP_TIME;
        // A budget of its own: the call's may be spent (its deadline is
        // often why the ADD failed).
        let limits = CallLimits::new(deadline.into_std());
        self.delegate_ipam_until(call, Command::Del, deadline, &limits)
            .await
    }

    async fn delegate_ipam_until(
        &self,
        call: &Call,
        command: Command,
        deadline: tokio::time::Instant,
        limits: &Arc<CallLimits>,
    ) -> Result<Option<CniResult>, CniError> {
        let Some(ty) = call.conf.ipam_type() else {
            return Err(CniError::config(
                "network config has no \"ipam.type\" to delegate to",
            ));
        };
        // A name, never a path: \"ipam.type\" comes from the config.
        let found = self.modules.find(ty).map_err(|e| CniError {
            msg: format!("\"ipam.type\": {}", e.msg),
            ..e
        })?;
        match found {
            Some(path) => {
                // Loaded before the seccomp filter, by `invoke`, for a call
                // whose config names a wasm IPAM module (else now).
                let module = self.load(ty, path, deadline.into_std())?;
                if module.role != Role::Ipam {
                    return Err(CniError::module(format!(
                        "IPAM module {ty:?} ({}) targets the interface-plugin world; ipam.type must name an IPAM plugin",
                        module.path.display()
                    )));
                }
                self.run_ipam(&module, call, command, deadline, limits)
                    .await
            }
            // A native plugin runs as root, unsandboxed: only those the
            // node allows (an interface plugin named as IPAM would run its
            // own IPAM, and so on).
            None if !self.policy.ipam_plugins.iter().any(|p| p == ty) => {
                let refused = CniError::config(format!(
                    "\"ipam.type\" {ty:?}: no such wasm IPAM module, and not a native IPAM plugin this node allows [{}]",
                    self.policy.ipam_plugins.join(", ")
                ))
                .with_details("install it as a module, or have the node's root add it to \"ipamPlugins\" in the node policy");
                if command == Command::Del {
                    // Nothing it could have reserved here.
                    crate::log::warn(&format!("IPAM DEL skipped: {}", refused.msg));
                    Ok(None)
                } else {
                    Err(refused)
                }
            }
            // host-local reads `resolvConf` as root and puts it in the
            // result: any file a config names. A wasm IPAM plugin reads no
            // files; a native one is not given the chance.
            None if command != Command::Del
                && let Some(file) = call
                    .conf
                    .ipam
                    .as_ref()
                    .and_then(|i| i.resolv_conf.as_deref()) =>
            {
                Err(CniError::config(format!(
                    "\"ipam.resolvConf\" {file:?}: a native IPAM plugin would read that file as root for the config's author; not allowed"
                )))
            }
            // A native plugin changes the real node: never run for a
            // simulated one, whose answer then depends on it.
            None if let Some(sim) = self.node.simulated() => {
                sim.kernel.guess(
                    crate::kernel::sim::Unknown::NativeIpam,
                    format!("ipam {} (native plugin {ty:?})", command.as_str()),
                );
                Err(CniError::plugin(format!(
                    "native IPAM plugin {ty:?} is not run on a simulated node"
                )))
            }
            None => match find_in_cni_path(call, ty)? {
                // GC and STATUS go only to a plugin that speaks 1.1.0: an
                // older one has no such commands (it would fail them), so it
                // counts as ready with nothing to collect.
                Some(path)
                    if matches!(command, Command::Gc | Command::Status)
                        && !speaks_1_1(ty, &path, deadline).await? =>
                {
                    crate::log::info(&format!(
                        "IPAM plugin {ty:?} does not list CNI 1.1.0 in its VERSION: {} not passed on",
                        command.as_str()
                    ));
                    Ok(None)
                }
                Some(path) => exec_plugin(call, ty, &path, command, deadline).await,
                // DEL must succeed when there is nothing left to undo, and a
                // plugin that is not installed holds nothing we could
                // release (the reference bridge fails here instead).
                None if command == Command::Del => {
                    crate::log::warn(&format!("IPAM DEL skipped: {}", not_found(call, ty).msg));
                    Ok(None)
                }
                None => Err(not_found(call, ty)),
            },
        }
    }
}

/// How long undoing a failed ADD's IPAM allocation may take.
const CLEANUP_TIME: std::time::Duration = std::time::Duration::from_secs(15);

/// `<dir>/<type>` in the first `CNI_PATH` directory that has it.
/// Set for a plugin wasm-cni executes: a wasm-cni started with it is being
/// run as an IPAM plugin by another, and refuses (see `invoke`).
pub const DELEGATED: &str = "WASM_CNI_DELEGATED";

/// `<dir>/<type>` in the first `CNI_PATH` directory that has it. Never
/// wasm-cni itself (a link to it, such as `bridge`, or `wasm-cni` by name):
/// it would read the same config and delegate again, each level a new
/// process with budgets of its own.
pub(crate) fn find_in_cni_path(call: &Call, ty: &str) -> Result<Option<PathBuf>, CniError> {
    if ty.contains('/') || ty.starts_with('.') {
        return Err(CniError::config(format!("invalid ipam.type {ty:?}")));
    }
    let Some(path) = call.env.path.iter().map(|d| d.join(ty)).find(|p| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }) else {
        return Ok(None);
    };
    let id = |m: std::fs::Metadata| (m.dev(), m.ino());
    let me = std::fs::metadata("/proc/self/exe").map(id).ok();
    if me.is_some() && std::fs::metadata(&path).map(id).ok() == me {
        return Err(CniError::config(format!(
            "\"ipam.type\" {ty:?} is wasm-cni itself ({}), not an IPAM plugin",
            path.display()
        ))
        .with_details("name an IPAM module (such as host-local) or a native IPAM plugin"));
    }
    Ok(Some(path))
}

fn not_found(call: &Call, ty: &str) -> CniError {
    let dirs: Vec<String> = call
        .env
        .path
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    CniError::config(format!(
        "failed to find plugin {ty:?} in path [{}] (and no {ty}.wasm module)",
        dirs.join(" ")
    ))
}

/// Kills a native plugin's process group when the call stops waiting for
/// it (its deadline, or the call's future dropped).
struct GroupGuard(Option<rustix::process::Pid>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn exec_plugin(
    call: &Call,
    ty: &str,
    path: &Path,
    command: Command,
    deadline: tokio::time::Instant,
) -> Result<Option<CniResult>, CniError> {
    let stdout = match run_native(
        ty,
        path,
        command.as_str(),
        call.conf.raw.as_bytes(),
        deadline,
    )
    .await
    {
        Ok(stdout) => stdout?,
        Err(stopped) => {
            // Stopped halfway, it may hold an address it never reported:
            // only its own DEL can release that.
            if command == Command::Add {
                let undo = Box::pin(exec_plugin(
                    call,
                    ty,
                    path,
                    Command::Del,
                    tokio::time::Instant::now() + CLEANUP_TIME,
                ))
                .await;
                if let Err(e) = undo {
                    return Err(stopped.with_details(format!("its IPAM DEL failed too: {e}")));
                }
            }
            return Err(stopped);
        }
    };
    if command != Command::Add {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_slice(&stdout)
        .map_err(|e| CniError::decode(format!("IPAM plugin {ty:?} printed no JSON result: {e}")))?;
    CniResult::from_json(&value)
        .map(Some)
        .map_err(|e| CniError {
            msg: format!("IPAM plugin {ty:?}: {}", e.msg),
            ..e
        })
}

/// How much of a native plugin's stderr is passed on.
const STDERR_MAX: usize = 64 << 10;

/// Run a native plugin once with `CNI_COMMAND=command` and `stdin`: its
/// stdout when it succeeded, its error when it failed (`Ok(Err)`), or
/// `Err` when it did not answer by `deadline` and was killed. What it
/// wrote on stderr goes to ours, a line per record.
async fn run_native(
    ty: &str,
    path: &Path,
    command: &str,
    stdin: &[u8],
    deadline: tokio::time::Instant,
) -> Result<Result<Vec<u8>, CniError>, CniError> {
    let io_error = |what: &str, e: std::io::Error| {
        CniError::new(
            crate::cni::error::code::IO_FAILURE,
            format!("{what} {}: {e}", path.display()),
        )
    };
    crate::log::debug(&format!("IPAM {command}: exec {}", path.display()));
    // Started by the spawner (outside the seccomp filter; in a process
    // group of its own, so that what it starts goes with it when the call
    // gives up: a plugin may run plugins), waited for on a thread of its
    // own.
    let program = crate::kernel::spawn::Program {
        path: path.to_path_buf(),
        args: Vec::new(),
        env: vec![
            ("CNI_COMMAND".into(), command.into()),
            (DELEGATED.into(), "1".into()),
        ],
        stdin: true,
    };
    let mut child = match crate::kernel::spawn::spawn(program) {
        Ok(c) => c,
        Err(e) => return Ok(Err(io_error("cannot run", e))),
    };
    let mut group = GroupGuard(Some(rustix::process::Pid::from_child(&child)));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let input = stdin.to_vec();
    let mut pipe = child.stdin.take();
    std::thread::spawn(move || {
        use std::io::Write;
        // A plugin may exit without reading stdin (its answer tells), or
        // never read it (the deadline tells).
        if let Some(p) = pipe.as_mut() {
            let _ = p.write_all(&input);
        }
        drop(pipe);
        let _ = tx.send(child.wait_with_output());
    });
    let out = match tokio::time::timeout_at(deadline, rx).await {
        Ok(Ok(Ok(out))) => {
            group.0 = None;
            out
        }
        Ok(Ok(Err(e))) => return Ok(Err(io_error("waiting for", e))),
        Ok(Err(_)) => return Ok(Err(io_error("waiting for", std::io::Error::other("lost")))),
        Err(_) => {
            group.kill();
            return Err(CniError::new(
                crate::cni::error::code::TRY_AGAIN_LATER,
                format!(
                    "IPAM plugin {ty:?} did not answer in time and was stopped (WASM_CNI_TIMEOUT)"
                ),
            ));
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(STDERR_MAX)]);
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        crate::log::warn(&crate::log::guest_line(ty, line));
    }
    if !out.status.success() {
        return Ok(Err(plugin_error(ty, &out.stdout, &stderr)));
    }
    Ok(Ok(out.stdout))
}

/// Whether the native plugin at `path` lists 1.1.0 in its VERSION reply.
async fn speaks_1_1(
    ty: &str,
    path: &Path,
    deadline: tokio::time::Instant,
) -> Result<bool, CniError> {
    #[derive(serde::Deserialize)]
    struct Reply {
        #[serde(rename = "supportedVersions", default)]
        supported: Vec<String>,
    }
    let probe = br#"{"cniVersion":"1.1.0"}"#;
    let out = run_native(ty, path, "VERSION", probe, deadline).await??;
    Ok(serde_json::from_slice::<Reply>(&out)
        .is_ok_and(|r| r.supported.iter().any(|v| v == "1.1.0")))
}

/// A failed plugin's error document, or what it said on stderr.
fn plugin_error(ty: &str, stdout: &[u8], stderr: &str) -> CniError {
    #[derive(serde::Deserialize)]
    struct Doc {
        code: u32,
        msg: String,
        #[serde(default)]
        details: String,
    }
    match serde_json::from_slice::<Doc>(stdout) {
        Ok(d) => CniError {
            code: d.code,
            msg: d.msg,
            details: d.details,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(stdout);
            let said = if text.trim().is_empty() {
                stderr.trim()
            } else {
                text.trim()
            };
            CniError::plugin(format!("IPAM plugin {ty:?} failed: {said}"))
        }
    }
}
