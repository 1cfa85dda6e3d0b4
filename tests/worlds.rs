//! Each built-in guest targets the world of its role, and imports nothing
//! that world does not grant.

use wasm_cni::runtime::engine::new_engine;
use wasm_cni::runtime::linker::{Role, role_of};
use wasm_cni_tests::module;
use wasmtime::component::Component;

fn imports(name: &str) -> (Role, Vec<String>) {
    let engine = new_engine().unwrap();
    let c = Component::from_file(&engine, module(name)).unwrap();
    let names: Vec<String> = c
        .component_type()
        .imports(&engine)
        .map(|(n, _)| n.to_string())
        .collect();
    eprintln!("{name} imports {names:?}");
    (role_of(&engine, &c).unwrap(), names)
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
        ours.iter()
            .all(|n| n.contains("/store@") || n.contains("/log@") || n.contains("/types@")),
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
