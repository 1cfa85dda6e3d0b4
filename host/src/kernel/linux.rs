//! The real node: rtnetlink connections per namespace (opened on first
//! use), `/proc/sys/net`, and nftables through the `nft` binary. Every
//! blocking step (a sysctl file, an `nft` process) runs off the async
//! runtime's thread, so the call's deadline can always fire.

use super::hostport::{self, Forward, HostPort};
use super::link::{LinkChange, LinkState, OperState, PortVlan, VethEnd};
use super::netlink::{GROUP_LINK, Netlink};
use super::netns::{Netns, blocking};
use super::route::RouteSpec;
use super::sysctl::{self, SysctlKey};
use super::{KFuture, Kernel, LinkAddress, Ns, Table, conntrack, nft, spoof_check};
use ipnetwork::IpNetwork;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

struct Conn {
    /// `None` for the namespace this process runs in.
    netns: Option<Netns>,
    id: (u64, u64),
    netlink: OnceCell<Netlink>,
}

impl Conn {
    async fn netlink(&self) -> io::Result<Netlink> {
        self.netlink
            .get_or_try_init(|| Netlink::connect(self.netns.as_ref()))
            .await
            .cloned()
    }
}

pub struct Linux {
    host: Conn,
    container_path: Option<PathBuf>,
    container: OnceCell<Conn>,
    /// Where the nftables table's lock lives.
    locks: Option<PathBuf>,
}

impl Linux {
    /// The node as this process sees it; `container_path` is `CNI_NETNS`,
    /// `locks` the host's lock directory.
    pub fn new(container_path: Option<PathBuf>, locks: Option<PathBuf>) -> io::Result<Linux> {
        let here = Netns::current()?;
        Ok(Linux {
            host: Conn {
                netns: None,
                id: here.id(),
                netlink: OnceCell::new(),
            },
            container_path,
            container: OnceCell::new(),
            locks,
        })
    }

    async fn open(&self) -> io::Result<Conn> {
        let Some(path) = &self.container_path else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "this request has no CNI_NETNS",
            ));
        };
        let netns = Netns::open(path)?;
        // Entering it proves it is a network namespace (setns refuses
        // another kind with EINVAL).
        let netlink = Netlink::connect(Some(&netns)).await.map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) {
                io::Error::new(io::ErrorKind::InvalidInput, "not a network namespace")
            } else {
                e
            }
        })?;
        Ok(Conn {
            id: netns.id(),
            netns: Some(netns),
            netlink: OnceCell::new_with(Some(netlink)),
        })
    }

    fn conn(&self, ns: Ns) -> io::Result<&Conn> {
        match ns {
            Ns::Host => Ok(&self.host),
            Ns::Container => self.container.get().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "the container namespace is not open",
                )
            }),
        }
    }

    async fn netlink(&self, ns: Ns) -> io::Result<Netlink> {
        self.conn(ns)?.netlink().await
    }

    fn netns(&self, ns: Ns) -> io::Result<Option<&Netns>> {
        Ok(self.conn(ns)?.netns.as_ref())
    }
}

impl Kernel for Linux {
    fn open_container(&self) -> KFuture<'_, ()> {
        Box::pin(async move {
            self.container
                .get_or_try_init(|| self.open())
                .await
                .map(drop)
        })
    }

    fn namespace_id(&self, ns: Ns) -> Option<(u64, u64)> {
        self.conn(ns).ok().map(|c| c.id)
    }

    fn link_get<'a>(&'a self, ns: Ns, name: &'a str) -> KFuture<'a, LinkState> {
        Box::pin(async move { self.netlink(ns).await?.link_get(name).await })
    }

    fn link_get_index(&self, ns: Ns, index: u32) -> KFuture<'_, LinkState> {
        Box::pin(async move { self.netlink(ns).await?.link_get_index(index).await })
    }

    fn link_list(&self, ns: Ns) -> KFuture<'_, Vec<LinkState>> {
        Box::pin(async move { self.netlink(ns).await?.link_list().await })
    }

    fn bridge_add<'a>(&'a self, ns: Ns, name: &'a str, mtu: Option<u32>) -> KFuture<'a, ()> {
        Box::pin(async move { self.netlink(ns).await?.bridge_add(name, mtu).await })
    }

    fn veth_add<'a>(
        &'a self,
        end: (Ns, &'a str),
        peer: (Ns, &'a str),
        mtu: Option<u32>,
        mac: Option<Vec<u8>>,
    ) -> KFuture<'a, ()> {
        Box::pin(async move {
            // Sent from the node's connection; an end bound for the
            // container is born there (IFLA_NET_NS_FD), so no half-made
            // pair is ever visible.
            let nl = self.netlink(Ns::Host).await?;
            let (end_ns, peer_ns) = (self.netns(end.0)?, self.netns(peer.0)?);
            nl.veth_add(
                VethEnd {
                    name: end.1,
                    netns: end_ns.map(|n| n.fd().as_fd()),
                },
                VethEnd {
                    name: peer.1,
                    netns: peer_ns.map(|n| n.fd().as_fd()),
                },
                mtu,
                mac,
            )
            .await
        })
    }

    fn link_set(&self, ns: Ns, index: u32, change: LinkChange) -> KFuture<'_, ()> {
        Box::pin(async move { self.netlink(ns).await?.link_set(index, change).await })
    }

    fn link_del(&self, ns: Ns, index: u32) -> KFuture<'_, ()> {
        Box::pin(async move { self.netlink(ns).await?.link_del_index(index).await })
    }

    fn port_vlans(&self, ns: Ns, index: u32) -> KFuture<'_, Vec<PortVlan>> {
        Box::pin(async move { self.netlink(ns).await?.port_vlans(index).await })
    }

    fn port_vlan_change(&self, ns: Ns, index: u32, add: bool, vlan: PortVlan) -> KFuture<'_, ()> {
        Box::pin(async move {
            self.netlink(ns)
                .await?
                .port_vlan_change(index, add, vlan)
                .await
        })
    }

    fn wait_forwarding<'a>(
        &'a self,
        ns: Ns,
        name: &'a str,
        timeout: Duration,
    ) -> KFuture<'a, LinkState> {
        Box::pin(async move {
            let mut sub = Netlink::subscribe(self.netns(ns)?, GROUP_LINK).await?;
            let query = self.netlink(ns).await?;
            sub.wait_link(&query, name, timeout, |s| {
                s.oper == OperState::Up && s.port_forwarding != Some(false)
            })
            .await
        })
    }

    fn addr_list(&self, ns: Ns, index: Option<u32>) -> KFuture<'_, Vec<LinkAddress>> {
        Box::pin(async move {
            let listed = self.netlink(ns).await?.addr_list(index).await?;
            Ok(listed
                .into_iter()
                .filter_map(|(i, ip, len)| IpNetwork::new(ip, len).ok().map(|n| (i, n)))
                .collect())
        })
    }

    fn addr_list_of(&self, ns: Ns, v6: bool) -> KFuture<'_, Vec<LinkAddress>> {
        Box::pin(async move {
            let listed = self.netlink(ns).await?.addr_list_of(None, Some(v6)).await?;
            Ok(listed
                .into_iter()
                .filter(|(_, ip, _)| ip.is_ipv6() == v6)
                .filter_map(|(i, ip, len)| IpNetwork::new(ip, len).ok().map(|n| (i, n)))
                .collect())
        })
    }

    fn addr_add(&self, ns: Ns, index: u32, addr: IpNetwork, no_dad: bool) -> KFuture<'_, ()> {
        Box::pin(async move {
            self.netlink(ns)
                .await?
                .addr_add(index, addr.ip(), addr.prefix(), no_dad)
                .await
        })
    }

    fn addr_del(&self, ns: Ns, index: u32, addr: IpNetwork) -> KFuture<'_, ()> {
        Box::pin(async move {
            self.netlink(ns)
                .await?
                .addr_del(index, addr.ip(), addr.prefix())
                .await
        })
    }

    fn route_list(&self, ns: Ns, table: Option<u32>) -> KFuture<'_, Vec<RouteSpec>> {
        Box::pin(async move { self.netlink(ns).await?.route_list(table).await })
    }

    fn route_list_of(&self, ns: Ns, v6: bool) -> KFuture<'_, Vec<RouteSpec>> {
        Box::pin(async move {
            let listed = self
                .netlink(ns)
                .await?
                .route_list_of(None, Some(v6))
                .await?;
            Ok(listed
                .into_iter()
                .filter(|r| r.dst.is_ipv6() == v6)
                .collect())
        })
    }

    fn route_to(&self, ns: Ns, dst: IpAddr) -> KFuture<'_, Option<super::route::RouteTo>> {
        Box::pin(async move { self.netlink(ns).await?.route_to(dst).await })
    }

    fn route_add<'a>(&'a self, ns: Ns, route: &'a RouteSpec) -> KFuture<'a, ()> {
        Box::pin(async move { self.netlink(ns).await?.route_add(route).await })
    }

    fn route_del<'a>(&'a self, ns: Ns, route: &'a RouteSpec) -> KFuture<'a, ()> {
        Box::pin(async move { self.netlink(ns).await?.route_del(route).await })
    }

    fn sysctl_read<'a>(&'a self, ns: Ns, key: &'a SysctlKey) -> KFuture<'a, String> {
        Box::pin(async move { sysctl::read(self.netns(ns)?, key).await })
    }

    fn sysctl_write<'a>(&'a self, ns: Ns, key: &'a SysctlKey, value: &'a str) -> KFuture<'a, ()> {
        Box::pin(async move { sysctl::write(self.netns(ns)?, key, value).await })
    }

    fn masquerade<'a>(
        &'a self,
        owner: &'a str,
        addrs: &'a [IpNetwork],
        deadline: Instant,
    ) -> KFuture<'a, bool> {
        let (owner, addrs, locks) = (owner.to_string(), addrs.to_vec(), self.locks.clone());
        Box::pin(blocking(move || {
            nft::masquerade(&owner, &addrs, deadline, locks.as_deref())
        }))
    }

    fn map_ports<'a>(
        &'a self,
        owner: &'a str,
        fwd: &'a Forward,
        deadline: Instant,
    ) -> KFuture<'a, bool> {
        let (owner, fwd, locks) = (owner.to_string(), fwd.clone(), self.locks.clone());
        Box::pin(blocking(move || {
            hostport::map(&owner, &fwd, deadline, locks.as_deref())
        }))
    }

    fn mapped_ports<'a>(&'a self, owner: &'a str, deadline: Instant) -> KFuture<'a, Vec<HostPort>> {
        let owner = owner.to_string();
        Box::pin(blocking(move || hostport::mapped(&owner, deadline)))
    }

    fn unmap_ports<'a>(&'a self, owner: &'a str, deadline: Instant) -> KFuture<'a, usize> {
        let owner = owner.to_string();
        Box::pin(blocking(move || {
            hostport::unmap(&owner, hostport::Masquerades::Hairpin, deadline)
        }))
    }

    fn loopback_ports(&self, deadline: Instant) -> KFuture<'_, Vec<(String, IpAddr)>> {
        Box::pin(blocking(move || hostport::loopback_ports(deadline)))
    }

    fn clear_udp_conntrack<'a>(&'a self, targets: &'a [(IpAddr, u16)]) -> KFuture<'a, usize> {
        let targets = targets.to_vec();
        Box::pin(blocking(move || conntrack::clear_udp(&targets)))
    }

    fn listeners(&self) -> KFuture<'_, Vec<super::listeners::Listener>> {
        Box::pin(blocking(|| Ok(super::listeners::listening())))
    }

    fn masquerade_rules(&self, deadline: Instant) -> KFuture<'_, Vec<(String, IpNetwork)>> {
        Box::pin(blocking(move || nft::masquerade_rules(deadline)))
    }

    fn drop_table_if_unused(&self, table: Table, deadline: Instant) -> KFuture<'_, bool> {
        let locks = self.locks.clone();
        let (family, chain) = match table {
            Table::Masquerade => (nftables::types::NfFamily::INet, nft::CHAIN),
            Table::SpoofCheck => (nftables::types::NfFamily::Bridge, spoof_check::CHAIN),
        };
        Box::pin(blocking(move || {
            nft::drop_table_if_unused(family, chain, locks.as_deref(), deadline)
        }))
    }

    fn spoof_check<'a>(
        &'a self,
        owner: &'a str,
        port: u32,
        mac: &'a str,
        deadline: Instant,
    ) -> KFuture<'a, bool> {
        let (owner, mac) = (owner.to_string(), mac.to_string());
        let locks = self.locks.clone();
        Box::pin(blocking(move || {
            spoof_check::enforce(&owner, port, &mac, deadline, locks.as_deref())
        }))
    }

    fn unmasquerade<'a>(&'a self, owner: &'a str, deadline: Instant) -> KFuture<'a, usize> {
        let owner = owner.to_string();
        Box::pin(blocking(move || nft::remove(&owner, deadline)))
    }

    fn retain_rules<'a>(
        &'a self,
        network: &'a str,
        keep: &'a [String],
        deadline: Instant,
    ) -> KFuture<'a, usize> {
        let (network, keep) = (network.to_string(), keep.to_vec());
        Box::pin(blocking(move || nft::retain(&network, &keep, deadline)))
    }

    fn remove_reference_masquerade<'a>(
        &'a self,
        network: &'a str,
        container_id: &'a str,
        ifname: &'a str,
        deadline: Instant,
    ) -> KFuture<'a, usize> {
        let (n, c, i) = (
            network.to_string(),
            container_id.to_string(),
            ifname.to_string(),
        );
        Box::pin(blocking(move || {
            super::reference::remove(&n, &c, &i, deadline)
        }))
    }

    fn masqueraded<'a>(&'a self, owner: &'a str, deadline: Instant) -> KFuture<'a, Vec<IpNetwork>> {
        let owner = owner.to_string();
        Box::pin(blocking(move || nft::masqueraded(&owner, deadline)))
    }
}
