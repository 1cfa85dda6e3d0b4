//! Links: read, create (bridge, veth pair across namespaces), change,
//! delete, and wait for a port to forward.

use super::netlink::{Bounded, Netlink, Subscription};
use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::link::{
    BridgePortState, InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// RFC 2863 operational state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperState {
    Unknown,
    NotPresent,
    Down,
    LowerLayerDown,
    Testing,
    Dormant,
    Up,
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    pub index: u32,
    pub name: String,
    /// "bridge", "veth", ...; empty when the kernel names no kind.
    pub kind: String,
    pub mac: Vec<u8>,
    pub mtu: u32,
    pub up: bool,
    pub promiscuous: bool,
    pub oper: OperState,
    pub master: Option<u32>,
    /// For a bridge port: its STP state.
    pub port_forwarding: Option<bool>,
    /// IFLA_IFALIAS.
    pub alias: Option<String>,
}

impl LinkState {
    fn from_message(msg: LinkMessage) -> LinkState {
        let mut s = LinkState {
            index: msg.header.index,
            name: String::new(),
            kind: String::new(),
            mac: Vec::new(),
            mtu: 0,
            up: msg.header.flags.contains(LinkFlags::Up),
            promiscuous: msg.header.flags.contains(LinkFlags::Promisc),
            oper: OperState::Unknown,
            master: None,
            port_forwarding: None,
            alias: None,
        };
        for attr in msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => s.name = n,
                LinkAttribute::IfAlias(a) => s.alias = Some(a),
                LinkAttribute::Address(a) => s.mac = a,
                LinkAttribute::Mtu(m) => s.mtu = m,
                LinkAttribute::Controller(m) => s.master = Some(m),
                LinkAttribute::OperState(st) => s.oper = oper_state(st),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(k) => s.kind = k.to_string(),
                            LinkInfo::PortData(InfoPortData::BridgePort(attrs)) => {
                                for a in attrs {
                                    if let InfoBridgePort::State(st) = a {
                                        s.port_forwarding = Some(st == BridgePortState::Forwarding);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        s
    }
}

fn oper_state(s: State) -> OperState {
    match s {
        State::NotPresent => OperState::NotPresent,
        State::Down => OperState::Down,
        State::LowerLayerDown => OperState::LowerLayerDown,
        State::Testing => OperState::Testing,
        State::Dormant => OperState::Dormant,
        State::Up => OperState::Up,
        _ => OperState::Unknown,
    }
}

/// One change to an existing link.
#[derive(Debug, Clone)]
pub enum LinkChange {
    Master(Option<u32>),
    Up(bool),
    Mtu(u32),
    Mac(Vec<u8>),
    Promiscuous(bool),
    Alias(String),
    /// Rename (the link must be down).
    Name(String),
    /// Bridge port hairpin mode.
    Hairpin(bool),
}

/// Where a new veth end goes: its name, and the namespace to move it into
/// (`None`: stay in the namespace of the connection that creates it).
pub struct VethEnd<'a> {
    pub name: &'a str,
    pub netns: Option<BorrowedFd<'a>>,
}

impl Netlink {
    pub async fn link_get(&self, name: &str) -> io::Result<LinkState> {
        let mut stream = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match stream.try_next().within().await? {
            Some(msg) => Ok(LinkState::from_message(msg)),
            None => Err(io::Error::from_raw_os_error(libc_enodev())),
        }
    }

    pub async fn link_get_index(&self, index: u32) -> io::Result<LinkState> {
        let mut stream = self.handle.link().get().match_index(index).execute();
        match stream.try_next().within().await? {
            Some(msg) => Ok(LinkState::from_message(msg)),
            None => Err(io::Error::from_raw_os_error(libc_enodev())),
        }
    }

    pub async fn link_list(&self) -> io::Result<Vec<LinkState>> {
        self.handle
            .link()
            .get()
            .execute()
            .map_ok(LinkState::from_message)
            .try_collect()
            .within()
            .await
    }

    /// Create a bridge, down.
    pub async fn bridge_add(&self, name: &str, mtu: Option<u32>) -> io::Result<()> {
        let mut b = LinkBridge::new(name);
        if let Some(mtu) = mtu {
            b = b.mtu(mtu);
        }
        self.handle.link().add(b.build()).execute().within().await
    }

    /// Create a veth pair in one request; each end may be placed in another
    /// namespace as it is born, so nothing half-made is ever visible.
    pub async fn veth_add(
        &self,
        end: VethEnd<'_>,
        peer: VethEnd<'_>,
        mtu: Option<u32>,
        mac: Option<Vec<u8>>,
    ) -> io::Result<()> {
        let mut peer_msg = LinkMessageBuilder::<LinkUnspec>::new().name(peer.name.to_string());
        if let Some(fd) = peer.netns {
            peer_msg = peer_msg.setns_by_fd(fd.as_raw_fd());
        }
        if let Some(mtu) = mtu {
            peer_msg = peer_msg.mtu(mtu);
        }
        let mut msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name(end.name.to_string())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg.build())));
        if let Some(fd) = end.netns {
            msg = msg.setns_by_fd(fd.as_raw_fd());
        }
        if let Some(mtu) = mtu {
            msg = msg.mtu(mtu);
        }
        if let Some(mac) = mac {
            msg = msg.address(mac);
        }
        self.handle.link().add(msg.build()).execute().within().await
    }

    /// Change the link with this index: what was checked is what changes,
    /// whatever its name is by now.
    pub async fn link_set(&self, index: u32, change: LinkChange) -> io::Result<()> {
        let b = LinkUnspec::new_with_index(index);
        let msg = match change {
            LinkChange::Master(Some(master)) => b.controller(master).build(),
            LinkChange::Master(None) => b.nocontroller().build(),
            LinkChange::Up(true) => b.up().build(),
            LinkChange::Up(false) => b.down().build(),
            LinkChange::Mtu(mtu) => b.mtu(mtu).build(),
            LinkChange::Mac(mac) => b.address(mac).build(),
            LinkChange::Promiscuous(on) => b.promiscuous(on).build(),
            LinkChange::Alias(alias) => b.alias(alias).build(),
            LinkChange::Name(name) => b.name(name).build(),
            // What `ip link set dev X type bridge_slave hairpin on` sends.
            LinkChange::Hairpin(on) => {
                let msg = b
                    .set_port_kind(InfoPortKind::Bridge)
                    .set_port_data(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                        on,
                    )]))
                    .build();
                return self.handle.link().change(msg).execute().within().await;
            }
        };
        self.handle.link().set(msg).execute().within().await
    }

    /// Delete by index: what was created is what goes, whatever its name
    /// is now.
    pub async fn link_del_index(&self, index: u32) -> io::Result<()> {
        self.handle.link().del(index).execute().within().await
    }
}

/// How often a wait re-reads the link even without a notification: the
/// kernel drops notifications when a burst fills the socket buffer, and a
/// lost "port is forwarding" must not turn into a timeout.
const RECHECK: Duration = Duration::from_millis(200);

impl Subscription {
    /// Wait until `name` satisfies `ready`: read it through `query`, then
    /// again on every link notification (or after `RECHECK`); ETIMEDOUT
    /// after `timeout`, with the last state seen.
    pub async fn wait_link(
        &mut self,
        query: &Netlink,
        name: &str,
        timeout: Duration,
        ready: impl Fn(&LinkState) -> bool,
    ) -> io::Result<LinkState> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut events_open = true;
        loop {
            let state = query.link_get(name).await?;
            if ready(&state) {
                return Ok(state);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{name} not forwarding after {} ms (oper state {:?}, port forwarding {:?})",
                        timeout.as_millis(),
                        state.oper,
                        state.port_forwarding
                    ),
                ));
            }
            let wake = deadline.min(now + RECHECK);
            if events_open {
                if let Ok(None) = tokio::time::timeout_at(wake, self.events.next()).await {
                    events_open = false;
                }
            } else {
                tokio::time::sleep_until(wake).await;
            }
        }
    }
}

fn libc_enodev() -> i32 {
    rustix::io::Errno::NODEV.raw_os_error()
}

/// Kernel link names: 1..=15 bytes, no '/', ':' or whitespace. Checked on
/// every name a guest or a policy gives, not only on create: a name too
/// long for a netlink attribute would otherwise reach the message encoder.
pub fn check_name(name: &str) -> Result<(), String> {
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
        Err(format!("link name {name:?}"))
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
