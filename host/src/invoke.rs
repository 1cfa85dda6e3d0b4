//! One CNI invocation, from the process's name, environment and stdin to
//! the one JSON document on stdout and the exit code.

use crate::cni::error::code;
use crate::cni::version::{self, LATEST};
use crate::cni::{Call, CniEnv, CniError, Command, NetConf};
use crate::fs_access::{Needs, Paths, Stage};
use crate::policy::Policy;
use crate::runtime::cache::DEFAULT_CACHE_DIR;
use crate::runtime::node::Node;
use crate::runtime::resolve::ModulePath;
use crate::runtime::{DEFAULT_LOCK_DIR, Deadlines, Runtime};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The name this binary is installed under; called by it, the config's
/// `plugin` key names the module. Called through a link with another name
/// (`/opt/cni/bin/bridge -> wasm-cni`), that name is the module.
pub const SELF_NAME: &str = "wasm-cni";

/// What to print on stdout and the exit code.
pub struct Output {
    pub stdout: String,
    pub exit_code: i32,
}

pub fn invoke(argv0: &str, vars: &HashMap<String, String>, stdin: &[u8]) -> Output {
    invoke_on(argv0, vars, stdin, &Node::Real)
}

/// One invocation against `node`. On a simulated node the process is
/// neither confined nor audited (it holds no privilege to give up, and it
/// changes nothing); everything a call decides is decided as on a real
/// one.
pub fn invoke_on(argv0: &str, vars: &HashMap<String, String>, stdin: &[u8], node: &Node) -> Output {
    let mut cni_version = LATEST;
    if node.simulated().is_some() {
        crate::log::without_files();
    }
    let mut outcome = run(argv0, vars, stdin, &mut cni_version, node);
    // A panic on a thread the call started is a host bug whatever the call
    // made of it (the interface call has already rolled back for it).
    if let Some(bug) = crate::bug::take() {
        // What the call's own error said (a rollback's failures among it)
        // stays, as the details.
        let details = match outcome {
            Err(e) if !e.msg.contains(&bug) => [e.msg, e.details].join(" ").trim().to_string(),
            _ => String::new(),
        };
        let mut e = CniError::host(format!("wasm-cni failed: {bug}"));
        e.details = details;
        outcome = Err(e);
    }
    match outcome {
        Ok(stdout) => {
            crate::audit::finish(0, "");
            Output {
                stdout,
                exit_code: 0,
            }
        }
        Err(e) => {
            crate::audit::finish(e.code, &e.msg);
            crate::log::error(&e.to_string());
            if crate::seccomp::refused_any() {
                crate::log::error("the host's seccomp filter refused a system call in this call");
            }
            Output {
                stdout: e.to_json(cni_version),
                exit_code: 1,
            }
        }
    }
}

fn run(
    argv0: &str,
    vars: &HashMap<String, String>,
    stdin: &[u8],
    cni_version: &mut &'static str,
    node: &Node,
) -> Result<String, CniError> {
    let real = node.simulated().is_none();
    // An error before the config is read in full (the environment, a
    // `prevResult` that does not decode) still answers in the version the
    // config asks for, when it names one we speak.
    if let Some(v) = version::requested(stdin) {
        *cni_version = v.as_str();
    }
    let env = CniEnv::from_vars(vars)?;
    // A copy of wasm-cni run as an IPAM plugin by wasm-cni (the inode check
    // in `delegate` catches the installed binary): the same config would
    // delegate again and again.
    if vars.contains_key(crate::runtime::delegate::DELEGATED) {
        return Err(CniError::config(
            "wasm-cni was started as an IPAM plugin by wasm-cni: \"ipam.type\" names wasm-cni",
        ));
    }
    // Before anything else: a broken policy fails every call, closed.
    let policy = Policy::load(vars.get("WASM_CNI_POLICY").map(String::as_str))?;
    if env.command == Command::Version {
        return Ok(version::version_reply(stdin));
    }
    if let Some(settings) = policy.audit.as_ref().filter(|_| real) {
        crate::audit::begin(
            settings.clone(),
            env.command.as_str(),
            &env.container_id,
            &env.ifname,
        );
    }
    let conf = NetConf::parse_for(stdin, env.command == Command::Del)?;
    *cni_version = conf.cni_version.as_str();
    crate::audit::network(&conf.name);
    log_settings(&conf, &policy, env.command, real)?;
    // Whatever plugin runs, a config cannot point IPAM state outside the
    // node's store roots (a native host-local would write there too).
    if let Some(ipam) = &conf.ipam {
        policy.store_location(ipam.data_dir.as_deref(), &conf.name)?;
        if let Some(ty) = conf.ipam_type() {
            crate::runtime::resolve::check_name(ty)
                .map_err(|e| CniError::config(format!("\"ipam.type\": {e}")))?;
        }
    }
    match env.command {
        Command::Gc | Command::Status if !conf.cni_version.has_gc_and_status() => {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "config version {} does not allow {} (it needs 1.1.0 or later)",
                    conf.cni_version.as_str(),
                    env.command.as_str()
                ),
            ));
        }
        Command::Check if !conf.cni_version.has_check() => {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "config version {} does not allow CHECK (it needs 0.4.0 or later)",
                    conf.cni_version.as_str()
                ),
            ));
        }
        _ => {}
    }
    let command = env.command;
    // STATUS asks whether an ADD could work: a plugin that cannot even be
    // found or loaded is the "not available" answer, not a failed call.
    let unavailable = |e: CniError| {
        if command == Command::Status {
            CniError::new(
                code::NOT_AVAILABLE,
                format!("plugin not available: {}", e.msg),
            )
            .with_details(e.details)
        } else {
            e
        }
    };
    let plugin = plugin_name(argv0, &conf)?;
    let modules = ModulePath::new(
        vars.get("WASM_CNI_MODULE_PATH").map(String::as_str),
        policy.module_dirs.as_deref(),
        policy.allow_modules_outside_module_dirs,
    );
    let path = modules
        .find_plugin(&plugin)
        .and_then(|found| {
            found.ok_or_else(|| {
                CniError::config(format!(
                    "no wasm module {plugin:?}: looked for {plugin}.wasm in {}",
                    modules.describe()
                ))
                .with_details("install the module there or set WASM_CNI_MODULE_PATH")
            })
        })
        .map_err(unavailable)?;
    let cache_dir = vars
        .get("WASM_CNI_CACHE_DIR")
        .filter(|d| !d.is_empty())
        .map_or(PathBuf::from(DEFAULT_CACHE_DIR), PathBuf::from);
    let deadlines = Deadlines::new(call_timeout(
        vars.get("WASM_CNI_TIMEOUT").map(String::as_str),
    )?);
    let call = Arc::new(Call { env, conf });

    // While this is the process's only thread: open what needs more than
    // the call keeps, then give the rest up (see `privilege`). A namespace
    // that cannot be opened is reported later, as before, by the command
    // that needs it.
    if real {
        if let Some(netns) = call.env.netns.as_deref()
            && matches!(command, Command::Add | Command::Check | Command::Del)
            && let Err(e) = crate::kernel::netns::Netns::preopen(netns)
        {
            crate::log::debug(&format!(
                "CNI_NETNS {} not opened yet: {e}",
                netns.display()
            ));
        }
        // The log file too (the logger opens it on first use).
        crate::log::enabled(crate::log::Level::Error);
        crate::privilege::reduce()
            .map_err(|e| CniError::host(format!("cannot drop privileges: {e}")))?;
    }

    let policy = Arc::new(policy);
    let engine_kind = crate::runtime::engine::choose(policy.engine);
    let runtime = Runtime::new(
        modules,
        policy.clone(),
        &cache_dir,
        deadlines,
        command,
        engine_kind,
        node.clone(),
    )?;
    // What the call may touch; the threads that load modules confine
    // themselves to the modules and the cache first.
    let paths = if real {
        let mut paths = fs_paths(&runtime, &policy, &call, command, &cache_dir)?;
        // A module outside the module directories (the policy allowed it).
        paths.read.push(path.clone());
        let mut module_files = runtime.modules().dirs().to_vec();
        module_files.push(path.clone());
        runtime.confine_loading(crate::fs_access::Loading {
            read: module_files,
            cache: cache_dir.clone(),
        });
        Some(paths)
    } else {
        None
    };
    // Every module the call runs is loaded before the seccomp filter: the
    // interface or IPAM module, and the wasm IPAM module its config names
    // (its error, if any, is kept for when the plugin asks for IPAM).
    // Both at once; the IPAM module only if the config names a wasm one,
    // before the plugin's role is known (an IPAM module named by an IPAM
    // module's config is loaded for nothing; it is never run).
    let mut wanted = vec![(plugin.as_str(), path.clone(), deadlines.call().into_std())];
    if let Some(ty) = call.conf.ipam_type()
        && let Ok(Some(ipam)) = runtime.modules().find(ty)
    {
        wanted.push((ty, ipam, deadlines.ipam().into_std()));
    }
    runtime.load_all(wanted);
    let module = runtime
        .load(&plugin, path, deadlines.call().into_std())
        .map_err(unavailable)?;
    match paths {
        Some(mut paths) => {
            let states = module
                .uses_attachment_state
                .then(|| runtime.attachment_states(&call.conf.name));
            let netfilter = module.forwards_ports && command == Command::Add;
            confine(
                &mut paths,
                &policy,
                &call,
                module.role,
                states,
                netfilter,
                vars,
            )?
        }
        // The simulated node's lock directory (its store directories are
        // made by the store, as it needs them).
        None => std::fs::create_dir_all(runtime.lock_dir()).map_err(|e| {
            CniError::host(format!(
                "cannot create {}: {e}",
                runtime.lock_dir().display()
            ))
        })?,
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| CniError::host(format!("cannot start the I/O runtime: {e}")))?;
    let out = rt.block_on(async {
        let result = runtime.run(&module, &call, command).await.map_err(|e| {
            // A module that loads but cannot be instantiated is as unusable.
            if e.code == code::MODULE_UNUSABLE {
                unavailable(e)
            } else {
                e
            }
        })?;
        Ok(result
            .map(|r| r.to_json(call.conf.cni_version))
            .transpose()?
            .unwrap_or_default())
    });
    // Not a drop, which would wait for blocking work still running (a
    // compile given up at the deadline): the answer is ready now.
    rt.shutdown_background();
    out
}

/// Confine the process for the rest of the call (`fs_access`, `seccomp`),
/// once its modules are loaded. Refused first: a container namespace an
/// interface plugin cannot use (rather than after the call has made its
/// directories).
fn confine(
    paths: &mut Paths,
    policy: &Policy,
    call: &Call,
    role: crate::runtime::linker::Role,
    states: Option<crate::policy::StoreLocation>,
    netfilter: bool,
    vars: &HashMap<String, String>,
) -> Result<(), CniError> {
    let command = call.env.command;
    if role == crate::runtime::linker::Role::Interface
        && let Some(netns) = call.env.netns.as_deref()
        && matches!(command, Command::Add | Command::Check | Command::Del)
    {
        use crate::caps::netns::{ContainerNs, check_before_anything};
        match check_before_anything(netns) {
            Ok(()) => {}
            Err(ContainerNs::Node(msg)) => return Err(CniError::new(code::INVALID_NETNS, msg)),
            Err(ContainerNs::Unusable(e)) if command != Command::Del => {
                return Err(CniError::env(e.to_string()));
            }
            Err(ContainerNs::Unusable(_)) => {}
        }
    }
    create_dirs(paths, policy, call)?;
    // The network's attachment states, for a module that keeps one: made
    // by ADD as the store walks (no link followed below the root), used by
    // the other commands when it is there (a directory, not a link to one).
    if let Some(loc) = states {
        let dir = loc.root.join(&loc.below);
        if command == Command::Add {
            crate::kernel::store::StoreDir::make(&loc.root, &loc.below).map_err(|e| {
                CniError::new(
                    code::IO_FAILURE,
                    format!("cannot create {}: {e}", dir.display()),
                )
            })?;
        }
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            paths.read_write.push(dir);
        }
    }
    // A call that forwards host ports (an ADD of a module that imports
    // `port-mapping`) reads the node's listening sockets now, before
    // Landlock.
    if netfilter {
        crate::kernel::listeners::snapshot_now();
    }
    // An interface plugin's ADD appends its masquerade rules over netlink
    // (and a `portmap` ADD clears conntrack entries), its DEL removes its
    // rules so: its one netfilter socket, opened now since the seccomp
    // filter allows rtnetlink only. CHECK, GC and STATUS run `nft`.
    if role == crate::runtime::linker::Role::Interface
        && matches!(command, Command::Add | Command::Del)
    {
        crate::kernel::nfnetlink::open_now();
    }
    crate::fs_access::restrict(paths, Stage::Running).map_err(CniError::host)?;
    // Programs are started by a thread born before the filter, so they do
    // not inherit it (see `seccomp`).
    crate::kernel::spawn::start(paths.programs.clone())
        .map_err(|e| CniError::host(format!("cannot start the spawner thread: {e}")))?;
    crate::seccomp::install(crate::seccomp::Mode::from_env(
        vars.get("WASM_CNI_SECCOMP").map(String::as_str),
    ))
    .map_err(|e| CniError::host(format!("cannot install the seccomp filter: {e}")))?;
    Ok(())
}

/// The config's `logLevel` and `logFile`. A bad one fails the call (code 7),
/// except a DEL, which must be able to finish: it logs where it did.
fn log_settings(
    conf: &NetConf,
    policy: &Policy,
    command: Command,
    real: bool,
) -> Result<(), CniError> {
    let level = conf.log_level.as_deref().map(|l| {
        crate::log::parse_level(l).ok_or_else(|| {
            CniError::config(format!(
                "\"logLevel\" {l:?} is not one of error, warn, info, debug"
            ))
        })
    });
    // A simulated node writes no files of the real one.
    let file = conf.log_file.as_deref().filter(|_| real).map(|f| {
        let audit = policy.audit.as_ref().map(|a| a.file.as_path());
        crate::log::open_beneath(f, &policy.log_dirs, audit).map_err(CniError::config)
    });
    let (level, file) = match (level.transpose(), file.transpose()) {
        (Ok(l), Ok(f)) => (l, f),
        (Err(e), _) | (_, Err(e)) if command != Command::Del => return Err(e),
        (l, f) => {
            for e in [l.as_ref().err(), f.as_ref().err()].into_iter().flatten() {
                crate::log::warn(&format!("DEL goes on without it: {}", e.msg));
            }
            (l.ok().flatten(), f.ok().flatten())
        }
    };
    crate::log::configure(level, file);
    Ok(())
}

/// The files the call may touch (`fs_access`). Directories it would
/// create during the call are made now, while it may.
fn fs_paths(
    runtime: &Runtime,
    policy: &Policy,
    call: &Call,
    command: Command,
    cache_dir: &Path,
) -> Result<Paths, CniError> {
    let lock_dir = Path::new(DEFAULT_LOCK_DIR);
    let mut to_create = Vec::new();
    // The network locks: ADD's, and nftables' for the commands that change
    // rules.
    if matches!(command, Command::Add | Command::Del | Command::Gc) {
        to_create.push((lock_dir.to_path_buf(), 0o700));
    }
    let mut store_dir = None;
    let mut programs = crate::kernel::exec::programs();
    let mut resolv_conf = None;
    if let Some(ipam) = &call.conf.ipam {
        let location = policy.store_location(ipam.data_dir.as_deref(), &call.conf.name)?;
        // A native IPAM plugin the node allows may be executed.
        let native = call
            .conf
            .ipam_type()
            .filter(|ty| policy.ipam_plugins.iter().any(|p| p == ty))
            .filter(|ty| matches!(runtime.modules().find(ty), Ok(None)))
            .and_then(|ty| {
                crate::runtime::delegate::find_in_cni_path(call, ty)
                    .ok()
                    .flatten()
            });
        // The network's own directory, made (once the call is known to
        // go ahead, `create_dirs`) if the call would make it: an ADD, or
        // any command of a native plugin (the reference host-local makes
        // it on every command).
        if command == Command::Add || native.is_some() {
            to_create.push((location.root.join(&location.below), 0o755));
        }
        store_dir = Some(location.root.join(&location.below));
        programs.extend(native);
        // The one resolv.conf named, looked up as host-local's capability
        // will (beneath a policy directory, no link, a regular file): the
        // rule is for that file, never a directory.
        resolv_conf = ipam.resolv_conf.as_deref().map(Path::new).and_then(|f| {
            policy.resolv_conf_dirs.iter().find_map(|d| {
                let rest = f.strip_prefix(d).ok()?;
                crate::kernel::resolv_conf::locate(d, rest).ok()
            })
        });
    }
    let audit_dir = policy
        .audit
        .as_ref()
        .and_then(|a| a.file.parent().map(Path::to_path_buf));
    // The audit directory is writable by the call: never one holding
    // wasm-cni's own state (the cache, the pins, the locks).
    if let Some(a) = &audit_dir {
        let pins = crate::runtime::cache::pins_dir(cache_dir);
        for own in [cache_dir, pins.as_path(), lock_dir] {
            if crate::policy::overlaps(a, own) {
                return Err(CniError::config(format!(
                    "node policy: \"auditFile\" is in {}, which overlaps {}",
                    a.display(),
                    own.display()
                )));
            }
        }
    }
    // iptables (the reference plugins' leftovers, on DEL and GC) takes its
    // lock file with the legacy backend (not with nft's): it must exist to
    // be granted.
    let mut write_files = Vec::new();
    let legacy = || {
        std::fs::canonicalize(crate::kernel::reference::iptables())
            .is_ok_and(|p| p.to_string_lossy().contains("legacy"))
    };
    if matches!(command, Command::Del | Command::Gc) && legacy() {
        let lock = std::env::var_os("XTABLES_LOCKFILE")
            .map_or(PathBuf::from("/run/xtables.lock"), PathBuf::from);
        if lock.is_absolute()
            && std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&lock)
                .is_ok()
        {
            write_files.push(lock);
        }
    }
    let mut paths = Paths::for_call(Needs {
        modules: runtime.modules().dirs(),
        cache: cache_dir,
        store_dir: store_dir.as_deref(),
        lock_dir,
        write_files: &write_files,
        audit_dir: audit_dir.as_deref(),
        programs: &programs,
        extra: &policy.landlock,
    });
    paths.read_files.extend(resolv_conf);
    paths.to_create = to_create;
    Ok(paths)
}

/// Make the directories the call needs (`Paths::to_create`): the locks,
/// and the network's IPAM store, walked to as the store walks (no link
/// followed below its root).
fn create_dirs(paths: &Paths, policy: &Policy, call: &Call) -> Result<(), CniError> {
    use std::os::unix::fs::DirBuilderExt;
    let store = call.conf.ipam.as_ref().and_then(|i| {
        policy
            .store_location(i.data_dir.as_deref(), &call.conf.name)
            .ok()
    });
    for (dir, mode) in &paths.to_create {
        let made = match &store {
            Some(l) if *dir == l.root.join(&l.below) => {
                crate::kernel::store::StoreDir::make(&l.root, &l.below)
            }
            _ => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(*mode)
                .create(dir),
        };
        made.map_err(|e| {
            CniError::new(
                code::IO_FAILURE,
                format!("cannot create {}: {e}", dir.display()),
            )
        })?;
    }
    Ok(())
}

/// The longest a CNI call may take by default; runtimes wait minutes.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// `WASM_CNI_TIMEOUT`, in whole seconds (1 to 3600).
fn call_timeout(value: Option<&str>) -> Result<Duration, CniError> {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Ok(Duration::from_secs(DEFAULT_TIMEOUT_SECS));
    };
    match v.parse::<u64>() {
        Ok(s @ 1..=3600) => Ok(Duration::from_secs(s)),
        _ => Err(CniError::env(format!(
            "WASM_CNI_TIMEOUT must be whole seconds from 1 to 3600, got {v:?}"
        ))),
    }
}

fn plugin_name(argv0: &str, conf: &NetConf) -> Result<String, CniError> {
    let called_as = Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(SELF_NAME);
    if called_as != SELF_NAME {
        return Ok(called_as.to_string());
    }
    conf.plugin.clone().ok_or_else(|| {
        CniError::config("network config has no \"plugin\" key naming the wasm module to run")
            .with_details("wasm-cni was called by its own name: set \"plugin\" to a module name such as \"bridge\", or call it through a link named like the module")
    })
}
