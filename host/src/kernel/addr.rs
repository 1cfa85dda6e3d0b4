//! Interface addresses.

use super::netlink::{Bounded, Netlink};
use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use std::io;
use std::net::IpAddr;

impl Netlink {
    /// Addresses of both families on the link with this index, or on
    /// every link: (link index, address, prefix length).
    pub async fn addr_list(&self, index: Option<u32>) -> io::Result<Vec<(u32, IpAddr, u8)>> {
        self.addr_list_of(index, None).await
    }

    /// [`addr_list`](Self::addr_list) of one family (`v6`), or both: the
    /// kernel dumps only that family (a node with many links has as many
    /// IPv6 link-local addresses).
    pub async fn addr_list_of(
        &self,
        index: Option<u32>,
        v6: Option<bool>,
    ) -> io::Result<Vec<(u32, IpAddr, u8)>> {
        let mut req = self.handle.address().get();
        if let Some(i) = index {
            // Filtered by the kernel (the socket asks for strict checks),
            // and again here.
            req.message_mut().header.index = i;
            req = req.set_link_index_filter(i);
        }
        if let Some(v6) = v6 {
            req.message_mut().header.family = if v6 {
                netlink_packet_route::AddressFamily::Inet6
            } else {
                netlink_packet_route::AddressFamily::Inet
            };
        }
        let msgs: Vec<_> = req.execute().try_collect().within().await?;
        Ok(msgs
            .into_iter()
            .filter(|m| index.is_none_or(|i| m.header.index == i))
            .filter_map(|m| {
                // IFA_LOCAL is the interface's own address (IFA_ADDRESS is
                // the peer's on point-to-point links); fall back to it.
                let local = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let addr = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                });
                local
                    .or(addr)
                    .map(|ip| (m.header.index, ip, m.header.prefix_len))
            })
            .collect())
    }

    /// Add an address; `no_dad` marks an IPv6 address usable at once.
    pub async fn addr_add(
        &self,
        index: u32,
        ip: IpAddr,
        prefix_len: u8,
        no_dad: bool,
    ) -> io::Result<()> {
        let mut req = self.handle.address().add(index, ip, prefix_len);
        if no_dad && ip.is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute().within().await
    }

    pub async fn addr_del(&self, index: u32, ip: IpAddr, prefix_len: u8) -> io::Result<()> {
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(ip)
            .set_prefix_length_filter(prefix_len)
            .execute()
            .try_collect()
            .within()
            .await?;
        let msg = msgs
            .into_iter()
            .find(|m| m.header.index == index)
            .ok_or_else(|| {
                io::Error::from_raw_os_error(rustix::io::Errno::ADDRNOTAVAIL.raw_os_error())
            })?;
        self.handle.address().del(msg).execute().within().await
    }
}
