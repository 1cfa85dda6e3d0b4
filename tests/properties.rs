//! Bad input never panics: property tests over everything the host reads
//! from a runtime (the `CNI_*` environment, the config on stdin with its
//! `prevResult`) or from a guest (results and errors through the WIT
//! conversions), and over printing results in every CNI version. Any input
//! gives a value or a CNI error, never a panic.
//!
//! `PROPTEST_CASES` sets the cases per property (tests/run.sh: the default
//! 256; a long run: `PROPTEST_CASES=1000000 cargo test --release --test
//! properties`).

use proptest::prelude::*;
use serde_json::{Map, Value};
use std::collections::HashMap;
use wasm_cni::cni::version::{CniVersion, SUPPORTED};
use wasm_cni::cni::{CniEnv, CniResult, NetConf};
use wasm_cni::contract::convert;

/// Keys the host and the plugins read, so generated documents reach deep.
const KEYS: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "plugin",
    "ipam",
    "prevResult",
    "dataDir",
    "resolvConf",
    "cni.dev/valid-attachments",
    "cni.dev/attachments",
    "containerID",
    "ifname",
    "ips",
    "address",
    "gateway",
    "interface",
    "version",
    "routes",
    "dst",
    "gw",
    "mtu",
    "advmss",
    "priority",
    "table",
    "scope",
    "interfaces",
    "mac",
    "sandbox",
    "socketPath",
    "pciID",
    "dns",
    "nameservers",
    "domain",
    "search",
    "options",
    "ip4",
    "ip6",
    "ip",
    "Name",
    "IPAM",
];

/// Strings that mean something somewhere, and anything at all.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "1.1.0",
            "1.0.0",
            "0.4.0",
            "0.3.1",
            "0.2.0",
            "0.1.0",
            "",
            "9.9.9",
            "mynet",
            "bridge",
            "host-local",
            "10.1.2.3/24",
            "10.1.2.3",
            "fd00::1/64",
            "::/0",
            "0.0.0.0/0",
            "10.1.2.300/24",
            "/var/lib/cni/networks",
            "/etc",
            "..",
            "eth0",
            "c1",
            "aa:bb:cc:dd:ee:ff",
        ])
        .prop_map(str::to_string),
        any::<String>(),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(KEYS.to_vec()).prop_map(str::to_string),
                        any::<String>()
                    ],
                    inner
                ),
                0..8
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// The host's log to errors only: a tolerant DEL warns about every
/// undecodable prevResult, a million times over in a long run.
fn quiet() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: set once, before any property runs the host's code (the only
    // reader of the variable, through the logger's one-time init).
    ONCE.call_once(|| unsafe { std::env::set_var("WASM_CNI_LOG", "error") });
}

/// Result documents of the shape the readers accept, so printing and the
/// WIT conversion see real addresses, routes and interfaces: small numbers
/// (interface indexes in and out of range), well-formed and broken
/// prefixes, long strings.
fn result_doc() -> impl Strategy<Value = Value> {
    let prefix = prop_oneof![
        (any::<[u8; 4]>(), 0u8..=33)
            .prop_map(|(a, l)| format!("{}.{}.{}.{}/{l}", a[0], a[1], a[2], a[3])),
        (any::<[u16; 8]>(), 0u8..=129).prop_map(|(a, l)| {
            let ip = std::net::Ipv6Addr::from(a);
            format!("{ip}/{l}")
        }),
        text(),
    ];
    let small = || {
        prop_oneof![
            Just(Value::Null),
            (0i64..5).prop_map(Value::from),
            (-2i64..70000).prop_map(Value::from)
        ]
    };
    let ip = (prefix.clone(), prop::option::of(text()), small()).prop_map(|(a, g, i)| {
        let mut o = serde_json::json!({"address": a, "interface": i});
        if let Some(g) = g {
            o["gateway"] = Value::String(g.split('/').next().unwrap_or("").to_string());
        }
        o
    });
    let route = (prefix, small(), small(), small(), small(), small())
        .prop_map(|(d, m, a, p, t, s)| serde_json::json!({"dst": d, "mtu": m, "advmss": a, "priority": p, "table": t, "scope": s}));
    let iface = (text(), prop::option::of(text()), small(), prop::option::of(".{0,5000}"))
        .prop_map(|(n, mac, mtu, sb)| serde_json::json!({"name": n, "mac": mac, "mtu": mtu, "sandbox": sb}));
    (
        prop::collection::vec(iface, 0..4),
        prop::collection::vec(ip, 0..4),
        prop::collection::vec(route, 0..4),
    )
        .prop_map(
            |(i, a, r)| serde_json::json!({"interfaces": i, "ips": a, "routes": r, "dns": {}}),
        )
}

fn versions() -> Vec<CniVersion> {
    SUPPORTED
        .iter()
        .map(|v| CniVersion::parse(v).unwrap())
        .collect()
}

/// Every result prints in every version, or says why it cannot.
fn print_everywhere(r: &CniResult) {
    for v in versions() {
        let _ = r.to_json(v);
    }
}

proptest! {
    #[test]
    fn any_bytes_on_stdin_are_a_config_or_an_error(bytes in any::<Vec<u8>>(), tolerant in any::<bool>()) {
        quiet();
        let _ = NetConf::parse_for(&bytes, tolerant);
    }

    #[test]
    fn any_json_document_is_a_config_or_an_error(doc in json(), tolerant in any::<bool>()) {
        quiet();
        let text = doc.to_string();
        if let Ok(conf) = NetConf::parse_for(text.as_bytes(), tolerant) {
            if let Some(prev) = &conf.prev_result {
                print_everywhere(prev);
            }
            // What guests get is read again the same way.
            prop_assert!(NetConf::parse_for(conf.raw.as_bytes(), tolerant).is_ok());
        }
    }

    #[test]
    fn any_result_document_converts_and_prints(doc in prop_oneof![json(), result_doc()]) {
        if let Ok(r) = CniResult::from_json(&doc) {
            print_everywhere(&r);
            // What a guest may return is checked on the way in (an
            // interface index past the interfaces is refused, not panicked
            // on); what passes is the same result.
            if let Ok(back) = convert::result_from_wit(convert::result_to_wit(&r)) {
                prop_assert_eq!(back, r);
            }
        }
    }

    #[test]
    fn any_environment_is_an_environment_or_an_error(
        vars in prop::collection::hash_map(
            prop_oneof![
                prop::sample::select(vec!["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"]).prop_map(str::to_string),
                any::<String>(),
            ],
            prop_oneof![
                prop::sample::select(vec!["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION", "c1", "/var/run/netns/x", "eth0", "IgnoreUnknown=1;IP=10.0.0.5", "a=b=c;;", "/opt/cni/bin"]).prop_map(str::to_string),
                any::<String>(),
            ],
            0..8,
        )
    ) {
        let vars: HashMap<String, String> = vars;
        let _ = CniEnv::from_vars(&vars);
    }

    #[test]
    fn any_guest_error_is_a_bounded_cni_error(code in any::<u32>(), msg in ".{0,6000}", details in ".{0,20000}") {
        let e = convert::error_from_wit(wasm_cni::contract::wasm_cni::plugin::types::CniError { code, msg, details });
        prop_assert!(e.msg.len() <= 4096 + 64 && e.details.len() <= 16384 + 64, "{} {}", e.msg.len(), e.details.len());
        let _ = e.to_json("1.1.0");
    }
}
