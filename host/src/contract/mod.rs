//! The WIT contract `wasm-cni:plugin@0.1.0` on the host side: the generated
//! bindings, the capability error, and conversions between WIT values and
//! the host's own. The capabilities and the runtime both build on this;
//! neither depends on the other.

mod bindings;
pub mod convert;
mod error;

pub use bindings::*;
pub use error::{CapError, CapResult};
