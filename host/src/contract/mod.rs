//! The WIT contract `wasm-cni:plugin` (0.1.0 and 0.2.0) on the host side:
//! the generated bindings, the capability error, and conversions between
//! WIT values and the host's own. The capabilities and the runtime both
//! build on this; neither depends on the other.

mod bindings;
pub mod convert;
mod error;

pub use bindings::{LockHandle, NamespaceHandle, Plugins};
pub use error::{CapError, CapResult};

/// The generated interfaces by contract version. `plugin` is 0.1.0, whose
/// capability interfaces 0.2.0 imports unchanged; `plugin_v2` holds what
/// 0.2.0 added.
pub mod wasm_cni {
    pub use super::bindings::wasm_cni::plugin0_1_0 as plugin;
    pub use super::bindings::wasm_cni::plugin0_2_0 as plugin_v2;
}

/// The plugin interface each version exports.
pub mod exports {
    pub use super::bindings::exports::wasm_cni::plugin0_1_0::plugin as v1;
    pub use super::bindings::exports::wasm_cni::plugin0_2_0::plugin as v2;
}
