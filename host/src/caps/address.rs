//! `wasm-cni:plugin/address`.

use super::grant::{self, LinkOp};
use super::netns::{NamespaceHandle, NetCtx, NsKind};
use super::{CapError, CapResult};
use crate::runtime::bindings::wasm_cni::plugin::address;
use crate::runtime::bindings::wasm_cni::plugin::types::IpPrefix;
use crate::runtime::convert::{prefix_from_wit, prefix_to_wit_parts};
use wasmtime::component::Resource;

impl address::Host for NetCtx {
    async fn list(
        &mut self,
        ns: Resource<NamespaceHandle>,
        link: String,
    ) -> CapResult<Vec<IpPrefix>> {
        let kind = self.kind(&ns)?;
        let st = self.state(kind, &link).await?;
        let nl = self.netlink(kind)?;
        let addrs = nl
            .addr_list(st.index)
            .await
            .map_err(|e| CapError::io(format!("addresses of {link}"), e))?;
        Ok(addrs
            .into_iter()
            .map(|(ip, len)| prefix_to_wit_parts(ip, len))
            .collect())
    }

    async fn add(
        &mut self,
        ns: Resource<NamespaceHandle>,
        link: String,
        address: IpPrefix,
        no_dad: bool,
    ) -> CapResult<()> {
        let kind = self.kind(&ns)?;
        let net = prefix_from_wit(address)?;
        let st = self.state(kind, &link).await?;
        if kind == NsKind::Host {
            grant::check_address(self.host_link(&st), &net, self.assigned())?;
        }
        let nl = self.netlink(kind)?;
        nl.addr_add(st.index, net.ip(), net.prefix(), no_dad)
            .await
            .map_err(|e| CapError::io(format!("add {net} to {link} in the {kind}"), e))
    }

    async fn delete(
        &mut self,
        ns: Resource<NamespaceHandle>,
        link: String,
        address: IpPrefix,
    ) -> CapResult<()> {
        let kind = self.kind(&ns)?;
        let net = prefix_from_wit(address)?;
        let st = self.grant(kind, &link, LinkOp::Address).await?;
        let nl = self.netlink(kind)?;
        nl.addr_del(st.index, net.ip(), net.prefix())
            .await
            .map_err(|e| CapError::io(format!("remove {net} from {link} in the {kind}"), e))
    }
}
