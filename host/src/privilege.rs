//! Least privilege: before any guest code runs, the process keeps only the
//! capabilities a call needs, and can never gain more.
//!
//! - `no_new_privs`: nothing it executes (`nft`, `iptables`, a native IPAM
//!   plugin) gains privileges through setuid bits or file capabilities.
//! - The capability sets (effective, permitted, inheritable, ambient and the
//!   bounding set) are cut to [`KEEP`]; children, which run as root, get
//!   at most the bounding set.
//!
//! Capabilities and `no_new_privs` are per thread and inherited by threads
//! created later, so this runs while the process has one thread (before
//! the async runtime, any blocking pool or helper thread exists).
//! Everything that may need more than [`KEEP`] is opened before: the
//! container's namespace file (a `/proc/<pid>/ns/net` path needs
//! ptrace-level access to another process) and the log file (the
//! operator's path, whoever owns it).

use rustix::thread::{
    CapabilitySet, CapabilitySets, capabilities, clear_ambient_capability_set,
    remove_capability_from_bounding_set, set_capabilities, set_no_new_privs,
};
use std::io;

/// What a call needs:
/// - `CAP_NET_ADMIN`: links, addresses, routes, `/proc/sys/net`, nftables
///   and iptables (netlink);
/// - `CAP_SYS_ADMIN`: `setns` into the container's namespace;
/// - `CAP_NET_RAW`: `iptables` with the legacy backend reads its tables
///   through a raw socket (the reference plugins' leftovers, on DEL).
pub const KEEP: CapabilitySet = CapabilitySet::NET_ADMIN
    .union(CapabilitySet::SYS_ADMIN)
    .union(CapabilitySet::NET_RAW);

/// Cut this thread (the process's only one) down to [`KEEP`]. A process
/// that holds less (not root) keeps what it has of it.
pub fn reduce() -> io::Result<()> {
    set_no_new_privs(true)?;
    let current = capabilities(None)?;
    // Dropping from the bounding set needs CAP_SETPCAP, so it goes first;
    // a capability the kernel does not know ends the walk.
    if current.effective.contains(CapabilitySet::SETPCAP) {
        for bit in 0..64 {
            let cap = CapabilitySet::from_bits_retain(1 << bit);
            if KEEP.contains(cap) {
                continue;
            }
            match remove_capability_from_bounding_set(cap) {
                Ok(()) => {}
                Err(rustix::io::Errno::INVAL) => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    // Kernels before 4.3 have no ambient set: nothing to clear there.
    match clear_ambient_capability_set() {
        Ok(()) | Err(rustix::io::Errno::INVAL) => {}
        Err(e) => return Err(e.into()),
    }
    let keep = KEEP & current.permitted;
    set_capabilities(
        None,
        CapabilitySets {
            effective: keep,
            permitted: keep,
            inheritable: CapabilitySet::empty(),
        },
    )?;
    Ok(())
}
