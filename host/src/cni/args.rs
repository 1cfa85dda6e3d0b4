//! `CNI_ARGS`: `K=V;K=V`, as kubelet and podman send it
//! (`IgnoreUnknown=1;K8S_POD_NAME=...`). Which keys a plugin understands is
//! the plugin's business; the host only checks the syntax.

use super::error::CniError;

pub fn parse_cni_args(raw: &str) -> Result<Vec<(String, String)>, CniError> {
    raw.split(';')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CniError::env(format!(
                "invalid CNI_ARGS pair {pair:?}: expected KEY=VALUE"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_style_args() {
        let args = parse_cni_args(
            "IgnoreUnknown=1;K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=default;IP=10.1.2.3",
        )
        .unwrap();
        assert_eq!(args.len(), 4);
        assert_eq!(args[3], ("IP".to_string(), "10.1.2.3".to_string()));
    }

    #[test]
    fn empty_value_and_trailing_separator_are_fine() {
        assert_eq!(
            parse_cni_args("A=;").unwrap(),
            vec![("A".to_string(), String::new())]
        );
        assert!(parse_cni_args("").unwrap().is_empty());
    }

    #[test]
    fn pair_without_equals_is_code_4() {
        let e = parse_cni_args("IgnoreUnknown=1;oops").unwrap_err();
        assert_eq!(e.code, 4);
        assert!(e.msg.contains("oops"));
    }
}
