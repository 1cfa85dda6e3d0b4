//! The interpreter engine: with the kernel's MDWE in force (no memory may
//! gain execute permission) or chosen by the node policy, the classic
//! network works, and fuel and the deadline still stop a guest. And
//! `wasm-cni compile` fills the cache for both engines, so a call never
//! compiles.

use serde_json::json;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};
use wasm_cni_tests::sandbox::run_with_stdin;
use wasm_cni_tests::{CLASSIC, NodeState, Sandbox};

fn sha256(path: &std::path::Path) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const PR_SET_MDWE: libc::c_int = 65;
const PR_GET_MDWE: libc::c_int = 66;
const PR_MDWE_REFUSE_EXEC_GAIN: libc::c_ulong = 1;

/// Whether the kernel has MDWE (6.3+).
fn kernel_has_mdwe() -> bool {
    // SAFETY: PR_GET_MDWE takes no pointers.
    unsafe { libc::prctl(PR_GET_MDWE, 0, 0, 0, 0) >= 0 }
}

/// `c` with MDWE set before it execs, as a wrapper would: inherited by
/// everything it execs, wasm-cni included.
fn under_mdwe(mut c: Command) -> Command {
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            if libc::prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c
}

/// ADD, CHECK and DEL of the classic config for two containers, each call
/// through `wrap`; asserts the engine every call logged, traffic, and that
/// DEL leaves the node as it was (but for the bridge, as the reference).
fn classic_round_trip(sb: &mut Sandbox, wrap: fn(Command) -> Command, engine: &str) {
    let c1 = sb.container("c1");
    let c2 = sb.container("c2");
    let debug = [("WASM_CNI_LOG", "debug")];
    let call = |cmd: &str, id: &str, ns: &std::path::Path, conf: &str| {
        let c = sb.cni_command("bridge", cmd, id, Some(ns), "eth0", &debug);
        let out = run_with_stdin(wrap(c), conf);
        assert!(
            out.stderr
                .contains(&format!("contract 0.2.0, {engine} engine")),
            "{cmd} ran on the {engine} engine: {}",
            out.stderr
        );
        out
    };
    let r1 = call("ADD", "c1", &c1, CLASSIC).ok().json();
    call("ADD", "c2", &c2, CLASSIC).ok();
    assert_eq!(r1["ips"][0]["address"], "10.244.0.2/16", "{r1}");
    assert!(sb.ping("c1", "10.244.0.3"), "c1 -> c2");
    assert!(sb.ping("c2", "10.244.0.1"), "c2 -> gateway");
    let with_prev = {
        let mut conf: serde_json::Value = serde_json::from_str(CLASSIC).unwrap();
        conf["cniVersion"] = "0.4.0".into();
        let mut prev = r1.clone();
        prev["cniVersion"] = "0.4.0".into();
        conf["prevResult"] = prev;
        conf.to_string()
    };
    call("CHECK", "c1", &c1, &with_prev).ok();
    call("DEL", "c1", &c1, CLASSIC).ok();
    call("DEL", "c2", &c2, CLASSIC).ok();
    assert!(sb.link("c1", "eth0").is_none());
    assert!(sb.host_veths().is_empty());
    assert!(
        sb.ip_files("mynet").is_empty(),
        "{:?}",
        sb.ip_files("mynet")
    );
    assert_eq!(sb.masquerade_rules(), 0);
}

#[test]
fn the_classic_network_runs_with_mdwe_in_force() {
    if !kernel_has_mdwe() {
        eprintln!(
            "SKIPPED the_classic_network_runs_with_mdwe_in_force: kernel has no PR_SET_MDWE (6.3+)"
        );
        return;
    }
    let Some(mut sb) = Sandbox::for_test("mdwe") else {
        return;
    };
    // No policy asks for it: MDWE alone makes wasm-cni choose the
    // interpreter (native code could not be mapped).
    classic_round_trip(&mut sb, under_mdwe, "interpreter");
}

/// `c` under a seccomp filter that refuses memory gaining execute
/// permission, as systemd's `MemoryDenyWriteExecute=yes` did before it used
/// MDWE (systemd 252, Debian 12): `mprotect` adding `PROT_EXEC`, `mmap` of
/// writable and executable memory. PR_GET_MDWE says nothing of it.
fn under_systemd_filter(mut c: Command) -> Command {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule,
    };
    let exec = |call: i64, mask: u64| {
        let cond = SeccompCondition::new(
            2,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(mask),
            mask,
        )
        .unwrap();
        (call, vec![SeccompRule::new(vec![cond]).unwrap()])
    };
    let rules = [
        exec(libc::SYS_mprotect, libc::PROT_EXEC as u64),
        exec(libc::SYS_pkey_mprotect, libc::PROT_EXEC as u64),
        exec(libc::SYS_mmap, (libc::PROT_EXEC | libc::PROT_WRITE) as u64),
    ]
    .into_iter()
    .collect();
    let arch = std::env::consts::ARCH.try_into().unwrap();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .unwrap();
    let prog: BpfProgram = filter.try_into().unwrap();
    // SAFETY: applying a prepared filter allocates nothing.
    unsafe {
        c.pre_exec(move || {
            seccompiler::apply_filter(&prog).map_err(|e| std::io::Error::other(e.to_string()))
        });
    }
    c
}

#[test]
fn the_classic_network_runs_under_a_seccomp_w_xor_x_filter() {
    let Some(mut sb) = Sandbox::for_test("wx_filter") else {
        return;
    };
    // No policy, no MDWE: wasm-cni finds out by trying, and interprets.
    classic_round_trip(&mut sb, under_systemd_filter, "interpreter");
}

#[test]
fn mdwe_refuses_what_native_code_needs() {
    // What the test above relies on: under MDWE the native engine cannot
    // load its code, so the interpreter above is not a formality.
    if !kernel_has_mdwe() {
        eprintln!("SKIPPED mdwe_refuses_what_native_code_needs: kernel has no PR_SET_MDWE");
        return;
    }
    let mut c = Command::new("python3");
    c.args([
        "-c",
        "import mmap,ctypes,sys;l=ctypes.CDLL(None,use_errno=True);\
         m=l.mmap(None,4096,3,0x22,-1,0);\
         r=l.mprotect(ctypes.c_void_p(m),4096,5);\
         sys.exit(0 if r!=0 else 1)",
    ]);
    let status = under_mdwe(c).status().unwrap();
    assert!(
        status.success(),
        "mprotect(PROT_EXEC) of written memory was refused"
    );
}

#[test]
fn the_classic_network_runs_on_the_interpreter_chosen_by_policy() {
    let Some(mut sb) = Sandbox::for_test("interp_policy") else {
        return;
    };
    sb.use_policy(json!({"version": 1, "engine": "interpreter"}));
    classic_round_trip(&mut sb, |c| c, "interpreter");
}

fn spin() -> String {
    json!({"cniVersion": "1.0.0", "name": "bad", "type": "misbehave", "behave": "spin",
        "ipam": {"type": "host-local", "subnet": "10.44.0.0/24"}})
    .to_string()
}

#[test]
fn fuel_and_the_deadline_stop_a_guest_on_the_interpreter() {
    let Some(mut sb) = Sandbox::for_test("interp_limits") else {
        return;
    };
    let c1 = sb.container("c1");
    let before = NodeState::take(&sb);
    // Fuel: a small budget, so that it runs out before the deadline.
    sb.use_policy(json!({"version": 1, "engine": "interpreter", "guestFuel": 20_000_000}));
    let e = sb
        .cni_env(
            "misbehave",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &spin(),
            &[("WASM_CNI_TIMEOUT", "30")],
        )
        .err(100);
    assert!(
        e["msg"].as_str().unwrap().contains("ran out of fuel"),
        "{e}"
    );
    // The deadline: the default fuel lasts far longer than two seconds on
    // the interpreter; the epoch stops the loop anyway.
    sb.use_policy(json!({"version": 1, "engine": "interpreter"}));
    let start = Instant::now();
    let e = sb
        .cni_env(
            "misbehave",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &spin(),
            &[("WASM_CNI_TIMEOUT", "2")],
        )
        .err(100);
    let took = start.elapsed();
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("did not finish in time"),
        "{e}"
    );
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
    before.assert_unchanged(&NodeState::take(&sb), "stopped guests");
    assert!(sb.ip_files("bad").is_empty());
}

#[test]
fn a_computing_guest_is_stopped_at_the_deadline_on_native_code_too() {
    let Some(mut sb) = Sandbox::for_test("native_deadline") else {
        return;
    };
    let c1 = sb.container("c1");
    // Fuel for minutes of native work: only the deadline can stop it.
    sb.use_policy(json!({"version": 1, "engine": "native", "guestFuel": 1_000_000_000_000u64}));
    let start = Instant::now();
    let e = sb
        .cni_env(
            "misbehave",
            "ADD",
            "c1",
            Some(&c1),
            "eth0",
            &spin(),
            &[("WASM_CNI_TIMEOUT", "2")],
        )
        .err(100);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("did not finish in time"),
        "{e}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

/// `wasm-cni compile bridge host-local` in the sandbox.
fn compile_both(sb: &Sandbox) -> Command {
    let inst = wasm_cni_tests::install();
    let bin = inst.bin.join("wasm-cni");
    let mut c = sb.command(&[bin.to_str().unwrap(), "compile", "bridge", "host-local"]);
    c.env("WASM_CNI_MODULE_PATH", &inst.wasm)
        .env("WASM_CNI_POLICY", &inst.policy);
    c
}

/// How many compiled artifacts the sandbox's cache holds.
fn artifacts(sb: &Sandbox) -> usize {
    std::fs::read_dir(sb.cache_dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "cwasm")
        })
        .count()
}

#[test]
fn compile_fills_the_cache_for_both_engines_and_calls_then_never_compile() {
    let Some(mut sb) = Sandbox::for_test("precompile") else {
        return;
    };
    let inst = wasm_cni_tests::install();
    let bin = inst.bin.join("wasm-cni");
    let mut c = compile_both(&sb);
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in ["bridge: ", "host-local: "] {
        for engine in ["native: compiled", "interpreter: compiled"] {
            assert!(
                stdout
                    .lines()
                    .any(|l| l.starts_with(line) && l.ends_with(engine)),
                "{line}{engine}: {stdout}"
            );
        }
    }
    assert_eq!(artifacts(&sb), 4, "two modules, two engines");
    // Again: nothing left to compile.
    let again = c.output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&again.stdout)
            .matches("already cached")
            .count(),
        4
    );
    // Both engines' calls load both modules from the cache.
    let c1 = sb.container("c1");
    for policy in [
        json!({"version": 1}),
        json!({"version": 1, "engine": "interpreter"}),
    ] {
        sb.use_policy(policy);
        for cmd in ["ADD", "DEL"] {
            let out = sb.cni_env(
                "bridge",
                cmd,
                "c1",
                Some(&c1),
                "eth0",
                CLASSIC,
                &[("WASM_CNI_LOG", "debug")],
            );
            out.ok();
            assert_eq!(out.stderr.matches("cache Hit").count(), 2, "{}", out.stderr);
            assert!(!out.stderr.contains("Compiled"), "{}", out.stderr);
        }
    }
    // Pinned modules need their sums vouched for in <cache>.pins: if that
    // directory is unusable, compile says so and fails.
    let pins = sb.cache_dir().with_file_name("cache.pins");
    sb.use_policy(
        json!({"version": 1, "modulePins": {"bridge": sha256(&inst.wasm.join("bridge.wasm"))}}),
    );
    std::fs::create_dir_all(&pins).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pins, std::fs::Permissions::from_mode(0o777)).unwrap();
    sb.precompile_expecting_failure(&["bridge"]);
    std::fs::set_permissions(&pins, std::fs::Permissions::from_mode(0o700)).unwrap();
    sb.precompile(&["bridge"]);
    // A module that is not there fails the command.
    let mut c = sb.command(&[bin.to_str().unwrap(), "compile", "nonesuch"]);
    c.env("WASM_CNI_MODULE_PATH", &inst.wasm);
    let out = c.output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no module \"nonesuch\""));
}

/// systemd's `ExecStartPre=wasm-cni compile` under
/// `MemoryDenyWriteExecute=yes` (README, "Hardening"): native code cannot
/// be loaded there, so compile fills the interpreter's cache, says it
/// skipped native code, and succeeds; the calls of that unit then compile
/// nothing.
#[test]
fn compile_succeeds_where_memory_may_not_become_executable() {
    type Wrap = fn(Command) -> Command;
    let mut wraps: Vec<(&str, Wrap)> = vec![("seccomp W^X filter", under_systemd_filter)];
    if kernel_has_mdwe() {
        wraps.push(("MDWE", under_mdwe));
    } else {
        eprintln!("SKIPPED the MDWE half: kernel has no PR_SET_MDWE (6.3+)");
    }
    for (what, wrap) in wraps {
        let Some(mut sb) = Sandbox::for_test("mdwe_compile") else {
            return;
        };
        let out = wrap(compile_both(&sb)).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{what}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("native engine: skipped"),
            "{what}: {stdout}"
        );
        for m in ["bridge: ", "host-local: "] {
            assert!(
                stdout
                    .lines()
                    .any(|l| l.starts_with(m) && l.ends_with("interpreter: compiled")),
                "{what}: {m}: {stdout}"
            );
        }
        assert_eq!(artifacts(&sb), 2, "{what}: the interpreter's two");
        let c1 = sb.container("c1");
        for cmd in ["ADD", "DEL"] {
            let c = sb.cni_command(
                "bridge",
                cmd,
                "c1",
                Some(&c1),
                "eth0",
                &[("WASM_CNI_LOG", "debug")],
            );
            let out = run_with_stdin(wrap(c), CLASSIC);
            out.ok();
            assert_eq!(
                out.stderr.matches("cache Hit").count(),
                2,
                "{what}: {}",
                out.stderr
            );
            assert!(!out.stderr.contains("Compiled"), "{what}: {}", out.stderr);
        }
        assert!(sb.host_veths().is_empty());
    }
}
