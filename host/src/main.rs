//! `wasm-cni`: install as `/opt/cni/bin/wasm-cni`, and link plugin names to
//! it (`/opt/cni/bin/bridge -> wasm-cni`) for configs that name `"type"`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::ExitCode;
use wasm_cni::invoke::{self, invoke};

const HELP: &str = "wasm-cni: a WebAssembly-pluggable CNI runtime

Container runtimes call it as a CNI plugin: CNI_COMMAND and the other CNI_*
variables in the environment, the network config on stdin, one JSON result
or error on stdout.

  /opt/cni/bin/wasm-cni          runs the module named by the config's \"plugin\"
  /opt/cni/bin/bridge -> wasm-cni runs the module named like the link

Commands (run by the node's root, not by runtimes):
  wasm-cni compile [MODULE...]   compile modules (names or .wasm paths; none:
                                 all in the module path) into the cache for
                                 both engines, so no call compiles
  CNI_COMMAND=ADD ... wasm-cni plan [--json] < config
                                 what that call would do on this node, run
                                 on a simulated copy of it: every capability
                                 call, the changes, the result; changes
                                 nothing
  wasm-cni inspect MODULE [--json]
                                 what a module is: role, contract, imports
                                 and what each reaches, exports, sha256,
                                 size, cached or not, its pin

Environment:
  WASM_CNI_MODULE_PATH  directories with <name>.wasm modules (default /opt/cni/wasm)
  WASM_CNI_CACHE_DIR    compiled-module cache (default /var/lib/wasm-cni/cache)
  WASM_CNI_LOG          error | warn | info | debug (default warn), to stderr
  WASM_CNI_LOG_FILE     also append the log to this file
  WASM_CNI_NFT          the nft binary (default /usr/sbin/nft)
  WASM_CNI_POLICY       the node policy file (default /etc/wasm-cni/policy.json)
  WASM_CNI_TIMEOUT      seconds one call may take (default 60)
  WASM_CNI_SECCOMP      log | off: let refused system calls through, logged
                        by the kernel, or install no filter (default enforce)
";

fn main() -> ExitCode {
    wasm_cni::log::start_clock();
    // A bug must still answer in CNI's terms: one JSON error, exit 1. A
    // panic is caught where it can still be undone (around the guest call,
    // see `runtime::contained`; on a helper thread or task, by whoever
    // waits for it); the hook only logs it. One that escapes everything is
    // caught around `invoke` below.
    std::panic::set_hook(Box::new(|info| {
        wasm_cni::log::error(&format!("internal error: {info}"));
    }));

    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_else(|| invoke::SELF_NAME.to_string());
    let vars: HashMap<String, String> = std::env::vars().collect();
    // `plan` takes a call's input: CNI_COMMAND is set.
    let rest: Vec<String> = std::env::args().skip(1).collect();
    if rest.first().map(String::as_str) == Some("plan") {
        let mut stdin = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut stdin);
        let (out, ok) = wasm_cni::plan::run(&vars, &rest[1..], &stdin);
        print!("{out}");
        return if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if let Some(flag) = args.next().filter(|_| !vars.contains_key("CNI_COMMAND")) {
        return match flag.as_str() {
            "--version" | "-V" => {
                println!(
                    "wasm-cni {} (CNI {})",
                    env!("CARGO_PKG_VERSION"),
                    wasm_cni::cni::version::SUPPORTED.join(", ")
                );
                ExitCode::SUCCESS
            }
            "compile" | "inspect" => {
                let rest: Vec<String> = args.collect();
                let (out, ok) = if flag == "compile" {
                    wasm_cni::runtime::precompile::run(&vars, &rest)
                } else {
                    wasm_cni::runtime::inspect::run(&vars, &rest)
                };
                print!("{out}");
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            _ => {
                print!("{HELP}");
                if flag == "--help" || flag == "-h" {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(2)
                }
            }
        };
    }

    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        let e = wasm_cni::cni::CniError::new(
            wasm_cni::cni::error::code::IO_FAILURE,
            format!("cannot read stdin: {e}"),
        );
        println!("{}", e.to_json(wasm_cni::cni::version::LATEST));
        return ExitCode::FAILURE;
    }
    let out = std::panic::catch_unwind(|| invoke(&argv0, &vars, &stdin)).unwrap_or_else(|_| {
        invoke::Output {
            stdout: wasm_cni::cni::CniError::host("wasm-cni internal error (see the log)")
                .to_json(wasm_cni::cni::version::LATEST),
            exit_code: 1,
        }
    });
    let mut stdout = std::io::stdout().lock();
    if !out.stdout.is_empty() {
        let _ = writeln!(stdout, "{}", out.stdout);
    }
    let _ = stdout.flush();
    if out.exit_code == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
