//! Reading a request: the plugin's config keys and `CNI_ARGS`.

use crate::{CniError, Request, codes};
use serde::de::DeserializeOwned;

impl Request {
    /// Deserialize the plugin's configuration (the whole stdin document)
    /// into the plugin's own type. Unknown keys are ignored unless the type
    /// says otherwise; a malformed key is error 7 naming it.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, CniError> {
        serde_json::from_str(&self.config)
            .map_err(|e| CniError::config(format!("invalid network config: {e}")))
    }

    /// `CNI_ARGS`, checked against the keys this plugin understands.
    pub fn cni_args(&self, known: &[&str]) -> Result<Args, CniError> {
        Args::new(&self.args, known)
    }
}

/// `CNI_ARGS` a plugin understands. As in the reference plugins, a key the
/// plugin does not know is an error unless `IgnoreUnknown` is true (kubelet
/// and podman always send it).
pub struct Args {
    pairs: Vec<(String, String)>,
}

impl Args {
    pub fn new(pairs: &[(String, String)], known: &[&str]) -> Result<Args, CniError> {
        let ignore_unknown = pairs.iter().any(|(k, v)| {
            k == "IgnoreUnknown" && matches!(v.to_ascii_lowercase().as_str(), "1" | "true")
        });
        if !ignore_unknown
            && let Some((k, _)) = pairs
                .iter()
                .find(|(k, _)| k != "IgnoreUnknown" && !known.contains(&k.as_str()))
        {
            return Err(CniError::new(
                codes::INVALID_ENVIRONMENT,
                format!("CNI_ARGS: unknown key {k:?}"),
            )
            .with_details("set IgnoreUnknown=1 to pass keys this plugin does not use"));
        }
        Ok(Args {
            pairs: pairs.to_vec(),
        })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}
