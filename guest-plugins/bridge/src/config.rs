//! The bridge plugin's configuration, with the reference's defaults.

use serde::Deserialize;
use wasm_cni_sdk::{CniError, Dns, Request};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeConf {
    #[serde(default = "default_bridge")]
    pub bridge: String,
    #[serde(default)]
    pub is_gateway: bool,
    #[serde(default)]
    pub is_default_gateway: bool,
    #[serde(default)]
    pub force_address: bool,
    #[serde(default)]
    pub ip_masq: bool,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub hairpin_mode: bool,
    #[serde(default)]
    pub promisc_mode: bool,
    #[serde(default)]
    pub enabledad: bool,
    #[serde(default)]
    pub ipam: Option<IpamRef>,
    #[serde(default)]
    pub dns: Option<DnsConf>,
    #[serde(default)]
    pub args: Option<ArgsConf>,
    #[serde(default)]
    pub runtime_config: Option<RuntimeConf>,
    #[serde(default)]
    pub vlan: i64,
    #[serde(default)]
    pub vlan_trunk: Option<Vec<VlanTrunk>>,
    #[serde(default = "yes")]
    pub preserve_default_vlan: bool,
    #[serde(default)]
    pub macspoofchk: bool,
    #[serde(default)]
    pub disable_container_interface: bool,
    #[serde(default)]
    pub port_isolation: bool,
    /// `iptables` or `nftables`: accepted, and either way wasm-cni
    /// masquerades in its own nftables table.
    #[serde(default)]
    pub ip_masq_backend: Option<String>,
    /// `vlanTrunk` collected: ascending, each id once.
    #[serde(skip)]
    pub trunk: Vec<u16>,
}

fn default_bridge() -> String {
    "cni0".to_string()
}

fn yes() -> bool {
    true
}

/// One `vlanTrunk` entry: a range (`minID` and `maxID`), an `id`, or both.
#[derive(Debug, Deserialize, Default)]
pub struct VlanTrunk {
    #[serde(default, rename = "minID")]
    pub min_id: Option<i64>,
    #[serde(default, rename = "maxID")]
    pub max_id: Option<i64>,
    #[serde(default)]
    pub id: Option<i64>,
}

/// The reference's `collectVlanTrunk`: every id once, ascending; its
/// messages, as code 7.
fn collect_trunk(trunk: &[VlanTrunk]) -> Result<Vec<u16>, CniError> {
    let valid = |v: i64| (1..=4094).contains(&v);
    let mut ids = std::collections::BTreeSet::new();
    for t in trunk {
        match (t.min_id, t.max_id) {
            (Some(min), Some(max)) => {
                if !valid(min) {
                    return Err(CniError::config("incorrect trunk minID parameter"));
                }
                if !valid(max) {
                    return Err(CniError::config("incorrect trunk maxID parameter"));
                }
                if max < min {
                    return Err(CniError::config(
                        "minID is greater than maxID in trunk parameter",
                    ));
                }
                ids.extend(min as u16..=max as u16);
            }
            (None, Some(_)) => {
                return Err(CniError::config(
                    "minID and maxID should be configured simultaneously, minID is missing",
                ));
            }
            (Some(_), None) => {
                return Err(CniError::config(
                    "minID and maxID should be configured simultaneously, maxID is missing",
                ));
            }
            (None, None) => {}
        }
        if let Some(id) = t.id {
            if !valid(id) {
                return Err(CniError::config("incorrect trunk id parameter"));
            }
            ids.insert(id as u16);
        }
    }
    Ok(ids.into_iter().collect())
}

/// Ascending ids as ranges: `[1, 2, 3, 7]` is `[(1, 3), (7, 7)]`.
pub fn ranges(ids: &[u16]) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for &id in ids {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == id => *end = id,
            _ => out.push((id, id)),
        }
    }
    out
}

#[derive(Debug, Deserialize, Default)]
pub struct IpamRef {
    #[serde(default, rename = "type")]
    pub plugin_type: String,
}

#[derive(Debug, Deserialize, Default, Clone)]
pub struct DnsConf {
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub search: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct ArgsConf {
    #[serde(default)]
    pub cni: Option<CniArgsConf>,
}

#[derive(Debug, Deserialize, Default)]
pub struct CniArgsConf {
    #[serde(default)]
    pub mac: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct RuntimeConf {
    #[serde(default)]
    pub mac: Option<String>,
}

/// What DEL and GC need of the config, read leniently: a pod ADDed by the
/// reference plugin (or under an older config) must still be removable,
/// whatever options the config has that this plugin would refuse on ADD.
pub struct TeardownConf {
    pub has_ipam: bool,
}

impl TeardownConf {
    pub fn read(config: &str) -> TeardownConf {
        let v: serde_json::Value = serde_json::from_str(config).unwrap_or_default();
        let ipam_type = v
            .get("ipam")
            .and_then(|i| i.get("type"))
            .and_then(|t| t.as_str())
            .unwrap_or_default();
        TeardownConf {
            has_ipam: !ipam_type.is_empty(),
        }
    }
}

impl BridgeConf {
    pub fn load(req: &Request) -> Result<BridgeConf, CniError> {
        Self::parse(&req.config)
    }

    pub fn parse(config: &str) -> Result<BridgeConf, CniError> {
        let mut c: BridgeConf = serde_json::from_str(config)
            .map_err(|e| CniError::config(format!("invalid network config: {e}")))?;
        if c.is_default_gateway {
            c.is_gateway = true;
        }
        if c.mtu == Some(0) {
            c.mtu = None;
        }
        if c.hairpin_mode && c.promisc_mode {
            return Err(CniError::config(
                "cannot set hairpin mode and promiscuous mode at the same time",
            ));
        }
        if !(0..=4094).contains(&c.vlan) {
            return Err(CniError::config(format!(
                "invalid VLAN ID {} (must be between 0 and 4094)",
                c.vlan
            )));
        }
        c.trunk = collect_trunk(c.vlan_trunk.as_deref().unwrap_or_default())?;
        if c.vlan > 0 && !c.trunk.is_empty() {
            return Err(CniError::config(
                "cannot set vlan and vlanTrunk at the same time",
            ));
        }
        if c.disable_container_interface && c.has_ipam() {
            return Err(CniError::config(
                "cannot use IPAM when DisableContainerInterface flag is set",
            ));
        }
        match c.ip_masq_backend.as_deref() {
            None | Some("iptables" | "nftables") => {}
            Some(other) => {
                return Err(CniError::config(format!(
                    "unknown ipmasq backend {other:?}"
                ))
                .with_details(
                    "\"ipMasqBackend\" is \"iptables\" or \"nftables\"; wasm-cni masquerades in its own nftables table either way",
                ));
            }
        }
        Ok(c)
    }

    /// The access VLAN, if any.
    pub fn vlan(&self) -> Option<u16> {
        u16::try_from(self.vlan).ok().filter(|v| *v != 0)
    }

    /// A new bridge filters by VLAN when the config names VLANs at all (an
    /// empty `vlanTrunk` counts, as in the reference).
    pub fn vlan_filtering(&self) -> bool {
        self.vlan != 0 || self.vlan_trunk.is_some()
    }

    /// Layer 3: an IPAM plugin hands out addresses.
    pub fn has_ipam(&self) -> bool {
        self.ipam
            .as_ref()
            .is_some_and(|i| !i.plugin_type.is_empty())
    }

    /// The container MAC: `CNI_ARGS` MAC, overridden by `args.cni.mac`,
    /// overridden by `runtimeConfig.mac`, as in the reference.
    pub fn mac(&self, req: &Request) -> Result<Option<String>, CniError> {
        let args = req.cni_args(&["MAC"])?;
        let mut mac = args.get("MAC").map(str::to_string);
        if let Some(m) = self
            .args
            .as_ref()
            .and_then(|a| a.cni.as_ref())
            .and_then(|c| c.mac.clone())
        {
            mac = Some(m);
        }
        if let Some(m) = self.runtime_config.as_ref().and_then(|r| r.mac.clone()) {
            mac = Some(m);
        }
        Ok(mac
            .filter(|m| !m.is_empty())
            .map(|m| m.to_ascii_lowercase()))
    }

    /// The config's `dns`, when it sets anything (it then overrides IPAM's).
    pub fn dns(&self) -> Option<Dns> {
        let d = self.dns.clone()?;
        let set = !d.nameservers.is_empty()
            || d.domain.is_some()
            || !d.search.is_empty()
            || !d.options.is_empty();
        set.then_some(Dns {
            nameservers: d.nameservers,
            domain: d.domain,
            search: d.search,
            options: d.options,
        })
    }
}
