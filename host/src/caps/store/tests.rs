use super::*;
use crate::contract::wasm_cni::plugin::store::{Host, HostLock};
use crate::contract::wasm_cni::plugin::types::Error as WitError;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

fn location(root: &Path, net: &str) -> StoreLocation {
    StoreLocation {
        root: root.to_path_buf(),
        below: net.into(),
    }
}

fn new_store(root: &Path, net: &str, phase: Phase) -> StoreCtx {
    StoreCtx::new(
        location(root, net),
        phase,
        Instant::now() + Duration::from_secs(5),
        Created::default(),
        &limits(),
    )
}

fn limits() -> std::sync::Arc<CallLimits> {
    CallLimits::new(std::time::Instant::now() + Duration::from_secs(60))
}

fn is_denied(e: CapError) -> bool {
    matches!(e.guest(), Some(WitError::Denied(_)))
}

#[test]
fn entries_are_the_reference_files_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = new_store(tmp.path(), "mynet", Phase::Add);
    block_on(async {
        assert!(
            is_denied(
                s.create("10.244.0.2".into(), "c1\r\neth0".into())
                    .await
                    .unwrap_err()
            ),
            "needs the lock"
        );
        let lock = s.acquire_lock().await.unwrap();
        assert!(
            s.create("10.244.0.2".into(), "c1\r\neth0".into())
                .await
                .unwrap()
        );
        assert!(
            !s.create("10.244.0.2".into(), "c2\r\neth0".into())
                .await
                .unwrap(),
            "taken"
        );
        s.put("last_reserved_ip.0".into(), "10.244.0.2".into())
            .await
            .unwrap();
        s.drop(lock).await.unwrap();
    });
    let dir = tmp.path().join("mynet");
    assert_eq!(fs::read(dir.join("10.244.0.2")).unwrap(), b"c1\r\neth0");
    assert_eq!(
        fs::read(dir.join("last_reserved_ip.0")).unwrap(),
        b"10.244.0.2"
    );
    let mode = |p: &str| fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        (
            mode("10.244.0.2"),
            mode("last_reserved_ip.0"),
            mode("lock"),
            mode(".")
        ),
        (0o644, 0o644, 0o600, 0o755)
    );
    let mut names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["10.244.0.2", "last_reserved_ip.0", "lock"],
        "no temporary files left"
    );
    let entries = block_on(s.entries()).unwrap();
    assert_eq!(entries.len(), 2, "the lock file is not an entry");
}

#[test]
fn keys_cannot_escape_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = new_store(tmp.path(), "n", Phase::Add);
    for bad in ["", "../x", "a/b", ".", "..", "lock", ".hidden", "a\0b"] {
        assert!(block_on(s.get(bad.into())).is_err(), "{bad:?}");
    }
}

#[test]
fn rollback_removes_only_what_this_call_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = new_store(tmp.path(), "n", Phase::Add);
    block_on(async {
        let _lock = s.acquire_lock().await.unwrap();
        s.create("10.0.0.2".into(), "c1\r\neth0".into())
            .await
            .unwrap();
        s.create("10.0.0.3".into(), "c1\r\neth1".into())
            .await
            .unwrap();
    });
    s.lock = None;
    fs::write(tmp.path().join("n/10.0.0.3"), "someone else").unwrap();
    let created = s.created.lock().unwrap().clone();
    assert!(block_on(rollback(&location(tmp.path(), "n"), created)).is_empty());
    assert!(!tmp.path().join("n/10.0.0.2").exists());
    assert!(tmp.path().join("n/10.0.0.3").exists());
}

#[test]
fn rollback_puts_back_what_this_call_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("n")).unwrap();
    fs::write(tmp.path().join("n/last_reserved_ip.0"), "10.0.0.7").unwrap();
    let mut s = new_store(tmp.path(), "n", Phase::Add);
    block_on(async {
        let _lock = s.acquire_lock().await.unwrap();
        s.put("last_reserved_ip.0".into(), "10.0.0.8".into())
            .await
            .unwrap();
        s.put("last_reserved_ip.1".into(), "fd00::8".into())
            .await
            .unwrap();
    });
    s.lock = None;
    let written = s.created.lock().unwrap().clone();
    assert!(block_on(rollback(&location(tmp.path(), "n"), written)).is_empty());
    assert_eq!(
        fs::read_to_string(tmp.path().join("n/last_reserved_ip.0")).unwrap(),
        "10.0.0.7"
    );
    assert!(!tmp.path().join("n/last_reserved_ip.1").exists());
}

#[test]
fn the_lock_excludes_other_processes_holders() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = new_store(tmp.path(), "n", Phase::Add);
    block_on(a.acquire_lock()).unwrap();
    // Another open file description (another process) cannot take it.
    let f = File::open(tmp.path().join("n/lock")).unwrap();
    assert!(flock(&f, FlockOperation::NonBlockingLockExclusive).is_err());
    a.lock = None;
    assert!(flock(&f, FlockOperation::NonBlockingLockExclusive).is_ok());
}

#[test]
fn a_lock_held_elsewhere_is_busy_at_the_deadline_not_a_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let mut holder = new_store(tmp.path(), "n", Phase::Add);
    block_on(holder.acquire_lock()).unwrap();
    let mut waiter = StoreCtx::new(
        location(tmp.path(), "n"),
        Phase::Add,
        Instant::now() + Duration::from_millis(200),
        Created::default(),
        &limits(),
    );
    let start = std::time::Instant::now();
    let e = block_on(waiter.acquire_lock()).unwrap_err();
    assert!(matches!(e.guest(), Some(WitError::Busy(_))), "{e}");
    assert!(
        start.elapsed() >= Duration::from_millis(150) && start.elapsed() < Duration::from_secs(2)
    );
    // Once released, the next caller gets it.
    holder.lock = None;
    let mut next = new_store(tmp.path(), "n", Phase::Add);
    assert!(block_on(next.acquire_lock()).is_ok());
}

#[test]
fn del_and_check_create_nothing_not_even_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    for phase in [Phase::Del, Phase::Check] {
        let mut s = new_store(tmp.path(), "n", phase);
        block_on(async {
            let _lock = s.acquire_lock().await.unwrap();
            assert!(is_denied(
                s.create("10.0.0.2".into(), "x".into()).await.unwrap_err()
            ));
            assert!(is_denied(
                s.put("last_reserved_ip.0".into(), "x".into())
                    .await
                    .unwrap_err()
            ));
            assert!(s.entries().await.unwrap().is_empty());
        });
        assert!(!tmp.path().join("n").exists(), "{phase:?}");
    }
    let mut s = new_store(tmp.path(), "n", Phase::Del);
    block_on(async {
        let _lock = s.acquire_lock().await.unwrap();
        assert!(
            !s.delete("10.0.0.2".into()).await.unwrap(),
            "DEL of nothing succeeds"
        );
    });
}

#[test]
fn a_planted_link_in_the_store_is_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::create_dir(tmp.path().join("n")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), tmp.path().join("n/10.0.0.7")).unwrap();
    fs::write(outside.join("secret"), "root's").unwrap();
    let mut s = new_store(tmp.path(), "n", Phase::Add);
    assert!(block_on(s.get("10.0.0.7".into())).is_err());
    block_on(async {
        let _l = s.acquire_lock().await.unwrap();
        assert!(s.put("10.0.0.7".into(), "mine".into()).await.is_err());
        assert!(!s.create("10.0.0.7".into(), "mine".into()).await.unwrap());
    });
    assert_eq!(
        fs::read_to_string(outside.join("secret")).unwrap(),
        "root's",
        "nothing written through it"
    );
}

#[test]
fn rollback_puts_back_what_this_call_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("n")).unwrap();
    fs::write(tmp.path().join("n/10.0.0.9"), "other\r\neth0").unwrap();
    let mut s = new_store(tmp.path(), "n", Phase::Add);
    block_on(async {
        let _lock = s.acquire_lock().await.unwrap();
        assert!(s.delete("10.0.0.9".into()).await.unwrap());
        s.create("10.0.0.2".into(), "c1\r\neth0".into())
            .await
            .unwrap();
        assert!(s.delete("10.0.0.2".into()).await.unwrap());
    });
    s.lock = None;
    let written = s.created.lock().unwrap().clone();
    assert!(block_on(rollback(&location(tmp.path(), "n"), written)).is_empty());
    assert_eq!(
        fs::read_to_string(tmp.path().join("n/10.0.0.9")).unwrap(),
        "other\r\neth0",
        "another container's reservation is back"
    );
    assert!(!tmp.path().join("n/10.0.0.2").exists(), "its own is gone");
}
