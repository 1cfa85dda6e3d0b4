//! wasm-cni: a CNI runtime whose privileged part is this small, fixed host
//! and whose network policy lives in sandboxed WebAssembly components.

pub mod caps;
pub mod cni;
pub mod invoke;
pub mod kernel;
pub mod log;
pub mod runtime;
