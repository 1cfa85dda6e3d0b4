//! The directory of one network's IPAM state, opened once and used only
//! through its descriptor.
//!
//! The path below the store root comes from a network config (`ipam.dataDir`
//! and the network name), so it is walked one component at a time with
//! `openat(O_NOFOLLOW | O_DIRECTORY)`, creating what is missing: no
//! component may be a symlink or `..`, so nothing is reached outside the
//! root, the equivalent of `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//! (which cannot create directories on the way). Entries are then single
//! components opened relative to the directory's descriptor with
//! `O_NOFOLLOW`: a link planted in the store is refused, not followed.
//!
//! Every function here blocks (it is disk I/O): callers run them off the
//! async runtime's thread.

use rustix::fs::{
    AtFlags, Dir, FileType, Mode, OFlags, RenameFlags, fstat, mkdirat, openat, renameat,
    renameat_with, unlinkat,
};
use rustix::io::Errno;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path};

/// An open store directory.
#[derive(Debug)]
pub struct StoreDir {
    fd: OwnedFd,
}

const DIR_MODE: u32 = 0o755;
const FILE_MODE: u32 = 0o644;
const LOCK_MODE: u32 = 0o600;

/// The largest file read as an entry.
const MAX_ENTRY_BYTES: i64 = 64 * 1024;

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// A component of `below` that is a plain name (no `..`, no root), as text.
fn plain<'a>(c: Component<'a>, below: &Path) -> io::Result<&'a str> {
    let Component::Normal(name) = c else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a relative path of plain components",
                below.display()
            ),
        ));
    };
    component(
        name.to_str()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path is not UTF-8"))?,
    )
}

/// `name` made in the directory `fd` (0755), unless it is there.
fn make_dir(fd: &impl rustix::fd::AsFd, name: &str) -> io::Result<()> {
    match mkdirat(fd, name, Mode::from_raw_mode(DIR_MODE)) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// One path component, or an error naming it.
fn component(name: &str) -> io::Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a single path component"),
        ));
    }
    Ok(name)
}

impl StoreDir {
    /// Open `root/below`; with `create`, make the directories that are
    /// missing (0755, as host-local does). `root` is the node's (trusted)
    /// and resolved as usual; `below` is walked without following links.
    /// `Ok(None)` when it does not exist and `create` is false.
    pub fn open(root: &Path, below: &Path, create: bool) -> io::Result<Option<StoreDir>> {
        if create {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(root)?;
        }
        // The root and any directory on the way are only walked through
        // (`O_PATH`): Landlock lets a call read and write its network's
        // directory, not the root's other networks (`fs_access`).
        let walk = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut fd = match rustix::fs::open(root, walk, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if !create => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut components = below.components().peekable();
        while let Some(c) = components.next() {
            let last = components.peek().is_none();
            let name = plain(c, below)?;
            if create {
                make_dir(&fd, name)?;
            }
            let flags = if last {
                dir_flags()
            } else {
                walk | OFlags::NOFOLLOW
            };
            fd = match openat(&fd, name, flags, Mode::empty()) {
                Ok(next) => next,
                Err(Errno::NOENT) if !create => return Ok(None),
                // ELOOP (a symlink) or ENOTDIR: not a directory we may use.
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "{name:?} under {} is not a plain directory (links are not followed)",
                            root.display()
                        ),
                    ));
                }
                Err(e) => return Err(e.into()),
            };
        }
        Ok(Some(StoreDir { fd }))
    }

    /// Make `root/below` (0755, as host-local does) without opening it:
    /// walked through `O_PATH`, no link followed below `root`. For a call
    /// that may make directories but not yet read them (`fs_access`).
    pub fn make(root: &Path, below: &Path) -> io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(root)?;
        let walk = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut fd = rustix::fs::open(root, walk, Mode::empty())?;
        for c in below.components() {
            let name = plain(c, below)?;
            make_dir(&fd, name)?;
            fd = openat(&fd, name, walk, Mode::empty())?;
        }
        Ok(())
    }

    /// The lock file, created if missing (0600).
    pub fn lock_file(&self, name: &str) -> io::Result<File> {
        let fd = openat(
            &self.fd,
            component(name)?,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(LOCK_MODE),
        )?;
        Ok(File::from(fd))
    }

    /// An entry's bytes; `None` when there is none. Only regular files are
    /// entries: a FIFO or device planted here is neither read nor waited on.
    pub fn read(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        let fd = match openat(
            &self.fd,
            component(key)?,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let st = fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{key:?} is not a regular file"),
            ));
        }
        // Nothing a store's writers write comes near (a value is at most a
        // few KiB): a file planted larger is not read into memory.
        if st.st_size > MAX_ENTRY_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{key:?} holds {} bytes, more than an entry", st.st_size),
            ));
        }
        // Sized by the fstat above, one byte more: one read for an entry
        // that did not grow meanwhile (a regular file reads short only at
        // its end). `read_to_end` asks the size again and reads once more
        // to see the end: a store of 500 reservations is read on every
        // ADD and DEL.
        let mut bytes = vec![0u8; usize::try_from(st.st_size).unwrap_or(0) + 1];
        let mut len = 0;
        loop {
            let asked = bytes.len() - len;
            let got = match rustix::io::read(&fd, &mut bytes[len..]) {
                Err(Errno::INTR) => continue,
                got => got?,
            };
            len += got;
            if got < asked {
                break;
            }
            if len as i64 > MAX_ENTRY_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{key:?} grew past the size of an entry while read"),
                ));
            }
            bytes.resize(bytes.len() * 2, 0);
        }
        bytes.truncate(len);
        Ok(Some(bytes))
    }

    /// Create an entry only if the name is free: false when it was taken.
    /// Written under a temporary name and renamed into place only if the
    /// name is still free (`RENAME_NOREPLACE`): a call killed midway leaves
    /// no empty reservation (a file no DEL would release, whose address
    /// only GC would free), at most a dot-file no listing takes.
    pub fn create_new(&self, key: &str, value: &[u8]) -> io::Result<bool> {
        let key = component(key)?;
        let tmp = self.temporary(value)?;
        let placed = renameat_with(
            &self.fd,
            tmp.as_str(),
            &self.fd,
            key,
            RenameFlags::NOREPLACE,
        );
        if placed.is_err() {
            let _ = unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
        }
        match placed {
            Ok(()) => Ok(true),
            Err(Errno::EXIST) => Ok(false),
            // A file system without RENAME_NOREPLACE: created in place.
            Err(Errno::INVAL | Errno::NOSYS) => self.create_in_place(key, value),
            Err(e) => Err(e.into()),
        }
    }

    fn create_in_place(&self, key: &str, value: &[u8]) -> io::Result<bool> {
        let fd = match openat(
            &self.fd,
            key,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(FILE_MODE),
        ) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = File::from(fd).write_all(value) {
            let _ = unlinkat(&self.fd, key, AtFlags::empty());
            return Err(e);
        }
        Ok(true)
    }

    /// `value` in a new file of a temporary name (a dot-file: no key), its
    /// name.
    fn temporary(&self, value: &[u8]) -> io::Result<String> {
        let mut b = [0u8; 8];
        rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty())?;
        let tmp = format!(".wasm-cni-{}", u64::from_ne_bytes(b));
        let fd = openat(
            &self.fd,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(FILE_MODE),
        )?;
        if let Err(e) = File::from(fd).write_all(value) {
            let _ = unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
            return Err(e);
        }
        Ok(tmp)
    }

    /// Create or replace an entry atomically (a temporary file renamed over
    /// it).
    pub fn replace(&self, key: &str, value: &[u8]) -> io::Result<()> {
        let key = component(key)?;
        let tmp = self.temporary(value)?;
        let placed = renameat(&self.fd, tmp.as_str(), &self.fd, key).map_err(io::Error::from);
        if placed.is_err() {
            let _ = unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
        }
        placed
    }

    /// Remove the temporaries (`.wasm-cni-*`) older than `age`: what a
    /// call killed between writing one and renaming it into place left
    /// (GC's work). How many went.
    pub fn sweep_temporaries(&self, age: std::time::Duration) -> io::Result<usize> {
        let now = std::time::SystemTime::now();
        let mut swept = 0;
        for ent in Dir::read_from(&self.fd)? {
            let ent = ent?;
            if !ent.file_name().to_bytes().starts_with(b".wasm-cni-") {
                continue;
            }
            // Asked of the file itself: some file systems give no type in
            // the listing. One that cannot be looked at is left.
            let Ok(st) = rustix::fs::statat(&self.fd, ent.file_name(), AtFlags::SYMLINK_NOFOLLOW)
            else {
                continue;
            };
            if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                continue;
            }
            let modified =
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(st.st_mtime.max(0) as u64);
            if now.duration_since(modified).is_ok_and(|d| d > age)
                && unlinkat(&self.fd, ent.file_name(), AtFlags::empty()).is_ok()
            {
                swept += 1;
            }
        }
        Ok(swept)
    }

    /// Remove an entry: false when there was none.
    pub fn remove(&self, key: &str) -> io::Result<bool> {
        match unlinkat(&self.fd, component(key)?, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the directory holds nothing at all.
    pub fn is_empty(&self) -> io::Result<bool> {
        for ent in Dir::read_from(&self.fd)? {
            let name = ent?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The names of the regular files in the directory.
    pub fn names(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for ent in Dir::read_from(&self.fd)? {
            let ent = ent?;
            let Ok(name) = ent.file_name().to_str() else {
                continue;
            };
            if ent.file_type() == FileType::RegularFile {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_only_beneath_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("networks");
        let s = StoreDir::open(&root, Path::new("sub/mynet"), true)
            .unwrap()
            .unwrap();
        assert!(s.create_new("10.0.0.2", b"c1\r\neth0").unwrap());
        assert!(!s.create_new("10.0.0.2", b"c2").unwrap());
        s.replace("last_reserved_ip.0", b"10.0.0.2").unwrap();
        assert_eq!(s.read("10.0.0.2").unwrap().unwrap(), b"c1\r\neth0");
        let mut names = s.names().unwrap();
        names.sort();
        assert_eq!(names, ["10.0.0.2", "last_reserved_ip.0"]);
        assert!(s.remove("10.0.0.2").unwrap() && !s.remove("10.0.0.2").unwrap());
        for bad in ["..", ".", "a/b", "", "../../etc/passwd"] {
            assert!(s.read(bad).is_err(), "{bad}");
            assert!(s.create_new(bad, b"x").is_err(), "{bad}");
        }
        assert!(StoreDir::open(&root, Path::new("../x"), true).is_err());
        assert!(StoreDir::open(&root, Path::new("/etc"), true).is_err());
    }

    #[test]
    fn gc_sweeps_only_old_temporaries() {
        let tmp = tempfile::tempdir().unwrap();
        let s = StoreDir::open(tmp.path(), Path::new("n"), true)
            .unwrap()
            .unwrap();
        let dir = tmp.path().join("n");
        for name in [".wasm-cni-1", ".wasm-cni-2", ".other", "10.0.0.2"] {
            std::fs::write(dir.join(name), b"c\r\neth0").unwrap();
        }
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for name in [".wasm-cni-1", ".other", "10.0.0.2"] {
            std::fs::File::options()
                .write(true)
                .open(dir.join(name))
                .unwrap()
                .set_modified(hour_ago)
                .unwrap();
        }
        assert_eq!(
            s.sweep_temporaries(std::time::Duration::from_secs(600))
                .unwrap(),
            1
        );
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".other", ".wasm-cni-2", "10.0.0.2"]);
    }

    #[test]
    fn links_are_refused_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("networks");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("evil")).unwrap();
        let e = StoreDir::open(&root, Path::new("evil"), true).unwrap_err();
        assert!(e.to_string().contains("links are not followed"), "{e}");
        let s = StoreDir::open(&root, Path::new("n"), true)
            .unwrap()
            .unwrap();
        std::os::unix::fs::symlink(outside.join("target"), root.join("n/10.0.0.9")).unwrap();
        assert!(
            s.read("10.0.0.9").is_err(),
            "a planted link is not read through"
        );
        assert!(!s.create_new("10.0.0.9", b"x").unwrap() || !outside.join("target").exists());
        assert!(
            !outside.join("target").exists(),
            "nothing written through it"
        );
        assert!(
            StoreDir::open(&root, Path::new("absent"), false)
                .unwrap()
                .is_none()
        );
    }
}
