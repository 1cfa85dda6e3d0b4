//! `wasm-cni:plugin/sysctl`.

use super::grant::{self, HostLink, Standing};
use super::netns::{NamespaceHandle, NetCtx, NsKind};
use super::{CapError, CapResult};
use crate::kernel::sysctl::{self as kernel, SysctlKey};
use crate::runtime::bindings::wasm_cni::plugin::sysctl;
use std::collections::HashMap;
use wasmtime::component::Resource;

fn key(k: &str) -> CapResult<SysctlKey> {
    SysctlKey::parse(k).map_err(CapError::invalid)
}

impl sysctl::Host for NetCtx {
    async fn get(&mut self, ns: Resource<NamespaceHandle>, k: String) -> CapResult<String> {
        let kind = self.kind(&ns)?;
        let key = key(&k)?;
        kernel::read(self.netns(kind), &key)
            .map_err(|e| CapError::io(format!("read sysctl {key} in the {kind}"), e))
    }

    async fn set(
        &mut self,
        ns: Resource<NamespaceHandle>,
        k: String,
        value: String,
    ) -> CapResult<()> {
        let kind = self.kind(&ns)?;
        let key = key(&k)?;
        if value.contains('\n') || value.len() > 256 {
            return Err(CapError::invalid(format!("value for sysctl {key}")));
        }
        if kind == NsKind::Host {
            // The policy needs to know what a `conf.<link>` key's link is.
            let nl = self.netlink(NsKind::Host)?;
            let links = nl
                .link_list()
                .await
                .map_err(|e| CapError::io("list host links", e))?;
            let known: HashMap<String, (bool, Standing)> = links
                .into_iter()
                .map(|l| (l.name.clone(), (l.kind == "bridge", self.standing(&l))))
                .collect();
            grant::check_sysctl_write(&key, &value, |dev| {
                known.get(dev).map(|&(is_bridge, standing)| HostLink {
                    name: dev,
                    is_bridge,
                    standing,
                })
            })?;
        }
        kernel::write(self.netns(kind), &key, &value)
            .map_err(|e| CapError::io(format!("write sysctl {key} in the {kind}"), e))
    }
}
