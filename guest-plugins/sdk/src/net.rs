//! Addresses: the WIT types to and from `std::net` and `ipnetwork`.

use crate::types::{IpAddress, IpPrefix};
use ipnetwork::IpNetwork;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

impl From<IpAddr> for IpAddress {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, d] = v4.octets();
                IpAddress::V4((a, b, c, d))
            }
            IpAddr::V6(v6) => {
                let [a, b, c, d, e, f, g, h] = v6.segments();
                IpAddress::V6((a, b, c, d, e, f, g, h))
            }
        }
    }
}

impl From<IpAddress> for IpAddr {
    fn from(ip: IpAddress) -> Self {
        match ip {
            IpAddress::V4((a, b, c, d)) => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            IpAddress::V6((a, b, c, d, e, f, g, h)) => {
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h))
            }
        }
    }
}

impl From<IpNetwork> for IpPrefix {
    fn from(net: IpNetwork) -> Self {
        IpPrefix {
            address: net.ip().into(),
            prefix_len: net.prefix(),
        }
    }
}

impl From<IpPrefix> for IpNetwork {
    fn from(p: IpPrefix) -> Self {
        // The host only hands out valid prefix lengths.
        IpNetwork::new(p.address.into(), p.prefix_len)
            .expect("host-provided prefix length is valid")
    }
}

impl IpAddress {
    pub fn is_v4(&self) -> bool {
        matches!(self, IpAddress::V4(_))
    }
}

impl IpPrefix {
    /// `10.244.0.0/16` for `10.244.0.5/16`.
    pub fn network(&self) -> IpNetwork {
        let net = IpNetwork::from(*self);
        IpNetwork::new(net.network(), net.prefix()).expect("same prefix length")
    }
}

impl std::fmt::Display for IpAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        IpAddr::from(*self).fmt(f)
    }
}

impl std::fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(bytes: [u8; 6]) -> String {
    bytes.map(|b| format!("{b:02x}")).join(":")
}

/// A random, locally administered, unicast MAC (from wasi:random, which the
/// host fills from the kernel's generator).
pub fn random_mac() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("wasi:random is always linked");
    bytes[0] = (bytes[0] | 0x02) & 0xfe;
    mac_string(bytes)
}
