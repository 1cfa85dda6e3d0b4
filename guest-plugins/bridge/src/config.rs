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
    // Not supported yet: refused when set, never silently ignored.
    #[serde(default)]
    pub vlan: u32,
    #[serde(default)]
    pub vlan_trunk: Option<serde_json::Value>,
    #[serde(default)]
    pub macspoofchk: bool,
    #[serde(default)]
    pub disable_container_interface: bool,
    #[serde(default)]
    pub port_isolation: bool,
}

fn default_bridge() -> String {
    "cni0".to_string()
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
        let unsupported = [
            ("vlan", c.vlan != 0),
            (
                "vlanTrunk",
                c.vlan_trunk
                    .as_ref()
                    .is_some_and(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty())),
            ),
            ("macspoofchk", c.macspoofchk),
            ("disableContainerInterface", c.disable_container_interface),
            ("portIsolation", c.port_isolation),
        ];
        if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(CniError::unsupported(field)
                .with_details("this field is not supported by the wasm-cni bridge plugin yet"));
        }
        Ok(c)
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
