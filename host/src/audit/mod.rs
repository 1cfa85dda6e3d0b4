//! The audit trail: one JSON line per call, appended to the file the node
//! policy names (`auditFile`; off by default), rotated by size.
//!
//! A line says who asked (command, network, container, interface), what
//! ran (each module's name, sha256, contract version and engine), every
//! capability call the guests made (operation, its arguments, allowed or
//! denied, how it ended, how long it took), what a rollback did, and how
//! the call ended (CNI code and message, total time).
//!
//! Capability calls are recorded where the WIT bindings call the host
//! (`trace`): every import of every version is audited as it is, with no
//! code in the capabilities themselves, so one added later cannot be
//! forgotten. WASI calls (clocks, random, stdout) are not capability calls
//! and are left out.

mod file;
mod trace;

use crate::caps::CapError;
use crate::contract::wasm_cni::plugin::types::Error as WitError;
use serde::Serialize;
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::policy::AuditSettings;

/// How many capability calls a line keeps: the first ones, the last ones,
/// and in between those that changed something or failed (a guest cannot
/// hide its real requests behind thousands of cheap reads); the rest are
/// counted (`callsNotListed`).
const KEEP_FIRST: usize = 500;
const KEEP_LAST: usize = 500;
/// Changes and refusals kept between them; failed reads have a budget of
/// their own, so that a guest cannot crowd its changes out with reads
/// that fail on purpose.
const KEEP_CHANGES: usize = 1000;
const KEEP_FAILED_READS: usize = 200;
/// Rollback steps kept.
const MAX_STEPS: usize = 256;
/// The longest argument or message kept, in bytes.
const MAX_TEXT: usize = 256;

/// One capability call.
#[derive(Debug, Clone, Serialize)]
pub struct CapCall {
    /// `interface.function`, as the WIT names it (`link.create-veth`).
    pub op: String,
    /// The module that asked (an interface plugin, or its IPAM plugin).
    pub module: String,
    /// Its arguments, `name=value`, namespaces as `host`/`container`.
    pub target: String,
    pub allowed: bool,
    /// `ok`, `denied`, `not-found`, `already-exists`, `invalid`, `busy`,
    /// `other` (the WIT error variants), `error` (an IPAM delegation's
    /// CNI error), `trap`, or `incomplete` (cut short: a panic, the
    /// deadline).
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it started, in ms since the call did.
    #[serde(rename = "atMs")]
    pub at_ms: f64,
    pub ms: f64,
}

/// A module the call ran.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleRecord {
    pub name: String,
    pub sha256: String,
    pub contract: &'static str,
    pub role: &'static str,
    pub engine: &'static str,
}

/// What rollback did, step by step.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackStep {
    pub action: String,
    pub ok: bool,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    time: String,
    pid: u32,
    command: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    network: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    container_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    ifname: String,
    modules: Vec<ModuleRecord>,
    calls: Vec<CapCall>,
    #[serde(skip_serializing_if = "is_zero")]
    calls_not_listed: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rollback: Vec<RollbackStep>,
    code: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
    ms: f64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

struct Call {
    started: Instant,
    /// The file the line goes to; `None`: kept for the caller
    /// ([`take_recorded`]).
    settings: Option<AuditSettings>,
    line: Line,
    /// The capability calls, as kept (see [`KEEP_FIRST`]).
    first: Vec<CapCall>,
    changes: Vec<CapCall>,
    failed_reads: Vec<CapCall>,
    last: std::collections::VecDeque<CapCall>,
    /// The modules running, innermost last.
    modules: Vec<String>,
}

/// The process's one call, while it is audited.
static CALL: Mutex<Option<Call>> = Mutex::new(None);

fn call() -> MutexGuard<'static, Option<Call>> {
    CALL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Start auditing this process's call, to the file `settings` names.
pub fn begin(settings: AuditSettings, command: &str, container_id: &str, ifname: &str) {
    // The file's directory, now, while the call may create it (Landlock
    // grants the directory, which must exist by then).
    if let Some(dir) = settings.file.parent() {
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
    }
    start(Some(settings), command, container_id, ifname);
}

/// Record this process's call for the caller (`wasm-cni plan`), who takes
/// it with [`take_recorded`] after the call.
pub fn record(command: &str, container_id: &str, ifname: &str) {
    start(None, command, container_id, ifname);
}

/// The line of the call [`record`] recorded, once it has finished.
pub fn take_recorded() -> Option<serde_json::Value> {
    RECORDED.lock().unwrap_or_else(|e| e.into_inner()).take()
}

static RECORDED: Mutex<Option<serde_json::Value>> = Mutex::new(None);

fn start(settings: Option<AuditSettings>, command: &str, container_id: &str, ifname: &str) {
    *call() = Some(Call {
        started: Instant::now(),
        settings,
        first: Vec::new(),
        changes: Vec::new(),
        failed_reads: Vec::new(),
        last: Default::default(),
        modules: Vec::new(),
        line: Line {
            time: rfc3339(SystemTime::now()),
            pid: std::process::id(),
            command: command.to_string(),
            container_id: cap(container_id.to_string()),
            ifname: cap(ifname.to_string()),
            ..Default::default()
        },
    });
    trace::install();
}

fn with(f: impl FnOnce(&mut Line)) {
    if let Some(c) = call().as_mut() {
        f(&mut c.line)
    }
}

pub fn network(name: &str) {
    with(|l| l.network = cap(name.to_string()));
}

pub fn module(m: ModuleRecord) {
    with(|l| {
        if !l.modules.iter().any(|x| x.name == m.name) {
            l.modules.push(m)
        }
    });
}

pub fn rollback(action: impl Into<String>, ok: bool) {
    with(|l| {
        if l.rollback.len() < MAX_STEPS {
            l.rollback.push(RollbackStep {
                action: cap(action.into()),
                ok,
            })
        }
    });
}

/// Module `name` runs until the guard is dropped: the capability calls
/// made meanwhile are its.
pub fn enter_module(name: &str) -> ModuleGuard {
    if let Some(c) = call().as_mut() {
        c.modules.push(name.to_string());
    }
    ModuleGuard
}

pub struct ModuleGuard;

impl Drop for ModuleGuard {
    fn drop(&mut self) {
        if let Some(c) = call().as_mut() {
            c.modules.pop();
        }
    }
}

fn current_module() -> String {
    call()
        .as_ref()
        .and_then(|c| c.modules.last().cloned())
        .unwrap_or_default()
}

/// How much a call says about what a guest did, least first: a read that
/// went well, a read that failed, a refusal or a change (kept longest).
fn rank(c: &CapCall) -> u8 {
    let function = c.op.rsplit('.').next().unwrap_or("");
    let reads = [
        "get",
        "list",
        "entries",
        "state",
        "read",
        "log",
        "host",
        "container",
        "vlans",
    ];
    let read = reads.iter().any(|r| function.starts_with(r)) || function.starts_with("is-");
    match (read, c.outcome) {
        (_, "denied") => 2,
        (true, "ok") => 0,
        (true, _) => 1,
        (false, _) => 2,
    }
}

fn keep(c: CapCall) {
    let mut guard = call();
    let Some(call) = guard.as_mut() else { return };
    if call.first.len() < KEEP_FIRST {
        call.first.push(c);
        return;
    }
    call.last.push_back(c);
    if call.last.len() > KEEP_LAST {
        let old = call.last.pop_front().expect("over the bound");
        let (kept, max) = match rank(&old) {
            2 => (&mut call.changes, KEEP_CHANGES),
            1 => (&mut call.failed_reads, KEEP_FAILED_READS),
            _ => {
                call.line.calls_not_listed += 1;
                return;
            }
        };
        if kept.len() < max {
            kept.push(old);
        } else {
            call.line.calls_not_listed += 1;
        }
    }
}

/// A capability call ended with `err` (called by the bindings' error
/// conversion, inside the call's trace span).
pub fn failed(err: &CapError) {
    let (outcome, msg) = match err {
        CapError::Trap(e) => ("trap", format!("{e:#}")),
        CapError::Guest(e) => match e {
            WitError::Denied(m) => ("denied", m.clone()),
            WitError::NotFound(m) => ("not-found", m.clone()),
            WitError::AlreadyExists(m) => ("already-exists", m.clone()),
            WitError::Invalid(m) => ("invalid", m.clone()),
            WitError::Busy(m) => ("busy", m.clone()),
            WitError::Other(m) => ("other", m.clone()),
        },
    };
    trace::fail_current(outcome, cap(msg));
}

/// The call ended with `code` (0: success) and `error`: append its line,
/// if the call is audited. A line that cannot be written is logged; the
/// call's answer stands (its changes are made or undone by now).
pub fn finish(code: u32, error: &str) {
    let Some(mut c) = call().take() else { return };
    let mut calls = std::mem::take(&mut c.first);
    calls.append(&mut c.changes);
    calls.append(&mut c.failed_reads);
    calls.extend(c.last.drain(..));
    // Recorded as they end (IPAM's calls inside ipam.add before it): listed
    // as they began.
    calls.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    c.line.calls = calls;
    c.line.code = code;
    c.line.error = cap(error.to_string());
    c.line.ms = ms(c.started);
    let Some(settings) = &c.settings else {
        *RECORDED.lock().unwrap_or_else(|e| e.into_inner()) = serde_json::to_value(&c.line).ok();
        return;
    };
    fit(&mut c.line, max_line(settings.max_bytes));
    let written = serde_json::to_string(&c.line)
        .map_err(std::io::Error::other)
        .and_then(|line| file::append(settings, &line));
    if let Err(e) = written {
        crate::log::error(&format!(
            "cannot append to the audit file {}: {e}",
            settings.file.display()
        ));
    }
}

/// The longest line for a file rotated at `max_bytes`: a quarter of it
/// (from 4 KiB to 256 KiB), so that one call cannot rotate the history
/// away by itself.
fn max_line(max_bytes: u64) -> usize {
    (max_bytes / 4).clamp(4 << 10, 256 << 10) as usize
}

/// Make the line fit `max` bytes, whatever a call or a config put in it:
/// drop listed calls, least telling first (see [`rank`]) and from the
/// middle out (the first and the last say most), counting them; then
/// rollback steps; then shorten the error. Each step is measured again.
fn fit(line: &mut Line, max: usize) {
    use erased::Size;
    if line.size() <= max {
        return;
    }
    let n = line.calls.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (rank(&line.calls[i]), i.abs_diff(n / 2)));
    let mut drop = vec![false; n];
    let mut over = line.size() - max;
    for i in order {
        if over == 0 {
            break;
        }
        // Its JSON and a comma.
        over = over.saturating_sub(line.calls[i].size() + 1);
        drop[i] = true;
        line.calls_not_listed += 1;
    }
    let mut i = 0;
    line.calls.retain(|_| {
        i += 1;
        !drop[i - 1]
    });
    // The count's own field, a comma miscounted: measured, not guessed.
    while line.size() > max && !line.calls.is_empty() {
        line.calls.remove(line.calls.len() / 2);
        line.calls_not_listed += 1;
    }
    while line.size() > max && line.rollback.len() > 1 {
        line.rollback.truncate(line.rollback.len() / 2);
    }
    if line.size() > max {
        line.error.truncate(64.min(line.error.len()));
        while !line.error.is_char_boundary(line.error.len()) {
            line.error.pop();
        }
    }
}

/// Serialized sizes, without keeping the text.
mod erased {
    pub trait Size {
        fn size(&self) -> usize;
    }
    impl<T: serde::Serialize> Size for T {
        fn size(&self) -> usize {
            let mut n = Counter(0);
            let _ = serde_json::to_writer(&mut n, self);
            n.0
        }
    }
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}

/// Ms from the call's start to `t`.
fn since_start(t: Instant) -> f64 {
    call().as_ref().map_or(0.0, |c| {
        (t.saturating_duration_since(c.started).as_secs_f64() * 1e6).round() / 1e3
    })
}

fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

fn cap(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// `2026-11-29T03:04:05.678Z`. By hand: the one date format needed does
/// not justify a date crate (days to a civil date: Howard Hinnant's
/// `civil_from_days`).
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_utc() {
        let at = |s| rfc3339(UNIX_EPOCH + Duration::from_millis(s));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_795_921_445_678), "2026-11-29T03:04:05.678Z");
        assert_eq!(at(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
    }

    fn cap_call(op: &str, outcome: &'static str, target: &str) -> CapCall {
        CapCall {
            op: op.into(),
            module: "m".into(),
            target: target.into(),
            allowed: outcome != "denied",
            outcome,
            error: None,
            at_ms: 0.0,
            ms: 0.0,
        }
    }

    #[test]
    fn a_line_fits_its_bound_keeping_what_changed_or_failed() {
        let mut line = Line::default();
        for i in 0..400 {
            line.calls
                .push(cap_call("link.get", "ok", &"x".repeat(200)));
            if i == 200 {
                line.calls
                    .push(cap_call("sysctl.set", "denied", "route_localnet"));
                line.calls.push(cap_call("link.create-veth", "ok", "eth0"));
            }
        }
        fit(&mut line, 8 << 10);
        let text = serde_json::to_string(&line).unwrap();
        assert!(text.len() <= 8 << 10, "{}", text.len());
        assert!(text.contains("route_localnet") && text.contains("create-veth"));
        assert_eq!(line.calls.len() as u64 + line.calls_not_listed, 402);
        // Failed reads go before changes.
        let mut line = Line::default();
        for _ in 0..100 {
            line.calls
                .push(cap_call("link.get", "not-found", &"y".repeat(200)));
        }
        line.calls
            .insert(50, cap_call("address.add", "ok", "10.0.0.2/24"));
        fit(&mut line, 4 << 10);
        let text = serde_json::to_string(&line).unwrap();
        assert!(
            text.len() <= 4 << 10 && text.contains("address.add"),
            "{text}"
        );
        assert_eq!(line.calls.len() as u64 + line.calls_not_listed, 101);
        // Whatever is in the line, it fits: a network name of 300 KB.
        let mut line = Line {
            network: "n".repeat(300_000),
            error: "e".repeat(300_000),
            ..Default::default()
        };
        line.rollback = vec![
            RollbackStep {
                action: "x".repeat(200),
                ok: true
            };
            256
        ];
        line.network = cap(line.network);
        fit(&mut line, 4 << 10);
        assert!(serde_json::to_string(&line).unwrap().len() <= 4 << 10);
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let s = cap("é".repeat(200));
        assert!(s.len() <= MAX_TEXT + '…'.len_utf8() && s.ends_with('…'));
    }
}
