//! The same flows driven by the real libcni (`cnitool`, what containerd,
//! CRI-O and podman embed), with wasm-cni installed as `bridge` and
//! `host-local` links, and chained before a reference Go plugin.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use wasm_cni_tests::sandbox::run_with_stdin;
use wasm_cni_tests::traffic::{TcpServer, tcp_line, udp_receive, udp_send, udp_socket};
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

    /// The same, but these plugins are the reference's (a directory of
    /// links put first in `CNI_PATH`).
    fn with_reference(mut self, plugins: &[&str], links: &tempfile::TempDir) -> Libcni {
        let reference = reference_plugins().expect("checked by new");
        for p in plugins {
            std::os::unix::fs::symlink(reference.join(p), links.path().join(p)).unwrap();
        }
        self.cni_path = format!("{}:{}", links.path().display(), self.cni_path);
        self
    }

    fn run(&self, sb: &Sandbox, op: &str, net: &str, netns: &Path) -> CniOutput {
        self.run_with_capabilities(sb, op, net, netns, "")
    }

    /// With the runtime's capability arguments (`CAP_ARGS`, as cnitool
    /// takes them: `{"portMappings": [...]}`).
    fn run_with_capabilities(
        &self,
        sb: &Sandbox,
        op: &str,
        net: &str,
        netns: &Path,
        capabilities: &str,
    ) -> CniOutput {
        let mut c = sb.command(&[
            self.tool.to_str().unwrap(),
            op,
            net,
            netns.to_str().unwrap(),
        ]);
        c.env("NETCONFPATH", self.conf_dir.path())
            .env("CNI_PATH", &self.cni_path)
            .env("WASM_CNI_MODULE_PATH", &install().wasm)
            .env("WASM_CNI_POLICY", &install().policy)
            .env("CAP_ARGS", capabilities);
        run_with_stdin(c, "")
    }
}

/// A result with what differs by design between two networks masked:
/// names and MACs of node links, addresses, sandbox paths (and the
/// container's MAC when `container_mac`: random unless a plugin sets it).
fn shape(r: &Value, container_mac: bool) -> Value {
    let mut r = r.clone();
    for i in r["interfaces"].as_array_mut().unwrap() {
        if i["name"] != "eth0" {
            i["name"] = json!("*");
            i["mac"] = json!("*");
        }
        if container_mac {
            i["mac"] = json!("*");
        }
        if i.get("sandbox").is_some() {
            i["sandbox"] = json!("*");
        }
    }
    for ip in r["ips"].as_array_mut().unwrap() {
        ip["address"] = json!("*");
        ip["gateway"] = json!("*");
    }
    r
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
    // The reference's tuning (Go), not wasm-cni's.
    let links = tempfile::tempdir().unwrap();
    let lib = lib.with_reference(&["tuning"], &links);
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

/// A chain `bridge` (wasm) -> `tuning`, once with the reference's tuning and
/// once with wasm-cni's, through libcni: the same result and the same
/// interface.
#[test]
fn wasm_tuning_is_a_drop_in_for_the_reference() {
    if !root_or_skip("wasm_tuning_is_a_drop_in_for_the_reference") {
        return;
    }
    let list = |name: &str, br: &str, subnet: &str| {
        json!({
            "cniVersion": "1.0.0", "name": name,
            "plugins": [
                {"type": "bridge", "bridge": br, "isGateway": true,
                 "ipam": {"type": "host-local", "subnet": subnet}},
                {"type": "tuning", "mtu": 1400, "mac": "0a:58:0a:22:00:09", "promisc": true,
                 "allmulti": true, "txQLen": 2000,
                 "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"},
                 "dataDir": "/var/lib/cni-tuning"}
            ]
        })
        .to_string()
    };
    let Some(ours) = Libcni::new(&[("10-ours.conflist", &list("ours", "oursbr", "10.34.0.0/24"))])
    else {
        return;
    };
    let links = tempfile::tempdir().unwrap();
    let theirs = Libcni::new(&[("10-ref.conflist", &list("ref", "refbr", "10.35.0.0/24"))])
        .unwrap()
        .with_reference(&["tuning"], &links);
    let mut sb = Sandbox::new("tuningdropin");
    let (c1, c2) = (sb.container("c1"), sb.container("c2"));
    let a: Value = serde_json::from_str(&ok(ours.run(&sb, "add", "ours", &c1)).stdout).unwrap();
    let b: Value = serde_json::from_str(&ok(theirs.run(&sb, "add", "ref", &c2)).stdout).unwrap();
    // The same result, but for what differs by design (names, addresses,
    // the host veth's random MAC, the sandbox path).
    assert_eq!(shape(&a, false), shape(&b, false));
    assert_eq!(a["interfaces"][2]["mac"], "0a:58:0a:22:00:09");
    let settings = |ns: &str| {
        let l = sb.link(ns, "eth0").unwrap();
        let mut flags: Vec<String> = serde_json::from_value(l["flags"].clone()).unwrap();
        flags.sort();
        (
            l["address"].clone(),
            l["mtu"].clone(),
            flags,
            sb.sysctl(ns, "net.ipv4.conf.eth0.arp_notify"),
        )
    };
    assert_eq!(settings("c1"), settings("c2"));
    // `txQLen` came to the reference after Debian's 1.1.1 (it is in the
    // v1.7.1 this follows): only ours sets it here.
    assert_eq!(sb.link("c1", "eth0").unwrap()["txqlen"], 2000);
    ok(ours.run(&sb, "check", "ours", &c1));
    ok(theirs.run(&sb, "check", "ref", &c2));
    ok(ours.run(&sb, "del", "ours", &c1));
    ok(theirs.run(&sb, "del", "ref", &c2));
    assert!(sb.link("c1", "eth0").is_none() && sb.link("c2", "eth0").is_none());
    assert!(
        std::fs::read_dir(sb.state_root().join("wasm-cni/attachments/ours"))
            .map(|d| d.count() == 0)
            .unwrap_or(true)
    );
}

/// `static` (wasm) and the reference's, called the same way: the same
/// result, for the config's addresses, routes and DNS and for `CNI_ARGS`.
#[test]
fn wasm_static_gives_the_references_results() {
    if !root_or_skip("wasm_static_gives_the_references_results") {
        return;
    }
    let Some(reference) = reference_plugins() else {
        return;
    };
    // In a sandbox: the host makes the network's store directory (and
    // its cache) as for any IPAM call, in the sandbox's private /var/lib.
    let sb = Sandbox::new("staticcmp");
    let call = |bin: &Path, conf: &str, args: &str| {
        let mut c = sb.command(&[bin.to_str().unwrap()]);
        c.env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", "static-cmp")
            .env("CNI_NETNS", "/var/run/netns/static-cmp")
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", reference)
            .env("CNI_ARGS", args)
            .env("WASM_CNI_MODULE_PATH", &install().wasm)
            .env("WASM_CNI_POLICY", &install().policy);
        let out = run_with_stdin(c, conf);
        assert_eq!(out.code, 0, "{}: {out:?}", bin.display());
        serde_json::from_str::<Value>(&out.stdout).unwrap()
    };
    for version in ["0.3.1", "0.4.0", "1.0.0"] {
        let conf = json!({"cniVersion": version, "name": "st", "type": "static",
            "ipam": {"type": "static",
                "addresses": [{"address": "10.50.0.5/24", "gateway": "10.50.0.1"},
                              {"address": "fd00:50::5/64"}],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.60.0.0/16", "gw": "10.50.0.254"}],
                "dns": {"nameservers": ["10.50.0.53"], "domain": "example.test",
                        "search": ["example.test"], "options": ["ndots:2"]}}})
        .to_string();
        for args in ["", "IP=10.70.0.9/24,fd00:70::9/64;GATEWAY=10.70.0.1"] {
            let ours = call(&install().bin.join("static"), &conf, args);
            let theirs = call(&reference.join("static"), &conf, args);
            assert_eq!(ours, theirs, "cniVersion {version}, CNI_ARGS {args:?}");
        }
    }
}

/// The conflist nearly every network uses, `bridge` -> `portmap` ->
/// `tuning`, through libcni with the `portMappings` capability: a host
/// port reaches a server in the container from the node and from another
/// pod (hairpin); a UDP flow that began before the mapping is cleared
/// from conntrack, so it reaches the container too; the result is the
/// reference portmap's; DEL leaves no rule of the attachment.
#[test]
fn portmap_forwards_host_ports_through_libcni() {
    if !root_or_skip("portmap_forwards_host_ports_through_libcni") {
        return;
    }
    let list = |name: &str, br: &str, subnet: &str| {
        json!({
            "cniVersion": "1.0.0", "name": name,
            "plugins": [
                {"type": "bridge", "bridge": br, "isGateway": true, "ipMasq": true,
                 "ipam": {"type": "host-local", "subnet": subnet}},
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
                {"type": "tuning", "mtu": 1400}
            ]
        })
        .to_string()
    };
    let Some(ours) = Libcni::new(&[("10-ours.conflist", &list("pmours", "pmbr0", "10.36.0.0/24"))])
    else {
        return;
    };
    let links = tempfile::tempdir().unwrap();
    let theirs = Libcni::new(&[("10-ref.conflist", &list("pmref", "pmbr1", "10.37.0.0/24"))])
        .unwrap()
        .with_reference(&["portmap"], &links);
    let mut sb = Sandbox::new("portmap");
    let (c1, c2, c3) = (sb.container("c1"), sb.container("c2"), sb.container("c3"));
    let node = sb.ns_path("host");
    let ports = |host: u16| {
        json!({"portMappings": [
            {"hostPort": host, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": host + 1, "containerPort": 53, "protocol": "udp"}
        ]})
        .to_string()
    };
    // A pod without host ports first (portmap passes its result on).
    ok(ours.run_with_capabilities(&sb, "add", "pmours", &c2, "{}"));
    // A UDP flow to the host port before it is mapped: conntrack keeps
    // it, unforwarded (nothing listens on the node).
    let gateway: std::net::IpAddr = "10.36.0.1".parse().unwrap();
    let client = udp_socket(&node, 41000);
    udp_send(&client, (gateway, 18081).into(), "early");
    let _web = TcpServer::start(&c1, 80, "hello");
    let dns = udp_socket(&c1, 53);

    let out = ok(ours.run_with_capabilities(&sb, "add", "pmours", &c1, &ports(18080)));
    let a: Value = serde_json::from_str(&out.stdout).unwrap();
    let c1_ip = a["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        tcp_line(&node, (gateway, 18080).into()).as_deref(),
        Some("hello from 10.36.0.1"),
        "from the node, as the node's connection reaches the pod"
    );
    let from_c2 = tcp_line(&c2, (gateway, 18080).into());
    assert_eq!(
        from_c2.as_deref(),
        Some("hello from 10.36.0.1"),
        "hairpin from another pod: masqueraded, so the answer comes back through the node"
    );
    udp_send(&client, (gateway, 18081).into(), "late");
    assert_eq!(
        udp_receive(&dns).as_deref(),
        Some("late"),
        "the flow that began before the mapping reaches the pod (its stale entry was cleared)"
    );
    ok(ours.run_with_capabilities(&sb, "check", "pmours", &c1, &ports(18080)));

    // The reference's portmap, the same way: the same result.
    let b: Value = serde_json::from_str(
        &ok(theirs.run_with_capabilities(&sb, "add", "pmref", &c3, &ports(18090))).stdout,
    )
    .unwrap();
    assert_eq!(shape(&a, true), shape(&b, true));
    ok(theirs.run_with_capabilities(&sb, "del", "pmref", &c3, &ports(18090)));

    // DEL: no rule, chain or map element of the attachment is left; the
    // other pod's masquerade is.
    ok(ours.run_with_capabilities(&sb, "del", "pmours", &c1, &ports(18080)));
    let table = || {
        let out = sb.run_in("host", &["nft", "list", "table", "inet", "wasm-cni"]);
        String::from_utf8(out.stdout).unwrap()
    };
    let rules = table();
    assert!(!rules.contains(&c1_ip) && !rules.contains("pm-"), "{rules}");
    assert!(
        !rules.contains("18080") && !rules.contains("18081"),
        "{rules}"
    );
    assert!(tcp_line(&node, (gateway, 18080).into()).is_none());
    assert_eq!(rules.matches("comment").count(), 1, "{rules}");
    ok(ours.run_with_capabilities(&sb, "del", "pmours", &c2, "{}"));
    assert_eq!(table().matches("comment").count(), 0, "{}", table());
}
