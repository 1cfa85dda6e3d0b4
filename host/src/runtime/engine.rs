//! The wasmtime engine, in one of two modes. What a call may use is in
//! `limits`.
//!
//! - **Native**: Cranelift compiles a module to machine code once (the
//!   cache keeps it); loading maps that code executable.
//! - **Interpreter**: Cranelift compiles to Pulley bytecode, which
//!   wasmtime's interpreter runs. Nothing is ever mapped executable, so the
//!   process works where the kernel refuses memory that gains execute
//!   permission (`PR_SET_MDWE`, systemd's `MemoryDenyWriteExecute`), and a
//!   bug in the compiler or the loader cannot become native code in a root
//!   process. It costs guest time (see README, "Hardening").
//!
//! Both kinds of artifact live side by side in the cache: the engine's
//! compatibility hash (part of every cache key) differs by target.

use crate::policy::EngineChoice;
use std::time::Duration;
use wasmtime::{Config, Engine};

/// Fuel per guest call by default (the policy's `guestFuel`): roughly that
/// many wasm instructions. A plugin does its work in well under a million;
/// a loop that never ends traps instead of hanging the container runtime.
pub const FUEL: u64 = 2_000_000_000;

/// How often a running guest looks at the clock (through wasmtime's epoch):
/// a guest that computes without calling the host is stopped this long
/// after its deadline at most, whatever its fuel says (the interpreter
/// burns fuel far slower than native code).
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Native,
    Interpreter,
}

impl EngineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Native => "native",
            EngineKind::Interpreter => "interpreter",
        }
    }

    pub const ALL: [EngineKind; 2] = [EngineKind::Native, EngineKind::Interpreter];
}

/// The engine for this process: the policy's choice, and the interpreter
/// whenever memory may not gain execute permission here (native code could
/// not even be loaded then): the kernel's MDWE, or a seccomp filter that
/// does the same (systemd's `MemoryDenyWriteExecute=` before it used MDWE,
/// as in Debian 12's systemd 252), which only trying tells.
pub fn choose(policy: EngineChoice) -> EngineKind {
    let mdwe = policy != EngineChoice::Interpreter && !native_code_allowed();
    match policy {
        EngineChoice::Interpreter => EngineKind::Interpreter,
        _ if mdwe => {
            if policy == EngineChoice::Native {
                crate::log::warn(
                    "the node policy asks for native code, but memory may not become executable here (MDWE or a seccomp filter): using the interpreter",
                );
            }
            EngineKind::Interpreter
        }
        EngineChoice::Auto | EngineChoice::Native => EngineKind::Native,
    }
}

/// Whether native code could be loaded here: neither MDWE nor a filter
/// refuses memory gaining execute permission.
pub fn native_code_allowed() -> bool {
    !mdwe_in_force() && can_gain_exec()
}

/// Whether this process may not map memory that gains execute permission:
/// `PR_GET_MDWE` reports `PR_MDWE_REFUSE_EXEC_GAIN` (kernel 6.3+; older
/// ones answer EINVAL, and have no MDWE).
pub fn mdwe_in_force() -> bool {
    const PR_GET_MDWE: libc::c_int = 66;
    const PR_MDWE_REFUSE_EXEC_GAIN: libc::c_int = 1;
    // Written by hand: rustix has no MDWE calls. SAFETY: PR_GET_MDWE takes
    // no pointers; the unused arguments must be zero.
    let flags = unsafe { libc::prctl(PR_GET_MDWE, 0, 0, 0, 0) };
    flags > 0 && flags & PR_MDWE_REFUSE_EXEC_GAIN != 0
}

/// Whether a page written to may then be made executable, as loading
/// native code does: a private anonymous page, mapped read-write, then
/// asked to become read-execute.
pub fn can_gain_exec() -> bool {
    const PAGE: usize = 4096;
    // SAFETY: a fresh anonymous mapping of our own, unmapped before return;
    // nothing is ever executed from it.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return false;
        }
        let ok = libc::mprotect(p, PAGE, libc::PROT_READ | libc::PROT_EXEC) == 0;
        libc::munmap(p, PAGE);
        ok
    }
}

pub fn new_engine(kind: EngineKind) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Fuel and epochs change the generated code, so they are part of the
    // engine's compatibility hash and of every cache key.
    config.consume_fuel(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(1 << 20);
    if kind == EngineKind::Interpreter {
        config.target(if cfg!(target_pointer_width = "64") {
            "pulley64"
        } else {
            "pulley32"
        })?;
    }
    Engine::new(&config)
}

/// Advance `engine`'s epoch every [`EPOCH_TICK`] while the engine lives;
/// each store decides at each tick whether its deadline has passed
/// (`limits`). Started once per engine, when guests are about to run (so
/// the thread is born under the call's seccomp filter).
pub fn start_epoch_clock(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("wasm-cni-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(e) => e.increment_epoch(),
                    None => break,
                }
            }
        });
    if let Err(e) = spawned {
        // Fuel still bounds a guest's computing.
        crate::log::warn(&format!("cannot start the epoch clock: {e}"));
    }
}
