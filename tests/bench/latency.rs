//! ADD and DEL of wasm-cni beside the reference plugins (/usr/lib/cni), on
//! this machine, in the same run, warm caches unless said. Root.
//!
//!   cargo bench -p wasm-cni-tests --bench latency
//!
//! BENCH_ROUNDS (25) pairs of calls, BENCH_PARALLEL (200) containers at
//! once, BENCH_ATTACHED (500) attachments already on the node. Build first
//! as tests/run.sh does. Each plugin call is timed from fork to exit. The
//! child enters the sandbox's host namespace and a private /var/lib itself
//! (no `ip netns exec` in the measurement). "direct" execs the plugin as a
//! runtime does; "cnitool" goes through libcni. wasm-cni and the reference
//! alternate call by call (which goes first alternates too), and ratios are
//! taken pair by pair, so a noisy VM's drift hits both. Then: the floor (a
//! static no-op exec'd the same way), peak RSS (`/usr/bin/time -f %M`, the
//! largest process of the call's tree), the first ADD on a cold cache,
//! BENCH_PARALLEL ADDs and DELs at once, ADD and DEL with BENCH_ATTACHED
//! attachments on the bridge (beside the kernel's own growth, measured with
//! `ip`), and wasm-cni's two engines.

use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use wasm_cni_tests::sandbox::run_with_stdin;
use wasm_cni_tests::{Sandbox, cnitool, install, reference_plugins, root_or_skip};

struct Impl {
    label: &'static str,
    plugin: PathBuf,
    cni_path: String,
    network: &'static str,
    config: String,
}

fn config(name: &str, bridge: &str, subnet: &str) -> String {
    format!(
        r#"{{"cniVersion":"0.3.1","name":"{name}","type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":true,
 "ipam":{{"type":"host-local","subnet":"{subnet}","routes":[{{"dst":"0.0.0.0/0"}}]}}}}"#
    )
}

/// A command that, between fork and exec, enters `host` and mounts
/// `varlib` over /var/lib in a private mount namespace.
fn in_sandbox(mut c: Command, host: &Path, varlib: &Path) -> Command {
    let host = std::fs::File::open(host).unwrap();
    let varlib = varlib.to_path_buf();
    unsafe {
        c.pre_exec(move || {
            use rustix::mount::{MountPropagationFlags, mount_bind, mount_change};
            use rustix::thread::{
                LinkNameSpaceType, UnshareFlags, move_into_link_name_space, unshare_unsafe,
            };
            move_into_link_name_space(host.as_fd(), Some(LinkNameSpaceType::Network))?;
            unshare_unsafe(UnshareFlags::NEWNS)?;
            mount_change(
                "/",
                MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
            )?;
            mount_bind(&varlib, "/var/lib")?;
            Ok(())
        });
    }
    c
}

fn timed(c: Command, stdin: &str) -> Duration {
    let start = Instant::now();
    let out = run_with_stdin(c, stdin);
    let took = start.elapsed();
    assert_eq!(out.code, 0, "{out:?}");
    took
}

struct Runner<'a> {
    sb: &'a Sandbox,
    host: PathBuf,
}

impl Runner<'_> {
    fn direct(&self, imp: &Impl, op: &str, id: &str, netns: &Path) -> Command {
        self.direct_with(imp, op, id, netns, &install().policy)
    }

    fn direct_with(&self, imp: &Impl, op: &str, id: &str, netns: &Path, policy: &Path) -> Command {
        let mut c = in_sandbox(Command::new(&imp.plugin), &self.host, self.sb.varlib.path());
        self.call_env(&mut c, imp, op, id, netns, policy);
        c
    }

    fn call_env(
        &self,
        c: &mut Command,
        imp: &Impl,
        op: &str,
        id: &str,
        netns: &Path,
        policy: &Path,
    ) {
        c.env("CNI_COMMAND", op)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &imp.cni_path)
            .env("WASM_CNI_MODULE_PATH", &install().wasm)
            .env("WASM_CNI_POLICY", policy);
    }

    /// The call under `/usr/bin/time -f %M`, which prints its peak RSS.
    fn under_time(&self, imp: &Impl, op: &str, id: &str, netns: &Path) -> Command {
        let mut c = in_sandbox(
            Command::new("/usr/bin/time"),
            &self.host,
            self.sb.varlib.path(),
        );
        c.args(["-f", "%M"]).arg(&imp.plugin);
        self.call_env(&mut c, imp, op, id, netns, &install().policy);
        c
    }

    fn cnitool(&self, tool: &Path, conf_dir: &Path, imp: &Impl, op: &str, netns: &Path) -> Command {
        let mut c = in_sandbox(Command::new(tool), &self.host, self.sb.varlib.path());
        c.args([
            op.to_lowercase().as_str(),
            imp.network,
            netns.to_str().unwrap(),
        ])
        .env("NETCONFPATH", conf_dir)
        .env("CNI_PATH", &imp.cni_path)
        .env("WASM_CNI_MODULE_PATH", &install().wasm)
        .env("WASM_CNI_POLICY", &install().policy);
        c
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    let pick = |q: f64| ms(v[((v.len() - 1) as f64 * q).round() as usize]);
    format!("{:7.1} {:7.1} {:7.1}", pick(0.5), pick(0.9), pick(0.0))
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median of the ratios a[i]/b[i].
fn pairwise(a: &[Duration], b: &[Duration]) -> f64 {
    median(
        a.iter()
            .zip(b)
            .map(|(x, y)| x.as_secs_f64() / y.as_secs_f64())
            .collect(),
    )
}

fn main() {
    if !root_or_skip("latency benchmark") {
        return;
    }
    let Some(reference) = reference_plugins() else {
        eprintln!(
            "SKIPPED: the reference plugins are not in /usr/lib/cni (tests/setup.sh --interop installs them)"
        );
        return;
    };
    let rounds = env_or("BENCH_ROUNDS", 25).max(1);
    let parallel = env_or("BENCH_PARALLEL", 200).max(1);
    let attached = env_or("BENCH_ATTACHED", 500).max(1);
    let impls = [
        Impl {
            label: "wasm-cni",
            plugin: install().bin.join("bridge"),
            cni_path: install().bin.display().to_string(),
            network: "wasmnet",
            config: config("wasmnet", "wbr0", "10.201.0.0/16"),
        },
        Impl {
            label: "reference",
            plugin: reference.join("bridge"),
            cni_path: reference.display().to_string(),
            network: "refnet",
            config: config("refnet", "rbr0", "10.202.0.0/16"),
        },
    ];
    let mut sb = Sandbox::new("bench");
    let per_impl = rounds.max(parallel);
    let netns: Vec<Vec<PathBuf>> = (0..impls.len())
        .map(|i| {
            (0..per_impl)
                .map(|n| sb.container(&format!("{i}x{n}")))
                .collect()
        })
        .collect();
    let crowds: Vec<PathBuf> = (0..impls.len())
        .map(|i| sb.container(&format!("crowd{i}")))
        .collect();
    let run = Runner {
        sb: &sb,
        host: sb.ns_path("host"),
    };
    let conf_dir = tempfile::tempdir().unwrap();
    for imp in &impls {
        std::fs::write(
            conf_dir.path().join(format!("{}.conf", imp.network)),
            &imp.config,
        )
        .unwrap();
    }

    println!(
        "CNI ADD/DEL latency, ms (median p90 min), {rounds} rounds, warm caches, one 2-core VM"
    );
    println!(
        "reference: containernetworking-plugins in {}\n",
        reference.display()
    );
    println!(
        "{:<9} {:<10} {:>23}   {:>23}",
        "how", "plugin", "ADD", "DEL"
    );
    // Warm up: wasm-cni's compiled-module cache, the page cache for all.
    for (i, imp) in impls.iter().enumerate() {
        timed(run.direct(imp, "ADD", "warm", &netns[i][0]), &imp.config);
        timed(run.direct(imp, "DEL", "warm", &netns[i][0]), &imp.config);
    }
    let mut modes: Vec<&str> = vec!["direct"];
    let tool = cnitool();
    if tool.is_some() {
        modes.push("cnitool");
    }
    let mut ratios: Vec<(&str, f64, f64)> = Vec::new();
    let mut warm_add = Duration::ZERO;
    for mode in modes {
        let call = |i: usize, op: &str, n: usize| {
            let (imp, ns) = (&impls[i], &netns[i][n]);
            let c = match mode {
                "direct" => run.direct(imp, op, &format!("bench-{n}"), ns),
                _ => run.cnitool(tool.as_deref().unwrap(), conf_dir.path(), imp, op, ns),
            };
            timed(c, &imp.config)
        };
        let mut adds = [Vec::new(), Vec::new()];
        let mut dels = [Vec::new(), Vec::new()];
        for n in 0..rounds {
            let order = if n % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                adds[i].push(call(i, "ADD", n));
            }
            for i in order {
                dels[i].push(call(i, "DEL", n));
            }
        }
        ratios.push((
            mode,
            pairwise(&adds[0], &adds[1]),
            pairwise(&dels[0], &dels[1]),
        ));
        if mode == "direct" {
            let mut a = adds[0].clone();
            a.sort();
            warm_add = a[a.len() / 2];
        }
        for (i, imp) in impls.iter().enumerate() {
            println!(
                "{:<9} {:<10} {}   {}",
                mode,
                imp.label,
                summary(adds[i].clone()),
                summary(dels[i].clone())
            );
        }
    }
    println!(
        "
wasm-cni/reference, median of the pairs' ratios:"
    );
    for (mode, add, del) in ratios {
        println!("{mode:<9} ADD {add:5.2}   DEL {del:5.2}");
    }

    floor(&run, &impls[0], &netns[0][0], rounds);
    peak_rss(&run, &impls, &netns, rounds.clamp(1, 5));
    cold_first_add(&run, &impls[0], &netns[0], warm_add);
    at_once(&run, &sb, &impls, &netns, parallel);
    with_attached(&run, &impls, &netns, &crowds, rounds, attached);
    engines(&run, &impls[0], &netns[0], rounds);
}

/// A static program that does nothing, exec'd as a plugin is: what any
/// plugin costs at least here (fork, exec, exit, and this harness).
fn floor(run: &Runner, imp: &Impl, netns: &Path, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("noop.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let noop = dir.path().join("noop");
    let built = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&noop)
        .arg(&src)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        println!("\nfloor: cannot build a static no-op with cc (gcc and libc6-dev)");
        return;
    }
    let noop = Impl {
        label: "no-op",
        plugin: noop,
        cni_path: String::new(),
        network: imp.network,
        config: imp.config.clone(),
    };
    let v: Vec<Duration> = (0..rounds.max(5))
        .map(|_| timed(run.direct(&noop, "ADD", "floor", netns), &noop.config))
        .collect();
    println!(
        "\nfloor, a static no-op exec'd the same way, ms (median p90 min): {}",
        summary(v)
    );
}

/// Peak RSS of the call's process tree, KiB: `/usr/bin/time -f %M` (a
/// small process, so its own size does not count) around the plugin.
fn peak_rss(run: &Runner, impls: &[Impl; 2], netns: &[Vec<PathBuf>], n: usize) {
    if !Path::new("/usr/bin/time").exists() {
        println!("\npeak RSS: /usr/bin/time is not installed (Debian package `time`)");
        return;
    }
    let mut kib = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    for k in 0..n {
        for (i, (imp, ns)) in impls.iter().zip(netns).enumerate() {
            for (o, op) in ["ADD", "DEL"].into_iter().enumerate() {
                let id = format!("rss-{k}");
                let c = run.under_time(imp, op, &id, &ns[k]);
                let out = run_with_stdin(c, &imp.config);
                assert_eq!(out.code, 0, "{out:?}");
                let peak: f64 = out
                    .stderr
                    .lines()
                    .last()
                    .and_then(|l| l.trim().parse().ok())
                    .unwrap_or_else(|| panic!("no %M in {:?}", out.stderr));
                kib[i][o].push(peak);
            }
        }
    }
    println!("\npeak RSS of the call's process tree (median of {n}), MB:");
    for (o, op) in ["ADD", "DEL"].into_iter().enumerate() {
        let (ours, theirs) = (median(kib[0][o].clone()), median(kib[1][o].clone()));
        println!(
            "{op}  wasm-cni {:5.1}  reference {:5.1}  ratio {:4.2}",
            ours / 1024.0,
            theirs / 1024.0,
            ours / theirs
        );
    }
}

/// The first ADD after the compiled-module cache is emptied (modules
/// dropped in without `wasm-cni compile`), three times; beside the warm
/// ADD. Then `wasm-cni compile` and an ADD that compiles nothing.
fn cold_first_add(run: &Runner, imp: &Impl, netns: &[PathBuf], warm: Duration) {
    let cache = run.sb.cache_dir();
    let mut cold = Vec::new();
    for (k, ns) in netns.iter().take(3).enumerate() {
        let _ = std::fs::remove_dir_all(&cache);
        let id = format!("cold-{k}");
        cold.push(timed(run.direct(imp, "ADD", &id, ns), &imp.config));
        timed(run.direct(imp, "DEL", &id, ns), &imp.config);
    }
    cold.sort();
    println!(
        "\nfirst ADD on a cold cache (both modules compiled), ms: median {:.0} (min {:.0}); warm {:.1}",
        ms(cold[cold.len() / 2]),
        ms(cold[0]),
        ms(warm)
    );
    // Once per module: the first ADD after one module was dropped in (its
    // artifacts removed, the other's kept).
    for module in ["bridge", "host-local"] {
        use sha2::Digest;
        let file = install().wasm.join(format!("{module}.wasm"));
        let digest: String = sha2::Sha256::digest(std::fs::read(&file).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut one = Vec::new();
        for (k, ns) in netns.iter().take(3).enumerate() {
            for artifact in std::fs::read_dir(&cache).unwrap().flatten() {
                if artifact.file_name().to_string_lossy().starts_with(&digest) {
                    std::fs::remove_file(artifact.path()).unwrap();
                }
            }
            let id = format!("cold-{module}-{k}");
            one.push(timed(run.direct(imp, "ADD", &id, ns), &imp.config));
            timed(run.direct(imp, "DEL", &id, ns), &imp.config);
        }
        one.sort();
        println!(
            "first ADD with only {module} cold, ms: median {:.0} (min {:.0})",
            ms(one[one.len() / 2]),
            ms(one[0])
        );
    }
    let _ = std::fs::remove_dir_all(&cache);
    run.sb.precompile(&["bridge", "host-local"]);
    let mut c = run.direct(imp, "ADD", "precompiled", &netns[0]);
    c.env("WASM_CNI_LOG", "debug");
    let out = run_with_stdin(c, &imp.config);
    assert_eq!(out.code, 0, "{out:?}");
    timed(
        run.direct(imp, "DEL", "precompiled", &netns[0]),
        &imp.config,
    );
    println!(
        "after `wasm-cni compile`: the first ADD compiled {} module(s), loaded {} from the cache",
        out.stderr.matches("cache Compiled").count(),
        out.stderr.matches("cache Hit").count()
    );
}

/// `n` ADDs at once (each its own container), then `n` DELs: wall time,
/// every ADD answered with its own address, nothing left after the DELs.
fn at_once(run: &Runner, sb: &Sandbox, impls: &[Impl; 2], netns: &[Vec<PathBuf>], n: usize) {
    println!("\n{n} containers at once (direct), wall time, ms:");
    for (i, imp) in impls.iter().enumerate() {
        let wall = |op: &str| {
            let start = Instant::now();
            let outs: Vec<String> = std::thread::scope(|s| {
                let handles: Vec<_> = netns[i]
                    .iter()
                    .take(n)
                    .enumerate()
                    .map(|(k, ns)| {
                        let c = run.direct(imp, op, &format!("par-{k}"), ns);
                        s.spawn(move || {
                            let out = run_with_stdin(c, &imp.config);
                            assert_eq!(out.code, 0, "{} {op}: {out:?}", imp.label);
                            out.stdout
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            (ms(start.elapsed()), outs)
        };
        let (add, outs) = wall("ADD");
        let mut addrs: Vec<String> = outs
            .iter()
            .map(|o| {
                let j: serde_json::Value = serde_json::from_str(o).unwrap();
                j["ips"][0]["address"].as_str().unwrap().to_string()
            })
            .collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), n, "{}: distinct addresses", imp.label);
        let (del, _) = wall("DEL");
        assert!(sb.host_veths().is_empty(), "{}: veths left", imp.label);
        assert!(
            sb.ip_files(imp.network).is_empty(),
            "{}: reservations left",
            imp.label
        );
        println!(
            "{:<10} ADD {add:7.0}   DEL {del:7.0}   ({n} distinct addresses; nothing left)",
            imp.label
        );
    }
}

/// ADD and DEL with none and with `m` attachments already on the node
/// (same network, same bridge; both implementations' at once), the two
/// alternating call by call; beside the kernel's own growth: `ip` adding
/// a veth to the bridge and deleting it.
fn with_attached(
    run: &Runner,
    impls: &[Impl; 2],
    netns: &[Vec<PathBuf>],
    crowds: &[PathBuf],
    rounds: usize,
    m: usize,
) {
    let measure = |tag: &str| {
        let mut t = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
        let pairs = netns[0].iter().zip(&netns[1]).take(rounds).enumerate();
        for (n, (ours, theirs)) in pairs {
            let ns = [ours, theirs];
            let order = if n % 2 == 0 { [0, 1] } else { [1, 0] };
            let id = format!("{tag}-{n}");
            for i in order {
                let imp = &impls[i];
                t[i][0].push(timed(run.direct(imp, "ADD", &id, ns[i]), &imp.config));
            }
            for i in order {
                let imp = &impls[i];
                t[i][1].push(timed(run.direct(imp, "DEL", &id, ns[i]), &imp.config));
            }
        }
        t.map(|per_op| per_op.map(|v| median(v.into_iter().map(ms).collect())))
    };
    let kernel = |tag: &str| {
        let (mut add, mut del) = (Vec::new(), Vec::new());
        for n in 0..rounds {
            let name = format!("k{tag}{n}");
            let ip = |args: &[&str]| {
                let mut c = in_sandbox(Command::new("ip"), &run.host, run.sb.varlib.path());
                c.args(args);
                let start = Instant::now();
                let out = c.output().unwrap();
                assert!(out.status.success(), "ip {args:?}: {out:?}");
                start.elapsed()
            };
            let peer = format!("{name}p");
            add.push(
                ip(&["link", "add", &name, "type", "veth", "peer", "name", &peer])
                    + ip(&["link", "set", &name, "master", "wbr0", "up"]),
            );
            del.push(ip(&["link", "del", &name]));
        }
        [add, del].map(|v| median(v.into_iter().map(ms).collect()))
    };
    let none = measure("none");
    let k_none = kernel("n");
    // The crowd: one container with m attachments per implementation.
    let crowd = |op: &str| {
        for k in 0..m {
            for (i, imp) in impls.iter().enumerate() {
                let mut c = run.direct(imp, op, &format!("crowd-{k}"), &crowds[i]);
                c.env("CNI_IFNAME", format!("e{k}"));
                timed(c, &imp.config);
            }
        }
    };
    crowd("ADD");
    let full = measure("full");
    let k_full = kernel("f");
    crowd("DEL");
    println!(
        "\nwith {m} attachments on the node (same network and bridge), ms (median of {rounds}):"
    );
    for (i, imp) in impls.iter().enumerate() {
        println!(
            "{:<10} ADD {:6.1} -> {:6.1} ({:4.2}x)   DEL {:6.1} -> {:6.1} ({:4.2}x)",
            imp.label,
            none[i][0],
            full[i][0],
            full[i][0] / none[i][0],
            none[i][1],
            full[i][1],
            full[i][1] / none[i][1]
        );
    }
    println!(
        "{:<10} add {:6.1} -> {:6.1} ({:4.2}x)   del {:6.1} -> {:6.1} ({:4.2}x)   (`ip`: a veth onto the bridge, and its deletion)",
        "kernel",
        k_none[0],
        k_full[0],
        k_full[0] / k_none[0],
        k_none[1],
        k_full[1],
        k_full[1] / k_none[1]
    );
}

/// wasm-cni's ADD and DEL on native code and on the interpreter, the two
/// alternating call by call (which goes first alternates too); medians,
/// and the median of the interpreter/native ratio of each pair.
fn engines(run: &Runner, imp: &Impl, netns: &[PathBuf], rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let policy = |name: &str, engine: &str| {
        let p = dir.path().join(name);
        wasm_cni_tests::write_policy(&p, &serde_json::json!({"version": 1, "engine": engine}));
        p
    };
    let (native, interp) = (
        policy("native.json", "native"),
        policy("interp.json", "interpreter"),
    );
    // Warm the interpreter's artifacts too.
    timed(
        run.direct_with(imp, "ADD", "warm", &netns[0], &interp),
        &imp.config,
    );
    timed(
        run.direct_with(imp, "DEL", "warm", &netns[0], &interp),
        &imp.config,
    );
    let mut t: [[Vec<Duration>; 2]; 2] = Default::default();
    let ns = &netns[0];
    for n in 0..rounds {
        let order = if n % 2 == 0 { [0, 1] } else { [1, 0] };
        for e in order {
            let p = if e == 0 { &native } else { &interp };
            let id = format!("engine-{n}");
            t[e][0].push(timed(run.direct_with(imp, "ADD", &id, ns, p), &imp.config));
            t[e][1].push(timed(run.direct_with(imp, "DEL", &id, ns, p), &imp.config));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("\nwasm-cni engines, alternating call by call, {rounds} pairs, ms (median):");
    for (op, i) in [("ADD", 0), ("DEL", 1)] {
        let mut a: Vec<f64> = t[0][i].iter().copied().map(ms).collect();
        let mut b: Vec<f64> = t[1][i].iter().copied().map(ms).collect();
        let mut ratio: Vec<f64> = a.iter().zip(&b).map(|(a, b)| b / a).collect();
        println!(
            "{op}  native {:6.1}  interpreter {:6.1}  interpreter/native {:4.2}",
            median(&mut a),
            median(&mut b),
            median(&mut ratio)
        );
    }
}
