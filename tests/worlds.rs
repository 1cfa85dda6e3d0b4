//! Each built-in guest targets the world of its role and the contract
//! version it was built for, and imports nothing that world does not grant.

use wasm_cni::runtime::engine::new_engine;
use wasm_cni::runtime::linker::{Contract, Role, classify};
use wasm_cni_tests::module;
use wasmtime::component::Component;

fn imports(name: &str) -> (Role, Vec<String>) {
    let (role, _, names) = inspect(name);
    (role, names)
}

fn inspect(name: &str) -> (Role, Contract, Vec<String>) {
    let engine = new_engine(wasm_cni::runtime::engine::EngineKind::Native).unwrap();
    let c = Component::from_file(&engine, module(name)).unwrap();
    let names: Vec<String> = c
        .component_type()
        .imports(&engine)
        .map(|(n, _)| n.to_string())
        .collect();
    eprintln!("{name} imports {names:?}");
    let c = classify(&engine, &c).unwrap();
    (c.role, c.contract, names)
}

#[test]
fn the_builtins_speak_0_2_0_and_a_0_1_0_module_is_told_apart() {
    assert_eq!(inspect("bridge").1, Contract::V0_2_0);
    assert_eq!(inspect("host-local").1, Contract::V0_2_0);
    let (role, contract, names) = inspect("contract-0-1-0");
    assert_eq!(
        (role, contract),
        (Role::Ipam, Contract::V0_1_0),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .filter(|n| n.starts_with("wasm-cni:"))
            .all(|n| n.ends_with("@0.1.0")),
        "{names:?}"
    );
}

#[test]
fn host_local_targets_the_ipam_world() {
    let (role, names) = imports("host-local");
    assert_eq!(role, Role::Ipam, "{names:?}");
    let ours: Vec<_> = names
        .iter()
        .filter(|n| n.starts_with("wasm-cni:"))
        .collect();
    assert!(
        ours.iter().all(|n| n.contains("/store@")
            || n.contains("/log@")
            || n.contains("/types@")
            || n.contains("/resolv-conf@")
            || n.contains("/lifecycle@")),
        "{ours:?}"
    );
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with("wasi:filesystem") && !n.starts_with("wasi:sockets")),
        "{names:?}"
    );
}

#[test]
fn bridge_targets_the_interface_world() {
    let (role, names) = imports("bridge");
    assert_eq!(role, Role::Interface, "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("wasm-cni:plugin/link@")),
        "{names:?}"
    );
    assert!(names.iter().all(|n| !n.contains("/store@")), "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with("wasi:filesystem") && !n.starts_with("wasi:sockets")),
        "{names:?}"
    );
}
