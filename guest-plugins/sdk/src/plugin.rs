//! The trait a plugin implements, and the macro that exports it.

use crate::{CniError, CniResult, Request, codes};

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
}

/// Export a [`Plugin`] as the component's `wasm-cni:plugin/plugin` interface.
#[macro_export]
macro_rules! register {
    ($plugin:ty) => {
        struct __WasmCniExport;

        impl $crate::bindings::exports::wasm_cni::plugin::plugin::Guest for __WasmCniExport {
            fn add(req: $crate::Request) -> ::core::result::Result<$crate::CniResult, $crate::CniError> {
                <$plugin as $crate::Plugin>::add(req)
            }
            fn del(req: $crate::Request) -> ::core::result::Result<(), $crate::CniError> {
                <$plugin as $crate::Plugin>::del(req)
            }
            fn check(req: $crate::Request) -> ::core::result::Result<(), $crate::CniError> {
                <$plugin as $crate::Plugin>::check(req)
            }
        }

        $crate::bindings::export_plugin!(__WasmCniExport with_types_in $crate::bindings);
    };
}
