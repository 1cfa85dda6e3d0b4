//! Ownership tags: how wasm-cni marks what it leaves on the node so that a
//! later call knows whose it is without any state of its own. A bridge
//! carries its network (`wasm-cni <network>` as its alias); a masquerade
//! rule carries its attachment (`wasm-cni <network> <container id>
//! <ifname>` as its comment). Network names and container ids contain no
//! spaces (both are `[A-Za-z0-9][A-Za-z0-9_.-]*`), so the fields cannot
//! run into each other; a tag too long for the kernel's field is replaced
//! by a digest of the same fields.

use sha2::{Digest, Sha256};

const PREFIX: &str = "wasm-cni";

/// `wasm-cni f1 f2 ...`, or `wasm-cni sha256:<hex>` of the fields when that
/// is longer than `max` bytes.
pub fn tag(fields: &[&str], max: usize) -> String {
    let plain = std::iter::once(PREFIX)
        .chain(fields.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    if plain.len() <= max {
        return plain;
    }
    let digest = Sha256::digest(fields.join("\0"));
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{PREFIX} sha256:{hex}")
}

/// IFLA_IFALIAS holds at most 255 bytes.
const ALIAS_MAX: usize = 255;

/// The alias of a bridge wasm-cni created for `network`.
pub fn bridge_mark(network: &str) -> String {
    tag(&[network], ALIAS_MAX)
}

/// Whose bridge an alias says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeOwner {
    /// Marked for this network.
    This,
    /// Marked for another network.
    Other,
    /// No network's mark: not wasm-cni's, or made by a wasm-cni before
    /// marks named networks (alias exactly `wasm-cni`).
    Unmarked,
}

pub fn bridge_owner(alias: Option<&str>, network: &str) -> BridgeOwner {
    match alias {
        Some(a) if a == bridge_mark(network) => BridgeOwner::This,
        Some(a) if a.starts_with("wasm-cni ") => BridgeOwner::Other,
        _ => BridgeOwner::Unmarked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_name_their_fields_or_hash_them_to_fit() {
        assert_eq!(tag(&["mynet", "c1", "eth0"], 127), "wasm-cni mynet c1 eth0");
        let long = tag(&[&"n".repeat(100), &"c".repeat(64), "eth0"], 127);
        assert!(long.len() <= 127 && long.starts_with("wasm-cni sha256:"));
        assert_ne!(long, tag(&[&"n".repeat(100), &"c".repeat(64), "eth1"], 127));
    }

    #[test]
    fn bridges_belong_to_the_network_that_made_them() {
        assert_eq!(bridge_mark("mynet"), "wasm-cni mynet");
        assert_eq!(
            bridge_owner(Some("wasm-cni mynet"), "mynet"),
            BridgeOwner::This
        );
        assert_eq!(
            bridge_owner(Some("wasm-cni other"), "mynet"),
            BridgeOwner::Other
        );
        assert_eq!(
            bridge_owner(Some("wasm-cni mynet2"), "mynet"),
            BridgeOwner::Other
        );
        assert_eq!(
            bridge_owner(Some("wasm-cni"), "mynet"),
            BridgeOwner::Unmarked
        );
        assert_eq!(bridge_owner(Some("lan"), "mynet"), BridgeOwner::Unmarked);
        assert_eq!(bridge_owner(None, "mynet"), BridgeOwner::Unmarked);
        let long = "n".repeat(300);
        assert!(bridge_mark(&long).len() <= 255);
        assert_eq!(
            bridge_owner(Some(&bridge_mark(&long)), &long),
            BridgeOwner::This
        );
    }
}
