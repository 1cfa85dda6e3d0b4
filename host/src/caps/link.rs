//! `wasm-cni:plugin/link`.
//!
//! Every link the host makes in the node's namespace is first made under a
//! name only this call uses (`wc` and 64 random bits), journaled before the
//! kernel is asked, then renamed into place: a call dropped at the deadline
//! halfway through leaves a link rollback can find by that name, and
//! nothing else on the node can carry it.

use super::netns::NetCtx;
use super::{CapError, CapResult};
use crate::contract::NamespaceHandle;
use crate::contract::convert::{mac_from_string, mac_to_string};
use crate::contract::wasm_cni::plugin::link::{self, LinkInfo, VethPair};
use crate::grant::{LinkOp, Phase, Standing};
use crate::kernel::Ns;
use crate::kernel::link::{LinkChange, LinkState, OperState, check_name};
use crate::undo::{Change, ContainerChange};
use std::time::Duration;
use wasmtime::component::Resource;

/// The longest a guest may wait for a port: a hung wait must not hang the
/// container runtime.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Tries for a free `veth%08x` name.
const VETH_NAME_TRIES: usize = 8;

fn info(s: LinkState) -> LinkInfo {
    LinkInfo {
        index: s.index,
        name: s.name,
        kind: s.kind,
        mac: mac_to_string(&s.mac),
        mtu: s.mtu,
        up: s.up,
        oper_state: match s.oper {
            OperState::Unknown => link::OperState::Unknown,
            OperState::NotPresent => link::OperState::NotPresent,
            OperState::Down => link::OperState::Down,
            OperState::LowerLayerDown => link::OperState::LowerLayerDown,
            OperState::Testing => link::OperState::Testing,
            OperState::Dormant => link::OperState::Dormant,
            OperState::Up => link::OperState::Up,
        },
        master: s.master,
        alias: s.alias,
    }
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).expect("getrandom");
    u64::from_ne_bytes(b)
}

/// `wc` and 13 base-32 digits: 65 bits, 15 bytes, never a name anyone
/// else picks.
fn temp_name() -> String {
    const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let mut n = random_u64();
    let mut s = String::from("wc");
    for _ in 0..13 {
        s.push(DIGITS[(n & 31) as usize] as char);
        n >>= 5;
    }
    s
}

/// `veth` and 8 random hex digits, as the reference bridge names host ends.
fn random_veth_name() -> String {
    format!("veth{:08x}", random_u64() as u32)
}

fn is_exists(e: &CapError) -> bool {
    matches!(
        e.guest(),
        Some(crate::contract::wasm_cni::plugin::types::Error::AlreadyExists(_))
    )
}

impl NetCtx {
    /// Check that `op` on `name` is granted; the link as it is now.
    async fn granted(&mut self, ns: Ns, name: &str, op: LinkOp) -> CapResult<LinkState> {
        let st = self.state(ns, name).await?;
        let link = self.host_link(ns, &st).await?;
        self.shared.lock().grant.change_link(ns, link, op)?;
        Ok(st)
    }

    /// Change a link by index. On a node link that existed before this
    /// call, the setting it replaces is journaled first.
    pub(crate) async fn change_link(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        op: LinkOp,
        change: LinkChange,
    ) -> CapResult<()> {
        self.change_link_or(ns, name, op, change, CapError::io)
            .await
    }

    /// `change_link`, with the kernel's refusal worded by `refused`.
    pub(crate) async fn change_link_or(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        op: LinkOp,
        change: LinkChange,
        refused: impl FnOnce(String, std::io::Error) -> CapError,
    ) -> CapResult<()> {
        let ns = self.kind(&ns)?;
        let st = self.granted(ns, &name, op).await?;
        let restorable = {
            let s = self.shared.lock();
            s.grant.phase() == Phase::Add && !s.grant.created(ns, st.index)
        };
        if ns == Ns::Container
            && restorable
            && let Some(prior) = crate::undo::rollback::prior_of(&change, &st)
        {
            self.shared
                .lock()
                .journal
                .container_changes
                .push(ContainerChange::Link {
                    index: st.index,
                    prior,
                });
        }
        if ns == Ns::Host
            && matches!(
                self.standing(ns, &st).await?,
                Standing::GrantedBridge | Standing::VlanGateway
            )
            && let Some(prior) = crate::undo::rollback::prior_of(&change, &st)
        {
            self.shared.lock().journal.changed(Change::Link {
                index: st.index,
                prior,
            });
        }
        self.kernel
            .link_set(ns, st.index, change)
            .await
            .map_err(|e| refused(format!("{op:?} on link {name} in the {ns}"), e))
    }

    /// A bridge this call did not make (other pods' gateway) follows the
    /// smallest MTU of its ports: a port below its MTU would lower it for
    /// every attachment on it (the kernel's auto-adjust), so none is let
    /// in or lowered below it.
    async fn keeps_bridge_mtu(
        &self,
        ns: Ns,
        port: &str,
        port_mtu: u32,
        bridge: &LinkState,
    ) -> CapResult<()> {
        if ns != Ns::Host || bridge.kind != "bridge" || port_mtu >= bridge.mtu {
            return Ok(());
        }
        if self.standing(ns, bridge).await? == Standing::Own {
            return Ok(());
        }
        Err(CapError::denied(format!(
            "{port} with MTU {port_mtu} on bridge {} (MTU {}): the bridge would take the lower MTU for every attachment on it",
            bridge.name, bridge.mtu
        )))
    }

    /// Rename a link this call made under a temporary name.
    async fn rename(&mut self, ns: Ns, index: u32, name: &str) -> CapResult<()> {
        self.kernel
            .link_set(ns, index, LinkChange::Name(name.to_string()))
            .await
            .map_err(|e| CapError::io(format!("link {name} in the {ns}"), e))?;
        self.shared.lock().journal.renamed(ns, index, name);
        Ok(())
    }

    /// Delete a link this call made, and forget it.
    async fn unmake(&mut self, ns: Ns, index: u32) {
        if self.kernel.link_del(ns, index).await.is_ok() {
            let mut s = self.shared.lock();
            s.journal.deleted(ns, index);
            s.grant.forget_created(ns, index);
        }
    }

    /// May this call make one more link?
    fn may_create(&self, ns: Ns, what: &str) -> CapResult<()> {
        let s = self.shared.lock();
        s.grant.create_link(ns, what, s.journal.link_count())
    }
}

impl link::Host for NetCtx {
    async fn get(&mut self, ns: Resource<NamespaceHandle>, name: String) -> CapResult<LinkInfo> {
        let ns = self.kind(&ns)?;
        Ok(info(self.state(ns, &name).await?))
    }

    async fn list(&mut self, ns: Resource<NamespaceHandle>) -> CapResult<Vec<LinkInfo>> {
        let ns = self.kind(&ns)?;
        let links = self
            .kernel
            .link_list(ns)
            .await
            .map_err(|e| CapError::io(format!("list links in the {ns}"), e))?;
        Ok(links.into_iter().map(info).collect())
    }

    async fn create_bridge(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        mtu: Option<u32>,
    ) -> CapResult<LinkInfo> {
        let ns = self.kind(&ns)?;
        check_name(&name).map_err(CapError::invalid)?;
        self.may_create(ns, &format!("bridge {name}"))?;
        let temp = temp_name();
        self.shared.lock().journal.creating(ns, &temp);
        if let Err(e) = self.kernel.bridge_add(ns, &temp, mtu).await {
            self.shared.lock().journal.not_created(ns, &temp);
            return Err(CapError::io(format!("create bridge {name} in the {ns}"), e));
        }
        let index = self.state(ns, &temp).await?.index;
        self.made(ns, &temp, index, true);
        // Marked before it has its name, so no other call ever sees it
        // unmarked; renaming is atomic and fails if the name is taken.
        let mark = crate::owner::bridge_mark(self.shared.lock().grant.network());
        let placed = async {
            self.kernel
                .link_set(ns, index, LinkChange::Alias(mark))
                .await
                .map_err(|e| CapError::io(format!("mark bridge {name}"), e))?;
            self.rename(ns, index, &name).await
        }
        .await;
        if let Err(e) = placed {
            self.unmake(ns, index).await;
            return Err(e);
        }
        Ok(info(self.state(ns, &name).await?))
    }

    async fn create_veth(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        mtu: Option<u32>,
        mac: Option<String>,
        peer_ns: Resource<NamespaceHandle>,
        peer_name: Option<String>,
    ) -> CapResult<VethPair> {
        let (ns, peer_ns) = (self.kind(&ns)?, self.kind(&peer_ns)?);
        check_name(&name).map_err(CapError::invalid)?;
        if let Some(p) = &peer_name {
            check_name(p).map_err(CapError::invalid)?;
        }
        self.may_create(ns, &format!("veth {name}"))?;
        let mac = mac.as_deref().map(mac_from_string).transpose()?;
        // Each end: (namespace, name it is born with, name it ends with;
        // None: a free veth%08x).
        let born = |ns: Ns, want: Option<&str>| match (ns, want) {
            (Ns::Container, Some(w)) => (w.to_string(), Some(w.to_string())),
            (Ns::Container, None) => {
                let n = random_veth_name();
                (n.clone(), Some(n))
            }
            (Ns::Host, w) => (temp_name(), w.map(str::to_string)),
        };
        let ends = [
            (ns, born(ns, Some(&name))),
            (peer_ns, born(peer_ns, peer_name.as_deref())),
        ];
        {
            let mut s = self.shared.lock();
            for (n, (b, _)) in &ends {
                s.journal.creating(*n, b);
            }
        }
        let made = self
            .kernel
            .veth_add(
                (ends[0].0, &ends[0].1.0),
                (ends[1].0, &ends[1].1.0),
                mtu,
                mac,
            )
            .await;
        if let Err(e) = made {
            {
                let mut s = self.shared.lock();
                for (n, (b, _)) in &ends {
                    s.journal.not_created(*n, b);
                }
            }
            let e = CapError::io(format!("create veth {name}"), e);
            // A clash is on a name the guest chose: say which.
            if is_exists(&e) {
                for (n, (b, _)) in &ends {
                    if *n != Ns::Host && self.kernel.link_get(*n, b).await.is_ok() {
                        return Err(CapError::exists(format!("link {b} in the {n}")));
                    }
                }
            }
            return Err(e);
        }
        let mut states = Vec::new();
        for (n, (b, _)) in &ends {
            let st = self.state(*n, b).await?;
            self.made(*n, b, st.index, false);
            states.push(st);
        }
        crate::fault::point("link.create-veth");
        crate::fault::injected("link.create-veth").map_err(|e| CapError::io("test fault", e))?;
        let first = states[0].index;
        let mut finals = Vec::new();
        for ((n, (b, want)), st) in ends.iter().zip(&states) {
            if *n != Ns::Host {
                finals.push(b.clone());
                continue;
            }
            let placed = match want {
                Some(w) => self.rename(*n, st.index, w).await.map(|()| w.clone()),
                None => {
                    let mut r = Err(CapError::exists("no free veth name"));
                    for _ in 0..VETH_NAME_TRIES {
                        let v = random_veth_name();
                        r = self.rename(*n, st.index, &v).await.map(|()| v);
                        if !r.as_ref().is_err_and(is_exists) {
                            break;
                        }
                    }
                    r
                }
            };
            match placed {
                Ok(f) => finals.push(f),
                Err(e) => {
                    self.unmake(ns, first).await;
                    return Err(e);
                }
            }
        }
        Ok(VethPair {
            link: info(self.state(ends[0].0, &finals[0]).await?),
            peer: info(self.state(ends[1].0, &finals[1]).await?),
        })
    }

    async fn set_master(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        master: Option<String>,
    ) -> CapResult<()> {
        let ns = self.kind(&ns)?;
        let port = self.state(ns, &name).await?;
        let master = match &master {
            Some(m) => Some(self.state(ns, m).await?),
            None => None,
        };
        let port_link = self.host_link(ns, &port).await?;
        let master_link = match &master {
            Some(m) => Some(self.host_link(ns, m).await?),
            None => None,
        };
        self.shared
            .lock()
            .grant
            .set_master(ns, port_link, master_link)?;
        if let Some(m) = &master {
            self.keeps_bridge_mtu(ns, &name, port.mtu, m).await?;
        }
        self.kernel
            .link_set(ns, port.index, LinkChange::Master(master.map(|m| m.index)))
            .await
            .map_err(|e| CapError::io(format!("set master of {name} in the {ns}"), e))
    }

    async fn set_up(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        up: bool,
    ) -> CapResult<()> {
        let op = if up { LinkOp::Up } else { LinkOp::Down };
        self.change_link(ns, name, op, LinkChange::Up(up)).await
    }

    async fn set_mtu(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        mtu: u32,
    ) -> CapResult<()> {
        let kind = self.kind(&ns)?;
        if kind == Ns::Host
            && let Some(m) = self.state(kind, &name).await?.master
        {
            let master = self
                .kernel
                .link_get_index(kind, m)
                .await
                .map_err(|e| CapError::io(format!("the master of {name}"), e))?;
            self.keeps_bridge_mtu(kind, &name, mtu, &master).await?;
        }
        self.change_link(ns, name, LinkOp::Mtu, LinkChange::Mtu(mtu))
            .await
    }

    async fn set_mac(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        mac: String,
    ) -> CapResult<()> {
        let mac = mac_from_string(&mac)?;
        self.change_link(ns, name, LinkOp::Mac, LinkChange::Mac(mac))
            .await
    }

    async fn set_hairpin(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        on: bool,
    ) -> CapResult<()> {
        self.change_link(ns, name, LinkOp::Hairpin, LinkChange::Hairpin(on))
            .await
    }

    async fn set_promiscuous(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        on: bool,
    ) -> CapResult<()> {
        self.change_link(ns, name, LinkOp::Promiscuous, LinkChange::Promiscuous(on))
            .await
    }

    async fn delete(&mut self, ns: Resource<NamespaceHandle>, name: String) -> CapResult<()> {
        let ns = self.kind(&ns)?;
        let st = self.granted(ns, &name, LinkOp::Delete).await?;
        self.kernel
            .link_del(ns, st.index)
            .await
            .map_err(|e| CapError::io(format!("delete link {name} in the {ns}"), e))?;
        let mut s = self.shared.lock();
        s.journal.deleted(ns, st.index);
        s.grant.forget_created(ns, st.index);
        Ok(())
    }

    async fn wait_forwarding(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        timeout_ms: u32,
    ) -> CapResult<LinkInfo> {
        let ns = self.kind(&ns)?;
        check_name(&name).map_err(CapError::invalid)?;
        let timeout = Duration::from_millis(u64::from(timeout_ms)).min(MAX_WAIT);
        let st = self
            .kernel
            .wait_forwarding(ns, &name, timeout)
            .await
            .map_err(|e| CapError::io(format!("wait for {name} in the {ns}"), e))?;
        Ok(info(st))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_host_makes_are_kernel_names_and_never_repeat() {
        let a = temp_name();
        assert!(
            check_name(&a).is_ok() && a.len() == 15 && a.starts_with("wc"),
            "{a}"
        );
        assert_ne!(a, temp_name());
        let v = random_veth_name();
        assert!(check_name(&v).is_ok() && v.starts_with("veth") && v.len() == 12);
    }
}
