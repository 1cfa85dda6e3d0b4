//! Routes in one table.

use super::netlink::{Bounded, Netlink};
use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};
use std::io;
use std::net::IpAddr;

/// What the node's lookup of one destination says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTo {
    pub kind: RouteKind,
    /// The link it leaves by.
    pub oif: Option<u32>,
}

/// The kind of the route a lookup found: only `Unicast` leaves the node
/// (`Local`, `Broadcast` and `Anycast` are the node's own addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Unicast,
    Local,
    Broadcast,
    Anycast,
    /// Blackhole, unreachable, prohibit, ...
    Other,
}

/// A route: unicast, or one that keeps traffic from going anywhere else
/// (blackhole, unreachable, prohibit, throw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// False for blackhole, unreachable, prohibit and throw routes.
    pub unicast: bool,
    pub dst: IpAddr,
    pub dst_len: u8,
    pub gw: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    pub priority: Option<u32>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub table: u32,
    pub scope: u8,
}

pub const RT_TABLE_MAIN: u32 = 254;
pub const RT_SCOPE_UNIVERSE: u8 = 0;
pub const RT_SCOPE_LINK: u8 = 253;

impl RouteSpec {
    fn to_message(&self) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = if self.dst.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.destination_prefix_length = self.dst_len;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::from(self.scope);
        m.header.kind = RouteType::Unicast;
        if self.table < 256 {
            m.header.table = self.table as u8;
        } else {
            m.header.table = RouteHeader::RT_TABLE_UNSPEC;
            m.attributes.push(RouteAttribute::Table(self.table));
        }
        if self.dst_len > 0 {
            m.attributes
                .push(RouteAttribute::Destination(route_addr(self.dst)));
        }
        if let Some(gw) = self.gw {
            m.attributes.push(RouteAttribute::Gateway(route_addr(gw)));
        }
        if let Some(oif) = self.oif {
            m.attributes.push(RouteAttribute::Oif(oif));
        }
        if let Some(p) = self.priority {
            m.attributes.push(RouteAttribute::Priority(p));
        }
        let mut metrics = Vec::new();
        if let Some(mtu) = self.mtu {
            metrics.push(RouteMetric::Mtu(mtu));
        }
        if let Some(advmss) = self.advmss {
            metrics.push(RouteMetric::Advmss(advmss));
        }
        if !metrics.is_empty() {
            m.attributes.push(RouteAttribute::Metrics(metrics));
        }
        m
    }

    fn from_message(m: RouteMessage) -> Option<RouteSpec> {
        let v4 = m.header.address_family == AddressFamily::Inet;
        let mut r = RouteSpec {
            unicast: m.header.kind == RouteType::Unicast,
            dst: if v4 {
                IpAddr::from([0u8; 4])
            } else {
                IpAddr::from([0u8; 16])
            },
            dst_len: m.header.destination_prefix_length,
            gw: None,
            oif: None,
            priority: None,
            mtu: None,
            advmss: None,
            table: u32::from(m.header.table),
            scope: u8::from(m.header.scope),
        };
        // Local, broadcast, multicast and anycast routes describe the
        // node's own addresses, which are judged as addresses.
        if !matches!(
            m.header.kind,
            RouteType::Unicast
                | RouteType::BlackHole
                | RouteType::Unreachable
                | RouteType::Prohibit
                | RouteType::Throw
        ) {
            return None;
        }
        for a in m.attributes {
            match a {
                RouteAttribute::Destination(d) => r.dst = ip_of(d)?,
                RouteAttribute::Gateway(g) => r.gw = Some(ip_of(g)?),
                RouteAttribute::Oif(i) => r.oif = Some(i),
                RouteAttribute::Priority(p) => r.priority = Some(p),
                RouteAttribute::Table(t) => r.table = t,
                RouteAttribute::Metrics(ms) => {
                    for metric in ms {
                        match metric {
                            RouteMetric::Mtu(v) => r.mtu = Some(v),
                            RouteMetric::Advmss(v) => r.advmss = Some(v),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Some(r)
    }
}

fn route_addr(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

fn ip_of(a: RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(a) => Some(a.into()),
        RouteAddress::Inet6(a) => Some(a.into()),
        _ => None,
    }
}

impl Netlink {
    /// Unicast routes of both families in `table`, or in every table.
    pub async fn route_list(&self, table: Option<u32>) -> io::Result<Vec<RouteSpec>> {
        self.route_list_of(table, None).await
    }

    /// [`route_list`](Self::route_list) of one family (`v6`), or both: the
    /// kernel dumps only that family (a node with many links has a long
    /// IPv6 table of link-local and local routes).
    pub async fn route_list_of(
        &self,
        table: Option<u32>,
        v6: Option<bool>,
    ) -> io::Result<Vec<RouteSpec>> {
        let families: &[AddressFamily] = match v6 {
            None => &[AddressFamily::Inet, AddressFamily::Inet6],
            Some(false) => &[AddressFamily::Inet],
            Some(true) => &[AddressFamily::Inet6],
        };
        let mut out = Vec::new();
        for &family in families {
            let mut query = RouteMessage::default();
            query.header.address_family = family;
            let msgs: Vec<RouteMessage> = self
                .handle
                .route()
                .get(query)
                .execute()
                .try_collect()
                .within()
                .await?;
            out.extend(
                msgs.into_iter()
                    .filter_map(RouteSpec::from_message)
                    .filter(|r| table.is_none_or(|t| r.table == t)),
            );
        }
        Ok(out)
    }

    /// The route the node would take to `dst` (`ip route get`): the
    /// kernel's own lookup, rules, metrics and all. `None`: unreachable.
    pub async fn route_to(&self, dst: IpAddr) -> io::Result<Option<RouteTo>> {
        let mut query = RouteMessage::default();
        let (family, len, addr) = match dst {
            IpAddr::V4(a) => (AddressFamily::Inet, 32, RouteAddress::Inet(a)),
            IpAddr::V6(a) => (AddressFamily::Inet6, 128, RouteAddress::Inet6(a)),
        };
        query.header.address_family = family;
        query.header.destination_prefix_length = len;
        query.attributes.push(RouteAttribute::Destination(addr));
        let answer: Result<Vec<RouteMessage>, io::Error> = self
            .handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .within()
            .await;
        let msgs = match answer {
            Ok(m) => m,
            Err(e) if e.raw_os_error() == Some(libc::ENETUNREACH) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::EHOSTUNREACH) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(msgs.into_iter().next().map(|m| RouteTo {
            kind: match m.header.kind {
                RouteType::Unicast => RouteKind::Unicast,
                RouteType::Local => RouteKind::Local,
                RouteType::Broadcast => RouteKind::Broadcast,
                RouteType::Anycast => RouteKind::Anycast,
                _ => RouteKind::Other,
            },
            oif: m.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            }),
        }))
    }

    pub async fn route_add(&self, route: &RouteSpec) -> io::Result<()> {
        self.handle
            .route()
            .add(route.to_message())
            .execute()
            .within()
            .await
    }

    pub async fn route_del(&self, route: &RouteSpec) -> io::Result<()> {
        self.handle
            .route()
            .del(route.to_message())
            .execute()
            .within()
            .await
    }
}
