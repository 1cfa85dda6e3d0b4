//! What the reference `bridge` (containernetworking/plugins) leaves on the
//! node for an attachment's masquerade, found the way it names it, so a DEL
//! by wasm-cni of a pod the reference ADDed leaves nothing behind:
//!
//! - iptables (its default backend, and the only one before v1.5): a chain
//!   `CNI-<first 24 hex of sha512(network + container id)>` in `nat`, and a
//!   POSTROUTING rule `-s <ip> -j <chain>` commented
//!   `name: "<network>" id: "<container id>"` (`utils.FormatChainName`,
//!   `utils.FormatComment`), in iptables and ip6tables;
//! - nftables (v1.5+, `ipMasqBackend: nftables`): rules in
//!   `inet cni_plugins_masquerade` chain `masq_checks` whose comment begins
//!   `<16 hex of sha512(network)>-<16 hex of sha512(ifname:container id)>`.
//!
//! Only those: the chain derived from this network and container id, the
//! jump rules whose target is that chain and whose comment names the same
//! pair, and the nft rules with this attachment's hash. The reference's
//! tables and base chains stay (other pods use them).

use super::exec::{self, ExecError};
use nftables::types::NfFamily;
use sha2::{Digest, Sha512};
use std::io;
use std::time::Instant;

const NFT_TABLE: &str = "cni_plugins_masquerade";
const NFT_CHAIN: &str = "masq_checks";

fn sha512_hex(s: &str) -> String {
    Sha512::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `utils.FormatChainName(network, container id)`.
pub fn chain_name(network: &str, container_id: &str) -> String {
    format!(
        "CNI-{}",
        &sha512_hex(&format!("{network}{container_id}"))[..24]
    )
}

/// `utils.FormatComment(network, container id)`: Go's `%q` of each. Network
/// names and container ids are `[A-Za-z0-9_.-]` and a few more printable
/// characters, which `%q` leaves as they are but for `"` and `\`.
pub fn iptables_comment(network: &str, container_id: &str) -> String {
    format!("name: {} id: {}", go_quote(network), go_quote(container_id))
}

fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// How the nft backend's comments for this attachment begin.
pub fn nft_instance_hash(network: &str, ifname: &str, container_id: &str) -> String {
    format!(
        "{}-{}",
        &sha512_hex(network)[..16],
        &sha512_hex(&format!("{ifname}:{container_id}"))[..16]
    )
}

/// Remove this attachment's reference masquerade state; how many rules
/// and chains went. A node without iptables (or without the reference's
/// table) has none.
pub fn remove(
    network: &str,
    container_id: &str,
    ifname: &str,
    deadline: Instant,
) -> io::Result<usize> {
    let chain = chain_name(network, container_id);
    let comment = iptables_comment(network, container_id);
    let prefix = nft_instance_hash(network, ifname, container_id);
    let look = Present::ask(&chain);
    if look == Present::NOWHERE {
        return Ok(0);
    }
    // Three independent places, looked at side by side: a DEL waits for
    // the slowest, not the sum (each is a process or two).
    std::thread::scope(|s| {
        let v4 = s.spawn(|| {
            if look.v4 {
                remove_iptables(iptables(), &chain, &comment, deadline)
            } else {
                Ok(0)
            }
        });
        let v6 = s.spawn(|| {
            if look.v6 {
                remove_iptables(ip6tables(), &chain, &comment, deadline)
            } else {
                Ok(0)
            }
        });
        let nft = s.spawn(|| {
            if !look.nft {
                return Ok(0);
            }
            let stale: Vec<u32> =
                super::nft::chain_rules(NfFamily::INet, NFT_TABLE, NFT_CHAIN, deadline)?
                    .into_iter()
                    .filter(|(c, _)| c.starts_with(&prefix))
                    .map(|(_, handle)| handle)
                    .collect();
            super::nft::delete_rules(NfFamily::INet, NFT_TABLE, NFT_CHAIN, &stale, deadline)?;
            Ok::<_, io::Error>(stale.len())
        });
        let mut removed = 0;
        for h in [v4, v6, nft] {
            removed += h
                .join()
                .map_err(|p| crate::bug::caught("reference cleanup", &*p))??;
        }
        Ok(removed)
    })
}

/// Where the reference may have left something for an attachment. Asked
/// of the kernel (a netlink request per place, and a file) before three
/// processes are run for it on every DEL (`iptables -S`, `ip6tables -S`,
/// `nft list`), which cost a DEL more CPU than all the rest of its work on
/// a node that never ran the reference:
///
/// - iptables over nf_tables (Debian's `iptables` since 11, and what most
///   nodes run): the attachment's chain is an nf_tables chain `CNI-…` in
///   table `nat` of family ip (ip6). Its jump rule cannot outlive it (a
///   jump needs its target: the reference deletes the jump first), so no
///   chain, nothing to remove.
/// - legacy iptables: its tables are not nf_tables'; a namespace with a
///   legacy `nat` table lists it in `/proc/self/net/ip_tables_names`
///   (`ip6_tables_names`), and then `iptables` is asked as before.
/// - the nftables backend: the chain `masq_checks` of `inet
///   cni_plugins_masquerade`.
///
/// A question that cannot be asked (no netfilter socket; `WASM_CNI_NFT`
/// names an `nft` to go through) or fails counts as "maybe": the place is
/// looked at the old way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Present {
    v4: bool,
    v6: bool,
    nft: bool,
}

impl Present {
    const NOWHERE: Present = Present {
        v4: false,
        v6: false,
        nft: false,
    };
    const MAYBE_EVERYWHERE: Present = Present {
        v4: true,
        v6: true,
        nft: true,
    };

    fn ask(chain: &str) -> Present {
        use super::nfnetlink::{self, NetfilterProtoFamily as F};
        if !nfnetlink::available() {
            return Present::MAYBE_EVERYWHERE;
        }
        let chain_in = |family, table: &str, chain: &str| {
            nfnetlink::chain_exists(family, table, chain).unwrap_or_else(|e| {
                crate::log::debug(&format!(
                    "reference cleanup: cannot ask nf_tables for {table} {chain}: {e}"
                ));
                true
            })
        };
        let legacy_nat = |names: &str| match std::fs::read_to_string(names) {
            Ok(tables) => tables.lines().any(|t| t == "nat"),
            // No legacy table at all in this kernel (the module is not
            // loaded): the file is not there.
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(_) => true,
        };
        let look = Present {
            v4: chain_in(F::IPv4, "nat", chain) || legacy_nat("/proc/self/net/ip_tables_names"),
            v6: chain_in(F::IPv6, "nat", chain) || legacy_nat("/proc/self/net/ip6_tables_names"),
            nft: chain_in(F::Inet, NFT_TABLE, NFT_CHAIN),
        };
        if look == Present::NOWHERE {
            crate::log::debug(&format!(
                "reference cleanup: nothing of the reference's here (no chain {chain}, no legacy nat table, no {NFT_TABLE} {NFT_CHAIN})"
            ));
        } else {
            crate::log::debug(&format!("reference cleanup: looking in {look:?}"));
        }
        look
    }
}

pub(crate) fn iptables() -> &'static str {
    exec::find_program(&["/usr/sbin/iptables", "/sbin/iptables"], "iptables")
}

pub(crate) fn ip6tables() -> &'static str {
    exec::find_program(&["/usr/sbin/ip6tables", "/sbin/ip6tables"], "ip6tables")
}

/// `program -w -t nat ARGS`; `None` when the program is not installed.
fn nat(program: &str, args: &[&str], deadline: Instant) -> io::Result<Option<String>> {
    let mut all = vec!["-w", "-t", "nat"];
    all.extend_from_slice(args);
    match exec::run(program, &all, None, deadline) {
        Ok(out) => Ok(Some(out)),
        Err(ExecError::Spawn(e)) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(ExecError::Spawn(e)) => Err(io::Error::new(
            e.kind(),
            format!("cannot run {program}: {e}"),
        )),
        Err(ExecError::Failed(said)) => Err(io::Error::other(format!(
            "{program} -t nat {}: {said}",
            args.join(" ")
        ))),
    }
}

fn remove_iptables(
    program: &str,
    chain: &str,
    comment: &str,
    deadline: Instant,
) -> io::Result<usize> {
    // `-S` prints every rule as the arguments that would append it: the
    // jump rules are found (and deleted) by their exact arguments. Only
    // POSTROUTING and the chain are listed, not the whole `nat` table (on
    // a node with kube-proxy in iptables mode that is thousands of rules).
    // A node whose `nat` table cannot be read (no ip6 NAT) has none of ours.
    let listed = match nat(program, &["-S", "POSTROUTING"], deadline) {
        Ok(Some(listed)) => listed,
        Ok(None) => return Ok(0),
        // No `nat` table (and none can be made: no module) holds nothing;
        // any other failure (a lock held past the deadline) fails the DEL,
        // to be retried, rather than leave a rule that would masquerade the
        // address IPAM hands out next.
        Err(e) if no_nat_table(&e) => {
            crate::log::debug(&format!("reference cleanup: {program}: {e}"));
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    let rules: Vec<Vec<String>> = listed.lines().filter_map(shlex::split).collect();
    // The chain is looked at only when something jumps to it (the
    // reference deletes the jump first): a chain nothing jumps to does
    // nothing, and listing it costs every DEL a process. One that cannot
    // be listed is left as it is (iptables-nft words "no such chain"
    // several ways).
    let referenced = rules
        .iter()
        .any(|a| a.first().is_some_and(|f| f == "-A") && target(a) == Some(chain));
    let in_chain = if referenced {
        match nat(program, &["-S", chain], deadline) {
            Ok(listed) => listed.unwrap_or_default(),
            Err(e) => {
                crate::log::debug(&format!("reference cleanup: {e}"));
                String::new()
            }
        }
    } else {
        String::new()
    };
    let chain_lines: Vec<Vec<String>> = in_chain.lines().filter_map(shlex::split).collect();
    let jumps: Vec<&Vec<String>> = rules
        .iter()
        .filter(|a| a.first().is_some_and(|f| f == "-A") && target(a) == Some(chain))
        .collect();
    // The chain's name hashes network + container id with no separator, so
    // ("ab", "c") and ("a", "bc") share it: the chain is this attachment's
    // only if everything in it and everything jumping to it says so.
    let ours = |a: &&Vec<String>| value_of(a, "--comment") == Some(comment);
    let chain_rules: Vec<&Vec<String>> = chain_lines
        .iter()
        .filter(|a| a.first().is_some_and(|f| f == "-A"))
        .collect();
    let whole_chain_ours = jumps.iter().all(ours) && chain_rules.iter().all(ours);
    let mut removed = 0;
    for args in jumps.iter().filter(|a| is_jump_of(a, chain, comment)) {
        let mut delete: Vec<&str> = args.iter().map(String::as_str).collect();
        delete[0] = "-D";
        nat(program, &delete, deadline)?;
        removed += 1;
    }
    let declared = chain_lines
        .iter()
        .any(|a| a.len() == 2 && a[0] == "-N" && a[1] == chain);
    if declared && whole_chain_ours {
        nat(program, &["-F", chain], deadline)?;
        nat(program, &["-X", chain], deadline)?;
        removed += 1;
    } else if declared {
        crate::log::warn(&format!(
            "reference cleanup: chain {chain} is not only this attachment's ({comment}): left as it is"
        ));
    }
    Ok(removed)
}

/// What iptables says when the `nat` table is not there at all.
fn no_nat_table(e: &io::Error) -> bool {
    let said = e.to_string();
    said.contains("Table does not exist") || said.contains("can't initialize")
}

/// The argument after `flag`.
fn value_of<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// A rule's jump target.
fn target(args: &[String]) -> Option<&str> {
    value_of(args, "-j")
}

/// `-A POSTROUTING ... -m comment --comment <comment> ... -j <chain>`.
fn is_jump_of(args: &[String], chain: &str, comment: &str) -> bool {
    args.first().is_some_and(|a| a == "-A")
        && args.get(1).is_some_and(|c| c == "POSTROUTING")
        && target(args) == Some(chain)
        && value_of(args, "--comment") == Some(comment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_reference() {
        // Values from containernetworking/plugins v1.7.1's own functions.
        assert_eq!(chain_name("mynet", "ctr1"), "CNI-5145007e2a8415ce07579739");
        assert_eq!(
            nft_instance_hash("mynet", "eth0", "ctr1"),
            "d23676b4f2d9fe04-7883a6f9ce71eedb"
        );
        assert_eq!(
            iptables_comment("mynet", "ctr1"),
            r#"name: "mynet" id: "ctr1""#
        );
    }

    #[test]
    fn only_the_jump_to_this_chain_with_this_comment_matches() {
        let chain = chain_name("mynet", "ctr1");
        let comment = iptables_comment("mynet", "ctr1");
        let rule = |c: &str, j: &str| {
            shlex::split(&format!(
                r#"-A POSTROUTING -s 10.1.0.5/32 -m comment --comment "{}" -j {j}"#,
                c.replace('"', "\\\"")
            ))
            .unwrap()
        };
        assert!(is_jump_of(&rule(&comment, &chain), &chain, &comment));
        assert!(!is_jump_of(&rule(&comment, "CNI-other"), &chain, &comment));
        let other = iptables_comment("mynet", "ctr2");
        assert!(!is_jump_of(&rule(&other, &chain), &chain, &comment));
        let mut elsewhere = rule(&comment, &chain);
        elsewhere[1] = "PREROUTING".into();
        assert!(!is_jump_of(&elsewhere, &chain, &comment));
    }
}
