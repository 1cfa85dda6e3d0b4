//! `portmap`: the reference portmap plugin as a wasm module, chained after
//! an interface plugin. It forwards the runtime's `portMappings`
//! (`runtimeConfig`, from the `portMappings` capability) from the node to
//! the container's first IPv4 and first IPv6 address of the request's
//! interface in `prevResult`, as the reference picks them, and passes
//! `prevResult` on unchanged.
//!
//! The host does the rest (`port-mapping`): one lookup per connection in
//! wasm-cni's nftables table, hairpin masquerade by the mark bit
//! (`markMasqBit`, 13 by default) when `snat` (the default), and a port
//! another attachment holds refused rather than shared. The rules belong
//! to the attachment: its DEL and GC remove them (the host does, whatever
//! the plugin), so DEL here has nothing of its own to do.
//!
//! Not carried over: `externalSetMarkChain` (an iptables chain, which
//! wasm-cni's nftables table cannot jump to), `conditionsV4`/`conditionsV6`
//! (iptables match arguments) and `masqAll`: each is refused with code 2.
//! Host ports on 127.0.0.1 work only where the node policy allows them.

use serde::Deserialize;
use wasm_cni_sdk::port_mapping::{self, Mapping, Options, Protocol};
use wasm_cni_sdk::types::Error;
use wasm_cni_sdk::{
    CniError, CniResult, GcRequest, IpAddress, IpPrefix, Plugin, Request, attachments, codes,
};

/// The reference's default `markMasqBit`.
const DEFAULT_MARK_BIT: i64 = 13;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Conf {
    snat: Option<bool>,
    mark_masq_bit: Option<i64>,
    external_set_mark_chain: Option<String>,
    conditions_v4: Option<Vec<String>>,
    conditions_v6: Option<Vec<String>>,
    #[serde(default)]
    masq_all: bool,
    /// `iptables` or `nftables`: either way, wasm-cni's nftables table.
    #[allow(dead_code)]
    backend: Option<String>,
    #[serde(default)]
    runtime_config: RuntimeConfig,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfig {
    #[serde(default)]
    port_mappings: Vec<PortMapEntry>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
struct PortMapEntry {
    host_port: i64,
    container_port: i64,
    #[serde(default)]
    protocol: String,
    #[serde(default, rename = "hostIP")]
    host_ip: String,
}

/// The config, checked as the reference checks it (and refusing what
/// wasm-cni cannot do, code 2): the options for the host.
fn load(req: &Request) -> Result<(Conf, Options), CniError> {
    let c: Conf = req.config()?;
    if c.external_set_mark_chain.is_some() {
        if c.mark_masq_bit.is_some() {
            return Err(CniError::config(
                "cannot specify externalSetMarkChain and markMasqBit",
            ));
        }
        return Err(CniError::new(
            codes::UNSUPPORTED_FIELD,
            "unsupported field \"externalSetMarkChain\": it names an iptables chain, and wasm-cni's nftables table cannot jump to one; use markMasqBit (the masquerade mark) instead",
        ));
    }
    for (field, set) in [
        (
            "conditionsV4",
            c.conditions_v4.as_ref().is_some_and(|v| !v.is_empty()),
        ),
        (
            "conditionsV6",
            c.conditions_v6.as_ref().is_some_and(|v| !v.is_empty()),
        ),
        ("masqAll", c.masq_all),
    ] {
        if set {
            return Err(CniError::unsupported(field).with_details(
                "wasm-cni's portmap keeps its rules in nftables and does not take iptables match arguments or masquerade everything",
            ));
        }
    }
    let bit = c.mark_masq_bit.unwrap_or(DEFAULT_MARK_BIT);
    let Ok(masq_mark_bit @ 0..=31) = u8::try_from(bit) else {
        return Err(CniError::config(format!(
            "markMasqBit {bit}: must be between 0 and 31"
        )));
    };
    for m in &c.runtime_config.port_mappings {
        if !(1..=65535).contains(&m.container_port) {
            return Err(CniError::config(format!(
                "invalid container port number: {}",
                m.container_port
            )));
        }
        if !(1..=65535).contains(&m.host_port) {
            return Err(CniError::config(format!(
                "invalid host port number: {}",
                m.host_port
            )));
        }
    }
    let options = Options {
        snat: c.snat.unwrap_or(true),
        masq_mark_bit,
    };
    Ok((c, options))
}

/// The container's first IPv4 and first IPv6 address of the request's
/// interface, as the reference picks them: an address whose interface is
/// not the request's in the sandbox is skipped; one with no interface
/// index counts.
fn container_ips(result: &CniResult, ifname: &str) -> Vec<IpPrefix> {
    let mut picked: Vec<IpPrefix> = Vec::new();
    for ip in &result.ips {
        let v4 = matches!(ip.address.address, IpAddress::V4(_));
        if picked
            .iter()
            .any(|p| matches!(p.address, IpAddress::V4(_)) == v4)
        {
            continue;
        }
        if let Some(i) = ip.interface
            && let Some(iface) = result.interfaces.get(i as usize)
            && (iface.name != ifname || iface.sandbox.as_deref().unwrap_or("").is_empty())
        {
            continue;
        }
        picked.push(ip.address);
    }
    picked
}

fn parse_ip(s: &str) -> Option<IpAddress> {
    match s.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(a) => {
            let o = a.octets();
            Some(IpAddress::V4((o[0], o[1], o[2], o[3])))
        }
        std::net::IpAddr::V6(a) => {
            let s = a.segments();
            Some(IpAddress::V6((
                s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
            )))
        }
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

fn protocol(p: &str) -> Result<Protocol, CniError> {
    match p.to_ascii_lowercase().as_str() {
        // Kubernetes always names one; the reference's iptables default.
        "" | "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        "sctp" => Ok(Protocol::Sctp),
        other => Err(CniError::config(format!(
            "portMappings: unknown protocol {other:?} (tcp, udp or sctp)"
        ))),
    }
}

/// The mappings for the host: each entry to each container address of
/// its host address's family (an entry without one goes to both).
fn mappings(entries: &[PortMapEntry], containers: &[IpPrefix]) -> Result<Vec<Mapping>, CniError> {
    let mut out = Vec::new();
    for e in entries {
        let host_ip = match e.host_ip.as_str() {
            "" => None,
            s => Some(parse_ip(s).ok_or_else(|| {
                CniError::config(format!("portMappings: hostIP {s:?} is not an IP address"))
            })?),
        };
        for c in containers {
            let same_family = host_ip.is_none_or(|h| {
                matches!(h, IpAddress::V4(_)) == matches!(c.address, IpAddress::V4(_))
            });
            if !same_family {
                continue;
            }
            out.push(Mapping {
                host_port: e.host_port as u16,
                container_port: e.container_port as u16,
                protocol: protocol(&e.protocol)?,
                host_ip,
                container_ip: *c,
            });
        }
    }
    Ok(out)
}

/// A host refusal as the runtime should see it: what the node does not
/// allow is code 2 (with the host's reason), a bad mapping 7.
fn refused(e: Error) -> CniError {
    match e {
        Error::Denied(m) => CniError::new(codes::UNSUPPORTED_FIELD, format!("portMappings: {m}")),
        Error::AlreadyExists(m) => CniError::failed(format!("portMappings: {m}")),
        e => e.context("forward host ports"),
    }
}

struct Portmap;

impl Plugin for Portmap {
    fn add(req: Request) -> Result<CniResult, CniError> {
        let (c, options) = load(&req)?;
        let Some(result) = req.prev_result.clone() else {
            return Err(CniError::config(
                "portmap must be called as a chained plugin: the config has no prevResult",
            ));
        };
        if c.runtime_config.port_mappings.is_empty() {
            return Ok(result);
        }
        let wanted = mappings(
            &c.runtime_config.port_mappings,
            &container_ips(&result, &req.ifname),
        )?;
        if !wanted.is_empty() {
            port_mapping::forward(&wanted, options).map_err(refused)?;
        }
        Ok(result)
    }

    fn check(req: Request) -> Result<(), CniError> {
        let (c, _) = load(&req)?;
        let Some(result) = req.prev_result.as_ref() else {
            return Err(CniError::config(
                "portmap must be called as a chained plugin: the config has no prevResult",
            ));
        };
        if c.runtime_config.port_mappings.is_empty() {
            return Ok(());
        }
        let wanted = mappings(
            &c.runtime_config.port_mappings,
            &container_ips(result, &req.ifname),
        )?;
        let held = port_mapping::forwarded().map_err(|e| e.context("list host ports"))?;
        let same = |a: &Mapping, b: &Mapping| {
            let unspecified = |h: &Option<IpAddress>| match h {
                None => None,
                Some(IpAddress::V4((0, 0, 0, 0)))
                | Some(IpAddress::V6((0, 0, 0, 0, 0, 0, 0, 0))) => None,
                Some(h) => Some(*h),
            };
            a.host_port == b.host_port
                && a.container_port == b.container_port
                && a.protocol == b.protocol
                && unspecified(&a.host_ip) == unspecified(&b.host_ip)
                && a.container_ip.address == b.container_ip.address
        };
        match wanted.iter().find(|w| !held.iter().any(|h| same(w, h))) {
            None => Ok(()),
            Some(w) => Err(CniError::failed(format!(
                "host port {}/{} to container port {} is not forwarded",
                w.host_port,
                protocol_name(w.protocol),
                w.container_port
            ))),
        }
    }

    /// The host ports of attachments that are gone (with their other
    /// rules): the host finds them by the network's mark.
    fn gc(req: GcRequest) -> Result<(), CniError> {
        attachments::retain(&req.valid_attachments)
            .map(drop)
            .map_err(|e| e.context("remove the rules of stale attachments"))
    }
}

wasm_cni_sdk::register!(Portmap);
