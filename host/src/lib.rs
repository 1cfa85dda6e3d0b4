//! wasm-cni: a CNI runtime whose privileged part is this small, fixed host
//! and whose network policy lives in sandboxed WebAssembly components.

pub mod audit;
pub mod bug;
pub mod caps;
pub mod cni;
pub mod contract;
pub mod fault;
pub mod fs_access;
pub mod grant;
pub mod invoke;
pub mod kernel;
pub mod limits;
pub mod log;
pub mod owner;
pub mod plan;
pub mod policy;
pub mod privilege;
pub mod runtime;
pub mod seccomp;
pub mod trust;
pub mod undo;
