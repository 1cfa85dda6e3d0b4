//! MAC spoof checking in nftables, in wasm-cni's own bridge-family table
//! (`bridge wasm-cni`): one rule per attachment drops every frame that
//! enters the bridge from the attachment's host-side port with a source MAC
//! other than the container's, before anything else sees it:
//!
//! ```text
//! table bridge wasm-cni {
//!   chain prerouting {
//!     type filter hook prerouting priority -300; policy accept;
//!     iif "veth1a2b3c4d" ether saddr != 0a:58:0a:f4:00:05 drop comment "wasm-cni mynet c1 eth0"
//!   }
//! }
//! ```
//!
//! The port is matched by its index (`meta iif`), never by name: nftables
//! reads a trailing `*` in a name as a wildcard, and a link may be named
//! `veth*` (the reference matches `iifname`). The host removes the rule
//! when the attachment goes (DEL, GC, a failed ADD), so it never meets a
//! later link that reuses the index.
//!
//! The reference (`pkg/link/spoofcheck.go`) builds two chains per
//! attachment in the shared `bridge nat` table; one rule says the same, and
//! keeping to our own table touches nothing of anyone else's. The comment
//! is the attachment's mark, the same as its masquerade rules', so DEL, GC
//! and a failed ADD's rollback remove both together.

use super::nft::{NftError, TABLE, TableLock, apply, chain_rules, delete_rules};
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField};
use nftables::schema::{Chain, NfListObject, Rule, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use std::borrow::Cow;
use std::io;
use std::path::Path;
use std::time::Instant;

pub const CHAIN: &str = "prerouting";
/// Before the reference's (-300 too, in `bridge nat`) and every other
/// bridge hook: a spoofed frame is dropped before it is looked at.
const PRIORITY: i32 = -300;

fn rule(port: u32, mac: &str, comment: &str) -> Rule<'static> {
    let m = |left, right, op| Statement::Match(Match { left, right, op });
    Rule {
        family: NfFamily::Bridge,
        table: TABLE.into(),
        chain: CHAIN.into(),
        expr: Cow::Owned(vec![
            m(
                Expression::Named(NamedExpression::Meta(Meta { key: MetaKey::Iif })),
                Expression::Number(port),
                Operator::EQ,
            ),
            m(
                Expression::Named(NamedExpression::Payload(Payload::PayloadField(
                    PayloadField {
                        protocol: "ether".into(),
                        field: "saddr".into(),
                    },
                ))),
                Expression::String(mac.to_string().into()),
                Operator::NEQ,
            ),
            Statement::Drop(None),
        ]),
        comment: Some(comment.to_string().into()),
        ..Default::default()
    }
}

/// Drop frames from the port with index `port` whose source is not `mac`;
/// true when this created the table (so a rollback takes it away again).
pub fn enforce(
    comment: &str,
    port: u32,
    mac: &str,
    deadline: Instant,
    locks: Option<&Path>,
) -> io::Result<bool> {
    let _shared = TableLock::take(locks, false, deadline);
    let rule = NfListObject::Rule(rule(port, mac, comment));
    match apply(vec![rule.clone()], deadline) {
        Err(NftError::Missing(_)) => {
            apply(
                vec![
                    NfListObject::Table(Table {
                        family: NfFamily::Bridge,
                        name: TABLE.into(),
                        handle: None,
                    }),
                    NfListObject::Chain(Chain {
                        family: NfFamily::Bridge,
                        table: TABLE.into(),
                        name: CHAIN.into(),
                        _type: Some(NfChainType::Filter),
                        hook: Some(NfHook::Prerouting),
                        prio: Some(PRIORITY),
                        policy: Some(NfChainPolicy::Accept),
                        ..Default::default()
                    }),
                    rule,
                ],
                deadline,
            )?;
            Ok(true)
        }
        other => other.map(|()| false).map_err(io::Error::from),
    }
}

/// Remove the rules marked `comment`; how many there were.
pub fn remove(comment: &str, deadline: Instant) -> io::Result<usize> {
    let handles: Vec<u32> = chain_rules(NfFamily::Bridge, TABLE, CHAIN, deadline)?
        .into_iter()
        .filter(|(c, _)| c == comment)
        .map(|(_, h)| h)
        .collect();
    delete_rules(NfFamily::Bridge, TABLE, CHAIN, &handles, deadline)?;
    Ok(handles.len())
}

/// Remove the rules whose comment begins with `prefix` (a network's) and
/// is not in `keep`; how many there were.
pub fn retain(network: &str, keep: &[String], deadline: Instant) -> io::Result<usize> {
    let handles: Vec<u32> = chain_rules(NfFamily::Bridge, TABLE, CHAIN, deadline)?
        .into_iter()
        .filter(|(c, _)| super::nft::of_network(c, network) && !keep.contains(c))
        .map(|(_, h)| h)
        .collect();
    delete_rules(NfFamily::Bridge, TABLE, CHAIN, &handles, deadline)?;
    Ok(handles.len())
}
