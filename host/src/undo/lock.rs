//! The network's lock: every ADD of a network holds it shared while it
//! runs; a failed ADD converts it to exclusive before it decides whether
//! shared state it touched (the bridge, its gateway address, its settings)
//! is still relied on. Holding it exclusively means no other ADD of the
//! network is halfway, so "another attachment relies on it" is exactly "the
//! bridge has a port this call did not make": decided, not guessed.
//!
//! One `flock` per network under `/var/lib/wasm-cni/locks` (0700, root's).
//! Waits poll with backoff until a deadline, so a process stuck holding a
//! lock cannot hang calls; converting releases the shared lock first
//! (flock's rule), so two failing calls cannot deadlock each other.

use rustix::fs::{FlockOperation, Mode, OFlags, flock, openat};
use rustix::io::Errno;
use std::fs::File;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

pub const DEFAULT_LOCK_DIR: &str = "/var/lib/wasm-cni/locks";

pub struct NetworkLock {
    file: File,
    exclusive: bool,
}

/// The longest pause between two tries.
const POLL_MAX: Duration = Duration::from_millis(20);

async fn poll(file: &File, op: FlockOperation, deadline: Instant) -> io::Result<bool> {
    let mut pause = Duration::from_millis(1);
    loop {
        match flock(file, op) {
            Ok(()) => return Ok(true),
            Err(Errno::WOULDBLOCK) if Instant::now() + pause < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(POLL_MAX);
            }
            Err(Errno::WOULDBLOCK) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}

impl NetworkLock {
    /// Take `network`'s lock shared, waiting until `deadline`. `Ok(None)`
    /// when others hold it exclusively past the deadline.
    pub async fn shared(
        dir: &Path,
        network: &str,
        deadline: Instant,
    ) -> io::Result<Option<NetworkLock>> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let dirfd = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // The name is a network name (one path component, checked when the
        // config was read); a long one is shortened to fit a file name.
        let name = crate::owner::tag(&[network], 200);
        let fd = openat(
            &dirfd,
            name.replace(' ', "-").as_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let file = File::from(fd);
        if poll(&file, FlockOperation::NonBlockingLockShared, deadline).await? {
            Ok(Some(NetworkLock {
                file,
                exclusive: false,
            }))
        } else {
            Ok(None)
        }
    }

    /// Hold it exclusively, waiting until `deadline`; false if that did not
    /// happen in time (the caller then keeps shared state as it is).
    pub async fn exclusive(&mut self, deadline: Instant) -> bool {
        if self.exclusive {
            return true;
        }
        self.exclusive = poll(
            &self.file,
            FlockOperation::NonBlockingLockExclusive,
            deadline,
        )
        .await
        .unwrap_or(false);
        self.exclusive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn exclusive_waits_for_every_shared_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let soon = || Instant::now() + Duration::from_millis(100);
        block_on(async {
            let mut a = NetworkLock::shared(tmp.path(), "n", soon())
                .await
                .unwrap()
                .unwrap();
            let b = NetworkLock::shared(tmp.path(), "n", soon())
                .await
                .unwrap()
                .unwrap();
            assert!(!a.exclusive(soon()).await, "b still runs");
            drop(b);
            assert!(a.exclusive(soon()).await);
            assert!(
                NetworkLock::shared(tmp.path(), "n", soon())
                    .await
                    .unwrap()
                    .is_none(),
                "no new ADD while a rollback decides"
            );
            assert!(
                NetworkLock::shared(tmp.path(), "other", soon())
                    .await
                    .unwrap()
                    .is_some(),
                "other networks go on"
            );
        });
    }
}
