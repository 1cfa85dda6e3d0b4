//! The CNI result: one canonical shape inside wasm-cni, read from and
//! written to every supported version's JSON.
//!
//! Output follows the Go types libcni (v1.3) decodes with: field order
//! `cniVersion, interfaces, ips, routes, dns`, empty lists omitted, `dns`
//! always present, `ips[].version` only for 0.3.x/0.4.0, the interface
//! fields of 1.1.0 only for 1.1.0, and the route attributes (`mtu`,
//! `advmss`, `priority`, `table`, `scope`) in every version from 0.3.0 (one
//! route type serves them all there). 0.1.0 and 0.2.0 have their own shape:
//! the first IPv4 address as `ip4` and the first IPv6 as `ip6`, each with
//! the routes of its family (`dst` and `gw` only), and no interfaces.

use super::error::CniError;
use super::version::CniVersion;
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    pub sandbox: Option<String>,
    pub socket_path: Option<String>,
    pub pci_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// The address with its prefix length (host bits kept).
    pub address: IpNetwork,
    pub gateway: Option<IpAddr>,
    pub interface: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNetwork,
    pub gw: Option<IpAddr>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// `10.244.0.5/16`: an address with a prefix; a bare address is not one.
pub fn parse_prefix(s: &str, what: &str) -> Result<IpNetwork, CniError> {
    if !s.contains('/') {
        return Err(CniError::decode(format!(
            "{what} {s:?} is not an address with a prefix length"
        )));
    }
    s.parse()
        .map_err(|e| CniError::decode(format!("{what} {s:?}: {e}")))
}

fn parse_ip(s: &str, what: &str) -> Result<IpAddr, CniError> {
    s.parse()
        .map_err(|_| CniError::decode(format!("{what} {s:?} is not an IP address")))
}

// ---- reading any supported version -------------------------------------

#[derive(Deserialize)]
struct WireResult {
    #[serde(default)]
    ip4: Option<WireIp02>,
    #[serde(default)]
    ip6: Option<WireIp02>,
    #[serde(default)]
    interfaces: Vec<WireInterface>,
    #[serde(default)]
    ips: Vec<WireIp>,
    #[serde(default)]
    routes: Vec<WireRoute>,
    #[serde(default)]
    dns: Option<Dns>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireInterface {
    name: String,
    mac: Option<String>,
    mtu: Option<u32>,
    sandbox: Option<String>,
    socket_path: Option<String>,
    #[serde(rename = "pciID")]
    pci_id: Option<String>,
}

#[derive(Deserialize)]
struct WireIp {
    address: String,
    gateway: Option<String>,
    interface: Option<i64>,
}

/// 0.1.0/0.2.0's `ip4`/`ip6`.
#[derive(Deserialize)]
struct WireIp02 {
    ip: String,
    gateway: Option<String>,
    #[serde(default)]
    routes: Vec<WireRoute>,
}

#[derive(Deserialize)]
struct WireRoute {
    dst: String,
    gw: Option<String>,
    mtu: Option<u32>,
    advmss: Option<u32>,
    priority: Option<u32>,
    table: Option<u32>,
    scope: Option<u8>,
}

impl CniResult {
    /// Parse a result (a `prevResult`, or a delegated plugin's output) in any
    /// supported version.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, CniError> {
        let mut wire = WireResult::deserialize(value)
            .map_err(|e| CniError::decode(format!("cannot decode CNI result: {e}")))?;
        // The 0.1.0/0.2.0 shape, as the later ones spell it.
        for legacy in [wire.ip4.take(), wire.ip6.take()].into_iter().flatten() {
            wire.ips.push(WireIp {
                address: legacy.ip,
                gateway: legacy.gateway,
                interface: None,
            });
            wire.routes.extend(legacy.routes);
        }
        let ips = wire
            .ips
            .into_iter()
            .map(|ip| {
                Ok(IpConfig {
                    address: parse_prefix(&ip.address, "ips[].address")?,
                    gateway: ip
                        .gateway
                        .as_deref()
                        .filter(|g| !g.is_empty())
                        .map(|g| parse_ip(g, "ips[].gateway"))
                        .transpose()?,
                    interface: ip
                        .interface
                        .map(|i| {
                            u32::try_from(i).map_err(|_| {
                                CniError::decode(format!("ips[].interface {i} is not an index"))
                            })
                        })
                        .transpose()?,
                })
            })
            .collect::<Result<_, CniError>>()?;
        let routes = wire
            .routes
            .into_iter()
            .map(|r| {
                Ok(Route {
                    dst: parse_prefix(&r.dst, "routes[].dst")?,
                    gw: r
                        .gw
                        .as_deref()
                        .filter(|g| !g.is_empty())
                        .map(|g| parse_ip(g, "routes[].gw"))
                        .transpose()?,
                    mtu: r.mtu,
                    advmss: r.advmss,
                    priority: r.priority,
                    table: r.table,
                    scope: r.scope,
                })
            })
            .collect::<Result<_, CniError>>()?;
        let interfaces = wire
            .interfaces
            .into_iter()
            .map(|i| Interface {
                name: i.name,
                mac: i.mac.filter(|m| !m.is_empty()),
                mtu: i.mtu.filter(|m| *m != 0),
                sandbox: i.sandbox.filter(|s| !s.is_empty()),
                socket_path: i.socket_path.filter(|s| !s.is_empty()),
                pci_id: i.pci_id.filter(|s| !s.is_empty()),
            })
            .collect();
        Ok(CniResult {
            interfaces,
            ips,
            routes,
            dns: wire.dns.unwrap_or_default(),
        })
    }

    /// The result as `version` prints it. 0.1.0 and 0.2.0 cannot say a
    /// result without an address.
    pub fn to_json(&self, version: CniVersion) -> Result<String, CniError> {
        if version.has_ip4_ip6_shape() {
            return self.to_json_02(version);
        }
        let v11 = version.has_1_1_fields();
        let out = OutResult {
            cni_version: version.as_str(),
            interfaces: self
                .interfaces
                .iter()
                .map(|i| OutInterface {
                    name: &i.name,
                    mac: i.mac.as_deref(),
                    mtu: i.mtu.filter(|_| v11),
                    sandbox: i.sandbox.as_deref(),
                    socket_path: i.socket_path.as_deref().filter(|_| v11),
                    pci_id: i.pci_id.as_deref().filter(|_| v11),
                })
                .collect(),
            ips: self
                .ips
                .iter()
                .map(|ip| OutIp {
                    version: version
                        .tags_ip_version()
                        .then_some(if ip.address.is_ipv4() { "4" } else { "6" }),
                    interface: ip.interface,
                    address: ip.address.to_string(),
                    gateway: ip.gateway.map(|g| g.to_string()),
                })
                .collect(),
            routes: self
                .routes
                .iter()
                .map(|r| OutRoute {
                    dst: r.dst.to_string(),
                    gw: r.gw.map(|g| g.to_string()),
                    mtu: r.mtu,
                    advmss: r.advmss,
                    priority: r.priority,
                    table: r.table,
                    scope: r.scope,
                })
                .collect(),
            dns: &self.dns,
        };
        Ok(serde_json::to_string(&out).expect("a CNI result always serializes"))
    }

    /// The 0.1.0/0.2.0 shape, converted as libcni converts a newer result
    /// down: the first address of each family, the routes whose family has
    /// an address, `dst` and `gw` only.
    fn to_json_02(&self, version: CniVersion) -> Result<String, CniError> {
        let family = |v4: bool| -> Option<OutIp02> {
            let ip = self.ips.iter().find(|ip| ip.address.is_ipv4() == v4)?;
            Some(OutIp02 {
                ip: ip.address.to_string(),
                gateway: ip.gateway.map(|g| g.to_string()),
                routes: self
                    .routes
                    .iter()
                    .filter(|r| r.dst.is_ipv4() == v4)
                    .map(|r| OutRoute02 {
                        dst: r.dst.to_string(),
                        gw: r.gw.map(|g| g.to_string()),
                    })
                    .collect(),
            })
        };
        let out = OutResult02 {
            cni_version: version.as_str(),
            ip4: family(true),
            ip6: family(false),
            dns: &self.dns,
        };
        if out.ip4.is_none() && out.ip6.is_none() {
            return Err(CniError::new(
                super::error::code::INCOMPATIBLE_VERSION,
                format!(
                    "cannot convert: no valid IP addresses (a {} result carries only addresses)",
                    version.as_str()
                ),
            ));
        }
        Ok(serde_json::to_string(&out).expect("a CNI result always serializes"))
    }
}

// ---- writing ------------------------------------------------------------

#[derive(Serialize)]
struct OutResult<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<OutInterface<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ips: Vec<OutIp>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<OutRoute>,
    dns: &'a Dns,
}

#[derive(Serialize)]
struct OutResult02<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip4: Option<OutIp02>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip6: Option<OutIp02>,
    dns: &'a Dns,
}

#[derive(Serialize)]
struct OutIp02 {
    ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<OutRoute02>,
}

#[derive(Serialize)]
struct OutRoute02 {
    dst: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    gw: Option<String>,
}

#[derive(Serialize)]
struct OutInterface<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mac: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sandbox: Option<&'a str>,
    #[serde(rename = "socketPath", skip_serializing_if = "Option::is_none")]
    socket_path: Option<&'a str>,
    #[serde(rename = "pciID", skip_serializing_if = "Option::is_none")]
    pci_id: Option<&'a str>,
}

#[derive(Serialize)]
struct OutIp {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<u32>,
    address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<String>,
}

#[derive(Serialize)]
struct OutRoute {
    dst: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    gw: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    advmss: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    table: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::version::SUPPORTED;

    /// What the bridge plugin reports for the classic config, dual stack,
    /// with every optional field set so each version's filtering shows.
    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "mybridge".into(),
                    mac: Some("0a:58:0a:f4:00:01".into()),
                    ..Default::default()
                },
                Interface {
                    name: "veth1a2b3c4d".into(),
                    mac: Some("6e:1f:00:00:00:02".into()),
                    mtu: Some(1500),
                    ..Default::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("ce:9a:00:00:00:03".into()),
                    sandbox: Some("/var/run/netns/c1".into()),
                    pci_id: Some("0000:00:01.0".into()),
                    ..Default::default()
                },
            ],
            ips: vec![
                IpConfig {
                    address: "10.244.0.2/16".parse().unwrap(),
                    gateway: Some("10.244.0.1".parse().unwrap()),
                    interface: Some(2),
                },
                IpConfig {
                    address: "fd00::2/64".parse().unwrap(),
                    gateway: None,
                    interface: Some(2),
                },
            ],
            routes: vec![Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: None,
                mtu: Some(1400),
                advmss: None,
                priority: None,
                table: Some(0),
                scope: None,
            }],
            dns: Dns::default(),
        }
    }

    const IFACES: &str = r#""interfaces":[{"name":"mybridge","mac":"0a:58:0a:f4:00:01"},{"name":"veth1a2b3c4d","mac":"6e:1f:00:00:00:02"},{"name":"eth0","mac":"ce:9a:00:00:00:03","sandbox":"/var/run/netns/c1"}]"#;
    const IFACES_11: &str = r#""interfaces":[{"name":"mybridge","mac":"0a:58:0a:f4:00:01"},{"name":"veth1a2b3c4d","mac":"6e:1f:00:00:00:02","mtu":1500},{"name":"eth0","mac":"ce:9a:00:00:00:03","sandbox":"/var/run/netns/c1","pciID":"0000:00:01.0"}]"#;
    const IPS_TAGGED: &str = r#""ips":[{"version":"4","interface":2,"address":"10.244.0.2/16","gateway":"10.244.0.1"},{"version":"6","interface":2,"address":"fd00::2/64"}]"#;
    const IPS: &str = r#""ips":[{"interface":2,"address":"10.244.0.2/16","gateway":"10.244.0.1"},{"interface":2,"address":"fd00::2/64"}]"#;

    #[test]
    fn golden_output_for_every_version() {
        let golden = |v: &str| -> String {
            match v {
                "0.1.0" | "0.2.0" => format!(
                    r#"{{"cniVersion":"{v}","ip4":{{"ip":"10.244.0.2/16","gateway":"10.244.0.1","routes":[{{"dst":"0.0.0.0/0"}}]}},"ip6":{{"ip":"fd00::2/64"}},"dns":{{}}}}"#
                ),
                "0.3.0" | "0.3.1" | "0.4.0" => {
                    format!(
                        r#"{{"cniVersion":"{v}",{IFACES},{IPS_TAGGED},"routes":[{{"dst":"0.0.0.0/0","mtu":1400,"table":0}}],"dns":{{}}}}"#
                    )
                }
                "1.0.0" => format!(
                    r#"{{"cniVersion":"1.0.0",{IFACES},{IPS},"routes":[{{"dst":"0.0.0.0/0","mtu":1400,"table":0}}],"dns":{{}}}}"#
                ),
                "1.1.0" => format!(
                    r#"{{"cniVersion":"1.1.0",{IFACES_11},{IPS},"routes":[{{"dst":"0.0.0.0/0","mtu":1400,"table":0}}],"dns":{{}}}}"#
                ),
                _ => unreachable!(),
            }
        };
        for v in SUPPORTED {
            let version = CniVersion::parse(v).unwrap();
            assert_eq!(sample().to_json(version).unwrap(), golden(v), "version {v}");
        }
    }

    #[test]
    fn every_version_reads_back_to_the_same_result() {
        for v in SUPPORTED {
            let version = CniVersion::parse(v).unwrap();
            let json: serde_json::Value =
                serde_json::from_str(&sample().to_json(version).unwrap()).unwrap();
            let back = CniResult::from_json(&json).unwrap();
            let mut want = sample();
            if !version.has_1_1_fields() {
                want.interfaces[1].mtu = None;
                want.interfaces[2].pci_id = None;
            }
            if version.has_ip4_ip6_shape() {
                want.interfaces.clear();
                for ip in &mut want.ips {
                    ip.interface = None;
                }
                want.routes[0].mtu = None;
                want.routes[0].table = None;
            }
            assert_eq!(back, want, "version {v}");
        }
    }

    #[test]
    fn ipam_result_and_dns_round_trip() {
        let json = serde_json::json!({
            "cniVersion": "0.4.0",
            "ips": [{"version": "4", "address": "10.1.2.3/24", "gateway": "10.1.2.1"}],
            "dns": {"nameservers": ["10.1.0.10"], "domain": "cluster.local", "search": ["svc"]}
        });
        let r = CniResult::from_json(&json).unwrap();
        assert_eq!(r.ips[0].interface, None);
        assert_eq!(r.dns.domain.as_deref(), Some("cluster.local"));
        assert_eq!(
            r.to_json(CniVersion::V1_0_0).unwrap(),
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.2.3/24","gateway":"10.1.2.1"}],"dns":{"nameservers":["10.1.0.10"],"domain":"cluster.local","search":["svc"]}}"#
        );
    }

    #[test]
    fn a_result_without_addresses_has_no_0_2_0_form() {
        let r = CniResult {
            interfaces: sample().interfaces,
            ..Default::default()
        };
        let e = r.to_json(CniVersion::V0_2_0).unwrap_err();
        assert!(e.msg.contains("no valid IP addresses"), "{e}");
        assert!(r.to_json(CniVersion::V0_3_1).is_ok());
        // Routes of a family without an address are dropped, as libcni does.
        let mut v6_route = sample();
        v6_route.ips.truncate(1);
        v6_route.routes.push(Route {
            dst: "::/0".parse().unwrap(),
            gw: None,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        });
        let json = v6_route.to_json(CniVersion::V0_1_0).unwrap();
        assert!(!json.contains("::/0") && !json.contains("ip6"), "{json}");
    }

    #[test]
    fn malformed_results_are_decode_errors() {
        for bad in [
            serde_json::json!({"ips": [{"address": "10.1.2.3"}]}),
            serde_json::json!({"ips": [{"address": "10.1.2.300/24"}]}),
            serde_json::json!({"ips": [{"address": "10.1.2.3/24", "interface": -1}]}),
            serde_json::json!({"routes": [{"dst": "0.0.0.0/0", "gw": "nope"}]}),
            serde_json::json!({"interfaces": [{"mac": "no name"}]}),
            serde_json::json!({"ips": "not a list"}),
        ] {
            let e = CniResult::from_json(&bad).unwrap_err();
            assert_eq!(e.code, 6, "{bad}: {e}");
        }
    }
}
