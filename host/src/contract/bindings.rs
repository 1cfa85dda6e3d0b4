//! Host bindings for every contract version: wasm-cni:plugin@0.1.0 and
//! @0.2.0.
//!
//! Generated once for the union of all worlds; each role's and version's
//! linker then adds only the interfaces its world grants (see
//! `runtime::linker`), so an IPAM module that imports `netns` fails to
//! instantiate instead of getting it. 0.2.0 imports the 0.1.0 capability
//! interfaces unchanged (its folder has 0.1.0 as a dependency), so one host
//! implementation serves both, and only what is new has 0.2.0 types.

wasmtime::component::bindgen!({
    inline: "
        package wasm-cni:host;
        world plugins {
            include wasm-cni:plugin/interface-plugin@0.1.0;
            include wasm-cni:plugin/ipam-plugin@0.1.0;
            include wasm-cni:plugin/interface-plugin@0.2.0;
            include wasm-cni:plugin/ipam-plugin@0.2.0;
        }
    ",
    path: "../wit/v0.2.0",
    // `tracing`: every import reports itself to the audit trail (`audit`),
    // lists included (`verbose_tracing`: the recorder reads at most a few
    // hundred bytes of any argument, however long).
    imports: { default: async | trappable | tracing | verbose_tracing },
    exports: { default: async },
    trappable_error_type: {
        "wasm-cni:plugin/types.error" => crate::contract::CapError,
    },
    with: {
        "wasm-cni:plugin/netns.namespace": NamespaceHandle,
        "wasm-cni:plugin/store.lock": LockHandle,
    },
});

/// The WIT `namespace` resource. Its rep says which namespace: a guest
/// holds only handles the host minted, so it cannot name any other.
pub struct NamespaceHandle;

/// The WIT `lock` resource; the held lock itself lives in the store's
/// context.
pub struct LockHandle;
