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
    /// Every route of the node's of one family (`v6`), in every table.
    async fn node_routes(&self, v6: bool) -> CapResult<Vec<NodeRoute>> {
        let routes = self
            .kernel
            .route_list_of(Ns::Host, v6)
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
        let network = self.shared.lock().grant.network().to_string();
        let subnet = IpNetwork::new(net.network(), net.prefix()).expect("a prefix that fit");
        match rules.iter().find(|(comment, a)| {
            subnet.contains(a.ip()) && !crate::kernel::nft::of_network(comment, &network)
        }) {
            Some((comment, a)) => Err(CapError::denied(format!(
                "address {net}: the node masquerades {a} in its subnet for another attachment ({comment:?})"
            ))),
            None => Ok(()),
        }
    }

    /// Every address of one family (`v6`) on the node's links, with the
    /// links' names (looked up for those links only: a node may have
    /// thousands of links, few with addresses of a family).
    async fn node_addresses(&self, v6: bool) -> CapResult<Vec<NodeAddress>> {
        let io = |e| CapError::io("addresses in the node's namespace", e);
        let listed = self.kernel.addr_list_of(Ns::Host, v6).await.map_err(io)?;
        let mut names: HashMap<u32, String> = HashMap::new();
        let mut addresses = Vec::with_capacity(listed.len());
        for (index, address) in listed {
            let link = match names.get(&index) {
                Some(name) => name.clone(),
                None => match self.kernel.link_get_index(Ns::Host, index).await {
                    Ok(l) => names.entry(index).or_insert(l.name).clone(),
                    // Gone since the listing: its addresses went with it.
                    Err(e) if e.raw_os_error() == Some(libc::ENODEV) => continue,
                    Err(e) => return Err(io(e)),
                },
            };
            addresses.push(NodeAddress {
                index,
                link,
                address,
            });
        }
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
            let node = self.node_addresses(net.is_ipv6()).await?;
            let routes = self.node_routes(net.is_ipv6()).await?;
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
