//! The wasmtime engine. What a call may use is in `limits`.

use wasmtime::{Config, Engine};

/// Fuel per guest call: roughly that many wasm instructions. A plugin does
/// its work in well under a million; a loop that never ends traps instead
/// of hanging the container runtime.
pub const FUEL: u64 = 2_000_000_000;

pub fn new_engine() -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Fuel changes the generated code, so it is part of the engine's
    // compatibility hash and of every cache key.
    config.consume_fuel(true);
    config.max_wasm_stack(1 << 20);
    Engine::new(&config)
}
