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

/// A node running in its own thread and actix System, so the test can stop it for good (every
/// socket closed) and start it again elsewhere.
struct Remote {
    node: pgpchat_actors::node::NodeHandle,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Remote {
    fn start(settings: pgpchat_actors::settings::Settings, id: SecretCert) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (stop_std_tx, stop_std_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let sys = actix_rt::System::new();
            let node = sys.block_on(start_node(settings, id)).expect("node starts");
            tx.send(node).unwrap();
            sys.block_on(async move {
                let _ = stop_rx.await;
            });
        });
        // Forward the std signal to the System's oneshot from a helper thread.
        std::thread::spawn(move || {
            let _ = stop_std_rx.recv();
            let _ = stop_tx.send(());
        });
        Self {
            node: rx.recv().expect("node started"),
            stop: Some(stop_std_tx),
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Take `port` on 127.0.0.1 for the rest of the test: every connection is accepted and dropped at
/// once (the old address answers, but never as the peer).
fn occupy(port: u16) -> std::net::TcpListener {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .unwrap_or_else(|e| panic!("port {port} taken by someone else: {e}"));
    let l2 = l.try_clone().unwrap();
    std::thread::spawn(move || {
        for c in l2.incoming() {
            drop(c);
        }
    });
    l
}

fn quiet_dht_settings(
    name: &str,
    dir: &std::path::Path,
    bootstrap: &str,
) -> pgpchat_actors::settings::Settings {
    let mut s = settings(name, dir, free_udp_port());
    s.discovery.enabled = false;
    s.dht.enabled = true;
    s.dht.bootstrap = bootstrap.to_string();
    s.dht.min_lookup_interval_secs = 1;
    s.limits.reconnect_max_secs = 2;
    s
}

/// Issue 11's end-to-end test: discovery off on both sides; bob, the receiver (who never dials),
/// moves to another address and port while his old ports are occupied; alice's next message
/// reaches him, which only the DHT can make happen; the lookups are counted.
#[test]
fn a_receiver_that_moved_is_reached_through_the_dht_only() {
    receiver_moves_and_is_reached_through_the_dht_only();
}

/// The body of [`a_receiver_that_moved_is_reached_through_the_dht_only`], also run inside a
/// namespace with no route out ([`inside_a_namespace_with_no_route_out`]).
fn receiver_moves_and_is_reached_through_the_dht_only() {
    init_logs();
    let testnet = local_testnet();
    let bootstrap = testnet.bootstrap.join(",");
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bob_id = SecretCert::generate("bob").unwrap();
    // Bob never dials alice through the DHT: only alice's own DHT path can bring them together.
    let mut bob_settings = quiet_dht_settings("bob", tb.path(), &bootstrap);
    bob_settings.dht.receiver_dials = false;
    let mut bob = Remote::start(bob_settings, bob_id.clone());
    let (bob_main, bob_fp) = (bob.node.tcp_port, bob.node.keys.fingerprint().to_string());
    let sys = actix_rt::System::new();
    let alice = sys.block_on(async {
        start_node(
            quiet_dht_settings("alice", ta.path(), &bootstrap),
            SecretCert::generate("alice").unwrap(),
        )
        .await
        .unwrap()
    });
    // Met by address (no broadcast at all), then a discussion alice requested.
    let id = sys.block_on(async {
        alice
            .add_contact(&format!("127.0.0.1:{bob_main}"))
            .await
            .unwrap();
        let (opened, accepted) =
            crate::common::open_discussion(&alice, &bob.node, "pw", "pw").await;
        let id = opened.unwrap();
        assert_eq!(accepted.unwrap(), id);
        alice.send(&id, "before").await.unwrap();
        id
    });
    let bob_discussion_port = sys.block_on(async {
        let (b, i) = (bob.node.clone(), id.clone());
        crate::common::wait_until(30, "bob's first message", move || {
            let (b, i) = (b.clone(), i.clone());
            async move {
                let h = b.history(&i, 100).await.ok()?;
                h.iter().any(|m| m.body == "before").then_some(())
            }
        })
        .await;
        let i = id.clone();
        bob.node
            .store
            .run(move |s| s.discussion(&i))
            .await
            .unwrap()
            .listen_port
    });
    assert_ne!(bob_discussion_port, 0);
    let lookups_before = sys.block_on(async { alice.dht_status().await.unwrap().unwrap().lookups });
    assert_eq!(
        lookups_before, 0,
        "no DHT lookup while bob was where he said"
    );

    // Bob leaves; his old main and discussion ports are taken by something that is not him.
    bob.stop();
    let _held = (occupy(bob_main), occupy(bob_discussion_port));
    // He comes back at another address (127.0.0.2) and another main port.
    let mut moved = quiet_dht_settings("bob", tb.path(), &bootstrap);
    moved.listener.bind = std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    moved.dht.receiver_dials = false;
    let bob = Remote::start(moved, bob_id);
    assert_eq!(bob.node.keys.fingerprint(), bob_fp);
    assert_ne!(bob.node.tcp_port, 0);

    sys.block_on(async {
        alice.send(&id, "after the move").await.unwrap();
        let (b, i) = (bob.node.clone(), id.clone());
        crate::common::wait_until(120, "alice's message to reach the moved bob", move || {
            let (b, i) = (b.clone(), i.clone());
            async move {
                let h = b.history(&i, 100).await.ok()?;
                h.iter().any(|m| m.body == "after the move").then_some(())
            }
        })
        .await;
        let lookups = alice.dht_status().await.unwrap().unwrap().lookups;
        eprintln!("DHT lookups that found bob: {lookups}");
        assert!(lookups >= 1, "only the DHT knew where bob went");
        assert_eq!(
            bob.node.dht_status().await.unwrap().unwrap().lookups,
            0,
            "bob never looked alice up: the connection was alice's"
        );
        // Each resolve reads two periods; resolves are at least a second apart.
        assert!(lookups <= 2 * 130, "lookups are bounded: {lookups}");
    });
    drop(bob);
}

/// Issue 11: the opt-in identity record, through the node: `add-contact --dht FINGERPRINT` finds a
/// person who publishes it (discovery off everywhere: only the DHT says where), and not one who
/// does not.
#[test]
fn add_contact_by_fingerprint_finds_who_publishes_and_not_who_does_not() {
    init_logs();
    let testnet = local_testnet();
    let bootstrap = testnet.bootstrap.join(",");
    actix_rt::System::new().block_on(async move {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut published = quiet_dht_settings("alice", dirs[0].path(), &bootstrap);
        published.dht.publish_identity = true;
        let alice = start_node(published, SecretCert::generate("alice").unwrap())
            .await
            .unwrap();
        let carol = start_node(
            quiet_dht_settings("carol", dirs[1].path(), &bootstrap),
            SecretCert::generate("carol").unwrap(),
        )
        .await
        .unwrap();
        let bob = start_node(
            quiet_dht_settings("bob", dirs[2].path(), &bootstrap),
            SecretCert::generate("bob").unwrap(),
        )
        .await
        .unwrap();
        let alice_fp = alice.keys.fingerprint().to_string();
        let found = crate::common::wait_until(60, "alice's identity record", || {
            let (bob, fp) = (bob.clone(), alice_fp.clone());
            async move { bob.add_contact_dht(&fp.to_lowercase()).await.ok() }
        })
        .await;
        assert_eq!(found.fingerprint, alice_fp);
        assert_eq!(found.tcp_port, alice.tcp_port);
        let err = bob
            .add_contact_dht(carol.keys.fingerprint())
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            pgpchat_actors::api::ErrorKind::NotFound,
            "{err}"
        );
        let contacts = bob.contacts().await.unwrap();
        assert_eq!(contacts.len(), 1, "only alice, found through the DHT");
        // A node with the DHT off says so.
        let t = tempfile::tempdir().unwrap();
        let off = start_node(
            settings("off", t.path(), free_udp_port()),
            SecretCert::generate("off").unwrap(),
        )
        .await
        .unwrap();
        let err = off.add_contact_dht(&alice_fp).await.unwrap_err();
        assert!(err.to_string().contains("DHT is off"), "{err}");
    });
}

/// The same with the requester moving: alice leaves, her old ports are occupied, she comes back at
/// another address and port. Her new record is on the DHT at once (bob, the receiver, resolves her
/// new main port there) and bob's message, queued while she was away, reaches her.
#[test]
fn a_requester_that_moved_republishes_and_gets_the_receivers_messages() {
    init_logs();
    let testnet = local_testnet();
    let bootstrap = testnet.bootstrap.join(",");
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let alice_id = SecretCert::generate("alice").unwrap();
    let mut alice = Remote::start(
        quiet_dht_settings("alice", ta.path(), &bootstrap),
        alice_id.clone(),
    );
    let alice_main = alice.node.tcp_port;
    let sys = actix_rt::System::new();
    let bob = sys.block_on(async {
        start_node(
            quiet_dht_settings("bob", tb.path(), &bootstrap),
            SecretCert::generate("bob").unwrap(),
        )
        .await
        .unwrap()
    });
    let id = sys.block_on(async {
        alice
            .node
            .add_contact(&format!("127.0.0.1:{}", bob.tcp_port))
            .await
            .unwrap();
        let (opened, accepted) =
            crate::common::open_discussion(&alice.node, &bob, "pw", "pw").await;
        let id = opened.unwrap();
        assert_eq!(accepted.unwrap(), id);
        resolved_port(&bob, &id, alice_main).await;
        id
    });

    alice.stop();
    let _held = occupy(alice_main);
    sys.block_on(async {
        bob.send(&id, "while you were away").await.unwrap();
    });
    let mut moved = quiet_dht_settings("alice", ta.path(), &bootstrap);
    moved.listener.bind = std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    let alice = Remote::start(moved, alice_id);
    let new_main = alice.node.tcp_port;
    assert_ne!(new_main, alice_main);
    sys.block_on(async {
        // The receiver can find where the requester went.
        resolved_port(&bob, &id, new_main).await;
        let (a, i) = (alice.node.clone(), id.clone());
        crate::common::wait_until(60, "bob's message to reach the moved alice", move || {
            let (a, i) = (a.clone(), i.clone());
            async move {
                let h = a.history(&i, 100).await.ok()?;
                h.iter()
                    .any(|m| m.body == "while you were away")
                    .then_some(())
            }
        })
        .await;
    });
    drop(alice);
}

/// Either side may need to dial: the receiver moved, and the requester cannot find him (no contact
/// address, his discussion port and old main port occupied, and her own DHT lookups spent for an
/// hour on his stale record). Bob, the receiver, who never dials today, looks alice up on the DHT
/// and dials her main listener; alice's next message reaches him.
#[test]
fn a_receiver_dials_through_the_dht_when_the_requester_cannot_reach_him() {
    init_logs();
    let testnet = local_testnet();
    let bootstrap = testnet.bootstrap.join(",");
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bob_id = SecretCert::generate("bob").unwrap();
    // Bob never dials alice through the DHT: only alice's own DHT path can bring them together.
    let mut bob_settings = quiet_dht_settings("bob", tb.path(), &bootstrap);
    bob_settings.dht.receiver_dials = false;
    let mut bob = Remote::start(bob_settings, bob_id.clone());
    let (bob_main, bob_fp) = (bob.node.tcp_port, bob.node.keys.fingerprint().to_string());
    let sys = actix_rt::System::new();
    let mut slow = quiet_dht_settings("alice", ta.path(), &bootstrap);
    slow.dht.min_lookup_interval_secs = 3600;
    let alice = sys.block_on(async {
        start_node(slow, SecretCert::generate("alice").unwrap())
            .await
            .unwrap()
    });
    let (id, bob_port) = sys.block_on(async {
        alice
            .add_contact(&format!("127.0.0.1:{bob_main}"))
            .await
            .unwrap();
        let (opened, accepted) =
            crate::common::open_discussion(&alice, &bob.node, "pw", "pw").await;
        let id = opened.unwrap();
        assert_eq!(accepted.unwrap(), id);
        // Bob's record is up before he leaves (alice will find only this one).
        resolved_port(&bob.node, &id, alice.tcp_port).await;
        alice.remove_contact(&bob_fp).await.unwrap();
        let i = id.clone();
        let port = bob
            .node
            .store
            .run(move |s| s.discussion(&i))
            .await
            .unwrap()
            .listen_port;
        (id, port)
    });
    bob.stop();
    let _held = (occupy(bob_main), occupy(bob_port));
    // Alice spends her lookup on bob's stale record; the next is an hour away.
    let spent = sys.block_on(async {
        crate::common::wait_until(60, "alice's lookup of the stale record", || {
            let alice = alice.clone();
            async move {
                let n = alice.dht_status().await.unwrap().unwrap().lookups;
                (n >= 2).then_some(n)
            }
        })
        .await
    });
    let mut moved = quiet_dht_settings("bob", tb.path(), &bootstrap);
    moved.listener.bind = std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let bob = Remote::start(moved, bob_id);
    sys.block_on(async {
        alice.send(&id, "found you").await.unwrap();
        let (b, i) = (bob.node.clone(), id.clone());
        crate::common::wait_until(60, "alice's message to reach bob", move || {
            let (b, i) = (b.clone(), i.clone());
            async move {
                let h = b.history(&i, 100).await.ok()?;
                h.iter().any(|m| m.body == "found you").then_some(())
            }
        })
        .await;
        assert_eq!(
            alice.dht_status().await.unwrap().unwrap().lookups,
            spent,
            "alice found nothing new: bob dialed"
        );
        let bob_lookups = bob.node.dht_status().await.unwrap().unwrap().lookups;
        assert!(bob_lookups >= 1, "bob found alice on the DHT");
        eprintln!("bob's lookups: {bob_lookups}; alice's: {spent}");
    });
    drop(bob);
}

/// The discussion's rendezvous secret as `node` keeps it (opened), if any.
async fn secret_of(node: &pgpchat_actors::node::NodeHandle, id: &str) -> Option<[u8; 32]> {
    use pgpchat_actors::at_rest::{open, Sealed};
    let i = id.to_string();
    let sealed = node
        .store
        .run(move |s| s.rendezvous_secret(&i))
        .await
        .unwrap()?;
    let opened = node
        .keys
        .run(move |me| open(me, Sealed::RendezvousSecret, &sealed))
        .await
        .unwrap();
    Some(<[u8; 32]>::try_from(opened.as_slice()).unwrap())
}

/// Wait until both nodes keep the same rendezvous secret for `id`; returns it.
async fn same_secret(
    a: &pgpchat_actors::node::NodeHandle,
    b: &pgpchat_actors::node::NodeHandle,
    id: &str,
) -> [u8; 32] {
    crate::common::wait_until(60, "the same rendezvous secret on both sides", || {
        let (a, b, id) = (a.clone(), b.clone(), id.to_string());
        async move {
            let (x, y) = (secret_of(&a, &id).await?, secret_of(&b, &id).await?);
            if x != y {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            (x == y).then_some(x)
        }
    })
    .await
}

/// Issue 11, item 1: discussions without a rendezvous secret (opened at protocol version 2, as
/// with a peer on an older build, and their secret forgotten as in a store from before issue 11)
/// get one over the control channel once both sides speak version 3. `first` lost it on both
/// sides (the requester draws one and sends it), `second` on the receiver's side only (he asks,
/// the requester sends hers): each ends with the same secret on both sides, and the discussion
/// then reconnects through the DHT (the receiver moves, his old ports occupied, discovery off).
#[test]
fn discussions_without_a_rendezvous_secret_get_one_over_the_control_channel() {
    init_logs();
    let testnet = local_testnet();
    let bootstrap = testnet.bootstrap.join(",");
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bob_id = SecretCert::generate("bob").unwrap();
    let mut old_bob = quiet_dht_settings("bob", tb.path(), &bootstrap);
    old_bob.listener.max_protocol_version = 2;
    let mut bob = Remote::start(old_bob, bob_id.clone());
    let bob_main = bob.node.tcp_port;
    let sys = actix_rt::System::new();
    let alice = sys.block_on(async {
        start_node(
            quiet_dht_settings("alice", ta.path(), &bootstrap),
            SecretCert::generate("alice").unwrap(),
        )
        .await
        .unwrap()
    });
    let (first, second, alices_second) = sys.block_on(async {
        alice
            .add_contact(&format!("127.0.0.1:{bob_main}"))
            .await
            .unwrap();
        let mut ids = Vec::new();
        for pw in ["pw1", "pw2"] {
            let (opened, accepted) =
                crate::common::open_discussion(&alice, &bob.node, pw, pw).await;
            let id = opened.unwrap();
            assert_eq!(accepted.unwrap(), id);
            ids.push(id);
        }
        let (first, second) = (ids[0].clone(), ids[1].clone());
        for (node, id) in [(&alice, &first), (&bob.node, &first), (&bob.node, &second)] {
            let i = id.clone();
            assert!(node
                .store
                .run(move |s| s.forget_rendezvous_secret(&i))
                .await
                .unwrap());
        }
        let alices_second = secret_of(&alice, &second).await.expect("alice keeps hers");
        // While bob speaks only version 2, nothing of the exchange is sent: a new connection and a
        // message through it leave both without a secret.
        let session = alice
            .directory
            .send(pgpchat_actors::discussions::Lookup(first.clone()))
            .await
            .unwrap()
            .unwrap();
        session
            .send(pgpchat_actors::session::Reconnect)
            .await
            .unwrap();
        alice.send(&first, "at version 2").await.unwrap();
        let (b, i) = (bob.node.clone(), first.clone());
        crate::common::wait_until(30, "a message at version 2", move || {
            let (b, i) = (b.clone(), i.clone());
            async move {
                let h = b.history(&i, 100).await.ok()?;
                h.iter().any(|m| m.body == "at version 2").then_some(())
            }
        })
        .await;
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert_eq!(secret_of(&alice, &first).await, None, "nothing sent at 2");
        assert_eq!(
            secret_of(&bob.node, &first).await,
            None,
            "nothing sent at 2"
        );
        assert_eq!(
            secret_of(&bob.node, &second).await,
            None,
            "nothing asked at 2"
        );
        (first, second, alices_second)
    });
    // Bob comes back speaking version 3 (his DHT worker, started again, has nothing to publish).
    bob.stop();
    let mut new_bob = quiet_dht_settings("bob", tb.path(), &bootstrap);
    new_bob.listener.port = bob_main;
    let mut bob = Remote::start(new_bob, bob_id.clone());
    let (first_secret, bob_discussion_port) = sys.block_on(async {
        let first_secret = same_secret(&alice, &bob.node, &first).await;
        let second_secret = same_secret(&alice, &bob.node, &second).await;
        assert_eq!(
            second_secret, alices_second,
            "the requester's secret is kept"
        );
        assert_ne!(first_secret, second_secret);
        // Both publish under the new secret: each finds the other's record.
        resolved_port(&alice, &first, bob_main).await;
        resolved_port(&bob.node, &first, alice.tcp_port).await;
        let i = first.clone();
        let port = bob
            .node
            .store
            .run(move |s| s.discussion(&i))
            .await
            .unwrap()
            .listen_port;
        (first_secret, port)
    });
    let lookups_before = sys.block_on(async { alice.dht_status().await.unwrap().unwrap().lookups });

    // Bob moves; his old ports are taken by something that is not him.
    bob.stop();
    let _held = (occupy(bob_main), occupy(bob_discussion_port));
    let mut moved = quiet_dht_settings("bob", tb.path(), &bootstrap);
    moved.listener.bind = std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let bob = Remote::start(moved, bob_id);
    sys.block_on(async {
        alice.send(&first, "after the move").await.unwrap();
        let (b, i) = (bob.node.clone(), first.clone());
        crate::common::wait_until(120, "alice's message to reach the moved bob", move || {
            let (b, i) = (b.clone(), i.clone());
            async move {
                let h = b.history(&i, 100).await.ok()?;
                h.iter().any(|m| m.body == "after the move").then_some(())
            }
        })
        .await;
        assert!(alice.dht_status().await.unwrap().unwrap().lookups > lookups_before);
        assert_eq!(secret_of(&bob.node, &first).await, Some(first_secret));
    });
    drop(bob);
}

/// Set for the child run of [`inside_a_namespace_with_no_route_out`].
const INSIDE_NETNS: &str = "PGPCHAT_TEST_INSIDE_DHT_NETNS";

/// Issue 11, "run where the public DHT cannot be reached even by mistake": the local DHT and both
/// nodes run in a network namespace, made and deleted by this test, with only `lo` up and no route
/// at all; the end-to-end reconnection through the DHT (the receiver moves, his old ports occupied,
/// discovery off, lookups counted) works there. This test binary runs itself inside it
/// (`ip netns exec`), on that one test.
#[test]
fn the_dht_rendezvous_works_in_a_namespace_with_no_route_out() {
    let name = format!("pgc-dht-{}", std::process::id() % 100_000);
    let mut ns = crate::netns::Namespaces { names: vec![] };
    if let Err(e) = ns.add(name.clone()) {
        eprintln!("SKIPPED: cannot create network namespaces here ({e}); run as root");
        return;
    }
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &name])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "dht::inside_a_namespace_with_no_route_out",
            "--ignored",
            "--nocapture",
        ])
        .env(INSIDE_NETNS, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "inside the namespace:\n{text}");
    // It ran (not filtered out, not skipped).
    assert!(text.contains("1 passed"), "{text}");
    assert!(text.contains("isolated: only lo, no route"), "{text}");
    assert!(text.contains("DHT lookups that found bob"), "{text}");
    drop(ns);
}

/// Run by [`the_dht_rendezvous_works_in_a_namespace_with_no_route_out`] inside its namespace; does
/// nothing elsewhere. First shows the isolation: `lo` is the only link, and no address outside the
/// machine can even be routed to (a UDP `connect` picks a route and sends nothing).
#[test]
#[ignore = "run inside its namespace by the_dht_rendezvous_works_in_a_namespace_with_no_route_out"]
fn inside_a_namespace_with_no_route_out() {
    if std::env::var_os(INSIDE_NETNS).is_none() {
        return;
    }
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout).to_string();
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains(": lo:"), "{links}");
    let udp = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    // A documentation address standing in for the public DHT's bootstrap nodes.
    let err = udp.connect("192.0.2.1:6881").unwrap_err();
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::NetworkUnreachable,
        "a route out exists: {err}"
    );
    eprintln!("isolated: only lo, no route");
    receiver_moves_and_is_reached_through_the_dht_only();
}

/// `add-contact --dht`: the record's addresses are probed through main's probing path, told whom
/// to expect. Alice published her identity record and left; carol now listens on alice's old
/// address and port: bob's lookup of alice finds the record, carol answers, and nothing is added
/// (neither carol, nor anyone under alice's fingerprint).
#[test]
fn add_contact_by_fingerprint_adds_nobody_when_another_key_answers_there() {
    init_logs();
    let testnet = local_testnet();
    let bootstrap = testnet.bootstrap.join(",");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut published = quiet_dht_settings("alice", dirs[0].path(), &bootstrap);
    published.dht.publish_identity = true;
    let mut alice = Remote::start(published, SecretCert::generate("alice").unwrap());
    let (alice_port, alice_fp) = (
        alice.node.tcp_port,
        alice.node.keys.fingerprint().to_string(),
    );
    let sys = actix_rt::System::new();
    let bob = sys.block_on(async {
        let bob = start_node(
            quiet_dht_settings("bob", dirs[1].path(), &bootstrap),
            SecretCert::generate("bob").unwrap(),
        )
        .await
        .unwrap();
        // The record is up: bob could add alice from it (then forgets her again).
        crate::common::wait_until(60, "alice's identity record", || {
            let (bob, fp) = (bob.clone(), alice_fp.clone());
            async move { bob.add_contact_dht(&fp).await.ok() }
        })
        .await;
        bob.remove_contact(&alice_fp).await.unwrap();
        bob
    });
    alice.stop();
    let mut there = quiet_dht_settings("carol", dirs[2].path(), &bootstrap);
    there.listener.port = alice_port;
    let carol = Remote::start(there, SecretCert::generate("carol").unwrap());
    assert_eq!(carol.node.tcp_port, alice_port);
    sys.block_on(async {
        let err = bob.add_contact_dht(&alice_fp).await.unwrap_err();
        assert_eq!(
            err.kind(),
            pgpchat_actors::api::ErrorKind::Protocol,
            "{err}"
        );
        assert!(err.to_string().contains("answers as"), "{err}");
        assert!(bob.contacts().await.unwrap().is_empty(), "nobody added");
    });
    drop(carol);
}

/// Issue 11's end-to-end test with the requester moving, again one only the DHT can pass
/// (discovery off): alice, the requester, leaves while bob's message to her is queued; bob leaves
/// too. Alice comes back at another address and port (her old port occupied) and spends her
/// lookup on bob's stale record (her next one is an hour away); bob comes back elsewhere (his old
/// ports occupied). Only bob can restore the discussion, by finding alice's new record: his
/// message reaches her, his lookups counted, hers unchanged.
#[test]
fn a_requester_that_moved_is_found_by_the_receiver_through_the_dht_only() {
    init_logs();
    let testnet = local_testnet();
    let bootstrap = testnet.bootstrap.join(",");
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (alice_id, bob_id) = (
        SecretCert::generate("alice").unwrap(),
        SecretCert::generate("bob").unwrap(),
    );
    let slow = |bind: Ipv4Addr| {
        let mut s = quiet_dht_settings("alice", ta.path(), &bootstrap);
        s.dht.min_lookup_interval_secs = 3600;
        s.listener.bind = std::net::IpAddr::V4(bind);
        s
    };
    let mut bob = Remote::start(
        quiet_dht_settings("bob", tb.path(), &bootstrap),
        bob_id.clone(),
    );
    let mut alice = Remote::start(slow(Ipv4Addr::LOCALHOST), alice_id.clone());
    let (alice_main, bob_main, bob_fp) = (
        alice.node.tcp_port,
        bob.node.tcp_port,
        bob.node.keys.fingerprint().to_string(),
    );
    let sys = actix_rt::System::new();
    let (id, bob_port) = sys.block_on(async {
        alice
            .node
            .add_contact(&format!("127.0.0.1:{bob_main}"))
            .await
            .unwrap();
        let (opened, accepted) =
            crate::common::open_discussion(&alice.node, &bob.node, "pw", "pw").await;
        let id = opened.unwrap();
        assert_eq!(accepted.unwrap(), id);
        // Both records are up before anyone leaves.
        resolved_port(&bob.node, &id, alice_main).await;
        // Alice forgets bob's main listener: only his discussion port, then the DHT, are left.
        alice.node.remove_contact(&bob_fp).await.unwrap();
        let i = id.clone();
        let port = bob
            .node
            .store
            .run(move |s| s.discussion(&i))
            .await
            .unwrap()
            .listen_port;
        (id, port)
    });
    alice.stop();
    let _held_alice = occupy(alice_main);
    sys.block_on(async {
        bob.node.send(&id, "while you were away").await.unwrap();
    });
    bob.stop();
    let _held_bob = (occupy(bob_main), occupy(bob_port));

    let alice = Remote::start(slow(Ipv4Addr::new(127, 0, 0, 3)), alice_id);
    assert_ne!(alice.node.tcp_port, alice_main);
    let spent = sys.block_on(async {
        crate::common::wait_until(60, "alice's lookup of bob's stale record", || {
            let a = alice.node.clone();
            async move {
                let n = a.dht_status().await.unwrap().unwrap().lookups;
                (n >= 2).then_some(n)
            }
        })
        .await
    });
    let mut moved = quiet_dht_settings("bob", tb.path(), &bootstrap);
    moved.listener.bind = std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let bob = Remote::start(moved, bob_id);
    sys.block_on(async {
        let (a, i) = (alice.node.clone(), id.clone());
        crate::common::wait_until(60, "bob's message to reach the moved alice", move || {
            let (a, i) = (a.clone(), i.clone());
            async move {
                let h = a.history(&i, 100).await.ok()?;
                h.iter()
                    .any(|m| m.body == "while you were away")
                    .then_some(())
            }
        })
        .await;
        assert_eq!(
            alice.node.dht_status().await.unwrap().unwrap().lookups,
            spent,
            "alice found nothing new: bob dialed her"
        );
        let bob_lookups = bob.node.dht_status().await.unwrap().unwrap().lookups;
        eprintln!("bob's lookups that found the moved alice: {bob_lookups}");
        assert!(bob_lookups >= 1, "bob found alice on the DHT");
    });
    drop((alice, bob));
}

/// Issue 11: the records that two real discussions between the same two people put on the DHT
/// (both sides' records of each) share no key and no 8-byte run of value, and no address,
/// fingerprint or name of either person appears in clear in any of them; each opens only under its
/// own discussion's secret.
#[test]
fn records_on_the_dht_of_two_discussions_between_the_same_people_share_nothing() {
    use pgpchat_actors::dht::record::{open, unix_micros};
    use pgpchat_actors::dht::{Period, RendezvousSecret};
    use pgpchat_actors::wire::Role;
    init_logs();
    let testnet = local_testnet();
    let bootstrap = testnet.bootstrap.join(",");
    actix_rt::System::new().block_on(async move {
        let (t1, t2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (alice, bob) = two_dht_nodes(&bootstrap, (t1.path(), t2.path())).await;
        crate::common::wait_sees(&alice, &bob).await;
        let mut secrets = Vec::new();
        for pw in ["one", "two"] {
            let (opened, accepted) = crate::common::open_discussion(&alice, &bob, pw, pw).await;
            let id = opened.unwrap();
            assert_eq!(accepted.unwrap(), id);
            secrets.push(same_secret(&alice, &bob, &id).await);
        }
        assert_ne!(secrets[0], secrets[1]);
        let dht = alice.dht.clone().unwrap();
        let mut items = Vec::new();
        for s in &secrets {
            for role in [Role::Requester, Role::Receiver] {
                let item = crate::common::wait_until(60, "a published record", || {
                    let (dht, s) = (dht.clone(), *s);
                    async move {
                        let keys = RendezvousSecret::from_bytes(s).slot(role, Period::now());
                        let items = dht
                            .send(pgpchat_actors::dht::worker::GetItem(keys.public_key))
                            .await
                            .ok()?
                            .ok()?;
                        let item = items
                            .into_iter()
                            .find(|item| open(&keys, item, unix_micros()).is_ok());
                        if item.is_none() {
                            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                        }
                        item
                    }
                })
                .await;
                items.push((s, item));
            }
        }
        let mut clear: Vec<Vec<u8>> = vec![
            vec![127, 0, 0, 1],
            b"alice".to_vec(),
            b"bob".to_vec(),
            alice.tcp_port.to_be_bytes().to_vec(),
            bob.tcp_port.to_be_bytes().to_vec(),
        ];
        for fp in [alice.keys.fingerprint(), bob.keys.fingerprint()] {
            clear.push(fp.as_bytes().to_vec());
            let raw: Vec<u8> = (0..fp.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&fp[i..i + 2], 16).unwrap())
                .collect();
            clear.push(raw);
        }
        for (i, (secret, a)) in items.iter().enumerate() {
            for (_, b) in &items[i + 1..] {
                assert_ne!(a.key(), b.key());
                for w in a.value().windows(8) {
                    assert!(!b.value().windows(8).any(|x| x == w), "shared value bytes");
                }
            }
            for c in &clear {
                // Two bytes (a port) can match by chance: only longer runs are checked for those.
                if c.len() > 2 {
                    assert!(
                        !a.value().windows(c.len()).any(|w| w == c),
                        "{c:?} in clear"
                    );
                }
            }
            // Only its own discussion's secret opens it.
            let other = secrets.iter().find(|s| s != secret).unwrap();
            for role in [Role::Requester, Role::Receiver] {
                let keys = RendezvousSecret::from_bytes(*other).slot(role, Period::now());
                assert!(open(&keys, a, unix_micros()).is_err());
            }
        }
    });
}

/// `pgpchat status` (the binary, its core a child process) shows the DHT's state: on, its UDP
/// socket, the address the DHT sees for it once other nodes answered (a local testnet on
/// 127.0.0.1, loopback only), and whether its UDP port looks firewalled.
#[test]
fn the_binary_status_shows_the_dht_state() {
    let testnet = local_testnet();
    let mut p = crate::binary::Person::new("dana", free_udp_port());
    let mut profile = std::fs::read_to_string(&p.config).unwrap();
    profile.push_str(&format!(
        "\n[dht]\nenabled = true\nbootstrap = \"{}\"\nloopback_only = true\nbind = \"127.0.0.1\"\n",
        testnet.bootstrap.join(",")
    ));
    std::fs::write(&p.config, profile).unwrap();
    p.init();
    p.start();
    crate::binary::wait_for(30, "the DHT's view of our address", || {
        !p.json(&["status"])["dht"]["public_address"].is_null()
    });
    let s = p.json(&["status"]);
    assert_eq!(s["dht"]["enabled"], true, "{s}");
    assert!(s["dht"]["local_address"]
        .as_str()
        .is_some_and(|a| a.starts_with("127.0.0.1:")));
    let text = p.ok(&["status"]);
    assert!(text.contains("DHT: on, UDP 127.0.0.1:"), "{text}");
    assert!(text.contains("seen as 127."), "{text}");
    p.kill();
}

/// Issue 11 finding 4: a requester cannot replace the receiver's rendezvous secret at will. An
/// unasked `Secret` sent over the control channel of a discussion whose secret came from the
/// handshake is ignored: bob keeps the handshake's secret (each replacement would cost a seal, a
/// durable write and a DHT put).
#[test]
fn an_unasked_secret_does_not_replace_the_receivers() {
    use pgpchat_actors::wire::{Control, RendezvousMessage, SecretBytes};
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
        let original = same_secret(&alice, &bob, &id).await;
        let session = alice
            .directory
            .send(pgpchat_actors::discussions::Lookup(id.clone()))
            .await
            .unwrap()
            .unwrap();
        for i in 0..3u8 {
            session
                .send(pgpchat_actors::session::SendControl(Control::Rendezvous(
                    RendezvousMessage::Secret(SecretBytes([i + 1; 32])),
                )))
                .await
                .unwrap()
                .unwrap();
        }
        // A chat message after them: once bob has it, the controls before it were received.
        alice.send(&id, "after the secrets").await.unwrap();
        let (b, i) = (bob.clone(), id.clone());
        crate::common::wait_until(30, "the message after the secrets", move || {
            let (b, i) = (b.clone(), i.clone());
            async move {
                let h = b.history(&i, 100).await.ok()?;
                h.iter()
                    .any(|m| m.body == "after the secrets")
                    .then_some(())
            }
        })
        .await;
        // Let the control handlers run (they are off the session's actor), then check.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        assert_eq!(
            secret_of(&bob, &id).await,
            Some(original),
            "kept the handshake's"
        );
        assert_eq!(secret_of(&alice, &id).await, Some(original));
    });
}
