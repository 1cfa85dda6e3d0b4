//! The wasm runtime: engine, module resolution, compiled-module cache, one
//! linker per world, the call's limits, and running one CNI command in a
//! guest.

pub mod cache;
pub mod delegate;
mod export;
pub use export::request;
use export::{contained, invoke, with_rollback_failures};
pub mod engine;
pub mod inspect;
pub mod linker;
pub mod node;
pub mod precompile;
pub mod resolve;
pub mod state;

use crate::caps::attachment_state::{self, AttachmentStateCtx, RemoveWhich};
use crate::caps::netns::ContainerNs;
use crate::caps::store::Written;
use crate::caps::{
    Shared, firewall::FirewallCtx, ipam::IpamCtx, log::LogCtx, netns::NetCtx,
    resolv_conf::ResolvConfCtx, store::StoreCtx,
};
use crate::cni::{Call, CniError, CniResult, Command, error::code};
use crate::grant::{Grant, Phase};
use crate::kernel::Kernel;
use crate::kernel::linux::Linux;
use crate::limits::{CallLimits, StoreLimiter};
use crate::policy::{Policy, StoreLocation};
use crate::undo::{NetworkLock, Rollback};
use cache::Cache;
use engine::EngineKind;
use futures::FutureExt;
use linker::{Contract, Role};
use resolve::ModulePath;
use state::{InterfaceState, IpamState};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

/// Where the host keeps the network locks (see `undo::lock`).
pub use crate::undo::lock::DEFAULT_LOCK_DIR;

pub struct Runtime {
    engine: Engine,
    cache: Cache,
    modules: ModulePath,
    policy: Arc<Policy>,
    deadlines: Deadlines,
    limits: Arc<CallLimits>,
    lock_dir: PathBuf,
    /// The call's command.
    command: Command,
    /// What in-process IPAM runs wrote to their stores during an ADD, in
    /// order, so a failed interface ADD can put back what its IPAM DEL does
    /// not (the round-robin cursor `last_reserved_ip.*`, entries an IPAM
    /// DEL inside the ADD removed).
    ipam_writes: std::sync::Mutex<Vec<(StoreLocation, Vec<Written>)>>,
    // Built on first use, one per contract version: a call needs one
    // world, or two with wasm IPAM.
    interface_linkers: [OnceLock<Linker<InterfaceState>>; 2],
    ipam_linkers: [OnceLock<Linker<IpamState>>; 2],
    engine_kind: EngineKind,
    /// Every module this call loaded, or failed to (`load`).
    loaded: std::sync::Mutex<std::collections::HashMap<String, Result<Module, CniError>>>,
    /// The epoch clock runs (started with the first guest).
    clock: OnceLock<()>,
    /// What a loading thread confines itself to (`fs_access::Loading`).
    loading: OnceLock<crate::fs_access::Loading>,
    /// The node the call runs against.
    node: node::Node,
}

/// A compiled module and the role its imports give it.
#[derive(Clone)]
pub struct Module {
    pub name: String,
    pub path: PathBuf,
    pub component: Component,
    pub role: Role,
    /// The contract version it was built against.
    pub contract: Contract,
    /// The sha256 (hex) of the module file.
    pub digest: String,
    /// It imports `attachment-state`: the call may need the network's
    /// directory of attachment states (`invoke` grants it).
    pub uses_attachment_state: bool,
    /// It imports `port-mapping`: an ADD may clear conntrack entries
    /// (`invoke` opens the socket before the seccomp filter).
    pub forwards_ports: bool,
}

/// How long a CNI call may take, and when its parts must give up, so each
/// fails (and undoes its work) before the part that called it does. A
/// guest's compute is bounded by fuel; this bounds its waiting (a WASI
/// sleep, a slow IPAM plugin, a lock someone else keeps).
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    started: tokio::time::Instant,
    limit: Duration,
}

impl Deadlines {
    pub fn new(limit: Duration) -> Self {
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

    /// Waiting for a lock that others hold: a quarter of the call, at most
    /// ten seconds.
    pub fn lock_wait(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + (self.limit / 4).min(Duration::from_secs(10))
    }
}

/// The grant phase of a command.
fn phase(command: Command) -> Phase {
    match command {
        Command::Add => Phase::Add,
        Command::Del => Phase::Del,
        Command::Gc => Phase::Gc,
        Command::Status => Phase::Status,
        Command::Check | Command::Version => Phase::Check,
    }
}

impl Runtime {
    pub fn new(
        modules: ModulePath,
        policy: Arc<Policy>,
        cache_dir: &Path,
        deadlines: Deadlines,
        command: Command,
        engine_kind: EngineKind,
        node: node::Node,
    ) -> Result<Arc<Runtime>, CniError> {
        let engine = engine::new_engine(engine_kind)
            .map_err(|e| CniError::host(format!("cannot start wasmtime: {e:#}")))?;
        let cache = match node.simulated() {
            Some(s) if s.read_only_cache => Cache::open_read_only(&engine, cache_dir),
            _ => Cache::open(&engine, cache_dir),
        };
        Ok(Arc::new(Runtime {
            engine,
            cache,
            modules,
            policy,
            limits: CallLimits::new(deadlines.call().into_std()),
            deadlines,
            // The network locks are the node's (a simulated one has its own).
            lock_dir: node.path(Path::new(DEFAULT_LOCK_DIR)),
            command,
            ipam_writes: Default::default(),
            interface_linkers: Default::default(),
            ipam_linkers: Default::default(),
            engine_kind,
            loaded: Default::default(),
            clock: OnceLock::new(),
            loading: OnceLock::new(),
            node,
        }))
    }

    /// The module `name` at `path` (found by `resolve`), loaded once per
    /// call: the first load's outcome, error or module, is kept, so that
    /// modules can be loaded before the call's seccomp filter is installed
    /// (`invoke`) and looked up after. Compiling runs on a thread of its
    /// own and is given up at `deadline`. Blocks.
    pub fn load(&self, name: &str, path: PathBuf, deadline: Instant) -> Result<Module, CniError> {
        let known = |loaded: &std::collections::HashMap<_, Result<Module, CniError>>| {
            loaded.get(name).cloned()
        };
        if let Some(outcome) = known(&self.loaded.lock().unwrap_or_else(|e| e.into_inner())) {
            return outcome;
        }
        // Not under the lock: another module may load meanwhile (see
        // `load_all`); of two loads of one name, the first kept wins.
        let outcome = self.load_now(name, path, deadline);
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        loaded.entry(name.to_string()).or_insert(outcome).clone()
    }

    /// [`load`](Self::load) each of `modules` at the same time: a call's
    /// interface and IPAM modules each cost a read, a sha256 and mapping an
    /// artifact (or a compile), and the node has more than one core.
    /// The first on this thread, the others on threads of their own.
    pub fn load_all(&self, modules: Vec<(&str, PathBuf, Instant)>) {
        let mut modules = modules.into_iter();
        let first = modules.next();
        std::thread::scope(|s| {
            for (name, path, deadline) in modules {
                let load = move || {
                    let _ = self.load(name, path, deadline);
                };
                // No thread to be had: it loads when first asked for.
                let _ = std::thread::Builder::new().spawn_scoped(s, load);
            }
            if let Some((name, path, deadline)) = first {
                let _ = self.load(name, path, deadline);
            }
        });
    }

    fn load_now(&self, name: &str, path: PathBuf, deadline: Instant) -> Result<Module, CniError> {
        let (cache, engine, p) = (self.cache.clone(), self.engine.clone(), path.clone());
        let max = self.policy.max_module_bytes;
        let lock_deadline = self.deadlines.lock_wait().into_std();
        // A module's name (in logs, errors and pins) is the name it was
        // found by (`bridge`, `host-local.v2`); for an absolute `"plugin"`
        // path, the file actually loaded (`path` is canonical: a link with
        // another name must not dodge the target's pin), less `.wasm`.
        let module_name = if name.contains('/') {
            let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
            let file = file.unwrap_or_default();
            file.strip_suffix(".wasm").unwrap_or(&file).to_string()
        } else {
            name.to_string()
        };
        let stem = module_name.clone();
        let policy = self.policy.clone();
        let pinned = policy.is_pinned(&stem);
        // A thread of its own rather than the async runtime's blocking
        // pool: a compile given up at the deadline goes on there, and pool
        // threads born before the seccomp filter must not exist to run
        // capability calls later.
        let (tx, rx) = std::sync::mpsc::channel();
        let loading = self.loading.get().cloned();
        std::thread::Builder::new()
            .name("wasm-cni-load".into())
            .spawn(move || {
                if let Some(l) = loading
                    && let Err(e) = l.restrict()
                {
                    let _ = tx.send(Err(format!("cannot confine the loading thread: {e}")));
                    return;
                }
                let admit = |digest: &str| policy.admit_module(&stem, digest);
                let _ = tx.send(cache.load(&engine, &p, max, lock_deadline, admit, pinned));
            })
            .map_err(|e| CniError::host(format!("cannot start loading {name}: {e}")))?;
        let compiled = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| {
                CniError::plugin(format!(
                    "module {name} was not compiled in time (WASM_CNI_TIMEOUT)"
                ))
            })?;
        let (component, loaded) = compiled.map_err(CniError::module)?;
        let linker::Classified {
            role,
            contract,
            uses_attachment_state,
            forwards_ports,
        } = linker::classify(&self.engine, &component)
            .map_err(|e| CniError::module(format!("{}: {e}", path.display())))?;
        crate::log::debug(&format!(
            "module {name}: {} ({role:?}, contract {}, {} engine, cache {:?})",
            path.display(),
            contract.as_str(),
            self.engine_kind.as_str(),
            loaded.outcome
        ));
        Ok(Module {
            name: module_name,
            path,
            component,
            role,
            contract,
            digest: loaded.digest,
            uses_attachment_state,
            forwards_ports,
        })
    }

    /// Put `module` on the audit line: it runs now.
    fn audit_module(&self, module: &Module) {
        crate::audit::module(crate::audit::ModuleRecord {
            name: module.name.clone(),
            sha256: module.digest.clone(),
            contract: module.contract.as_str(),
            role: match module.role {
                Role::Interface => "interface",
                Role::Ipam => "ipam",
            },
            engine: self.engine_kind.as_str(),
        });
    }

    /// From now on, threads that load modules confine themselves to
    /// `loading` first.
    pub fn confine_loading(&self, loading: crate::fs_access::Loading) {
        let _ = self.loading.set(loading);
    }

    /// Where the network locks are, on this call's node.
    pub fn lock_dir(&self) -> &Path {
        &self.lock_dir
    }

    /// Where this call finds modules.
    pub fn modules(&self) -> &ModulePath {
        &self.modules
    }

    /// The engine guest code runs on.
    pub fn engine_kind(&self) -> EngineKind {
        self.engine_kind
    }

    /// Run `command` in `module` for `call`. A failed ADD is undone: IPAM
    /// released, rules, links and bridge changes this call made removed,
    /// whether the guest returned an error, trapped, ran out of time, or a
    /// host call panicked.
    pub async fn run(
        self: &Arc<Self>,
        module: &Module,
        call: &Arc<Call>,
        command: Command,
    ) -> Result<Option<CniResult>, CniError> {
        match module.role {
            Role::Interface => self.run_interface(module, call, command).await,
            Role::Ipam => {
                self.run_ipam(module, call, command, self.deadlines.call(), &self.limits)
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
        let network = call.conf.name.as_str();
        let shared_bridges = self
            .policy
            .shared_bridges
            .keys()
            .filter(|b| self.policy.shares_bridge(b, network))
            .cloned()
            .collect();
        let shared = Shared::new(
            Grant::new(
                network,
                phase(command),
                shared_bridges,
                self.policy.gateway_subnets.clone(),
            )
            .allow_localhost_host_ports(self.policy.localhost_host_ports)
            .allow_host_ports(self.policy.host_ports.clone()),
        );
        let kernel: Arc<dyn Kernel> = match self.node.simulated() {
            Some(sim) => sim.kernel(call.env.netns.as_deref()),
            None => Arc::new(
                Linux::new(call.env.netns.clone(), Some(self.lock_dir.clone())).map_err(|e| {
                    CniError::host(format!("cannot open this process's network namespace: {e}"))
                })?,
            ),
        };
        let net = NetCtx::new(
            kernel.clone(),
            shared.clone(),
            call.env.netns.as_deref().and_then(Path::to_str),
        );
        // Before any guest code: ADD and CHECK need the namespace; no
        // command may take the node's own for a container's (code 8, the
        // reference's ErrInvalidNetNS; it finds out only after ADD has
        // configured the node).
        if call.env.netns.is_some()
            && matches!(command, Command::Add | Command::Check | Command::Del)
        {
            match net.open_checked().await {
                Ok(()) => {}
                Err(ContainerNs::Node(msg)) => {
                    return Err(CniError::new(code::INVALID_NETNS, msg));
                }
                Err(ContainerNs::Unusable(e))
                    if matches!(command, Command::Add | Command::Check) =>
                {
                    return Err(CniError::env(e.to_string()));
                }
                // DEL: a namespace that is gone still has IPAM and rules
                // to release; the guest finds it gone.
                Err(ContainerNs::Unusable(_)) => {}
            }
        }
        // An ADD holds its network's lock shared while it runs, so that a
        // failed ADD can tell what others rely on (see `undo::lock`).
        let mut lock = match command {
            Command::Add => self.network_lock(network).await?,
            _ => None,
        };
        let owner =
            crate::kernel::nft::owner_comment(network, &call.env.container_id, &call.env.ifname);
        let states = self.attachment_states(network);
        let state_file =
            attachment_state::file_name(&call.env.container_id, &call.env.ifname, &module.name);
        let prior_state = attachment_state::Prior::default();
        let state = InterfaceState::new(
            net,
            FirewallCtx::new(
                kernel.clone(),
                shared.clone(),
                (network, &call.env.container_id, &call.env.ifname),
                self.deadlines.call().into_std(),
            ),
            IpamCtx::new(self.clone(), call.clone(), shared.clone()),
            LogCtx::new(&module.name, &self.limits),
            AttachmentStateCtx::new(
                states.clone(),
                state_file.clone(),
                phase(command),
                &self.limits,
                prior_state.clone(),
            ),
            StoreLimiter::new(&self.limits),
        );
        // What of this attachment's host ports takes the node's loopback
        // addresses: its DEL releases `route_localnet` where they were
        // the last (only where the node policy allows them at all).
        let loopback = if command == Command::Del && self.policy.localhost_host_ports {
            crate::caps::port_mapping::loopback_targets(
                &*kernel,
                &owner,
                self.deadlines.call().into_std(),
            )
            .await
        } else {
            Vec::new()
        };
        let mut store = self.store(state, &self.limits, |s| &mut s.limits)?;
        let linker = get_linker(&self.interface_linkers[module.contract as usize], || {
            linker::interface_linker(&self.engine, module.contract)
        })?;
        self.audit_module(module);
        let audited = crate::audit::enter_module(&module.name);
        let mut outcome = contained(
            &module.name,
            invoke(
                &self.limits,
                &mut store,
                linker,
                module,
                call,
                command,
                self.deadlines.call(),
            ),
        )
        .await;
        drop(audited);
        drop(store);
        // What the host does after the guest is as much the call as the
        // guest's part: a panic here, or on a thread the call started
        // (`bug`), also ends in code 102 and, for an ADD, the rollback.
        let after = AssertUnwindSafe(async {
            crate::fault::point("add.after-guest");
            // A bug on a helper thread while the guest ran fails the call
            // before anything below counts it a success (a DEL would
            // otherwise remove the attachment's state).
            outcome = crate::bug::fails(outcome);
            // A step's failure fails a call that had succeeded, and is
            // logged beside one that had not.
            let fail = |outcome: &mut Result<_, CniError>, e: String| match outcome {
                Ok(_) => *outcome = Err(CniError::plugin(e)),
                Err(_) => crate::log::error(&e),
            };
            // Changes the guest started are part of its answer.
            if let Err(e) = crate::caps::firewall::finish_all(&shared).await {
                fail(&mut outcome, e);
            }
            // An attachment's rules go with it, whatever its plugin did: a rule
            // that outlived its attachment (a spoof check matches a port by
            // index) could meet a link that comes later.
            // With time of its own: the guest may have used all of the call's
            // (a DEL that can never finish its cleanup would fail forever).
            if command == Command::Del
                && !shared.lock().journal.rules_removed
                && let Err(e) = kernel
                    .unmasquerade(
                        &owner,
                        std::time::Instant::now() + crate::undo::rollback::FIREWALL_TIME,
                    )
                    .await
            {
                let e = format!("remove the rules of {owner:?}: {e}");
                fail(&mut outcome, e);
            }
            // Rules an earlier version marked otherwise (a network name too
            // long to show: see `nft::legacy_owner_comment`).
            if command == Command::Del
                && let Some(old) = crate::kernel::nft::legacy_owner_comment(
                    network,
                    &call.env.container_id,
                    &call.env.ifname,
                )
            {
                let deadline = std::time::Instant::now() + crate::undo::rollback::FIREWALL_TIME;
                let removed = kernel.unmasquerade(&old, deadline).await;
                let unmapped = kernel.unmap_ports(&old, deadline).await;
                if let Err(e) = removed.and(unmapped) {
                    fail(&mut outcome, format!("remove the rules of {old:?}: {e}"));
                }
            }
            if let Err(e) = crate::caps::port_mapping::release_route_localnet(
                &*kernel,
                &loopback,
                std::time::Instant::now() + crate::undo::rollback::FIREWALL_TIME,
            )
            .await
            {
                let e = format!("release route_localnet: {e}");
                fail(&mut outcome, e);
            }
            // An attachment's state goes with it (after a DEL), or with its
            // validity (GC: only when the runtime named the valid attachments;
            // a config without the key, and any config may take the network's
            // name, removes nothing).
            let gone = match command {
                Command::Del if outcome.is_ok() => Some(RemoveWhich::One(state_file.clone())),
                Command::Gc if outcome.is_ok() && call.conf.valid_attachments_named => {
                    Some(RemoveWhich::AllBut(
                        call.conf
                            .valid_attachments
                            .iter()
                            .map(|a| attachment_state::attachment_tag(&a.container_id, &a.ifname))
                            .collect(),
                    ))
                }
                _ => None,
            };
            if let Some(gone) = gone.filter(|_| module.uses_attachment_state)
                && let Err(e) = attachment_state::retain(&states, gone).await
            {
                outcome = Err(CniError::plugin(e));
            }
            // A spoof check names its port by index: an ADD must not answer
            // with the port gone (deleted by the guest after the check), or the
            // rule would wait for whatever link takes the index next.
            if command == Command::Add && outcome.is_ok() {
                let checked = shared.lock().journal.spoof_checked.clone();
                for index in checked {
                    if let Err(e) = kernel.link_get_index(crate::kernel::Ns::Host, index).await {
                        outcome = Err(CniError::plugin(format!(
                            "the port (index {index}) this call put a spoof check on is gone: {e}"
                        )));
                        break;
                    }
                }
            }
            outcome
        })
        .catch_unwind()
        .await;
        let mut outcome = crate::bug::fails(after.unwrap_or_else(|p| {
            Err(CniError::host(format!(
                "wasm-cni failed after running {}: {}",
                module.name,
                crate::bug::message(&*p)
            )))
        }));
        // STATUS of an interface plugin is its IPAM's too: asked here for a
        // plugin that did not ask it (a 0.1.0 module, the SDK's default);
        // an L2-only network (no `ipam.type`) has none to ask.
        if command == Command::Status
            && outcome.is_ok()
            && call.conf.ipam_type().is_some()
            && !shared.lock().ipam_status_asked
        {
            crate::log::debug(&format!(
                "{}: did not ask its IPAM for STATUS: asked for it",
                module.name
            ));
            outcome = crate::caps::ipam::Delegate::run(&**self, call, Command::Status)
                .await
                .map(|_| None);
        }
        match outcome {
            Err(e) if command == Command::Add => {
                // The firewall change in flight first: it notes the tables
                // it created in the journal when it ends, and the rollback
                // takes the journal (a job that ended after was seen to
                // leave the node's first masquerade table behind).
                if let Err(e) = crate::caps::firewall::finish(&shared).await {
                    crate::log::debug(&format!("rollback: the firewall change had failed: {e}"));
                }
                let state_undone = if module.uses_attachment_state {
                    attachment_state::rollback(&states, &state_file, prior_state).await
                } else {
                    Ok(())
                };
                let rollback = Rollback {
                    kernel: &*kernel,
                    owner: &owner,
                    ipam_del: Some(Box::pin(async {
                        // What the call's IPAM runs wrote, taken before the
                        // DEL below adds its own removals to it.
                        let writes = std::mem::take(
                            &mut *self.ipam_writes.lock().unwrap_or_else(|e| e.into_inner()),
                        );
                        self.undo_ipam(call).await.map_err(|e| e.to_string())?;
                        restore_ipam_writes(writes).await
                    })),
                    lock: lock.as_mut(),
                }
                .run(shared.take_journal());
                // A panic in the rollback itself: what it did not undo
                // cannot be known; the error says so.
                let mut failures = AssertUnwindSafe(rollback)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|p| {
                        vec![format!(
                            "the rollback panicked, the node may keep part of this ADD: {}",
                            crate::bug::message(&*p)
                        )]
                    });
                failures.extend(state_undone.err());
                Err(with_rollback_failures(e, failures))
            }
            outcome => outcome,
        }
    }

    /// Where the network's attachments keep their state, on this call's
    /// node.
    pub fn attachment_states(&self, network: &str) -> StoreLocation {
        attachment_state::location(
            &self.node.path(Path::new(attachment_state::STATE_ROOT)),
            network,
        )
    }

    /// The network's lock, shared. Busy past the wait: code 11. Unusable
    /// (no writable state directory): the call goes on without it, and a
    /// rollback then keeps shared state as it is.
    async fn network_lock(&self, network: &str) -> Result<Option<NetworkLock>, CniError> {
        match NetworkLock::shared(&self.lock_dir, network, self.deadlines.lock_wait()).await {
            Ok(Some(l)) => Ok(Some(l)),
            Ok(None) => Err(CniError::new(
                code::TRY_AGAIN_LATER,
                format!("network {network:?} is being rolled back by another call"),
            )),
            Err(e) => {
                crate::log::warn(&format!(
                    "no lock for network {network:?} in {}: {e}; a failed ADD will keep shared bridges as they are",
                    self.lock_dir.display()
                ));
                Ok(None)
            }
        }
    }

    async fn run_ipam(
        &self,
        module: &Module,
        call: &Call,
        command: Command,
        deadline: tokio::time::Instant,
        limits: &Arc<CallLimits>,
    ) -> Result<Option<CniResult>, CniError> {
        let data_dir = call.conf.ipam.as_ref().and_then(|i| i.data_dir.as_deref());
        let mut location = self.policy.store_location(data_dir, &call.conf.name)?;
        location.root = self.node.path(&location.root);
        // Waiting for the store's lock ends at two thirds of the plugin's
        // time (half the call's, when delegated), so "busy" comes back
        // while there is time to report it.
        let now = tokio::time::Instant::now();
        let lock_deadline = now + deadline.saturating_duration_since(now) * 2 / 3;
        let created = crate::caps::store::Created::default();
        let state = IpamState::new(
            StoreCtx::new(
                location.clone(),
                phase(command),
                lock_deadline,
                created.clone(),
                limits,
            ),
            ResolvConfCtx::new(
                self.policy.resolv_conf_dirs.clone(),
                phase(command),
                self.node.config_files_root(),
            ),
            LogCtx::new(&module.name, limits),
            StoreLimiter::new(limits),
        );
        let mut store = self.store(state, limits, |s| &mut s.limits)?;
        let linker = get_linker(&self.ipam_linkers[module.contract as usize], || {
            linker::ipam_linker(&self.engine, module.contract)
        })?;
        self.audit_module(module);
        let _audited = crate::audit::enter_module(&module.name);
        let outcome = contained(
            &module.name,
            invoke(limits, &mut store, linker, module, call, command, deadline),
        )
        .await;
        // Releases the store's lock.
        drop(store);
        let written = std::mem::take(&mut *created.lock().unwrap_or_else(|e| e.into_inner()));
        // A host bug on a thread of this run fails it, whatever the guest
        // made of it: its writes are undone here (left for the caller to
        // report, see `bug`).
        match crate::bug::fails(outcome) {
            Ok(r) if self.command == Command::Add => {
                self.ipam_writes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((location, written));
                Ok(r)
            }
            Err(e) if command == Command::Add => {
                let failures = crate::caps::store::rollback(&location, written).await;
                Err(with_rollback_failures(e, failures))
            }
            outcome => outcome,
        }
    }

    fn store<T: Send + 'static>(
        &self,
        state: T,
        limits: &Arc<CallLimits>,
        limiter: fn(&mut T) -> &mut StoreLimiter,
    ) -> Result<Store<T>, CniError> {
        self.clock
            .get_or_init(|| engine::start_epoch_clock(&self.engine));
        let mut store = Store::new(&self.engine, state);
        limits.install(&mut store, limiter);
        store
            .set_fuel(self.policy.guest_fuel)
            .map_err(|e| CniError::host(format!("{e:#}")))?;
        Ok(store)
    }
}

/// After IPAM DEL has released a failed ADD's address: put back the rest
/// of what its in-process IPAM runs wrote.
async fn restore_ipam_writes(writes: Vec<(StoreLocation, Vec<Written>)>) -> Result<(), String> {
    let mut failures = Vec::new();
    // Newest first, as each run's own writes are.
    for (location, written) in writes.into_iter().rev() {
        failures.extend(crate::caps::store::rollback(&location, written).await);
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
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
