//! What a capability call returns on failure: an error the guest sees
//! (the WIT `error` variant), or a trap that ends the guest.

use super::wasm_cni::plugin::types;
use std::fmt;
use std::io;

#[derive(Debug)]
pub enum CapError {
    Guest(types::Error),
    Trap(wasmtime::Error),
}

pub type CapResult<T> = Result<T, CapError>;

impl CapError {
    pub fn not_found(msg: impl fmt::Display) -> Self {
        CapError::Guest(types::Error::NotFound(msg.to_string()))
    }
    pub fn exists(msg: impl fmt::Display) -> Self {
        CapError::Guest(types::Error::AlreadyExists(msg.to_string()))
    }
    pub fn denied(msg: impl fmt::Display) -> Self {
        CapError::Guest(types::Error::Denied(msg.to_string()))
    }
    pub fn invalid(msg: impl fmt::Display) -> Self {
        CapError::Guest(types::Error::Invalid(msg.to_string()))
    }
    pub fn busy(msg: impl fmt::Display) -> Self {
        CapError::Guest(types::Error::Busy(msg.to_string()))
    }
    pub fn other(msg: impl fmt::Display) -> Self {
        CapError::Guest(types::Error::Other(msg.to_string()))
    }

    /// A kernel or disk failure, classified by errno so the guest can act
    /// on it (`not-found` on ENODEV/ENOENT/ESRCH/EADDRNOTAVAIL, `already-exists`
    /// on EEXIST, `invalid` on EINVAL/ERANGE, `busy` on EAGAIN/EBUSY and
    /// timeouts).
    pub fn io(what: impl fmt::Display, e: io::Error) -> Self {
        use rustix::io::Errno;
        if let Some(why) = crate::seccomp::explain(&e) {
            crate::log::error(&format!("{what}: {why}"));
            return CapError::other(format!("{what}: {why}"));
        }
        let msg = format!("{what}: {e}");
        match e.raw_os_error().map(Errno::from_raw_os_error) {
            Some(Errno::NODEV | Errno::NOENT | Errno::SRCH | Errno::ADDRNOTAVAIL) => {
                CapError::not_found(msg)
            }
            Some(Errno::EXIST) => CapError::exists(msg),
            Some(Errno::INVAL | Errno::RANGE) => CapError::invalid(msg),
            Some(Errno::AGAIN | Errno::BUSY) => CapError::busy(msg),
            _ if e.kind() == io::ErrorKind::NotFound => CapError::not_found(msg),
            _ if e.kind() == io::ErrorKind::AlreadyExists => CapError::exists(msg),
            _ if e.kind() == io::ErrorKind::TimedOut => CapError::busy(msg),
            _ => CapError::other(msg),
        }
    }

    /// The guest-visible error, if this is one.
    pub fn guest(&self) -> Option<&types::Error> {
        match self {
            CapError::Guest(e) => Some(e),
            CapError::Trap(_) => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, CapError::Guest(types::Error::NotFound(_)))
    }
}

impl fmt::Display for CapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapError::Guest(types::Error::NotFound(m))
            | CapError::Guest(types::Error::AlreadyExists(m))
            | CapError::Guest(types::Error::Denied(m))
            | CapError::Guest(types::Error::Invalid(m))
            | CapError::Guest(types::Error::Busy(m))
            | CapError::Guest(types::Error::Other(m)) => f.write_str(m),
            CapError::Trap(e) => write!(f, "{e}"),
        }
    }
}

impl From<wasmtime::Error> for CapError {
    fn from(e: wasmtime::Error) -> Self {
        CapError::Trap(e)
    }
}
