//! The CNI protocol: environment, network config, versions, results, errors.
//! Nothing here touches the kernel or wasm.

pub mod args;
pub mod call;
pub mod config;
pub mod env;
pub mod error;
pub mod result;
pub mod version;

pub use call::Call;
pub use config::NetConf;
pub use env::{CniEnv, Command};
pub use error::CniError;
pub use result::CniResult;
pub use version::CniVersion;
