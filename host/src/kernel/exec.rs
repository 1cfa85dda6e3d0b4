//! Running the node's firewall tools (`nft`, `iptables`): killed at a
//! deadline with everything they started, and with the host if it dies.
//!
//! Written here rather than through the nftables crate's helpers: those let
//! the tool's stderr through to ours and return an empty message, and the
//! message is how a missing chain is told from a real failure (and what an
//! operator needs to read); nor do they stop a hung process.

use std::io;
use std::time::{Duration, Instant};

/// The longest one run may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// How a run ended when it did not succeed.
#[derive(Debug)]
pub enum ExecError {
    /// It ran and failed: what it said on stderr.
    Failed(String),
    /// It could not be started (not installed).
    Spawn(io::Error),
}

/// Run `program ARGS` with `stdin` if given; its stdout. The process runs in
/// a group of its own, and the whole group is killed at `deadline` (or after
/// `TIMEOUT`): a change that was given up on must not commit later, after
/// the call has rolled back and answered (not even through a wrapper
/// script's child).
pub fn run(
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
    deadline: Instant,
) -> Result<String, ExecError> {
    use std::io::Write;
    let limit = deadline
        .saturating_duration_since(Instant::now())
        .min(TIMEOUT);
    let mut child = super::spawn::spawn(super::spawn::Program {
        path: program.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        stdin: stdin.is_some(),
    })
    .map_err(ExecError::Spawn)?;
    let pid = rustix::process::Pid::from_child(&child);
    let kill = move || {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let input = stdin.map(str::to_string);
    let mut pipe = child.stdin.take();
    std::thread::spawn(move || {
        // Fed on the waiting thread: a stuck tool must not block us on a
        // full pipe either.
        if let (Some(input), Some(p)) = (input, pipe.as_mut()) {
            let _ = p.write_all(input.as_bytes());
        }
        drop(pipe);
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out.map_err(ExecError::Spawn)?,
        Err(_) => {
            kill();
            return Err(ExecError::Failed(format!(
                "{program} did not finish within {} ms and was killed",
                limit.as_millis()
            )));
        }
    };
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(ExecError::Failed(
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

/// `name` found in `PATH` (absolute), if it is a bare name found there.
pub fn in_path(name: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') {
        return None;
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .and_then(|p| p.to_str().map(str::to_string))
}

/// The first of `candidates` that exists, else the bare name for PATH.
pub fn find_program(candidates: &[&'static str], bare: &'static str) -> &'static str {
    candidates
        .iter()
        .copied()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or(bare)
}

/// Every program a call may run: for Landlock's list (`fs_access`).
pub fn programs() -> Vec<std::path::PathBuf> {
    [
        super::nft::nft_program(),
        super::reference::iptables(),
        super::reference::ip6tables(),
    ]
    .into_iter()
    .filter(|p| p.starts_with('/'))
    .map(std::path::PathBuf::from)
    .collect()
}
