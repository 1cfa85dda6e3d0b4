//! The call's seccomp filter: an allow-list of system calls for the
//! threads that run guest code and capability calls.
//!
//! Installed on the main thread once every module of the call is loaded
//! (`invoke`); every thread started after inherits it (the async runtime's
//! blocking pool, the epoch clock, the threads that wait for children).
//! Not filtered: the threads that loaded and compiled modules, which are
//! done, and the spawner (`kernel::spawn`), started just before the filter
//! so that the programs it executes (`nft`, `iptables`, a native IPAM
//! plugin) do not inherit it: they are the node's own binaries, confined by
//! the capability bounding set, `no_new_privs` and Landlock, and their
//! system calls are theirs to need. The filtered threads cannot execute
//! anything.
//!
//! A call outside the list fails with [`REFUSED_ERRNO`], an errno no kernel
//! path returns, so the error that results names the filter (`explain`);
//! the thread is not killed, and rollback still runs. With
//! `WASM_CNI_SECCOMP=log` the filter allows and the kernel logs such calls
//! instead (to find what a new environment needs); `off` installs none.
//!
//! seccompiler (rust-vmm, Firecracker's) compiles the list to BPF.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition,
    SeccompFilter, SeccompRule,
};
use std::collections::BTreeMap;

/// The errno of a refused system call: not one the kernel uses (they end
/// at 133), so it can only come from this filter.
pub const REFUSED_ERRNO: u32 = 3333;

/// How the filter treats calls outside the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Log,
    Off,
}

impl Mode {
    /// From `WASM_CNI_SECCOMP` (`log`, `off`; anything else enforces).
    pub fn from_env(value: Option<&str>) -> Mode {
        match value {
            Some("log") => Mode::Log,
            Some("off") => Mode::Off,
            _ => Mode::Enforce,
        }
    }
}

static REFUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// If the filter refused the system call that failed with `e`: a sentence
/// saying so (and the call remembers it, for its last log line). Judged on
/// the errno itself, never on text, which a guest could have written.
pub fn explain(e: &std::io::Error) -> Option<&'static str> {
    let refused = e.raw_os_error() == Some(REFUSED_ERRNO as i32);
    if refused {
        REFUSED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    refused.then_some("a system call was refused by the host's seccomp filter")
}

/// Whether the filter refused a system call during this call.
pub fn refused_any() -> bool {
    REFUSED.load(std::sync::atomic::Ordering::Relaxed)
}

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

fn allow(rules: &mut Rules, calls: &[libc::c_long]) {
    for &c in calls {
        rules.insert(c, vec![]);
    }
}

/// Allow `call` only when argument `arg` equals one of `values`.
fn allow_if(rules: &mut Rules, call: libc::c_long, arg: u8, values: &[u64]) {
    let conds = values
        .iter()
        .map(|&v| {
            SeccompRule::new(vec![
                SeccompCondition::new(arg, Len::Qword, Op::Eq, v).expect("a valid condition"),
            ])
            .expect("a rule with a condition")
        })
        .collect();
    rules.insert(call, conds);
}

/// Allow `call` only when argument `arg` has none of the bits in `mask`.
fn allow_without(rules: &mut Rules, call: libc::c_long, arg: u8, mask: u64) {
    let c = SeccompCondition::new(arg, Len::Qword, Op::MaskedEq(mask), 0).expect("valid");
    rules.insert(call, vec![SeccompRule::new(vec![c]).expect("valid")]);
}

/// The list, one line per group of system calls and why.
fn rules() -> Rules {
    use libc::*;
    let mut r = Rules::new();
    // Memory: the allocator, guest linear memories and fiber stacks. Never
    // executable: code was mapped while loading, before the filter.
    // memfd: wasmtime's copy-on-write images of a module's initial memory.
    allow(
        &mut r,
        &[
            SYS_munmap,
            SYS_madvise,
            SYS_mremap,
            SYS_brk,
            SYS_memfd_create,
        ],
    );
    allow_without(&mut r, SYS_mmap, 2, PROT_EXEC as u64);
    allow_without(&mut r, SYS_mprotect, 2, PROT_EXEC as u64);
    // Threads (the blocking pool, waiting for children) and their
    // synchronisation; `clone` only for threads, never a new process.
    allow(
        &mut r,
        &[
            SYS_futex,
            SYS_set_robust_list,
            SYS_rseq,
            SYS_sched_getaffinity,
            SYS_sched_yield,
            SYS_gettid,
            SYS_getpid,
            SYS_exit,
            SYS_exit_group,
            SYS_rt_sigprocmask,
            SYS_rt_sigaction,
            SYS_rt_sigreturn,
            SYS_sigaltstack,
            SYS_restart_syscall,
            SYS_membarrier,
        ],
    );
    // Never a thread in new namespaces either.
    let new_ns = (CLONE_NEWNS
        | CLONE_NEWCGROUP
        | CLONE_NEWUTS
        | CLONE_NEWIPC
        | CLONE_NEWUSER
        | CLONE_NEWPID
        | CLONE_NEWNET) as u64;
    let thread = SeccompCondition::new(
        0,
        Len::Qword,
        Op::MaskedEq(CLONE_THREAD as u64 | new_ns),
        CLONE_THREAD as u64,
    )
    .expect("valid");
    r.insert(
        SYS_clone,
        vec![SeccompRule::new(vec![thread]).expect("valid")],
    );
    // clone3's flags are behind a pointer, out of the filter's sight: it
    // is answered ENOSYS by a filter of its own (`install`), and the C
    // library falls back to `clone`, checked above.
    allow(&mut r, &[SYS_clone3]);
    // Thread names (PR_SET_NAME), and the C library naming its mappings.
    allow_if(
        &mut r,
        SYS_prctl,
        0,
        &[PR_SET_NAME as u64, PR_GET_NAME as u64, 0x5356_4d41],
    );
    // Time: timers of the async runtime, deadlines, sleeps.
    allow(
        &mut r,
        &[
            SYS_clock_gettime,
            SYS_clock_nanosleep,
            SYS_nanosleep,
            SYS_clock_getres,
        ],
    );
    // Files: the IPAM store (openat2 beneath its directory), sysctls under
    // /proc/sys/net, the resolv.conf a config names, the log, the network
    // locks. Landlock says which paths (`fs_access`).
    allow(
        &mut r,
        &[
            SYS_read,
            SYS_write,
            SYS_readv,
            SYS_writev,
            SYS_pread64,
            SYS_pwrite64,
            SYS_close,
            SYS_openat,
            SYS_openat2,
            SYS_newfstatat,
            SYS_fstat,
            SYS_statx,
            SYS_lseek,
            SYS_fcntl,
            SYS_dup,
            SYS_dup3,
            SYS_pipe2,
            SYS_getdents64,
            SYS_mkdirat,
            SYS_renameat,
            SYS_renameat2,
            SYS_unlinkat,
            SYS_fsync,
            SYS_fdatasync,
            SYS_flock,
            SYS_fstatfs,
            SYS_readlinkat,
            SYS_ftruncate,
            SYS_faccessat,
            SYS_faccessat2,
        ],
    );
    #[cfg(target_arch = "x86_64")]
    allow(
        &mut r,
        &[
            SYS_open,
            SYS_stat,
            SYS_lstat,
            SYS_readlink,
            SYS_mkdir,
            SYS_rename,
            SYS_unlink,
            SYS_dup2,
            SYS_access,
            SYS_poll,
            SYS_epoll_wait,
        ],
    );
    // `ioctl`: FIONBIO and FIOCLEX on descriptors (tokio, std).
    #[allow(clippy::unnecessary_cast)] // not u64 on every target
    allow_if(&mut r, SYS_ioctl, 1, &[FIONBIO as u64, FIOCLEX as u64]);
    // Sockets: rtnetlink (links, addresses, routes) only; nftables and
    // iptables are the programs', and no other netlink family (XFRM,
    // SOCK_DIAG, generic) nor any internet or local socket is needed.
    let rtnetlink = vec![
        SeccompCondition::new(0, Len::Dword, Op::Eq, AF_NETLINK as u64).expect("valid"),
        SeccompCondition::new(2, Len::Dword, Op::Eq, NETLINK_ROUTE as u64).expect("valid"),
    ];
    r.insert(
        SYS_socket,
        vec![SeccompRule::new(rtnetlink).expect("valid")],
    );
    allow(
        &mut r,
        &[
            SYS_bind,
            SYS_sendto,
            SYS_recvfrom,
            SYS_sendmsg,
            SYS_recvmsg,
            SYS_setsockopt,
            SYS_getsockopt,
            SYS_getsockname,
        ],
    );
    // The async runtime's event loop.
    allow(
        &mut r,
        &[
            SYS_epoll_create1,
            SYS_epoll_ctl,
            SYS_epoll_pwait,
            SYS_eventfd2,
            SYS_ppoll,
            SYS_pselect6,
        ],
    );
    // Network namespaces: entering the container's and coming back; no
    // other kind of namespace.
    allow_if(&mut r, SYS_setns, 1, &[CLONE_NEWNET as u64]);
    // Children the spawner started: waiting for them, and killing their
    // process group at a deadline.
    allow(
        &mut r,
        &[
            SYS_wait4,
            SYS_waitid,
            SYS_kill,
            SYS_pidfd_open,
            SYS_pidfd_send_signal,
            SYS_tgkill,
        ],
    );
    // Identity and randomness (hash maps, temp names); this process's
    // own limits only (the C library reads its stack size).
    allow(
        &mut r,
        &[
            SYS_getrandom,
            SYS_geteuid,
            SYS_getuid,
            SYS_getegid,
            SYS_getgid,
            SYS_uname,
            SYS_capget,
        ],
    );
    allow_if(&mut r, SYS_prlimit64, 0, &[0]);
    r
}

fn arch() -> seccompiler::TargetArch {
    #[cfg(target_arch = "x86_64")]
    return seccompiler::TargetArch::x86_64;
    #[cfg(target_arch = "aarch64")]
    return seccompiler::TargetArch::aarch64;
    #[cfg(target_arch = "riscv64")]
    return seccompiler::TargetArch::riscv64;
}

/// The filter's two programs: the allow-list, and `clone3` answered ENOSYS.
fn programs(mode: Mode) -> Result<[BpfProgram; 2], String> {
    let refuse = match mode {
        Mode::Log => SeccompAction::Log,
        _ => SeccompAction::Errno(REFUSED_ERRNO),
    };
    let list: BpfProgram = SeccompFilter::new(rules(), refuse, SeccompAction::Allow, arch())
        .and_then(TryInto::try_into)
        .map_err(|e| e.to_string())?;
    let clone3 = BTreeMap::from([(libc::SYS_clone3, vec![])]);
    let no_clone3: BpfProgram = SeccompFilter::new(
        clone3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch(),
    )
    .and_then(TryInto::try_into)
    .map_err(|e| e.to_string())?;
    // The list last: it allows no further filter to be installed.
    Ok([no_clone3, list])
}

/// Filter this thread, and the threads it starts from now on.
pub fn install(mode: Mode) -> Result<(), String> {
    if mode == Mode::Off {
        crate::log::warn("WASM_CNI_SECCOMP=off: no seccomp filter");
        return Ok(());
    }
    // The C library starts threads with clone3 when it can: refuse it
    // first (ENOSYS, so it falls back), then the list (which lets clone3
    // through; the stricter answer wins).
    for p in programs(mode)? {
        seccompiler::apply_filter(&p).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_compiles_for_this_machine() {
        for mode in [Mode::Enforce, Mode::Log] {
            let [clone3, list] = programs(mode).unwrap();
            assert!(list.len() > 50 && clone3.len() > 3);
        }
    }

    #[test]
    fn execve_and_internet_sockets_are_not_on_the_list() {
        let r = rules();
        for call in [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_ptrace,
            libc::SYS_mount,
        ] {
            assert!(!r.contains_key(&call), "{call}");
        }
        // socket() is conditional (netlink, unix), never unconditional.
        assert!(!r[&libc::SYS_socket].is_empty());
        assert!(!r[&libc::SYS_mmap].is_empty());
    }

    #[test]
    fn a_refusal_is_told_from_other_errors() {
        let e = std::io::Error::from_raw_os_error(REFUSED_ERRNO as i32);
        assert!(explain(&std::io::Error::from_raw_os_error(libc::EPERM)).is_none());
        assert!(
            explain(&std::io::Error::other(e.to_string())).is_none(),
            "text is not enough"
        );
        assert!(explain(&e).is_some() && refused_any());
    }
}
