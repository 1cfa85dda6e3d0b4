//! Calling one export of a guest: instantiate, call, turn what came back
//! (a result, an error, a trap, a limit, a panic in a host call) into the
//! CNI outcome, with the guest's output sent to the log.

use super::state::GuestOutput;
use super::{Module, engine};
use crate::cni::{Call, CniError, CniResult, Command};
use crate::contract::convert;
use crate::contract::wasm_cni::plugin::types as wit;
use crate::limits::{self, CallLimits};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use wasmtime::Store;
use wasmtime::component::Linker;

/// The largest result a plugin may return, as JSON.
const MAX_RESULT: usize = 1 << 20;

/// A panic's message.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// A panic anywhere in a guest call (a host call's bug, a netlink task)
/// becomes a code-102 error here, where the call can still be undone.
pub(super) async fn contained(
    name: &str,
    call: impl Future<Output = Result<Option<CniResult>, CniError>>,
) -> Result<Option<CniResult>, CniError> {
    match AssertUnwindSafe(call).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(p) => Err(CniError::host(format!(
            "wasm-cni failed while running {name}: {}",
            panic_message(&*p)
        ))),
    }
}

/// Instantiate the module and call one export; what the guest printed goes
/// to the log, and its tail into the error when the call fails.
pub(super) async fn invoke<T: GuestOutput + Send + 'static>(
    limits: &CallLimits,
    store: &mut Store<T>,
    linker: &Linker<T>,
    module: &Module,
    call: &Call,
    command: Command,
    deadline: tokio::time::Instant,
) -> Result<Option<CniResult>, CniError> {
    let outcome = match tokio::time::timeout_at(
        deadline,
        invoke_export(store, linker, module, call, command),
    )
    .await
    {
        Ok(outcome) => outcome,
        // Dropping the call stops the guest where it waits; what it did is
        // in the journal, so the caller can still undo it.
        Err(_) => Err(CniError::plugin(format!(
            "plugin {} did not finish in time and was stopped (WASM_CNI_TIMEOUT)",
            module.name
        ))),
    };
    let printed = store.data().output().contents();
    let printed = String::from_utf8_lossy(&printed);
    for line in printed.lines() {
        crate::caps::log::guest_log(limits, &module.name, crate::log::Level::Info, line);
    }
    outcome.map_err(|mut e| {
        if !printed.trim().is_empty() {
            let tail = tail(printed.trim(), 2048);
            e.details = if e.details.is_empty() {
                format!("plugin output: {tail}")
            } else {
                format!("plugin output: {tail}\n{}", e.details)
            };
        }
        e
    })
}

/// The last `max` bytes of `s`, on a character boundary.
fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

async fn invoke_export<T: Send + 'static>(
    store: &mut Store<T>,
    linker: &Linker<T>,
    module: &Module,
    call: &Call,
    command: Command,
) -> Result<Option<CniResult>, CniError> {
    let name = &module.name;
    let instance = linker
        .instantiate_async(&mut *store, &module.component)
        .await
        .map_err(|e| match e.downcast_ref::<limits::Stopped>() {
            Some(why) => CniError::plugin(format!("plugin {name} {why}")),
            None => CniError::module(format!(
                "cannot instantiate {name} ({}): {e:#}",
                module.path.display()
            )),
        })?;
    crate::log::debug(&format!("{name}: instantiated"));
    let plugin = crate::contract::Plugins::new(&mut *store, &instance).map_err(|e| {
        CniError::module(format!(
            "{name} does not export wasm-cni:plugin/plugin@0.1.0: {e:#}"
        ))
    })?;
    let guest = plugin.wasm_cni_plugin_plugin();
    let req = request(call, command);
    let returned = match command {
        Command::Add => guest.call_add(&mut *store, &req).await.map(|r| r.map(Some)),
        Command::Del => guest
            .call_del(&mut *store, &req)
            .await
            .map(|r| r.map(|()| None)),
        Command::Check => guest
            .call_check(&mut *store, &req)
            .await
            .map(|r| r.map(|()| None)),
        other => {
            return Err(CniError::env(format!(
                "{} is not a plugin command",
                other.as_str()
            )));
        }
    };
    crate::log::debug(&format!("{name}: {} returned", command.as_str()));
    match returned {
        Ok(Ok(Some(result))) => {
            let result = convert::result_from_wit(result).map_err(|e| {
                CniError::plugin(format!("plugin {name} returned an invalid result: {e}"))
            })?;
            // Runtimes keep results (libcni caches them on disk): a few
            // interfaces and addresses, not megabytes.
            let size = result.to_json(call.conf.cni_version).len();
            if size > MAX_RESULT {
                return Err(CniError::plugin(format!(
                    "plugin {name} returned a result of {size} bytes, more than {MAX_RESULT}"
                )));
            }
            Ok(Some(result))
        }
        Ok(Ok(None)) => Ok(None),
        Ok(Err(e)) => Err(convert::error_from_wit(e)),
        Err(trap) => Err(trap_error(name, store, trap)),
    }
}

fn trap_error<T>(name: &str, store: &Store<T>, trap: wasmtime::Error) -> CniError {
    let out_of_fuel = store.get_fuel().is_ok_and(|f| f == 0);
    let msg = if out_of_fuel {
        format!(
            "plugin {name} ran out of fuel ({} instructions) and was stopped",
            engine::FUEL
        )
    } else if let Some(why) = trap.downcast_ref::<limits::Stopped>() {
        format!("plugin {name} {why}")
    } else {
        format!("plugin {name} trapped: {trap}")
    };
    // The trap with the guest's backtrace, not the host's: `{:#}` is the
    // chain of causes.
    CniError::plugin(msg).with_details(format!("{trap:#}"))
}

pub(super) fn with_rollback_failures(mut e: CniError, failures: Vec<String>) -> CniError {
    if !failures.is_empty() {
        let note = format!(
            "cleanup after the failed ADD also failed: {}",
            failures.join("; ")
        );
        crate::log::error(&note);
        e.details = if e.details.is_empty() {
            note
        } else {
            format!("{}; {note}", e.details)
        };
    }
    e
}

/// The request a guest sees.
pub fn request(call: &Call, command: Command) -> wit::Request {
    wit::Request {
        command: match command {
            Command::Del => wit::Command::Del,
            Command::Check => wit::Command::Check,
            _ => wit::Command::Add,
        },
        container_id: call.env.container_id.clone(),
        netns: call.env.netns.as_ref().map(|p| p.display().to_string()),
        ifname: call.env.ifname.clone(),
        args: call.env.args.clone(),
        network: call.conf.name.clone(),
        cni_version: call.conf.cni_version.as_str().to_string(),
        config: call.conf.raw.clone(),
        prev_result: call.conf.prev_result.as_ref().map(convert::result_to_wit),
    }
}
