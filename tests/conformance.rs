//! The conformance suite (`wasm_cni_testkit::conformance`) against the
//! simulated node, and, as root, against the real kernel: the same steps,
//! the same answers. The real run happens in namespaces of its own: this
//! process leaves the machine's network namespace before it starts any
//! thread (hence no test harness), and the container namespace is made
//! and removed by `ip netns`.

use std::process::Command;
use wasm_cni::kernel::linux::Linux;
use wasm_cni_testkit::{Node, conformance};

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// `ip netns add` now, `ip netns del` when dropped.
struct ContainerNs(String);

impl ContainerNs {
    fn add() -> ContainerNs {
        let name = format!("wcni-conf-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name}");
        ContainerNs(name)
    }
}

impl Drop for ContainerNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn real_kernel() -> conformance::Report {
    // Still one thread: the whole process moves to a new namespace, the
    // threads the kernel layer starts (`nft`, `/proc/sys`) with it.
    // SAFETY: only the network namespace changes; no thread or file
    // table is shared with code that could be surprised by it.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
        .expect("unshare(CLONE_NEWNET)");
    let container = ContainerNs::add();
    let locks = tempfile::tempdir().unwrap();
    let kernel = Linux::new(
        Some(format!("/run/netns/{}", container.0).into()),
        Some(locks.path().to_path_buf()),
    )
    .expect("the new namespace");
    block(conformance::run(&kernel))
}

fn main() {
    let root = rustix::process::geteuid().is_root();
    let real = root.then(real_kernel);

    let node = Node::new();
    let sim = node.block(conformance::run(&*node.kernel()));
    assert!(
        sim.failed.is_empty() && sim.skipped.is_empty(),
        "the simulated node answers unlike the kernel:\n  {}",
        sim.failed.join("\n  ")
    );
    println!("conformance: simulated node: {} steps ... ok", sim.checked);
    let Some(real) = real else {
        println!("SKIPPED conformance on the real kernel: needs root (CI runs it as root)");
        return;
    };
    assert!(
        real.failed.is_empty(),
        "the real kernel did not answer as the suite expects:\n  {}",
        real.failed.join("\n  ")
    );
    for s in &real.skipped {
        println!("conformance: real kernel: skipped {s}");
    }
    println!("conformance: real kernel: {} steps ... ok", real.checked);
}
