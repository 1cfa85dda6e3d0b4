//! Parts of network configs that several plugins read the same way, as
//! libcni's types read them.

use crate::{CniError, Dns, IpPrefix, Route};
use serde::Deserialize;
use std::net::IpAddr;

/// A route in a config (`ipam.routes`): its attributes pass through to
/// the result (1.1.0 and the versions that share its route type print
/// them).
#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct RouteConf {
    pub dst: String,
    #[serde(default)]
    pub gw: Option<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default, rename = "advmss")]
    pub adv_mss: Option<u32>,
    #[serde(default)]
    pub priority: Option<u32>,
    #[serde(default)]
    pub table: Option<u32>,
    #[serde(default)]
    pub scope: Option<u8>,
}

impl RouteConf {
    /// The route, or error 7 naming the value and `field` (`"ipam.routes"`).
    pub fn route(&self, field: &str) -> Result<Route, CniError> {
        let dst: ipnetwork::IpNetwork = match self.dst.parse() {
            Ok(d) if self.dst.contains('/') => d,
            _ => {
                return Err(CniError::config(format!(
                    "invalid route dst {:?} in {field:?}",
                    self.dst
                )));
            }
        };
        let gw =
            match self.gw.as_deref().filter(|g| !g.is_empty()) {
                Some(g) => Some(g.parse::<IpAddr>().map_err(|_| {
                    CniError::config(format!("invalid route gw {g:?} in {field:?}"))
                })?),
                None => None,
            };
        Ok(Route {
            dst: IpPrefix::from(dst),
            gw: gw.map(Into::into),
            mtu: self.mtu,
            advmss: self.adv_mss,
            priority: self.priority,
            table: self.table,
            scope: self.scope,
        })
    }
}

/// DNS settings in a config (`dns`, `ipam.dns`).
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct DnsConf {
    pub nameservers: Vec<String>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl From<DnsConf> for Dns {
    fn from(d: DnsConf) -> Dns {
        Dns {
            nameservers: d.nameservers,
            domain: d.domain,
            search: d.search,
            options: d.options,
        }
    }
}
