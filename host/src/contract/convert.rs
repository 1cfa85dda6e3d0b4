//! WIT values to host values and back: addresses, prefixes, results.

use super::CapError;
use super::wasm_cni::plugin::types as wit;
use crate::cni;
use ipnetwork::IpNetwork;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub fn ip_from_wit(ip: wit::IpAddress) -> IpAddr {
    match ip {
        wit::IpAddress::V4((a, b, c, d)) => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        wit::IpAddress::V6((a, b, c, d, e, f, g, h)) => {
            IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h))
        }
    }
}

pub fn ip_to_wit(ip: IpAddr) -> wit::IpAddress {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            wit::IpAddress::V4((a, b, c, d))
        }
        IpAddr::V6(v6) => {
            let [a, b, c, d, e, f, g, h] = v6.segments();
            wit::IpAddress::V6((a, b, c, d, e, f, g, h))
        }
    }
}

/// A guest's prefix, checked: the length must fit the family.
pub fn prefix_from_wit(p: wit::IpPrefix) -> Result<IpNetwork, CapError> {
    let ip = ip_from_wit(p.address);
    IpNetwork::new(ip, p.prefix_len)
        .map_err(|_| CapError::invalid(format!("prefix length {} for {ip}", p.prefix_len)))
}

pub fn prefix_to_wit(net: IpNetwork) -> wit::IpPrefix {
    wit::IpPrefix {
        address: ip_to_wit(net.ip()),
        prefix_len: net.prefix(),
    }
}

pub fn prefix_to_wit_parts(ip: IpAddr, len: u8) -> wit::IpPrefix {
    wit::IpPrefix {
        address: ip_to_wit(ip),
        prefix_len: len,
    }
}

/// A guest's result, checked; the error says which field is wrong.
pub fn result_from_wit(r: wit::CniResult) -> Result<cni::CniResult, String> {
    let check =
        |p: wit::IpPrefix, what: &str| prefix_from_wit(p).map_err(|e| format!("{what}: {e}"));
    let n_ifaces = r.interfaces.len() as u32;
    Ok(cni::CniResult {
        interfaces: r
            .interfaces
            .into_iter()
            .map(|i| cni::result::Interface {
                name: i.name,
                mac: i.mac,
                mtu: i.mtu,
                sandbox: i.sandbox,
                socket_path: i.socket_path,
                pci_id: i.pci_id,
            })
            .collect(),
        ips: r
            .ips
            .into_iter()
            .map(|ip| {
                if let Some(i) = ip.interface.filter(|i| *i >= n_ifaces) {
                    return Err(format!(
                        "ips[].interface {i} is past the {n_ifaces} interfaces"
                    ));
                }
                Ok(cni::result::IpConfig {
                    address: check(ip.address, "ips[].address")?,
                    gateway: ip.gateway.map(ip_from_wit),
                    interface: ip.interface,
                })
            })
            .collect::<Result<_, _>>()?,
        routes: r
            .routes
            .into_iter()
            .map(|rt| {
                Ok(cni::result::Route {
                    dst: check(rt.dst, "routes[].dst")?,
                    gw: rt.gw.map(ip_from_wit),
                    mtu: rt.mtu,
                    advmss: rt.advmss,
                    priority: rt.priority,
                    table: rt.table,
                    scope: rt.scope,
                })
            })
            .collect::<Result<_, String>>()?,
        dns: cni::result::Dns {
            nameservers: r.dns.nameservers,
            domain: r.dns.domain,
            search: r.dns.search,
            options: r.dns.options,
        },
    })
}

pub fn result_to_wit(r: &cni::CniResult) -> wit::CniResult {
    wit::CniResult {
        interfaces: r
            .interfaces
            .iter()
            .map(|i| wit::InterfaceInfo {
                name: i.name.clone(),
                mac: i.mac.clone(),
                mtu: i.mtu,
                sandbox: i.sandbox.clone(),
                socket_path: i.socket_path.clone(),
                pci_id: i.pci_id.clone(),
            })
            .collect(),
        ips: r
            .ips
            .iter()
            .map(|ip| wit::IpConfig {
                address: prefix_to_wit(ip.address),
                gateway: ip.gateway.map(ip_to_wit),
                interface: ip.interface,
            })
            .collect(),
        routes: r
            .routes
            .iter()
            .map(|rt| wit::Route {
                dst: prefix_to_wit(rt.dst),
                gw: rt.gw.map(ip_to_wit),
                mtu: rt.mtu,
                advmss: rt.advmss,
                priority: rt.priority,
                table: rt.table,
                scope: rt.scope,
            })
            .collect(),
        dns: wit::Dns {
            nameservers: r.dns.nameservers.clone(),
            domain: r.dns.domain.clone(),
            search: r.dns.search.clone(),
            options: r.dns.options.clone(),
        },
    }
}

/// The longest `msg` and `details` a guest's error keeps: an error is read
/// by people and logged, not a channel for megabytes.
const MAX_MSG: usize = 4096;
const MAX_DETAILS: usize = 16 << 10;

/// `s` cut to at most `max` bytes, on a character boundary, saying so.
fn bounded(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("... (cut)");
    }
    s
}

/// A guest's error. Code 0 means success in CNI, so a guest cannot fail
/// with it: that becomes 100.
pub fn error_from_wit(e: wit::CniError) -> cni::CniError {
    let code = if e.code == 0 {
        cni::error::code::PLUGIN_FAILED
    } else {
        e.code
    };
    cni::CniError {
        code,
        msg: bounded(e.msg, MAX_MSG),
        details: bounded(e.details, MAX_DETAILS),
    }
}

pub fn error_to_wit(e: cni::CniError) -> wit::CniError {
    wit::CniError {
        code: e.code,
        msg: e.msg,
        details: e.details,
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_to_string(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A guest's MAC string: six colon-separated hex bytes, unicast.
pub fn mac_from_string(s: &str) -> Result<Vec<u8>, CapError> {
    let bad = || {
        CapError::invalid(format!(
            "MAC address {s:?}: expected six hex bytes like 0a:58:0a:f4:00:01"
        ))
    };
    let bytes: Vec<u8> = s
        .split(':')
        .map(|b| {
            // from_str_radix alone would take "+a".
            if b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()) {
                u8::from_str_radix(b, 16).map_err(|_| bad())
            } else {
                Err(bad())
            }
        })
        .collect::<Result<_, _>>()?;
    if bytes.len() != 6 {
        return Err(bad());
    }
    if bytes[0] & 1 == 1 {
        return Err(CapError::invalid(format!("MAC address {s:?} is multicast")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for ip in ["10.244.0.5", "fd00::1:2", "::", "255.255.255.255"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_from_wit(ip_to_wit(ip)), ip);
        }
        let bad = wit::IpPrefix {
            address: ip_to_wit("10.0.0.1".parse().unwrap()),
            prefix_len: 33,
        };
        assert!(prefix_from_wit(bad).is_err());
    }

    #[test]
    fn macs_are_checked() {
        assert_eq!(
            mac_from_string("0a:58:0a:f4:00:01").unwrap(),
            vec![0x0a, 0x58, 0x0a, 0xf4, 0, 1]
        );
        assert_eq!(
            mac_to_string(&[0x0a, 0x58, 0x0a, 0xf4, 0, 1]),
            "0a:58:0a:f4:00:01"
        );
        for bad in [
            "+a:58:0a:f4:00:01",
            "",
            "0a:58:0a:f4:00",
            "0a:58:0a:f4:00:01:02",
            "zz:58:0a:f4:00:01",
            "01:00:5e:00:00:01",
            "a:58:0a:f4:00:01",
        ] {
            assert!(mac_from_string(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_guest_result_pointing_past_its_interfaces_is_rejected() {
        let r = wit::CniResult {
            interfaces: vec![],
            ips: vec![wit::IpConfig {
                address: prefix_to_wit("10.0.0.2/24".parse().unwrap()),
                gateway: None,
                interface: Some(2),
            }],
            routes: vec![],
            dns: wit::Dns {
                nameservers: vec![],
                domain: None,
                search: vec![],
                options: vec![],
            },
        };
        assert!(result_from_wit(r).unwrap_err().contains("interface 2"));
    }
}
