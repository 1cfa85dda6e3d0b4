//! The wasm runtime: engine, module resolution, compiled-module cache, one
//! linker per world, and running one CNI command in a guest.

pub mod bindings;
pub mod cache;
pub mod convert;
mod delegate;
pub mod engine;
pub mod linker;
pub mod resolve;
pub mod state;

use crate::caps::grant::Assigned;
use crate::caps::{
    firewall::FirewallCtx, ipam::IpamCtx, log::LogCtx, netns::NetCtx, store::StoreCtx,
};
use crate::cni::{Call, CniError, CniResult, Command};
use bindings::wasm_cni::plugin::types as wit;
use cache::Cache;
use linker::Role;
use resolve::ModulePath;
use state::{GuestOutput, InterfaceState, IpamState};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

pub struct Runtime {
    engine: Engine,
    cache: Cache,
    modules: ModulePath,
    deadlines: Deadlines,
    // Built on first use: a call needs one world, or two with wasm IPAM.
    interface_linker: OnceLock<Linker<InterfaceState>>,
    ipam_linker: OnceLock<Linker<IpamState>>,
}

/// A compiled module and the role its imports give it.
pub struct Module {
    pub name: String,
    pub path: PathBuf,
    pub component: Component,
    pub role: Role,
}

/// How long a CNI call may take, and when its parts must give up, so each
/// fails (and undoes its work) before the part that called it does. A
/// guest's compute is bounded by fuel; this bounds its waiting (a WASI
/// sleep, a slow IPAM plugin, a lock someone else keeps).
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    started: tokio::time::Instant,
    limit: std::time::Duration,
}

impl Deadlines {
    pub fn new(limit: std::time::Duration) -> Self {
        Deadlines {
            started: tokio::time::Instant::now(),
            limit,
        }
    }

    /// The whole call: the top-level plugin is stopped then.
    pub fn call(&self) -> tokio::time::Instant {
        self.started + self.limit
    }

    /// A delegated IPAM plugin: stopped at three quarters.
    pub fn ipam(&self) -> tokio::time::Instant {
        self.started + self.limit * 3 / 4
    }
}

impl Runtime {
    pub fn new(
        modules: ModulePath,
        cache_dir: &Path,
        deadlines: Deadlines,
    ) -> Result<Arc<Runtime>, CniError> {
        let engine = engine::new_engine()
            .map_err(|e| CniError::host(format!("cannot start wasmtime: {e:#}")))?;
        let cache = Cache::open(&engine, cache_dir);
        Ok(Arc::new(Runtime {
            engine,
            cache,
            modules,
            deadlines,
            interface_linker: OnceLock::new(),
            ipam_linker: OnceLock::new(),
        }))
    }

    pub fn modules(&self) -> &ModulePath {
        &self.modules
    }

    /// Load the module `name` names; `None` when a plain name has none.
    pub fn load(&self, name: &str) -> Result<Option<Module>, CniError> {
        let Some(path) = self.modules.find(name).map_err(CniError::config)? else {
            return Ok(None);
        };
        let (component, outcome) = self
            .cache
            .load(&self.engine, &path)
            .map_err(CniError::module)?;
        let role = linker::role_of(&self.engine, &component)
            .map_err(|e| CniError::module(format!("{}: {e}", path.display())))?;
        crate::log::debug(&format!(
            "module {name}: {} ({role:?}, cache {outcome:?})",
            path.display()
        ));
        let name = Path::new(name)
            .file_stem()
            .map_or(name.to_string(), |s| s.to_string_lossy().into_owned());
        Ok(Some(Module {
            name,
            path,
            component,
            role,
        }))
    }

    /// Run `command` in `module` for `call`. A failed ADD is undone: IPAM
    /// released, rules and links this call made removed, even when the guest
    /// trapped halfway.
    pub async fn run(
        self: &Arc<Self>,
        module: &Module,
        call: &Arc<Call>,
        command: Command,
    ) -> Result<Option<CniResult>, CniError> {
        match module.role {
            Role::Interface => self.run_interface(module, call, command).await,
            Role::Ipam => {
                self.run_ipam(module, call, command, self.deadlines.call())
                    .await
            }
        }
    }

    async fn run_interface(
        self: &Arc<Self>,
        module: &Module,
        call: &Arc<Call>,
        command: Command,
    ) -> Result<Option<CniResult>, CniError> {
        let needs_netns = matches!(command, Command::Add | Command::Check);
        // What IPAM assigns in this call bounds what the guest may put on
        // the node (gateway addresses, masquerade).
        let assigned = Assigned::default();
        // The config names the bridge it may use; for the bridge plugin,
        // an absent "bridge" means its documented default, cni0 (a node
        // switching from the reference plugin has one they made).
        let named_bridge = call
            .conf
            .bridge
            .clone()
            .or_else(|| (module.name == "bridge").then(|| "cni0".to_string()));
        let net = NetCtx::new(
            call.env.netns.clone(),
            needs_netns,
            named_bridge,
            assigned.clone(),
        )
        .map_err(CniError::env)?;
        let owner = (
            call.conf.name.as_str(),
            call.env.container_id.as_str(),
            call.env.ifname.as_str(),
        );
        let state = InterfaceState::new(
            net,
            FirewallCtx::new(owner, assigned.clone()),
            IpamCtx::new(self.clone(), call.clone(), assigned),
            LogCtx::new(&module.name),
        );
        let mut store = self.store(state, |s| &mut s.limits)?;
        let linker = get_linker(&self.interface_linker, || {
            linker::interface_linker(&self.engine)
        })?;
        let mut outcome = invoke(
            &mut store,
            linker,
            module,
            call,
            command,
            self.deadlines.call(),
        )
        .await;
        // Changes the guest started are part of its answer.
        let firewall = store.data_mut().firewall.finish().await;
        crate::log::debug("firewall changes done");
        if let Err(e) = firewall {
            match outcome {
                Ok(_) => outcome = Err(CniError::plugin(e)),
                Err(_) => crate::log::error(&e),
            }
        }
        match outcome {
            Err(e) if command == Command::Add => {
                let s = store.data_mut();
                let mut failures = s.firewall.rollback().await;
                failures.extend(s.ipam.rollback().await);
                failures.extend(s.net.rollback().await);
                Err(with_rollback_failures(e, failures))
            }
            outcome => outcome,
        }
    }

    async fn run_ipam(
        &self,
        module: &Module,
        call: &Call,
        command: Command,
        deadline: tokio::time::Instant,
    ) -> Result<Option<CniResult>, CniError> {
        let data_dir = call.conf.ipam.as_ref().and_then(|i| i.data_dir.as_deref());
        // Waiting for the store's lock ends at two thirds of the plugin's
        // time (half the call's, when delegated), so "busy" comes back
        // while there is time to report it.
        let now = tokio::time::Instant::now();
        let lock_deadline = now + deadline.saturating_duration_since(now) * 2 / 3;
        let state = IpamState::new(
            StoreCtx::new(data_dir, &call.conf.name, lock_deadline),
            LogCtx::new(&module.name),
        );
        let mut store = self.store(state, |s| &mut s.limits)?;
        let linker = get_linker(&self.ipam_linker, || linker::ipam_linker(&self.engine))?;
        let outcome = invoke(&mut store, linker, module, call, command, deadline).await;
        match outcome {
            Err(e) if command == Command::Add => {
                let failures = store.data_mut().store.rollback().await;
                Err(with_rollback_failures(e, failures))
            }
            outcome => outcome,
        }
    }

    fn store<T: Send + 'static>(
        &self,
        state: T,
        limits: fn(&mut T) -> &mut wasmtime::StoreLimits,
    ) -> Result<Store<T>, CniError> {
        let mut store = Store::new(&self.engine, state);
        store.limiter(move |s| limits(s) as &mut dyn wasmtime::ResourceLimiter);
        store
            .set_fuel(engine::FUEL)
            .map_err(|e| CniError::host(format!("{e:#}")))?;
        Ok(store)
    }
}

fn get_linker<T>(
    cell: &OnceLock<Linker<T>>,
    build: impl FnOnce() -> wasmtime::Result<Linker<T>>,
) -> Result<&Linker<T>, CniError> {
    if cell.get().is_none() {
        let l = build().map_err(|e| CniError::host(format!("cannot build the linker: {e:#}")))?;
        let _ = cell.set(l);
    }
    Ok(cell.get().expect("set above"))
}

/// Instantiate the module and call one export; what the guest printed goes
/// to the log, and its tail into the error when the call fails.
async fn invoke<T: GuestOutput + Send + 'static>(
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
        // Dropping the call stops the guest where it waits; the store
        // stays ours, so the caller can still undo what it did.
        Err(_) => Err(CniError::plugin(format!(
            "plugin {} did not finish in time and was stopped (WASM_CNI_TIMEOUT)",
            module.name
        ))),
    };
    let printed = store.data().output().contents();
    let printed = String::from_utf8_lossy(&printed);
    for line in printed.lines() {
        crate::log::info(&crate::log::guest_line(&module.name, line));
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
        .map_err(|e| {
            CniError::module(format!(
                "cannot instantiate {name} ({}): {e:#}",
                module.path.display()
            ))
        })?;
    crate::log::debug(&format!("{name}: instantiated"));
    let plugin = bindings::Plugins::new(&mut *store, &instance).map_err(|e| {
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
        Ok(Ok(Some(result))) => convert::result_from_wit(result).map(Some).map_err(|e| {
            CniError::plugin(format!("plugin {name} returned an invalid result: {e}"))
        }),
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
    } else {
        format!("plugin {name} trapped: {trap}")
    };
    CniError::plugin(msg).with_details(format!("{trap:?}"))
}

fn with_rollback_failures(mut e: CniError, failures: Vec<String>) -> CniError {
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
