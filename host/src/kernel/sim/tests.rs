//! What the simulation adds to the kernel's answers (the answers
//! themselves are held to the real kernel's by the conformance suite in
//! `wasm-cni-testkit`).

use super::*;
use crate::kernel::route::{RT_SCOPE_LINK, RT_TABLE_MAIN};

const C: &str = "/run/netns/c";

fn node() -> (Arc<SimNode>, SimKernel) {
    let node = Arc::new(SimNode::new());
    node.add_container(C);
    let k = node.kernel(Some(C));
    (node, k)
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn a_veth_goes_with_its_peer_and_its_addresses_and_routes() {
    let (_n, node) = node();
    block(async {
        node.open_container().await.unwrap();
        node.veth_add((Ns::Host, "veth0"), (Ns::Container, "eth0"), None, None)
            .await
            .unwrap();
        let eth0 = node.link_get(Ns::Container, "eth0").await.unwrap();
        node.link_set(Ns::Container, eth0.index, LinkChange::Up(true))
            .await
            .unwrap();
        node.addr_add(
            Ns::Container,
            eth0.index,
            "10.1.0.5/24".parse().unwrap(),
            false,
        )
        .await
        .unwrap();
        let routes = node
            .route_list(Ns::Container, Some(RT_TABLE_MAIN))
            .await
            .unwrap();
        let v4: Vec<_> = routes.iter().filter(|r| r.dst.is_ipv4()).collect();
        assert_eq!(v4.len(), 1, "{routes:?}");
        // And the link-local prefix of its IPv6 address.
        assert!(
            routes
                .iter()
                .any(|r| r.dst.to_string() == "fe80::" && r.dst_len == 64)
        );
        assert_eq!(v4[0].scope, RT_SCOPE_LINK);
        // Carrier needs both ends up.
        let s = node.link_get(Ns::Container, "eth0").await.unwrap();
        assert_eq!(s.oper, crate::kernel::link::OperState::LowerLayerDown);
        let host = node.link_get(Ns::Host, "veth0").await.unwrap();
        assert!(host.peer_elsewhere);
        node.link_del(Ns::Host, host.index).await.unwrap();
        assert!(node.link_get(Ns::Container, "eth0").await.is_err());
        assert!(
            node.addr_list(Ns::Container, None)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            node.route_list(Ns::Container, None)
                .await
                .unwrap()
                .is_empty()
        );
    });
}

#[test]
fn conf_sysctls_follow_their_link() {
    let (sim, node) = node();
    let idx = sim.add_link(None, "br0", "bridge").unwrap();
    let key = SysctlKey::parse("net.ipv4.conf.br0.forwarding").unwrap();
    block(async {
        node.sysctl_write(Ns::Host, &key, "1").await.unwrap();
        assert_eq!(node.sysctl_read(Ns::Host, &key).await.unwrap(), "1");
        node.link_set(Ns::Host, idx, LinkChange::Name("br1".into()))
            .await
            .unwrap();
        let moved = SysctlKey::parse("net.ipv4.conf.br1.forwarding").unwrap();
        assert_eq!(node.sysctl_read(Ns::Host, &moved).await.unwrap(), "1");
        let e = node.sysctl_read(Ns::Host, &key).await.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        node.link_del(Ns::Host, idx).await.unwrap();
        assert!(node.sysctl_read(Ns::Host, &moved).await.is_err());
        assert!(sim.snapshot().host.sysctls.is_empty());
    });
}

#[test]
fn unknown_parts_are_answered_and_counted() {
    let (sim, node) = node();
    sim.set_unknown(Unknown::Firewall);
    block(async {
        let far = Instant::now() + Duration::from_secs(1);
        assert!(
            node.masquerade("wasm-cni n a b", &["10.0.0.2/24".parse().unwrap()], far)
                .await
                .unwrap()
        );
        assert!(node.masquerade_rules(far).await.unwrap().len() == 1);
    });
    assert_eq!(sim.guessed().len(), 2);
    assert_eq!(sim.snapshot().rules[0].kind, "masquerade");
}

#[test]
fn port_vlans_are_kept_per_vlan_and_shown_compressed() {
    let (sim, node) = node();
    let br = sim.add_link(None, "br0", "bridge").unwrap();
    let port = sim.add_link(None, "p0", "veth").unwrap();
    block(async {
        node.link_set(Ns::Host, port, LinkChange::Master(Some(br)))
            .await
            .unwrap();
        let range = PortVlan {
            vid: 10,
            end: Some(12),
            pvid: false,
            untagged: false,
        };
        node.port_vlan_change(Ns::Host, port, true, range)
            .await
            .unwrap();
        let one = PortVlan {
            vid: 11,
            end: None,
            pvid: false,
            untagged: false,
        };
        node.port_vlan_change(Ns::Host, port, false, one)
            .await
            .unwrap();
    });
    let view = sim.snapshot();
    assert_eq!(
        view.host.link("p0").unwrap().vlans,
        ["1 pvid untagged", "10", "12"]
    );
}

#[test]
fn each_container_has_its_own_namespace() {
    let sim = Arc::new(SimNode::new());
    sim.add_container("/a");
    sim.add_container("/b");
    let (a, b) = (sim.kernel(Some("/a")), sim.kernel(Some("/b")));
    block(async {
        a.open_container().await.unwrap();
        b.open_container().await.unwrap();
        assert_ne!(a.namespace_id(Ns::Container), b.namespace_id(Ns::Container));
        for k in [&a, &b] {
            k.veth_add(
                (Ns::Container, "eth0"),
                (
                    Ns::Host,
                    &format!("v{}", k.namespace_id(Ns::Container).unwrap().1),
                ),
                None,
                None,
            )
            .await
            .unwrap();
        }
        // A container that is gone cannot be opened.
        let gone = sim.kernel(Some("/c"));
        assert!(gone.open_container().await.is_err());
        assert!(gone.link_list(Ns::Container).await.is_err());
    });
    let view = sim.snapshot();
    assert_eq!(view.containers.len(), 2);
    assert_eq!(view.host.links.len(), 3);
}
