//! Thirty containers at once: distinct addresses under the store lock, and
//! thirty parallel DELs leave nothing. Times are printed, not asserted.

use std::collections::BTreeSet;
use std::time::Instant;
use wasm_cni_tests::{CLASSIC, Sandbox};

const N: usize = 30;

#[test]
fn thirty_parallel_adds_and_dels() {
    let Some(mut sb) = Sandbox::for_test("thirty_parallel_adds_and_dels") else {
        return;
    };
    let nets: Vec<_> = (0..N).map(|i| sb.container(&format!("c{i}"))).collect();
    let sb = &sb;

    let start = Instant::now();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = nets
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                s.spawn(move || {
                    sb.cni("bridge", "ADD", &format!("c{i}"), Some(ns), "eth0", CLASSIC)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    eprintln!("{N} parallel ADDs: {:?}", start.elapsed());
    let ips: BTreeSet<String> = results
        .iter()
        .map(|r| {
            r.ok().json()["ips"][0]["address"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ips.len(), N, "distinct addresses: {ips:?}");
    assert_eq!(sb.ip_files("mynet").len(), N);
    assert_eq!(sb.host_veths().len(), N);
    assert_eq!(sb.masquerade_rules(), N);
    assert!(sb.ping("c0", "10.244.0.1") && sb.ping(&format!("c{}", N - 1), "10.244.0.1"));

    let start = Instant::now();
    std::thread::scope(|s| {
        for (i, ns) in nets.iter().enumerate() {
            s.spawn(move || {
                sb.cni("bridge", "DEL", &format!("c{i}"), Some(ns), "eth0", CLASSIC)
                    .ok()
                    .code
            });
        }
    });
    eprintln!("{N} parallel DELs: {:?}", start.elapsed());
    assert!(
        sb.ip_files("mynet").is_empty(),
        "{:?}",
        sb.ip_files("mynet")
    );
    assert!(sb.host_veths().is_empty());
    assert_eq!(sb.masquerade_rules(), 0);
}
