//! `wasm-cni:plugin/sysctl`.

use super::netns::NetCtx;
use super::{CapError, CapResult};
use crate::contract::NamespaceHandle;
use crate::contract::wasm_cni::plugin::sysctl;
use crate::grant::{HostLink, Phase, Standing};
use crate::kernel::Ns;
use crate::kernel::sysctl::SysctlKey;
use crate::undo::{Change, ContainerChange};
use wasmtime::component::Resource;

fn key(k: &str) -> CapResult<SysctlKey> {
    SysctlKey::parse(k).map_err(CapError::invalid)
}

impl sysctl::Host for NetCtx {
    async fn get(&mut self, ns: Resource<NamespaceHandle>, k: String) -> CapResult<String> {
        let ns = self.kind(&ns)?;
        let key = key(&k)?;
        self.kernel
            .sysctl_read(ns, &key)
            .await
            .map_err(|e| CapError::io(format!("read sysctl {key} in the {ns}"), e))
    }

    async fn set(
        &mut self,
        ns: Resource<NamespaceHandle>,
        k: String,
        value: String,
    ) -> CapResult<()> {
        let ns = self.kind(&ns)?;
        let key = key(&k)?;
        if value.contains('\n') || value.len() > 256 {
            return Err(CapError::invalid(format!("value for sysctl {key}")));
        }
        // The one link a `conf.<link>` key names: its standing, and (for a
        // bridge that existed before) the value to put back on rollback.
        let link = match (ns, key.conf_link()) {
            (Ns::Host, Some(dev)) => Some(self.state(ns, dev).await?),
            _ => None,
        };
        let standing = match &link {
            Some(l) => Some(self.standing(ns, l).await?),
            None => None,
        };
        let host_link = link.as_ref().zip(standing).map(|(l, standing)| HostLink {
            name: &l.name,
            is_bridge: l.kind == "bridge",
            standing,
        });
        self.shared
            .lock()
            .grant
            .write_sysctl(ns, &key, &value, host_link)?;
        // In the container, during an ADD, what it was, to put back if
        // the ADD fails (a key that cannot be read cannot be written
        // either); not for a link this call made, which a failed ADD
        // deletes anyway (one read less per key `bridge` sets).
        let keep_prior = ns == Ns::Container && {
            let s = self.shared.lock();
            s.grant.phase() == Phase::Add
                && !key
                    .conf_link()
                    .is_some_and(|dev| s.journal.made_in_container(dev))
        };
        if keep_prior && let Ok(prior) = self.kernel.sysctl_read(ns, &key).await {
            self.shared
                .lock()
                .journal
                .container_changes
                .push(ContainerChange::Sysctl {
                    key: key.clone(),
                    prior,
                });
        }
        if let (Some(l), Some(Standing::GrantedBridge)) = (&link, standing) {
            let prior = self
                .kernel
                .sysctl_read(ns, &key)
                .await
                .map_err(|e| CapError::io(format!("read sysctl {key}"), e))?;
            self.shared.lock().journal.changed(Change::Sysctl {
                index: l.index,
                key: key.clone(),
                prior,
            });
        }
        self.kernel
            .sysctl_write(ns, &key, &value)
            .await
            .map_err(|e| CapError::io(format!("write sysctl {key} in the {ns}"), e))
    }
}
