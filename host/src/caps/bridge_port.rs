//! `wasm-cni:plugin/bridge-port` (0.2.0): VLAN filtering, port VLANs and
//! isolation, and the mark of a VLAN's gateway interface. The grant's
//! rows: filtering only on a bridge this call created (on a bridge others
//! use it would cut their pods off), VLANs and isolation only on ports it
//! created, a mark only on a `<bridge>.<vid>` veth it created for a
//! bridge granted to the network (see `grant`).

use super::netns::NetCtx;
use super::{CapError, CapResult};
use crate::contract::NamespaceHandle;
use crate::contract::wasm_cni::plugin_v2::bridge_port::{self, Vlan};
use crate::grant::LinkOp;
use crate::kernel::Ns;
use crate::kernel::link::{LinkChange, PortVlan};
use wasmtime::component::Resource;

/// The VLAN ids a port may carry (0 and 4095 are reserved).
const VIDS: std::ops::RangeInclusive<u16> = 1..=4094;

fn port_vlan(v: &Vlan) -> CapResult<PortVlan> {
    let end = v.vid_end.filter(|e| *e != v.vid);
    if !VIDS.contains(&v.vid) || end.is_some_and(|e| !VIDS.contains(&e) || e < v.vid) {
        return Err(CapError::invalid(format!(
            "VLAN {}{}: ids are 1 to 4094, a range ascending",
            v.vid,
            end.map(|e| format!("-{e}")).unwrap_or_default()
        )));
    }
    if end.is_some() && v.pvid {
        return Err(CapError::invalid("a range of VLANs cannot be the PVID"));
    }
    Ok(PortVlan {
        vid: v.vid,
        end,
        pvid: v.pvid,
        untagged: v.untagged,
    })
}

impl NetCtx {
    /// A port's VLANs changed, after the grant allowed it.
    async fn port_vlans_change(
        &mut self,
        ns: Resource<NamespaceHandle>,
        port: String,
        add: bool,
        vlan: PortVlan,
    ) -> CapResult<()> {
        let ns = self.kind(&ns)?;
        let st = self.state(ns, &port).await?;
        let link = self.host_link(ns, &st).await?;
        self.shared
            .lock()
            .grant
            .change_link(ns, link, LinkOp::Vlans)?;
        let r = self.kernel.port_vlan_change(ns, st.index, add, vlan).await;
        match r {
            // Removing what is not there is done.
            Err(e) if !add && e.raw_os_error() == Some(libc_enoent()) => Ok(()),
            r => r.map_err(|e| vlan_error(format!("VLANs of {port} in the {ns}"), e)),
        }
    }
}

fn libc_enoent() -> i32 {
    rustix::io::Errno::NOENT.raw_os_error()
}

/// A kernel built without bridge VLAN filtering answers EOPNOTSUPP to
/// every VLAN request: say so, so the operator knows it is the kernel.
fn vlan_error(what: String, e: std::io::Error) -> CapError {
    if e.raw_os_error() == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error()) {
        return CapError::other(format!(
            "{what}: this kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING is off)"
        ));
    }
    CapError::io(what, e)
}

impl bridge_port::Host for NetCtx {
    async fn promiscuous(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
    ) -> CapResult<bool> {
        let ns = self.kind(&ns)?;
        Ok(self.state(ns, &name).await?.promiscuous)
    }

    async fn vlan_filtering(
        &mut self,
        ns: Resource<NamespaceHandle>,
        bridge: String,
    ) -> CapResult<bool> {
        let ns = self.kind(&ns)?;
        let st = self.state(ns, &bridge).await?;
        if st.kind != "bridge" {
            return Err(CapError::invalid(format!("{bridge:?} is not a bridge")));
        }
        Ok(st.vlan_filtering.unwrap_or(false))
    }

    async fn set_vlan_filtering(
        &mut self,
        ns: Resource<NamespaceHandle>,
        bridge: String,
        on: bool,
    ) -> CapResult<()> {
        let kind = self.kind(&ns)?;
        let st = self.state(kind, &bridge).await?;
        if st.kind != "bridge" {
            return Err(CapError::invalid(format!("{bridge:?} is not a bridge")));
        }
        self.change_link_or(
            ns,
            bridge,
            LinkOp::VlanFiltering,
            LinkChange::VlanFiltering(on),
            vlan_error,
        )
        .await
    }

    async fn add_vlan(
        &mut self,
        ns: Resource<NamespaceHandle>,
        port: String,
        vlan: Vlan,
    ) -> CapResult<()> {
        let v = port_vlan(&vlan)?;
        self.port_vlans_change(ns, port, true, v).await
    }

    async fn del_vlan(
        &mut self,
        ns: Resource<NamespaceHandle>,
        port: String,
        vid: u16,
        vid_end: Option<u16>,
    ) -> CapResult<()> {
        let v = port_vlan(&Vlan {
            vid,
            vid_end,
            pvid: false,
            untagged: false,
        })?;
        self.port_vlans_change(ns, port, false, v).await
    }

    async fn vlans(&mut self, ns: Resource<NamespaceHandle>, port: String) -> CapResult<Vec<Vlan>> {
        let ns = self.kind(&ns)?;
        let st = self.state(ns, &port).await?;
        let vlans = self
            .kernel
            .port_vlans(ns, st.index)
            .await
            .map_err(|e| vlan_error(format!("VLANs of {port} in the {ns}"), e))?;
        Ok(vlans
            .into_iter()
            .map(|v| Vlan {
                vid: v.vid,
                vid_end: v.end,
                pvid: v.pvid,
                untagged: v.untagged,
            })
            .collect())
    }

    async fn isolated(&mut self, ns: Resource<NamespaceHandle>, port: String) -> CapResult<bool> {
        let ns = self.kind(&ns)?;
        Ok(self.state(ns, &port).await?.isolated.unwrap_or(false))
    }

    async fn set_isolated(
        &mut self,
        ns: Resource<NamespaceHandle>,
        port: String,
        on: bool,
    ) -> CapResult<()> {
        self.change_link(ns, port, LinkOp::Isolated, LinkChange::Isolated(on))
            .await
    }

    async fn mark_vlan_gateway(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
    ) -> CapResult<()> {
        let ns = self.kind(&ns)?;
        if ns != Ns::Host {
            return Err(CapError::invalid(
                "a VLAN gateway interface lives in the node's namespace",
            ));
        }
        let st = self.state(ns, &name).await?;
        let link = self.host_link(ns, &st).await?;
        let bridge_name = crate::grant::vlan_gateway_name(&name).map(|(b, _)| b.to_string());
        let bridge = match &bridge_name {
            Some(b) => self.state(ns, b).await.ok(),
            None => None,
        };
        let bridge_link = match &bridge {
            Some(b) => Some(self.host_link(ns, b).await?),
            None => None,
        };
        // Its peer: in this namespace, made by this call, a port of the
        // bridge.
        let peer = match (st.peer, st.peer_elsewhere) {
            (Some(p), false) if p != st.index => self.kernel.link_get_index(ns, p).await.ok(),
            _ => None,
        };
        let peer_on_bridge = match (&peer, &bridge) {
            (Some(p), Some(b)) => {
                p.master == Some(b.index) && self.shared.lock().grant.created(Ns::Host, p.index)
            }
            _ => false,
        };
        let mark = {
            let s = self.shared.lock();
            s.grant
                .mark_vlan_gateway(link, &st.kind, bridge_link, peer_on_bridge)?;
            crate::owner::bridge_mark(s.grant.network())
        };
        self.kernel
            .link_set(ns, st.index, LinkChange::Alias(mark))
            .await
            .map_err(|e| CapError::io(format!("mark {name}"), e))?;
        if let Some(peer) = &peer {
            self.shared
                .lock()
                .journal
                .vlan_gateways
                .push((st.index, peer.index));
        }
        Ok(())
    }
}
