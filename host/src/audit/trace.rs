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

use super::{CapCall, cap, keep, ms};
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
    /// `call` or `return`: which event of the bindings this is.
    event: String,
    args: Vec<String>,
    /// The text of a returned `Err(..)`.
    error: Option<String>,
}

/// The longest text taken from one field. A guest passes what it likes
/// (200 000 addresses, a 300 KB name): formatting stops here, so the
/// recorder's work is bounded whatever the argument.
const FIELD_MAX: usize = 512;

/// `Debug` of `value`, at most [`FIELD_MAX`] bytes, and whether it was cut.
fn bounded(value: &dyn Debug) -> (String, bool) {
    struct Bounded(String);
    impl std::fmt::Write for Bounded {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = FIELD_MAX - self.0.len();
            if s.len() <= room {
                self.0.push_str(s);
                return Ok(());
            }
            let mut end = room;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.0.push_str(&s[..end]);
            Err(std::fmt::Error)
        }
    }
    let mut b = Bounded(String::new());
    let cut = std::fmt::write(&mut b, format_args!("{value:?}")).is_err();
    (b.0, cut)
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "module" => self.module = cap(value.to_string()),
            "function" => self.function = cap(value.to_string()),
            _ => self.record_debug(field, &value),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        let name = field.name();
        let (text, cut) = bounded(value);
        match name {
            // Only whether it failed, and how: the error conversion says
            // more for capability errors; an `ipam` delegation's own error
            // type is seen only here.
            // `Err(..)`: a capability's error (or a trap); `Ok(Err(..))`:
            // an error the interface returns as a value (an IPAM
            // delegation's CNI error).
            "result" => {
                if text.starts_with("Err(") || text.starts_with("Ok(Err(") {
                    self.error = Some(cap(text));
                }
            }
            // The event's own message (`call`, `return`) prints bare; an
            // argument named `message` (`log.log`) prints quoted.
            "message" if text == "call" || text == "return" => self.event = text,
            _ => {
                let mut v = readable(name, &text);
                if cut {
                    v.push('…');
                }
                self.args.push(format!("{name}={v}"));
            }
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
/// address: 10.0.0.0, prefix-len: 8 }` as `10.0.0.0/8`. One pass; quoted
/// strings are copied as they are, so a guest's text is never rewritten
/// into something it did not pass.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '"' {
            // Copy the string literal, escapes and all.
            let mut end = 1;
            let bytes = rest.as_bytes();
            while end < bytes.len() && bytes[end] != b'"' {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            let end = (end + 1).min(rest.len());
            out.push_str(&rest[..end]);
            rest = &rest[end..];
        } else if let Some((addr, used)) = address(rest) {
            out.push_str(&addr);
            rest = &rest[used..];
        } else if let Some((prefix, used)) = prefix(rest) {
            out.push_str(&prefix);
            rest = &rest[used..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// `IpAddress::V4((a, b, c, d))` or `::V6((..8 numbers..))` at the start of
/// `s`: the address, and how many bytes it took.
fn address(s: &str) -> Option<(String, usize)> {
    let (v6, body) = if let Some(b) = s.strip_prefix("IpAddress::V4((") {
        (false, b)
    } else {
        (true, s.strip_prefix("IpAddress::V6((")?)
    };
    let close = body.find("))")?;
    let parts: Vec<u32> = body[..close]
        .split(", ")
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let used = s.len() - body.len() + close + 2;
    match (v6, parts.as_slice()) {
        (false, [a, b, c, d]) if [a, b, c, d].iter().all(|x| **x < 256) => {
            Some((format!("{a}.{b}.{c}.{d}"), used))
        }
        (true, p) if p.len() == 8 && p.iter().all(|x| *x < 65536) => {
            let mut a = [0u16; 8];
            for (d, s) in a.iter_mut().zip(p) {
                *d = *s as u16;
            }
            Some((std::net::Ipv6Addr::from(a).to_string(), used))
        }
        _ => None,
    }
}

/// `IpPrefix { address: <address>, prefix-len: N }` at the start of `s`.
fn prefix(s: &str) -> Option<(String, usize)> {
    let body = s.strip_prefix("IpPrefix { address: ")?;
    let (addr, used) = address(body)?;
    let tail = body[used..].strip_prefix(", prefix-len: ")?;
    let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
    let after = tail[digits..].strip_prefix(" }")?;
    let total = s.len() - after.len();
    Some((format!("{addr}/{}", &tail[..digits]), total))
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
                module: super::current_module(),
                target: String::new(),
                allowed: true,
                // Until it returns: a call cut short by a panic or the
                // deadline stays so.
                outcome: "incomplete",
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
        match f.event.as_str() {
            "call" => {
                o.call.target = cap(f.args.join(" "));
                o.started = Instant::now();
                o.call.at_ms = super::since_start(o.started);
            }
            "return" => {
                o.call.ms = ms(o.started);
                // The error conversion, which runs next, says precisely
                // how a capability call failed.
                match f.error {
                    Some(e) => {
                        o.call.outcome = "error";
                        o.call.error = Some(e);
                    }
                    None => o.call.outcome = "ok",
                }
            }
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
                keep(o.call);
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
    fn formatting_stops_at_the_bound() {
        let many: Vec<u32> = (0..200_000).collect();
        let (text, cut) = bounded(&many);
        assert!(cut && text.len() <= FIELD_MAX, "{}", text.len());
        let (text, cut) = bounded(&"eth0");
        assert!(!cut && text == "\"eth0\"");
    }

    #[test]
    fn a_guest_string_is_not_rewritten() {
        let forged = "\"IpAddress::V4((1, 2, 3, 4))\"";
        assert_eq!(tidy(forged), forged);
        assert_eq!(
            tidy("Some(\"a\\\"IpAddress::V4((1, 2, 3, 4))\"), IpAddress::V4((5, 6, 7, 8))"),
            "Some(\"a\\\"IpAddress::V4((1, 2, 3, 4))\"), 5.6.7.8"
        );
        // Linear: a long run of would-be addresses costs one pass.
        let long = "IpAddress::V4((1, 2, 3, 4))".repeat(20_000);
        assert_eq!(tidy(&long).len(), "1.2.3.4".len() * 20_000);
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
