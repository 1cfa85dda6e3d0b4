//! wasm-cni's own nf_tables messages (`kernel::nfnetlink`), on a real
//! kernel in a namespace of their own: the masquerade rule they write is
//! the one `nft` writes for the same text, a DEL removes the attachment's
//! rules from its chains only, and a listing the kernel says was
//! interrupted is never taken for the whole table. One test (the module
//! keeps one socket per process, opened in the namespace of first use).

use std::path::Path;
use std::process::Command;
use wasm_cni::kernel::nfnetlink::{
    ListedRule, NetfilterProtoFamily, masquerade, rules, rules_pausing,
};
use wasm_cni_tests::Sandbox;
use wasm_cni_tests::traffic::in_netns;

fn nft(netns: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", netns.display()))
        .arg("nft")
        .args(args);
    let out = match stdin {
        None => c.output().unwrap(),
        Some(text) => {
            use std::io::Write;
            let mut child = c
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        }
    };
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The expressions of each rule of a chain as `nft --debug=netlink`
/// prints them, by comment.
fn bytecode(netns: &Path, chain: &str) -> Vec<(String, Vec<String>)> {
    let listed = nft(
        netns,
        &[
            "--debug=netlink",
            "list",
            "chain",
            "inet",
            "wasm-cni",
            chain,
        ],
        None,
    );
    let mut rules: Vec<(String, Vec<String>)> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for line in listed.lines().map(str::trim) {
        if line.starts_with('[') {
            current.push(line.to_string());
        } else if let Some(u) = line.strip_prefix("userdata = ") {
            rules.push((u.to_string(), std::mem::take(&mut current)));
        }
    }
    rules
}

#[test]
fn wasm_cnis_own_nf_tables_messages() {
    let Some(sb) = Sandbox::for_test("nfnetlink") else {
        return;
    };
    let node = sb.ns_path("host");

    // 1. The rule is nft's, expression for expression, in both families
    // and for prefixes nft loads in part (/16, /64) or masks (/12).
    let ours = [
        ("10.244.0.2/16", "ours4"),
        ("10.244.0.3/12", "ours12"),
        ("fd00::5/64", "ours6"),
    ];
    for (i, (addr, comment)) in ours.iter().enumerate() {
        let (addr, comment) = (addr.parse().unwrap(), comment.to_string());
        in_netns(&node, move || masquerade(&comment, &[addr], i == 0)).unwrap();
    }
    let text = [
        (
            "ip saddr 10.244.0.2 ip daddr != 10.244.0.0/16 ip daddr != 224.0.0.0/4",
            "theirs4",
        ),
        (
            "ip saddr 10.244.0.3 ip daddr != 10.240.0.0/12 ip daddr != 224.0.0.0/4",
            "theirs12",
        ),
        (
            "ip6 saddr fd00::5 ip6 daddr != fd00::/64 ip6 daddr != ff00::/8",
            "theirs6",
        ),
    ];
    for (matches, comment) in text {
        let rule = format!(
            "add rule inet wasm-cni postrouting {matches} masquerade comment \"{comment}\"\n"
        );
        nft(&node, &["-f", "-"], Some(&rule));
    }
    let code = bytecode(&node, "postrouting");
    let by = |name: &str| {
        code.iter()
            .find(|(u, _)| u.contains(name))
            .map(|(_, e)| e.clone())
            .unwrap_or_else(|| panic!("no rule {name}: {code:?}"))
    };
    for (a, b) in [
        ("ours4", "theirs4"),
        ("ours12", "theirs12"),
        ("ours6", "theirs6"),
    ] {
        assert_eq!(by(a), by(b), "{a} against {b}");
    }
    // And `nft -j` reads ours back with its comment.
    let json = nft(
        &node,
        &["-j", "list", "chain", "inet", "wasm-cni", "postrouting"],
        None,
    );
    assert!(
        json.contains("\"comment\": \"ours6\"") || json.contains("\"comment\":\"ours6\""),
        "{json}"
    );

    // 2. Many rules (a dump in several parts) listed while others come and
    // go before them (a chain dumped first): a listing is whole or refused
    // as interrupted, never missing the rule at the end.
    let head = |n: usize| -> String {
        let mut script = String::from("flush chain inet wasm-cni head\n");
        for i in 0..n {
            script += &format!("insert rule inet wasm-cni head counter comment \"filler {i}\"\n");
        }
        script
    };
    nft(&node, &["delete", "table", "inet", "wasm-cni"], None);
    nft(
        &node,
        &["-f", "-"],
        Some("add table inet wasm-cni\nadd chain inet wasm-cni head\n"),
    );
    nft(&node, &["-f", "-"], Some(&head(2000)));
    in_netns(&node, || {
        masquerade("tail", &["10.9.9.9/24".parse().unwrap()], true)
    })
    .unwrap();
    // The first part of the dump is in; the head chain's rules go.
    let flush_ns = node.clone();
    let flush = move || {
        nft(
            &flush_ns,
            &["flush", "chain", "inet", "wasm-cni", "head"],
            None,
        );
    };
    let listing = in_netns(&node, move || {
        rules_pausing(NetfilterProtoFamily::Inet, "wasm-cni", flush)
    });
    match listing {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "{e}"),
        Ok(all) => {
            let all = all.expect("the table is there");
            assert!(
                all.iter()
                    .any(|r: &ListedRule| r.comment.as_deref() == Some("tail")),
                "a listing interrupted by a change was taken for the whole: {} rules",
                all.len()
            );
        }
    }
    // Unchanged meanwhile, it is whole.
    let all = in_netns(&node, || rules(NetfilterProtoFamily::Inet, "wasm-cni"))
        .unwrap()
        .unwrap();
    assert!(all.iter().any(|r| r.comment.as_deref() == Some("tail")));

    // 3. A DEL removes the attachment's rules from the chains that are
    // wasm-cni's, not a rule someone wrote with its mark elsewhere.
    let mark = "wasm-cni n c eth0";
    in_netns(&node, move || {
        masquerade(mark, &["10.7.0.2/24".parse().unwrap()], false)
    })
    .unwrap();
    nft(
        &node,
        &["-f", "-"],
        Some(&format!(
            "add chain inet wasm-cni mine\nadd rule inet wasm-cni mine counter comment \"{mark}\"\n"
        )),
    );
    let far = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let removed = in_netns(&node, move || wasm_cni::kernel::nft::remove(mark, far)).unwrap();
    assert_eq!(removed, 1);
    let left = nft(&node, &["list", "table", "inet", "wasm-cni"], None);
    assert!(!left.contains("10.7.0.2"), "{left}");
    assert_eq!(left.matches(mark).count(), 1, "{left}");
}
