//! nf_tables over netlink, for the one change every ADD makes: appending
//! the attachment's masquerade rules (and, on a node's first ADD, the
//! table and chain they live in). Running `nft` for it cost a fork, an
//! exec and libnftables' start-up on every ADD; these few messages are
//! what `nft` itself sends, built with netlink-packet-netfilter (its
//! nftables messages and expressions) and read back by `nft -j list` like
//! any other rule. Everything else (listing, deleting, host ports) still
//! runs `nft`, and so does this when no netlink socket could be had.
//!
//! The rule `ip saddr 10.244.0.2 ip daddr != 10.244.0.0/16 ip daddr !=
//! 224.0.0.0/4 masquerade` in an `inet` table is, as nft encodes it:
//!
//! ```text
//! meta load nfproto => reg 1 ; cmp eq reg 1 0x02
//! payload load 4b @ network header + 12 => reg 1 ; cmp eq reg 1 0x0a 0xf4 0x00 0x02
//! payload load 2b @ network header + 16 => reg 1 ; cmp neq reg 1 0x0a 0xf4
//! payload load 4b @ network header + 16 => reg 1 ; bitwise reg 1 = (reg 1 & 0xf0000000) ^ 0 ; cmp neq reg 1 0xe0 ...
//! masq
//! ```
//!
//! The call's seccomp filter allows rtnetlink sockets only: an interface
//! plugin's ADD opens its netfilter socket before the filter ([`open_now`]).

use super::nft::TABLE;
use ipnetwork::IpNetwork;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
pub use netlink_packet_netfilter::NetfilterProtoFamily;
use netlink_packet_netfilter::nftables::{
    Bitwise, ChainAttribute, ChainMessage, Cmp, DataAttribute, ExpressionAttribute, Expressions,
    Hook, InetHookNumber, ListAttribute, Meta, MetaKey, NfTablesMessage, Operator, Payload,
    Register, RuleAttribute, RuleMessage, TableAttribute, TableFlags, TableMessage,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use std::io;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// NFNL_SUBSYS_NFTABLES: a batch's resource id.
const SUBSYS_NFTABLES: u16 = 10;
/// NFPROTO_IPV4, NFPROTO_IPV6.
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
/// NFT_PAYLOAD_NETWORK_HEADER.
const NETWORK_HEADER: u32 = 1;
/// NFTNL_UDATA_RULE_COMMENT, the comment in a rule's user data.
const UDATA_COMMENT: u8 = 0;
/// NF_ACCEPT, a chain's policy.
const ACCEPT: u32 = 1;

/// The socket opened before confinement, if any.
static SOCKET: Mutex<Option<Socket>> = Mutex::new(None);

fn open() -> io::Result<Socket> {
    use std::os::fd::AsFd;
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    // A kernel that never answers must not hold the call past any
    // deadline (as `nft` is killed at 10 s).
    rustix::net::sockopt::set_socket_timeout(
        socket.as_fd(),
        rustix::net::sockopt::Timeout::Recv,
        Some(std::time::Duration::from_secs(10)),
    )?;
    Ok(socket)
}

/// Open the call's netfilter socket now, before the seccomp filter; a
/// failure shows when it is used (then `nft` runs instead).
pub fn open_now() {
    let mut kept = SOCKET.lock().unwrap_or_else(|e| e.into_inner());
    if kept.is_none() {
        *kept = open().ok();
    }
}

/// Whether this process talks to nf_tables itself: it can (a socket was
/// opened before confinement, or can be opened now), and the operator has
/// not named an `nft` to go through (`WASM_CNI_NFT`: a wrapper that logs
/// or delays every change sees them all).
pub fn available() -> bool {
    std::env::var_os("WASM_CNI_NFT").is_none() && with_socket(|_| Ok(())).is_ok()
}

/// Run `f` with the call's netfilter socket (the one opened before
/// confinement, else one opened now).
pub fn with_socket<T>(f: impl FnOnce(&Socket) -> io::Result<T>) -> io::Result<T> {
    let mut kept = SOCKET.lock().unwrap_or_else(|e| e.into_inner());
    let socket = match kept.as_ref() {
        Some(s) => s,
        None => &*kept.insert(open()?),
    };
    f(socket)
}

/// One nfnetlink request, serialized.
pub(super) fn message(
    family: NetfilterProtoFamily,
    res_id: u16,
    inner: impl Into<netlink_packet_netfilter::NetfilterMessageInner>,
    flags: u16,
    seq: u32,
) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = seq;
    let mut m = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(family, 0, res_id),
            inner,
        )),
    );
    m.finalize();
    let mut buf = vec![0; m.buffer_len()];
    m.serialize(&mut buf);
    buf
}

fn payload(offset: u32, len: u32) -> ListAttribute<ExpressionAttribute> {
    Expressions::Payload(vec![
        Payload::DestinationRegister(Register::Reg1),
        Payload::Base(NETWORK_HEADER),
        Payload::Offset(offset),
        Payload::Len(len),
    ])
    .into()
}

fn cmp(op: Operator, data: Vec<u8>) -> ListAttribute<ExpressionAttribute> {
    Expressions::Cmp(vec![
        Cmp::SourceRegister(Register::Reg1),
        Cmp::Op(op),
        Cmp::Data(DataAttribute::Value(data)),
    ])
    .into()
}

fn mask(len: u32, mask: Vec<u8>) -> ListAttribute<ExpressionAttribute> {
    let zero = vec![0; mask.len()];
    Expressions::Bitwise(vec![
        Bitwise::SourceRegister(Register::Reg1),
        Bitwise::DestinationRegister(Register::Reg1),
        Bitwise::Length(len),
        Bitwise::Mask(DataAttribute::Value(mask)),
        Bitwise::Xor(DataAttribute::Value(zero)),
    ])
    .into()
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// `daddr` (at `offset`) outside `net`, as nft encodes it: a byte-aligned
/// prefix loads only its bytes, any other the whole address under a mask.
fn daddr_not_in(offset: u32, net: IpNetwork) -> Vec<ListAttribute<ExpressionAttribute>> {
    let network = octets(net.network());
    if net.prefix().is_multiple_of(8) {
        let bytes = usize::from(net.prefix() / 8);
        return vec![
            payload(offset, bytes as u32),
            cmp(Operator::NotEqual, network[..bytes].to_vec()),
        ];
    }
    let len = network.len() as u32;
    vec![
        payload(offset, len),
        mask(len, octets(net.mask())),
        cmp(Operator::NotEqual, network),
    ]
}

/// The expressions of the masquerade rule for `addr` (see the module's
/// documentation).
fn masquerade_expressions(addr: &IpNetwork) -> Vec<ListAttribute<ExpressionAttribute>> {
    let (nfproto, saddr, daddr, multicast) = match addr {
        IpNetwork::V4(_) => (NFPROTO_IPV4, 12, 16, "224.0.0.0/4"),
        IpNetwork::V6(_) => (NFPROTO_IPV6, 8, 24, "ff00::/8"),
    };
    let mut e: Vec<ListAttribute<ExpressionAttribute>> = vec![
        Expressions::Meta(vec![
            Meta::DestinationRegister(Register::Reg1),
            Meta::Key(MetaKey::Nfproto),
        ])
        .into(),
        cmp(Operator::Equal, vec![nfproto]),
    ];
    let len = octets(addr.ip()).len() as u32;
    e.push(payload(saddr, len));
    e.push(cmp(Operator::Equal, octets(addr.ip())));
    let own = IpNetwork::new(addr.network(), addr.prefix()).expect("its own network");
    e.extend(daddr_not_in(daddr, own));
    e.extend(daddr_not_in(daddr, multicast.parse().expect("a prefix")));
    e.push(ListAttribute::Element(vec![ExpressionAttribute::Name(
        "masq".into(),
    )]));
    e
}

/// A rule comment as nft keeps it: a TLV in the rule's user data.
fn comment_udata(comment: &str) -> Vec<u8> {
    let mut bytes = comment.as_bytes().to_vec();
    bytes.truncate(127);
    bytes.push(0);
    let mut udata = vec![UDATA_COMMENT, bytes.len() as u8];
    udata.extend(bytes);
    udata
}

/// One nf_tables transaction: its messages between BATCH_BEGIN and
/// BATCH_END, each asking for an answer.
struct Batch {
    bytes: Vec<u8>,
    first: u32,
    next: u32,
    count: usize,
}

impl Batch {
    fn new(messages: usize) -> Batch {
        let first = SEQUENCE.fetch_add(messages as u32 + 2, Ordering::Relaxed);
        let mut b = Batch {
            bytes: Vec::new(),
            first,
            next: first,
            count: 0,
        };
        b.push(
            NetfilterProtoFamily::Unspec,
            SUBSYS_NFTABLES,
            ControlMessage::BatchBegin,
            0,
        );
        b
    }

    fn push(
        &mut self,
        family: NetfilterProtoFamily,
        res_id: u16,
        inner: impl Into<netlink_packet_netfilter::NetfilterMessageInner>,
        flags: u16,
    ) {
        let seq = self.next;
        self.next += 1;
        self.bytes
            .extend(message(family, res_id, inner, flags, seq));
    }

    /// A message of the transaction, answered.
    fn add(&mut self, family: NetfilterProtoFamily, msg: NfTablesMessage, flags: u16) {
        self.push(family, 0, msg, flags | NLM_F_ACK);
        self.count += 1;
    }

    fn finish(mut self) -> (Vec<u8>, Answers) {
        self.push(
            NetfilterProtoFamily::Unspec,
            SUBSYS_NFTABLES,
            ControlMessage::BatchEnd,
            0,
        );
        let answers = Answers {
            count: self.count,
            seqs: self.first..=self.next - 1,
        };
        (self.bytes, answers)
    }
}

/// The batch that appends masquerade rules for `addrs` marked `comment`
/// (after the table and chain, if `with_chain`).
fn batch(comment: &str, addrs: &[IpNetwork], with_chain: bool) -> (Vec<u8>, Answers) {
    let inet = NetfilterProtoFamily::Inet;
    let mut b = Batch::new(addrs.len() + 2);
    if with_chain {
        b.add(
            inet,
            NfTablesMessage::NewTable(TableMessage {
                attributes: vec![
                    TableAttribute::Name(TABLE.into()),
                    TableAttribute::Flags(TableFlags::default()),
                ],
            }),
            NLM_F_CREATE,
        );
        b.add(
            inet,
            NfTablesMessage::NewChain(ChainMessage {
                attributes: vec![
                    ChainAttribute::Table(TABLE.into()),
                    ChainAttribute::Name(super::nft::CHAIN.into()),
                    ChainAttribute::Hook(vec![
                        Hook::Number(InetHookNumber::PostRouting.into()),
                        Hook::Priority(100),
                    ]),
                    ChainAttribute::Policy(ACCEPT),
                    ChainAttribute::Type("nat".into()),
                ],
            }),
            NLM_F_CREATE,
        );
    }
    for addr in addrs {
        b.add(
            inet,
            NfTablesMessage::NewRule(RuleMessage {
                attributes: vec![
                    RuleAttribute::Table(TABLE.into()),
                    RuleAttribute::Chain(super::nft::CHAIN.into()),
                    RuleAttribute::Expressions(masquerade_expressions(addr)),
                    RuleAttribute::UserData(comment_udata(comment)),
                ],
            }),
            NLM_F_CREATE | NLM_F_APPEND,
        );
    }
    b.finish()
}

/// The answers a batch asks for: how many, and the sequence numbers its
/// messages carry (an answer to an earlier batch is not one of them).
struct Answers {
    count: usize,
    seqs: std::ops::RangeInclusive<u32>,
}

/// Sequence numbers, unique in the process (one socket serves every
/// netfilter request: an answer is told from a stale one by its number).
static SEQUENCE: AtomicU32 = AtomicU32::new(1);

/// A fresh sequence number.
pub(super) fn next_sequence() -> u32 {
    SEQUENCE.fetch_add(1, Ordering::Relaxed)
}

/// Send one batch and read an answer to each message that asked for one
/// (an aborted batch answers them all too): the first error, as the
/// kernel's errno.
fn commit(socket: &Socket, batch: &[u8], answers: &Answers) -> io::Result<()> {
    socket.send(batch, 0)?;
    let mut rx = vec![0u8; 65536];
    let mut got = 0;
    let mut first_error = None;
    while got < answers.count {
        let size = socket.recv(&mut &mut rx[..], 0)?;
        for m in super::netlink::messages(&rx[..size]) {
            let msg = NetlinkMessage::<NetfilterMessage>::deserialize(m)
                .map_err(|e| io::Error::other(format!("nf_tables answered: {e}")))?;
            if let NetlinkPayload::Error(e) = msg.payload
                && answers.seqs.contains(&msg.header.sequence_number)
            {
                got += 1;
                if let Some(code) = e.code
                    && first_error.is_none()
                {
                    first_error = Some(io::Error::from_raw_os_error(-code.get()));
                }
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Append masquerade rules for `addrs` marked `comment`; the table and
/// chain too when `with_chain`. ENOENT: the table or chain is missing.
pub fn masquerade(comment: &str, addrs: &[IpNetwork], with_chain: bool) -> io::Result<()> {
    let (bytes, answers) = batch(comment, addrs, with_chain);
    with_socket(|socket| commit(socket, &bytes, &answers))
}

/// A rule as a listing gives it: its chain, handle and comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRule {
    pub chain: String,
    pub handle: u64,
    pub comment: Option<String>,
}

/// The comment in a rule's user data (the TLV nft writes).
fn comment_of(udata: &[u8]) -> Option<String> {
    let mut rest = udata;
    while rest.len() >= 2 {
        let (kind, len) = (rest[0], rest[1] as usize);
        let value = rest.get(2..2 + len)?;
        if kind == UDATA_COMMENT {
            let text = value.strip_suffix(&[0]).unwrap_or(value);
            return String::from_utf8(text.to_vec()).ok();
        }
        rest = &rest[2 + len..];
    }
    None
}

/// The message `buf` (one, see `netlink::messages`) as a rule of the dump
/// `seq`: its chain, handle and comment, without parsing its expressions
/// (`Some(None)`: a rule without chain or handle); `None` for any other
/// message. By hand:
/// netlink-packet-netfilter 0.4 parses every expression of a rule and
/// formats each one's bytes for an error message it then drops, which was
/// most of the time of a DEL with 500 attachments on the node.
fn listed_rule(buf: &[u8], seq: u32) -> Option<Option<ListedRule>> {
    use netlink_packet_core::{NlaBuffer, NlasIterator};
    // nlmsghdr: length, type, flags, sequence, port id; then nfgenmsg.
    const HEADER: usize = 16 + 4;
    const NEW_RULE: u16 = (libc::NFNL_SUBSYS_NFTABLES as u16) << 8 | 6;
    // NFTA_RULE_CHAIN, NFTA_RULE_HANDLE, NFTA_RULE_USERDATA.
    const CHAIN: u16 = 2;
    const HANDLE: u16 = 3;
    const USERDATA: u16 = 7;
    let word = |at: usize| Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?));
    let kind = u16::from_ne_bytes(buf.get(4..6)?.try_into().ok()?);
    let flags = u16::from_ne_bytes(buf.get(6..8)?.try_into().ok()?);
    if kind != NEW_RULE
        || word(8)? != seq
        || flags & netlink_packet_core::NLM_F_DUMP_INTR != 0
        || buf.len() < HEADER
    {
        return None;
    }
    let (mut chain, mut handle, mut comment) = (None, None, None);
    for nla in NlasIterator::new(&buf[HEADER..]) {
        let nla: NlaBuffer<&[u8]> = nla.ok()?;
        let value = nla.value();
        match nla.kind() {
            CHAIN => {
                let name = value.split(|b| *b == 0).next().unwrap_or_default();
                chain = String::from_utf8(name.to_vec()).ok();
            }
            HANDLE => handle = Some(u64::from_be_bytes(value.try_into().ok()?)),
            USERDATA => comment = comment_of(value),
            _ => {}
        }
    }
    let rule = match (chain, handle) {
        (Some(chain), Some(handle)) => Some(ListedRule {
            chain,
            handle,
            comment,
        }),
        _ => None,
    };
    Some(rule)
}

/// Every rule of a table of ours, in one dump; `None` when there is no
/// such table.
pub fn rules(family: NetfilterProtoFamily, table: &str) -> io::Result<Option<Vec<ListedRule>>> {
    rules_pausing(family, table, || {})
}

/// [`rules`], calling `pause` once between the dump's first part and the
/// rest: how a test makes the table change in the middle of a listing.
#[doc(hidden)]
pub fn rules_pausing(
    family: NetfilterProtoFamily,
    table: &str,
    pause: impl FnOnce(),
) -> io::Result<Option<Vec<ListedRule>>> {
    let mut pause = Some(pause);
    use netlink_packet_core::{NLM_F_DUMP, NLM_F_DUMP_INTR};
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let request = message(
        family,
        0,
        NfTablesMessage::GetRule(RuleMessage {
            attributes: vec![RuleAttribute::Table(table.into())],
        }),
        NLM_F_DUMP,
        seq,
    );
    with_socket(|socket| {
        socket.send(&request, 0)?;
        let mut rx = vec![0u8; 65536];
        let mut out = Vec::new();
        let mut parts = 0;
        loop {
            // The kernel makes the next part as a read takes the last: a
            // change now shows in the part after that.
            if parts == 1
                && let Some(p) = pause.take()
            {
                p();
            }
            parts += 1;
            let size = socket.recv(&mut &mut rx[..], 0)?;
            for m in super::netlink::messages(&rx[..size]) {
                // A rule of ours: read straight from its attributes (the
                // interrupted-dump flag is checked below for every other
                // message; a rule message that carries it is not taken
                // here).
                if let Some(rule) = listed_rule(m, seq) {
                    out.extend(rule);
                    continue;
                }
                let msg = NetlinkMessage::<NetfilterMessage>::deserialize(m)
                    .map_err(|e| io::Error::other(format!("nf_tables listed: {e}")))?;
                let ours = msg.header.sequence_number == seq;
                // The table changed while it was dumped (another call's
                // rules came or went): rules may be missing from it.
                if ours && msg.header.flags & NLM_F_DUMP_INTR != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::Interrupted,
                        "the rules changed while they were listed",
                    ));
                }
                match msg.payload {
                    NetlinkPayload::Done(_) if ours => return Ok(Some(out)),
                    NetlinkPayload::Error(e) if ours => {
                        return match e.code {
                            None => Ok(Some(out)),
                            Some(c) if -c.get() == libc::ENOENT => Ok(None),
                            Some(c) => Err(io::Error::from_raw_os_error(-c.get())),
                        };
                    }
                    _ => {}
                }
            }
        }
    })
}

/// Whether `family`'s table `table` has a chain `chain`: one request, and
/// `false` when the table or the chain is not there. Any table, not only
/// ours (the reference's leftovers are looked for so).
pub fn chain_exists(family: NetfilterProtoFamily, table: &str, chain: &str) -> io::Result<bool> {
    const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
    // NFT_MSG_NEWCHAIN: the answer that describes the chain.
    const NEW_CHAIN: u16 = (libc::NFNL_SUBSYS_NFTABLES as u16) << 8 | 3;
    let seq = next_sequence();
    let request = message(
        family,
        0,
        NfTablesMessage::GetChain(ChainMessage {
            attributes: vec![
                ChainAttribute::Table(table.into()),
                ChainAttribute::Name(chain.into()),
            ],
        }),
        NLM_F_ACK,
        seq,
    );
    with_socket(|socket| {
        socket.send(&request, 0)?;
        let mut rx = vec![0u8; 65536];
        let mut found = false;
        loop {
            let size = socket.recv(&mut &mut rx[..], 0)?;
            for m in super::netlink::messages(&rx[..size]) {
                // nlmsghdr: length, type, flags, sequence; an error's errno
                // follows it. Answers to earlier requests are skipped.
                let kind = u16::from_ne_bytes([m[4], m[5]]);
                if u32::from_ne_bytes([m[8], m[9], m[10], m[11]]) != seq {
                    continue;
                }
                if kind == NEW_CHAIN {
                    found = true;
                } else if kind == NLMSG_ERROR {
                    let errno = m
                        .get(16..20)
                        .map(|b| -i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .ok_or_else(|| io::Error::other("nf_tables: a short error message"))?;
                    return match errno {
                        0 => Ok(found),
                        libc::ENOENT => Ok(false),
                        e => Err(io::Error::from_raw_os_error(e)),
                    };
                }
            }
        }
    })
}

/// Delete rules of a table of ours by (chain, handle), in one batch.
pub fn delete_rules(
    family: NetfilterProtoFamily,
    table: &str,
    rules: &[&ListedRule],
) -> io::Result<()> {
    if rules.is_empty() {
        return Ok(());
    }
    let mut b = Batch::new(rules.len());
    for r in rules {
        b.add(
            family,
            NfTablesMessage::DeleteRule(RuleMessage {
                attributes: vec![
                    RuleAttribute::Table(table.into()),
                    RuleAttribute::Chain(r.chain.clone()),
                    RuleAttribute::Handle(r.handle),
                ],
            }),
            0,
        );
    }
    let (out, answers) = b.finish();
    with_socket(|socket| commit(socket, &out, &answers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comment_is_a_nul_terminated_tlv() {
        assert_eq!(comment_udata("ab"), [0, 3, b'a', b'b', 0]);
        assert_eq!(
            comment_of(&comment_udata("wasm-cni n c eth0")).as_deref(),
            Some("wasm-cni n c eth0")
        );
        // After another TLV, and none at all.
        assert_eq!(comment_of(&[7, 1, 9, 0, 2, b'x', 0]).as_deref(), Some("x"));
        assert_eq!(comment_of(&[7, 1, 9]), None);
        let long = comment_udata(&"x".repeat(300));
        assert_eq!((long[1], long.len()), (128, 130));
    }

    #[test]
    fn the_rule_matches_its_address_leaving_its_subnet_but_not_to_multicast() {
        let e = masquerade_expressions(&"10.244.0.2/16".parse().unwrap());
        // meta+cmp, payload+cmp, payload+cmp (a byte-aligned /16, as nft
        // loads it), payload+bitwise+cmp (224.0.0.0/4), masq.
        assert_eq!(e.len(), 10);
        let six = masquerade_expressions(&"fd00::5/64".parse().unwrap());
        assert_eq!(six.len(), 9, "/64 and ff00::/8 both byte-aligned");
        let odd = masquerade_expressions(&"10.244.0.2/12".parse().unwrap());
        assert_eq!(odd.len(), 11);
        let (_, answers) = batch("c", &["10.0.0.2/24".parse().unwrap()], true);
        assert_eq!(answers.count, 3);
        assert_eq!(
            answers.seqs.clone().count(),
            5,
            "begin, table, chain, rule, end"
        );
    }
}
