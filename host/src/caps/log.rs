//! `wasm-cni:plugin/log`: a guest's diagnostics, tagged with its name, to
//! the host's log. Never stdout.

use crate::contract::wasm_cni::plugin::log::{self, Level as WitLevel};
use crate::log::Level;

/// The longest message a guest may log in one call.
const MAX_MESSAGE: usize = 4096;
/// What a guest may log in all during one CNI call; past it, messages are
/// dropped (once said so), so a guest cannot flood the node's logs.
const MAX_TOTAL: usize = 256 << 10;

pub struct LogCtx {
    plugin: String,
    logged: usize,
}

impl LogCtx {
    pub fn new(plugin: &str) -> Self {
        LogCtx {
            plugin: plugin.to_string(),
            logged: 0,
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
        if self.logged > MAX_TOTAL {
            return Ok(());
        }
        self.logged += end;
        if self.logged > MAX_TOTAL {
            crate::log::warn(&format!(
                "[{}] logged more than {MAX_TOTAL} bytes; the rest is dropped",
                self.plugin
            ));
            return Ok(());
        }
        crate::log::emit(
            level,
            &crate::log::guest_line(&self.plugin, &message[..end]),
        );
        Ok(())
    }
}
