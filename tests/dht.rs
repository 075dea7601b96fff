//! Issue 11: the Mainline DHT, only ever against a local test network on 127.0.0.1
//! (`mainline::Testnet::builder(n)` binds loopback; nodes are built with `loopback_only`, which
//! refuses any non-loopback bootstrap address, and an explicit bootstrap list, so mainline's public
//! default list is never used).

use std::net::Ipv4Addr;

use pgpchat_actors::crypto::SecretCert;
use pgpchat_actors::node::start_node;

use crate::common::{free_udp_port, init_logs, settings};

/// Enough nodes that a put is stored at several.
pub const TESTNET_NODES: usize = 12;

/// A local DHT on 127.0.0.1. Built before the actix System starts (building blocks).
pub fn local_testnet() -> mainline::Testnet {
    let t = mainline::Testnet::builder(TESTNET_NODES)
        .build()
        .expect("local testnet on 127.0.0.1");
    assert!(t.bootstrap.iter().all(|b| b
        .parse::<std::net::SocketAddr>()
        .unwrap()
        .ip()
        .is_loopback()));
    t
}

#[test]
fn status_shows_the_dht_state_and_the_address_it_sees() {
    init_logs();
    let testnet = local_testnet();
    let bootstrap = testnet.bootstrap.join(",");
    actix_rt::System::new().block_on(async move {
        let port = free_udp_port();
        let (t1, t2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut on = settings("dht-on", t1.path(), port);
        on.dht.enabled = true;
        on.dht.bootstrap = bootstrap;
        let off = settings("dht-off", t2.path(), port);
        let a = start_node(on, SecretCert::generate("a").unwrap())
            .await
            .unwrap();
        let b = start_node(off, SecretCert::generate("b").unwrap())
            .await
            .unwrap();

        assert!(b.dht.is_none());
        assert_eq!(b.dht_status().await.unwrap(), None);
        let info: pgpchat_actors::api::DhtInfo = b.dht_status().await.unwrap().into();
        assert!(!info.enabled && info.local_address.is_none());

        let status = a.dht_status().await.unwrap().expect("dht on");
        assert_eq!(*status.local_address.ip(), Ipv4Addr::LOCALHOST);
        // Other loopback nodes answer: the address they see is loopback too.
        let seen = crate::common::wait_until(30, "the DHT's view of our address", || {
            let a = a.clone();
            async move { a.dht_status().await.unwrap().and_then(|s| s.public_address) }
        })
        .await;
        assert!(seen.ip().is_loopback());
        let info: pgpchat_actors::api::DhtInfo = a.dht_status().await.unwrap().into();
        assert!(info.enabled);
        assert!(info.public_address.is_some());
    });
}

#[test]
fn a_loopback_only_node_refuses_a_public_bootstrap_node_and_does_not_start() {
    init_logs();
    actix_rt::System::new().block_on(async move {
        let t = tempfile::tempdir().unwrap();
        let mut s = settings("dht-guard", t.path(), free_udp_port());
        s.dht.enabled = true;
        // A documentation address standing in for a public bootstrap node: never contacted.
        s.dht.bootstrap = "127.0.0.1:6881, 192.0.2.1:6881".into();
        let err = match start_node(s, SecretCert::generate("g").unwrap()).await {
            Ok(_) => panic!("a loopback-only node started with a public bootstrap node"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("192.0.2.1:6881") && err.contains("loopback"),
            "{err}"
        );
    });
}

/// Two nodes with the DHT on (a local testnet), discovery as usual: open a discussion.
async fn two_dht_nodes(
    bootstrap: &str,
    dirs: (&std::path::Path, &std::path::Path),
) -> (
    pgpchat_actors::node::NodeHandle,
    pgpchat_actors::node::NodeHandle,
) {
    let port = free_udp_port();
    let mut s = Vec::new();
    for (name, dir) in [("alice", dirs.0), ("bob", dirs.1)] {
        let mut x = settings(name, dir, port);
        x.dht.enabled = true;
        x.dht.bootstrap = bootstrap.to_string();
        x.dht.min_lookup_interval_secs = 1;
        s.push(x);
    }
    let bob_settings = s.pop().unwrap();
    let alice = start_node(s.pop().unwrap(), SecretCert::generate("alice").unwrap())
        .await
        .unwrap();
    let bob = start_node(bob_settings, SecretCert::generate("bob").unwrap())
        .await
        .unwrap();
    (alice, bob)
}

/// Resolve `id`'s peer through `node`'s DHT worker until it names `port`.
pub async fn resolved_port(node: &pgpchat_actors::node::NodeHandle, id: &str, port: u16) {
    let dht = node.dht.clone().expect("dht on");
    let id = id.to_string();
    crate::common::wait_until(60, "the peer's record on the DHT", || {
        let (dht, id) = (dht.clone(), id.clone());
        async move {
            match dht.send(pgpchat_actors::dht::worker::Resolve(id)).await {
                Ok(Ok(Some(r))) if r.port == port => Some(r),
                _ => {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    None
                }
            }
        }
    })
    .await;
}

#[test]
fn a_new_discussion_publishes_both_records_and_a_close_destroys_the_secret() {
    init_logs();
    let testnet = local_testnet();
    let bootstrap = testnet.bootstrap.join(",");
    actix_rt::System::new().block_on(async move {
        let (t1, t2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (alice, bob) = two_dht_nodes(&bootstrap, (t1.path(), t2.path())).await;
        crate::common::wait_sees(&alice, &bob).await;
        let (opened, accepted) = crate::common::open_discussion(&alice, &bob, "pw", "pw").await;
        let id = opened.unwrap();
        assert_eq!(accepted.unwrap(), id);

        // Each side publishes its own record under the secret only the two derived, and each
        // finds the other's main listener port there.
        resolved_port(&alice, &id, bob.tcp_port).await;
        resolved_port(&bob, &id, alice.tcp_port).await;
        let secret = alice.store.run({
            let id = id.clone();
            move |s| s.rendezvous_secret(&id)
        });
        assert!(secret.await.unwrap().is_some(), "sealed secret kept");

        alice.close(&id, true).await.unwrap();
        let gone = alice.store.run({
            let id = id.clone();
            move |s| s.rendezvous_secret(&id)
        });
        assert_eq!(gone.await.unwrap(), None, "secret destroyed with the key");
        crate::common::wait_until(20, "alice stops publishing", || {
            let alice = alice.clone();
            async move {
                let s = alice.dht_status().await.unwrap().unwrap();
                (s.tracked == 0).then_some(())
            }
        })
        .await;
    });
}
