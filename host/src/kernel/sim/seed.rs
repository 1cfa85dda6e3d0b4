//! A simulated node seeded from the real one, read only (`wasm-cni plan`):
//! the node's links, addresses and routes, its sysctls as they are read,
//! the container's namespace and wasm-cni's rules where this process may
//! read them. What it may not read is marked [`Unknown`] and noted.
//!
//! Not read: bridge ports' VLANs (one dump per port), the container's
//! sysctls (a fresh namespace's defaults are assumed), iptables.

use super::{Namespace, Rule, SimLink, SimNode, SysctlSource, Unknown};
use crate::kernel::linux::Linux;
use crate::kernel::{Kernel, Ns};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long reading wasm-cni's rules may take.
const NFT_TIME: Duration = Duration::from_secs(5);

/// One namespace as `real` has it, its indices moved up by `shift` (a
/// container's indices are its own, and may be the node's too).
async fn read(real: &Linux, ns: Ns, shift: u32) -> std::io::Result<Namespace> {
    let mut out = Namespace::default();
    let at = |i: u32| i + shift;
    for mut l in real.link_list(ns).await? {
        l.index = at(l.index);
        l.master = l.master.map(at);
        // A peer elsewhere has the other namespace's index: unknown here.
        l.peer = if l.peer_elsewhere {
            None
        } else {
            l.peer.map(at)
        };
        out.links.insert(
            l.index,
            SimLink {
                state: l,
                vlans: Vec::new(),
                hairpin: false,
            },
        );
    }
    out.addresses = real
        .addr_list(ns, None)
        .await?
        .into_iter()
        .map(|(i, a)| (at(i), a))
        .collect();
    out.routes = real
        .route_list(ns, None)
        .await?
        .into_iter()
        .map(|mut r| {
            r.oif = r.oif.map(at);
            r
        })
        .collect();
    Ok(out)
}

/// Seed `sim` from this node; `netns` is the call's `CNI_NETNS`. What
/// could not be read, in words.
pub async fn from_real(sim: &SimNode, netns: Option<&Path>) -> Vec<String> {
    let mut notes = Vec::new();
    let real = match Linux::new(netns.map(Path::to_path_buf), None) {
        Ok(r) => r,
        Err(e) => {
            notes.push(format!("this process's namespace could not be opened: {e}"));
            return notes;
        }
    };
    match read(&real, Ns::Host, 0).await {
        Ok(host) => sim.seed_namespace(None, host),
        Err(e) => notes.push(format!("the node's links could not be read: {e}")),
    }
    sim.set_sysctl_source(SysctlSource(Box::new(|key| {
        std::fs::read_to_string(Path::new("/proc/sys").join(key))
            .ok()
            .map(|v| v.trim_end_matches('\n').to_string())
    })));
    if let Some(path) = netns {
        let name = path.to_string_lossy().into_owned();
        let read_container = async {
            real.open_container().await?;
            read(&real, Ns::Container, sim.next_index()).await
        };
        match read_container.await {
            Ok(ns) => sim.seed_namespace(Some(&name), ns),
            Err(e) => {
                notes.push(format!(
                    "the container namespace {name} could not be read ({e}): an empty one is assumed"
                ));
                sim.add_container(&name);
                sim.set_unknown(Unknown::Container);
            }
        }
    }
    let deadline = Instant::now() + NFT_TIME;
    let spoof = crate::kernel::nft::chain_rules(
        nftables::types::NfFamily::Bridge,
        crate::kernel::nft::TABLE,
        crate::kernel::spoof_check::CHAIN,
        deadline,
    );
    match (real.masquerade_rules(deadline).await, spoof) {
        (Ok(masq), Ok(spoof)) => {
            for (owner, addr) in masq {
                sim.add_rule(Rule::Masquerade { owner, addr });
            }
            for (owner, _) in spoof {
                sim.add_rule(Rule::SpoofCheck {
                    owner,
                    port: 0,
                    mac: String::new(),
                });
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            // nft's own words vary with its version: in the log only.
            crate::log::debug(&format!("reading wasm-cni's rules: {e}"));
            notes.push(
                "wasm-cni's nftables rules could not be read (listing them needs CAP_NET_ADMIN): none are assumed"
                    .into(),
            );
            sim.set_unknown(Unknown::Firewall);
        }
    }
    sim.set_unknown(Unknown::Iptables);
    notes
}

/// Copy a directory's regular files (not links, not subdirectories) to
/// `to`, read only on the node's side; how many.
pub fn copy_files(from: &Path, to: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    let entries = match std::fs::read_dir(from) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    std::fs::create_dir_all(to)?;
    let files: BTreeMap<_, _> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| (e.file_name(), e.path()))
        .collect();
    for (name, path) in files {
        std::fs::copy(&path, to.join(name))?;
        n += 1;
    }
    Ok(n)
}
