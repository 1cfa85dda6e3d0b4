//! What a sandbox's node looks like, to compare before and after a call:
//! its links (kind, MTU, MAC, flags, master, alias, promiscuity), their
//! addresses, its routes, its `net.ipv4`/`net.ipv6` link sysctls and
//! forwarding, its nftables ruleset, and every file under the sandbox's
//! `/var/lib` but wasm-cni's own (its compiled-module cache and network
//! locks): IPAM state, and anything a call could write outside it.

use super::Sandbox;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState(BTreeMap<String, String>);

fn field(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl NodeState {
    pub fn take(sb: &Sandbox) -> NodeState {
        let mut m = BTreeMap::new();
        for l in sb
            .ip_json("host", &["-d", "link", "show"])
            .as_array()
            .unwrap()
        {
            let name = field(l, "ifname");
            let mut flags: Vec<String> = l["flags"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .map(|x| x.as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default();
            // Carrier follows the ports other tests' links give a bridge.
            flags.retain(|f| f != "NO-CARRIER" && f != "LOWER_UP");
            flags.sort();
            m.insert(
                format!("link {name}"),
                format!(
                    "kind={} mtu={} mac={} flags={} master={} alias={} promiscuity={}",
                    field(&l["linkinfo"], "info_kind"),
                    field(l, "mtu"),
                    field(l, "address"),
                    flags.join(","),
                    field(l, "master"),
                    field(l, "ifalias"),
                    field(l, "promiscuity"),
                ),
            );
        }
        for l in sb.ip_json("host", &["addr", "show"]).as_array().unwrap() {
            let mut addrs: Vec<String> = l["addr_info"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| format!("{}/{}", field(a, "local"), field(a, "prefixlen")))
                .collect();
            addrs.sort();
            m.insert(format!("addresses {}", field(l, "ifname")), addrs.join(" "));
        }
        for family in ["-4", "-6"] {
            let routes = sb.run_in("host", &["ip", family, "route", "show", "table", "all"]);
            // The local route of an IPv6 link-local address appears when
            // its DAD ends, a second or two after a link comes up, whoever
            // brought it up.
            let mut lines: Vec<&str> = std::str::from_utf8(&routes.stdout)
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with("local fe80:"))
                .collect();
            lines.sort();
            m.insert(format!("routes {family}"), lines.join("\n"));
        }
        let sysctls = sb.run_in(
            "host",
            &["sysctl", "-a", "-r", r"^net\.ipv[46]\.(conf\.|ip_forward)"],
        );
        for line in String::from_utf8_lossy(&sysctls.stdout).lines() {
            if let Some((k, v)) = line.split_once(" = ") {
                m.insert(format!("sysctl {k}"), v.to_string());
            }
        }
        m.insert("nft".into(), sb.nft());
        files(sb.varlib.path(), sb.varlib.path(), &mut m);
        NodeState(m)
    }

    /// What differs, one line per key.
    pub fn diff(&self, after: &NodeState) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            match after.0.get(k) {
                None => out.push(format!("- {k}: {v}")),
                Some(w) if w != v => out.push(format!("~ {k}: {v} -> {w}")),
                _ => {}
            }
        }
        for (k, w) in &after.0 {
            if !self.0.contains_key(k) {
                out.push(format!("+ {k}: {w}"));
            }
        }
        out
    }

    /// Panics, listing what changed, unless `after` is the same.
    #[track_caller]
    pub fn assert_unchanged(&self, after: &NodeState, what: &str) {
        let diff = self.diff(after);
        assert!(
            diff.is_empty(),
            "{what} changed the node:\n{}",
            diff.join("\n")
        );
    }
}

fn files(root: &Path, dir: &Path, m: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        if rel == "wasm-cni" {
            continue;
        }
        // A network's store directory and its lock file are made by the
        // first ADD and kept (as the reference does): another process may
        // be waiting on that lock. They hold no state.
        let store = rel.starts_with("cni/networks/");
        if store && rel.ends_with("/lock") {
            continue;
        }
        let ty = e.file_type().unwrap();
        if ty.is_dir() {
            if !store && rel != "cni/networks" && rel != "cni" {
                m.insert(format!("file {rel}/"), String::new());
            }
            files(root, &p, m);
        } else if ty.is_symlink() {
            let to = std::fs::read_link(&p).unwrap_or_default();
            m.insert(format!("file {rel}"), format!("-> {}", to.display()));
        } else {
            let bytes = std::fs::read(&p).unwrap_or_default();
            m.insert(
                format!("file {rel}"),
                String::from_utf8_lossy(&bytes).into_owned(),
            );
        }
    }
}
