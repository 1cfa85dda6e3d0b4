//! `tuning`: the reference tuning plugin as a wasm module, chained after an
//! interface plugin. It sets `net` sysctls in the container's namespace
//! and the container interface's MAC, MTU, promiscuous mode, all-multicast
//! and transmit queue length, from the config, `args.cni`,
//! `runtimeConfig.mac` (the `mac` capability) and `MAC` in `CNI_ARGS`, as
//! the reference reads them. What it replaces it keeps in the
//! attachment's state (the host's, not a `dataDir` file) and puts back on
//! DEL; a failed ADD puts back what it had changed before failing.
//!
//! The sysctls are the container's only (the host grants no other), and
//! are not put back: they go with the container's namespace.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use wasm_cni_sdk::types::Error;
use wasm_cni_sdk::{
    CapResultExt, CniError, CniResult, Plugin, Request, attachment_state, link, link_tuning, netns,
    sysctl,
};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Conf {
    #[serde(default)]
    sysctl: BTreeMap<String, String>,
    #[serde(default)]
    mac: String,
    #[serde(default)]
    promisc: bool,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    tx_q_len: Option<u32>,
    #[serde(default)]
    allmulti: Option<bool>,
    #[serde(default)]
    runtime_config: RuntimeConfig,
    #[serde(default)]
    args: Option<ConfArgs>,
}

#[derive(Deserialize, Default)]
struct RuntimeConfig {
    #[serde(default)]
    mac: String,
}

#[derive(Deserialize, Default)]
struct ConfArgs {
    #[serde(default)]
    cni: Option<ArgsCni>,
}

/// `args.cni`: the same settings, each overriding the config's.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ArgsCni {
    sysctl: Option<BTreeMap<String, String>>,
    mac: Option<String>,
    promisc: Option<bool>,
    mtu: Option<u32>,
    allmulti: Option<bool>,
    tx_q_len: Option<u32>,
}

/// What ADD replaced, to put back on DEL (the reference's backup file).
#[derive(Serialize, Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
struct Restore {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    promisc: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allmulti: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tx_q_len: Option<u32>,
}

const RESTORE_KEY: &str = "restore";

/// The settings, in the reference's order of precedence: the config, then
/// `MAC` in `CNI_ARGS`, then `runtimeConfig.mac`, then `args.cni`.
fn load(req: &Request) -> Result<Conf, CniError> {
    let mut c: Conf = req.config()?;
    let args = req.cni_args(&["MAC"])?;
    if let Some(mac) = args.get("MAC").filter(|m| !m.is_empty()) {
        c.mac = mac.to_string();
    }
    if !c.runtime_config.mac.is_empty() {
        c.mac = c.runtime_config.mac.clone();
    }
    if let Some(a) = c.args.take().and_then(|a| a.cni) {
        c.sysctl.extend(a.sysctl.unwrap_or_default());
        c.mac = a.mac.unwrap_or(c.mac);
        c.promisc = a.promisc.unwrap_or(c.promisc);
        c.mtu = a.mtu.unwrap_or(c.mtu);
        c.allmulti = a.allmulti.or(c.allmulti);
        c.tx_q_len = a.tx_q_len.or(c.tx_q_len);
    }
    if !c.mac.is_empty() {
        c.mac = normalized_mac(&c.mac)?;
    }
    // `IFNAME` in a key stands for the interface, as in the reference.
    c.sysctl = std::mem::take(&mut c.sysctl)
        .into_iter()
        .map(|(k, v)| (k.replace("IFNAME", &req.ifname), v))
        .collect();
    for key in c.sysctl.keys() {
        let net = key.starts_with("net.") || key.starts_with("net/");
        if !net {
            return Err(CniError::config(format!(
                "invalid net sysctl key: {key:?} (tuning sets net sysctls only)"
            )));
        }
    }
    Ok(c)
}

/// `AA-BB-...` or `aa:bb:...`, lower case with colons; error 7 otherwise.
fn normalized_mac(mac: &str) -> Result<String, CniError> {
    let parts: Vec<&str> = mac.split([':', '-']).collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return Err(CniError::config(format!("invalid mac address {mac:?}")));
    }
    Ok(parts.join(":").to_ascii_lowercase())
}

type Ns = netns::Namespace;

/// What applying `c` would replace: the record DEL needs, kept before
/// anything changes (as the reference writes its backup first). `None`
/// when `c` changes no setting of the link.
fn to_restore(c: &Conf, now: &link_tuning::Settings) -> Option<Restore> {
    let r = Restore {
        mac: (!c.mac.is_empty()).then(|| now.mac.clone()),
        mtu: (c.mtu != 0).then_some(now.mtu),
        promisc: c.promisc.then_some(now.promiscuous),
        allmulti: c.allmulti.map(|_| now.allmulti),
        tx_q_len: c.tx_q_len.map(|_| now.txqlen),
    };
    let any = r.mac.is_some()
        || r.mtu.is_some()
        || r.promisc.is_some()
        || r.allmulti.is_some()
        || r.tx_q_len.is_some();
    any.then_some(r)
}

/// Apply the settings, in the reference's order (MAC, promiscuous, MTU,
/// all-multicast, queue), noting in `undo` what was changed so far.
fn apply(
    c: &Conf,
    ns: &Ns,
    ifname: &str,
    now: &link_tuning::Settings,
    undo: &mut Restore,
) -> Result<(), CniError> {
    if !c.mac.is_empty() {
        link::set_mac(ns, ifname, &c.mac).context(format!("set MAC {} on {ifname}", c.mac))?;
        undo.mac = Some(now.mac.clone());
    }
    if c.promisc {
        link::set_promiscuous(ns, ifname, true).context(format!("set {ifname} promiscuous"))?;
        undo.promisc = Some(now.promiscuous);
    }
    if c.mtu != 0 {
        link::set_mtu(ns, ifname, c.mtu).context(format!("set MTU {} on {ifname}", c.mtu))?;
        undo.mtu = Some(now.mtu);
    }
    if let Some(on) = c.allmulti {
        link_tuning::set_allmulti(ns, ifname, on).context(format!("set allmulti on {ifname}"))?;
        undo.allmulti = Some(now.allmulti);
    }
    if let Some(len) = c.tx_q_len {
        link_tuning::set_txqlen(ns, ifname, len)
            .context(format!("set txqueuelen {len} on {ifname}"))?;
        undo.tx_q_len = Some(now.txqlen);
    }
    Ok(())
}

/// Put back what `undo` names; every step is tried.
fn put_back(ns: &Ns, ifname: &str, undo: &Restore) -> Result<(), CniError> {
    let mut failed = Vec::new();
    let mut step = |r: Result<(), Error>, what: &str| {
        if let Err(e) = r {
            failed.push(format!("{what}: {}", e.describe()));
        }
    };
    if let Some(mtu) = undo.mtu {
        step(link::set_mtu(ns, ifname, mtu), "MTU");
    }
    if let Some(mac) = &undo.mac {
        step(link::set_mac(ns, ifname, mac), "MAC");
    }
    if let Some(on) = undo.promisc {
        step(link::set_promiscuous(ns, ifname, on), "promiscuous");
    }
    if let Some(on) = undo.allmulti {
        step(link_tuning::set_allmulti(ns, ifname, on), "allmulti");
    }
    if let Some(len) = undo.tx_q_len {
        step(link_tuning::set_txqlen(ns, ifname, len), "txqueuelen");
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CniError::failed(format!(
            "restoring {ifname}: {}",
            failed.join("; ")
        )))
    }
}

struct Tuning;

impl Plugin for Tuning {
    fn add(req: Request) -> Result<CniResult, CniError> {
        let c = load(&req)?;
        let Some(mut result) = req.prev_result.clone() else {
            return Err(CniError::config(
                "tuning must be called as a chained plugin: the config has no prevResult",
            ));
        };
        let ns = netns::container().context("open the container namespace")?;
        let ifname = &req.ifname;
        let now = link_tuning::settings_of(&ns, ifname).context(format!("interface {ifname}"))?;
        // The record first: whatever happens next, DEL can put back.
        if let Some(record) = to_restore(&c, &now) {
            let kept = serde_json::to_string(&record).expect("serializable");
            attachment_state::put(RESTORE_KEY, &kept).context("keep the settings to restore")?;
        }
        for (key, value) in &c.sysctl {
            sysctl::set(&ns, key, value).context(format!("set sysctl {key}"))?;
        }
        let mut undo = Restore::default();
        if let Err(e) = apply(&c, &ns, ifname, &now, &mut undo) {
            // What was changed before the failure goes back first.
            return Err(match put_back(&ns, ifname, &undo) {
                Ok(()) => e,
                Err(more) => CniError::failed(format!("{}; {}", e.msg, more.msg)),
            });
        }
        if !c.mac.is_empty() {
            // As the reference: the result's interface of that name.
            for i in result.interfaces.iter_mut().filter(|i| i.name == *ifname) {
                i.mac = Some(c.mac.clone());
            }
        }
        Ok(result)
    }

    /// Put back what ADD replaced, as far as it can: like the reference,
    /// DEL succeeds whatever it could not restore (a chain's DEL stops at
    /// the first error, and the plugins before this one must still
    /// release what they hold); what failed is logged.
    fn del(req: Request) -> Result<(), CniError> {
        let kept = match attachment_state::get(RESTORE_KEY) {
            Ok(Some(k)) => k,
            Ok(None) => return Ok(()),
            Err(e) => {
                wasm_cni_sdk::warn!("tuning DEL: the settings to restore: {}", e.describe());
                return Ok(());
            }
        };
        match serde_json::from_str::<Restore>(&kept) {
            Err(e) => wasm_cni_sdk::warn!("tuning DEL: the settings to restore: {e}"),
            Ok(undo) => match netns::container() {
                Ok(ns) => {
                    if let Err(e) = put_back(&ns, &req.ifname, &undo) {
                        wasm_cni_sdk::warn!("tuning DEL: {}", e.msg);
                    }
                }
                // The namespace is gone, and the interface with it.
                Err(e) => wasm_cni_sdk::debug!("tuning DEL: {}", e.describe()),
            },
        }
        if let Err(e) = attachment_state::delete(RESTORE_KEY) {
            wasm_cni_sdk::warn!("tuning DEL: forget the settings: {}", e.describe());
        }
        Ok(())
    }

    fn check(req: Request) -> Result<(), CniError> {
        let c = load(&req)?;
        if req.prev_result.is_none() {
            return Err(CniError::config(
                "tuning must be called as a chained plugin: the config has no prevResult",
            ));
        }
        let ns = netns::container().context("open the container namespace")?;
        let ifname = &req.ifname;
        for (key, want) in &c.sysctl {
            let got = sysctl::get(&ns, key).context(format!("read sysctl {key}"))?;
            if got.trim() != want.trim() {
                return Err(CniError::failed(format!(
                    "sysctl {key} is {got:?}, not {want:?}"
                )));
            }
        }
        let now = link_tuning::settings_of(&ns, ifname).context(format!("interface {ifname}"))?;
        let mismatch = |what: &str, got: String, want: String| {
            Err(CniError::failed(format!(
                "{ifname}: {what} is {got}, not {want}"
            )))
        };
        if !c.mac.is_empty() && now.mac != c.mac {
            return mismatch("MAC", now.mac, c.mac);
        }
        if c.mtu != 0 && now.mtu != c.mtu {
            return mismatch("MTU", now.mtu.to_string(), c.mtu.to_string());
        }
        if now.promiscuous != c.promisc {
            return mismatch(
                "promiscuous",
                now.promiscuous.to_string(),
                c.promisc.to_string(),
            );
        }
        if let Some(on) = c.allmulti
            && now.allmulti != on
        {
            return mismatch("allmulti", now.allmulti.to_string(), on.to_string());
        }
        if let Some(len) = c.tx_q_len
            && now.txqlen != len
        {
            return mismatch("txqueuelen", now.txqlen.to_string(), len.to_string());
        }
        Ok(())
    }
}

wasm_cni_sdk::register!(Tuning);
