//! `wasm-cni:plugin/netns`, and the context every network capability
//! shares: the node, the call's grant and journal, and the standing of the
//! node links it has looked at.

use super::{CapError, CapResult, Shared};
use crate::contract::NamespaceHandle;
use crate::contract::wasm_cni::plugin::netns;
use crate::grant::{HostLink, Standing};
use crate::kernel::link::LinkState;
use crate::kernel::{Kernel, Ns};
use std::io;
use std::sync::Arc;
use wasmtime::component::Resource;

const HOST_REP: u32 = 0;
const CONTAINER_REP: u32 = 1;

pub struct NetCtx {
    pub(crate) kernel: Arc<dyn Kernel>,
    pub(crate) shared: Shared,
    /// `CNI_NETNS`, for messages.
    netns_path: String,
}

/// Why the container namespace cannot be used. For a guest a path that is
/// no namespace is a namespace that is gone (`not-found`): a torn-down
/// sandbox often leaves its path behind as a plain file, and a DEL must
/// still release everything (the reference fails there). ADD and CHECK
/// refuse it before any guest code runs.
pub fn container_error(path: &str, e: &io::Error) -> CapError {
    match e.kind() {
        io::ErrorKind::NotFound => CapError::not_found(format!("CNI_NETNS {path}: {e}")),
        io::ErrorKind::InvalidInput => CapError::not_found(format!(
            "CNI_NETNS {path} is not a usable network namespace: {e}"
        )),
        _ => CapError::io(
            format!("CNI_NETNS {path}"),
            io::Error::new(e.kind(), e.to_string()),
        ),
    }
}

/// Why `CNI_NETNS` cannot serve as the container namespace.
#[derive(Debug)]
pub enum ContainerNs {
    /// Missing, not a network namespace, or unreadable.
    Unusable(CapError),
    /// The namespace the plugin runs in: the node's.
    Node(String),
}

/// The check `run_interface` makes before any guest code, made earlier
/// and without the async runtime: before the call creates anything on the
/// node (its store and lock directories), a call that will be refused
/// anyway must not.
pub fn check_before_anything(path: &std::path::Path) -> Result<(), ContainerNs> {
    use crate::kernel::netns::Netns;
    let shown = path.display().to_string();
    let ns = Netns::open(path).map_err(|e| ContainerNs::Unusable(container_error(&shown, &e)))?;
    if Netns::current().is_ok_and(|me| me.id() == ns.id()) {
        return Err(ContainerNs::Node(format!(
            "plugin's netns and netns from CNI_NETNS should not be the same: CNI_NETNS {shown} is the node's own network namespace"
        )));
    }
    Ok(())
}

impl NetCtx {
    pub fn new(kernel: Arc<dyn Kernel>, shared: Shared, netns_path: Option<&str>) -> Self {
        NetCtx {
            kernel,
            shared,
            netns_path: netns_path.unwrap_or("(none)").to_string(),
        }
    }

    /// Open the container namespace (on first use): it must be a network
    /// namespace, and not the node's own.
    pub async fn open_container(&self) -> CapResult<()> {
        match self.open_checked().await {
            Ok(()) => Ok(()),
            Err(ContainerNs::Unusable(e)) => Err(e),
            Err(ContainerNs::Node(msg)) => Err(CapError::denied(msg)),
        }
    }

    /// `open_container`, telling the node's own namespace apart.
    pub async fn open_checked(&self) -> Result<(), ContainerNs> {
        let path = &self.netns_path;
        if let Err(e) = self.kernel.open_container().await {
            return Err(ContainerNs::Unusable(container_error(path, &e)));
        }
        let (host, container) = (
            self.kernel.namespace_id(Ns::Host),
            self.kernel.namespace_id(Ns::Container),
        );
        if host.is_some() && host == container {
            return Err(ContainerNs::Node(format!(
                "plugin's netns and netns from CNI_NETNS should not be the same: CNI_NETNS {path} is the node's own network namespace"
            )));
        }
        Ok(())
    }

    pub(crate) fn kind(&self, ns: &Resource<NamespaceHandle>) -> CapResult<Ns> {
        match ns.rep() {
            HOST_REP => Ok(Ns::Host),
            CONTAINER_REP if self.kernel.namespace_id(Ns::Container).is_some() => Ok(Ns::Container),
            rep => Err(CapError::Trap(wasmtime::format_err!(
                "unknown namespace handle {rep}"
            ))),
        }
    }

    /// A link as the kernel has it now; every name is checked first.
    pub(crate) async fn state(&self, ns: Ns, name: &str) -> CapResult<LinkState> {
        crate::kernel::link::check_name(name).map_err(CapError::invalid)?;
        self.kernel
            .link_get(ns, name)
            .await
            .map_err(|e| CapError::io(format!("link {name} in the {ns}"), e))
    }

    /// Where a link stands with this call (see `grant`). In the container
    /// every link is the request's: standing matters on the node only.
    pub(crate) async fn standing(&self, ns: Ns, link: &LinkState) -> CapResult<Standing> {
        if ns == Ns::Container {
            return Ok(Standing::Own);
        }
        if self.shared.lock().grant.created(Ns::Host, link.index) {
            return Ok(Standing::Own);
        }
        Ok(self.shared.lock().grant.standing(link))
    }

    pub(crate) async fn host_link<'a>(
        &mut self,
        ns: Ns,
        link: &'a LinkState,
    ) -> CapResult<HostLink<'a>> {
        Ok(HostLink {
            name: &link.name,
            is_bridge: link.kind == "bridge",
            standing: self.standing(ns, link).await?,
        })
    }

    /// This call made a link: its grant and journal learn of it.
    pub(crate) fn made(&mut self, ns: Ns, temp: &str, index: u32, bridge: bool) {
        let mut s = self.shared.lock();
        s.journal.created(ns, temp, index, bridge);
        s.grant.record_created(ns, index);
    }
}

impl netns::HostNamespace for NetCtx {
    async fn is_host(&mut self, ns: Resource<NamespaceHandle>) -> wasmtime::Result<bool> {
        Ok(ns.rep() == HOST_REP)
    }

    async fn drop(&mut self, _ns: Resource<NamespaceHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl netns::Host for NetCtx {
    async fn host(&mut self) -> wasmtime::Result<Resource<NamespaceHandle>> {
        Ok(Resource::new_own(HOST_REP))
    }

    async fn container(&mut self) -> CapResult<Resource<NamespaceHandle>> {
        self.open_container().await?;
        Ok(Resource::new_own(CONTAINER_REP))
    }
}
