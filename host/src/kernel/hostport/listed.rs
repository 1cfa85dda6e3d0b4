//! Reading host ports back from wasm-cni's table as `nft -j` lists it:
//! an attachment's map elements, rules and mappings.

use super::{HostPort, MAP, Protocol};
use crate::kernel::nft::{NftError, TABLE, run_nft};
use ipnetwork::IpNetwork;
use serde_json::{Value, json};
use std::io;
use std::net::IpAddr;

/// Every object of wasm-cni's inet table; `None` when there is no table.
pub(super) fn table(deadline: std::time::Instant) -> io::Result<Option<Vec<Value>>> {
    let listed = match run_nft(&["list", "table", "inet", TABLE], None, deadline) {
        Ok(json) => json,
        Err(NftError::Missing(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut v: Value = serde_json::from_str(&listed)
        .map_err(|e| io::Error::other(format!("nft printed JSON we cannot read: {e}")))?;
    match v.get_mut("nftables").map(Value::take) {
        Some(Value::Array(objects)) => Ok(Some(objects)),
        _ => Err(io::Error::other("nft listed no \"nftables\" array")),
    }
}

/// The keys of the map's elements that jump to `pm`.
pub(super) fn elements_of<'a>(
    objects: &'a [Value],
    pm: &'a str,
) -> impl Iterator<Item = &'a Value> {
    objects
        .iter()
        .filter_map(|o| o.get("map"))
        .filter(|map| map["name"] == MAP)
        .flat_map(move |map| {
            map.get("elem")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(move |e| e[1]["jump"]["target"].as_str() == Some(pm))
                .map(|e| &e[0])
        })
}

pub(super) fn rules_of<'a>(
    objects: &'a [Value],
    chain: &'a str,
) -> impl Iterator<Item = &'a Value> {
    objects
        .iter()
        .filter_map(|o| o.get("rule"))
        .filter(move |r| r["chain"].as_str() == Some(chain))
}

pub(super) fn chain_exists(objects: &[Value], name: &str) -> bool {
    objects
        .iter()
        .any(|o| o["chain"]["name"].as_str() == Some(name))
}

/// The commands that take attachment chain `pm` away with its elements.
pub(super) fn removal(objects: &[Value], pm: &str) -> Vec<Value> {
    let mut commands: Vec<Value> = Vec::new();
    let keys: Vec<Value> = elements_of(objects, pm).cloned().collect();
    if !keys.is_empty() {
        commands.push(
            json!({"delete": {"element": {"family": "inet", "table": TABLE,
            "name": MAP, "elem": keys}}}),
        );
    }
    if chain_exists(objects, pm) {
        commands.push(json!({"flush": super::rules::chain(pm)}));
        commands.push(json!({"delete": super::rules::chain(pm)}));
    }
    commands
}

/// Whether a postrouting rule is a host port's masquerade (matches the
/// mark) rather than a masquerade of the container's own traffic.
pub(super) fn is_hairpin_masquerade(rule: &Value) -> bool {
    rule["expr"]
        .as_array()
        .is_some_and(|e| e.iter().any(|x| x["match"]["left"].get("&").is_some()))
}

/// The container address of a DNAT rule that takes the node's loopback
/// addresses: one for 127.x, or for any IPv4 address with no exclusion.
pub(super) fn loopback_target(rule: &Value) -> Option<IpAddr> {
    let expr = rule["expr"].as_array()?;
    let dnat = expr.iter().find_map(|x| x.get("dnat"))?;
    if dnat["family"] != "ip" {
        return None;
    }
    let mut daddr_matched = false;
    for x in expr {
        let m = &x["match"];
        if m["left"]["payload"]["field"] == "daddr" {
            daddr_matched = true;
            let to_loopback = m["op"] == "=="
                && m["right"]
                    .as_str()
                    .and_then(|s| s.parse::<IpAddr>().ok())
                    .is_some_and(|ip| ip.is_loopback());
            if to_loopback {
                return dnat["addr"].as_str()?.parse().ok();
            }
        }
    }
    if daddr_matched {
        return None;
    }
    dnat["addr"].as_str()?.parse().ok()
}

/// The mappings an attachment's chain makes, from its DNAT rules.
pub(super) fn mappings_in(objects: &[Value], pm: &str) -> Vec<HostPort> {
    rules_of(objects, pm).filter_map(mapping_of).collect()
}

/// The mapping a DNAT rule of an attachment's chain makes: the container's
/// address alone (the subnet a hairpin is judged by is not read back).
fn mapping_of(rule: &Value) -> Option<HostPort> {
    let (mut host_ip, mut host_port, mut protocol, mut dnat) = (None, None, None, None);
    for x in rule["expr"].as_array()? {
        let m = &x["match"];
        let (left, right) = (&m["left"], &m["right"]);
        match left["payload"]["field"].as_str() {
            Some("daddr") if m["op"] == "==" => {
                host_ip = right.as_str().and_then(|s| s.parse().ok());
            }
            Some("dport") => {
                host_port = right.as_u64().and_then(|p| u16::try_from(p).ok());
                // nft folds `meta l4proto tcp th dport` into `tcp dport`.
                let proto = left["payload"]["protocol"].as_str();
                protocol = proto.and_then(Protocol::from_name).or(protocol);
            }
            _ => {}
        }
        if left["meta"]["key"] == "l4proto" {
            protocol = right.as_str().and_then(Protocol::from_name);
        }
        if let Some(d) = x.get("dnat") {
            let addr = d["addr"].as_str().and_then(|s| s.parse::<IpAddr>().ok());
            let port = d["port"].as_u64().and_then(|p| u16::try_from(p).ok());
            dnat = addr.zip(port);
        }
    }
    let (ip, container_port) = dnat?;
    Some(HostPort {
        host_ip,
        host_port: host_port?,
        protocol: protocol?,
        container: IpNetwork::from(ip),
        container_port,
    })
}

#[cfg(test)]
mod tests {
    use super::super::rules::{POSTROUTING, attachment_objects};
    use super::super::{Forward, Protocol};
    use super::*;

    #[test]
    fn rules_read_back_as_the_mappings_they_make() {
        let port = |host_ip: Option<&str>, container: &str| HostPort {
            host_ip: host_ip.map(|s| s.parse().unwrap()),
            host_port: 8080,
            protocol: Protocol::Sctp,
            container: container.parse().unwrap(),
            container_port: 80,
        };
        let fwd = Forward {
            mappings: vec![
                port(None, "10.244.0.5/16"),
                port(Some("10.0.0.1"), "10.244.0.5/16"),
                port(None, "fd00::5/64"),
            ],
            snat: true,
            mark_bit: 13,
            loopback: false,
        };
        let (mut objects, _) = attachment_objects("o", "pm-x", &fwd);
        objects.push(json!({"chain": {"name": "pm-x"}}));
        let alone: Vec<HostPort> = fwd
            .mappings
            .iter()
            .map(|m| HostPort {
                container: IpNetwork::from(m.container.ip()),
                ..m.clone()
            })
            .collect();
        assert_eq!(mappings_in(&objects, "pm-x"), alone);
        assert!(rules_of(&objects, "pm-x").all(|r| loopback_target(r).is_none()));
        let open = Forward {
            loopback: true,
            ..fwd.clone()
        };
        let (objects, _) = attachment_objects("o", "pm-x", &open);
        let targets: Vec<IpAddr> = rules_of(&objects, "pm-x")
            .filter_map(loopback_target)
            .collect();
        assert_eq!(
            targets,
            ["10.244.0.5".parse::<IpAddr>().unwrap()],
            "the IPv4 one for any address"
        );
        let masq: Vec<&Value> = rules_of(&objects, POSTROUTING).collect();
        assert!(masq.len() == 2 && masq.iter().all(|r| is_hairpin_masquerade(r)));
    }
}
