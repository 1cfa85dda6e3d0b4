//! CNI errors: the spec's codes and the one JSON document a failed call prints.

use serde::Serialize;
use std::fmt;

/// Error codes from the CNI specification (SPEC.md, "Error").
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENVIRONMENT: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    /// `CNI_NETNS` is the plugin's own (the node's) namespace.
    pub const INVALID_NETNS: u32 = 8;
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin is not available (cannot ADD now).
    pub const NOT_AVAILABLE: u32 = 50;
    /// STATUS: not available, and existing attachments may be affected.
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// 100 and up are plugin-specific. wasm-cni uses:
    /// the wasm plugin trapped, ran out of fuel or memory, or broke the
    /// contract (e.g. returned an address the kernel cannot hold).
    pub const PLUGIN_FAILED: u32 = 100;
    /// The wasm module could not be loaded: not a component, compiled for
    /// another world, imports what its role does not grant.
    pub const MODULE_UNUSABLE: u32 = 101;
    /// A host-side failure outside the plugin (cache, runtime set-up).
    pub const HOST_FAILURE: u32 = 102;
}

/// A CNI error as printed on stdout: `{"cniVersion","code","msg","details"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
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

    pub fn env(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_ENVIRONMENT, msg)
    }

    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_CONFIG, msg)
    }

    pub fn decode(msg: impl Into<String>) -> Self {
        Self::new(code::DECODE_FAILURE, msg)
    }

    pub fn plugin(msg: impl Into<String>) -> Self {
        Self::new(code::PLUGIN_FAILED, msg)
    }

    pub fn module(msg: impl Into<String>) -> Self {
        Self::new(code::MODULE_UNUSABLE, msg)
    }

    pub fn host(msg: impl Into<String>) -> Self {
        Self::new(code::HOST_FAILURE, msg)
    }

    /// The JSON document for stdout, tagged with the version the runtime
    /// asked for (or the newest we speak when that is unknown).
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        struct Doc<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            #[serde(flatten)]
            error: &'a CniError,
        }
        serde_json::to_string(&Doc {
            cni_version,
            error: self,
        })
        .unwrap_or_else(|_| {
            format!(
                r#"{{"cniVersion":"{cni_version}","code":{},"msg":"unprintable error"}}"#,
                self.code
            )
        })
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_version_code_msg_and_details_only_when_set() {
        let e = CniError::config("missing \"name\"");
        assert_eq!(
            e.to_json("1.0.0"),
            r#"{"cniVersion":"1.0.0","code":7,"msg":"missing \"name\""}"#
        );
        let e = CniError::new(code::INCOMPATIBLE_VERSION, "incompatible CNI versions")
            .with_details("config is \"9.9.9\"");
        assert_eq!(
            e.to_json("1.1.0"),
            r#"{"cniVersion":"1.1.0","code":1,"msg":"incompatible CNI versions","details":"config is \"9.9.9\""}"#
        );
    }
}
