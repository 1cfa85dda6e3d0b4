//! The node's listening sockets, from `/proc/self/net/{tcp,udp}{,6}` and
//! `sctp/eps`: what
//! a host port must not take over (a DNAT would steal the kubelet's port
//! from every client, the node's own connections included).
//!
//! Read before the call's Landlock rules go on ([`snapshot_now`], for a
//! call that may forward ports) and kept: the rules give calls no `/proc`
//! beyond `net` sysctls. Parsed by hand: the format is four hex fields a
//! line, and no crate reads it without pulling in a process library.

use super::hostport::Protocol;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

/// A socket that serves: (protocol, local address, port).
pub type Listener = (Protocol, IpAddr, u16);

static SNAPSHOT: Mutex<Option<Vec<Listener>>> = Mutex::new(None);

/// Read the node's listeners now and keep them for the call.
pub fn snapshot_now() {
    *SNAPSHOT.lock().unwrap_or_else(|e| e.into_inner()) = Some(read());
}

/// The listeners kept for the call, else as they are now.
pub fn listening() -> Vec<Listener> {
    match SNAPSHOT.lock().unwrap_or_else(|e| e.into_inner()).clone() {
        Some(kept) => kept,
        None => read(),
    }
}

fn read() -> Vec<Listener> {
    let mut all = Vec::new();
    for (file, protocol) in [
        ("tcp", Protocol::Tcp),
        ("tcp6", Protocol::Tcp),
        ("udp", Protocol::Udp),
        ("udp6", Protocol::Udp),
    ] {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/self/net/{file}")) {
            all.extend(parse(&text, protocol));
        }
    }
    // SCTP's endpoints, when the module is loaded.
    if let Ok(text) = std::fs::read_to_string("/proc/self/net/sctp/eps") {
        all.extend(parse_sctp(&text));
    }
    all
}

/// `ENDPT SOCK STY SST HBKT LPORT UID INODE LADDRS...`: every endpoint
/// listens on its port, at each of its addresses.
fn parse_sctp(text: &str) -> Vec<Listener> {
    let mut all = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(port) = f.get(5).and_then(|p| p.parse::<u16>().ok()) else {
            continue;
        };
        for a in f.iter().skip(8) {
            if let Ok(a) = a.trim_start_matches('*').parse::<IpAddr>() {
                all.push((Protocol::Sctp, a.to_canonical(), port));
            }
        }
    }
    all
}

/// TCP sockets in LISTEN (0A); UDP sockets bound and not connected (07,
/// no remote address).
fn parse(text: &str, protocol: Protocol) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, state) = (f.get(1)?, f.get(2)?, f.get(3)?);
            let serving = match protocol {
                Protocol::Tcp => *state == "0A",
                _ => *state == "07" && remote.split(':').all(|p| p.bytes().all(|b| b == b'0')),
            };
            if !serving {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            Some((
                protocol,
                address(addr)?,
                u16::from_str_radix(port, 16).ok()?,
            ))
        })
        .collect()
}

/// The kernel prints each 32-bit word of an address in host (little
/// endian here) order.
fn address(hex: &str) -> Option<IpAddr> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    // An IPv6 socket on `::ffff:a.b.c.d` serves IPv4's a.b.c.d.
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)).to_canonical()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_are_read_as_the_kernel_prints_them() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 00000000:2802 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0200000A:C350 0300000A:0050 01 00000000:00000000 00:00000000 00000000     0        0 3 1";
        assert_eq!(
            parse(tcp, Protocol::Tcp),
            [
                (Protocol::Tcp, "127.0.0.1".parse().unwrap(), 8080),
                (Protocol::Tcp, "0.0.0.0".parse().unwrap(), 10242),
            ]
        );
        let udp6 =
            "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 07 0";
        assert_eq!(
            parse(udp6, Protocol::Udp),
            [(Protocol::Udp, "::1".parse().unwrap(), 53)]
        );
        // A v4-mapped IPv6 socket serves the IPv4 address.
        let mapped =
            "  sl  local_address                         remote_address                        st
   0: 0000000000000000FFFF000001005B0A:1F92 00000000000000000000000000000000:0000 0A 0";
        assert_eq!(
            parse(mapped, Protocol::Tcp),
            [(Protocol::Tcp, "10.91.0.1".parse().unwrap(), 8082)]
        );
        let sctp = " ENDPT     SOCK   STY SST HBKT LPORT   UID INODE LADDRS
ffff8a 0000 2   10  29   9000     0 12345 10.0.0.1 *fd00::1";
        assert_eq!(
            parse_sctp(sctp),
            [
                (Protocol::Sctp, "10.0.0.1".parse().unwrap(), 9000),
                (Protocol::Sctp, "fd00::1".parse().unwrap(), 9000)
            ]
        );
    }
}
