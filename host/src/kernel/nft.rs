//! Source NAT in nftables, in a table wasm-cni owns (`inet wasm-cni`), so
//! nothing else on the node is touched. Each container address gets one
//! rule, commented with the network and container id, so DEL finds and
//! removes a container's rules without knowing its address or namespace:
//!
//! ```text
//! table inet wasm-cni {
//!   chain postrouting {
//!     type nat hook postrouting priority srcnat; policy accept;
//!     ip saddr 10.244.0.2 ip daddr != 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade comment "wasm-cni mynet c1"
//!   }
//! }
//! ```
//!
//! The `nft` binary does the talking (through the nftables crate's JSON
//! API, as netavark does): one batch, one process, per change.

use ipnetwork::IpNetwork;
use nftables::batch::Batch;
use nftables::expr::{Expression, NamedExpression, Payload, PayloadField, Prefix};
use nftables::helper::{self, NftablesError};
use nftables::schema::{Chain, NfListObject, NfObject, Rule, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::io;
use std::net::IpAddr;
use std::path::Path;

pub const TABLE: &str = "wasm-cni";
pub const CHAIN: &str = "postrouting";
/// NF_IP_PRI_NAT_SRC, what `priority srcnat` means.
const SRCNAT: i32 = 100;
/// nftables stores at most 128 bytes of comment.
const COMMENT_MAX: usize = 127;

/// The comment that marks one attachment's rules.
pub fn owner_comment(network: &str, container_id: &str) -> String {
    let c = format!("wasm-cni {network} {container_id}");
    if c.len() <= COMMENT_MAX {
        c
    } else {
        let digest = Sha256::digest(format!("{network}\0{container_id}"));
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("wasm-cni sha256:{hex}")
    }
}

/// Masquerade traffic from each address leaving its subnet, except to
/// multicast. One atomic batch: table, chain and rules together.
pub fn masquerade(network: &str, container_id: &str, addrs: &[IpNetwork]) -> io::Result<()> {
    let comment = owner_comment(network, container_id);
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(Table {
        family: NfFamily::INet,
        name: TABLE.into(),
        handle: None,
    }));
    batch.add(NfListObject::Chain(Chain {
        family: NfFamily::INet,
        table: TABLE.into(),
        name: CHAIN.into(),
        _type: Some(NfChainType::NAT),
        hook: Some(NfHook::Postrouting),
        prio: Some(SRCNAT),
        policy: Some(NfChainPolicy::Accept),
        ..Default::default()
    }));
    for addr in addrs {
        batch.add(NfListObject::Rule(masquerade_rule(addr, &comment)));
    }
    helper::apply_ruleset_with_args(
        &batch.to_nftables(),
        Some(nft_program()),
        helper::DEFAULT_ARGS,
    )
    .map_err(nft_error)
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

/// This attachment's rules with their handles, and the address each one
/// masquerades (source address, subnet prefix length).
fn owned_rules(network: &str, container_id: &str) -> io::Result<Vec<(u32, Option<IpNetwork>)>> {
    let comment = owner_comment(network, container_id);
    let listed = helper::get_current_ruleset_with_args(
        Some(nft_program()),
        ["list", "chain", "inet", TABLE, CHAIN],
    );
    let ruleset = match listed {
        Ok(r) => r,
        // No table or chain yet: nothing of ours.
        Err(NftablesError::NftFailed { stderr, .. })
            if stderr.contains("No such file or directory") =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err(nft_error(e)),
    };
    Ok(ruleset
        .objects
        .iter()
        .filter_map(|o| match o {
            NfObject::ListObject(NfListObject::Rule(r))
                if r.comment.as_deref() == Some(comment.as_str()) =>
            {
                Some((r.handle?, rule_address(r)))
            }
            _ => None,
        })
        .collect())
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
pub fn masqueraded(network: &str, container_id: &str) -> io::Result<Vec<IpNetwork>> {
    Ok(owned_rules(network, container_id)?
        .into_iter()
        .filter_map(|(_, a)| a)
        .collect())
}

/// Remove this attachment's rules; how many there were.
pub fn remove(network: &str, container_id: &str) -> io::Result<usize> {
    let rules = owned_rules(network, container_id)?;
    if rules.is_empty() {
        return Ok(0);
    }
    let mut batch = Batch::new();
    for (handle, _) in &rules {
        batch.delete(NfListObject::Rule(Rule {
            family: NfFamily::INet,
            table: TABLE.into(),
            chain: CHAIN.into(),
            handle: Some(*handle),
            ..Default::default()
        }));
    }
    helper::apply_ruleset_with_args(
        &batch.to_nftables(),
        Some(nft_program()),
        helper::DEFAULT_ARGS,
    )
    .map_err(nft_error)?;
    Ok(rules.len())
}

/// The `nft` binary: `WASM_CNI_NFT`, else the usual sbin paths (kubelet's
/// PATH often lacks them), else whatever PATH finds.
fn nft_program() -> &'static str {
    static PROGRAM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PROGRAM.get_or_init(|| {
        if let Ok(p) = std::env::var("WASM_CNI_NFT") {
            return p;
        }
        ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("nft")
            .to_string()
    })
}

fn nft_error(e: NftablesError) -> io::Error {
    match e {
        NftablesError::NftFailed {
            program,
            hint,
            stderr,
            ..
        } => io::Error::other(format!(
            "{} failed while {hint}: {}",
            program.to_string_lossy(),
            stderr.trim()
        )),
        NftablesError::NftExecution { program, inner } => io::Error::new(
            inner.kind(),
            format!(
                "cannot run {}: {inner} (install nftables, or set WASM_CNI_NFT)",
                program.to_string_lossy()
            ),
        ),
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_owners_are_hashed_to_fit() {
        assert_eq!(owner_comment("mynet", "c1"), "wasm-cni mynet c1");
        let long = owner_comment(&"n".repeat(100), &"c".repeat(64));
        assert!(long.len() <= COMMENT_MAX && long.starts_with("wasm-cni sha256:"));
        assert_ne!(long, owner_comment(&"n".repeat(100), &"d".repeat(64)));
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
