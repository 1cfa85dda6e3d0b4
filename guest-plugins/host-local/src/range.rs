//! Ranges and range sets, canonicalized as the reference host-local does
//! (plugins/ipam/host-local/backend/allocator/range.go), and the round-robin
//! iterator over a set.

use ipnetwork::IpNetwork;
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A range as written in the config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawRange {
    pub subnet: String,
    #[serde(default)]
    pub range_start: Option<String>,
    #[serde(default)]
    pub range_end: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
}

/// A validated range: every address is of the subnet's family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The network (host bits clear).
    pub subnet: IpNetwork,
    pub start: IpAddr,
    pub end: IpAddr,
    pub gateway: IpAddr,
}

pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

pub fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

fn next_ip(ip: IpAddr) -> IpAddr {
    from_u128(to_u128(ip).wrapping_add(1), ip.is_ipv4())
}

fn parse_ip(s: &str, what: &str) -> Result<IpAddr, String> {
    // ip.IP in the reference accepts a bare address or one with a prefix.
    let bare = s.split('/').next().unwrap_or(s);
    bare.parse()
        .map_err(|_| format!("{what} {s:?} is not an IP address"))
}

impl Range {
    pub fn parse(raw: &RawRange) -> Result<Range, String> {
        let subnet: IpNetwork = raw
            .subnet
            .parse()
            .map_err(|_| format!("invalid subnet {:?}", raw.subnet))?;
        let (ones, bits) = (subnet.prefix(), if subnet.is_ipv4() { 32 } else { 128 });
        if ones > bits - 2 {
            return Err(format!("Network {subnet} too small to allocate from"));
        }
        if subnet.ip() != subnet.network() {
            return Err(format!(
                "network has host bits set. For a subnet mask of length {ones} the network address is {}",
                subnet.network()
            ));
        }
        let subnet = IpNetwork::new(subnet.network(), ones).expect("same prefix");
        let family_ok = |ip: IpAddr| ip.is_ipv4() == subnet.is_ipv4();
        let gateway = match &raw.gateway {
            Some(g) if !g.is_empty() => {
                let g = parse_ip(g, "gateway")?;
                if !family_ok(g) {
                    return Err(format!("gateway {g} is not of the family of {subnet}"));
                }
                g
            }
            _ => next_ip(subnet.network()),
        };
        let start = match &raw.range_start {
            Some(s) if !s.is_empty() => {
                let s = parse_ip(s, "rangeStart")?;
                if !family_ok(s) || !subnet.contains(s) {
                    return Err(format!("RangeStart {s} not in network {subnet}"));
                }
                s
            }
            _ => next_ip(subnet.network()),
        };
        let end = match &raw.range_end {
            Some(e) if !e.is_empty() => {
                let e = parse_ip(e, "rangeEnd")?;
                if !family_ok(e) || !subnet.contains(e) {
                    return Err(format!("RangeEnd {e} not in network {subnet}"));
                }
                e
            }
            _ => last_ip(subnet),
        };
        if to_u128(start) > to_u128(end) {
            return Err(format!("RangeStart {start} is after RangeEnd {end}"));
        }
        // A range may begin on the network address and (IPv4) end on the
        // broadcast address, as the reference accepts; unlike the
        // reference, neither is handed out (see `reserved`).
        Ok(Range {
            subnet,
            start,
            end,
            gateway,
        })
    }

    /// Addresses of the range that are never handed out: the gateway, the
    /// network address and (IPv4) the broadcast address.
    pub fn reserved(&self, ip: IpAddr) -> bool {
        ip == self.gateway
            || ip == self.subnet.network()
            || (self.subnet.is_ipv4() && ip == self.subnet.broadcast())
    }

    /// How many addresses the range can hand out.
    pub fn capacity(&self) -> u128 {
        let all = (to_u128(self.end) - to_u128(self.start)).saturating_add(1);
        let reserved = [
            Some(self.gateway),
            Some(self.subnet.network()),
            self.subnet.is_ipv4().then(|| self.subnet.broadcast()),
        ]
        .into_iter()
        .flatten()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|ip| self.contains(*ip))
        .count() as u128;
        all - reserved
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.subnet.is_ipv4()
            && self.subnet.contains(ip)
            && to_u128(ip) >= to_u128(self.start)
            && to_u128(ip) <= to_u128(self.end)
    }

    pub fn overlaps(&self, other: &Range) -> bool {
        self.subnet.is_ipv4() == other.subnet.is_ipv4()
            && (self.contains(other.start)
                || self.contains(other.end)
                || other.contains(self.start)
                || other.contains(self.end))
    }
}

/// The last address of a subnet, not the broadcast one for IPv4.
fn last_ip(subnet: IpNetwork) -> IpAddr {
    let b = subnet.broadcast();
    if subnet.is_ipv4() {
        from_u128(to_u128(b) - 1, true)
    } else {
        b
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// One address per range set: a set is one family, its ranges disjoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

impl RangeSet {
    pub fn parse(raw: &[RawRange]) -> Result<RangeSet, String> {
        if raw.is_empty() {
            return Err("empty range set".into());
        }
        let ranges = raw
            .iter()
            .map(Range::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if ranges
            .iter()
            .any(|r| r.subnet.is_ipv4() != ranges[0].subnet.is_ipv4())
        {
            return Err("mixed address families".into());
        }
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                if a.overlaps(b) {
                    return Err(format!("subnets {a} and {b} overlap"));
                }
            }
        }
        Ok(RangeSet(ranges))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.0.iter().any(|a| other.0.iter().any(|b| a.overlaps(b)))
    }

    /// Round robin: start after `last` when it is in the set, else at the
    /// first range's start; go through every range, wrapping, skipping the
    /// gateways; `last` itself comes last.
    pub fn iter_from(&self, last: Option<IpAddr>) -> RangeIter<'_> {
        match last.filter(|ip| self.contains(*ip)) {
            Some(ip) => {
                let idx = self
                    .0
                    .iter()
                    .position(|r| r.contains(ip))
                    .expect("contained");
                RangeIter {
                    set: self,
                    idx,
                    cur: Some(ip),
                    start: None,
                }
            }
            None => RangeIter {
                set: self,
                idx: 0,
                cur: None,
                start: None,
            },
        }
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(Range::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// The reference's RangeIter, step for step.
pub struct RangeIter<'a> {
    set: &'a RangeSet,
    idx: usize,
    cur: Option<IpAddr>,
    /// The first address returned; meeting it again ends the walk.
    start: Option<IpAddr>,
}

impl Iterator for RangeIter<'_> {
    /// An address (with the subnet's prefix) and its range's gateway.
    type Item = (IpNetwork, IpAddr);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let mut r = &self.set.0[self.idx];
            match self.cur {
                None => {
                    self.cur = Some(r.start);
                    self.start = Some(r.start);
                }
                Some(cur) => {
                    if cur == r.end {
                        self.idx = (self.idx + 1) % self.set.0.len();
                        r = &self.set.0[self.idx];
                        self.cur = Some(r.start);
                    } else {
                        self.cur = Some(next_ip(cur));
                    }
                    let cur = self.cur.expect("set");
                    match self.start {
                        None => self.start = Some(cur),
                        Some(s) if s == cur => return None,
                        Some(_) => {}
                    }
                }
            }
            let cur = self.cur.expect("set");
            if r.reserved(cur) {
                continue;
            }
            return Some((
                IpNetwork::new(cur, r.subnet.prefix()).expect("prefix"),
                r.gateway,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(subnet: &str) -> RawRange {
        RawRange {
            subnet: subnet.into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_follow_the_reference() {
        let r = Range::parse(&raw("10.244.0.0/16")).unwrap();
        assert_eq!(r.to_string(), "10.244.0.1-10.244.255.254");
        assert_eq!(r.gateway.to_string(), "10.244.0.1");
        let r6 = Range::parse(&raw("fd00::/64")).unwrap();
        assert_eq!(r6.to_string(), "fd00::1-fd00::ffff:ffff:ffff:ffff");
    }

    #[test]
    fn network_and_broadcast_bounds_are_accepted_and_never_handed_out() {
        let r = Range::parse(&RawRange {
            range_start: Some("10.0.0.0".into()),
            range_end: Some("10.0.0.7".into()),
            ..raw("10.0.0.0/29")
        })
        .unwrap();
        assert_eq!(
            r.capacity(),
            5,
            ".0 network, .1 gateway, .7 broadcast excluded"
        );
        let set = RangeSet(vec![r]);
        let handed: Vec<String> = set
            .iter_from(None)
            .map(|(a, _)| a.ip().to_string())
            .collect();
        assert_eq!(
            handed,
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
    }

    #[test]
    fn invalid_ranges_are_refused_with_the_reason() {
        let cases = [
            (raw("10.0.0.0/31"), "too small"),
            (raw("fd00::/127"), "too small"),
            (raw("10.0.0.1/24"), "host bits"),
            (raw("nonsense"), "invalid subnet"),
            (
                RawRange {
                    range_start: Some("10.0.1.5".into()),
                    ..raw("10.0.0.0/24")
                },
                "RangeStart",
            ),
            (
                RawRange {
                    range_end: Some("10.0.1.5".into()),
                    ..raw("10.0.0.0/24")
                },
                "RangeEnd",
            ),
            (
                RawRange {
                    range_start: Some("10.0.0.9".into()),
                    range_end: Some("10.0.0.5".into()),
                    ..raw("10.0.0.0/24")
                },
                "after",
            ),
            (
                RawRange {
                    gateway: Some("fd00::1".into()),
                    ..raw("10.0.0.0/24")
                },
                "family",
            ),
        ];
        for (r, want) in cases {
            let e = Range::parse(&r).unwrap_err();
            assert!(e.contains(want), "{r:?}: {e}");
        }
        assert!(
            Range::parse(&raw("10.0.0.0/30")).is_ok(),
            "a /30 is the smallest"
        );
    }

    #[test]
    fn sets_are_one_family_without_overlaps() {
        assert!(
            RangeSet::parse(&[raw("10.0.0.0/24"), raw("fd00::/64")])
                .unwrap_err()
                .contains("mixed")
        );
        assert!(
            RangeSet::parse(&[raw("10.0.0.0/16"), raw("10.0.5.0/24")])
                .unwrap_err()
                .contains("overlap")
        );
        assert!(RangeSet::parse(&[]).is_err());
        let s = RangeSet::parse(&[raw("10.0.0.0/24"), raw("10.0.1.0/24")]).unwrap();
        assert_eq!(s.to_string(), "10.0.0.1-10.0.0.254,10.0.1.1-10.0.1.254");
    }

    #[test]
    fn iteration_skips_gateways_wraps_and_ends_where_it_began() {
        let set = RangeSet::parse(&[
            RawRange {
                range_start: Some("10.0.0.1".into()),
                range_end: Some("10.0.0.3".into()),
                ..raw("10.0.0.0/24")
            },
            RawRange {
                range_start: Some("10.0.1.1".into()),
                range_end: Some("10.0.1.2".into()),
                ..raw("10.0.1.0/24")
            },
        ])
        .unwrap();
        let all: Vec<String> = set.iter_from(None).map(|(ip, _)| ip.to_string()).collect();
        assert_eq!(
            all,
            ["10.0.0.2/24", "10.0.0.3/24", "10.0.1.2/24"],
            "gateways .1 skipped"
        );
        let after: Vec<String> = set
            .iter_from(Some("10.0.0.3".parse().unwrap()))
            .map(|(ip, _)| ip.ip().to_string())
            .collect();
        assert_eq!(
            after,
            ["10.0.1.2", "10.0.0.2", "10.0.0.3"],
            "round robin, the last reserved comes last"
        );
        let outside: Vec<_> = set
            .iter_from(Some("192.168.0.1".parse().unwrap()))
            .collect();
        assert_eq!(
            outside.len(),
            3,
            "a last reservation outside the set restarts at the beginning"
        );
    }
}
