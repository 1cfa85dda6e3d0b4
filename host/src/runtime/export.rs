//! Calling one export of a guest: instantiate, call, turn what came back
//! (a result, an error, a trap, a limit, a panic in a host call) into the
//! CNI outcome, with the guest's output sent to the log.

use super::Module;
use super::linker::Contract;
use super::state::GuestOutput;
use crate::cni::{Call, CniError, CniResult, Command};
use crate::contract::convert;
use crate::contract::exports;
use crate::contract::wasm_cni::plugin::types as wit;
use crate::contract::wasm_cni::plugin_v2::lifecycle;
use crate::limits::{self, CallLimits};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use wasmtime::Store;
use wasmtime::component::Linker;

/// The largest result a plugin may return, as JSON.
const MAX_RESULT: usize = 1 << 20;

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
            crate::bug::message(&*p)
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
    let unusable = |e: wasmtime::Error| match e.downcast_ref::<limits::Stopped>() {
        Some(why) => CniError::plugin(format!("plugin {name} {why}")),
        None => CniError::module(format!(
            "cannot instantiate {name} ({}): {e:#}",
            module.path.display()
        )),
    };
    let pre = linker
        .instantiate_pre(&module.component)
        .map_err(unusable)?;
    let not_exported = |e: wasmtime::Error| {
        CniError::module(format!(
            "{name} does not export wasm-cni:plugin/plugin@{}: {e:#}",
            module.contract.as_str()
        ))
    };
    // Both versions' `plugin` exports share ADD, DEL and CHECK (one
    // request type, from 0.1.0's `types`); their bindings are distinct
    // types, so the shared part is spelled once here.
    macro_rules! instantiate_and_call {
        ($version:ident, $guest:ident, $($other:tt)*) => {{
            let indices = exports::$version::GuestIndices::new(&pre).map_err(not_exported)?;
            let instance = pre.instantiate_async(&mut *store).await.map_err(unusable)?;
            crate::log::debug(&format!(
                "{name}: instantiated (contract {})",
                module.contract.as_str()
            ));
            let $guest = indices.load(&mut *store, &instance).map_err(not_exported)?;
            match command {
                Command::Add => $guest
                    .call_add(&mut *store, &request(call, command))
                    .await
                    .map(|r| r.map(Some)),
                Command::Del => $guest.call_del(&mut *store, &request(call, command)).await.map(none),
                Command::Check => $guest
                    .call_check(&mut *store, &request(call, command))
                    .await
                    .map(none),
                Command::Version => return Err(not_a_plugin_command(command)),
                $($other)*
            }
        }};
    }
    let returned = match module.contract {
        Contract::V0_1_0 => instantiate_and_call!(v1, guest,
            // 0.1.0 has neither: a module that instantiates is ready, and
            // keeps nothing a GC could collect that it knows of.
            Command::Status | Command::Gc => {
                crate::log::info(&format!(
                    "{name} implements contract 0.1.0, which has no {}: answered for it",
                    command.as_str()
                ));
                Ok(Ok(None))
            }
        ),
        Contract::V0_2_0 => instantiate_and_call!(v2, guest,
            Command::Gc => guest
                .call_gc(&mut *store, &gc_request(call))
                .await
                .map(none),
            Command::Status => guest
                .call_status(&mut *store, &status_request(call))
                .await
                .map(none),
        ),
    };
    crate::log::debug(&format!("{name}: {} returned", command.as_str()));
    match returned {
        Ok(Ok(Some(result))) => {
            let result = convert::result_from_wit(result).map_err(|e| {
                CniError::plugin(format!("plugin {name} returned an invalid result: {e}"))
            })?;
            // Runtimes keep results (libcni caches them on disk): a few
            // interfaces and addresses, not megabytes.
            // A result the runtime's version cannot carry (0.2.0 without an
            // address) fails the command here, where an ADD is undone.
            let size = result.to_json(call.conf.cni_version)?.len();
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

/// A command's outcome that carries no result.
fn none<E>(r: Result<(), E>) -> Result<Option<wit::CniResult>, E> {
    r.map(|()| None)
}

fn not_a_plugin_command(command: Command) -> CniError {
    CniError::env(format!("{} is not a plugin command", command.as_str()))
}

fn trap_error<T>(name: &str, store: &Store<T>, trap: wasmtime::Error) -> CniError {
    let out_of_fuel = store.get_fuel().is_ok_and(|f| f == 0);
    let msg = if out_of_fuel {
        format!("plugin {name} ran out of fuel (its instruction budget) and was stopped")
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

/// What a guest sees of a GC: the network, its config, and the attachments
/// still in use.
fn gc_request(call: &Call) -> lifecycle::GcRequest {
    lifecycle::GcRequest {
        network: call.conf.name.clone(),
        cni_version: call.conf.cni_version.as_str().to_string(),
        config: call.conf.raw.clone(),
        valid_attachments: call
            .conf
            .valid_attachments
            .iter()
            .map(|a| lifecycle::Attachment {
                container_id: a.container_id.clone(),
                ifname: a.ifname.clone(),
            })
            .collect(),
    }
}

fn status_request(call: &Call) -> lifecycle::StatusRequest {
    lifecycle::StatusRequest {
        network: call.conf.name.clone(),
        cni_version: call.conf.cni_version.as_str().to_string(),
        config: call.conf.raw.clone(),
    }
}
