//! `wasm-cni plan`: what a CNI call would do on this node, without doing
//! it. The input is a call's (the `CNI_*` environment, the config on
//! stdin); it runs through the same code as a call, against a simulated
//! node (`kernel::sim`) seeded read-only from this one: its links,
//! addresses, routes and sysctls, the container's namespace and wasm-cni's
//! rules where this process may read them, the network's IPAM store and
//! `resolvConf` copied. Printed: every capability call in order with its
//! outcome (allowed, denied, failed), what the call would change, the
//! result it would return, and what could not be known (a part of the node
//! it could not read, a native IPAM plugin it does not run) instead of a
//! guess.
//!
//! Nothing on the node changes: the simulation has the kernel, a private
//! temporary directory has the files, the compiled-module cache is only
//! read, no log file is written, and the only program started is `nft`
//! (`WASM_CNI_NFT`), to list wasm-cni's rules (`nft -j list chain`); no
//! plugin is executed.

use crate::kernel::sim::seed;
use crate::kernel::sim::{SimNode, Snapshot};
use crate::policy::Policy;
use crate::runtime::node::{Node, Simulated};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Run the command; what to print, and whether a plan was made (whatever
/// the planned call's own outcome).
pub fn run(vars: &HashMap<String, String>, args: &[String], stdin: &[u8]) -> (String, bool) {
    // Before anything logs (seeding does): no log file of the node's.
    crate::log::without_files();
    let json_out = args.iter().any(|a| a == "--json");
    if let Some(bad) = args.iter().find(|a| *a != "--json") {
        return (
            format!(
                "wasm-cni plan: unknown argument {bad:?} (usage: CNI_COMMAND=... wasm-cni plan [--json] < config)\n"
            ),
            false,
        );
    }
    let conf: Value = serde_json::from_slice(stdin).unwrap_or(Value::Null);
    let get = |k: &str| vars.get(k).cloned().unwrap_or_default();
    let command = get("CNI_COMMAND");
    if command.is_empty() {
        return (
            "wasm-cni plan: set CNI_COMMAND (and the other CNI_* variables) as for a call\n".into(),
            false,
        );
    }
    // Private: the store's copy may hold what only its directory guarded.
    let files = match tempfile::Builder::new()
        .prefix("wasm-cni-plan")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => {
            return (
                format!("wasm-cni plan: a temporary directory: {e}\n"),
                false,
            );
        }
    };
    let sim = Arc::new(SimNode::new());
    let netns = vars.get("CNI_NETNS").filter(|n| !n.is_empty());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return (format!("wasm-cni plan: {e}\n"), false),
    };
    let mut notes = rt.block_on(seed::from_real(&sim, netns.map(Path::new)));
    drop(rt);
    notes.extend(copy_store(vars, &conf, files.path()));
    let before = sim.snapshot();
    let store_before = store_entries(files.path());

    crate::audit::record(&command, &get("CNI_CONTAINERID"), &get("CNI_IFNAME"));
    // As a runtime calls it: `/opt/cni/bin/<type>`.
    let argv0 = conf["type"].as_str().unwrap_or(crate::invoke::SELF_NAME);
    let node = Node::Simulated(Simulated {
        kernel: sim.clone(),
        root: files.path().to_path_buf(),
        read_only_cache: true,
        own_config_files: false,
    });
    let out = crate::invoke::invoke_on(argv0, vars, stdin, &node);
    let line = crate::audit::take_recorded().unwrap_or(Value::Null);

    let mut changes = diff(&flatten(&before), &flatten(&sim.snapshot()));
    changes.extend(diff(&store_before, &store_entries(files.path())));
    let mut unknown = notes;
    let mut guessed = sim.guessed();
    let mut seen = BTreeSet::new();
    guessed.retain(|g| seen.insert(g.clone()));
    if !guessed.is_empty() {
        unknown.push(format!(
            "answered without knowing that part of the node: {}",
            guessed.join(", ")
        ));
    }
    let result: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    let calls = line["calls"].as_array().cloned().unwrap_or_default();
    let plan = json!({
        "command": command,
        "network": conf["name"],
        "containerId": get("CNI_CONTAINERID"),
        "ifname": get("CNI_IFNAME"),
        "modules": line["modules"],
        "calls": calls,
        "changes": changes,
        "rollback": line["rollback"],
        "exitCode": out.exit_code,
        "result": result,
        "unknown": unknown,
    });
    if json_out {
        return (
            serde_json::to_string_pretty(&plan).expect("serializable") + "\n",
            true,
        );
    }
    (text(&plan), true)
}

/// The network's IPAM store, copied into the simulated node's files (as
/// the store walks it: no link followed, regular files only); a note if
/// it could not be read. A `resolvConf` is not copied: the plan reads it
/// where it is, as a call does.
fn copy_store(vars: &HashMap<String, String>, conf: &Value, root: &Path) -> Vec<String> {
    let Ok(policy) = Policy::load(vars.get("WASM_CNI_POLICY").map(String::as_str)) else {
        // The call itself reports a broken policy.
        return Vec::new();
    };
    let data_dir = conf["ipam"]["dataDir"].as_str().map(Path::new);
    let name = conf["name"].as_str().unwrap_or_default();
    let mut notes = Vec::new();
    // The network's IPAM store, and its attachments' states (what a DEL
    // would put back).
    let states = crate::caps::attachment_state::location(
        Path::new(crate::caps::attachment_state::STATE_ROOT),
        name,
    );
    let stores = [
        ("IPAM store", policy.store_location(data_dir, name).ok()),
        ("attachments' state", Some(states)),
    ];
    for (what, loc) in stores {
        let Some(loc) = loc.filter(|_| crate::cni::config::validate_network_name(name).is_ok())
        else {
            continue;
        };
        let to = root.join(loc.root.strip_prefix("/").unwrap_or(&loc.root));
        if let Err(e) = seed::copy_store(&loc.root, &loc.below, &to) {
            notes.push(format!(
                "the {what} {:?} could not be read ({e}): an empty one is assumed",
                loc.root.join(&loc.below)
            ));
        }
    }
    notes
}

/// Every file under the simulated node's files (IPAM stores, attachment
/// states) but locks.
fn store_entries(root: &Path) -> BTreeSet<String> {
    let locks = root.join(
        crate::runtime::DEFAULT_LOCK_DIR
            .strip_prefix('/')
            .unwrap_or_default(),
    );
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() && p != locks => stack.push(p),
                Ok(t) if t.is_file() && e.file_name() != "lock" => {
                    let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
                    let v = std::fs::read_to_string(&p).unwrap_or_default();
                    out.insert(format!("file /{rel} = {v:?}"));
                }
                _ => {}
            }
        }
    }
    out
}

/// The node as lines that can be compared.
fn flatten(s: &Snapshot) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let spaces = std::iter::once(("node".to_string(), &s.host)).chain(
        s.containers
            .iter()
            .map(|(p, v)| (format!("container {p}"), v)),
    );
    for (ns, v) in spaces {
        for l in &v.links {
            // Every setting of the link, the index aside (it is the
            // simulation's).
            let mut fields = serde_json::to_value(l).unwrap_or_default();
            let addresses = fields
                .as_object_mut()
                .and_then(|o| {
                    o.remove("index");
                    o.remove("name");
                    o.remove("addresses")
                })
                .unwrap_or_default();
            out.insert(format!("link {ns} {} {fields}", l.name));
            for a in addresses.as_array().into_iter().flatten() {
                out.insert(format!(
                    "address {ns} {} {}",
                    l.name,
                    a.as_str().unwrap_or_default()
                ));
            }
        }
        for r in &v.routes {
            out.insert(format!("route {ns} {r}"));
        }
        for (k, val) in &v.sysctls {
            out.insert(format!("sysctl {ns} {k} = {val}"));
        }
    }
    for r in &s.rules {
        out.insert(format!("rule {} {} ({})", r.kind, r.matches, r.owner));
    }
    out
}

fn diff(before: &BTreeSet<String>, after: &BTreeSet<String>) -> Vec<String> {
    let gone = before.difference(after).map(|l| format!("- {l}"));
    let new = after.difference(before).map(|l| format!("+ {l}"));
    gone.chain(new).collect()
}

fn text(plan: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut t = format!(
        "wasm-cni plan: {} of network {} (container {:?}, interface {:?})\non a simulated copy of this node: nothing on the node was changed\n",
        s(&plan["command"]),
        plan["network"],
        s(&plan["containerId"]),
        s(&plan["ifname"]),
    );
    let calls = plan["calls"].as_array().cloned().unwrap_or_default();
    t += &format!("\ncapability calls ({}):\n", calls.len());
    for (i, c) in calls.iter().enumerate() {
        let outcome = match (c["allowed"].as_bool(), c["outcome"].as_str()) {
            (Some(false), _) => "DENIED".to_string(),
            (_, Some(o)) => o.to_string(),
            _ => String::new(),
        };
        t += &format!(
            "  {:>3}  {:<10} {:<28} {:<8} {}\n",
            i + 1,
            s(&c["module"]),
            s(&c["op"]),
            outcome,
            s(&c["target"]),
        );
        if let Some(e) = c["error"].as_str() {
            t += &format!("       {:<10} {e}\n", "");
        }
    }
    if calls.is_empty() {
        t += "  (none)\n";
    }
    let changes = plan["changes"].as_array().cloned().unwrap_or_default();
    t += &format!("\nchanges it would make ({}):\n", changes.len());
    for c in &changes {
        t += &format!("  {}\n", s(c));
    }
    if let Some(steps) = plan["rollback"].as_array().filter(|r| !r.is_empty()) {
        t += "\nrollback:\n";
        for st in steps {
            let ok = if st["ok"].as_bool() == Some(true) {
                "ok"
            } else {
                "FAILED"
            };
            t += &format!("  {} {ok}\n", s(&st["action"]));
        }
    }
    t += &format!("\nresult (exit code {}):\n", plan["exitCode"]);
    match &plan["result"] {
        Value::Null => t += "  (nothing printed)\n",
        r => {
            for l in serde_json::to_string_pretty(r).unwrap_or_default().lines() {
                t += &format!("  {l}\n");
            }
        }
    }
    let unknown = plan["unknown"].as_array().cloned().unwrap_or_default();
    if !unknown.is_empty() {
        t += "\nunknown (a real call may differ here):\n";
        for u in &unknown {
            t += &format!("  - {}\n", s(u));
        }
    }
    t
}
