//! `wasm-cni:plugin/route`.

use super::netns::NetCtx;
use super::{CapError, CapResult};
use crate::contract::NamespaceHandle;
use crate::contract::convert::{ip_from_wit, ip_to_wit, prefix_from_wit, prefix_to_wit_parts};
use crate::contract::wasm_cni::plugin::route::{self, RouteEntry};
use crate::kernel::Ns;
use crate::kernel::route::{RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, RT_TABLE_MAIN, RouteSpec};
use std::collections::HashMap;
use wasmtime::component::Resource;

impl NetCtx {
    /// A guest's route as the kernel takes it, if the grant allows the
    /// change (`creates`: adding it).
    async fn route_spec(&mut self, kind: Ns, r: RouteEntry, creates: bool) -> CapResult<RouteSpec> {
        let dst = prefix_from_wit(r.dst)?;
        self.shared.lock().grant.change_route(kind, &dst, creates)?;
        let gw = r.gw.map(ip_from_wit);
        if gw.is_some_and(|g| g.is_ipv4() != dst.is_ipv4()) {
            return Err(CapError::invalid(format!(
                "route to {dst}: gateway of the other family"
            )));
        }
        let oif = match &r.link {
            Some(name) => Some(self.state(kind, name).await?.index),
            None => None,
        };
        // Network address as the kernel stores it (host bits cleared).
        let scope = r.scope.unwrap_or(if gw.is_none() && oif.is_some() {
            RT_SCOPE_LINK
        } else {
            RT_SCOPE_UNIVERSE
        });
        Ok(RouteSpec {
            unicast: true,
            dst: dst.network(),
            dst_len: dst.prefix(),
            gw,
            oif,
            priority: r.priority,
            mtu: r.mtu,
            advmss: r.advmss,
            table: r.table.unwrap_or(RT_TABLE_MAIN),
            scope,
        })
    }
}

impl route::Host for NetCtx {
    async fn list(
        &mut self,
        ns: Resource<NamespaceHandle>,
        table: Option<u32>,
    ) -> CapResult<Vec<RouteEntry>> {
        let kind = self.kind(&ns)?;
        let routes = self
            .kernel
            .route_list(kind, Some(table.unwrap_or(RT_TABLE_MAIN)))
            .await
            .map_err(|e| CapError::io(format!("list routes in the {kind}"), e))?;
        let names: HashMap<u32, String> = self
            .kernel
            .link_list(kind)
            .await
            .map_err(|e| CapError::io(format!("list links in the {kind}"), e))?
            .into_iter()
            .map(|l| (l.index, l.name))
            .collect();
        Ok(routes
            .into_iter()
            .filter(|r| r.unicast)
            .map(|r| RouteEntry {
                dst: prefix_to_wit_parts(r.dst, r.dst_len),
                gw: r.gw.map(ip_to_wit),
                link: r.oif.and_then(|i| names.get(&i).cloned()),
                priority: r.priority,
                mtu: r.mtu,
                advmss: r.advmss,
                table: Some(r.table),
                scope: Some(r.scope),
            })
            .collect())
    }

    async fn add(&mut self, ns: Resource<NamespaceHandle>, route: RouteEntry) -> CapResult<()> {
        let kind = self.kind(&ns)?;
        let spec = self.route_spec(kind, route, true).await?;
        self.kernel.route_add(kind, &spec).await.map_err(|e| {
            CapError::io(
                format!("add route {}/{} in the {kind}", spec.dst, spec.dst_len),
                e,
            )
        })
    }

    async fn delete(&mut self, ns: Resource<NamespaceHandle>, route: RouteEntry) -> CapResult<()> {
        let kind = self.kind(&ns)?;
        let spec = self.route_spec(kind, route, false).await?;
        self.kernel.route_del(kind, &spec).await.map_err(|e| {
            CapError::io(
                format!("delete route {}/{} in the {kind}", spec.dst, spec.dst_len),
                e,
            )
        })
    }
}
