//! The host's log: stderr, and `WASM_CNI_LOG_FILE` when set. stdout is the
//! CNI result's alone. `WASM_CNI_LOG` sets the level (error, warn, info,
//! debug; default warn).

use std::io::Write;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

struct Logger {
    level: Level,
    file: Option<std::sync::Mutex<std::fs::File>>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();
static START: OnceLock<std::time::Instant> = OnceLock::new();

/// Mark the start of the process: log lines say how long after it they
/// were written (`+3.2ms`), which makes slow steps visible at debug level.
pub fn start_clock() {
    START.get_or_init(std::time::Instant::now);
}

fn logger() -> &'static Logger {
    LOGGER.get_or_init(|| {
        let level = match std::env::var("WASM_CNI_LOG")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "error" => Level::Error,
            "info" => Level::Info,
            "debug" => Level::Debug,
            _ => Level::Warn,
        };
        let file = std::env::var_os("WASM_CNI_LOG_FILE").and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
                .map(std::sync::Mutex::new)
        });
        Logger { level, file }
    })
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
    let line = format!(
        "wasm-cni[{}] +{since:.1}ms {level:?}: {}\n",
        std::process::id(),
        escape(msg)
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(file) = &logger().file {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        if let Ok(mut f) = file.lock() {
            let _ = write!(f, "{secs:.3} {line}");
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
