//! `wasm-cni:plugin/log`: a guest's diagnostics, tagged with its name, to
//! the host's log. Never stdout. Bounded per call (`limits`), together with
//! what guests print.

use crate::contract::wasm_cni::plugin::log::{self, Level as WitLevel};
use crate::limits::{CallLimits, MAX_LOG_BYTES};
use crate::log::Level;
use std::sync::Arc;

/// The longest message a guest may log in one call.
const MAX_MESSAGE: usize = 4096;

pub struct LogCtx {
    plugin: String,
    limits: Arc<CallLimits>,
}

impl LogCtx {
    pub fn new(plugin: &str, limits: &Arc<CallLimits>) -> Self {
        LogCtx {
            plugin: plugin.to_string(),
            limits: limits.clone(),
        }
    }
}

/// Log `text` as `plugin`'s, if the call's log budget has room.
pub fn guest_log(limits: &CallLimits, plugin: &str, level: Level, text: &str) {
    match limits.log(text.len()) {
        Ok(()) => crate::log::emit(level, &crate::log::guest_line(plugin, text)),
        Err(true) => crate::log::warn(&format!(
            "[{plugin}] the plugins of this call logged more than {MAX_LOG_BYTES} bytes; the rest is dropped"
        )),
        Err(false) => {}
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
        guest_log(&self.limits, &self.plugin, level, &message[..end]);
        Ok(())
    }
}
