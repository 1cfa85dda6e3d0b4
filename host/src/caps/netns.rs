//! `wasm-cni:plugin/netns`, and the state the network capabilities share:
//! the two namespaces this request grants, their rtnetlink connections,
//! and the links this call created (for the grant policy and for undoing a
//! failed ADD).

use super::grant::{Assigned, BRIDGE_MARK, Standing};
use super::{CapError, CapResult};
use crate::kernel::netlink::Netlink;
use crate::kernel::netns::Netns;
use crate::runtime::bindings::wasm_cni::plugin::netns;
use std::fmt;
use std::path::PathBuf;
use wasmtime::component::Resource;

/// The WIT `namespace` resource. Its rep says which namespace: the guest
/// holds only handles the host minted, so it cannot name any other.
pub struct NamespaceHandle;

const HOST_REP: u32 = 0;
const CONTAINER_REP: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsKind {
    Host,
    Container,
}

impl fmt::Display for NsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NsKind::Host => "host namespace",
            NsKind::Container => "container namespace",
        })
    }
}

struct Ns {
    /// `None` for the namespace this process runs in.
    netns: Option<Netns>,
    netlink: Option<Netlink>,
}

impl Ns {
    fn netlink(&mut self) -> std::io::Result<Netlink> {
        if self.netlink.is_none() {
            self.netlink = Some(Netlink::connect(self.netns.as_ref())?);
        }
        Ok(self.netlink.clone().expect("just connected"))
    }
}

/// A link this call created, known by its index (a name can be reused
/// once the link is gone; an index is not handed out again soon).
#[derive(Debug, Clone)]
pub struct Created {
    pub ns: NsKind,
    pub index: u32,
    pub name: String,
    /// Delete it if the ADD fails (veths yes; bridges are shared, no).
    pub undo: bool,
    /// The other end of a veth pair: deleting one end deletes both.
    pub peer: Option<(NsKind, u32)>,
}

/// The most links one call may create: a plugin needs two or three.
const MAX_CREATED: usize = 16;

pub struct NetCtx {
    host: Ns,
    host_id: Netns,
    container_path: Option<PathBuf>,
    container: Option<Ns>,
    created: Vec<Created>,
    /// The bridge the network config names (`"bridge"`), granted to it.
    named_bridge: Option<String>,
    assigned: Assigned,
}

impl NetCtx {
    /// `container_path` is `CNI_NETNS`. With `require_container` (ADD,
    /// CHECK) it is opened now, so a bad path is a clear error before any
    /// guest code runs; otherwise (DEL) on first use, and a vanished
    /// namespace is `not-found`.
    pub fn new(
        container_path: Option<PathBuf>,
        require_container: bool,
        named_bridge: Option<String>,
        assigned: Assigned,
    ) -> Result<NetCtx, String> {
        let host_id = Netns::current()
            .map_err(|e| format!("cannot open this process's network namespace: {e}"))?;
        let mut ctx = NetCtx {
            host: Ns {
                netns: None,
                netlink: None,
            },
            host_id,
            container_path,
            container: None,
            created: Vec::new(),
            named_bridge,
            assigned,
        };
        if require_container {
            ctx.open_container().map_err(|e| e.to_string())?;
        }
        Ok(ctx)
    }

    fn open_container(&mut self) -> CapResult<()> {
        if self.container.is_some() {
            return Ok(());
        }
        let Some(path) = self.container_path.clone() else {
            return Err(CapError::not_found("this request has no CNI_NETNS"));
        };
        let netns = Netns::open(&path)
            .map_err(|e| CapError::io(format!("CNI_NETNS {}", path.display()), e))?;
        if netns.same_as(&self.host_id) {
            return Err(CapError::denied(format!(
                "CNI_NETNS {} is the host's own network namespace",
                path.display()
            )));
        }
        let mut ns = Ns {
            netns: Some(netns),
            netlink: None,
        };
        // Entering it proves it is a network namespace. After a sandbox is
        // torn down its bind mount is often left as a plain file: for the
        // container capability that namespace is gone (`not-found`), so a
        // DEL can still release everything (the reference fails there).
        ns.netlink().map_err(|e| {
            CapError::not_found(format!(
                "CNI_NETNS {} is not a usable network namespace: {e}",
                path.display()
            ))
        })?;
        self.container = Some(ns);
        Ok(())
    }

    pub(crate) fn kind(&self, ns: &Resource<NamespaceHandle>) -> CapResult<NsKind> {
        match ns.rep() {
            HOST_REP => Ok(NsKind::Host),
            CONTAINER_REP if self.container.is_some() => Ok(NsKind::Container),
            rep => Err(CapError::Trap(wasmtime::format_err!(
                "unknown namespace handle {rep}"
            ))),
        }
    }

    pub(crate) fn netlink(&mut self, kind: NsKind) -> CapResult<Netlink> {
        let ns = match kind {
            NsKind::Host => &mut self.host,
            NsKind::Container => self
                .container
                .as_mut()
                .ok_or_else(|| CapError::not_found("container namespace"))?,
        };
        ns.netlink()
            .map_err(|e| CapError::io(format!("netlink in the {kind}"), e))
    }

    /// The namespace to enter for `kind`; `None` means stay in this one.
    pub(crate) fn netns(&self, kind: NsKind) -> Option<&Netns> {
        match kind {
            NsKind::Host => None,
            NsKind::Container => self.container.as_ref().and_then(|c| c.netns.as_ref()),
        }
    }

    pub(crate) fn assigned(&self) -> &Assigned {
        &self.assigned
    }

    /// Refuse to create past the per-call limit.
    pub(crate) fn may_create(&self) -> CapResult<()> {
        if self.created.len() < MAX_CREATED {
            Ok(())
        } else {
            Err(CapError::denied(format!(
                "a call may create at most {MAX_CREATED} links"
            )))
        }
    }

    pub(crate) fn record_created(&mut self, c: Created) {
        self.created.push(c);
    }

    /// A link (and its veth peer) is gone.
    pub(crate) fn forget_created(&mut self, ns: NsKind, index: u32) {
        let peer = self
            .created
            .iter()
            .find(|c| c.ns == ns && c.index == index)
            .and_then(|c| c.peer);
        self.created
            .retain(|c| !((c.ns, c.index) == (ns, index) || Some((c.ns, c.index)) == peer));
    }

    pub fn created_in(&self, ns: NsKind, index: u32) -> bool {
        self.created.iter().any(|c| c.ns == ns && c.index == index)
    }

    /// Where a host-namespace link stands with this call (see `grant`).
    pub fn standing(&self, link: &crate::kernel::link::LinkState) -> Standing {
        if self.created_in(NsKind::Host, link.index) {
            Standing::Own
        } else if link.kind == "bridge"
            && (link.alias.as_deref() == Some(BRIDGE_MARK)
                || self.named_bridge.as_deref() == Some(link.name.as_str()))
        {
            Standing::GrantedBridge
        } else {
            Standing::Foreign
        }
    }

    /// Undo a failed ADD: delete the links it created, newest first. A veth
    /// takes its peer with it, so a missing link is fine.
    pub async fn rollback(&mut self) -> Vec<String> {
        let mut failures = Vec::new();
        let undo: Vec<Created> = self
            .created
            .iter()
            .rev()
            .filter(|c| c.undo)
            .cloned()
            .collect();
        for c in undo {
            let result = match self.netlink(c.ns) {
                Ok(nl) => nl
                    .link_del_index(c.index)
                    .await
                    .map_err(|e| CapError::io(&c.name, e)),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => crate::log::debug(&format!(
                    "rollback: deleted link {} in the {}",
                    c.name, c.ns
                )),
                Err(e) if e.is_not_found() => {}
                Err(e) => failures.push(format!("delete link {} in the {}: {e}", c.name, c.ns)),
            }
        }
        self.created.clear();
        failures
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
        self.open_container()?;
        Ok(Resource::new_own(CONTAINER_REP))
    }
}
