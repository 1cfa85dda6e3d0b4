//! CNI error codes and constructors, and turning capability errors into
//! CNI errors with context.

use crate::types::{CniError, Error};
use std::fmt;

/// The spec's error codes, and the plugin-specific ones wasm-cni uses.
pub mod codes {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENVIRONMENT: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot ADD now (no free address, ...).
    pub const NOT_AVAILABLE: u32 = 50;
    /// STATUS: not available, and existing attachments may be affected.
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// A plugin operation failed (the kernel or the store refused).
    pub const PLUGIN_FAILED: u32 = 100;
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Code 7: the network configuration is wrong.
    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(codes::INVALID_CONFIG, msg)
    }

    /// Code 2: a field this plugin does not support.
    pub fn unsupported(field: &str) -> Self {
        Self::new(
            codes::UNSUPPORTED_FIELD,
            format!("unsupported field {field:?}"),
        )
    }

    /// Code 100: an operation failed.
    pub fn failed(msg: impl Into<String>) -> Self {
        Self::new(codes::PLUGIN_FAILED, msg)
    }
}

impl Error {
    /// `not found: link eth0 in the container namespace`.
    pub fn describe(&self) -> String {
        match self {
            Error::NotFound(m) => format!("not found: {m}"),
            Error::AlreadyExists(m) => format!("already exists: {m}"),
            Error::Denied(m) => format!("denied: {m}"),
            Error::Invalid(m) => format!("invalid: {m}"),
            Error::Busy(m) => format!("busy: {m}"),
            Error::Other(m) => m.clone(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }

    /// This error as a CNI error saying what was being done.
    pub fn context(self, what: impl fmt::Display) -> CniError {
        let code = match self {
            Error::Invalid(_) => codes::INVALID_CONFIG,
            Error::Busy(_) => codes::TRY_AGAIN_LATER,
            _ => codes::PLUGIN_FAILED,
        };
        CniError::new(code, format!("{what}: {}", self.describe()))
    }
}

/// `link::get(...).context("find bridge mybridge")?`: a capability error
/// becomes a CNI error saying what was being done: `invalid` is code 7,
/// `busy` code 11 (try again later), the rest code 100.
pub trait CapResultExt<T> {
    fn context(self, what: impl fmt::Display) -> Result<T, CniError>;
}

impl<T> CapResultExt<T> for Result<T, Error> {
    fn context(self, what: impl fmt::Display) -> Result<T, CniError> {
        self.map_err(|e| e.context(what))
    }
}
