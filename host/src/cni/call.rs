//! One CNI invocation: what the runtime asked for, parsed and validated.

use super::{CniEnv, NetConf};

#[derive(Debug, Clone)]
pub struct Call {
    pub env: CniEnv,
    pub conf: NetConf,
}
