//! CNI spec versions: which ones wasm-cni speaks, and the VERSION command.

use super::error::{CniError, code};
use serde::Deserialize;

/// Every version whose config and result shape wasm-cni reads and writes:
/// all that libcni and the reference plugins know.
pub const SUPPORTED: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];
pub const LATEST: &str = "1.1.0";

/// The supported version a config on stdin names, if it is JSON that
/// names one.
pub fn requested(stdin: &[u8]) -> Option<CniVersion> {
    #[derive(Deserialize)]
    struct Named<'a> {
        #[serde(rename = "cniVersion", borrow)]
        cni_version: Option<std::borrow::Cow<'a, str>>,
    }
    let named: Named = serde_json::from_slice(stdin).ok()?;
    CniVersion::parse(&named.cni_version?)
}

/// A supported version, ordered, so "does this version have CHECK" is `>=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CniVersion {
    V0_1_0,
    V0_2_0,
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl CniVersion {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            // libcni reads a config without a version as 0.1.0.
            "" | "0.1.0" => CniVersion::V0_1_0,
            "0.2.0" => CniVersion::V0_2_0,
            "0.3.0" => CniVersion::V0_3_0,
            "0.3.1" => CniVersion::V0_3_1,
            "0.4.0" => CniVersion::V0_4_0,
            "1.0.0" => CniVersion::V1_0_0,
            "1.1.0" => CniVersion::V1_1_0,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        SUPPORTED[self as usize]
    }

    /// The version a config asks for, or error 1 naming what we support,
    /// worded like the reference (`config is "9.9.9", plugin supports [...]`).
    pub fn require(s: &str) -> Result<Self, CniError> {
        Self::parse(s).ok_or_else(|| {
            let list: Vec<String> = SUPPORTED.iter().map(|v| format!("{v:?}")).collect();
            CniError::new(code::INCOMPATIBLE_VERSION, "incompatible CNI versions").with_details(
                format!("config is {s:?}, plugin supports [{}]", list.join(" ")),
            )
        })
    }

    /// 0.3.x and 0.4.0 results tag each IP with `"version"`.
    pub fn tags_ip_version(self) -> bool {
        (CniVersion::V0_3_0..=CniVersion::V0_4_0).contains(&self)
    }

    /// 0.1.0 and 0.2.0 results have one `ip4` and one `ip6`, no
    /// interfaces.
    pub fn has_ip4_ip6_shape(self) -> bool {
        self <= CniVersion::V0_2_0
    }

    /// CHECK exists from 0.4.0 on.
    pub fn has_check(self) -> bool {
        self >= CniVersion::V0_4_0
    }

    /// GC and STATUS exist from 1.1.0 on.
    pub fn has_gc_and_status(self) -> bool {
        self >= CniVersion::V1_1_0
    }

    /// 1.1.0 adds interface mtu/socketPath/pciID and route mtu/advmss/...
    pub fn has_1_1_fields(self) -> bool {
        self >= CniVersion::V1_1_0
    }
}

/// The VERSION reply. The runtime's `cniVersion` is echoed when we speak
/// it (podman and libcni parse the reply in that version), else our newest.
pub fn version_reply(stdin: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "cniVersion", default)]
        cni_version: String,
    }
    let asked = serde_json::from_slice::<Probe>(stdin)
        .map(|p| p.cni_version)
        .unwrap_or_default();
    let echo = match asked.as_str() {
        "" => LATEST,
        v => CniVersion::parse(v).map_or(LATEST, CniVersion::as_str),
    };
    serde_json::json!({ "cniVersion": echo, "supportedVersions": SUPPORTED }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_version_is_code_1_with_reference_wording() {
        let e = CniVersion::require("9.9.9").unwrap_err();
        assert_eq!(e.code, 1);
        assert_eq!(
            e.details,
            r#"config is "9.9.9", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]"#
        );
        assert!(CniVersion::require("0.5.0").is_err());
        assert_eq!(CniVersion::require("").unwrap(), CniVersion::V0_1_0);
    }

    #[test]
    fn versions_are_ordered() {
        for (i, v) in SUPPORTED.iter().enumerate() {
            assert_eq!(CniVersion::parse(v).unwrap().as_str(), *v);
            assert_eq!(CniVersion::parse(v).unwrap() as usize, i);
        }
        assert!(!CniVersion::V0_3_1.has_check());
        assert!(CniVersion::V0_4_0.has_check());
        assert!(CniVersion::V0_4_0.tags_ip_version());
        assert!(!CniVersion::V1_0_0.tags_ip_version());
        assert!(!CniVersion::V0_2_0.tags_ip_version());
        assert!(CniVersion::V0_2_0.has_ip4_ip6_shape());
        assert!(!CniVersion::V0_3_0.has_ip4_ip6_shape());
    }

    #[test]
    fn version_reply_echoes_a_known_version() {
        assert_eq!(
            version_reply(br#"{"cniVersion":"0.4.0"}"#),
            r#"{"cniVersion":"0.4.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}"#
        );
        assert!(version_reply(b"").starts_with(r#"{"cniVersion":"1.1.0""#));
        assert!(
            version_reply(br#"{"cniVersion":"0.2.0"}"#).starts_with(r#"{"cniVersion":"0.2.0""#)
        );
        assert!(
            version_reply(br#"{"cniVersion":"0.9.0"}"#).starts_with(r#"{"cniVersion":"1.1.0""#)
        );
    }
}
