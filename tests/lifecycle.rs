//! CNI 1.1's network-wide commands, by raw exec as the spec defines them
//! (no libcni here sends them: Debian's is 1.1.2): STATUS and GC, every
//! version branch, and what GC removes and keeps, compared before and after.

use serde_json::{Value, json};
use std::path::Path;
use wasm_cni_tests::{CniOutput, Sandbox};

/// A bridge network with host-local IPAM and masquerade.
fn config(version: &str, network: &str, bridge: &str, subnet: &str) -> Value {
    json!({"cniVersion": version, "name": network, "type": "bridge", "bridge": bridge,
        "isGateway": true, "ipMasq": true,
        "ipam": {"type": "host-local", "subnet": subnet}})
}

/// STATUS or GC as a runtime sends them: no container, netns or ifname.
fn network_call(sb: &Sandbox, plugin: &str, command: &str, cfg: &Value) -> CniOutput {
    sb.cni(plugin, command, "", None, "", &cfg.to_string())
}

fn add(sb: &mut Sandbox, id: &str, cfg: &Value) {
    let ns = sb.container(id);
    sb.cni("bridge", "ADD", id, Some(&ns), "eth0", &cfg.to_string())
        .ok();
}

/// The masquerade rules of the host namespace, by their comment.
fn rule_comments(sb: &Sandbox) -> Vec<String> {
    let mut c: Vec<String> = sb
        .nft()
        .lines()
        .filter(|l| l.contains(" masquerade"))
        .filter_map(|l| l.split("comment \"").nth(1))
        .map(|c| c.trim_end_matches('"').to_string())
        .collect();
    c.sort();
    c
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// What host-local's attachment index holds (`attachment.<hash>`: id,
/// ifname, addresses), sorted.
fn index_entries(dir: &Path) -> Vec<String> {
    let mut held: Vec<String> = files(dir)
        .iter()
        .filter(|f| f.starts_with("attachment."))
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
        .collect();
    held.sort();
    held
}

/// The store's files but the index's entries.
fn store_files(dir: &Path) -> Vec<String> {
    let mut names = files(dir);
    names.retain(|f| !f.starts_with("attachment."));
    names
}

#[test]
fn status_and_gc_exist_from_1_1_0_and_need_no_container() {
    let Some(sb) = Sandbox::for_test("status_and_gc_versions") else {
        return;
    };
    // Every version before 1.1.0, and none at all (0.1.0).
    for version in ["", "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
        let cfg = config(version, "v", "vbr", "10.71.0.0/24");
        for command in ["STATUS", "GC"] {
            let e = network_call(&sb, "bridge", command, &cfg).err(1);
            assert!(
                e["msg"].as_str().unwrap().contains("1.1.0"),
                "{command} {version}: {e}"
            );
        }
    }
    let cfg = config("1.1.0", "v", "vbr", "10.71.0.0/24");
    for command in ["STATUS", "GC"] {
        let out = network_call(&sb, "bridge", command, &cfg);
        out.ok();
        assert_eq!(out.stdout, "", "{command} prints nothing on success");
    }
    assert!(sb.host_veths().is_empty());
    assert!(sb.link("host", "vbr").is_none(), "neither creates anything");
}

#[test]
fn status_is_50_only_when_every_range_set_is_full() {
    let Some(mut sb) = Sandbox::for_test("status_full_ranges") else {
        return;
    };
    // A /30 hands out one address (.2): .1 is the gateway.
    let tiny = config("1.1.0", "tiny", "tinybr", "10.72.0.0/30");
    // An interface plugin that does not ask its IPAM (the SDK's default
    // STATUS, as `misbehave` has): the runtime asks it.
    let mut lazy = tiny.clone();
    lazy["type"] = json!("misbehave");
    network_call(&sb, "bridge", "STATUS", &tiny).ok();
    network_call(&sb, "misbehave", "STATUS", &lazy).ok();
    // An L2-only network (`"ipam": {}`) has no IPAM to ask.
    for plugin in ["bridge", "misbehave"] {
        let mut l2 = if plugin == "bridge" {
            tiny.clone()
        } else {
            lazy.clone()
        };
        l2["ipam"] = json!({});
        network_call(&sb, plugin, "STATUS", &l2).ok();
    }
    add(&mut sb, "c1", &tiny);
    let e = network_call(&sb, "bridge", "STATUS", &tiny).err(50);
    assert!(
        e["msg"].as_str().unwrap().contains("10.72.0.1-10.72.0.2"),
        "{e}"
    );
    let e = network_call(&sb, "misbehave", "STATUS", &lazy).err(50);
    assert!(
        e["msg"].as_str().unwrap().contains("10.72.0.1-10.72.0.2"),
        "{e}"
    );
    // With a second range set that still has room: ready.
    let mut two = tiny.clone();
    two["ipam"] = json!({"type": "host-local", "ranges": [
        [{"subnet": "10.72.0.0/30"}], [{"subnet": "fd72::/64"}]]});
    network_call(&sb, "bridge", "STATUS", &two).ok();
    // The host-local link, called the way a reference bridge (1.6+) passes
    // STATUS on to its IPAM: the whole config, no container.
    network_call(&sb, "host-local", "STATUS", &tiny).err(50);
    network_call(&sb, "host-local", "STATUS", &two).ok();
    let c1 = sb.ns_path("c1");
    sb.cni("bridge", "DEL", "c1", Some(&c1), "eth0", &tiny.to_string())
        .ok();
    network_call(&sb, "bridge", "STATUS", &tiny).ok();
    network_call(&sb, "host-local", "STATUS", &tiny).ok();
}

#[test]
fn status_of_a_module_that_is_missing_or_unusable_is_50() {
    let Some(sb) = Sandbox::for_test("status_missing_module") else {
        return;
    };
    let mut cfg = config("1.1.0", "m", "mbr", "10.73.0.0/24");
    cfg["plugin"] = json!("no-such-module");
    let e = network_call(&sb, "wasm-cni", "STATUS", &cfg).err(50);
    assert!(e["msg"].as_str().unwrap().contains("no-such-module"), "{e}");
    // An IPAM module the interface plugin cannot use (an interface plugin
    // named as IPAM): not available either.
    let mut cfg = config("1.1.0", "m", "mbr", "10.73.0.0/24");
    cfg["ipam"]["type"] = json!("misbehave");
    let e = network_call(&sb, "bridge", "STATUS", &cfg).err(50);
    assert!(e["msg"].as_str().unwrap().contains("misbehave"), "{e}");
}

#[test]
fn gc_removes_exactly_the_stale_attachments_rules_and_reservations() {
    let Some(mut sb) = Sandbox::for_test("gc_stale_attachments") else {
        return;
    };
    let a = config("1.1.0", "gca", "gcabr", "10.74.0.0/24");
    let b = config("1.1.0", "gcb", "gcbbr", "10.75.0.0/24");
    add(&mut sb, "live", &a);
    add(&mut sb, "stale", &a);
    add(&mut sb, "other", &b);
    // Files from before ifnames were recorded: the id alone.
    let dir = sb.state_dir("gca");
    std::fs::write(dir.join("10.74.0.50"), "live").unwrap();
    std::fs::write(dir.join("10.74.0.51"), "gone").unwrap();
    // What a call killed between writing a reservation and renaming it
    // into place leaves (an hour ago), and one a live call is writing.
    std::fs::write(dir.join(".wasm-cni-1"), "killed\r\neth0").unwrap();
    std::fs::File::options()
        .write(true)
        .open(dir.join(".wasm-cni-1"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
    std::fs::write(dir.join(".wasm-cni-2"), "live\r\neth1").unwrap();
    let before_b = (files(&sb.state_dir("gcb")), rule_comments(&sb));
    assert_eq!(rule_comments(&sb).len(), 3);

    let mut gc = a.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "live", "ifname": "eth0"}]);
    let out = network_call(&sb, "bridge", "GC", &gc);
    out.ok();
    assert_eq!(out.stdout, "");
    assert_eq!(
        store_files(&dir),
        [
            ".wasm-cni-2",
            "10.74.0.2",
            "10.74.0.50",
            "attachment-index",
            "last_reserved_ip.0",
            "lock"
        ],
        "the stale and the legacy-gone reservations and the old temporary went; lock, cursor, the index's marker and a fresh temporary stay"
    );
    std::fs::remove_file(dir.join(".wasm-cni-2")).unwrap();
    assert_eq!(
        index_entries(&dir),
        ["wasm-cni\n10.74.0.2"],
        "the stale attachment's index entry went"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("10.74.0.2")).unwrap(),
        "live\r\neth0"
    );
    let rules = rule_comments(&sb);
    assert_eq!(
        rules,
        ["wasm-cni gca live eth0", "wasm-cni gcb other eth0"],
        "only network gca's stale rule went"
    );
    // The live pod still works.
    assert!(sb.ping("live", "10.74.0.1"));

    // The older key, and then no list at all: nothing is valid.
    let mut gc = a.clone();
    gc["cni.dev/attachments"] = json!([{"containerID": "live", "ifname": "eth0"}]);
    network_call(&sb, "bridge", "GC", &gc).ok();
    assert!(files(&dir).contains(&"10.74.0.2".to_string()));
    network_call(&sb, "bridge", "GC", &a).ok();
    assert_eq!(
        files(&dir),
        ["attachment-index", "last_reserved_ip.0", "lock"]
    );
    assert_eq!(rule_comments(&sb), ["wasm-cni gcb other eth0"]);
    // Network gcb never changed.
    assert_eq!(files(&sb.state_dir("gcb")), before_b.0);
    assert!(before_b.1.contains(&"wasm-cni gcb other eth0".to_string()));
    // Nor did any link: GC removes rules and reservations only.
    assert_eq!(sb.host_veths().len(), 3);
}

#[test]
fn a_malformed_valid_attachments_list_is_code_7_and_changes_nothing() {
    let Some(mut sb) = Sandbox::for_test("gc_malformed_list") else {
        return;
    };
    let a = config("1.1.0", "gcm", "gcmbr", "10.76.0.0/24");
    add(&mut sb, "c1", &a);
    let before = (files(&sb.state_dir("gcm")), rule_comments(&sb));
    for bad in [
        json!("c1"),
        json!([{"containerID": "c1"}]),
        json!([{"containerID": 5, "ifname": "eth0"}]),
    ] {
        let mut gc = a.clone();
        gc["cni.dev/valid-attachments"] = bad.clone();
        let e = network_call(&sb, "bridge", "GC", &gc).err(7);
        assert!(
            e["msg"]
                .as_str()
                .unwrap()
                .contains("cni.dev/valid-attachments"),
            "{bad}: {e}"
        );
    }
    assert_eq!((files(&sb.state_dir("gcm")), rule_comments(&sb)), before);
}

#[test]
fn a_module_built_against_0_1_0_keeps_working_and_is_answered_for() {
    let Some(mut sb) = Sandbox::for_test("contract_0_1_0") else {
        return;
    };
    let cfg = json!({"cniVersion": "1.1.0", "name": "old", "type": "bridge", "bridge": "oldbr",
        "isGateway": true, "ipam": {"type": "contract-0-1-0", "address": "10.77.0.5/24"}});
    let c1 = sb.container("c1");
    let r = sb
        .cni("bridge", "ADD", "c1", Some(&c1), "eth0", &cfg.to_string())
        .ok()
        .json();
    assert_eq!(r["ips"][0]["address"], "10.77.0.5/24");
    assert!(sb.ping("c1", "10.77.0.1"));
    assert_eq!(sb.ip_files("old"), ["10.77.0.5"]);
    // 0.1.0 has no STATUS or GC: the host answers ready, nothing to collect.
    network_call(&sb, "bridge", "STATUS", &cfg).ok();
    network_call(&sb, "contract-0-1-0", "STATUS", &cfg).ok();
    network_call(&sb, "bridge", "GC", &cfg).ok();
    assert_eq!(
        sb.ip_files("old"),
        ["10.77.0.5"],
        "its reservation is its own"
    );
    sb.cni("bridge", "DEL", "c1", Some(&c1), "eth0", &cfg.to_string())
        .ok();
    assert!(sb.ip_files("old").is_empty());
    assert!(sb.host_veths().is_empty());
}

/// A native IPAM plugin that speaks 1.1.0: it says so in VERSION, writes a
/// line to stderr, and answers STATUS with `status` (an error document or
/// nothing).
fn fake_native_ipam(dir: &Path, status: &str) {
    use std::os::unix::fs::PermissionsExt;
    let script = format!(
        r#"#!/bin/sh
cat >/dev/null
echo "fake-ipam: $CNI_COMMAND" >&2
case "$CNI_COMMAND" in
VERSION) echo '{{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}}' ;;
STATUS) if [ -n '{status}' ]; then echo '{status}'; exit 1; fi ;;
GC) ;;
*) echo '{{"code":4,"msg":"unexpected"}}'; exit 1 ;;
esac
"#
    );
    let path = dir.join("fake-ipam");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn status_and_gc_pass_on_to_a_native_ipam_that_speaks_1_1_and_its_stderr_reaches_ours() {
    let Some(mut sb) = Sandbox::for_test("status_native_ipam") else {
        return;
    };
    sb.use_policy(json!({"version": 1, "ipamPlugins": ["fake-ipam", "static"],
        "landlock": {"execute": ["/usr/bin", "/bin"]}}));
    let dir = tempfile::tempdir().unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        wasm_cni_tests::install().bin.display()
    );
    let cfg = json!({"cniVersion": "1.1.0", "name": "nat", "type": "bridge", "bridge": "natbr",
        "ipam": {"type": "fake-ipam"}})
    .to_string();
    let call = |command: &str| {
        sb.cni_env(
            "bridge",
            command,
            "",
            None,
            "",
            &cfg,
            &[("CNI_PATH", &path)],
        )
    };
    fake_native_ipam(dir.path(), "");
    let out = call("STATUS");
    out.ok();
    assert!(out.stderr.contains("fake-ipam: STATUS"), "{}", out.stderr);
    let out = call("GC");
    out.ok();
    assert!(out.stderr.contains("fake-ipam: GC"), "{}", out.stderr);
    fake_native_ipam(
        dir.path(),
        r#"{"cniVersion":"1.1.0","code":50,"msg":"pool drained"}"#,
    );
    let e = call("STATUS").err(50);
    assert_eq!(e["msg"], "pool drained");
}

#[test]
fn status_counts_a_native_ipam_older_than_1_1_as_ready() {
    let Some(path) = wasm_cni_tests::cni_path_with_reference("status_old_native_ipam") else {
        return;
    };
    let Some(sb) = Sandbox::for_test("status_old_native_ipam") else {
        return;
    };
    // Debian's reference `static` (1.1.1) lists no 1.1.0: never sent STATUS.
    let cfg = json!({"cniVersion": "1.1.0", "name": "old", "type": "bridge", "bridge": "obr",
        "ipam": {"type": "static", "addresses": [{"address": "10.78.0.9/24"}]}})
    .to_string();
    for command in ["STATUS", "GC"] {
        sb.cni_env(
            "bridge",
            command,
            "",
            None,
            "",
            &cfg,
            &[("CNI_PATH", &path)],
        )
        .ok();
    }
}

/// GC runs both halves (the bridge's stale rules, then IPAM) even when the
/// first fails, and reports their errors together.
#[test]
fn gc_reports_the_errors_of_rules_and_ipam_together() {
    use std::os::unix::fs::PermissionsExt;
    let Some(mut sb) = Sandbox::for_test("gc_errors_together") else {
        return;
    };
    sb.use_policy(json!({"version": 1, "ipamPlugins": ["fake-ipam"],
        "landlock": {"execute": ["/usr/bin", "/bin"], "readWrite": ["/tmp"]}}));
    let dir = tempfile::tempdir().unwrap();
    let asked = dir.path().join("asked");
    let script = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    script(
        "fake-ipam",
        format!(
            r#"#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
VERSION) echo '{{"cniVersion":"1.1.0","supportedVersions":["1.1.0"]}}' ;;
GC) echo gc > {}; echo '{{"cniVersion":"1.1.0","code":11,"msg":"ipam store unreadable"}}'; exit 1 ;;
*) echo '{{"code":4,"msg":"unexpected"}}'; exit 1 ;;
esac
"#,
            asked.display()
        ),
    );
    // An nft that cannot list: removing stale rules fails first.
    let nft = script(
        "nft",
        "#!/bin/sh\necho 'nft: ruleset unreadable' >&2\nexit 1\n".to_string(),
    );
    let path = format!(
        "{}:{}",
        dir.path().display(),
        wasm_cni_tests::install().bin.display()
    );
    let cfg = json!({"cniVersion": "1.1.0", "name": "gcerr", "type": "bridge", "bridge": "gcbr",
        "ipMasq": true, "ipam": {"type": "fake-ipam"}, "cni.dev/valid-attachments": []})
    .to_string();
    let out = sb.cni_env(
        "bridge",
        "GC",
        "",
        None,
        "",
        &cfg,
        &[
            ("CNI_PATH", path.as_str()),
            ("WASM_CNI_NFT", nft.to_str().unwrap()),
        ],
    );
    assert_eq!(out.code, 1, "{out:?}");
    let msg = out.json()["msg"].as_str().unwrap().to_string();
    assert!(msg.contains("remove stale rules"), "{msg}");
    assert!(msg.contains("ipam store unreadable"), "{msg}");
    assert!(asked.exists(), "IPAM's GC ran after the rules failed");
}

#[test]
fn a_network_whose_name_is_too_long_to_show_keeps_its_rules_its_own() {
    let Some(mut sb) = Sandbox::for_test("long_network_name") else {
        return;
    };
    // Multus names networks `<namespace>-<attachment definition>`; a
    // runtime's container ids are 64 hex digits. Together they do not fit
    // nftables' 128 bytes of comment.
    let network = format!("team-{}-net", "a".repeat(66));
    let cfg = config("1.1.0", &network, "longbr", "10.76.0.0/24");
    let (live, gone) = ("1".repeat(64), "2".repeat(64));
    for (id, ns) in [(&live, "c1"), (&gone, "c2")] {
        let netns = sb.container(ns);
        sb.cni("bridge", "ADD", id, Some(&netns), "eth0", &cfg.to_string())
            .ok();
    }
    let rules = rule_comments(&sb);
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(sb.ping("c1", "10.76.0.1"));
    // GC tells this network's rules by their comment: the gone one goes.
    let mut gc = cfg.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": live, "ifname": "eth0"}]);
    network_call(&sb, "bridge", "GC", &gc).ok();
    let left = rule_comments(&sb);
    assert_eq!(left.len(), 1, "{left:?}");
    // A rule the previous version marked for the live pod (a digest of
    // all three fields): its DEL removes that too.
    let old = wasm_cni::kernel::nft::legacy_owner_comment(&network, &live, "eth0").unwrap();
    let rule = format!(
        "add rule inet wasm-cni postrouting ip saddr 10.76.0.99 masquerade comment \"{old}\""
    );
    let out = sb.run_in("host", &["nft", &rule]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(rule_comments(&sb).len(), 2);
    let c1 = sb.ns_path("c1");
    sb.cni("bridge", "DEL", &live, Some(&c1), "eth0", &cfg.to_string())
        .ok();
    assert!(rule_comments(&sb).is_empty());
}
