//! Paths the node's root trusts: what wasm-cni loads code or policy from
//! (the node policy, module files, the compiled-module cache) must be
//! changeable by nobody but root and us. A file that others can write, or
//! that sits under a directory others can rename things in, could be
//! swapped for their own between our check and our read.

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Owned by root or by us, and not writable by group or others.
fn owned_and_closed(m: &Metadata) -> Result<(), String> {
    let me = rustix::process::geteuid().as_raw();
    if m.uid() != 0 && m.uid() != me {
        return Err(format!("owned by uid {}, not root or uid {me}", m.uid()));
    }
    if m.mode() & 0o022 != 0 {
        return Err(format!(
            "writable by group or others (mode {:o})",
            m.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Every ancestor of a canonical path: root's or ours, and not writable by
/// others unless sticky (as `/tmp` is: there nobody can rename what is not
/// theirs).
fn ancestors_closed(canonical: &Path) -> Result<(), String> {
    let me = rustix::process::geteuid().as_raw();
    for anc in canonical.ancestors().skip(1) {
        let m = fs::metadata(anc).map_err(|e| format!("{}: {e}", anc.display()))?;
        let owner_ok = m.uid() == 0 || m.uid() == me;
        let open = m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0;
        if !owner_ok || open {
            return Err(format!(
                "its directory {} can be changed by others (owner {}, mode {:o})",
                anc.display(),
                m.uid(),
                m.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

/// Why a path is not trusted, or its canonical form.
#[derive(Debug)]
pub enum Untrusted {
    /// It does not exist (or cannot be read).
    Missing(io::Error),
    /// It exists but others could change it.
    Open(String),
}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Untrusted::Missing(e) => write!(f, "{e}"),
            Untrusted::Open(why) => f.write_str(why),
        }
    }
}

fn check(path: &Path, want_dir: bool) -> Result<PathBuf, Untrusted> {
    if !path.is_absolute() {
        return Err(Untrusted::Open("not an absolute path".into()));
    }
    // Checked where it really is: a link may point anywhere, and what
    // matters is who can change the target and the directories above it.
    let canonical = fs::canonicalize(path).map_err(Untrusted::Missing)?;
    let m = fs::metadata(&canonical).map_err(Untrusted::Missing)?;
    if want_dir && !m.is_dir() {
        return Err(Untrusted::Open("not a directory".into()));
    }
    if !want_dir && !m.is_file() {
        return Err(Untrusted::Open("not a regular file".into()));
    }
    owned_and_closed(&m).map_err(Untrusted::Open)?;
    ancestors_closed(&canonical).map_err(Untrusted::Open)?;
    Ok(canonical)
}

/// A file only root and we can change; its canonical path.
pub fn file(path: &Path) -> Result<PathBuf, Untrusted> {
    check(path, false)
}

/// A directory only root and we can change; its canonical path.
pub fn dir(path: &Path) -> Result<PathBuf, Untrusted> {
    check(path, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn closed_files_and_directories_are_trusted_at_their_real_path() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        fs::create_dir(&d).unwrap();
        chmod(&d, 0o755);
        let f = d.join("policy.json");
        fs::write(&f, "{}").unwrap();
        chmod(&f, 0o644);
        assert_eq!(file(&f).unwrap(), fs::canonicalize(&f).unwrap());
        assert_eq!(dir(&d).unwrap(), fs::canonicalize(&d).unwrap());
        let link = tmp.path().join("link.json");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert_eq!(file(&link).unwrap(), fs::canonicalize(&f).unwrap());
    }

    #[test]
    fn what_others_can_change_is_not_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        fs::create_dir(&d).unwrap();
        let f = d.join("x");
        fs::write(&f, "{}").unwrap();
        chmod(&f, 0o666);
        assert!(matches!(file(&f), Err(Untrusted::Open(_))), "writable file");
        chmod(&f, 0o644);
        chmod(&d, 0o777);
        let e = file(&f).unwrap_err().to_string();
        assert!(e.contains("can be changed by others"), "{e}");
        chmod(&d, 0o1777);
        assert!(file(&f).is_ok(), "a sticky directory is fine");
        assert!(matches!(
            file(&d.join("missing")),
            Err(Untrusted::Missing(_))
        ));
        assert!(matches!(dir(&f), Err(Untrusted::Open(_))), "not a dir");
        assert!(file(Path::new("relative")).is_err());
    }
}
