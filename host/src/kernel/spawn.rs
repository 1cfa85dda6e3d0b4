//! The spawner: the one thread that starts child processes (`nft`,
//! `iptables`, native IPAM plugins).
//!
//! It is started before the call's seccomp filter is installed (`invoke`),
//! so the programs it executes do not inherit that filter, which allows
//! no `execve` at all (see `seccomp`). What it is handed is data, not a
//! prepared command: a program, its arguments and environment. It runs
//! only the programs the call may run (the list `invoke` gives it, the one
//! Landlock's rules were made from), always in a process group of its own
//! that dies with the host. Without a spawner (unit tests, `wasm-cni
//! compile`) a program starts in place, the same way.
//!
//! A child asks to be killed when the thread that started it exits
//! (`die_with_parent`): the spawner lives as long as the process, so that
//! is when the host dies.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Sender, channel};

/// A program to start: stdout and stderr piped, stdin piped or
/// `/dev/null`, in a process group of its own, the host's environment plus
/// `env`.
#[derive(Debug, Clone)]
pub struct Program {
    pub path: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: bool,
}

type Request = (Program, Sender<io::Result<Child>>);

struct Spawner {
    requests: std::sync::Mutex<Sender<Request>>,
}

static SPAWNER: OnceLock<Spawner> = OnceLock::new();

/// Start the spawner thread (once), allowed to run `programs` only.
pub fn start(programs: Vec<PathBuf>) -> io::Result<()> {
    if SPAWNER.get().is_some() {
        return Ok(());
    }
    let (tx, rx) = channel::<Request>();
    std::thread::Builder::new()
        .name("wasm-cni-spawn".into())
        .spawn(move || {
            for (program, reply) in rx {
                let started = if programs.contains(&program.path) {
                    command(&program).spawn()
                } else if !program.path.is_absolute() {
                    // A bare name: not installed where the host looks.
                    Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{} is not installed", program.path.display()),
                    ))
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "{} is not a program this call may run",
                            program.path.display()
                        ),
                    ))
                };
                let _ = reply.send(started);
            }
        })?;
    let _ = SPAWNER.set(Spawner {
        requests: std::sync::Mutex::new(tx),
    });
    Ok(())
}

fn command(p: &Program) -> Command {
    let mut c = Command::new(&p.path);
    c.args(&p.args)
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .stdin(if p.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its whole group is killed when the call gives up on it: a change
        // given up on must not commit later (not even through a wrapper
        // script's child).
        .process_group(0);
    // If the host dies, so does the program, rather than commit after the
    // runtime has moved on. SAFETY: prctl is async-signal-safe.
    unsafe { c.pre_exec(die_with_parent) };
    c
}

/// Ask the kernel to kill this child when the thread that started it (and
/// so the host) dies.
pub fn die_with_parent() -> io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(io::Error::from)
}

/// Start `program`, on the spawner when there is one.
pub fn spawn(program: Program) -> io::Result<Child> {
    let Some(spawner) = SPAWNER.get() else {
        return command(&program).spawn();
    };
    let (tx, rx) = channel();
    spawner
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((program, tx))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}
