//! `wasm-cni:plugin/log`: a guest's diagnostics, tagged with its name, to
//! the host's log. Never stdout.

use crate::log::Level;
use crate::runtime::bindings::wasm_cni::plugin::log::{self, Level as WitLevel};

/// The longest message a guest may log in one call.
const MAX_MESSAGE: usize = 4096;

pub struct LogCtx {
    plugin: String,
}

impl LogCtx {
    pub fn new(plugin: &str) -> Self {
        LogCtx {
            plugin: plugin.to_string(),
        }
    }
}

impl log::Host for LogCtx {
    async fn log(&mut self, level: WitLevel, message: String) -> wasmtime::Result<()> {
        let level = match level {
            WitLevel::Error => Level::Error,
            WitLevel::Warn => Level::Warn,
            WitLevel::Info => Level::Info,
            WitLevel::Debug => Level::Debug,
        };
        let mut end = message.len().min(MAX_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        crate::log::emit(level, &format!("[{}] {}", self.plugin, &message[..end]));
        Ok(())
    }
}
