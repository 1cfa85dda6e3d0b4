//! Which wasm module a name means, and whether the node lets it load.
//!
//! A name `bridge` is `bridge.wasm` in the first module directory that has
//! it: `WASM_CNI_MODULE_PATH` (colon-separated; the runtime's environment),
//! else the node policy's `moduleDirs`, else `/opt/cni/wasm`. Names are one
//! path component. A config's `"plugin"` may instead be an absolute path
//! to a `.wasm` file, which must lie in a module directory unless the node
//! policy allows modules elsewhere: a config is not trusted to pick code
//! from anywhere on the node (CVE-2021-20206 was a config naming any
//! binary). Every module file, wherever it is, must be one only root (or
//! we) can change.

use crate::cni::CniError;
use crate::trust;
use std::path::{Path, PathBuf};

pub const DEFAULT_MODULE_PATH: &str = "/opt/cni/wasm";

#[derive(Debug, Clone)]
pub struct ModulePath {
    dirs: Vec<PathBuf>,
    anywhere: bool,
}

/// A module name: one path component of `[A-Za-z0-9_.-]`, not hidden.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid module name (one path component of letters, digits, '-', '_' and '.')"
        ))
    }
}

impl ModulePath {
    /// From `WASM_CNI_MODULE_PATH` (`env`), else the policy's directories,
    /// else the default; `anywhere` from the policy.
    pub fn new(env: Option<&str>, policy_dirs: Option<&[PathBuf]>, anywhere: bool) -> Self {
        let dirs = match (env.filter(|v| !v.is_empty()), policy_dirs) {
            (Some(v), _) => v
                .split(':')
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .collect(),
            (None, Some(dirs)) => dirs.to_vec(),
            (None, None) => vec![PathBuf::from(DEFAULT_MODULE_PATH)],
        };
        ModulePath { dirs, anywhere }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The module a config's `"plugin"` (or the name this binary was called
    /// by) names: a module name, or an absolute path to a `.wasm` file.
    pub fn find_plugin(&self, value: &str) -> Result<Option<PathBuf>, CniError> {
        if !value.contains('/') {
            return self.find(value).map_err(|e| CniError {
                msg: format!("\"plugin\": {}", e.msg),
                ..e
            });
        }
        let p = Path::new(value);
        if !p.is_absolute() || p.extension().is_none_or(|e| e != "wasm") {
            return Err(CniError::config(format!(
                "\"plugin\" {value:?} must be a module name or an absolute path to a .wasm file"
            )));
        }
        let canonical = std::fs::canonicalize(p)
            .map_err(|e| CniError::config(format!("\"plugin\" {value:?}: {e}")))?;
        let inside = self
            .dirs
            .iter()
            .any(|d| std::fs::canonicalize(d).is_ok_and(|d| canonical.starts_with(&d)));
        if !inside && !self.anywhere {
            return Err(CniError::config(format!(
                "\"plugin\" {value:?} is outside the module directories [{}]",
                self.describe()
            ))
            .with_details(
                "name a module in them, or have the node's root set \"allowModulesOutsideModuleDirs\" in the node policy",
            ));
        }
        Ok(Some(trusted(&canonical)?))
    }

    /// The module file for a name, from the first directory that has one;
    /// `None` when none has (an IPAM type may then be a native plugin).
    pub fn find(&self, name: &str) -> Result<Option<PathBuf>, CniError> {
        check_name(name).map_err(CniError::config)?;
        match self
            .dirs
            .iter()
            .map(|d| d.join(format!("{name}.wasm")))
            .find(|p| p.is_file())
        {
            Some(p) => Ok(Some(trusted(&p)?)),
            None => Ok(None),
        }
    }

    pub fn describe(&self) -> String {
        self.dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// A module file only root (or we) can change; its canonical path.
fn trusted(p: &Path) -> Result<PathBuf, CniError> {
    trust::file(p).map_err(|e| {
        CniError::config(format!("module {}: {e}", p.display())).with_details(
            "module files and their directories must be writable only by root: anyone who can replace a module chooses what a network's plugin does",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn module(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, b"").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    }

    #[test]
    fn names_are_searched_in_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let bridge = module(b.path(), "bridge.wasm");
        let tuning_a = module(a.path(), "tuning.wasm");
        module(b.path(), "tuning.wasm");
        let mp = ModulePath::new(
            Some(&format!("{}:{}", a.path().display(), b.path().display())),
            None,
            false,
        );
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap();
        assert_eq!(mp.find("bridge").unwrap(), Some(canon(&bridge)));
        assert_eq!(
            mp.find("tuning").unwrap(),
            Some(canon(&tuning_a)),
            "first directory wins"
        );
        assert_eq!(mp.find("host-local").unwrap(), None);
        for bad in ["../bridge", "a/b", ".hidden", "", "a b", "/abs"] {
            assert_eq!(mp.find(bad).unwrap_err().code, 7, "{bad}");
        }
    }

    #[test]
    fn paths_must_lie_in_a_module_directory_unless_the_policy_allows() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let inside = module(dir.path(), "x.wasm");
        let outside = module(elsewhere.path(), "x.wasm");
        let strict = ModulePath::new(Some(dir.path().to_str().unwrap()), None, false);
        assert!(
            strict
                .find_plugin(inside.to_str().unwrap())
                .unwrap()
                .is_some()
        );
        let e = strict.find_plugin(outside.to_str().unwrap()).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(
            e.msg.contains("outside the module directories")
                && e.msg.contains(outside.to_str().unwrap()),
            "{e}"
        );
        // A link from inside to outside is judged where it leads.
        let link = dir.path().join("link.wasm");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert_eq!(
            strict.find_plugin(link.to_str().unwrap()).unwrap_err().code,
            7
        );
        // `..` cannot climb out either.
        let climb = format!(
            "{}/../{}/x.wasm",
            dir.path().display(),
            elsewhere.path().file_name().unwrap().to_str().unwrap()
        );
        assert_eq!(strict.find_plugin(&climb).unwrap_err().code, 7);
        let open = ModulePath::new(Some(dir.path().to_str().unwrap()), None, true);
        assert!(
            open.find_plugin(outside.to_str().unwrap())
                .unwrap()
                .is_some()
        );
        for bad in ["rel/x.wasm", "/etc/passwd"] {
            assert_eq!(strict.find_plugin(bad).unwrap_err().code, 7, "{bad}");
        }
    }

    #[test]
    fn modules_others_can_write_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = module(dir.path(), "bridge.wasm");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        let mp = ModulePath::new(Some(dir.path().to_str().unwrap()), None, false);
        let e = mp.find("bridge").unwrap_err();
        assert!(e.msg.contains("writable by group or others"), "{e}");
    }

    #[test]
    fn the_environment_then_the_policy_then_the_default() {
        let policy = [PathBuf::from("/srv/wasm")];
        assert_eq!(
            ModulePath::new(Some("/a:/b"), Some(&policy), false).dirs(),
            [PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(ModulePath::new(None, Some(&policy), false).dirs(), policy);
        assert_eq!(
            ModulePath::new(Some(""), None, false).describe(),
            DEFAULT_MODULE_PATH
        );
    }
}
