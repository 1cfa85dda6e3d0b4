//! Source NAT in nftables, in a table wasm-cni owns (`inet wasm-cni`), so
//! nothing else on the node is touched. Each container address gets one
//! rule, commented with its attachment (network, container id, ifname, as
//! the spec identifies one), so DEL finds and removes exactly that
//! attachment's rules without knowing its address or namespace:
//!
//! ```text
//! table inet wasm-cni {
//!   chain postrouting {
//!     type nat hook postrouting priority srcnat; policy accept;
//!     ip saddr 10.244.0.2 ip daddr != 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade comment "wasm-cni mynet c1 eth0"
//!   }
//! }
//! ```
//!
//! The `nft` binary does the talking (through the nftables crate's JSON
//! API, as netavark does): one batch, one process, per change.

use super::exec::ExecError;
use ipnetwork::IpNetwork;
use nftables::batch::Batch;
use nftables::expr::{Expression, NamedExpression, Payload, PayloadField, Prefix};
use nftables::schema::{Chain, NfListObject, NfObject, Rule, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use std::borrow::Cow;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;

pub const TABLE: &str = "wasm-cni";
pub const CHAIN: &str = "postrouting";
/// NF_IP_PRI_NAT_SRC, what `priority srcnat` means.
const SRCNAT: i32 = 100;
/// nftables stores at most 128 bytes of comment.
const COMMENT_MAX: usize = 127;

/// The comment that marks one attachment's rules.
pub fn owner_comment(network: &str, container_id: &str, ifname: &str) -> String {
    let plain = crate::owner::tag(&[network, container_id, ifname], COMMENT_MAX);
    if !plain.starts_with("wasm-cni sha256:") {
        return plain;
    }
    // Keep the network readable when it fits, so a rule's network can be
    // told from its comment (`network_prefix`).
    let attachment = crate::owner::tag(&[container_id, ifname], 0);
    let attachment = &attachment["wasm-cni ".len()..];
    let named = format!("{}{attachment}", network_prefix(network));
    if named.len() <= COMMENT_MAX {
        named
    } else {
        // A network name too long to show beside the attachment's digest:
        // its own digest then, so the rule can still be told to be this
        // network's (a comment that was a digest of all three fields was
        // taken for another network's, and refused this network's gateway
        // beside its own masquerade).
        format!("{}{attachment}", network_digest_prefix(network))
    }
}

/// The comment earlier versions gave an attachment whose marks now show
/// the network's digest (a digest of all three fields, which GC cannot
/// tell by network): a DEL removes rules under it too, so pods added
/// before the upgrade leave nothing. `None` where the comment never
/// changed.
pub fn legacy_owner_comment(network: &str, container_id: &str, ifname: &str) -> Option<String> {
    let current = owner_comment(network, container_id, ifname);
    current
        .starts_with(&network_digest_prefix(network))
        .then(|| crate::owner::tag(&[network, container_id, ifname], COMMENT_MAX))
}

/// Whether a rule's comment marks it as `network`'s: by its name, or by
/// the digest of a name too long to show (names have no `:`, so neither
/// is ever taken for the other).
pub fn of_network(comment: &str, network: &str) -> bool {
    comment.starts_with(&network_prefix(network))
        || comment.starts_with(&network_digest_prefix(network))
}

fn network_digest_prefix(network: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(network.as_bytes());
    // 128 bits: two networks never share it by chance, nor by a search
    // for a collision (the comment then still fits: 124 bytes).
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("wasm-cni net-sha256:{hex} ")
}

/// Masquerade traffic from each address leaving its subnet, except to
/// multicast. One atomic batch: table, chain and rules together.
/// Masquerade traffic from each address leaving its subnet; true when this
/// created the table (the node's first masquerade), so a rollback knows to
/// take it away again. `locks` is where the table's lock lives (see
/// [`drop_table_if_unused`]); `None` runs without it.
pub fn masquerade(
    comment: &str,
    addrs: &[IpNetwork],
    deadline: Instant,
    locks: Option<&Path>,
) -> io::Result<bool> {
    let _shared = TableLock::take(locks, false, deadline);
    if super::nfnetlink::available() {
        // The messages themselves: no `nft` process on the ADD path.
        return match super::nfnetlink::masquerade(comment, addrs, false) {
            Ok(()) => Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                super::nfnetlink::masquerade(comment, addrs, true).map(|()| true)
            }
            Err(e) => Err(io::Error::new(e.kind(), format!("nf_tables: {e}"))),
        };
    }
    let rules: Vec<NfListObject> = addrs
        .iter()
        .map(|a| NfListObject::Rule(masquerade_rule(a, comment)))
        .collect();
    // Declaring the NAT base chain makes the kernel re-register its hook
    // (~15 ms here) even when it exists, so the chain is declared only when
    // appending to it finds it missing: on the first ADD of a node.
    match apply(rules.clone(), deadline) {
        Err(NftError::Missing(_)) => {
            let mut with_chain = vec![
                NfListObject::Table(Table {
                    family: NfFamily::INet,
                    name: TABLE.into(),
                    handle: None,
                }),
                NfListObject::Chain(Chain {
                    family: NfFamily::INet,
                    table: TABLE.into(),
                    name: CHAIN.into(),
                    _type: Some(NfChainType::NAT),
                    hook: Some(NfHook::Postrouting),
                    prio: Some(SRCNAT),
                    policy: Some(NfChainPolicy::Accept),
                    ..Default::default()
                }),
            ];
            with_chain.extend(rules);
            apply(with_chain, deadline)?;
            Ok(true)
        }
        other => other.map(|()| false).map_err(io::Error::from),
    }
}

/// Remove the table if no rule is left in it: for a rollback whose call
/// created it. nftables has no "delete if empty", so every change that
/// adds rules holds the table's lock shared, and this holds it
/// exclusively between looking and deleting: a rule added meanwhile by
/// another call cannot be deleted with the table. Without the lock (not
/// free in time, or no lock directory) the table stays.
pub fn drop_table_if_unused(
    family: NfFamily,
    chain: &str,
    locks: Option<&Path>,
    deadline: Instant,
) -> io::Result<bool> {
    let lock = TableLock::take(locks, true, deadline);
    if lock.0.is_none() {
        return Ok(false);
    }
    // The inet table also holds host ports: its maps' elements and the
    // attachments' chains count too.
    let in_use = match family {
        NfFamily::INet => super::hostport::table_in_use(deadline)?,
        _ => listed_rules(family, TABLE, chain, deadline, |_| Some(()))?.map(|r| !r.is_empty()),
    };
    // Gone already, or someone's rule is in it.
    if in_use != Some(false) {
        return Ok(false);
    }
    let mut batch = Batch::new();
    batch.delete(NfListObject::Table(Table {
        family,
        name: TABLE.into(),
        handle: None,
    }));
    match submit(batch, deadline) {
        Ok(()) => Ok(true),
        Err(NftError::Missing(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The `flock` that orders adding rules (shared) before removing a table
/// (exclusive), across wasm-cni processes.
pub(super) struct TableLock(pub(super) Option<std::fs::File>);

impl TableLock {
    pub(super) fn take(dir: Option<&Path>, exclusive: bool, deadline: Instant) -> TableLock {
        use rustix::fs::{FlockOperation, flock};
        let Some(dir) = dir else {
            return TableLock(None);
        };
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("nftables"))
        else {
            return TableLock(None);
        };
        let op = if exclusive {
            FlockOperation::NonBlockingLockExclusive
        } else {
            FlockOperation::NonBlockingLockShared
        };
        let mut pause = std::time::Duration::from_millis(1);
        loop {
            match flock(&file, op) {
                Ok(()) => return TableLock(Some(file)),
                Err(rustix::io::Errno::WOULDBLOCK) if Instant::now() + pause < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(20));
                }
                Err(_) => return TableLock(None),
            }
        }
    }
}

/// What nft says when a table or chain does not exist.
const MISSING: &str = "No such file or directory";

/// Add `objects` in one batch: one transaction, one nft process.
pub(super) fn apply(
    objects: Vec<NfListObject<'static>>,
    deadline: Instant,
) -> Result<(), NftError> {
    let mut batch = Batch::new();
    for o in objects {
        batch.add(o);
    }
    submit(batch, deadline)
}

pub(super) fn submit(batch: Batch, deadline: Instant) -> Result<(), NftError> {
    let json =
        serde_json::to_string(&batch.to_nftables()).expect("nftables JSON always serializes");
    run_nft(&["-f", "-"], Some(&json), deadline).map(drop)
}

/// A failed nft run, with what nft said.
#[derive(Debug)]
pub(super) enum NftError {
    /// The table or chain does not exist.
    Missing(String),
    Failed(String),
    Exec(io::Error),
}

impl From<NftError> for io::Error {
    fn from(e: NftError) -> io::Error {
        match e {
            NftError::Missing(m) | NftError::Failed(m) => io::Error::other(format!("nft: {m}")),
            NftError::Exec(e) => io::Error::new(
                e.kind(),
                format!(
                    "cannot run {}: {e} (install nftables, or set WASM_CNI_NFT)",
                    nft_program()
                ),
            ),
        }
    }
}

/// Run `nft -j ARGS`, with `stdin` if given, killed at `deadline`.
pub(super) fn run_nft(
    args: &[&str],
    stdin: Option<&str>,
    deadline: Instant,
) -> Result<String, NftError> {
    let mut all = vec!["-j"];
    all.extend_from_slice(args);
    match super::exec::run(nft_program(), &all, stdin, deadline) {
        Ok(out) => Ok(out),
        Err(ExecError::Spawn(e)) => Err(NftError::Exec(e)),
        Err(ExecError::Failed(said)) if said.contains(MISSING) => Err(NftError::Missing(said)),
        Err(ExecError::Failed(said)) => Err(NftError::Failed(said)),
    }
}

fn masquerade_rule(addr: &IpNetwork, comment: &str) -> Rule<'static> {
    let (proto, multicast) = match addr.ip() {
        IpAddr::V4(_) => ("ip", prefix("224.0.0.0".into(), 4)),
        IpAddr::V6(_) => ("ip6", prefix("ff00::".into(), 8)),
    };
    let field = |f: &'static str| {
        Expression::Named(NamedExpression::Payload(Payload::PayloadField(
            PayloadField {
                protocol: proto.into(),
                field: f.into(),
            },
        )))
    };
    let m = |left, right, op| Statement::Match(Match { left, right, op });
    Rule {
        family: NfFamily::INet,
        table: TABLE.into(),
        chain: CHAIN.into(),
        expr: Cow::Owned(vec![
            m(
                field("saddr"),
                Expression::String(addr.ip().to_string().into()),
                Operator::EQ,
            ),
            m(
                field("daddr"),
                prefix(addr.network().to_string(), addr.prefix()),
                Operator::NEQ,
            ),
            m(field("daddr"), multicast, Operator::NEQ),
            Statement::Masquerade(None),
        ]),
        comment: Some(comment.to_string().into()),
        ..Default::default()
    }
}

fn prefix(addr: String, len: u8) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(Expression::String(addr.into())),
        len: u32::from(len),
    }))
}

/// Every rule in wasm-cni's chain: (comment, handle, the address it
/// masquerades).
fn all_rules(deadline: Instant) -> io::Result<Vec<(String, u32, Option<IpNetwork>)>> {
    let rules = listed_rules(NfFamily::INet, TABLE, CHAIN, deadline, |r| {
        Some((comment_of(r), r.handle?, rule_address(r)))
    })?;
    // No table or chain yet: no rules.
    Ok(rules.unwrap_or_default())
}

fn owned_rules(comment: &str, deadline: Instant) -> io::Result<Vec<(u32, Option<IpNetwork>)>> {
    Ok(all_rules(deadline)?
        .into_iter()
        .filter(|(c, ..)| c == comment)
        .map(|(_, handle, addr)| (handle, addr))
        .collect())
}

/// Every masquerade rule: (its comment, the address it masquerades).
pub fn masquerade_rules(deadline: Instant) -> io::Result<Vec<(String, IpNetwork)>> {
    Ok(all_rules(deadline)?
        .into_iter()
        .filter_map(|(c, _, a)| Some((c, a?)))
        .collect())
}

/// How the comments of `network`'s rules begin (when they name it; a
/// network whose name does not fit is only in a digest).
pub fn network_prefix(network: &str) -> String {
    format!("wasm-cni {network} ")
}

fn rule_address(rule: &Rule) -> Option<IpNetwork> {
    let mut saddr = None;
    let mut subnet_len = None;
    for stmt in rule.expr.iter() {
        let Statement::Match(m) = stmt else { continue };
        let Expression::Named(NamedExpression::Payload(Payload::PayloadField(f))) = &m.left else {
            continue;
        };
        match (f.field.as_ref(), &m.right, &m.op) {
            ("saddr", Expression::String(s), Operator::EQ) => saddr = s.parse::<IpAddr>().ok(),
            ("daddr", Expression::Named(NamedExpression::Prefix(p)), Operator::NEQ)
                if subnet_len.is_none() =>
            {
                subnet_len = u8::try_from(p.len).ok();
            }
            _ => {}
        }
    }
    IpNetwork::new(saddr?, subnet_len?).ok()
}

/// The addresses masqueraded for this attachment.
pub fn masqueraded(comment: &str, deadline: Instant) -> io::Result<Vec<IpNetwork>> {
    Ok(owned_rules(comment, deadline)?
        .into_iter()
        .filter_map(|(_, a)| a)
        .collect())
}

/// Remove this attachment's rules (masquerade, spoof check, host ports);
/// how many there were.
pub fn remove(comment: &str, deadline: Instant) -> io::Result<usize> {
    if let Some(removed) = remove_over_netlink(comment)? {
        return Ok(removed);
    }
    // The two tables side by side: every DEL does this, and each is an
    // `nft` listing and a transaction.
    use super::hostport::Masquerades;
    std::thread::scope(|s| {
        let spoof = s.spawn(|| super::spoof_check::remove(comment, deadline));
        let inet = super::hostport::unmap(comment, Masquerades::All, deadline)?;
        let spoof = spoof
            .join()
            .map_err(|p| crate::bug::caught("removing spoof checks", &*p))??;
        Ok(inet + spoof)
    })
}

/// [`remove`] without `nft`: one dump and one batch per table, for an
/// attachment with no host ports (its map elements are found through
/// what `nft` reads back). `None`: `nft` has to do it (no netlink socket,
/// a rule the listing could not read, host ports).
fn remove_over_netlink(comment: &str) -> io::Result<Option<usize>> {
    use super::nfnetlink::{ListedRule, delete_rules, rules};
    use netlink_packet_netfilter::NetfilterProtoFamily as Family;
    if !super::nfnetlink::available() {
        return Ok(None);
    }
    let listed = |family| match rules(family, TABLE) {
        Ok(r) => Some(r.unwrap_or_default()),
        Err(e) => {
            crate::log::debug(&format!("listing wasm-cni's rules over netlink: {e}"));
            None
        }
    };
    let (Some(inet), Some(bridge)) = (listed(Family::Inet), listed(Family::Bridge)) else {
        return Ok(None);
    };
    let ports = super::hostport::chain_name(comment);
    if inet.iter().any(|r| r.chain == ports) {
        return Ok(None);
    }
    // In the chains `nft` would look in, as it would.
    fn marked<'a>(all: &'a [ListedRule], chain: &str, comment: &str) -> Vec<&'a ListedRule> {
        all.iter()
            .filter(|r| r.chain == chain && r.comment.as_deref() == Some(comment))
            .collect()
    }
    let inet_mine = marked(&inet, CHAIN, comment);
    let bridge_mine = marked(&bridge, super::spoof_check::CHAIN, comment);
    delete_rules(Family::Inet, TABLE, &inet_mine)?;
    delete_rules(Family::Bridge, TABLE, &bridge_mine)?;
    Ok(Some(inet_mine.len() + bridge_mine.len()))
}

/// Remove every rule of `network` whose comment is not in `keep` (the
/// comments of its valid attachments): GC.
pub fn retain(network: &str, keep: &[String], deadline: Instant) -> io::Result<usize> {
    let inet = super::hostport::retain(network, keep, deadline)?;
    let spoof = super::spoof_check::retain(network, keep, deadline)?;
    Ok(inet + spoof)
}

fn family_name(family: NfFamily) -> io::Result<&'static str> {
    Ok(match family {
        NfFamily::INet => "inet",
        NfFamily::IP => "ip",
        NfFamily::IP6 => "ip6",
        NfFamily::Bridge => "bridge",
        _ => return Err(io::Error::other("unsupported nftables family")),
    })
}

/// The rules of any table's chain: (comment, handle). A missing table or
/// chain has none.
pub fn chain_rules(
    family: NfFamily,
    table: &str,
    chain: &str,
    deadline: Instant,
) -> io::Result<Vec<(String, u32)>> {
    let rules = listed_rules(family, table, chain, deadline, |r| {
        Some((comment_of(r), r.handle?))
    })?;
    Ok(rules.unwrap_or_default())
}

fn comment_of(rule: &Rule) -> String {
    rule.comment.as_deref().unwrap_or_default().to_string()
}

/// `f` of every rule in a chain, in one `nft list chain`; `None` when the
/// table or chain does not exist.
fn listed_rules<T>(
    family: NfFamily,
    table: &str,
    chain: &str,
    deadline: Instant,
    f: impl Fn(&Rule) -> Option<T>,
) -> io::Result<Option<Vec<T>>> {
    let listed = match run_nft(
        &["list", "chain", family_name(family)?, table, chain],
        None,
        deadline,
    ) {
        Ok(json) => json,
        Err(NftError::Missing(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let ruleset: nftables::schema::Nftables = serde_json::from_str(&listed)
        .map_err(|e| io::Error::other(format!("nft printed JSON we cannot read: {e}")))?;
    Ok(Some(
        ruleset
            .objects
            .iter()
            .filter_map(|o| match o {
                NfObject::ListObject(NfListObject::Rule(r)) => f(r),
                _ => None,
            })
            .collect(),
    ))
}

/// Delete rules of any table's chain by handle, in one batch.
pub fn delete_rules(
    family: NfFamily,
    table: &str,
    chain: &str,
    handles: &[u32],
    deadline: Instant,
) -> io::Result<()> {
    if handles.is_empty() {
        return Ok(());
    }
    let mut batch = Batch::new();
    for handle in handles {
        batch.delete(NfListObject::Rule(Rule {
            family,
            table: table.to_string().into(),
            chain: chain.to_string().into(),
            handle: Some(*handle),
            ..Default::default()
        }));
    }
    submit(batch, deadline).map_err(io::Error::from)
}

/// The `nft` binary: `WASM_CNI_NFT`, else the usual sbin paths (kubelet's
/// PATH often lacks them), else whatever PATH finds.
pub(crate) fn nft_program() -> &'static str {
    static PROGRAM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PROGRAM.get_or_init(|| {
        if let Ok(p) = std::env::var("WASM_CNI_NFT") {
            // A bare name is looked up in PATH now: the spawner and
            // Landlock take absolute paths.
            return super::exec::in_path(&p).unwrap_or(p);
        }
        ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("nft")
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_attachments_keep_their_network_readable() {
        let id = "c".repeat(64);
        let c = owner_comment("mynet", &id, "eth0");
        assert!(
            c.len() <= COMMENT_MAX && c.starts_with(&network_prefix("mynet")),
            "{c}"
        );
        assert_ne!(c, owner_comment("mynet", &id, "eth1"));
        // A network name too long to show beside a container id's digest
        // is shown as its own digest, and still tells whose the rule is.
        for long in ["n".repeat(49), "n".repeat(74), "n".repeat(200)] {
            let c = owner_comment(&long, &id, "eth0");
            assert!(c.len() <= COMMENT_MAX, "{c}");
            assert!(of_network(&c, &long), "{c}");
            assert!(!of_network(&c, "mynet") && !of_network(&c, &"n".repeat(48)));
            assert_ne!(c, owner_comment(&long, &id, "eth1"));
        }
        // Comments as earlier versions wrote them are unchanged where they
        // told the network (rules of running pods stay theirs).
        let edge = "n".repeat(48);
        assert_eq!(
            owner_comment(&edge, &id, "eth0"),
            format!("wasm-cni {edge} {id} eth0")
        );
        assert!(of_network(&owner_comment("mynet", &id, "eth0"), "mynet"));
        // What earlier versions wrote for the long ones, for DEL to remove.
        let long = "n".repeat(74);
        let old = legacy_owner_comment(&long, &id, "eth0").unwrap();
        assert!(old.starts_with("wasm-cni sha256:") && old.len() <= COMMENT_MAX);
        assert_eq!(legacy_owner_comment("mynet", &id, "eth0"), None);
        assert_eq!(legacy_owner_comment(&edge, &id, "eth0"), None);
        assert_eq!(
            owner_comment("mynet", "c1", "eth0"),
            "wasm-cni mynet c1 eth0"
        );
    }

    #[test]
    fn rule_reads_back_its_address() {
        let addr: IpNetwork = "10.244.3.7/16".parse().unwrap();
        assert_eq!(rule_address(&masquerade_rule(&addr, "x")), Some(addr));
        let addr6: IpNetwork = "fd00::5/64".parse().unwrap();
        let rule = masquerade_rule(&addr6, "x");
        assert_eq!(rule_address(&rule), Some(addr6));
        let json = serde_json::to_string(&rule).unwrap();
        assert!(
            json.contains(r#""protocol":"ip6""#) && json.contains(r#""ff00::""#),
            "{json}"
        );
    }
}
