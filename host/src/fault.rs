//! Test hooks, read from the environment once. Each can do nothing but
//! fail a call at a point inside a capability, after its kernel call, so
//! tests can show that the failure still ends in a rollback; whoever sets
//! a runtime's environment can fail calls anyway. The points are
//! `link.create-veth` and `address.add`; panics also at `netns.helper` (on
//! the thread that works in the container's namespace) and
//! `add.after-guest` (the host's work once the guest has answered).
//!
//! - `WASM_CNI_TEST_PANIC=<point>`: the host panics there (a bug; code 102).
//! - `WASM_CNI_TEST_SYSCALL=<point>`: the host makes a system call that is
//!   not on the seccomp list there (`personality`, asking only), as a bug
//!   or an exploit in the host would; it fails, and so does the call.
//! - `WASM_CNI_TEST_OPEN=<point>:<path>`: the host opens `<path>` for
//!   reading there (a file outside the Landlock list); the call fails
//!   either way, saying whether it could.

use std::io;
use std::sync::OnceLock;

fn var(name: &'static str, cell: &'static OnceLock<Option<String>>) -> Option<&'static str> {
    cell.get_or_init(|| std::env::var(name).ok()).as_deref()
}

/// Panic at `name` if asked to.
pub fn point(name: &str) {
    static WANT: OnceLock<Option<String>> = OnceLock::new();
    if var("WASM_CNI_TEST_PANIC", &WANT) == Some(name) {
        panic!("WASM_CNI_TEST_PANIC at {name}");
    }
}

/// Make the forbidden system call or open the file at `name`, if asked
/// to: the error to fail the capability with.
pub fn injected(name: &str) -> io::Result<()> {
    static SYSCALL: OnceLock<Option<String>> = OnceLock::new();
    static OPEN: OnceLock<Option<String>> = OnceLock::new();
    if var("WASM_CNI_TEST_SYSCALL", &SYSCALL) == Some(name) {
        // SAFETY: personality(0xffffffff) only reads the persona.
        let r = unsafe { libc::personality(0xffff_ffff) };
        return Err(if r == -1 {
            io::Error::last_os_error()
        } else {
            io::Error::other("WASM_CNI_TEST_SYSCALL: personality() was allowed")
        });
    }
    if let Some(path) =
        var("WASM_CNI_TEST_OPEN", &OPEN).and_then(|v| v.strip_prefix(name)?.strip_prefix(':'))
    {
        return Err(match std::fs::File::open(path) {
            Ok(_) => io::Error::other(format!("WASM_CNI_TEST_OPEN: {path} could be opened")),
            Err(e) => io::Error::new(e.kind(), format!("WASM_CNI_TEST_OPEN: {path}: {e}")),
        });
    }
    Ok(())
}
