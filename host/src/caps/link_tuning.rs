//! `wasm-cni:plugin/link-tuning` (0.2.0): all-multicast and the transmit
//! queue's length, and one read of every setting `tuning` changes. The
//! grant is `link`'s: anything in the container; on the node, links this
//! call created (and the settings a granted bridge allows: none of these).

use super::CapResult;
use super::netns::NetCtx;
use crate::contract::NamespaceHandle;
use crate::contract::wasm_cni::plugin_v2::link_tuning::{self, Settings};
use crate::grant::LinkOp;
use crate::kernel::link::LinkChange;
use wasmtime::component::Resource;

impl link_tuning::Host for NetCtx {
    async fn settings_of(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
    ) -> CapResult<Settings> {
        let ns = self.kind(&ns)?;
        let st = self.state(ns, &name).await?;
        Ok(Settings {
            mac: crate::contract::convert::mac_to_string(&st.mac),
            mtu: st.mtu,
            promiscuous: st.promiscuous,
            allmulti: st.allmulti,
            txqlen: st.txqlen,
        })
    }

    async fn set_allmulti(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        on: bool,
    ) -> CapResult<()> {
        self.change_link(ns, name, LinkOp::AllMulti, LinkChange::AllMulti(on))
            .await
    }

    async fn set_txqlen(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        len: u32,
    ) -> CapResult<()> {
        self.change_link(ns, name, LinkOp::TxQLen, LinkChange::TxQLen(len))
            .await
    }
}
