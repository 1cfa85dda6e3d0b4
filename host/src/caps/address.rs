//! `wasm-cni:plugin/address`.

use super::netns::NetCtx;
use super::{CapError, CapResult};
use crate::contract::NamespaceHandle;
use crate::contract::convert::{prefix_from_wit, prefix_to_wit};
use crate::contract::wasm_cni::plugin::address;
use crate::contract::wasm_cni::plugin::types::IpPrefix;
use crate::grant::{NodeAddress, NodeRoute, Standing};
use crate::kernel::Ns;
use crate::undo::Change;
use ipnetwork::IpNetwork;
use std::collections::HashMap;
use wasmtime::component::Resource;

impl NetCtx {
    /// Every route of the node's, in every table.
    async fn node_routes(&self) -> CapResult<Vec<NodeRoute>> {
        let routes = self
            .kernel
            .route_list(Ns::Host, None)
            .await
            .map_err(|e| CapError::io("routes in the node's namespace", e))?;
        Ok(routes
            .into_iter()
            .filter_map(|r| {
                Some(NodeRoute {
                    dst: IpNetwork::new(r.dst, r.dst_len).ok()?,
                    oif: r.oif,
                    table: r.table,
                })
            })
            .collect())
    }

    /// A gateway routes its subnet through this network's bridge: refused
    /// when another network already masquerades an address in it (a rule
    /// made while no route said whose the address was, which would then
    /// rewrite this network's traffic).
    async fn no_other_networks_masquerade(&self, net: &IpNetwork) -> CapResult<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let rules = self
            .kernel
            .masquerade_rules(deadline)
            .await
            .map_err(|e| CapError::io("masquerade rules", e))?;
        let ours = crate::kernel::nft::network_prefix(self.shared.lock().grant.network());
        let subnet = IpNetwork::new(net.network(), net.prefix()).expect("a prefix that fit");
        match rules
            .iter()
            .find(|(comment, a)| subnet.contains(a.ip()) && !comment.starts_with(&ours))
        {
            Some((comment, a)) => Err(CapError::denied(format!(
                "address {net}: the node masquerades {a} in its subnet for another attachment ({comment:?})"
            ))),
            None => Ok(()),
        }
    }

    /// Every address on the node's links, with the links' names.
    async fn node_addresses(&self) -> CapResult<Vec<NodeAddress>> {
        let io = |e| CapError::io("addresses in the node's namespace", e);
        let names: HashMap<u32, String> = self
            .kernel
            .link_list(Ns::Host)
            .await
            .map_err(io)?
            .into_iter()
            .map(|l| (l.index, l.name))
            .collect();
        let addresses = self
            .kernel
            .addr_list(Ns::Host, None)
            .await
            .map_err(io)?
            .into_iter()
            .map(|(index, address)| NodeAddress {
                index,
                link: names.get(&index).cloned().unwrap_or_default(),
                address,
            })
            .collect();
        Ok(addresses)
    }
}

impl address::Host for NetCtx {
    async fn list(
        &mut self,
        ns: Resource<NamespaceHandle>,
        link: String,
    ) -> CapResult<Vec<IpPrefix>> {
        let ns = self.kind(&ns)?;
        let st = self.state(ns, &link).await?;
        let addrs = self
            .kernel
            .addr_list(ns, Some(st.index))
            .await
            .map_err(|e| CapError::io(format!("addresses of {link}"), e))?;
        Ok(addrs.into_iter().map(|(_, a)| prefix_to_wit(a)).collect())
    }

    async fn add(
        &mut self,
        ns: Resource<NamespaceHandle>,
        link: String,
        address: IpPrefix,
        no_dad: bool,
    ) -> CapResult<()> {
        let ns = self.kind(&ns)?;
        let net = prefix_from_wit(address)?;
        let st = self.state(ns, &link).await?;
        let host_link = self.host_link(ns, &st).await?;
        let mut journaled = false;
        if ns == Ns::Host {
            let node = self.node_addresses().await?;
            let routes = self.node_routes().await?;
            self.shared
                .lock()
                .grant
                .add_address(ns, host_link, st.index, &net, &node, &routes)?;
            let present = node.iter().any(|n| n.index == st.index && n.address == net);
            if !present {
                self.no_other_networks_masquerade(&net).await?;
            }
            // Journaled before the kernel call, and only when it is not
            // there already: rollback must never take away an address the
            // call did not add.
            if matches!(
                host_link.standing,
                Standing::GrantedBridge | Standing::VlanGateway
            ) && !present
            {
                self.shared.lock().journal.changed(Change::AddressAdded {
                    index: st.index,
                    addr: net,
                });
                journaled = true;
            }
        } else {
            self.shared
                .lock()
                .grant
                .add_address(ns, host_link, st.index, &net, &[], &[])?;
        }
        let added = self.kernel.addr_add(ns, st.index, net, no_dad).await;
        if added.is_err() && journaled {
            // Refused (someone else added it meanwhile, or the kernel said
            // no): not this call's to remove.
            self.shared.lock().journal.changes.retain(|c| {
                !matches!(c, Change::AddressAdded { index, addr, .. } if *index == st.index && *addr == net)
            });
        }
        added.map_err(|e| CapError::io(format!("add {net} to {link} in the {ns}"), e))?;
        crate::fault::point("address.add");
        crate::fault::injected("address.add").map_err(|e| CapError::io("test fault", e))?;
        Ok(())
    }

    async fn delete(
        &mut self,
        ns: Resource<NamespaceHandle>,
        link: String,
        address: IpPrefix,
    ) -> CapResult<()> {
        let ns = self.kind(&ns)?;
        let net = prefix_from_wit(address)?;
        let st = self.state(ns, &link).await?;
        let host_link = self.host_link(ns, &st).await?;
        self.shared
            .lock()
            .grant
            .remove_address(ns, host_link, &net)?;
        if ns == Ns::Host
            && matches!(
                host_link.standing,
                Standing::GrantedBridge | Standing::VlanGateway
            )
        {
            let present = self
                .kernel
                .addr_list(ns, Some(st.index))
                .await
                .map_err(|e| CapError::io(format!("addresses of {link}"), e))?
                .iter()
                .any(|(_, a)| *a == net);
            if !present {
                return Err(CapError::not_found(format!("{net} is not on {link}")));
            }
            self.shared.lock().journal.changed(Change::AddressRemoved {
                index: st.index,
                addr: net,
            });
        }
        self.kernel
            .addr_del(ns, st.index, net)
            .await
            .map_err(|e| CapError::io(format!("remove {net} from {link} in the {ns}"), e))
    }
}
