//! The host's log: stderr, and a file when one is set. stdout is the CNI
//! result's alone.
//!
//! The level and the file come from the network config's `logLevel` and
//! `logFile` (runtimes pass no environment of ours; Multus and Calico take
//! the same keys), else from `WASM_CNI_LOG` (error, warn, info, debug;
//! default warn) and `WASM_CNI_LOG_FILE`. A config's file is a root write
//! chosen by whoever wrote the config: it must lie beneath one of the node
//! policy's `logDirs` (default `/var/log/wasm-cni`), and is opened there
//! with `openat2` refusing links, `..` and other mounts ([`open_beneath`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

struct Logger {
    level: Level,
    file: Option<std::fs::File>,
    /// Bytes this process may still append to the file.
    file_budget: usize,
}

/// The longest record: host messages repeat what a config said (a 300 KB
/// `ipam.type`), and a log must not become a way to fill a disk.
const MAX_RECORD: usize = 4 << 10;
/// What one call appends to its log file at most.
const FILE_BUDGET: usize = 1 << 20;

static LOGGER: OnceLock<Mutex<Logger>> = OnceLock::new();
/// No log file, whatever the environment or a config says (a simulated
/// node's process writes no file of the real one's).
static NO_FILES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on this process logs to stderr only.
pub fn without_files() {
    NO_FILES.store(true, std::sync::atomic::Ordering::Relaxed);
    logger().file = None;
}

fn files_allowed() -> bool {
    !NO_FILES.load(std::sync::atomic::Ordering::Relaxed)
}
static START: OnceLock<std::time::Instant> = OnceLock::new();

/// Mark the start of the process: log lines say how long after it they
/// were written (`+3.2ms`), which makes slow steps visible at debug level.
pub fn start_clock() {
    START.get_or_init(std::time::Instant::now);
}

fn logger() -> std::sync::MutexGuard<'static, Logger> {
    LOGGER
        .get_or_init(|| {
            let level = std::env::var("WASM_CNI_LOG")
                .ok()
                .and_then(|l| parse_level(&l))
                .unwrap_or(Level::Warn);
            let file = std::env::var_os("WASM_CNI_LOG_FILE")
                .filter(|_| files_allowed())
                .and_then(|p| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)
                        .ok()
                });
            Mutex::new(Logger {
                level,
                file,
                file_budget: FILE_BUDGET,
            })
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// A level as configs spell it (Multus: debug, verbose, error, panic;
/// Calico: debug, info, warning, error).
pub fn parse_level(text: &str) -> Option<Level> {
    match text.to_ascii_lowercase().as_str() {
        "error" | "panic" | "fatal" => Some(Level::Error),
        "warn" | "warning" => Some(Level::Warn),
        "info" => Some(Level::Info),
        "debug" | "verbose" | "trace" => Some(Level::Debug),
        _ => None,
    }
}

/// Apply a network config's `logLevel` and `logFile` (the latter already
/// opened by [`open_beneath`]); what it does not set stays as the
/// environment said.
pub fn configure(level: Option<Level>, file: Option<std::fs::File>) {
    let mut l = logger();
    if let Some(level) = level {
        l.level = level;
    }
    if file.is_some() && files_allowed() {
        l.file = file;
    }
}

/// Open the log file `path` a config names for appending, if it lies
/// beneath one of `dirs` (the node policy's `logDirs`): created 0600 if
/// missing, never through a link, `..` or another mount, and only a
/// regular file, never `avoid` (the audit file). The directory itself is
/// created (0700) if it is missing.
pub fn open_beneath(
    path: &str,
    dirs: &[PathBuf],
    avoid: Option<&Path>,
) -> Result<std::fs::File, String> {
    use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, fstat, openat2};
    let p = Path::new(path);
    let list = || {
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let normal = crate::policy::normalized(p).map_err(|e| format!("\"logFile\" {e}"))?;
    let Some((dir, rest)) = dirs.iter().find_map(|d| {
        normal
            .strip_prefix(d)
            .ok()
            .filter(|r| !r.as_os_str().is_empty())
            .map(|r| (d, r))
    }) else {
        return Err(format!(
            "\"logFile\" {path:?} is not inside the node's log directories [{}]",
            list()
        ));
    };
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("\"logFile\" {path:?}: cannot create {}: {e}", dir.display()))?;
    }
    // A directory others can write to is not one root writes into for a
    // config's author (they could put links or other files there).
    crate::trust::dir(dir).map_err(|e| format!("\"logFile\" {path:?}: log directory {e}"))?;
    let fail = |e: rustix::io::Errno| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::XDEV => format!(
            "\"logFile\" {path:?}: a symbolic link or another mount on the way is not followed"
        ),
        e => format!("\"logFile\" {path:?}: {e}"),
    };
    let base = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("\"logFile\" {path:?}: {}: {e}", dir.display()))?;
    let resolve = ResolveFlags::BENEATH
        | ResolveFlags::NO_SYMLINKS
        | ResolveFlags::NO_MAGICLINKS
        | ResolveFlags::NO_XDEV;
    let write =
        OFlags::WRONLY | OFlags::APPEND | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    // Looked up first without opening (`O_PATH`: opening a device or a
    // FIFO can act), checked, then opened through that descriptor; a new
    // file is created exclusively, so it is one we made.
    // Two first calls may race to create it: the loser looks it up again.
    let mut tries = 0;
    let fd = loop {
        tries += 1;
        let found = match openat2(
            &base,
            rest,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        ) {
            Err(rustix::io::Errno::NOENT) => match openat2(
                &base,
                rest,
                write | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
                Mode::from_raw_mode(0o600),
                resolve,
            ) {
                Ok(made) => break made,
                Err(rustix::io::Errno::EXIST) if tries < 4 => continue,
                Err(e) => return Err(fail(e)),
            },
            Err(e) => return Err(fail(e)),
            Ok(found) => found,
        };
        let st = fstat(&found).map_err(fail)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(format!("\"logFile\" {path:?} is not a regular file"));
        }
        // A second name (a hard link) could be any file of the same file
        // system; someone else's file is not ours to append to.
        if st.st_nlink != 1 || st.st_uid != rustix::process::geteuid().as_raw() {
            return Err(format!(
                "\"logFile\" {path:?} has other names or another owner: not appended to"
            ));
        }
        // Never the audit trail, whatever path leads to it.
        if let Some(a) = avoid.and_then(|a| std::fs::metadata(a).ok()) {
            use std::os::unix::fs::MetadataExt;
            if (a.dev(), a.ino()) == (st.st_dev, st.st_ino) {
                return Err(format!("\"logFile\" {path:?} is the audit file"));
            }
        }
        break rustix::fs::open(
            format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&found)),
            write,
            Mode::empty(),
        )
        .map_err(fail)?;
    };
    Ok(std::fs::File::from(fd))
}

pub fn enabled(level: Level) -> bool {
    level <= logger().level
}

pub fn emit(level: Level, msg: &str) {
    if !enabled(level) {
        return;
    }
    let since = START
        .get()
        .map(|t| t.elapsed().as_secs_f64() * 1000.0)
        .unwrap_or(0.0);
    // One record, one line: a message that carries a guest's words (an
    // error's msg and details, its output) must not forge lines of ours.
    let mut msg = escape(msg).into_owned();
    if msg.len() > MAX_RECORD {
        let mut end = MAX_RECORD;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        msg.truncate(end);
        msg.push_str("… (cut)");
    }
    let line = format!(
        "wasm-cni[{}] +{since:.1}ms {level:?}: {msg}\n",
        std::process::id()
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
    let mut l = logger();
    let budget = l.file_budget;
    if let Some(file) = &mut l.file {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let record = format!("{secs:.3} {line}");
        // One write: lines of calls running side by side stay whole.
        if record.len() <= budget {
            let _ = file.write_all(record.as_bytes());
            l.file_budget -= record.len();
        } else if budget > 0 {
            let _ = writeln!(
                file,
                "{secs:.3} wasm-cni[{}]: the rest of this call's log goes to stderr only ({FILE_BUDGET} bytes written)",
                std::process::id()
            );
            l.file_budget = 0;
        }
    }
}

/// `text` with control characters escaped (`\n`, `\u{1b}`).
fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// A line a guest wrote, tagged with the plugin's name (and escaped when
/// it is logged, as every message is).
pub fn guest_line(plugin: &str, text: &str) -> String {
    format!("[{plugin}] {text}")
}

pub fn error(msg: &str) {
    emit(Level::Error, msg)
}
pub fn warn(msg: &str) {
    emit(Level::Warn, msg)
}
pub fn info(msg: &str) {
    emit(Level::Info, msg)
}
pub fn debug(msg: &str) {
    emit(Level::Debug, msg)
}
