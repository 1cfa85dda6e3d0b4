//! Clearing stale UDP conntrack entries for host ports, as the reference
//! `portmap` does after it adds its rules: a UDP flow to a host port that
//! began before the port was mapped (a client retrying every second) has a
//! conntrack entry without the DNAT, and every later datagram of it
//! follows that entry past the new rule until it times out. Deleting the
//! entries whose original destination port is the host port makes the
//! next datagram a new flow, which the DNAT catches.
//!
//! Over ctnetlink (netlink-packet-netfilter's conntrack messages): dump the
//! table of one family, delete each entry that matches by its original
//! tuple. Only in the node's namespace (the thread's), only flows to the
//! node's own addresses (the reference deletes every UDP flow to the
//! port, through the node too: a pod's DNS to 8.8.8.8 is not this
//! mapping's), and best effort, as the reference: a failure is logged, not
//! the call's.
//!
//! The call's seccomp filter allows no netfilter socket: the call's one
//! is opened before it (`nfnetlink::open_now`).

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};
use netlink_sys::Socket;
use std::io;
use std::net::IpAddr;

/// A ctnetlink request and its sequence number.
fn request(family: NetfilterProtoFamily, msg: ConntrackMessage, flags: u16) -> (Vec<u8>, u32) {
    let seq = super::nfnetlink::next_sequence();
    (super::nfnetlink::message(family, 0, msg, flags, seq), seq)
}

/// Every message the kernel sends for one request, until DONE (a dump) or
/// the ACK; a netlink error is returned as one.
fn exchange(socket: &Socket, (buf, seq): &(Vec<u8>, u32)) -> io::Result<Vec<ConntrackMessage>> {
    socket.send(buf, 0)?;
    let mut out = Vec::new();
    let mut rx = vec![0u8; 65536];
    loop {
        let size = socket.recv(&mut &mut rx[..], 0)?;
        for m in super::netlink::messages(&rx[..size]) {
            let msg = NetlinkMessage::<NetfilterMessage>::deserialize(m)
                .map_err(|e| io::Error::other(format!("ctnetlink: {e}")))?;
            // An answer to an earlier request on the shared socket.
            if msg.header.sequence_number != *seq {
                continue;
            }
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        None => Ok(out),
                        Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                    };
                }
                NetlinkPayload::InnerMessage(NetfilterMessage {
                    inner: NetfilterMessageInner::Conntrack(ct),
                    ..
                }) => out.push(ct),
                _ => {}
            }
        }
    }
}

/// Whether an original tuple is UDP to one of `targets` (address, port).
fn udp_to(tuple: &[Tuple], targets: &[(IpAddr, u16)]) -> bool {
    let mut udp = false;
    let (mut dst, mut dport) = (None, None);
    for t in tuple {
        match t {
            Tuple::Ip(ip) => {
                for a in ip {
                    if let IPTuple::DestinationAddress(d) = a {
                        dst = Some(*d);
                    }
                }
            }
            Tuple::Proto(p) => {
                for x in p {
                    match x {
                        ProtoTuple::Protocol(Protocol::Udp) => udp = true,
                        ProtoTuple::DestinationPort(d) => dport = Some(*d),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    udp && dst.zip(dport).is_some_and(|t| targets.contains(&t))
}

/// Delete the UDP entries to `targets` (a node address and a host port:
/// flows to the node, not through it) of both families; how many went.
pub fn clear_udp(targets: &[(IpAddr, u16)]) -> io::Result<usize> {
    if targets.is_empty() {
        return Ok(0);
    }
    super::nfnetlink::with_socket(|socket| clear_with(socket, targets))
}

fn clear_with(socket: &Socket, targets: &[(IpAddr, u16)]) -> io::Result<usize> {
    let mut cleared = 0;
    for family in [NetfilterProtoFamily::IPv4, NetfilterProtoFamily::IPv6] {
        let dump = request(family, ConntrackMessage::Get(vec![]), NLM_F_DUMP);
        for entry in exchange(socket, &dump)? {
            let ConntrackMessage::New(attrs) = entry else {
                continue;
            };
            let Some(orig) = attrs.iter().find_map(|a| match a {
                ConntrackAttribute::CtaTupleOrig(t) => Some(t),
                _ => None,
            }) else {
                continue;
            };
            if !udp_to(orig, targets) {
                continue;
            }
            let delete = request(
                family,
                ConntrackMessage::Delete(vec![ConntrackAttribute::CtaTupleOrig(orig.clone())]),
                NLM_F_ACK,
            );
            match exchange(socket, &delete) {
                Ok(_) => cleared += 1,
                // Gone meanwhile (timed out, or deleted by another call).
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(cleared)
}
