//! Least privilege: while a guest runs, the host has `no_new_privs` and only
//! `CAP_NET_ADMIN`, `CAP_SYS_ADMIN` and `CAP_NET_RAW`, in every capability
//! set, and its threads a seccomp filter; what it executes inherits no more
//! privileges (and not the filter: see `seccomp`). A system call outside
//! the filter's list, or a file outside Landlock's, is refused during a
//! call, and the call still rolls back.

use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use wasm_cni_tests::sandbox::{finish, spawn_with_stdin};
use wasm_cni_tests::{NodeState, Sandbox};

/// CAP_NET_ADMIN (12), CAP_NET_RAW (13), CAP_SYS_ADMIN (21), as
/// `/proc/PID/status` prints a set.
const KEPT: &str = "0000000000203000";
const NONE: &str = "0000000000000000";

/// The `Cap*` and `NoNewPrivs` lines of a `/proc/PID/status`.
fn privileges(status: &str) -> Vec<String> {
    let mut v: Vec<String> = status
        .lines()
        .filter(|l| l.starts_with("Cap") || l.starts_with("NoNewPrivs"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    v.sort();
    v
}

fn expected() -> Vec<String> {
    let mut v = vec![
        format!("CapAmb: {NONE}"),
        format!("CapBnd: {KEPT}"),
        format!("CapEff: {KEPT}"),
        format!("CapInh: {NONE}"),
        format!("CapPrm: {KEPT}"),
        "NoNewPrivs: 1".to_string(),
    ];
    v.sort();
    v
}

#[test]
fn while_a_guest_runs_the_host_holds_only_what_a_call_needs() {
    let Some(mut sb) = Sandbox::for_test("host_privileges") else {
        return;
    };
    let c1 = sb.container("c1");
    sb.precompile(&["misbehave", "host-local"]);
    let before = NodeState::take(&sb);
    let cfg = json!({"cniVersion": "1.0.0", "name": "priv", "type": "misbehave",
        "behave": "sleep-halfway", "ipam": {"type": "host-local", "subnet": "10.51.0.0/24"}})
    .to_string();
    let child = spawn_with_stdin(
        sb.cni_command(
            "misbehave",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &[("WASM_CNI_TIMEOUT", "3")],
        ),
        &cfg,
    );
    // `unshare` and `ip netns exec` exec in place: the child becomes the
    // host. Read its status once it is wasm-cni and the guest is asleep.
    let proc = format!("/proc/{}", child.id());
    let start = Instant::now();
    let status = loop {
        let comm = std::fs::read_to_string(format!("{proc}/comm")).unwrap_or_default();
        if comm.trim() == "misbehave" || comm.trim() == "wasm-cni" {
            std::thread::sleep(Duration::from_millis(800));
            break std::fs::read_to_string(format!("{proc}/status")).unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "never became wasm-cni: {comm}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(privileges(&status), expected(), "{status}");
    // Every thread that runs guest code or capability calls is filtered:
    // all but the spawner, which starts programs and nothing else.
    let mut filtered = 0;
    for task in std::fs::read_dir(format!("{proc}/task")).unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
        let seccomp = status
            .lines()
            .find(|l| l.starts_with("Seccomp:"))
            .unwrap_or("");
        // The spawner starts programs and nothing else; the module
        // cache was warmed above, so no compile thread exists.
        let want = if comm.trim() == "wasm-cni-spawn" {
            "0"
        } else {
            "2"
        };
        assert_eq!(
            seccomp.split_whitespace().nth(1),
            Some(want),
            "thread {}: {status}",
            comm.trim()
        );
        filtered += usize::from(want == "2");
    }
    assert!(
        filtered >= 2,
        "the main thread and the epoch clock at least"
    );
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Seccomp:", "2"]),
        "{status}"
    );
    let out = finish(child);
    out.err(100);
    before.assert_unchanged(&NodeState::take(&sb), "a call stopped at its deadline");
}

#[test]
fn what_the_host_executes_inherits_no_more() {
    use std::os::unix::fs::PermissionsExt;
    let Some(mut sb) = Sandbox::for_test("child_privileges") else {
        return;
    };
    // A shell script that reads its own /proc/self and writes a file of
    // the test's: the node policy lets it.
    sb.use_policy(json!({"version": 1, "ipamPlugins": ["show-privileges"],
        "landlock": {"execute": ["/usr/bin", "/bin"], "read": ["/proc"], "readWrite": ["/tmp"]}}));
    // A native IPAM plugin that speaks 1.1.0 and writes down its own
    // privileges when asked for STATUS.
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("status");
    let script = format!(
        "#!/bin/sh\ncat >/dev/null\ncase \"$CNI_COMMAND\" in\n\
         VERSION) echo '{{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"1.1.0\"]}}' ;;\n\
         STATUS) cat /proc/self/status > {} ;;\nesac\n",
        out_file.display()
    );
    let plugin = dir.path().join("show-privileges");
    std::fs::write(&plugin, script).unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        wasm_cni_tests::install().bin.display()
    );
    let cfg = json!({"cniVersion": "1.1.0", "name": "kids", "type": "bridge", "bridge": "kidbr",
        "ipam": {"type": "show-privileges"}})
    .to_string();
    sb.cni_env(
        "bridge",
        "STATUS",
        "",
        None,
        "",
        &cfg,
        &[("CNI_PATH", &path)],
    )
    .ok();
    let status = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(privileges(&status), expected(), "{status}");
    // Started from the spawner, outside the filter: a program's system
    // calls are its own to need.
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Seccomp:", "0"]),
        "{status}"
    );
}

/// The classic network's config under the sandbox's usual names.
fn classic() -> String {
    wasm_cni_tests::CLASSIC.to_string()
}

#[test]
fn a_system_call_outside_the_list_is_refused_and_the_add_rolls_back() {
    let Some(mut sb) = Sandbox::for_test("seccomp_refuses") else {
        return;
    };
    let c1 = sb.container("c1");
    let before = NodeState::take(&sb);
    // The host makes a forbidden call right after it created the veth
    // pair, as a bug or an exploit in a capability would.
    let hook = [("WASM_CNI_TEST_SYSCALL", "link.create-veth")];
    let out = sb.cni_env("bridge", "ADD", "c1", Some(&c1), "eth0", &classic(), &hook);
    let e = out.err(100);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("refused by the host's seccomp filter"),
        "{e}"
    );
    assert!(
        out.stderr.contains("refused by the host's seccomp filter"),
        "the log says so: {}",
        out.stderr
    );
    assert!(sb.link("c1", "eth0").is_none(), "the veth is gone");
    assert!(sb.host_veths().is_empty());
    assert!(sb.ip_files("mynet").is_empty(), "no address kept");
    assert_eq!(sb.masquerade_rules(), 0);
    before.assert_unchanged(&NodeState::take(&sb), "a refused system call");
    // Without the filter the same call goes through (the hook then fails
    // the ADD by itself): the refusal above was the filter's.
    let unfiltered = [hook[0], ("WASM_CNI_SECCOMP", "off")];
    let e = sb
        .cni_env(
            "bridge",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &classic(),
            &unfiltered,
        )
        .err(100);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("personality() was allowed"),
        "{e}"
    );
    before.assert_unchanged(&NodeState::take(&sb), "the hook's own failure");
}

#[test]
fn a_file_outside_the_list_is_refused_and_the_add_rolls_back() {
    let Some(mut sb) = Sandbox::for_test("landlock_refuses") else {
        return;
    };
    let c1 = sb.container("c1");
    let before = NodeState::take(&sb);
    // Root can read /etc/hostname; a call may not.
    let hook = [("WASM_CNI_TEST_OPEN", "address.add:/etc/hostname")];
    let out = sb.cni_env("bridge", "ADD", "c1", Some(&c1), "eth0", &classic(), &hook);
    let e = out.err(100);
    let msg = e["msg"].as_str().unwrap();
    assert!(msg.contains("/etc/hostname: Permission denied"), "{e}");
    assert!(sb.link("c1", "eth0").is_none());
    assert!(sb.host_veths().is_empty());
    assert!(sb.ip_files("mynet").is_empty());
    before.assert_unchanged(&NodeState::take(&sb), "a refused file");
    // A file the call needs opens at the same point: the refusal above
    // was Landlock's list, not the hook.
    let allowed = [(
        "WASM_CNI_TEST_OPEN",
        "address.add:/proc/sys/net/ipv4/ip_forward",
    )];
    let e = sb
        .cni_env(
            "bridge",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &classic(),
            &allowed,
        )
        .err(100);
    assert!(
        e["msg"].as_str().unwrap().contains("could be opened"),
        "{e}"
    );
    before.assert_unchanged(&NodeState::take(&sb), "the hook's own failure");
}

#[test]
fn a_native_ipam_plugin_writes_only_where_the_call_may() {
    use std::os::unix::fs::PermissionsExt;
    let Some(mut sb) = Sandbox::for_test("child_landlock") else {
        return;
    };
    sb.use_policy(json!({"version": 1, "ipamPlugins": ["escape-ipam"],
        "landlock": {"execute": ["/usr/bin", "/bin"]}}));
    let c1 = sb.container("c1");
    // Writes a file outside any store, as a compromised plugin would; or
    // into another network's store; or runs a program under /usr/lib.
    let dir = tempfile::tempdir().unwrap();
    let target = sb.varlib.path().join("escaped");
    let other = sb.varlib.path().join("cni/networks/other");
    std::fs::create_dir_all(&other).unwrap();
    let script = r#"#!/bin/sh
cat >/dev/null
case "$ESCAPE" in
file) echo owned > /var/lib/escaped || exit 1 ;;
store) echo owned > /var/lib/cni/networks/other/10.9.0.9 || exit 1 ;;
exec) /usr/lib/cni/static 2>/dev/null; [ $? = 126 ] && exit 1 ;;
esac
echo '{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.2/24"}]}'
"#;
    let plugin = dir.path().join("escape-ipam");
    std::fs::write(&plugin, script).unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        wasm_cni_tests::install().bin.display()
    );
    let cfg = json!({"cniVersion": "1.0.0", "name": "esc", "type": "bridge", "bridge": "escbr",
        "ipam": {"type": "escape-ipam"}})
    .to_string();
    let before = NodeState::take(&sb);
    for escape in ["file", "store", "exec"] {
        let out = sb.cni_env(
            "bridge",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &cfg,
            &[("CNI_PATH", &path), ("ESCAPE", escape)],
        );
        out.err(100);
        if escape != "exec" {
            assert!(
                out.stderr.contains("Permission denied"),
                "{escape}: {}",
                out.stderr
            );
        }
        before.assert_unchanged(&NodeState::take(&sb), "a refused native IPAM plugin");
    }
    assert!(!target.exists(), "nothing was written");
    assert_eq!(
        std::fs::read_dir(&other).unwrap().count(),
        0,
        "nor in another network's store"
    );
    // The same plugin, doing none of it, works: the refusals were the
    // escapes'.
    let none = [("CNI_PATH", path.as_str()), ("ESCAPE", "none")];
    sb.cni_env("bridge", "ADD", "c1", Some(&c1), "eth0", &cfg, &none)
        .ok();
    sb.cni_env("bridge", "DEL", "c1", Some(&c1), "eth0", &cfg, &none)
        .ok();
}

#[test]
fn a_resolv_conf_opens_that_one_file_not_its_directory() {
    let Some(mut sb) = Sandbox::for_test("landlock_resolv") else {
        return;
    };
    let c1 = sb.container("c1");
    let mut conf: serde_json::Value = serde_json::from_str(&classic()).unwrap();
    conf["ipam"]["resolvConf"] = "/etc/resolv.conf".into();
    let conf = conf.to_string();
    // /etc/resolv.conf itself is readable in the call, /etc/hostname beside
    // it is not.
    for (file, opens) in [("/etc/resolv.conf", true), ("/etc/hostname", false)] {
        let hook = format!("address.add:{file}");
        let e = sb
            .cni_env(
                "bridge",
                "ADD",
                "c1",
                Some(&c1),
                "eth0",
                &conf,
                &[("WASM_CNI_TEST_OPEN", &hook)],
            )
            .err(100);
        let msg = e["msg"].as_str().unwrap();
        assert_eq!(msg.contains("could be opened"), opens, "{file}: {e}");
    }
    // Unhooked, the ADD reads it into the result.
    let r = sb
        .cni("bridge", "ADD", "c1", Some(&c1), "eth0", &conf)
        .ok()
        .json();
    assert!(r["dns"].is_object(), "{r}");
    sb.cni("bridge", "DEL", "c1", Some(&c1), "eth0", &conf).ok();
}

/// `c` with the legacy iptables backend chosen, as `update-alternatives`
/// does on nodes that still use it: `alternatives` (a copy of
/// /etc/alternatives with iptables and ip6tables pointing at the legacy
/// ones) bind-mounted in a mount namespace of its own.
fn with_legacy_iptables(
    mut c: std::process::Command,
    alternatives: &Path,
) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let alternatives = alternatives.to_path_buf();
    // SAFETY: only system calls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            use rustix::mount::{MountPropagationFlags, mount_bind, mount_change};
            use rustix::thread::{UnshareFlags, unshare_unsafe};
            unshare_unsafe(UnshareFlags::NEWNS)?;
            mount_change(
                "/",
                MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
            )?;
            mount_bind(&alternatives, "/etc/alternatives")?;
            Ok(())
        });
    }
    c
}

/// /etc/alternatives, but iptables and ip6tables legacy.
fn legacy_alternatives() -> Option<tempfile::TempDir> {
    let dir = tempfile::tempdir().ok()?;
    for e in std::fs::read_dir("/etc/alternatives").ok()?.flatten() {
        let name = e.file_name();
        let target = match name.to_str() {
            Some("iptables") => "/usr/sbin/iptables-legacy".into(),
            Some("ip6tables") => "/usr/sbin/ip6tables-legacy".into(),
            _ => match std::fs::read_link(e.path()) {
                Ok(t) => t,
                Err(_) => continue,
            },
        };
        std::os::unix::fs::symlink(target, dir.path().join(&name)).ok()?;
    }
    Some(dir)
}

#[test]
fn a_del_on_a_legacy_iptables_node_takes_iptables_lock() {
    let alternatives = legacy_alternatives();
    if !Path::new("/usr/sbin/iptables-legacy").exists()
        || std::fs::read_link("/usr/sbin/iptables").ok()
            != Some("/etc/alternatives/iptables".into())
        || alternatives.is_none()
    {
        eprintln!(
            "SKIPPED a_del_on_a_legacy_iptables_node: no iptables-legacy chosen through /etc/alternatives"
        );
        return;
    }
    let alternatives = alternatives.unwrap();
    let Some(mut sb) = Sandbox::for_test("legacy_iptables") else {
        return;
    };
    let c1 = sb.container("c1");
    // iptables' lock where the test says, not in the machine's /run.
    let run = tempfile::tempdir().unwrap();
    let lock = run.path().join("xtables.lock");
    let env = [("XTABLES_LOCKFILE", lock.to_str().unwrap())];
    for cmd in ["ADD", "DEL"] {
        let c = sb.cni_command("bridge", cmd, "c1", Some(&c1), "eth0", &env);
        wasm_cni_tests::sandbox::run_with_stdin(
            with_legacy_iptables(c, alternatives.path()),
            &classic(),
        )
        .ok();
    }
    assert!(lock.exists(), "the lock file was there for iptables");
    assert!(sb.host_veths().is_empty());
    assert!(sb.ip_files("mynet").is_empty());
}

#[test]
fn a_native_ipam_del_finds_its_store_directory_made_for_it() {
    let Some(reference) = wasm_cni_tests::reference_plugins() else {
        eprintln!("SKIPPED a_native_ipam_del_finds_its_store: no reference plugins");
        return;
    };
    let Some(mut sb) = Sandbox::for_test("native_del_store") else {
        return;
    };
    sb.use_policy(json!({"version": 1, "ipamPlugins": ["ref-host-local"]}));
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        reference.join("host-local"),
        bin.path().join("ref-host-local"),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        wasm_cni_tests::install().bin.display()
    );
    let c1 = sb.container("c1");
    let cfg =
        json!({"cniVersion": "1.0.0", "name": "natdel", "type": "bridge", "bridge": "natdelbr",
        "ipam": {"type": "ref-host-local", "subnet": "10.97.0.0/24"}})
        .to_string();
    // A DEL first (after a reboot, a wiped store): the reference makes its
    // directory on every command, and may.
    sb.cni_env(
        "bridge",
        "DEL",
        "c1",
        Some(&c1),
        "eth0",
        &cfg,
        &[("CNI_PATH", &path)],
    )
    .ok();
    sb.cni_env(
        "bridge",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        &cfg,
        &[("CNI_PATH", &path)],
    )
    .ok();
    sb.cni_env(
        "bridge",
        "DEL",
        "c1",
        Some(&c1),
        "eth0",
        &cfg,
        &[("CNI_PATH", &path)],
    )
    .ok();
}

#[test]
fn a_config_naming_a_directory_as_resolv_conf_opens_nothing_more() {
    let Some(mut sb) = Sandbox::for_test("resolv_dir") else {
        return;
    };
    let c1 = sb.container("c1");
    let mut conf: serde_json::Value = serde_json::from_str(&classic()).unwrap();
    conf["ipam"]["type"] = "hostile-ipam".into();
    conf["ipam"]["resolvConf"] = "/etc".into();
    let hook = [("WASM_CNI_TEST_OPEN", "address.add:/etc/hostname")];
    let out = sb.cni_env(
        "bridge",
        "ADD",
        "c1",
        Some(&c1),
        "eth0",
        &conf.to_string(),
        &hook,
    );
    let text = out.stdout.clone();
    assert!(text.contains("/etc/hostname: Permission denied"), "{text}");
}

#[test]
fn a_bare_nft_name_is_found_in_path() {
    let Some(mut sb) = Sandbox::for_test("bare_nft") else {
        return;
    };
    let c1 = sb.container("c1");
    let env = [
        ("WASM_CNI_NFT", "nft"),
        ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    ];
    sb.cni_env("bridge", "ADD", "c1", Some(&c1), "eth0", &classic(), &env)
        .ok();
    assert_eq!(sb.masquerade_rules(), 1);
    sb.cni_env("bridge", "DEL", "c1", Some(&c1), "eth0", &classic(), &env)
        .ok();
    assert_eq!(sb.masquerade_rules(), 0);
}

/// containerd passes `CNI_NETNS` as `/proc/<pid>/ns/net` of the sandbox's
/// pause process, which runs as another user: opening it needs
/// ptrace-level access (`CAP_SYS_PTRACE` across users), which the host
/// drops. It is opened first, so ADD and DEL work through such a path.
#[test]
fn a_netns_given_as_another_users_process_is_opened_before_privileges_drop() {
    let Some(mut sb) = Sandbox::for_test("proc_netns") else {
        return;
    };
    let c1 = sb.container("c1");
    let mut pause = std::process::Command::new("nsenter")
        .arg(format!("--net={}", c1.display()))
        .args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sleep",
            "60",
        ])
        .spawn()
        .unwrap();
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = pause.id();
    // Wait until the process is in the container's namespace as nobody.
    let netns = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
    let deadline = Instant::now() + Duration::from_secs(5);
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &Path| std::fs::metadata(p).map(|m| m.ino()).ok();
    while ino(&netns) != ino(&c1)
        || !std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("65534"))
    {
        assert!(Instant::now() < deadline, "the pause process never started");
        assert!(
            pause.try_wait().unwrap().is_none(),
            "the pause process died"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pause = Reap(pause);
    let r = sb
        .cni("bridge", "ADD", "c1", Some(&netns), "eth0", &classic())
        .ok()
        .json();
    assert_eq!(r["ips"][0]["address"], "10.244.0.2/16", "{r}");
    assert!(sb.link("c1", "eth0").is_some(), "eth0 is in the container");
    sb.cni("bridge", "DEL", "c1", Some(&netns), "eth0", &classic())
        .ok();
    assert!(sb.link("c1", "eth0").is_none());
    assert!(sb.host_veths().is_empty());
    drop(pause);
}
