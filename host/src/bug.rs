//! Panics off the call's own task: a host bug on a thread the call started
//! (a namespace helper, the blocking pool, a scoped worker). There it can
//! only fail the capability with an I/O error, which the guest may turn
//! into any code or even shrug off; so the panic is also remembered here,
//! and the call that ran it ends in code 102 and its rollback, as a panic
//! on the call's own task does (`runtime::export::contained`).

use std::any::Any;
use std::io;
use std::sync::Mutex;

static FIRST: Mutex<Option<String>> = Mutex::new(None);

/// A panic's message.
pub fn message(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Remember a panic of `what` (the first one counts); the error to fail
/// the operation with.
pub fn caught(what: &str, p: &(dyn Any + Send)) -> io::Error {
    let msg = format!("{what} panicked: {}", message(p));
    let mut first = FIRST.lock().unwrap_or_else(|e| e.into_inner());
    first.get_or_insert_with(|| msg.clone());
    io::Error::other(msg)
}

/// The panic remembered, if any, left for whoever answers the call.
pub fn seen() -> Option<String> {
    FIRST.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The panic remembered since the last call, if any.
pub fn take() -> Option<String> {
    FIRST.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// `outcome`, unless it is a success and a panic was remembered: then the
/// call failed (its ADD rolls back, its DEL keeps what it would remove).
/// The answer's code-102 error is formed once, in `invoke`, from [`take`].
pub fn fails<T>(outcome: Result<T, crate::cni::CniError>) -> Result<T, crate::cni::CniError> {
    match (outcome, seen()) {
        (Ok(_), Some(bug)) => Err(crate::cni::CniError::host(format!(
            "wasm-cni failed: {bug}"
        ))),
        (outcome, _) => outcome,
    }
}

/// Run `f`, a panic in it becoming [`caught`]'s error.
pub fn guard<T>(what: &str, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|p| Err(caught(what, &*p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_guarded_closure_is_an_error_and_remembered_once() {
        take();
        let r: io::Result<()> = guard("worker", || panic!("boom"));
        assert!(r.unwrap_err().to_string().contains("worker panicked: boom"));
        let _ = guard::<()>("second", || panic!("later"));
        assert_eq!(take().as_deref(), Some("worker panicked: boom"));
        assert_eq!(take(), None);
        assert_eq!(guard("fine", || Ok(3)).unwrap(), 3);
    }
}
