//! Building results.

use crate::{CniResult, Dns};

/// No DNS settings (the spec's empty `"dns": {}`).
impl Default for Dns {
    fn default() -> Self {
        Dns {
            nameservers: Vec::new(),
            domain: None,
            search: Vec::new(),
            options: Vec::new(),
        }
    }
}

/// An empty result, to fill in.
impl Default for CniResult {
    fn default() -> Self {
        CniResult {
            interfaces: Vec::new(),
            ips: Vec::new(),
            routes: Vec::new(),
            dns: Dns::default(),
        }
    }
}
