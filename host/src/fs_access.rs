//! Landlock: the files a call may touch, and nothing else, for the host and
//! every program it runs.
//!
//! What a call needs ([`Paths::for_call`]):
//! - read: the module directories, the compiled-module cache, the one
//!   file a config's `ipam.resolvConf` names (if it lies in the policy's
//!   directories), our own `/proc/self` (namespace handles, reopening a
//!   descriptor), the shared libraries and loader files programs need;
//! - read and write: the network's own IPAM store directory, the network
//!   locks, `/proc/sys/net` (sysctls), `/dev/null`, the audit file's
//!   directory, and the cache while modules are loaded (a compile writes
//!   it);
//! - execute: `nft`, `iptables`/`ip6tables`, the native IPAM plugin the
//!   config names if the policy allows it, a script's interpreter, and the
//!   ELF loader each of them names (libraries are mapped, not executed).
//!
//! Namespaces need no rule: the container's was opened before, and the
//! host's is reached through `/proc/self`. Files opened before (the policy,
//! the log file) stay usable. TCP bind and connect are refused outright
//! (nothing in a call speaks TCP); signals and abstract unix sockets are
//! scoped to the call's own processes.
//!
//! Landlock confines the calling thread and what it starts later. The
//! thread that loads modules confines itself to [`Loading`] (the modules,
//! the cache writable); the main thread, once they are loaded and the
//! directories the call needs exist, to [`Stage::Running`]: the list
//! above, the cache read-only. Best effort: a kernel
//! without Landlock (before 5.13) runs unconfined, which is logged once per
//! boot.

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};
use std::path::{Path, PathBuf};

/// The newest ABI whose rights we ask for; older kernels get what they
/// support (best effort).
const ABI_WANTED: ABI = ABI::V6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Modules are being loaded: the cache may be written.
    Loading,
    /// Guests run: the cache is read-only.
    Running,
}

/// The paths of one call, by the access they get.
#[derive(Debug, Default)]
pub struct Paths {
    pub read: Vec<PathBuf>,
    pub read_write: Vec<PathBuf>,
    pub execute: Vec<PathBuf>,
    /// Writable while loading only.
    pub cache: Option<PathBuf>,
    /// TCP connect and bind are allowed.
    pub tcp: bool,
    /// The programs the call may start (for the spawner).
    pub programs: Vec<PathBuf>,
    /// Files to read, as descriptors of the files themselves (looked up
    /// the way their reader will, so a rule never widens to a directory).
    pub read_files: Vec<rustix::fd::OwnedFd>,
    /// Directories the call creates once its modules are loaded and its
    /// namespace checked (so that a call refused before that leaves
    /// nothing), with their modes.
    pub to_create: Vec<(PathBuf, u32)>,
}

/// What a call touches, from its config, environment and the policy.
pub struct Needs<'a> {
    pub modules: &'a [PathBuf],
    pub cache: &'a Path,
    /// The call's network's IPAM store directory, if it has IPAM.
    pub store_dir: Option<&'a Path>,
    pub lock_dir: &'a Path,
    /// Files the call writes that must exist first (iptables' lock).
    pub write_files: &'a [PathBuf],
    pub audit_dir: Option<&'a Path>,
    /// The executables it may run (with the interpreter of a script).
    pub programs: &'a [PathBuf],
    /// What the node policy adds.
    pub extra: &'a crate::policy::ExtraAccess,
}

/// Shared libraries, the loader's cache and the files `nft` and
/// `iptables` read at start.
const PROGRAM_SUPPORT: [&str; 8] = [
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/etc/ld.so.cache",
    "/etc/iproute2",
    "/etc/connlabel.conf",
    "/usr/share/iproute2",
];

/// Read-only kernel views the programs consult (Go's runtime reads the
/// huge page size; `nft` and `iptables` /proc/sys and /proc/net).
const KERNEL_VIEWS: [&str; 3] = [
    "/proc/self",
    "/proc/sys",
    "/sys/kernel/mm/transparent_hugepage",
];

impl Paths {
    /// What one call needs (see [`Needs`]).
    pub fn for_call(n: Needs) -> Paths {
        let mut p = Paths {
            cache: Some(n.cache.to_path_buf()),
            ..Default::default()
        };
        p.read.extend(n.modules.iter().cloned());
        p.read.push(n.cache.to_path_buf());
        // Pinned modules' sums: calls read them, only `wasm-cni compile`
        // writes them.
        p.read.push(crate::runtime::cache::pins_dir(n.cache));
        p.read.extend(KERNEL_VIEWS.iter().map(PathBuf::from));
        p.read.extend(PROGRAM_SUPPORT.iter().map(PathBuf::from));
        p.read_write.extend(n.store_dir.map(Path::to_path_buf));
        p.read_write.push(n.lock_dir.to_path_buf());
        p.read_write.push("/proc/sys/net".into());
        p.read_write.push("/dev/null".into());
        p.read_write.extend(n.audit_dir.map(Path::to_path_buf));
        p.read_write.extend(n.write_files.iter().cloned());
        // A link (`/usr/sbin/iptables -> xtables-nft-multi`) is checked at
        // its target; a script needs its interpreter, an ELF file its loader.
        p.programs = n.programs.to_vec();
        let mut programs: Vec<PathBuf> = n.programs.to_vec();
        let mut i = 0;
        while i < programs.len() && i < 16 {
            let prog = programs[i].clone();
            for next in [interpreter(&prog), loader(&prog)].into_iter().flatten() {
                if !programs.contains(&next) {
                    programs.push(next);
                }
            }
            i += 1;
        }
        for prog in programs {
            if let Ok(target) = std::fs::canonicalize(&prog) {
                p.execute.push(target);
            }
            p.execute.push(prog);
        }
        p.read.extend(n.extra.read.iter().cloned());
        p.read_write.extend(n.extra.read_write.iter().cloned());
        p.execute.extend(n.extra.execute.iter().cloned());
        p.tcp = n.extra.allow_tcp;
        p
    }
}

/// The interpreter a script names on its `#!` line.
fn interpreter(program: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(program).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n')?];
    let first = std::str::from_utf8(line).ok()?.split_whitespace().next()?;
    first.starts_with('/').then(|| PathBuf::from(first))
}

/// The ELF loader (`PT_INTERP`) a dynamically linked program names.
fn loader(program: &Path) -> Option<PathBuf> {
    use object::read::elf::{FileHeader, ProgramHeader};
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;
    // The program headers and the loader's name sit in the first page (a
    // call reads this for each program: no more than that).
    let mut head = Vec::new();
    std::fs::File::open(program)
        .ok()?
        .take(4 << 10)
        .read_to_end(&mut head)
        .ok()?;
    let header = object::elf::FileHeader64::<object::Endianness>::parse(&*head).ok()?;
    let endian = header.endian().ok()?;
    header
        .program_headers(endian, &*head)
        .ok()?
        .iter()
        .find_map(|ph| ph.interpreter(endian, &*head).ok().flatten())
        .map(|name| PathBuf::from(std::ffi::OsStr::from_bytes(name)))
}

/// What the thread that loads modules may touch: the module files, the
/// cache (it compiles into it) and the pins. It confines itself with this
/// first (`runtime::Runtime::load`), and the compile threads it starts
/// inherit it; the main thread is confined apart, once the modules are
/// loaded, to what the call needs.
#[derive(Debug, Clone, Default)]
pub struct Loading {
    pub read: Vec<PathBuf>,
    pub cache: PathBuf,
}

impl Loading {
    /// Confine the calling thread.
    pub fn restrict(&self) -> Result<(), String> {
        let mut read = self.read.clone();
        read.push(crate::runtime::cache::pins_dir(&self.cache));
        read.push("/proc/self".into());
        let paths = Paths {
            read,
            cache: Some(self.cache.clone()),
            ..Default::default()
        };
        restrict(&paths, Stage::Loading)
    }
}

/// Confine this thread (and what it starts later) to `paths`.
pub fn restrict(paths: &Paths, stage: Stage) -> Result<(), String> {
    let abi = ABI_WANTED;
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let write = AccessFs::from_all(abi) & !AccessFs::Execute & !AccessFs::IoctlDev;
    let execute = read | AccessFs::Execute;
    let mut rules: Vec<(&Path, BitFlags<AccessFs>)> = Vec::new();
    rules.extend(paths.read.iter().map(|p| (p.as_path(), read)));
    rules.extend(paths.read_write.iter().map(|p| (p.as_path(), write)));
    rules.extend(paths.execute.iter().map(|p| (p.as_path(), execute)));
    if stage == Stage::Loading
        && let Some(cache) = &paths.cache
    {
        rules.push((cache.as_path(), write));
    }
    let err = |e: landlock::RulesetError| format!("Landlock: {e}");
    let mut handled = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?;
    if !paths.tcp {
        handled = handled
            .handle_access(AccessNet::from_all(abi))
            .map_err(err)?;
    }
    let mut ruleset = handled
        .scope(Scope::AbstractUnixSocket | Scope::Signal)
        .map_err(err)?
        .create()
        .map_err(err)?;
    for (path, access) in rules {
        // What does not exist on this node needs no rule.
        let Ok(fd) = PathFd::new(path) else {
            continue;
        };
        // A file takes only the rights that apply to files.
        let access = if std::fs::metadata(path).is_ok_and(|m| !m.is_dir()) {
            access & AccessFs::from_file(abi)
        } else {
            access
        };
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, access))
            .map_err(err)?;
    }
    for fd in &paths.read_files {
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, read & AccessFs::from_file(abi)))
            .map_err(err)?;
    }
    let status = ruleset.restrict_self().map_err(err)?;
    if status.ruleset == RulesetStatus::NotEnforced {
        not_enforced_once();
    } else {
        crate::log::debug(&format!("Landlock ({stage:?}): {:?}", status.ruleset));
    }
    Ok(())
}

/// Say once per boot (a marker under /run) that this kernel has no
/// Landlock: every call would say it otherwise.
fn not_enforced_once() {
    const MARKER: &str = "/run/wasm-cni/landlock-unavailable";
    let _ = std::fs::create_dir_all("/run/wasm-cni");
    let first = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(MARKER)
        .is_ok();
    if first {
        crate::log::warn(
            "this kernel has no Landlock (5.13+, \"landlock\" in the lsm= list): calls run without file system confinement",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_program_names_its_loader_and_a_script_its_interpreter() {
        let ls = Path::new("/bin/ls");
        if ls.exists() {
            let l = loader(ls).expect("ls is dynamically linked");
            assert!(l.to_str().unwrap().contains("ld-"), "{}", l.display());
        }
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s");
        std::fs::write(&script, "#!/bin/sh -e\necho\n").unwrap();
        assert_eq!(interpreter(&script), Some(PathBuf::from("/bin/sh")));
        assert_eq!(loader(&script), None);
    }
}
