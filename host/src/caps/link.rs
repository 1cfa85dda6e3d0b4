//! `wasm-cni:plugin/link`.

use super::grant::{self, BRIDGE_MARK, HostLink, LinkOp};
use super::netns::{Created, NamespaceHandle, NetCtx, NsKind};
use super::{CapError, CapResult};
use crate::kernel::link::{LinkChange, LinkState, OperState, VethEnd};
use crate::kernel::netlink::{GROUP_LINK, Netlink};
use crate::runtime::bindings::wasm_cni::plugin::link::{self, LinkInfo, VethPair};
use crate::runtime::convert::{mac_from_string, mac_to_string};
use std::os::fd::AsFd;
use std::time::Duration;
use wasmtime::component::Resource;

/// The longest a guest may wait for a port: a hung wait must not hang the
/// container runtime.
const MAX_WAIT: Duration = Duration::from_secs(30);

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

/// Kernel link names: 1..=15 bytes, no '/', ':' or whitespace. Checked on
/// every name a guest passes, not only on create: a name too long for a
/// netlink attribute would otherwise reach the message encoder.
pub fn check_name(name: &str) -> CapResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(CapError::invalid(format!("link name {name:?}")))
    }
}

/// `veth` and 8 random hex digits, as the reference bridge names host ends.
fn random_veth_name() -> String {
    let mut b = [0u8; 4];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).expect("getrandom");
    format!("veth{:08x}", u32::from_ne_bytes(b))
}

impl NetCtx {
    pub(crate) async fn state(&mut self, kind: NsKind, name: &str) -> CapResult<LinkState> {
        check_name(name)?;
        let nl = self.netlink(kind)?;
        nl.link_get(name)
            .await
            .map_err(|e| CapError::io(format!("link {name} in the {kind}"), e))
    }

    /// Check that `op` on `name` is granted (see `grant`); anything goes in
    /// the container. Returns the link as it is now.
    pub(crate) async fn grant(
        &mut self,
        kind: NsKind,
        name: &str,
        op: LinkOp,
    ) -> CapResult<LinkState> {
        let st = self.state(kind, name).await?;
        if kind == NsKind::Host {
            grant::check_link(self.host_link(&st), op)?;
        }
        Ok(st)
    }

    pub(crate) fn host_link<'a>(&self, st: &'a LinkState) -> HostLink<'a> {
        HostLink {
            name: &st.name,
            is_bridge: st.kind == "bridge",
            standing: self.standing(st),
        }
    }

    async fn change(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        op: LinkOp,
        change: LinkChange,
    ) -> CapResult<()> {
        let kind = self.kind(&ns)?;
        self.grant(kind, &name, op).await?;
        let nl = self.netlink(kind)?;
        nl.link_set(&name, change)
            .await
            .map_err(|e| CapError::io(format!("{op:?} on link {name} in the {kind}"), e))
    }
}

impl link::Host for NetCtx {
    async fn get(&mut self, ns: Resource<NamespaceHandle>, name: String) -> CapResult<LinkInfo> {
        let kind = self.kind(&ns)?;
        Ok(info(self.state(kind, &name).await?))
    }

    async fn list(&mut self, ns: Resource<NamespaceHandle>) -> CapResult<Vec<LinkInfo>> {
        let kind = self.kind(&ns)?;
        let nl = self.netlink(kind)?;
        let links = nl
            .link_list()
            .await
            .map_err(|e| CapError::io(format!("list links in the {kind}"), e))?;
        Ok(links.into_iter().map(info).collect())
    }

    async fn create_bridge(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        mtu: Option<u32>,
    ) -> CapResult<LinkInfo> {
        let kind = self.kind(&ns)?;
        check_name(&name)?;
        self.may_create()?;
        let nl = self.netlink(kind)?;
        let temp = format!("wcni{}", &random_veth_name()[4..]);
        nl.bridge_add(&name, &temp, mtu, BRIDGE_MARK)
            .await
            .map_err(|e| CapError::io(format!("create bridge {name} in the {kind}"), e))?;
        let st = self.state(kind, &name).await?;
        self.record_created(Created {
            ns: kind,
            index: st.index,
            name: name.clone(),
            undo: false,
            peer: None,
        });
        Ok(info(st))
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
        let kind = self.kind(&ns)?;
        let peer_kind = self.kind(&peer_ns)?;
        check_name(&name)?;
        if let Some(p) = &peer_name {
            check_name(p)?;
        }
        self.may_create()?;
        let mac = mac.as_deref().map(mac_from_string).transpose()?;
        // Sent from the host's connection; an end bound for the container
        // is born there (IFLA_NET_NS_FD), so no half-made pair is visible.
        let nl = self.netlink(NsKind::Host)?;
        let mut attempts = 0;
        let peer = loop {
            let peer = peer_name.clone().unwrap_or_else(random_veth_name);
            let fd = |k| self.netns(k).map(|n| n.fd().as_fd());
            let result = nl
                .veth_add(
                    VethEnd {
                        name: &name,
                        netns: fd(kind),
                    },
                    VethEnd {
                        name: &peer,
                        netns: fd(peer_kind),
                    },
                    mtu,
                    mac.clone(),
                )
                .await;
            match result {
                Ok(()) => break peer,
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()) => {
                    if self.state(kind, &name).await.is_ok() {
                        return Err(CapError::exists(format!("link {name} in the {kind}")));
                    }
                    attempts += 1;
                    if peer_name.is_some() || attempts >= 8 {
                        return Err(CapError::exists(format!("link {peer} in the {peer_kind}")));
                    }
                }
                Err(e) => return Err(CapError::io(format!("create veth {name}/{peer}"), e)),
            }
        };
        let link = self.state(kind, &name).await?;
        let peer = self.state(peer_kind, &peer).await?;
        let (a, b) = ((kind, link.index), (peer_kind, peer.index));
        self.record_created(Created {
            ns: kind,
            index: link.index,
            name: name.clone(),
            undo: true,
            peer: Some(b),
        });
        self.record_created(Created {
            ns: peer_kind,
            index: peer.index,
            name: peer.name.clone(),
            undo: true,
            peer: Some(a),
        });
        Ok(VethPair {
            link: info(link),
            peer: info(peer),
        })
    }

    async fn set_master(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        master: Option<String>,
    ) -> CapResult<()> {
        let kind = self.kind(&ns)?;
        let port = self.state(kind, &name).await?;
        let master = match &master {
            Some(m) => Some(self.state(kind, m).await?),
            None => None,
        };
        if kind == NsKind::Host {
            grant::check_master(
                self.host_link(&port),
                master.as_ref().map(|m| self.host_link(m)),
            )?;
        }
        let nl = self.netlink(kind)?;
        nl.link_set(&name, LinkChange::Master(master.map(|m| m.index)))
            .await
            .map_err(|e| CapError::io(format!("set master of {name} in the {kind}"), e))
    }

    async fn set_up(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        up: bool,
    ) -> CapResult<()> {
        let op = if up { LinkOp::Up } else { LinkOp::Down };
        self.change(ns, name, op, LinkChange::Up(up)).await
    }

    async fn set_mtu(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        mtu: u32,
    ) -> CapResult<()> {
        self.change(ns, name, LinkOp::Mtu, LinkChange::Mtu(mtu))
            .await
    }

    async fn set_mac(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        mac: String,
    ) -> CapResult<()> {
        let mac = mac_from_string(&mac)?;
        self.change(ns, name, LinkOp::Mac, LinkChange::Mac(mac))
            .await
    }

    async fn set_hairpin(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        on: bool,
    ) -> CapResult<()> {
        let kind = self.kind(&ns)?;
        self.grant(kind, &name, LinkOp::Hairpin).await?;
        let nl = self.netlink(kind)?;
        nl.port_set_hairpin(&name, on)
            .await
            .map_err(|e| CapError::io(format!("hairpin on {name} in the {kind}"), e))
    }

    async fn set_promiscuous(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        on: bool,
    ) -> CapResult<()> {
        self.change(ns, name, LinkOp::Promiscuous, LinkChange::Promiscuous(on))
            .await
    }

    async fn delete(&mut self, ns: Resource<NamespaceHandle>, name: String) -> CapResult<()> {
        let kind = self.kind(&ns)?;
        let st = self.grant(kind, &name, LinkOp::Delete).await?;
        let nl = self.netlink(kind)?;
        nl.link_del_index(st.index)
            .await
            .map_err(|e| CapError::io(format!("delete link {name} in the {kind}"), e))?;
        self.forget_created(kind, st.index);
        Ok(())
    }

    async fn wait_forwarding(
        &mut self,
        ns: Resource<NamespaceHandle>,
        name: String,
        timeout_ms: u32,
    ) -> CapResult<LinkInfo> {
        let kind = self.kind(&ns)?;
        check_name(&name)?;
        let timeout = Duration::from_millis(u64::from(timeout_ms)).min(MAX_WAIT);
        let mut sub = Netlink::subscribe(self.netns(kind), GROUP_LINK)
            .map_err(|e| CapError::io(format!("subscribe to link events in the {kind}"), e))?;
        let query = self.netlink(kind)?;
        let st = sub
            .wait_link(&query, &name, timeout, |s| {
                s.oper == OperState::Up && s.port_forwarding != Some(false)
            })
            .await
            .map_err(|e| CapError::io(format!("wait for {name} in the {kind}"), e))?;
        Ok(info(st))
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn every_name_is_a_kernel_link_name() {
        assert!(
            check_name("eth0").is_ok()
                && check_name("veth1a2b3c4d").is_ok()
                && check_name("fifteen-bytes-x").is_ok()
        );
        let huge = "a".repeat(70_000);
        for bad in [
            "",
            "sixteen-bytes-xx",
            "a/b",
            "a:b",
            "a b",
            "..",
            "a\nb",
            huge.as_str(),
        ] {
            assert!(check_name(bad).is_err(), "{:?}", &bad[..bad.len().min(20)]);
        }
    }
}
