//! The node policy: what the node's root allows, which no network config
//! can override. Configs are not trusted (with Multus a namespace user
//! writes them), so every path or shared object a config may name is
//! checked against this.
//!
//! One root-owned JSON file, `/etc/wasm-cni/policy.json` (or the file
//! `WASM_CNI_POLICY` names: the runtime's environment is as trusted as the
//! file). Without it the defaults apply, and they are safe. A file that is
//! malformed, has fields this version does not know, or that others could
//! change fails every call closed (code 7): a policy the operator meant to
//! be stricter must never be silently ignored.
//!
//! ```json
//! {
//!   "version": 1,
//!   "moduleDirs": ["/opt/cni/wasm"],
//!   "allowModulesOutsideModuleDirs": false,
//!   "storeRoots": ["/var/lib/cni/networks", "/run/cni/networks"],
//!   "sharedBridges": {"br-lan": ["lan", "storage"]},
//!   "localhostHostPorts": false,
//!   "hostPorts": ["1-65535"],
//!   "gatewaySubnets": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"],
//!   "ipamPlugins": ["host-local", "static", "dhcp"],
//!   "resolvConfDirs": ["/etc", "/run"],
//!   "modulePins": {"bridge": "sha256:<64 hex digits>"},
//!   "requirePins": false,
//!   "maxModuleBytes": 33554432,
//!   "engine": "auto",
//!   "guestFuel": 2000000000,
//!   "logDirs": ["/var/log/wasm-cni"],
//!   "landlock": {"read": [], "readWrite": [], "execute": [], "allowTcp": false},
//!   "auditFile": "/var/log/wasm-cni-audit/audit.jsonl",
//!   "auditMaxBytes": 10485760,
//!   "auditFiles": 3
//! }
//! ```

use crate::cni::CniError;
use crate::trust;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// `"8080"` or `"30000-32767"`, within 1-65535.
fn port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("\"hostPorts\": {s:?} is not a port or a range of ports (1-65535)");
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let (lo, hi) = (
        lo.trim().parse::<u16>().map_err(|_| bad())?,
        hi.trim().parse::<u16>().map_err(|_| bad())?,
    );
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

pub const DEFAULT_POLICY_PATH: &str = "/etc/wasm-cni/policy.json";
/// Where IPAM state may live: host-local's default, and its tmpfs twin.
/// Not `/var/lib/cni` itself, so no network can be named onto libcni's own
/// result cache (`/var/lib/cni/results`).
pub const DEFAULT_STORE_ROOTS: [&str; 2] = ["/var/lib/cni/networks", "/run/cni/networks"];
/// The largest module file loaded: compiling is the one step whose cost
/// grows with the module, and real plugins are well under 1 MiB.
pub const DEFAULT_MAX_MODULE_BYTES: u64 = 32 << 20;
/// The reference's IPAM plugins: what a config may run natively by default.
pub const DEFAULT_IPAM_PLUGINS: [&str; 3] = ["host-local", "static", "dhcp"];
/// Where a config's `ipam.resolvConf` may be read from.
pub const DEFAULT_RESOLV_CONF_DIRS: [&str; 2] = ["/etc", "/run"];
/// Where a config's `logFile` may be written.
pub const DEFAULT_LOG_DIRS: [&str; 1] = ["/var/log/wasm-cni"];
/// The audit file's size at which it is rotated, and how many rotated
/// files are kept (`audit.jsonl.1` ...).
pub const DEFAULT_AUDIT_MAX_BYTES: u64 = 10 << 20;
pub const DEFAULT_AUDIT_FILES: u32 = 3;
/// wasm-cni's own state (the cache, its pins, the network locks): no store
/// root or audit directory may overlap it.
pub const STATE_DIR: &str = "/var/lib/wasm-cni";
/// The `version` this host reads.
pub const VERSION: u32 = 1;

/// The file's shape. Unknown fields are an error, not ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyFile {
    version: u32,
    #[serde(default)]
    module_dirs: Option<Vec<PathBuf>>,
    #[serde(default)]
    allow_modules_outside_module_dirs: bool,
    #[serde(default)]
    store_roots: Option<Vec<PathBuf>>,
    #[serde(default)]
    shared_bridges: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    gateway_subnets: Option<Vec<String>>,
    #[serde(default)]
    localhost_host_ports: bool,
    #[serde(default)]
    host_ports: Option<Vec<String>>,
    #[serde(default)]
    ipam_plugins: Option<Vec<String>>,
    #[serde(default)]
    max_module_bytes: Option<u64>,
    #[serde(default)]
    resolv_conf_dirs: Option<Vec<PathBuf>>,
    #[serde(default)]
    module_pins: BTreeMap<String, String>,
    #[serde(default)]
    require_pins: bool,
    #[serde(default)]
    engine: EngineChoice,
    #[serde(default)]
    guest_fuel: Option<u64>,
    #[serde(default)]
    log_dirs: Option<Vec<PathBuf>>,
    #[serde(default)]
    landlock: ExtraAccess,
    #[serde(default)]
    audit_file: Option<PathBuf>,
    #[serde(default)]
    audit_max_bytes: Option<u64>,
    #[serde(default)]
    audit_files: Option<u32>,
}

/// How guest code is run (`runtime::engine`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// The interpreter where the kernel forbids run-time code (MDWE), else
    /// native code.
    #[default]
    Auto,
    /// Cranelift's machine code.
    Native,
    /// Pulley, wasmtime's interpreter: no memory ever becomes executable.
    Interpreter,
}

/// Files a call's programs may use beyond what the call itself needs
/// (`fs_access`): a native IPAM plugin's own state, configuration or
/// tools. The host gets them too (Landlock confines the process).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtraAccess {
    #[serde(default)]
    pub read: Vec<PathBuf>,
    #[serde(default)]
    pub read_write: Vec<PathBuf>,
    #[serde(default)]
    pub execute: Vec<PathBuf>,
    /// TCP connect and bind (a native IPAM plugin that talks to an API
    /// server); refused otherwise.
    #[serde(default)]
    pub allow_tcp: bool,
}

/// Where one JSON line per call is appended (`audit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub file: PathBuf,
    pub max_bytes: u64,
    /// Rotated files kept beside it.
    pub files: u32,
}

/// The node policy in force for one call.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The file it came from; `None` when the defaults apply.
    pub source: Option<PathBuf>,
    /// Where modules are found; `None` leaves it to the environment or the
    /// default (`runtime::resolve`).
    pub module_dirs: Option<Vec<PathBuf>>,
    /// A config's `"plugin"` may name a `.wasm` file outside them.
    pub allow_modules_outside_module_dirs: bool,
    /// Directories IPAM state may live in (an `ipam.dataDir` is one of
    /// them or beneath one).
    pub store_roots: Vec<PathBuf>,
    /// Bridges wasm-cni did not create that networks may use anyway: bridge
    /// name to the networks it is granted to.
    pub shared_bridges: BTreeMap<String, Vec<String>>,
    /// Where gateway addresses on node links may lie (`grant::address`).
    pub gateway_subnets: Vec<ipnetwork::IpNetwork>,
    /// Host ports may be on the node's 127.0.0.0/8 (`portmap`'s `hostIP`
    /// 127.0.0.1, and mappings without one reach from there too). That
    /// needs `route_localnet` on the link to the pod, which lets packets
    /// for 127.0.0.0/8 in from it: wasm-cni then also drops them
    /// (`kernel::hostport`'s guard), as kube-proxy does. Off by default.
    pub localhost_host_ports: bool,
    /// The host ports a config may forward (`portmap`): ranges, inclusive.
    /// All by default, as the reference; a node whose services must not
    /// be taken over when they are down lists what pods may have.
    pub host_ports: Vec<(u16, u16)>,
    /// Native plugins (from `CNI_PATH`) a config may name in `ipam.type`:
    /// they run unsandboxed, as root. Wasm IPAM modules need no listing.
    pub ipam_plugins: Vec<String>,
    pub max_module_bytes: u64,
    /// Directories whose files (at any depth) a config's `ipam.resolvConf`
    /// may name: the host reads them as root for the config's author.
    pub resolv_conf_dirs: Vec<PathBuf>,
    /// Module name to the sha256 (hex) its file must have.
    pub module_pins: BTreeMap<String, String>,
    /// Every module must be pinned.
    pub require_pins: bool,
    pub engine: EngineChoice,
    /// Fuel per guest call: about that many wasm instructions.
    pub guest_fuel: u64,
    /// Directories a config's `logFile` may name a file in.
    pub log_dirs: Vec<PathBuf>,
    /// What a call may use beyond its own needs (`fs_access`).
    pub landlock: ExtraAccess,
    /// The audit trail; `None`: off.
    pub audit: Option<AuditSettings>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            source: None,
            module_dirs: None,
            allow_modules_outside_module_dirs: false,
            store_roots: DEFAULT_STORE_ROOTS.iter().map(PathBuf::from).collect(),
            shared_bridges: BTreeMap::new(),
            gateway_subnets: crate::grant::address::PRIVATE_SUBNETS
                .iter()
                .map(|s| s.parse().expect("a valid subnet"))
                .collect(),
            localhost_host_ports: false,
            host_ports: vec![(1, u16::MAX)],
            ipam_plugins: DEFAULT_IPAM_PLUGINS.iter().map(|s| s.to_string()).collect(),
            max_module_bytes: DEFAULT_MAX_MODULE_BYTES,
            resolv_conf_dirs: DEFAULT_RESOLV_CONF_DIRS.iter().map(PathBuf::from).collect(),
            module_pins: BTreeMap::new(),
            require_pins: false,
            engine: EngineChoice::Auto,
            guest_fuel: crate::runtime::engine::FUEL,
            log_dirs: DEFAULT_LOG_DIRS.iter().map(PathBuf::from).collect(),
            landlock: ExtraAccess::default(),
            audit: None,
        }
    }
}

/// Where a network's IPAM store lives: an allowed root, and the network's
/// directory in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLocation {
    pub root: PathBuf,
    pub below: PathBuf,
}

impl Policy {
    /// The policy named by `WASM_CNI_POLICY` (`env`), else the default
    /// file; the defaults when the default file does not exist. A file the
    /// environment names must exist: a typo there must not mean "no policy".
    pub fn load(env: Option<&str>) -> Result<Policy, CniError> {
        match env.filter(|p| !p.is_empty()) {
            Some(p) => Policy::load_from(Path::new(p), true),
            None => Policy::load_from(Path::new(DEFAULT_POLICY_PATH), false),
        }
    }

    /// The policy in `path`; when it is not `named` by the environment,
    /// the defaults if nothing at all is there.
    fn load_from(path: &Path, named: bool) -> Result<Policy, CniError> {
        let fail = |what: String| {
            CniError::config(format!("node policy {}: {what}", path.display())).with_details(
                "every call fails until the policy is fixed (see README, \"Node policy\")",
            )
        };
        // Only a path with nothing at all there means "no policy": a link
        // that leads nowhere is a broken policy, not an absent one.
        if !named
            && std::fs::symlink_metadata(path)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        {
            return Ok(Policy::default());
        }
        let canonical = trust::file(path).map_err(|e| fail(e.to_string()))?;
        let text = std::fs::read_to_string(&canonical).map_err(|e| fail(e.to_string()))?;
        let file: PolicyFile = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
        Policy::from_file(file, path.to_path_buf()).map_err(fail)
    }

    fn from_file(f: PolicyFile, source: PathBuf) -> Result<Policy, String> {
        if f.version != VERSION {
            return Err(format!(
                "\"version\" is {}, this wasm-cni reads version {VERSION}",
                f.version
            ));
        }
        if let Some(dirs) = &f.module_dirs {
            for d in dirs {
                normalized(d).map_err(|e| format!("\"moduleDirs\": {e}"))?;
            }
        }
        let store_roots = match f.store_roots {
            Some(roots) => roots
                .iter()
                .map(|r| match normalized(r) {
                    Ok(n) if n == Path::new("/") => {
                        Err("\"storeRoots\": \"/\" would put IPAM state anywhere".to_string())
                    }
                    Ok(n) => Ok(n),
                    Err(e) => Err(format!("\"storeRoots\": {e}")),
                })
                .collect::<Result<_, _>>()?,
            None => Policy::default().store_roots,
        };
        for r in &store_roots {
            if overlaps(r, Path::new(STATE_DIR)) {
                return Err(format!(
                    "\"storeRoots\": {} overlaps wasm-cni's own state in {STATE_DIR}",
                    r.display()
                ));
            }
        }
        // A store is `<root>/<network>`: one root inside another would put
        // a network's store among another root's stores.
        for a in &store_roots {
            if let Some(b) = store_roots.iter().find(|b| *b != a && a.starts_with(b)) {
                return Err(format!(
                    "\"storeRoots\": {} lies inside {}",
                    a.display(),
                    b.display()
                ));
            }
        }
        for (bridge, networks) in &f.shared_bridges {
            if crate::kernel::link::check_name(bridge).is_err() {
                return Err(format!("\"sharedBridges\": {bridge:?} is not a link name"));
            }
            if networks.is_empty() {
                return Err(format!("\"sharedBridges\": {bridge:?} lists no network"));
            }
        }
        let host_ports = match &f.host_ports {
            None => Policy::default().host_ports,
            Some(list) => list
                .iter()
                .map(|r| port_range(r))
                .collect::<Result<Vec<_>, _>>()?,
        };
        let gateway_subnets = match f.gateway_subnets {
            None => Policy::default().gateway_subnets,
            Some(subnets) => subnets
                .iter()
                .map(|s| {
                    s.parse()
                        .map_err(|e| format!("\"gatewaySubnets\": {s:?}: {e}"))
                })
                .collect::<Result<_, _>>()?,
        };
        let ipam_plugins = match f.ipam_plugins {
            None => Policy::default().ipam_plugins,
            Some(names) => {
                for n in &names {
                    crate::runtime::resolve::check_name(n)
                        .map_err(|e| format!("\"ipamPlugins\": {e}"))?;
                }
                names
            }
        };
        let max_module_bytes = match f.max_module_bytes {
            Some(0) => return Err("\"maxModuleBytes\" must be positive".into()),
            Some(n) => n,
            None => DEFAULT_MAX_MODULE_BYTES,
        };
        let resolv_conf_dirs = match f.resolv_conf_dirs {
            None => Policy::default().resolv_conf_dirs,
            Some(dirs) => dirs
                .iter()
                .map(|d| normalized(d).map_err(|e| format!("\"resolvConfDirs\": {e}")))
                .collect::<Result<_, _>>()?,
        };
        let mut module_pins = BTreeMap::new();
        for (name, pin) in &f.module_pins {
            crate::runtime::resolve::check_name(name)
                .map_err(|e| format!("\"modulePins\": {e}"))?;
            let hex = pin
                .strip_prefix("sha256:")
                .unwrap_or(pin)
                .to_ascii_lowercase();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "\"modulePins\": {name:?}: {pin:?} is not a sha256 (64 hex digits, \"sha256:\" optional)"
                ));
            }
            module_pins.insert(name.clone(), hex);
        }
        let log_dirs = match f.log_dirs {
            None => Policy::default().log_dirs,
            Some(dirs) => dirs
                .iter()
                .map(|d| match normalized(d) {
                    Ok(n) if n == Path::new("/") => {
                        Err("\"logDirs\": \"/\" would let a config write anywhere".to_string())
                    }
                    Ok(n) => Ok(n),
                    Err(e) => Err(format!("\"logDirs\": {e}")),
                })
                .collect::<Result<_, _>>()?,
        };
        // The audit file in a directory of its own: Landlock lets a call
        // write that directory (rotation renames in it), and a config's
        // `logFile` must never reach the trail.
        if let Some(file) = &f.audit_file {
            let file = normalized(file).map_err(|e| format!("\"auditFile\": {e}"))?;
            let dir = file.parent().unwrap_or(Path::new("/"));
            if dir == Path::new("/") {
                return Err("\"auditFile\" must be in a directory of its own, not in /".into());
            }
            let state = Path::new(STATE_DIR).to_path_buf();
            let roots = store_roots.iter().chain(f.module_dirs.iter().flatten());
            for other in log_dirs.iter().chain(roots).chain([&state]) {
                if overlaps(dir, other) {
                    return Err(format!(
                        "\"auditFile\" {}: its directory overlaps {} (a log, store, module or wasm-cni state directory)",
                        file.display(),
                        other.display()
                    ));
                }
            }
        }
        let audit = match f.audit_file {
            None if f.audit_max_bytes.is_some() || f.audit_files.is_some() => {
                return Err("\"auditMaxBytes\" and \"auditFiles\" need \"auditFile\"".into());
            }
            None => None,
            Some(file) => Some(AuditSettings {
                file: normalized(&file).map_err(|e| format!("\"auditFile\": {e}"))?,
                max_bytes: match f.audit_max_bytes {
                    Some(n) if n < 4096 => {
                        return Err("\"auditMaxBytes\" must be at least 4096".into());
                    }
                    Some(n) => n,
                    None => DEFAULT_AUDIT_MAX_BYTES,
                },
                files: match f.audit_files {
                    Some(n @ 1..=100) => n,
                    Some(n) => return Err(format!("\"auditFiles\" must be 1 to 100, got {n}")),
                    None => DEFAULT_AUDIT_FILES,
                },
            }),
        };
        Ok(Policy {
            source: Some(source),
            module_dirs: f.module_dirs,
            allow_modules_outside_module_dirs: f.allow_modules_outside_module_dirs,
            store_roots,
            shared_bridges: f.shared_bridges,
            gateway_subnets,
            localhost_host_ports: f.localhost_host_ports,
            host_ports,
            ipam_plugins,
            max_module_bytes,
            resolv_conf_dirs,
            module_pins,
            require_pins: f.require_pins,
            engine: f.engine,
            guest_fuel: match f.guest_fuel {
                Some(n @ 1_000_000..=1_000_000_000_000) => n,
                Some(n) => {
                    return Err(format!(
                        "\"guestFuel\" must be from 1000000 to 1000000000000, got {n}"
                    ));
                }
                None => crate::runtime::engine::FUEL,
            },
            log_dirs,
            landlock: {
                let l = &f.landlock;
                for p in l.read.iter().chain(&l.read_write).chain(&l.execute) {
                    normalized(p).map_err(|e| format!("\"landlock\": {e}"))?;
                }
                f.landlock
            },
            audit,
        })
    }

    /// Whether module `name` with file digest `digest` (hex) may load: its
    /// pin must match, and with `requirePins` it must have one.
    pub fn admit_module(&self, name: &str, digest: &str) -> Result<(), String> {
        match self.module_pins.get(name) {
            Some(pin) if pin == digest => Ok(()),
            Some(pin) => Err(format!(
                "module {name:?} is pinned to sha256:{pin} in the node policy, but its file is sha256:{digest}"
            )),
            None if self.require_pins => Err(format!(
                "module {name:?} (sha256:{digest}) has no pin, and the node policy requires one (\"requirePins\")"
            )),
            None => Ok(()),
        }
    }

    /// Whether module `name` is pinned (its cached artifact is then checked
    /// byte for byte before it is run).
    pub fn is_pinned(&self, name: &str) -> bool {
        self.module_pins.contains_key(name)
    }

    /// The policy lists `bridge` as shared with `network`.
    pub fn shares_bridge(&self, bridge: &str, network: &str) -> bool {
        self.shared_bridges
            .get(bridge)
            .is_some_and(|nets| nets.iter().any(|n| n == network))
    }

    /// Where `network`'s IPAM store lives for `ipam.dataDir` (`None`: the
    /// reference's default, `/var/lib/cni/networks`): `<root>/<network>`,
    /// where the directory must be one of the allowed roots, judged on the
    /// path as written (the store opens it without following links, so what
    /// is judged is what is opened). Not a directory beneath a root: there a
    /// config could put its store inside another network's (a network named
    /// `lock` in `<root>/vnet` is a directory where `vnet`'s lock file must
    /// be) and break it.
    pub fn store_location(
        &self,
        data_dir: Option<&Path>,
        network: &str,
    ) -> Result<StoreLocation, CniError> {
        let data_dir = data_dir.unwrap_or(Path::new(DEFAULT_STORE_ROOTS[0]));
        let roots = || {
            self.store_roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let dir = normalized(data_dir).map_err(|e| {
            CniError::config(format!("\"ipam.dataDir\" {}: {e}", data_dir.display()))
        })?;
        let Some(root) = self.store_roots.iter().find(|r| **r == dir) else {
            return Err(CniError::config(format!(
                "\"ipam.dataDir\" {} is not one of the node's IPAM store roots [{}]",
                data_dir.display(),
                roots()
            ))
            .with_details(format!(
                "use one of them, or have the node's root add it to \"storeRoots\" in {}",
                self.source
                    .as_deref()
                    .unwrap_or(Path::new(DEFAULT_POLICY_PATH))
                    .display()
            )));
        };
        crate::cni::config::validate_network_name(network)?;
        Ok(StoreLocation {
            root: root.clone(),
            below: PathBuf::from(network),
        })
    }
}

/// An absolute path with no `.` or `..` components, as written.
/// Whether one of two directories lies in the other (or they are one),
/// judged on where they lead when they exist (a link must not hide an
/// overlap).
pub fn overlaps(a: &Path, b: &Path) -> bool {
    let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (a, b) = (real(a), real(b));
    a.starts_with(&b) || b.starts_with(&a)
}

pub fn normalized(p: &Path) -> Result<PathBuf, String> {
    if !p.is_absolute() {
        return Err(format!("{} is not an absolute path", p.display()));
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::Normal(_) => out.push(c),
            Component::ParentDir | Component::CurDir | Component::Prefix(_) => {
                return Err(format!("{} has a \"..\" or \".\" component", p.display()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write_policy(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let p = dir.join("policy.json");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn load(p: &Path) -> Result<Policy, CniError> {
        Policy::load(Some(p.to_str().unwrap()))
    }

    #[test]
    fn a_full_policy_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        let p = write_policy(
            tmp.path(),
            r#"{"version":1,"moduleDirs":["/opt/x"],"allowModulesOutsideModuleDirs":true,
                "storeRoots":["/srv/ipam"],"sharedBridges":{"br-lan":["lan"]},"maxModuleBytes":1000,
                "localhostHostPorts":true,"hostPorts":["80","30000-32767"]}"#,
            0o644,
        );
        let pol = load(&p).unwrap();
        assert!(pol.localhost_host_ports);
        assert_eq!(pol.host_ports, [(80, 80), (30000, 32767)]);
        assert_eq!(pol.module_dirs, Some(vec![PathBuf::from("/opt/x")]));
        assert!(pol.allow_modules_outside_module_dirs);
        assert_eq!(pol.store_roots, [PathBuf::from("/srv/ipam")]);
        assert!(pol.shares_bridge("br-lan", "lan") && !pol.shares_bridge("br-lan", "other"));
        assert_eq!(pol.max_module_bytes, 1000);
        let p = write_policy(
            tmp.path(),
            r#"{"version":1,"engine":"interpreter","guestFuel":5000000,"logDirs":["/srv/log"],
                "auditFile":"/srv/audit/a.jsonl","auditMaxBytes":8192,"auditFiles":2,
                "landlock":{"read":["/etc/x"],"readWrite":["/srv/y"],"execute":["/usr/bin"],"allowTcp":true}}"#,
            0o644,
        );
        let pol = load(&p).unwrap();
        assert_eq!(pol.engine, EngineChoice::Interpreter);
        assert_eq!(pol.guest_fuel, 5_000_000);
        assert_eq!(pol.log_dirs, [PathBuf::from("/srv/log")]);
        assert_eq!(
            pol.audit,
            Some(AuditSettings {
                file: "/srv/audit/a.jsonl".into(),
                max_bytes: 8192,
                files: 2
            })
        );
        assert!(pol.landlock.allow_tcp && pol.landlock.execute == [PathBuf::from("/usr/bin")]);
        // The defaults: native unless MDWE, no audit, /var/log/wasm-cni.
        let d = Policy::default();
        assert_eq!(d.engine, EngineChoice::Auto);
        assert_eq!(d.audit, None);
        assert_eq!(d.log_dirs, [PathBuf::from("/var/log/wasm-cni")]);
        assert!(!d.landlock.allow_tcp);
    }

    #[test]
    fn a_dangling_link_is_a_broken_policy_not_an_absent_one() {
        let tmp = tempfile::tempdir().unwrap();
        let link = tmp.path().join("policy.json");
        std::os::unix::fs::symlink(tmp.path().join("gone.json"), &link).unwrap();
        assert_eq!(Policy::load_from(&link, false).unwrap_err().code, 7);
        let nothing = tmp.path().join("absent.json");
        assert!(
            Policy::load_from(&nothing, false).unwrap().source.is_none(),
            "defaults"
        );
    }

    #[test]
    fn defaults_apply_without_a_file_and_a_named_file_must_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let e = load(&tmp.path().join("missing.json")).unwrap_err();
        assert_eq!(e.code, 7, "{e}");
        let d = Policy::default();
        assert_eq!(d.store_roots.len(), 2);
        assert_eq!(d.max_module_bytes, 32 << 20);
    }

    #[test]
    fn malformed_unknown_unsafe_or_wrong_versions_fail_closed() {
        let tmp = tempfile::tempdir().unwrap();
        for (text, mode, want) in [
            ("{not json", 0o644, "key must be a string"),
            (
                r#"{"version":1,"moduleDir":["/x"]}"#,
                0o644,
                "unknown field `moduleDir`",
            ),
            (r#"{"version":2}"#, 0o644, "reads version 1"),
            (r#"{}"#, 0o644, "missing field `version`"),
            (r#"{"version":1}"#, 0o666, "writable by group or others"),
            (r#"{"version":1,"storeRoots":["/"]}"#, 0o644, "anywhere"),
            (
                r#"{"version":1,"storeRoots":["/srv/ipam","/srv/ipam/more"]}"#,
                0o644,
                "lies inside /srv/ipam",
            ),
            (
                r#"{"version":1,"gatewaySubnets":["10.0.0.0/33"]}"#,
                0o644,
                "gatewaySubnets",
            ),
            (r#"{"version":1,"hostPorts":["0-80"]}"#, 0o644, "hostPorts"),
            (
                r#"{"version":1,"hostPorts":["9000-8000"]}"#,
                0o644,
                "hostPorts",
            ),
            (r#"{"version":1,"hostPorts":["http"]}"#, 0o644, "hostPorts"),
            (
                r#"{"version":1,"storeRoots":["rel"]}"#,
                0o644,
                "not an absolute path",
            ),
            (
                r#"{"version":1,"storeRoots":["/a/../etc"]}"#,
                0o644,
                "\"..\"",
            ),
            (
                r#"{"version":1,"sharedBridges":{"a/b":["n"]}}"#,
                0o644,
                "not a link name",
            ),
            (r#"{"version":1,"maxModuleBytes":0}"#, 0o644, "positive"),
            (r#"{"version":1,"engine":"jit"}"#, 0o644, "unknown variant"),
            (r#"{"version":1,"guestFuel":10}"#, 0o644, "\"guestFuel\""),
            (r#"{"version":1,"logDirs":["/"]}"#, 0o644, "anywhere"),
            (
                r#"{"version":1,"logDirs":["/var/log/../etc"]}"#,
                0o644,
                "\"..\"",
            ),
            (
                r#"{"version":1,"auditFiles":3}"#,
                0o644,
                "need \"auditFile\"",
            ),
            (
                r#"{"version":1,"auditFile":"/var/audit/a","auditMaxBytes":10}"#,
                0o644,
                "at least 4096",
            ),
            (
                r#"{"version":1,"auditFile":"/var/audit/a","auditFiles":0}"#,
                0o644,
                "1 to 100",
            ),
            (r#"{"version":1,"auditFile":"log/a"}"#, 0o644, "absolute"),
            (r#"{"version":1,"auditFile":"/a.jsonl"}"#, 0o644, "not in /"),
            (
                r#"{"version":1,"auditFile":"/var/lib/wasm-cni/audit.jsonl"}"#,
                0o644,
                "wasm-cni state",
            ),
            (
                r#"{"version":1,"storeRoots":["/var/lib"]}"#,
                0o644,
                "overlaps wasm-cni's own state",
            ),
            (
                r#"{"version":1,"auditFile":"/var/log/wasm-cni/audit.jsonl"}"#,
                0o644,
                "overlaps /var/log/wasm-cni",
            ),
            (
                r#"{"version":1,"auditFile":"/var/log/audit.jsonl","logDirs":["/var/log/x"]}"#,
                0o644,
                "overlaps /var/log/x",
            ),
            (
                r#"{"version":1,"landlock":{"read":["/x"],"write":["/y"]}}"#,
                0o644,
                "unknown field",
            ),
            (
                r#"{"version":1,"landlock":{"execute":["bin"]}}"#,
                0o644,
                "\"landlock\"",
            ),
        ] {
            let p = write_policy(tmp.path(), text, mode);
            let e = load(&p).unwrap_err();
            assert_eq!(e.code, 7, "{text}");
            assert!(e.msg.contains(want), "{text}: {e}");
            assert!(e.msg.contains(p.to_str().unwrap()), "names the file: {e}");
        }
    }

    #[test]
    fn a_policy_another_user_owns_fails_closed() {
        // As root only: giving a file away needs CAP_CHOWN.
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED a_policy_another_user_owns_fails_closed: not root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let p = write_policy(tmp.path(), r#"{"version":1}"#, 0o644);
        assert!(load(&p).is_ok(), "root's own file is the control");
        std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
        let e = load(&p).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("owned by uid 65534"), "{e}");
        assert!(e.msg.contains(p.to_str().unwrap()), "names the file: {e}");
    }

    #[test]
    fn data_dirs_must_lie_in_a_store_root() {
        let pol = Policy::default();
        let loc = |d: Option<&str>, net: &str| pol.store_location(d.map(Path::new), net);
        assert_eq!(
            loc(None, "mynet").unwrap(),
            StoreLocation {
                root: "/var/lib/cni/networks".into(),
                below: "mynet".into()
            }
        );
        assert_eq!(
            loc(Some("/var/lib/cni/networks/"), "n").unwrap().below,
            PathBuf::from("n")
        );
        assert_eq!(
            loc(Some("/run/cni/networks"), "n").unwrap().root,
            PathBuf::from("/run/cni/networks")
        );
        for bad in [
            "/run/cni/networks/a/b",
            "/var/lib/cni/networks/vnet",
            "/",
            "/etc",
            "/var/lib/cni",
            "/var/lib/cni/networks/../results",
            "/var/lib/cni/networksX",
            "relative",
        ] {
            let e = loc(Some(bad), "n").unwrap_err();
            assert_eq!(e.code, 7, "{bad}");
            assert!(e.msg.contains("ipam.dataDir"), "{bad}: {e}");
        }
        for bad_net in ["..", "a/b", "", ".hidden"] {
            assert_eq!(loc(None, bad_net).unwrap_err().code, 7, "{bad_net}");
        }
    }
}
