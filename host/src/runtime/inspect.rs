//! `wasm-cni inspect MODULE [--json]`: what a module is before it runs on
//! a node. Its role (the world its imports put it in) and contract
//! version, what it imports (each capability with what it reaches) and
//! exports, its sha256 and size, whether the cache holds it compiled for
//! each engine, and what the node policy's pins say of it.
//!
//! The module is read, not compiled or run: its import and export names
//! come from the component's binary (`wasmparser`), judged by the same
//! rules a call uses (`linker::classify_names`, `Policy::admit_module`).

use super::cache::cached;
use super::engine::{EngineKind, new_engine};
use super::linker::{Role, classify_names};
use crate::policy::Policy;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Serialize)]
pub struct Inspection {
    pub module: String,
    pub file: PathBuf,
    pub size: u64,
    pub sha256: String,
    /// `interface` or `ipam`; absent when the module fits no world.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub world: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract: Option<&'static str>,
    /// Why the host would refuse to run it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unusable: Option<String>,
    pub imports: Vec<Import>,
    pub exports: Vec<String>,
    pub cache: Vec<CacheEntry>,
    pub pin: String,
}

#[derive(Debug, Serialize)]
pub struct Import {
    pub name: String,
    /// What it gives the module.
    pub reaches: &'static str,
}

#[derive(Debug, Serialize)]
pub struct CacheEntry {
    pub engine: &'static str,
    pub compiled: bool,
    /// `wasm-cni compile` vouched for it (needed for a pinned module).
    pub vouched: bool,
}

/// What each interface of the contract gives a module.
fn reaches(name: &str) -> &'static str {
    let iface = name
        .strip_prefix("wasm-cni:plugin/")
        .map(|r| r.split('@').next().unwrap_or(r));
    match iface {
        Some("netns") => "the node's and the container's network namespaces",
        Some("link") => "links: create, change, delete (the grant: own links, granted bridges)",
        Some("address") => "addresses on granted links",
        Some("route") => "routes in the container; the node's only to its own links",
        Some("sysctl") => "net sysctls: the container's; the node's for its own links",
        Some("firewall") => "masquerade rules of this attachment",
        Some("spoof-check") => "MAC spoof-check rules of this attachment",
        Some("port-mapping") => "host ports forwarded to this call's container",
        Some("bridge-port") => "VLANs and port flags of its own ports",
        Some("attachments") => "the valid attachments a GC names",
        Some("reference-cleanup") => "what the reference bridge left for this attachment",
        Some("link-tuning") => {
            "all-multicast and queue length: the container's links, its own on the node"
        }
        Some("attachment-state") => "a small store of this attachment's own, from ADD to DEL",
        Some("ipam") | Some("ipam-lifecycle") => "the IPAM plugin the config names",
        Some("store") => "this network's IPAM store",
        Some("resolv-conf") => "DNS settings of a resolv.conf the policy allows",
        Some("log") => "the host's log",
        Some("types") => "types only",
        Some("lifecycle") => "types only (the GC and STATUS requests)",
        Some(_) => NOT_PROVIDED,
        None => wasi(name.split('@').next().unwrap_or(name)),
    }
}

/// What an import the host does not link gets: the module cannot start.
const NOT_PROVIDED: &str = "not provided by this host: the module cannot be instantiated";

/// The WASI interfaces a plugin gets (`linker::add_wasi`), and what they
/// give it.
fn wasi(iface: &str) -> &'static str {
    match iface {
        "wasi:cli/environment" => "WASI: an empty environment, no arguments",
        "wasi:cli/exit" => "WASI: exit",
        "wasi:cli/stdin" => "WASI: an empty stdin",
        "wasi:cli/stdout" | "wasi:cli/stderr" => "WASI: output, captured for the host's log",
        "wasi:cli/terminal-input"
        | "wasi:cli/terminal-output"
        | "wasi:cli/terminal-stdin"
        | "wasi:cli/terminal-stdout"
        | "wasi:cli/terminal-stderr" => "WASI: no terminal",
        "wasi:io/error" | "wasi:io/poll" | "wasi:io/streams" => "WASI: streams",
        "wasi:clocks/wall-clock" | "wasi:clocks/monotonic-clock" => "WASI: clocks",
        "wasi:random/random" | "wasi:random/insecure" | "wasi:random/insecure-seed" => {
            "WASI: random bytes (64 KiB at a time)"
        }
        _ => NOT_PROVIDED,
    }
}

/// The top-level imports and exports of a component.
fn names(bytes: &[u8]) -> Result<(Vec<String>, Vec<String>), String> {
    use wasmparser::{Parser, Payload};
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    let mut component = false;
    for payload in Parser::new(0).parse_all(bytes) {
        // The parser's words may quote the file's bytes: not printed (a
        // link may lead to any file the caller can read).
        let payload = payload.map_err(|e| {
            format!(
                "not a wasm component (invalid at byte offset {})",
                e.offset()
            )
        })?;
        match payload {
            Payload::Version { encoding, .. } if depth == 0 => {
                component = encoding == wasmparser::Encoding::Component;
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(s) if depth == 0 => {
                for i in s {
                    imports.push(i.map_err(|e| e.to_string())?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(s) if depth == 0 => {
                for e in s {
                    exports.push(e.map_err(|e| e.to_string())?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    if !component {
        return Err("a core wasm module, not a component (build for wasm32-wasip2)".into());
    }
    Ok((imports, exports))
}

pub fn inspect(
    name: &str,
    file: &Path,
    policy: &Policy,
    cache_dir: &Path,
) -> Result<Inspection, String> {
    // The file itself, after every link: a `.wasm` regular file (a link
    // named `x.wasm` does not make any file a module), read up to the
    // node's limit.
    let real = std::fs::canonicalize(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let regular = std::fs::metadata(&real).is_ok_and(|m| m.is_file());
    if !regular || real.extension().is_none_or(|x| x != "wasm") {
        return Err(format!(
            "{} is not a .wasm file (it leads to {})",
            file.display(),
            real.display()
        ));
    }
    let bytes = super::cache::read_capped(&real, policy.max_module_bytes)?;
    let sha256: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (imports, exports) = names(&bytes)?;
    let mut unusable = None;
    let (role, world, contract) = match classify_names(&imports, &exports) {
        Ok((role, contract)) => {
            let (r, w) = match role {
                Role::Interface => ("interface", "interface-plugin"),
                Role::Ipam => ("ipam", "ipam-plugin"),
            };
            let world = format!("wasm-cni:plugin/{w}@{}", contract.as_str());
            (Some(r), Some(world), Some(contract.as_str()))
        }
        Err(e) => {
            unusable = Some(e);
            (None, None, None)
        }
    };
    if let Some(missing) = imports.iter().find(|i| reaches(i) == NOT_PROVIDED) {
        unusable = Some(format!(
            "it imports {missing}, which this host does not provide"
        ));
    }
    let cache = EngineKind::ALL
        .into_iter()
        .filter_map(|kind| {
            let engine = new_engine(kind).ok()?;
            let (compiled, vouched) = cached(&engine, cache_dir, &sha256);
            Some(CacheEntry {
                engine: kind.as_str(),
                compiled,
                vouched,
            })
        })
        .collect();
    let pin = match (policy.is_pinned(name), policy.admit_module(name, &sha256)) {
        (true, Ok(())) => "pinned: its sha256 matches".to_string(),
        (_, Err(e)) => format!("refused: {e}"),
        (false, Ok(())) => "not pinned (the node policy does not require pins)".to_string(),
    };
    Ok(Inspection {
        module: name.to_string(),
        file: file.to_path_buf(),
        size: bytes.len() as u64,
        sha256,
        role,
        world,
        contract,
        unusable,
        imports: imports
            .into_iter()
            .map(|name| Import {
                reaches: reaches(&name),
                name,
            })
            .collect(),
        exports,
        cache,
        pin,
    })
}

impl Inspection {
    /// The human-readable form.
    pub fn text(&self) -> String {
        let mut t = String::new();
        let mut row = |k: &str, v: &str| t += &format!("{k:<10}{v}\n");
        row("module", &self.module);
        row("file", &self.file.display().to_string());
        row("size", &format!("{} bytes", self.size));
        row("sha256", &self.sha256);
        match (&self.role, &self.world, &self.contract) {
            (Some(r), Some(w), Some(c)) => {
                row("role", &format!("{r} plugin ({w})"));
                row("contract", c);
            }
            _ => row("role", "none"),
        }
        if let Some(u) = &self.unusable {
            row("unusable", u);
        }
        for (i, e) in self.exports.iter().enumerate() {
            row(if i == 0 { "exports" } else { "" }, e);
        }
        let width = self.imports.iter().map(|i| i.name.len()).max().unwrap_or(0);
        for (i, imp) in self.imports.iter().enumerate() {
            row(
                if i == 0 { "imports" } else { "" },
                &format!("{:<width$}  {}", imp.name, imp.reaches),
            );
        }
        for c in &self.cache {
            let state = match (c.compiled, c.vouched) {
                (true, true) => "compiled, vouched for by `wasm-cni compile`",
                (true, false) => "compiled",
                (false, _) => "not compiled (run `wasm-cni compile`)",
            };
            row("cache", &format!("{}: {state}", c.engine));
        }
        row("pin", &self.pin);
        t
    }
}

/// Run the command; what to print, and whether it worked.
pub fn run(vars: &HashMap<String, String>, args: &[String]) -> (String, bool) {
    let json = args.iter().any(|a| a == "--json");
    let rest: Vec<String> = args.iter().filter(|a| *a != "--json").cloned().collect();
    let fail = |e: String| (format!("wasm-cni inspect: {e}\n"), false);
    let [module] = rest.as_slice() else {
        return fail("usage: wasm-cni inspect MODULE [--json] (a name or a .wasm path)".into());
    };
    let super::precompile::Setup {
        policy,
        modules,
        cache_dir,
    } = match super::precompile::Setup::from_vars(vars) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let found = match super::precompile::targets(&modules, std::slice::from_ref(module)) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let Some((name, file)) = found.into_iter().next() else {
        return fail(format!("no module {module:?}"));
    };
    match inspect(&name, &file, &policy, &cache_dir) {
        Ok(i) if json => (
            serde_json::to_string_pretty(&i).expect("serializable") + "\n",
            true,
        ),
        Ok(i) => (i.text(), true),
        Err(e) => fail(format!("{}: {e}", file.display())),
    }
}
