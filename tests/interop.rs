//! The same flows driven by the real libcni (`cnitool`, what containerd,
//! CRI-O and podman embed), with wasm-cni installed as `bridge` and
//! `host-local` links, and chained before a reference Go plugin.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use wasm_cni_tests::sandbox::run_with_stdin;
use wasm_cni_tests::{
    CLASSIC, CniOutput, Sandbox, cnitool, install, reference_plugins, root_or_skip,
};

struct Libcni {
    tool: PathBuf,
    conf_dir: tempfile::TempDir,
    cni_path: String,
}

impl Libcni {
    fn new(configs: &[(&str, &str)]) -> Option<Libcni> {
        let (Some(tool), Some(reference)) = (cnitool(), reference_plugins()) else {
            eprintln!(
                "SKIPPED: cnitool or /usr/lib/cni missing (tests/run.sh builds them with tests/interop/build-cnitool.sh)"
            );
            return None;
        };
        let conf_dir = tempfile::tempdir().unwrap();
        for (file, body) in configs {
            std::fs::write(conf_dir.path().join(file), body).unwrap();
        }
        // Our links first, so `bridge` and `host-local` are wasm-cni.
        let cni_path = format!("{}:{}", install().bin.display(), reference.display());
        Some(Libcni {
            tool,
            conf_dir,
            cni_path,
        })
    }

    fn run(&self, sb: &Sandbox, op: &str, net: &str, netns: &Path) -> CniOutput {
        let mut c = sb.command(&[
            self.tool.to_str().unwrap(),
            op,
            net,
            netns.to_str().unwrap(),
        ]);
        c.env("NETCONFPATH", self.conf_dir.path())
            .env("CNI_PATH", &self.cni_path)
            .env("WASM_CNI_MODULE_PATH", &install().wasm)
            .env("WASM_CNI_POLICY", &install().policy);
        run_with_stdin(c, "")
    }
}

#[track_caller]
fn ok(out: CniOutput) -> CniOutput {
    assert_eq!(out.code, 0, "cnitool failed: {out:?}");
    out
}

#[test]
fn cnitool_runs_the_classic_config_unchanged() {
    if !root_or_skip("cnitool_runs_the_classic_config_unchanged") {
        return;
    }
    let Some(lib) = Libcni::new(&[("10-mynet.conf", CLASSIC)]) else {
        return;
    };
    let mut sb = Sandbox::new("cnitool");
    let c1 = sb.container("c1");
    let c2 = sb.container("c2");
    let r1: Value = serde_json::from_str(&ok(lib.run(&sb, "add", "mynet", &c1)).stdout).unwrap();
    ok(lib.run(&sb, "add", "mynet", &c2));
    assert_eq!(r1["cniVersion"], "0.3.1");
    assert_eq!(r1["ips"][0]["address"], "10.244.0.2/16");
    assert!(sb.ping("c1", "10.244.0.3") && sb.ping("c2", "10.244.0.1"));
    // libcni names the container after the netns path.
    let files = sb.ip_files("mynet");
    assert_eq!(files.len(), 2);
    let owner = std::fs::read_to_string(sb.state_dir("mynet").join("10.244.0.2")).unwrap();
    assert!(
        owner.starts_with("cnitool-") && owner.ends_with("\r\neth0"),
        "{owner:?}"
    );
    // libcni cached the result where runtimes keep it.
    assert!(
        sb.varlib
            .path()
            .join("cni/results")
            .read_dir()
            .unwrap()
            .count()
            >= 2
    );

    ok(lib.run(&sb, "del", "mynet", &c1));
    ok(lib.run(&sb, "del", "mynet", &c2));
    ok(lib.run(&sb, "del", "mynet", &c2));
    assert!(sb.ip_files("mynet").is_empty());
    assert!(sb.host_veths().is_empty());
    assert_eq!(sb.masquerade_rules(), 0);
}

#[test]
fn a_reference_plugin_chained_after_wasm_bridge_gets_its_prev_result() {
    if !root_or_skip("a_reference_plugin_chained_after_wasm_bridge") {
        return;
    }
    let list = json!({
        "cniVersion": "1.0.0", "name": "chain",
        "plugins": [
            {"type": "bridge", "bridge": "chainbr", "isGateway": true, "ipMasq": true,
             "ipam": {"type": "host-local", "subnet": "10.33.0.0/24", "routes": [{"dst": "0.0.0.0/0"}]}},
            // Its state in the sandbox's private /var/lib, not /run/cni/tuning.
            {"type": "tuning", "mtu": 1280, "sysctl": {"net.ipv4.conf.eth0.rp_filter": "2"},
             "dataDir": "/var/lib/cni-tuning"}
        ]
    });
    let Some(lib) = Libcni::new(&[("10-chain.conflist", &list.to_string())]) else {
        return;
    };
    let mut sb = Sandbox::new("chain");
    let c1 = sb.container("c1");
    let r: Value = serde_json::from_str(&ok(lib.run(&sb, "add", "chain", &c1)).stdout).unwrap();
    // tuning (Go) read our result: it found eth0 through prevResult and
    // returned our interfaces and addresses as its own result.
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(r["interfaces"][0]["name"], "chainbr");
    assert_eq!(r["ips"][0]["address"], "10.33.0.2/24");
    assert_eq!(sb.sysctl("c1", "net.ipv4.conf.eth0.rp_filter"), "2");
    assert_eq!(sb.link("c1", "eth0").unwrap()["mtu"], 1280);
    assert!(sb.ping("c1", "10.33.0.1"));

    // CHECK runs both plugins with the cached result as prevResult.
    ok(lib.run(&sb, "check", "chain", &c1));
    ok(lib.run(&sb, "del", "chain", &c1));
    assert!(sb.link("c1", "eth0").is_none());
    assert!(sb.ip_files("chain").is_empty());
    assert_eq!(sb.masquerade_rules(), 0);
}

#[test]
fn the_example_loopback_plugin_works_as_containerd_runs_it() {
    if !root_or_skip("the_example_loopback_plugin") {
        return;
    }
    // Debian's libcni 1.1.2 decodes results up to 1.0.0.
    let lo = json!({"cniVersion": "1.0.0", "name": "cni-loopback", "type": "loopback"}).to_string();
    let Some(lib) = Libcni::new(&[("99-loopback.conf", &lo)]) else {
        return;
    };
    let mut sb = Sandbox::new("loopback");
    let c1 = sb.container("c1");
    let r: Value =
        serde_json::from_str(&ok(lib.run(&sb, "add", "cni-loopback", &c1)).stdout).unwrap();
    assert_eq!(r["interfaces"][0]["name"], "lo");
    assert_eq!(r["ips"][0]["address"], "127.0.0.1/8");
    assert!(
        sb.link("c1", "lo").unwrap()["flags"]
            .as_array()
            .unwrap()
            .contains(&json!("UP"))
    );
    assert!(sb.ping("c1", "127.0.0.1"));
    ok(lib.run(&sb, "check", "cni-loopback", &c1));
    ok(lib.run(&sb, "del", "cni-loopback", &c1));
    assert!(
        !sb.link("c1", "lo").unwrap()["flags"]
            .as_array()
            .unwrap()
            .contains(&json!("UP"))
    );
}
