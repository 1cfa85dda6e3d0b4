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
/// container's indices are its own, and may be the node's too), and its
/// veths whose peer is in another namespace: (index here, the peer's index
/// there).
async fn read(real: &Linux, ns: Ns, shift: u32) -> std::io::Result<(Namespace, Vec<(u32, u32)>)> {
    let mut out = Namespace::default();
    let mut elsewhere = Vec::new();
    let at = |i: u32| i + shift;
    for mut l in real.link_list(ns).await? {
        l.index = at(l.index);
        l.master = l.master.map(at);
        // A peer elsewhere has the other namespace's index: paired later.
        if l.peer_elsewhere
            && let Some(p) = l.peer.take()
        {
            elsewhere.push((l.index, p));
        }
        l.peer = l.peer.map(at);
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
    Ok((out, elsewhere))
}

/// Pair the veths of the node and of the container whose peers are each
/// other (the container's indices shifted by `shift`).
fn pair(
    host: &mut Namespace,
    host_ends: &[(u32, u32)],
    container: &mut Namespace,
    container_ends: &[(u32, u32)],
    shift: u32,
) {
    for &(h, p) in host_ends {
        let Some(&(c, _)) = container_ends
            .iter()
            .find(|&&(c, q)| c - shift == p && q == h)
        else {
            continue;
        };
        if let Some(l) = host.links.get_mut(&h) {
            l.state.peer = Some(c);
        }
        if let Some(l) = container.links.get_mut(&c) {
            l.state.peer = Some(h);
        }
    }
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
    let (mut host, host_ends) = match read(&real, Ns::Host, 0).await {
        Ok(h) => h,
        Err(e) => {
            notes.push(format!("the node's links could not be read: {e}"));
            (Namespace::fresh(), Vec::new())
        }
    };
    let shift = host.links.keys().max().copied().unwrap_or(0) + 1;
    sim.set_sysctl_source(SysctlSource(Box::new(|key| {
        std::fs::read_to_string(Path::new("/proc/sys").join(key))
            .ok()
            .map(|v| v.trim_end_matches('\n').to_string())
    })));
    let own = |p: &Path| {
        let here = crate::kernel::netns::Netns::current().map(|n| n.id());
        let there = crate::kernel::netns::Netns::open(p).map(|n| n.id());
        matches!((here, there), (Ok(a), Ok(b)) if a == b)
    };
    if let Some(path) = netns.filter(|p| own(p)) {
        // The call refuses it (code 8): so must the plan.
        sim.container_is_the_node(&path.to_string_lossy());
    } else if let Some(path) = netns {
        let name = path.to_string_lossy().into_owned();
        let read_container = async {
            real.open_container().await?;
            read(&real, Ns::Container, shift).await
        };
        match read_container.await {
            Ok((mut ns, ends)) => {
                pair(&mut host, &host_ends, &mut ns, &ends, shift);
                sim.seed_namespace(Some(&name), ns);
            }
            Err(e) => {
                notes.push(format!(
                    "the container namespace {name} could not be read ({e}): an empty one is assumed"
                ));
                sim.add_container(&name);
                sim.set_unknown(Unknown::Container);
            }
        }
    }
    sim.seed_namespace(None, host);
    let deadline = Instant::now() + NFT_TIME;
    let spoof = crate::kernel::nft::chain_rules(
        nftables::types::NfFamily::Bridge,
        crate::kernel::nft::TABLE,
        crate::kernel::spoof_check::CHAIN,
        deadline,
    );
    let ports =
        crate::kernel::netns::blocking(move || crate::kernel::hostport::all_mapped(deadline)).await;
    match (real.masquerade_rules(deadline).await, spoof, ports) {
        (Ok(masq), Ok(spoof), Ok(ports)) => {
            for (owner, port) in ports {
                // Whether it covers loopback too is not read back: the
                // policy decides that for new mappings alike.
                sim.add_rule(Rule::HostPort {
                    owner,
                    port,
                    loopback: false,
                });
            }
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
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
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

/// Copy the store `root`/`below` of the real node to `to` (its files, as
/// the store reads them: the walk follows no link, only regular files are
/// read); how many. None there: nothing copied.
pub fn copy_store(root: &Path, below: &Path, to: &Path) -> std::io::Result<usize> {
    use crate::kernel::store::StoreDir;
    let Some(from) = StoreDir::open(root, below, false)? else {
        return Ok(0);
    };
    let names: BTreeMap<String, ()> = from.names()?.into_iter().map(|n| (n, ())).collect();
    std::fs::create_dir_all(to)?;
    let Some(into) = StoreDir::open(to, below, true)? else {
        return Ok(0);
    };
    let mut n = 0;
    for name in names.keys() {
        if let Some(bytes) = from.read(name)? {
            into.replace(name, &bytes)?;
            n += 1;
        }
    }
    Ok(n)
}
