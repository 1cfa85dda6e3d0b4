//! Host bindings for the wasm-cni:plugin@0.1.0 contract.
//!
//! Generated once for the union of both worlds; each role's linker then
//! adds only the interfaces its world grants (see `runtime::linker`), so an
//! IPAM module that imports `netns` fails to instantiate instead of getting
//! it.

wasmtime::component::bindgen!({
    inline: "
        package wasm-cni:host;
        world plugins {
            include wasm-cni:plugin/interface-plugin@0.1.0;
            include wasm-cni:plugin/ipam-plugin@0.1.0;
        }
    ",
    path: "../wit/v0.1.0",
    imports: { default: async | trappable },
    exports: { default: async },
    trappable_error_type: {
        "wasm-cni:plugin/types.error" => crate::caps::CapError,
    },
    with: {
        "wasm-cni:plugin/netns.namespace": crate::caps::netns::NamespaceHandle,
        "wasm-cni:plugin/store.lock": crate::caps::store::LockHandle,
    },
});
