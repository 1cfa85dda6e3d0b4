//! `wasm-cni:plugin/sysctl`.

use super::grant::{self, HostLink};
use super::netns::{NamespaceHandle, NetCtx, NsKind};
use super::{CapError, CapResult};
use crate::kernel::sysctl::{self as kernel, SysctlKey};
use crate::runtime::bindings::wasm_cni::plugin::sysctl;
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
            // The policy needs the link a `conf.<link>` key names: that one
            // link, not a dump of the node's (this runs on every ADD).
            let link = match key.conf_link() {
                Some(dev) => self.state(NsKind::Host, dev).await.ok(),
                None => None,
            };
            grant::check_sysctl_write(&key, &value, |dev| {
                link.as_ref().filter(|l| l.name == dev).map(|l| HostLink {
                    name: dev,
                    is_bridge: l.kind == "bridge",
                    standing: self.standing(l),
                })
            })?;
        }
        kernel::write(self.netns(kind), &key, &value)
            .map_err(|e| CapError::io(format!("write sysctl {key} in the {kind}"), e))
    }
}
