//! The trait a plugin implements, and the macro that exports it.

use crate::{CniError, CniResult, GcRequest, Request, StatusRequest, codes};

/// A CNI plugin. Each CNI call is one instance, so the methods take no
/// `self`: keep state in the kernel or the store, not in memory.
pub trait Plugin {
    /// ADD: configure the attachment and describe it.
    fn add(req: Request) -> Result<CniResult, CniError>;

    /// DEL: undo ADD. The default has nothing to undo. A real DEL must
    /// succeed when everything is already gone.
    fn del(req: Request) -> Result<(), CniError> {
        let _ = req;
        Ok(())
    }

    /// CHECK: verify what `req.prev_result` lists. There is no honest
    /// default, so the default says so.
    fn check(req: Request) -> Result<(), CniError> {
        let _ = req;
        Err(CniError::new(
            codes::PLUGIN_FAILED,
            "CHECK is not implemented by this plugin",
        ))
    }

    /// GC: remove what this network keeps for attachments not in
    /// `req.valid_attachments`. The default keeps nothing, so has nothing
    /// to collect. Keep going past errors and report them together.
    fn gc(req: GcRequest) -> Result<(), CniError> {
        let _ = req;
        Ok(())
    }

    /// STATUS: whether an ADD could succeed now. The default is ready; an
    /// interface plugin with IPAM should ask it (`ipam_lifecycle::status`).
    fn status(req: StatusRequest) -> Result<(), CniError> {
        let _ = req;
        Ok(())
    }
}

/// Export a [`Plugin`] as the component's `wasm-cni:plugin/plugin` interface.
#[macro_export]
macro_rules! register {
    ($plugin:ty) => {
        struct __WasmCniExport;

        impl $crate::bindings::exports::wasm_cni::plugin0_2_0::plugin::Guest for __WasmCniExport {
            fn add(req: $crate::Request) -> ::core::result::Result<$crate::CniResult, $crate::CniError> {
                <$plugin as $crate::Plugin>::add(req)
            }
            fn del(req: $crate::Request) -> ::core::result::Result<(), $crate::CniError> {
                <$plugin as $crate::Plugin>::del(req)
            }
            fn check(req: $crate::Request) -> ::core::result::Result<(), $crate::CniError> {
                <$plugin as $crate::Plugin>::check(req)
            }
            fn gc(req: $crate::GcRequest) -> ::core::result::Result<(), $crate::CniError> {
                <$plugin as $crate::Plugin>::gc(req)
            }
            fn status(req: $crate::StatusRequest) -> ::core::result::Result<(), $crate::CniError> {
                <$plugin as $crate::Plugin>::status(req)
            }
        }

        // Exported from the wasm component only: natively (a plugin
        // crate's own `cargo test`) there is no host to call it, and the
        // export names are not symbols a native linker takes. There, a
        // public function names the entry points instead, so that the
        // plugin's code counts as used.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export_plugin!(__WasmCniExport with_types_in $crate::bindings);
        #[cfg(not(target_arch = "wasm32"))]
        #[doc(hidden)]
        pub fn __wasm_cni_entry_points() {
            use $crate::bindings::exports::wasm_cni::plugin0_2_0::plugin::Guest;
            let _ = (
                <__WasmCniExport as Guest>::add,
                <__WasmCniExport as Guest>::del,
                <__WasmCniExport as Guest>::check,
                <__WasmCniExport as Guest>::gc,
                <__WasmCniExport as Guest>::status,
            );
        }
    };
}
