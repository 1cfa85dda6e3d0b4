//! Which wasm module a name means.
//!
//! A name `bridge` is `bridge.wasm` in the first directory of
//! `WASM_CNI_MODULE_PATH` (colon-separated; default `/opt/cni/wasm`) that
//! has it. A value with a `/` is a path to a `.wasm` file and must be
//! absolute.

use std::path::{Path, PathBuf};

pub const DEFAULT_MODULE_PATH: &str = "/opt/cni/wasm";

#[derive(Debug, Clone)]
pub struct ModulePath {
    dirs: Vec<PathBuf>,
}

impl ModulePath {
    pub fn from_env(value: Option<&str>) -> Self {
        let value = value
            .filter(|v| !v.is_empty())
            .unwrap_or(DEFAULT_MODULE_PATH);
        ModulePath {
            dirs: value
                .split(':')
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .collect(),
        }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The module file for `name`; `Err` says what was wrong or where it
    /// looked. `Ok(None)` when a plain name has no module (an IPAM type may
    /// then be a native plugin).
    pub fn find(&self, name: &str) -> Result<Option<PathBuf>, String> {
        if name.contains('/') {
            let p = Path::new(name);
            if !p.is_absolute() || p.extension().is_none_or(|e| e != "wasm") {
                return Err(format!(
                    "module path {name:?} must be an absolute path to a .wasm file"
                ));
            }
            return if p.is_file() {
                Ok(Some(p.to_path_buf()))
            } else {
                Err(format!("module {name:?} does not exist"))
            };
        }
        let valid = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(format!("{name:?} is not a valid module name"));
        }
        Ok(self
            .dirs
            .iter()
            .map(|d| d.join(format!("{name}.wasm")))
            .find(|p| p.is_file()))
    }

    pub fn describe(&self) -> String {
        self.dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_searched_in_order_and_paths_taken_as_given() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(b.path().join("bridge.wasm"), b"").unwrap();
        std::fs::write(a.path().join("tuning.wasm"), b"").unwrap();
        std::fs::write(b.path().join("tuning.wasm"), b"").unwrap();
        let mp = ModulePath::from_env(Some(&format!(
            "{}:{}",
            a.path().display(),
            b.path().display()
        )));
        assert_eq!(
            mp.find("bridge").unwrap(),
            Some(b.path().join("bridge.wasm"))
        );
        assert_eq!(
            mp.find("tuning").unwrap(),
            Some(a.path().join("tuning.wasm")),
            "first directory wins"
        );
        assert_eq!(mp.find("host-local").unwrap(), None);
        let abs = b.path().join("bridge.wasm");
        assert_eq!(mp.find(abs.to_str().unwrap()).unwrap(), Some(abs));
        for bad in [
            "../bridge",
            "rel/bridge.wasm",
            "/etc/passwd",
            ".hidden",
            "",
            "a b",
        ] {
            assert!(mp.find(bad).is_err(), "{bad}");
        }
        assert_eq!(ModulePath::from_env(None).describe(), DEFAULT_MODULE_PATH);
    }
}
