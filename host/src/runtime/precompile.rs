//! `wasm-cni compile [MODULE...]`: compile modules into the cache for both
//! engines at install time, so that no CNI call compiles on its path (a
//! cold compile costs hundreds of milliseconds, and a node whose engine is
//! the interpreter may not compile native code at all).
//!
//! A MODULE is a name looked up in the module directories, or a path to a
//! `.wasm` file (the operator's command, so anywhere); none means every
//! module in the module directories. Pins are checked as a call would: a
//! pinned module whose file differs is refused, not compiled.

use super::cache::{Cache, Outcome};
use super::engine::{EngineKind, native_code_allowed, new_engine};
use super::resolve::ModulePath;
use crate::policy::Policy;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long waiting for another process's compile of the same module may
/// take before compiling anyway.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// What the node's root's commands (`compile`, `inspect`) work with: the
/// node policy, the module directories (any module file may be named:
/// it is the root's command), the cache.
pub(crate) struct Setup {
    pub policy: Policy,
    pub modules: ModulePath,
    pub cache_dir: PathBuf,
}

impl Setup {
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Setup, String> {
        let policy =
            Policy::load(vars.get("WASM_CNI_POLICY").map(String::as_str)).map_err(|e| e.msg)?;
        let modules = ModulePath::new(
            vars.get("WASM_CNI_MODULE_PATH").map(String::as_str),
            policy.module_dirs.as_deref(),
            true,
        );
        let cache_dir = vars
            .get("WASM_CNI_CACHE_DIR")
            .filter(|d| !d.is_empty())
            .map_or(
                PathBuf::from(super::cache::DEFAULT_CACHE_DIR),
                PathBuf::from,
            );
        Ok(Setup {
            policy,
            modules,
            cache_dir,
        })
    }
}

/// Run the command; what to print, and whether everything compiled.
pub fn run(vars: &HashMap<String, String>, args: &[String]) -> (String, bool) {
    let Setup {
        policy,
        modules,
        cache_dir,
    } = match Setup::from_vars(vars) {
        Ok(s) => s,
        Err(e) => return (format!("wasm-cni compile: {e}\n"), false),
    };
    let wanted = match targets(&modules, args) {
        Ok(w) => w,
        Err(e) => return (format!("wasm-cni compile: {e}\n"), false),
    };
    if wanted.is_empty() {
        return (
            format!("wasm-cni compile: no modules in {}\n", modules.describe()),
            false,
        );
    }
    let mut out = String::new();
    let mut ok = true;
    for kind in EngineKind::ALL {
        // Loading native code maps it executable, which MDWE (or the W^X
        // seccomp filter of older systemd) refuses in this process, and so
        // in every call it starts: calls here interpret, and a native
        // artifact could not even be checked after writing it. Not a
        // failure: systemd's `ExecStartPre=wasm-cni compile` under
        // `MemoryDenyWriteExecute=yes` must succeed.
        if kind == EngineKind::Native && !native_code_allowed() {
            out += "native engine: skipped: memory may not become executable in this process (MDWE or a W^X seccomp filter), so calls here use the interpreter\n";
            continue;
        }
        let engine = match new_engine(kind) {
            Ok(e) => e,
            Err(e) => {
                out += &format!("{} engine: cannot start wasmtime: {e:#}\n", kind.as_str());
                ok = false;
                continue;
            }
        };
        let cache = Cache::open_for_install(&engine, &cache_dir);
        for (name, path) in &wanted {
            let admit = |digest: &str| policy.admit_module(name, digest);
            let deadline = Instant::now() + LOCK_WAIT;
            let loaded = cache.load(
                &engine,
                path,
                policy.max_module_bytes,
                deadline,
                admit,
                policy.is_pinned(name),
            );
            match loaded {
                Ok((_, l)) if l.outcome == Outcome::Uncached => {
                    out += &format!(
                        "{name}: {}: the cache {} is unusable (see the warning above)\n",
                        kind.as_str(),
                        cache_dir.display()
                    );
                    ok = false;
                }
                Ok((_, l)) => {
                    let what = match l.outcome {
                        Outcome::Hit => "already cached",
                        _ => "compiled",
                    };
                    out += &format!(
                        "{name}: {} sha256:{} {}: {what}\n",
                        path.display(),
                        l.digest,
                        kind.as_str()
                    );
                }
                Err(e) => {
                    out += &format!("{name}: {}: {e}\n", kind.as_str());
                    ok = false;
                }
            }
        }
    }
    (out, ok)
}

/// Module name to file: the arguments, or every module in the directories
/// (the first directory that has a name wins, as for a call).
pub(crate) fn targets(
    modules: &ModulePath,
    args: &[String],
) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut found = BTreeMap::new();
    if args.is_empty() {
        for dir in modules.dirs().iter().rev() {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if let Some(name) = stem(&p)
                    && let Ok(Some(path)) = modules.find(&name)
                {
                    found.insert(name, path);
                }
            }
        }
        return Ok(found);
    }
    for arg in args {
        let path = if arg.contains('/') {
            let abs = std::path::absolute(arg).map_err(|e| format!("{arg}: {e}"))?;
            modules
                .find_plugin(abs.to_str().unwrap_or(arg))
                .map_err(|e| e.msg)?
        } else {
            modules.find(arg).map_err(|e| e.msg)?
        };
        let path = path.ok_or_else(|| format!("no module {arg:?} in {}", modules.describe()))?;
        let name = if arg.contains('/') {
            stem(&path).unwrap_or_else(|| arg.clone())
        } else {
            arg.clone()
        };
        found.insert(name, path);
    }
    Ok(found)
}

/// `bridge` for `.../bridge.wasm`.
fn stem(p: &Path) -> Option<String> {
    let file = p.file_name()?.to_str()?;
    file.strip_suffix(".wasm")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}
