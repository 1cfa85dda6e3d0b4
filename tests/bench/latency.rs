//! ADD and DEL latency of wasm-cni beside the reference plugins
//! (/usr/lib/cni), on this machine, in the same run, warm caches. Root.
//!
//!   cargo bench -p wasm-cni-tests --bench latency     (BENCH_ROUNDS=25)
//!
//! Build first as tests/run.sh does. Each plugin call is timed from fork
//! to exit. The child enters the sandbox's host namespace and a private
//! /var/lib itself (no `ip netns exec` in the measurement). "direct" execs
//! the plugin as a runtime does; "cnitool" goes through libcni. Last, the
//! two engines of wasm-cni (native code, the Pulley interpreter) alternate
//! call by call, and the ratio is taken pair by pair.

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
        c.env("CNI_COMMAND", op)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &imp.cni_path)
            .env("WASM_CNI_MODULE_PATH", &install().wasm)
            .env("WASM_CNI_POLICY", policy);
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
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(25);
    let parallel = 30;
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
    // The two alternate call by call (which goes first alternates too),
    // so a noisy VM's drift hits both; the ratio is taken pair by pair.
    let mut ratios: Vec<(&str, f64, f64)> = Vec::new();
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
        let pairwise = |a: &[Duration], b: &[Duration]| {
            let mut r: Vec<f64> = a
                .iter()
                .zip(b)
                .map(|(x, y)| x.as_secs_f64() / y.as_secs_f64())
                .collect();
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        };
        ratios.push((
            mode,
            pairwise(&adds[0], &adds[1]),
            pairwise(&dels[0], &dels[1]),
        ));
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

    println!("\n{parallel} containers at once (direct), wall time, ms:");
    for (i, imp) in impls.iter().enumerate() {
        let wall = |op: &str| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for (n, ns) in netns[i].iter().enumerate().take(parallel) {
                    let c = run.direct(imp, op, &format!("par-{n}"), ns);
                    s.spawn(move || timed(c, &imp.config));
                }
            });
            ms(start.elapsed())
        };
        let add = wall("ADD");
        let del = wall("DEL");
        println!("{:<10} ADD {add:7.0}   DEL {del:7.0}", imp.label);
    }

    engines(&run, &impls[0], &netns[0], rounds);
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
