//! The wasm-cni guest SDK: write a CNI plugin as a WebAssembly component.
//!
//! ```ignore
//! use wasm_cni_sdk::{Plugin, Request, CniResult, CniError};
//!
//! struct MyPlugin;
//! impl Plugin for MyPlugin {
//!     fn add(req: Request) -> Result<CniResult, CniError> { /* ... */ }
//!     fn del(req: Request) -> Result<(), CniError> { /* ... */ }
//! }
//! wasm_cni_sdk::register!(MyPlugin);
//! ```
//!
//! The SDK targets contract `wasm-cni:plugin@0.2.0`: GC and STATUS have
//! defaults (nothing to collect; ready), so a plugin implements them only
//! when it keeps state or can run out of something.
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` and drop
//! the `.wasm` into a directory of `WASM_CNI_MODULE_PATH`. The host decides
//! the world from what the module imports: a module that uses only `store`
//! and `log` runs with the ipam-plugin world, any other with the
//! interface-plugin world. Calling a capability your world lacks makes the
//! host refuse to load the module, so import only what you need.

pub mod bindings {
    // One union of both worlds: the component's final imports are only what
    // the plugin's code calls (wit-component drops unused imports), so an
    // IPAM plugin built with this SDK still targets the ipam-plugin world.
    wit_bindgen::generate!({
        inline: r#"
            package wasm-cni:sdk;
            world sdk {
                include wasm-cni:plugin/interface-plugin@0.2.0;
                include wasm-cni:plugin/ipam-plugin@0.2.0;
            }
        "#,
        path: "../../wit/v0.2.0",
        pub_export_macro: true,
        export_macro_name: "export_plugin",
        default_bindings_module: "wasm_cni_sdk::bindings",
        generate_all,
        additional_derives: [PartialEq, Eq],
    });
}

pub mod config;
mod error;
mod net;
mod plugin;
mod request;
mod result;

// 0.2.0 imports the 0.1.0 capability interfaces unchanged; what it added
// has its own modules.
pub use bindings::wasm_cni::plugin0_1_0::{
    address, firewall, ipam, link, log as logging, netns, route, store, sysctl, types,
};
pub use bindings::wasm_cni::plugin0_2_0::{
    attachment_state, attachments, bridge_port, ipam_lifecycle, lifecycle, link_tuning,
    port_mapping, reference_cleanup, resolv_conf, spoof_check,
};
pub use error::{CapResultExt, codes};
pub use lifecycle::{Attachment, GcRequest, StatusRequest};
pub use net::{mac_string, random_mac};
pub use plugin::Plugin;
pub use request::Args;
pub use types::{
    CniError, CniResult, Command, Dns, InterfaceInfo, IpAddress, IpConfig, IpPrefix, Request, Route,
};

/// How the alias of every bridge the host creates begins: `wasm-cni`, a
/// space, and the network it was created for (`wasm-cni mynet`). Such a
/// bridge's MAC is pinned at birth.
pub const BRIDGE_MARK: &str = "wasm-cni";

/// The bridge with this alias was made by wasm-cni (for any network).
pub fn made_by_wasm_cni(alias: Option<&str>) -> bool {
    alias.is_some_and(|a| {
        a == BRIDGE_MARK
            || a.strip_prefix(BRIDGE_MARK)
                .is_some_and(|r| r.starts_with(' '))
    })
}

/// Log through the host (stderr and the host's log file, never stdout).
pub fn log(level: logging::Level, message: &str) {
    logging::log(level, message)
}

#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log($crate::logging::Level::Info, &format!($($t)*)) };
}

#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log($crate::logging::Level::Warn, &format!($($t)*)) };
}

#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => { $crate::log($crate::logging::Level::Debug, &format!($($t)*)) };
}
