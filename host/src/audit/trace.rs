//! Capability calls, as the WIT bindings report them.
//!
//! The bindings are generated with wasmtime's `tracing` option: each host
//! import runs inside a span named after its interface and function, with
//! an event carrying its arguments before the call and one after. This
//! subscriber turns each such span into one [`CapCall`]; the bindings'
//! error conversion (`caps::convert_cap_errors`) marks the span it runs in
//! as failed. Only spans of our own bindings count (their target is in this
//! crate): WASI's imports are traced too, and are not capability calls.
//!
//! Written by hand rather than with `tracing-subscriber`: what is needed is
//! a span table and a per-thread stack of entered spans, nothing of its
//! formatting or filtering.

use super::{CapCall, cap, ms, record};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::Instant;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// The bindings' module path (`contract::bindings`).
const OURS: &str = "wasm_cni::contract";

struct Open {
    call: CapCall,
    started: Instant,
    /// Handles to the span still held (`clone_span` / `try_close`).
    refs: usize,
}

#[derive(Default)]
struct Recorder {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Open>>,
}

thread_local! {
    /// The spans entered on this thread, innermost last.
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

static INSTALL: Once = Once::new();
static RECORDER: std::sync::OnceLock<&'static Recorder> = std::sync::OnceLock::new();

/// Make the recorder the process's subscriber (once).
pub(super) fn install() {
    INSTALL.call_once(|| {
        let r: &'static Recorder = Box::leak(Box::default());
        r.next.store(1, Ordering::Relaxed);
        let _ = RECORDER.set(r);
        let _ = tracing::subscriber::set_global_default(Forward(r));
    });
}

/// The innermost capability call on this thread failed.
pub(super) fn fail_current(outcome: &'static str, msg: String) {
    let Some(r) = RECORDER.get() else { return };
    let Some(id) = ENTERED.with(|e| e.borrow().last().copied()) else {
        return;
    };
    if let Some(open) = r
        .open
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(&id)
    {
        open.call.outcome = outcome;
        open.call.allowed = outcome != "denied";
        open.call.error = Some(msg);
    }
}

/// `Subscriber` for a `&'static Recorder`.
struct Forward(&'static Recorder);

/// Collects a span's or event's fields.
#[derive(Default)]
struct Fields {
    module: String,
    function: String,
    message: String,
    args: Vec<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "module" => self.module = value.to_string(),
            "function" => self.function = value.to_string(),
            _ => self.record_debug(field, &value),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "module" => self.module = text.trim_matches('"').to_string(),
            "function" => self.function = text.trim_matches('"').to_string(),
            "message" => self.message = text,
            "result" => {}
            name => self.args.push(format!("{name}={}", readable(name, &text))),
        }
    }
}

/// An argument as an operator reads it: a namespace handle by the
/// namespace it stands for, everything else as the bindings print it.
fn readable(name: &str, text: &str) -> String {
    if let Some(rep) = text
        .strip_prefix("Resource { rep: ")
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
    {
        if name == "ns" || name.ends_with("_ns") {
            return match rep {
                "0" => "host".into(),
                "1" => "container".into(),
                _ => format!("namespace#{rep}"),
            };
        }
        return format!("handle#{rep}");
    }
    cap(tidy(text))
}

/// The WIT types' derived `Debug`, shortened where an address reads
/// better: `IpAddress::V4((10, 0, 0, 1))` as `10.0.0.1`, `IpPrefix {
/// address: 10.0.0.0, prefix-len: 8 }` as `10.0.0.0/8`.
fn tidy(text: &str) -> String {
    let mut out = text.to_string();
    for (tag, v6) in [("IpAddress::V4((", false), ("IpAddress::V6((", true)] {
        while let Some(at) = out.find(tag) {
            let Some(len) = out[at + tag.len()..].find("))") else {
                break;
            };
            let inner = &out[at + tag.len()..at + tag.len() + len];
            let parts: Vec<u32> = inner.split(", ").filter_map(|p| p.parse().ok()).collect();
            let addr = match (v6, parts.len()) {
                (false, 4) => parts
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join("."),
                (true, 8) => {
                    let mut a = [0u16; 8];
                    for (d, s) in a.iter_mut().zip(&parts) {
                        *d = *s as u16;
                    }
                    std::net::Ipv6Addr::from(a).to_string()
                }
                _ => break,
            };
            out.replace_range(at..at + tag.len() + len + 2, &addr);
        }
    }
    const PREFIX: &str = "IpPrefix { address: ";
    while let Some(at) = out.find(PREFIX) {
        let rest = &out[at + PREFIX.len()..];
        let Some(comma) = rest.find(", prefix-len: ") else {
            break;
        };
        let Some(close) = rest.find(" }") else { break };
        if close < comma {
            break;
        }
        let short = format!("{}/{}", &rest[..comma], &rest[comma + 14..close]);
        out.replace_range(at..at + PREFIX.len() + close + 2, &short);
    }
    out
}

impl Subscriber for Forward {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with(OURS)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let r = self.0;
        let id = r.next.fetch_add(1, Ordering::Relaxed);
        let mut f = Fields::default();
        span.record(&mut f);
        let open = Open {
            call: CapCall {
                op: format!("{}.{}", f.module, f.function),
                target: String::new(),
                allowed: true,
                outcome: "ok",
                error: None,
                at_ms: 0.0,
                ms: 0.0,
            },
            started: Instant::now(),
            refs: 1,
        };
        r.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, open);
        Id::from_u64(id)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let Some(id) = ENTERED.with(|e| e.borrow().last().copied()) else {
            return;
        };
        let mut f = Fields::default();
        event.record(&mut f);
        let mut open = self.0.open.lock().unwrap_or_else(|e| e.into_inner());
        let Some(o) = open.get_mut(&id) else { return };
        match f.message.as_str() {
            "call" => {
                o.call.target = f.args.join(" ");
                o.started = Instant::now();
                o.call.at_ms = super::since_start(o.started);
            }
            "return" => o.call.ms = ms(o.started),
            _ => {}
        }
    }

    fn enter(&self, span: &Id) {
        ENTERED.with(|e| e.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        ENTERED.with(|e| {
            let mut e = e.borrow_mut();
            if let Some(at) = e.iter().rposition(|s| *s == span.into_u64()) {
                e.remove(at);
            }
        });
    }

    fn clone_span(&self, id: &Id) -> Id {
        if let Some(o) = self
            .0
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&id.into_u64())
        {
            o.refs += 1;
        }
        id.clone()
    }

    fn try_close(&self, id: Id) -> bool {
        let done = {
            let mut open = self.0.open.lock().unwrap_or_else(|e| e.into_inner());
            match open.get_mut(&id.into_u64()) {
                Some(o) if o.refs > 1 => {
                    o.refs -= 1;
                    None
                }
                Some(_) => open.remove(&id.into_u64()),
                None => None,
            }
        };
        match done {
            Some(o) => {
                record(o.call);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_handles_read_as_namespaces() {
        assert_eq!(
            readable("ns", "Resource { rep: 0, state: \"borrow\" }"),
            "host"
        );
        assert_eq!(
            readable("peer_ns", "Resource { rep: 1, state: \"own\" }"),
            "container"
        );
        assert_eq!(
            readable("lock", "Resource { rep: 7, state: \"own\" }"),
            "handle#7"
        );
        assert_eq!(readable("name", "\"eth0\""), "\"eth0\"");
    }

    #[test]
    fn addresses_read_as_addresses() {
        assert_eq!(
            tidy("[IpPrefix { address: IpAddress::V4((10, 244, 0, 2)), prefix-len: 16 }]"),
            "[10.244.0.2/16]"
        );
        assert_eq!(
            tidy("Some(IpAddress::V6((64768, 0, 0, 0, 0, 0, 0, 1)))"),
            "Some(fd00::1)"
        );
        assert_eq!(tidy("IpAddress::V4((1, 2))"), "IpAddress::V4((1, 2))");
    }
}
