//! The nftables objects of host ports, as JSON (`serde_json::json!`): the
//! nftables crate has no `create` command, no concatenated map keys and
//! no `fib`, and reading our own rules back needs none of its types.

use super::{Forward, HostPort, MAP, unspecified};
use crate::kernel::nft::TABLE;
use ipnetwork::IpNetwork;
use serde_json::{Value, json};
use std::net::IpAddr;

/// NF_IP_PRI_NAT_DST, and NF_IP_PRI_RAW.
const DSTNAT: i32 = -100;
const RAW: i32 = -300;
/// Where the masquerade rules live (`nft::CHAIN`).
pub(super) const POSTROUTING: &str = crate::kernel::nft::CHAIN;

pub(super) fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

pub(super) fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn matches(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn eq(left: Value, right: Value) -> Value {
    matches("==", left, right)
}

fn prefix(net: IpNetwork) -> Value {
    json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix()}})
}

fn loopback_v4() -> IpNetwork {
    "127.0.0.0/8".parse().expect("a prefix")
}

pub(super) fn rule(chain: &str, expr: Vec<Value>, comment: Option<&str>) -> Value {
    let mut r = json!({"family": "inet", "table": TABLE, "chain": chain, "expr": expr});
    if let Some(c) = comment {
        r["comment"] = json!(c);
    }
    json!({"rule": r})
}

pub(super) fn chain(name: &str) -> Value {
    json!({"chain": {"family": "inet", "table": TABLE, "name": name}})
}

fn base_chain(name: &str, kind: &str, hook: &str, prio: i32) -> Value {
    json!({"chain": {"family": "inet", "table": TABLE, "name": name,
        "type": kind, "hook": hook, "prio": prio, "policy": "accept"}})
}

/// The node-wide part, made by the first mapping: table, map, hooks, and
/// the guard (nothing from another interface to or from 127.0.0.0/8).
pub(super) fn infrastructure() -> Vec<Value> {
    let mut objects = vec![
        json!({"table": {"family": "inet", "name": TABLE}}),
        json!({"map": {"family": "inet", "table": TABLE, "name": MAP,
            "type": ["inet_proto", "inet_service"], "map": "verdict"}}),
        base_chain("dstnat", "nat", "prerouting", DSTNAT),
        base_chain("output", "nat", "output", DSTNAT),
        base_chain(POSTROUTING, "nat", "postrouting", 100),
        base_chain("guard", "filter", "prerouting", RAW),
    ];
    for hook_chain in ["dstnat", "output"] {
        objects.push(rule(
            hook_chain,
            vec![
                eq(
                    json!({"fib": {"result": "type", "flags": ["daddr"]}}),
                    json!("local"),
                ),
                json!({"vmap": {"key": {"concat": [meta("l4proto"), payload("th", "dport")]},
                    "data": format!("@{MAP}")}}),
            ],
            None,
        ));
    }
    for field in ["daddr", "saddr"] {
        objects.push(rule(
            "guard",
            vec![
                matches("!=", meta("iiftype"), json!("loopback")),
                eq(payload("ip", field), prefix(loopback_v4())),
                json!({"drop": null}),
            ],
            None,
        ));
    }
    objects
}

pub(super) fn mark(bit: u8) -> u32 {
    1u32 << bit
}

fn family(m: &HostPort) -> (&'static str, &'static str) {
    if m.container.is_ipv4() {
        ("ip", "ipv4")
    } else {
        ("ip6", "ipv6")
    }
}

/// What a mapping's rules match first: its family and the node address
/// it is for (any but the loopback ones, unless `loopback`).
fn destination(m: &HostPort, loopback: bool) -> Vec<Value> {
    let (f, nfproto) = family(m);
    let mut e = vec![eq(meta("nfproto"), json!(nfproto))];
    match m.host_ip.filter(|ip| !unspecified(*ip)) {
        Some(ip) => e.push(eq(payload(f, "daddr"), json!(ip.to_string()))),
        None if m.container.is_ipv4() && !loopback => {
            e.push(matches("!=", payload("ip", "daddr"), prefix(loopback_v4())))
        }
        None if m.container.is_ipv4() => {}
        None => e.push(matches("!=", payload("ip6", "daddr"), json!("::1"))),
    }
    e
}

/// Whether a mapping takes the node's 127.0.0.0/8.
fn takes_loopback(m: &HostPort, loopback: bool) -> bool {
    loopback
        && m.container.is_ipv4()
        && m.host_ip
            .is_none_or(|ip| unspecified(ip) || ip.is_loopback())
}

/// The attachment's chain's rules (and its hairpin masquerade) and the
/// `create element` of its ports, for `fwd`.
pub(super) fn attachment_objects(owner: &str, pm: &str, fwd: &Forward) -> (Vec<Value>, Value) {
    let mut rules = Vec::new();
    let mut keys: Vec<Value> = Vec::new();
    let mut masqueraded: Vec<IpAddr> = Vec::new();
    for m in &fwd.mappings {
        let (f, _) = family(m);
        let port_match = |mut e: Vec<Value>| {
            e.push(eq(meta("l4proto"), json!(m.protocol.name())));
            e.push(eq(payload("th", "dport"), json!(m.host_port)));
            e
        };
        if fwd.snat {
            let set_mark = json!({"mangle": {"key": meta("mark"),
                "value": {"|": [meta("mark"), mark(fwd.mark_bit)]}}});
            let mut sources = vec![prefix(m.container)];
            if takes_loopback(m, fwd.loopback) {
                sources.push(prefix(loopback_v4()));
            }
            for source in sources {
                let mut e = destination(m, fwd.loopback);
                e.push(eq(payload(f, "saddr"), source));
                let mut e = port_match(e);
                e.push(set_mark.clone());
                rules.push(rule(pm, e, Some(owner)));
            }
            if !masqueraded.contains(&m.container.ip()) {
                masqueraded.push(m.container.ip());
                rules.push(rule(
                    POSTROUTING,
                    vec![
                        eq(payload(f, "daddr"), json!(m.container.ip().to_string())),
                        eq(
                            json!({"&": [meta("mark"), mark(fwd.mark_bit)]}),
                            json!(mark(fwd.mark_bit)),
                        ),
                        json!({"masquerade": null}),
                    ],
                    Some(owner),
                ));
            }
        }
        let mut e = port_match(destination(m, fwd.loopback));
        e.push(
            json!({"dnat": {"family": f, "addr": m.container.ip().to_string(),
            "port": m.container_port}}),
        );
        rules.push(rule(pm, e, Some(owner)));
        let key = json!({"concat": [m.protocol.name(), m.host_port]});
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let elem: Vec<Value> = keys
        .into_iter()
        .map(|k| json!([k, {"jump": {"target": pm}}]))
        .collect();
    let create = json!({"create": {"element": {"family": "inet", "table": TABLE,
        "name": MAP, "elem": elem}}});
    (rules, create)
}

#[cfg(test)]
mod tests {
    use super::super::Protocol;
    use super::*;

    fn port(host_ip: Option<&str>, container: &str, protocol: Protocol) -> HostPort {
        HostPort {
            host_ip: host_ip.map(|s| s.parse().unwrap()),
            host_port: 8080,
            protocol,
            container: container.parse().unwrap(),
            container_port: 80,
        }
    }

    #[test]
    fn any_address_leaves_out_loopback_unless_allowed() {
        let any = port(None, "10.244.0.5/16", Protocol::Tcp);
        let shut = destination(&any, false);
        assert!(shut[1].to_string().contains("127.0.0.0"), "{shut:?}");
        assert_eq!(destination(&any, true).len(), 1, "the family alone");
        let six = destination(&port(None, "fd00::5/64", Protocol::Tcp), true);
        assert!(six[1].to_string().contains("\"::1\""), "{six:?}");
    }

    #[test]
    fn one_element_per_protocol_and_port() {
        let fwd = Forward {
            mappings: vec![
                port(None, "10.244.0.5/16", Protocol::Tcp),
                port(Some("192.0.2.1"), "10.244.0.5/16", Protocol::Tcp),
                port(None, "fd00::5/64", Protocol::Tcp),
                port(None, "10.244.0.5/16", Protocol::Udp),
            ],
            snat: true,
            mark_bit: 13,
            loopback: false,
        };
        let (rules, create) = attachment_objects("o", "pm-x", &fwd);
        let elem = create["create"]["element"]["elem"].as_array().unwrap();
        assert_eq!(elem.len(), 2, "{create}");
        // Per mapping a hairpin mark and a DNAT; a masquerade per address.
        assert_eq!(rules.len(), 4 * 2 + 2);
    }
}
