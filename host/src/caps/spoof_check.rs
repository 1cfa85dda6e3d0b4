//! `wasm-cni:plugin/spoof-check` (0.2.0): a rule that drops frames from a
//! port this call created whose source MAC is not the container's (see
//! `kernel::spoof_check`). It carries the attachment's mark, so DEL, GC and
//! a failed ADD's rollback remove it with the attachment's other rules.

use super::firewall::{FirewallCtx, finish};
use super::{CapError, CapResult};
use crate::contract::convert::{mac_from_string, mac_to_string};
use crate::contract::wasm_cni::plugin_v2::spoof_check;
use crate::grant::HostLink;
use crate::kernel::{Ns, Table};

impl spoof_check::Host for FirewallCtx {
    async fn enforce(&mut self, port: String, mac: String) -> CapResult<()> {
        crate::kernel::link::check_name(&port).map_err(CapError::invalid)?;
        // Spelled as nft reads it, whatever the guest wrote.
        let mac = mac_to_string(&mac_from_string(&mac)?);
        let st = self
            .kernel
            .link_get(Ns::Host, &port)
            .await
            .map_err(|e| CapError::io(format!("link {port} in the node's namespace"), e))?;
        {
            let s = self.shared.lock();
            let link = HostLink {
                name: &st.name,
                is_bridge: st.kind == "bridge",
                standing: s.grant.standing(&st),
            };
            s.grant.spoof_check(link)?;
        }
        // A firewall job like masquerade's, so a rollback awaits it (and
        // learns whether it created the table) even if the call is dropped
        // at the deadline while nft runs; but the guest waits for it here.
        self.shared.lock().journal.rules_added = true;
        let (kernel, owner, deadline) = (
            self.kernel.clone(),
            self.owner().to_string(),
            self.deadline(),
        );
        let shared = self.shared.clone();
        let index = st.index;
        self.start("spoof check", async move {
            if kernel.spoof_check(&owner, index, &mac, deadline).await? {
                shared.lock().journal.tables_created.push(Table::SpoofCheck);
            }
            Ok(())
        })
        .await?;
        finish(&self.shared).await.map_err(CapError::other)?;
        self.shared.lock().journal.spoof_checked.push(index);
        Ok(())
    }
}
