//! The wasmtime engine and the limits every guest runs under.

use wasmtime::{Config, Engine};

/// Fuel per guest call: roughly that many wasm instructions. A plugin does
/// its work in well under a million; a loop that never ends traps instead
/// of hanging the container runtime.
pub const FUEL: u64 = 2_000_000_000;
/// Linear memory a guest may grow to.
pub const MAX_MEMORY: usize = 64 << 20;
/// Instances, tables and memories per store: a component is a handful.
pub const MAX_INSTANCES: usize = 32;
/// Elements per table (function references): a Rust plugin uses a few
/// hundred, and every element is host memory the memory limit does not see.
pub const MAX_TABLE_ELEMENTS: usize = 10_000;

pub fn new_engine() -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Fuel changes the generated code, so it is part of the engine's
    // compatibility hash and of every cache key.
    config.consume_fuel(true);
    config.max_wasm_stack(1 << 20);
    Engine::new(&config)
}
