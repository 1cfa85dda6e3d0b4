//! A test hook: `WASM_CNI_TEST_PANIC=<point>` makes the host panic at that
//! point inside a capability, after its kernel call, so tests can show that
//! a bug there still ends in a rollback and a code-102 error. The points
//! are `link.create-veth` and `address.add`. It can do nothing but fail a
//! call, which whoever sets a runtime's environment can do anyway.

use std::sync::OnceLock;

pub fn point(name: &str) {
    static WANT: OnceLock<Option<String>> = OnceLock::new();
    let want = WANT.get_or_init(|| std::env::var("WASM_CNI_TEST_PANIC").ok());
    if want.as_deref() == Some(name) {
        panic!("WASM_CNI_TEST_PANIC at {name}");
    }
}
