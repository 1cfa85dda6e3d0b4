//! The spawner: the one thread that starts child processes (`nft`,
//! `iptables`, native IPAM plugins).
//!
//! It is started before the call's seccomp filter is installed (`invoke`),
//! so the programs it executes do not inherit that filter, which allows
//! no `execve` at all (see `seccomp`). Anyone in the process may hand it a
//! prepared `Command`; it answers with the started child. Without a
//! spawner (unit tests, `wasm-cni compile`) a command starts in place.
//!
//! A child asks to be killed when the thread that started it exits
//! (`die_with_parent`): the spawner lives as long as the process, so
//! that is when the host dies.

use std::io;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::sync::mpsc::{Sender, channel};

type Request = (Command, Sender<io::Result<Child>>);

static SPAWNER: OnceLock<std::sync::Mutex<Sender<Request>>> = OnceLock::new();

/// Start the spawner thread (once).
pub fn start() -> io::Result<()> {
    if SPAWNER.get().is_some() {
        return Ok(());
    }
    let (tx, rx) = channel::<Request>();
    std::thread::Builder::new()
        .name("wasm-cni-spawn".into())
        .spawn(move || {
            for (mut command, reply) in rx {
                let _ = reply.send(command.spawn());
            }
        })?;
    let _ = SPAWNER.set(std::sync::Mutex::new(tx));
    Ok(())
}

/// Start `command`, on the spawner when there is one.
pub fn spawn(mut command: Command) -> io::Result<Child> {
    let Some(spawner) = SPAWNER.get() else {
        return command.spawn();
    };
    let (tx, rx) = channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((command, tx))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}
