//! Reading a resolv.conf for an IPAM plugin (host-local's `resolvConf`).
//!
//! The path comes from an untrusted config and the host reads as root, so
//! the file is looked up relative to one of the node policy's directories
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`: no `..`, no link anywhere on
//! the way, and no other mount (a container's rootfs under `/run` is one).
//! It is looked up `O_PATH`, which opens nothing (a device's or a FIFO's
//! open can act), and only a regular file of at most [`MAX_BYTES`] is then
//! opened for reading, through that descriptor. Blocks: callers run it off
//! the async runtime's thread.

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, fstat, openat2};
use std::io::{self, Read};
use std::path::Path;

/// The largest resolv.conf read: real ones are a few hundred bytes.
pub const MAX_BYTES: u64 = 64 << 10;

/// What a resolv.conf says, as CNI's `dns` holds it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// Look `relative` up beneath the directory `dir` without opening it
/// (`O_PATH`): a regular file of at most [`MAX_BYTES`], or why not. Also
/// what Landlock's rule for it is made from (`fs_access`), so the rule is
/// for this very file.
pub fn locate(dir: &Path, relative: &Path) -> io::Result<rustix::fd::OwnedFd> {
    // Walked through only (`O_PATH`): Landlock lets the call read the one
    // file, not the directory (`fs_access`).
    let base = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let path = openat2(
        &base,
        relative,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH
            | ResolveFlags::NO_SYMLINKS
            | ResolveFlags::NO_MAGICLINKS
            | ResolveFlags::NO_XDEV,
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::XDEV => io::Error::new(
            io::ErrorKind::PermissionDenied,
            "a symbolic link, another mount or a path outside the directory is not followed",
        ),
        e => e.into(),
    })?;
    let st = fstat(&path)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if st.st_size as u64 > MAX_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("more than {MAX_BYTES} bytes"),
        ));
    }
    Ok(path)
}

/// Read `relative` beneath the directory `dir`.
pub fn read(dir: &Path, relative: &Path) -> io::Result<ResolvConf> {
    let path = locate(dir, relative)?;
    // The same inode, now opened: `/proc/self/fd/N` reopens what the
    // descriptor holds, not a path someone could swap.
    let fd = rustix::fs::open(
        format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&path)),
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(MAX_BYTES)
        .read_to_string(&mut text)?;
    Ok(parse(&text))
}

/// host-local's `parseResolvConf`: `nameserver`, `domain`, `search` and
/// `options` (the last two add up over lines); `#` and `;` lines are
/// comments; anything else is ignored.
pub fn parse(text: &str) -> ResolvConf {
    let mut out = ResolvConf::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(key), rest) = (words.next(), words) else {
            continue;
        };
        let rest: Vec<String> = rest.map(str::to_string).collect();
        match key {
            "nameserver" => out.nameservers.extend(rest.into_iter().take(1)),
            "domain" => out.domain = rest.into_iter().next().or(out.domain),
            "search" => out.search.extend(rest),
            "options" => out.options.extend(rest),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_and_comments_as_host_local_reads_them() {
        let r = parse(
            "# generated\n; also a comment\nnameserver 10.0.0.10\nnameserver  fd00::53 \n\
             domain example.org\nsearch a.example b.example\nsearch c.example\n\
             options ndots:5\noptions edns0 rotate\nsortlist 1.2.3.4\n",
        );
        assert_eq!(r.nameservers, ["10.0.0.10", "fd00::53"]);
        assert_eq!(r.domain.as_deref(), Some("example.org"));
        assert_eq!(r.search, ["a.example", "b.example", "c.example"]);
        assert_eq!(r.options, ["ndots:5", "edns0", "rotate"]);
    }

    #[test]
    fn links_fifos_escapes_and_big_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("ok.conf"), "nameserver 1.1.1.1\n").unwrap();
        assert_eq!(
            read(d, Path::new("ok.conf")).unwrap().nameservers,
            ["1.1.1.1"]
        );
        std::os::unix::fs::symlink(d.join("ok.conf"), d.join("link.conf")).unwrap();
        assert!(read(d, Path::new("link.conf")).is_err());
        std::fs::create_dir(d.join("sub")).unwrap();
        assert!(read(&d.join("sub"), Path::new("../ok.conf")).is_err());
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = read(d, Path::new("fifo")).unwrap_err();
        assert!(e.to_string().contains("regular file"), "{e}");
        std::fs::write(d.join("big.conf"), vec![b'#'; (MAX_BYTES + 1) as usize]).unwrap();
        assert!(read(d, Path::new("big.conf")).is_err());
    }
}
