//! Network namespaces: open them by path, tell them apart, and run a short
//! piece of code inside one.
//!
//! setns(2) changes only the calling thread, and a netlink socket or a
//! `/proc/sys/net` file belongs to the namespace it was opened in. So the
//! container's sockets and files are opened on a short-lived thread that
//! setns's and hands the descriptor back; no runtime thread ever changes
//! namespace.

use rustix::fs::{Mode, OFlags, fstat};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// An open network namespace.
#[derive(Debug)]
pub struct Netns {
    fd: OwnedFd,
    id: (u64, u64),
}

impl Netns {
    /// The namespace this process runs in (the plugin's "host" namespace).
    pub fn current() -> io::Result<Netns> {
        Self::open(Path::new("/proc/thread-self/ns/net"))
    }

    /// Open a namespace by path (`CNI_NETNS`, a bind mount or /proc/PID/ns/net).
    pub fn open(path: &Path) -> io::Result<Netns> {
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        let st = fstat(&fd)?;
        Ok(Netns {
            fd,
            id: (st.st_dev, st.st_ino),
        })
    }

    /// Two handles to the same namespace compare equal.
    pub fn same_as(&self, other: &Netns) -> bool {
        self.id == other.id
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Run `f` on a new thread that has entered this namespace, and return
    /// what it returns. Fails with EINVAL when the fd is not a network
    /// namespace.
    pub fn run<T, F>(&self, f: F) -> io::Result<T>
    where
        F: FnOnce() -> io::Result<T> + Send,
        T: Send,
    {
        let fd = self.fd.as_fd();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    move_into_link_name_space(fd, Some(LinkNameSpaceType::Network))?;
                    f()
                })
                .join()
                .map_err(|_| io::Error::other("namespace helper thread panicked"))?
        })
    }
}
