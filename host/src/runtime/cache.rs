//! Compiled modules, cached on disk.
//!
//! Compiling a component costs ~150 ms, loading a precompiled one well
//! under a millisecond, and every CNI call is a new process, so each module
//! is compiled once. The artifact is keyed by the module's sha256 and the
//! engine's compatibility hash (wasmtime version, target, settings), written
//! atomically (temp file + rename, so concurrent first calls race safely:
//! every writer produces the same bytes), and loaded only from a directory
//! that is owned by us, not writable by group or others, under ancestors
//! nobody else can rename: loading an artifact runs its machine code, so a
//! writable cache would be a way to run code as root.
//!
//! Beside each artifact, `<artifact>.sum` says what it is: a magic string,
//! the sha256 of the module it was compiled from and the sha256 of the
//! compiled code. The module's digest is checked on every load, so an
//! artifact is never run for a module other than the one just read. A
//! sidecar rather than a header: the artifact stays a file wasmtime maps as
//! it is (reading and copying it costs a millisecond or two per module, a
//! tenth of a warm ADD).
//!
//! A pinned module is held to more, because the cache is writable while a
//! call loads modules (it compiles into it), and a call may be compiling a
//! hostile module then: the sum that vouches for a pinned module's code is
//! kept apart, in `<cache>.pins/`, written only by `wasm-cni compile` (run
//! by root at install time, not by a call; Landlock gives calls that
//! directory read-only). The artifact is read once, its code checked
//! against that sum, and those very bytes are loaded. A pinned module with
//! no such sum is compiled in memory for the call and nothing is written.

use sha2::{Digest, Sha256};
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

pub const DEFAULT_CACHE_DIR: &str = "/var/lib/wasm-cni/cache";

#[derive(Clone)]
pub struct Cache {
    /// `None` when the directory is unusable: modules are then compiled in
    /// memory on every call (slow, but correct), with a warning.
    dir: Option<PathBuf>,
    /// Where the sums of pinned modules' artifacts are (`None`: none yet).
    pins: Option<PathBuf>,
    /// `wasm-cni compile`: pinned modules' sums are written.
    install: bool,
    /// `wasm-cni plan`: artifacts are read, nothing is written.
    read_only: bool,
    compat: String,
}

/// `<cache>.pins`: the sums that vouch for pinned modules' artifacts. A
/// sibling of the cache, whatever way its path is written (`cache/` must
/// not make it `cache/.pins`, inside what calls may write).
pub fn pins_dir(cache: &Path) -> PathBuf {
    let clean: PathBuf = cache.components().collect();
    let mut name = clean.file_name().unwrap_or_default().to_owned();
    name.push(".pins");
    clean.with_file_name(name)
}

/// Feeds `Hash` output into sha256: a stable hash of the engine's
/// compatibility value (std's hashers promise no stability).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        unreachable!("read with finalize")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What loading a module did, for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Compiled,
    Uncached,
}

/// A load's facts beside the component.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub outcome: Outcome,
    /// The module file's sha256 (hex).
    pub digest: String,
}

impl Cache {
    pub fn open(engine: &Engine, dir: &Path) -> Self {
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let compat = hex(&h.0.finalize()[..8]);
        // Read by calls only if it is there and trusted.
        let pins = crate::trust::dir(&pins_dir(dir)).ok();
        let dir = match prepare_dir(dir) {
            Ok(canonical) => Some(canonical),
            Err(e) => {
                crate::log::warn(&format!(
                    "compiled-module cache disabled: {}: {e}",
                    dir.display()
                ));
                None
            }
        };
        Cache {
            dir,
            pins,
            install: false,
            read_only: false,
            compat,
        }
    }

    /// The cache as `wasm-cni plan` uses it: read if it is there and
    /// trusted; nothing created, locked or written.
    pub fn open_read_only(engine: &Engine, dir: &Path) -> Self {
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        Cache {
            dir: crate::trust::dir(dir).ok(),
            pins: crate::trust::dir(&pins_dir(dir)).ok(),
            install: false,
            read_only: true,
            compat: hex(&h.0.finalize()[..8]),
        }
    }

    /// The cache as `wasm-cni compile` writes it: pinned modules' sums
    /// too, in a directory it creates.
    pub fn open_for_install(engine: &Engine, dir: &Path) -> Self {
        let mut c = Cache::open(engine, dir);
        c.install = true;
        c.pins = match prepare_dir(&pins_dir(dir)) {
            Ok(p) => Some(p),
            Err(e) => {
                crate::log::warn(&format!("cannot prepare {}: {e}", pins_dir(dir).display()));
                None
            }
        };
        c
    }

    /// The component in `module`, from the cache when it is there. A file
    /// over `max_bytes` is refused before it is read; waiting for another
    /// process's compile ends at `lock_deadline` (then we compile too: the
    /// artifact is written atomically, so two writers are harmless). Blocks:
    /// call it off the runtime's thread.
    ///
    /// `admit` judges the module's sha256 (hex) before anything is compiled
    /// or loaded (the node policy's pins); a `pinned` one loads only as its
    /// separate sum vouches (see the module's comment).
    pub fn load(
        &self,
        engine: &Engine,
        module: &Path,
        max_bytes: u64,
        lock_deadline: std::time::Instant,
        admit: impl Fn(&str) -> Result<(), String>,
        pinned: bool,
    ) -> Result<(Component, Loaded), String> {
        let digest = digest_capped(module, max_bytes)?;
        admit(&hex(&digest))?;
        let loaded = |outcome| Loaded {
            outcome,
            digest: hex(&digest),
        };
        // Only a module that is compiled is read into memory, and only as
        // the digest just admitted.
        let bytes = || read_as_admitted(module, max_bytes, &digest);
        let Some(dir) = &self.dir else {
            return compile(engine, &bytes()?, module).map(|c| (c, loaded(Outcome::Uncached)));
        };
        let key = format!("{}-{}.cwasm", hex(&digest), self.compat);
        let artifact = dir.join(&key);
        if pinned {
            return self
                .load_pinned(engine, bytes, &digest, &artifact, module)
                .map(|(c, o)| (c, loaded(o)));
        }
        let expect = Expect { digest };
        if let Some(c) = load_artifact(engine, &artifact, expect) {
            return Ok((c, loaded(Outcome::Hit)));
        }
        if self.read_only {
            return compile(engine, &bytes()?, module).map(|c| (c, loaded(Outcome::Uncached)));
        }
        // Compile once per node, not once per racing process: the first
        // caller compiles under the lock, the others wait for it and load
        // its artifact (thirty pods starting on a cold node would otherwise
        // compile thirty times over).
        let _lock = CompileLock::take(dir, lock_deadline);
        if let Some(c) = load_artifact(engine, &artifact, expect) {
            return Ok((c, loaded(Outcome::Hit)));
        }
        name_compile_threads();
        let compiled = engine
            .precompile_component(&bytes()?)
            .map_err(|e| format!("cannot compile {}: {e:#}", module.display()))?;
        // The code first, then what it is: a sum always describes an
        // artifact already in place.
        let written = write_atomic(dir, &artifact, &compiled)
            .and_then(|()| write_atomic(dir, &sum_path(&artifact), &sum(&digest, &compiled)));
        if let Err(e) = written {
            crate::log::warn(&format!("cannot write {}: {e}", artifact.display()));
        }
        // SAFETY: these bytes were just produced by `precompile_component`
        // on this engine.
        let c =
            unsafe { Component::deserialize(engine, &compiled) }.map_err(|e| format!("{e:#}"))?;
        Ok((c, loaded(Outcome::Compiled)))
    }

    /// A pinned module: the artifact its separate sum vouches for, loaded
    /// from the bytes checked; else compiled (and, installing, written with
    /// that sum).
    fn load_pinned(
        &self,
        engine: &Engine,
        bytes: impl FnOnce() -> Result<Vec<u8>, String>,
        digest: &[u8; 32],
        artifact: &Path,
        module: &Path,
    ) -> Result<(Component, Outcome), String> {
        let vouched = self
            .pins
            .as_ref()
            .map(|p| p.join(sum_path(artifact).file_name().expect("a file name")));
        if !self.install
            && let Some(vouched) = &vouched
            && trusted_file(artifact)
            && trusted_file(vouched)
        {
            let checked = fs::read(vouched)
                .map_err(|e| e.to_string())
                .and_then(|sum| {
                    let code = fs::read(artifact).map_err(|e| e.to_string())?;
                    verified(&sum, Expect { digest: *digest }, Some(&code)).map(|()| code)
                });
            match checked {
                // SAFETY: the code root's `wasm-cni compile` vouched for,
                // byte for byte: these very bytes, not the file again.
                Ok(code) => match unsafe { Component::deserialize(engine, &code) } {
                    Ok(c) => return Ok((c, Outcome::Hit)),
                    Err(e) => {
                        crate::log::warn(&format!("ignoring cached {}: {e:#}", artifact.display()))
                    }
                },
                Err(why) => crate::log::warn(&format!(
                    "ignoring cached {} of a pinned module: {why}",
                    artifact.display()
                )),
            }
        }
        name_compile_threads();
        let compiled = engine
            .precompile_component(&bytes()?)
            .map_err(|e| format!("cannot compile {}: {e:#}", module.display()))?;
        match (&self.dir, &vouched) {
            (Some(dir), Some(vouched)) if self.install => {
                let pins = self.pins.as_deref().expect("vouched implies pins");
                let written = write_atomic(dir, artifact, &compiled)
                    .and_then(|()| write_atomic(dir, &sum_path(artifact), &sum(digest, &compiled)))
                    .and_then(|()| write_atomic(pins, vouched, &sum(digest, &compiled)));
                if let Err(e) = written {
                    return Err(format!("cannot write {}: {e}", artifact.display()));
                }
            }
            _ if self.install => {
                return Err(format!(
                    "cannot vouch for pinned module {}: {} is unusable (see the warning above)",
                    module.display(),
                    self.dir
                        .as_deref()
                        .map_or_else(|| "the cache".into(), |d| pins_dir(d).display().to_string())
                ));
            }
            _ => crate::log::warn(&format!(
                "pinned module {} has no artifact that `wasm-cni compile` vouched for: compiled for this call only",
                module.display()
            )),
        }
        // SAFETY: these bytes were just produced by `precompile_component`
        // on this engine.
        let c =
            unsafe { Component::deserialize(engine, &compiled) }.map_err(|e| format!("{e:#}"))?;
        Ok((c, Outcome::Compiled))
    }
}

/// Cranelift compiles on rayon's global pool; named, its threads are told
/// apart from the call's own (they are born before the seccomp filter and
/// stay unfiltered, idle, running nothing but compile jobs: see `seccomp`).
/// Started only when something is compiled: a warm call has none.
fn name_compile_threads() {
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("wasm-cni-cc{i}"))
        .build_global();
}

/// What an artifact must say of itself.
#[derive(Clone, Copy)]
struct Expect {
    /// The module's sha256.
    digest: [u8; 32],
}

const MAGIC: &[u8; 16] = b"wasm-cni cwasm 1";
const SUM: usize = MAGIC.len() + 64;

fn sum_path(artifact: &Path) -> PathBuf {
    let mut p = artifact.as_os_str().to_owned();
    p.push(".sum");
    PathBuf::from(p)
}

/// What `<artifact>.sum` holds.
fn sum(module: &[u8; 32], code: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(SUM);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(module);
    h.extend_from_slice(&Sha256::digest(code));
    h
}

/// Whether the sum says the artifact was compiled from the module `expect`
/// names, and (given) that `code` is what was written.
fn verified(sum: &[u8], expect: Expect, code: Option<&[u8]>) -> Result<(), String> {
    if sum.len() != SUM || &sum[..MAGIC.len()] != MAGIC {
        return Err("no valid .sum beside it".into());
    }
    let (module, code_digest) = sum[MAGIC.len()..].split_at(32);
    if module != expect.digest {
        return Err("compiled from another module".into());
    }
    if let Some(code) = code
        && code_digest != Sha256::digest(code).as_slice()
    {
        return Err("its code is not what was written (the module is pinned)".into());
    }
    Ok(())
}

fn load_artifact(engine: &Engine, artifact: &Path, expect: Expect) -> Option<Component> {
    let sum_file = sum_path(artifact);
    if !trusted_file(artifact) || !trusted_file(&sum_file) {
        return None;
    }
    let sum = fs::read(&sum_file).ok()?;
    if let Err(why) = verified(&sum, expect, None) {
        crate::log::warn(&format!("ignoring cached {}: {why}", artifact.display()));
        return None;
    }
    // SAFETY: the artifact was written by this program's own engine into a
    // directory only we can write (checked in `prepare_dir` and
    // `trusted_file`), keyed by the engine's compatibility hash, and its sum
    // names the module just read.
    match unsafe { Component::deserialize_file(engine, artifact) } {
        Ok(c) => Some(c),
        Err(e) => {
            crate::log::warn(&format!("ignoring cached {}: {e:#}", artifact.display()));
            None
        }
    }
}

/// An exclusive flock on `<cache>/.compile.lock`, released on drop. If it
/// cannot be taken, compiling unlocked is still correct (writes are atomic).
struct CompileLock {
    _held: Option<fs::File>,
}

impl CompileLock {
    /// Wait for the lock until `deadline`: a process stuck holding it (or
    /// compiling a huge module) must not hold up every call on the node.
    fn take(dir: &Path, deadline: std::time::Instant) -> CompileLock {
        use rustix::fs::{FlockOperation, flock};
        let Ok(file) = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".compile.lock"))
        else {
            return CompileLock { _held: None };
        };
        let mut pause = std::time::Duration::from_millis(1);
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return CompileLock { _held: Some(file) },
                Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(50));
                }
                Err(_) => {
                    crate::log::warn("the compile lock was not free in time: compiling without it");
                    return CompileLock { _held: None };
                }
            }
        }
    }
}

/// The module opened, and a message for a size over `max`.
fn open_capped(module: &Path, max: u64) -> Result<(fs::File, impl Fn(u64) -> String), String> {
    let f = fs::File::open(module).map_err(|e| format!("cannot read {}: {e}", module.display()))?;
    let name = module.display().to_string();
    let too_big = move |n: u64| {
        format!(
            "{name} is {n} bytes, over the node's limit of {max} (\"maxModuleBytes\" in the node policy)"
        )
    };
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    if len > max {
        return Err(too_big(len));
    }
    Ok((f, too_big))
}

/// The module's bytes, refusing a file larger than `max` before reading it
/// (and reading no more than that if it grows meanwhile).
pub(crate) fn read_capped(module: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let (f, too_big) = open_capped(module, max)?;
    let mut bytes = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", module.display()))?;
    if bytes.len() as u64 > max {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The module's sha256, read through one small buffer, as capped as
/// [`read_capped`]. A warm call needs only the digest (the cache has the
/// code): reading both modules whole cost ~180 page faults of fresh heap
/// and a copy per call, a tenth of a warm ADD's faults.
fn digest_capped(module: &Path, max: u64) -> Result<[u8; 32], String> {
    use std::io::Read;
    let (f, too_big) = open_capped(module, max)?;
    let mut f = f.take(max + 1);
    let (mut h, mut buf, mut total) = (Sha256::new(), vec![0u8; 16 << 10], 0u64);
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read {}: {e}", module.display())),
        };
        h.update(&buf[..n]);
        total += n as u64;
    }
    if total > max {
        return Err(too_big(total));
    }
    Ok(h.finalize().into())
}

/// The module's bytes, which must be what `digest` was admitted for: a
/// module replaced between the two reads fails the call rather than
/// compile what nobody admitted.
fn read_as_admitted(module: &Path, max: u64, digest: &[u8; 32]) -> Result<Vec<u8>, String> {
    let bytes = read_capped(module, max)?;
    if Sha256::digest(&bytes).as_slice() != digest {
        return Err(format!(
            "{} changed while it was loaded: try again",
            module.display()
        ));
    }
    Ok(bytes)
}

fn compile(engine: &Engine, bytes: &[u8], module: &Path) -> Result<Component, String> {
    Component::from_binary(engine, bytes)
        .map_err(|e| format!("cannot compile {}: {e:#}", module.display()))
}

fn write_atomic(dir: &Path, dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

/// Create the directory (0700) if needed, then check that it and its
/// ancestors are safe to load code from; the directory's canonical path.
fn prepare_dir(dir: &Path) -> io::Result<PathBuf> {
    if !dir.is_absolute() {
        return Err(io::Error::other("must be an absolute path"));
    }
    if !dir.exists() {
        if let Some(parent) = dir.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)?;
        }
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    if !fs::symlink_metadata(dir)?.is_dir() {
        return Err(io::Error::other("not a directory (symlinks are refused)"));
    }
    crate::trust::dir(dir).map_err(|e| io::Error::other(e.to_string()))
}

/// A regular file (not a link), ours, not writable by others.
fn trusted_file(path: &Path) -> bool {
    let me = rustix::process::geteuid().as_raw();
    fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.uid() == me && m.mode() & 0o022 == 0)
}

/// Whether `dir` holds an artifact of the module with this sha256 (hex)
/// for `engine`, with its sum, and whether `wasm-cni compile` vouched for
/// it (what a pinned module needs). Reads only: nothing is created.
pub fn cached(engine: &Engine, dir: &Path, digest_hex: &str) -> (bool, bool) {
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    let compat = hex(&h.0.finalize()[..8]);
    let Ok(dir) = crate::trust::dir(dir) else {
        return (false, false);
    };
    let artifact = dir.join(format!("{digest_hex}-{compat}.cwasm"));
    let Some(digest) = unhex(digest_hex) else {
        return (false, false);
    };
    let expect = Expect { digest };
    let valid = |sum: &Path| {
        trusted_file(sum) && fs::read(sum).is_ok_and(|s| verified(&s, expect, None).is_ok())
    };
    let there = trusted_file(&artifact) && valid(&sum_path(&artifact));
    let vouched = there
        && crate::trust::dir(&pins_dir(&dir)).is_ok_and(|pins| {
            valid(&pins.join(sum_path(&artifact).file_name().expect("a file name")))
        });
    (there, vouched)
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_others_can_write_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let good = tmp.path().join("cache");
        assert_eq!(
            prepare_dir(&good).unwrap(),
            fs::canonicalize(&good).unwrap()
        );
        assert_eq!(fs::metadata(&good).unwrap().mode() & 0o777, 0o700);
        let open = tmp.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(prepare_dir(&open).is_err());
        assert!(
            prepare_dir(&open.join("below")).is_err(),
            "a world-writable ancestor"
        );
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        assert!(prepare_dir(&link).is_err());
        assert!(prepare_dir(Path::new("relative")).is_err());
    }

    #[test]
    fn the_pins_sit_beside_the_cache_however_its_path_is_written() {
        for c in [
            "/var/lib/wasm-cni/cache",
            "/var/lib/wasm-cni/cache/",
            "/var/lib/wasm-cni//cache/.",
        ] {
            assert_eq!(
                pins_dir(Path::new(c)),
                Path::new("/var/lib/wasm-cni/cache.pins"),
                "{c}"
            );
        }
    }

    #[test]
    fn an_artifact_runs_only_for_its_module_and_pinned_only_as_written() {
        let module: [u8; 32] = Sha256::digest(b"module").into();
        let code = b"compiled code".to_vec();
        let file = sum(&module, &code);
        let this = Expect { digest: module };
        assert_eq!(verified(&file, this, Some(&code)), Ok(()));
        let other = Expect {
            digest: Sha256::digest(b"another").into(),
        };
        assert!(verified(&file, other, None).is_err());
        let mut tampered = code.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(verified(&file, this, Some(&tampered)).is_err());
        assert!(
            verified(&file, this, None).is_ok(),
            "the code is checked for pinned modules only"
        );
        assert!(verified(b"short", this, None).is_err(), "no sum");
    }

    #[test]
    fn only_our_own_unwritable_files_are_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("a.cwasm");
        fs::write(&f, b"x").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(trusted_file(&f));
        fs::set_permissions(&f, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!trusted_file(&f));
        assert!(!trusted_file(&tmp.path().join("missing")));
    }

    #[test]
    fn a_module_is_compiled_only_as_the_digest_admitted() {
        let tmp = tempfile::tempdir().unwrap();
        let m = tmp.path().join("m.wasm");
        // Over several reads of the digest's buffer.
        let first = vec![7u8; 200 << 10];
        fs::write(&m, &first).unwrap();
        let digest = digest_capped(&m, 1 << 20).unwrap();
        assert_eq!(digest.as_slice(), Sha256::digest(&first).as_slice());
        assert_eq!(read_as_admitted(&m, 1 << 20, &digest).unwrap(), first);
        // Replaced after its digest was admitted.
        fs::write(&m, b"another module").unwrap();
        let e = read_as_admitted(&m, 1 << 20, &digest).unwrap_err();
        assert!(e.contains("changed while it was loaded"), "{e}");
        // The node's cap holds for the digest too.
        let e = digest_capped(&m, 4).unwrap_err();
        assert!(e.contains("maxModuleBytes"), "{e}");
    }
}
