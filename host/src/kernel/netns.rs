//! Network namespaces: open them by path, tell them apart, and run a short
//! piece of blocking code inside one.
//!
//! setns(2) changes only the calling thread, and a netlink socket or a
//! `/proc/sys/net` file belongs to the namespace it was opened in. So the
//! container's sockets and files are opened on a fresh thread that
//! setns's and hands the result back; no runtime thread (and no pooled
//! thread) ever changes namespace.

use rustix::fs::{Mode, OFlags, fstat, fstatfs};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

/// `NSFS_MAGIC`: the file system of namespace files (`/proc/PID/ns/*` and
/// their bind mounts under `/run/netns`).
const NSFS_MAGIC: u64 = 0x6e73_6673;

/// `CNI_NETNS`, opened before privileges were dropped.
static PREOPENED: std::sync::OnceLock<(std::path::PathBuf, Netns)> = std::sync::OnceLock::new();

/// An open network namespace.
#[derive(Debug, Clone)]
pub struct Netns {
    fd: Arc<OwnedFd>,
    id: (u64, u64),
}

impl Netns {
    /// The namespace this thread runs in (the plugin's "host" namespace).
    pub fn current() -> io::Result<Netns> {
        Self::open_now(Path::new("/proc/thread-self/ns/net"))
    }

    /// Open a namespace file by path (`CNI_NETNS`: a bind mount or
    /// `/proc/PID/ns/net`). The path is first resolved without opening
    /// what it names (`O_PATH`): a FIFO would block a plain open until a
    /// writer came, and opening a device can have effects of its own. Only
    /// a file on nsfs is then opened for real, through the descriptor, so
    /// what was checked is what is opened.
    pub fn open(path: &Path) -> io::Result<Netns> {
        if let Some(ns) = PREOPENED
            .get()
            .and_then(|(p, ns)| (p == path).then(|| ns.clone()))
        {
            return Ok(ns);
        }
        Self::open_now(path)
    }

    /// Open `path` now, before the process gives up the privileges opening
    /// it may need (see `privilege`): later opens of the same path get this
    /// handle. One process serves one CNI call, so one path.
    pub fn preopen(path: &Path) -> io::Result<()> {
        let ns = Self::open_now(path)?;
        let _ = PREOPENED.set((path.to_path_buf(), ns));
        Ok(())
    }

    fn open_now(path: &Path) -> io::Result<Netns> {
        let probe = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
        if fstatfs(&probe)?.f_type as u64 != NSFS_MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a namespace file (it is not on nsfs)",
            ));
        }
        let fd = rustix::fs::open(
            format!("/proc/self/fd/{}", probe.as_raw_fd()),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = fstat(&fd)?;
        Ok(Netns {
            fd: Arc::new(fd),
            id: (st.st_dev, st.st_ino),
        })
    }

    /// (device, inode): two handles to one namespace have the same.
    pub fn id(&self) -> (u64, u64) {
        self.id
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

/// Run blocking `f` on the blocking pool, in this process's namespace.
pub async fn blocking<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    run(None, f).await
}

/// Run blocking `f` off the async runtime's thread: inside `ns` on a fresh
/// thread, or (`None`) in this process's namespace on the blocking pool.
/// Fails with EINVAL when `ns` is not a network namespace.
pub async fn run<T, F>(ns: Option<&Netns>, f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let Some(ns) = ns else {
        return tokio::task::spawn_blocking(move || crate::bug::guard("a blocking task", f))
            .await
            .map_err(|e| io::Error::other(format!("blocking task failed: {e}")))?;
    };
    let fd = ns.fd.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("wasm-cni-netns".into())
        .spawn(move || {
            let entered = move_into_link_name_space(fd.as_fd(), Some(LinkNameSpaceType::Network))
                .map_err(io::Error::from);
            let _ = tx.send(entered.and_then(|()| {
                crate::bug::guard("the namespace helper thread", || {
                    crate::fault::point("netns.helper");
                    f()
                })
            }));
        })?;
    rx.await
        .map_err(|_| io::Error::other("namespace helper thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_and_plain_files_are_refused_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let plain = tmp.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        for p in [&fifo, &plain] {
            let e = Netns::open(p).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{}", p.display());
        }
        assert_eq!(
            Netns::open(&tmp.path().join("missing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn this_namespace_is_itself() {
        let a = Netns::current().unwrap();
        let b = Netns::open(Path::new("/proc/self/ns/net")).unwrap();
        assert_eq!(a.id(), b.id());
    }
}
