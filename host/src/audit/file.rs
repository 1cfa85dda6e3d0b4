//! Appending a line to the audit file, and rotating it by size.
//!
//! Calls run side by side, each its own process: a line is written with one
//! `write` to a file opened `O_APPEND`, under an exclusive `flock` on that
//! file, so lines never interleave. Rotation happens under the same lock:
//! `audit.jsonl.N-1` becomes `.N` ... the file becomes `.1`. A writer that
//! opened the file before it was rotated sees, once it has the lock, that
//! the path now names another file, and opens again.

use crate::policy::AuditSettings;
use rustix::fs::{FileType, FlockOperation, Mode, OFlags, flock, fstat, lstat};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// Append `line` (and a newline) to the audit file.
pub fn append(settings: &AuditSettings, line: &str) -> io::Result<()> {
    let mut text = line.as_bytes().to_vec();
    text.push(b'\n');
    // Rotation moves the file away at most once per writer and turn; a
    // bound anyway, for a path something keeps replacing.
    for _ in 0..8 {
        // Not blocking on a FIFO someone put there; a regular file only.
        let fd = rustix::fs::open(
            &settings.file,
            OFlags::WRONLY
                | OFlags::APPEND
                | OFlags::CREATE
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | OFlags::NOCTTY
                | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        if FileType::from_raw_mode(fstat(&fd)?.st_mode) != FileType::RegularFile {
            return Err(io::Error::other("not a regular file"));
        }
        lock(&fd)?;
        // Its size and identity now that no one else writes.
        let held = fstat(&fd)?;
        match lstat(&settings.file) {
            Ok(now) if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino) => {}
            // Rotated (or removed) while we waited: the path is another file.
            _ => continue,
        }
        let size = held.st_size as u64;
        if size > 0 && size + text.len() as u64 > settings.max_bytes {
            rotate(&settings.file, settings.files)?;
            continue;
        }
        let mut file = std::fs::File::from(fd);
        file.write_all(&text)?;
        let _ = flock(file.as_fd(), FlockOperation::Unlock);
        return Ok(());
    }
    Err(io::Error::other("the audit file keeps being replaced"))
}

/// How long a writer waits for the others.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The file's lock, waited for at most [`LOCK_WAIT`] (a process that holds
/// it forever must not hold every call's answer).
fn lock(fd: &rustix::fd::OwnedFd) -> io::Result<()> {
    let until = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match flock(fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn numbered(file: &Path, n: u32) -> PathBuf {
    let mut p = file.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// `file.(files-1)` → `file.files`, ..., `file` → `file.1`; the oldest is
/// replaced.
fn rotate(file: &Path, files: u32) -> io::Result<()> {
    for n in (1..files).rev() {
        match std::fs::rename(numbered(file, n), numbered(file, n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::rename(file, numbered(file, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_rotate_at_the_size_and_the_oldest_go() {
        let dir = tempfile::tempdir().unwrap();
        let s = AuditSettings {
            file: dir.path().join("audit.jsonl"),
            max_bytes: 100,
            files: 2,
        };
        for i in 0..20 {
            append(&s, &format!("{{\"n\":{i:03},\"pad\":\"xxxxxxxxxx\"}}")).unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let (now, one, two) = (
            read(&s.file),
            read(&numbered(&s.file, 1)),
            read(&numbered(&s.file, 2)),
        );
        for f in [&now, &one, &two] {
            assert!(f.len() <= 100, "{f}");
            assert!(
                f.lines()
                    .all(|l| l.starts_with("{\"n\":") && l.ends_with("\"}"))
            );
        }
        assert!(now.contains("\"n\":019"), "the newest line is in the file");
        assert!(!numbered(&s.file, 3).exists(), "two rotated files kept");
        let all = format!("{two}{one}{now}");
        let ns: Vec<&str> = all.lines().map(|l| &l[5..8]).collect();
        let mut sorted = ns.clone();
        sorted.sort();
        assert_eq!(ns, sorted, "oldest first across the files");
    }

    #[test]
    fn a_fifo_in_place_of_the_file_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &file,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let s = AuditSettings {
            file,
            max_bytes: 4096,
            files: 1,
        };
        let start = std::time::Instant::now();
        assert!(append(&s, "{}").is_err());
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn a_link_in_place_of_the_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        let file = dir.path().join("audit.jsonl");
        std::os::unix::fs::symlink(&target, &file).unwrap();
        let s = AuditSettings {
            file,
            max_bytes: 4096,
            files: 1,
        };
        assert!(append(&s, "{}").is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
    }
}
