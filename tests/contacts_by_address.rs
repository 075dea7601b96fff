//! Contacts by address (issue 10, part 1): `add_contact HOST:PORT` probes a node's main port for
//! its signed announce; clear errors for what is not a (recent) pgpchat node; re-probing of a
//! silent added contact with backoff; remove; block and unblock. Several nodes in one process, real
//! loopback sockets. Nodes here do not broadcast (`discovery.enabled = false`), so they only meet
//! by address.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pgpchat_actors::api::ErrorKind;
use pgpchat_actors::codec;
use pgpchat_actors::contacts::probing;
use pgpchat_actors::crypto::SecretCert;
use pgpchat_actors::events::now_secs;
use pgpchat_actors::net;
use pgpchat_actors::node::{start_node, NodeHandle};
use pgpchat_actors::store::ContactOrigin;
use pgpchat_actors::wire::{Frame, Purpose};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::{
    broadcast, free_udp_port, init_logs, open_discussion, settings, signed_announce, spawn_nodes,
    wait_contact, wait_until, RawPeer, TestNode,
};

/// Nodes that do not announce themselves: they meet only by address.
async fn quiet_nodes(names: &[&str]) -> Vec<TestNode> {
    init_logs();
    let port = free_udp_port();
    let mut v = Vec::new();
    for name in names {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = settings(name, &dir, port);
        s.discovery.enabled = false;
        let id = SecretCert::generate(name).expect("identity");
        let node = start_node(s, id).await.expect("node starts");
        v.push(TestNode::with_tmp(node, dir, tmp));
    }
    v
}

async fn err_of(node: &NodeHandle, address: &str) -> (ErrorKind, String) {
    let e = node.add_contact(address).await.expect_err("refused");
    (e.kind(), e.to_string())
}

#[actix_rt::test]
async fn a_contact_added_by_ipv4_or_by_name_is_one_as_by_broadcast_and_a_discussion_opens() {
    let n = quiet_nodes(&["alice", "bob", "carol"]).await;
    let (a, b, c) = (&n[0], &n[1], &n[2]);
    assert!(a.contacts().await.unwrap().is_empty(), "no broadcast here");
    let added = a
        .add_contact(&format!("127.0.0.1:{}", b.tcp_port))
        .await
        .expect("added by IPv4");
    assert_eq!(added.fingerprint, b.keys.fingerprint());
    assert_eq!((added.name.as_str(), added.tcp_port), ("bob", b.tcp_port));
    assert_eq!(added.origin, ContactOrigin::Added);
    assert!(!added.announce.is_empty(), "its signed announce is kept");
    assert!(
        added.probe.is_some(),
        "re-probed while broadcast cannot reach it"
    );
    let by_name = a
        .add_contact(&format!("localhost:{}", c.tcp_port))
        .await
        .expect("added by name");
    assert_eq!(by_name.fingerprint, c.keys.fingerprint());
    // The probed node learns nothing about the prober.
    assert!(b.contacts().await.unwrap().is_empty());
    let (opened, accepted) = open_discussion(a, b, "by address", "by address").await;
    assert_eq!(opened.expect("opened"), accepted.expect("accepted"));
}

#[actix_rt::test]
async fn a_known_name_added_by_address_with_another_key_raises_key_changed() {
    let n = quiet_nodes(&["alice", "bob", "bob"]).await;
    let (a, bob, impostor) = (&n[0], &n[1], &n[2]);
    let real = a
        .add_contact(&format!("127.0.0.1:{}", bob.tcp_port))
        .await
        .unwrap();
    assert!(!real.key_changed);
    let other = a
        .add_contact(&format!("127.0.0.1:{}", impostor.tcp_port))
        .await
        .unwrap();
    assert_eq!(other.name, "bob");
    assert!(other.key_changed, "same warning as discovery");
}

/// Today's listener, as a node from before probing runs it: the hello of version 1 decodes only
/// with the purposes it knows; anything else is dropped without a word, and a hello of another
/// version is answered with an `Error`.
mod old_node {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub enum OldPurpose {
        Handshake,
        Discussion {
            discussion_id: String,
            nonce: [u8; 32],
        },
    }

    #[derive(Serialize, Deserialize)]
    pub enum OldFrame {
        Hello { version: u16, purpose: OldPurpose },
    }
}

/// A listener that serves every connection with `serve`.
async fn serve_with<F, Fut>(serve: F) -> u16
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve(s));
        }
    });
    port
}

#[actix_rt::test]
async fn unreachable_addresses_other_protocols_and_old_nodes_are_clear_errors() {
    let n = quiet_nodes(&["alice"]).await;
    let a = &n[0];
    for bad in [
        "bob",
        "127.0.0.1",
        "127.0.0.1:0",
        "127.0.0.1:70000",
        "::1:4000",
        "a b:1",
    ] {
        let (kind, text) = err_of(a, bad).await;
        assert_eq!(kind, ErrorKind::InvalidParams, "{bad}: {text}");
        assert!(text.contains("HOST:PORT"), "{text}");
    }
    // Nothing listening.
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (kind, text) = err_of(a, &format!("127.0.0.1:{port}")).await;
    assert_eq!(kind, ErrorKind::Unreachable, "{text}");
    assert!(text.contains("cannot reach"), "{text}");
    // Another protocol on that port.
    let http = serve_with(|mut s| async move {
        let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n").await;
    })
    .await;
    let (kind, text) = err_of(a, &format!("127.0.0.1:{http}")).await;
    assert_eq!(kind, ErrorKind::Protocol, "{text}");
    assert!(text.contains("is not a pgpchat node"), "{text}");
    // An older pgpchat.
    let old = serve_with(|mut s| async move {
        // Frames are a big-endian u32 length, then bincode.
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
        if s.read_exact(&mut frame).await.is_err() {
            return;
        }
        if let Ok(old_node::OldFrame::Hello { version, .. }) = codec::decode(&frame) {
            if version != 1 {
                let reason = format!("unsupported protocol version {version}; this node speaks 1");
                let answer = codec::encode(&Frame::Error { reason }).unwrap();
                let mut out = (answer.len() as u32).to_be_bytes().to_vec();
                out.extend(answer);
                let _ = s.write_all(&out).await;
            }
        }
    })
    .await;
    let (kind, text) = err_of(a, &format!("127.0.0.1:{old}")).await;
    assert_eq!(kind, ErrorKind::Protocol, "{text}");
    assert!(text.contains("older pgpchat"), "{text}");
    assert!(a.contacts().await.unwrap().is_empty(), "nothing added");
}

/// A node that answers its first probe, then stays silent (accepts and closes): counts probes.
async fn answers_once(peer: Arc<RawPeer>, probes: Arc<AtomicUsize>) -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let mut conn = net::framed(s, 1 << 20);
            let Ok(Purpose::Probe { nonce }) =
                net::recv_hello(&mut conn, Duration::from_secs(5)).await
            else {
                continue;
            };
            if probes.fetch_add(1, Ordering::SeqCst) == 0 {
                let cert = peer.keys.public().to_bytes();
                let body =
                    pgpchat_actors::discovery::announce_body("dave", cert, port, nonce, true);
                net::probe::answer(&mut conn, &peer.keys, &body, Duration::from_secs(5))
                    .await
                    .unwrap();
            }
        }
    });
    port
}

#[actix_rt::test]
async fn a_silent_added_contact_is_reprobed_with_backoff() {
    let n = quiet_nodes(&["alice"]).await;
    let a = &n[0];
    let dave = Arc::new(RawPeer::new("dave"));
    let probes = Arc::new(AtomicUsize::new(0));
    let port = answers_once(dave.clone(), probes.clone()).await;
    a.add_contact(&format!("127.0.0.1:{port}"))
        .await
        .expect("added");
    let fp = dave.keys.fingerprint().to_string();
    // Each probe without an answer is recorded: the wait before the next one doubles.
    let state = wait_until(30, "three silent re-probes", || {
        let (a, fp) = (a.node.clone(), fp.clone());
        async move {
            let c = a
                .contacts()
                .await
                .ok()?
                .into_iter()
                .find(|c| c.fingerprint == fp)?;
            c.probe.filter(|p| p.failures >= 3)
        }
    })
    .await;
    let silent = probes.load(Ordering::SeqCst) - 1;
    assert!(
        silent >= state.failures as usize,
        "{silent} silent probes, {state:?}"
    );
    assert!(state.next <= now_secs() + probing::wait_secs(state.failures, 1));
    assert_eq!(probing::wait_secs(3, 1), 4, "1 s, then 2, 4...");
    // The contact stays (kept: added by the user), with its origin.
    let c = wait_contact(a, &fp).await;
    assert_eq!(c.origin, ContactOrigin::Added);
}

#[actix_rt::test]
async fn removed_contacts_are_forgotten_and_blocked_keys_are_ignored_until_unblocked() {
    let n = spawn_nodes(&["alice", "bob"]).await;
    let (a, b) = (&n[0], &n[1]);
    let b_fp = b.keys.fingerprint().to_string();
    wait_contact(a, &b_fp).await;
    let removed = a.remove_contact("bob").await.expect("removed");
    assert_eq!(removed.fingerprint, b_fp);
    assert!(a.find_contact("bob").await.is_err());
    // Broadcast brings it back, as broadcast.
    assert_eq!(
        wait_contact(a, &b_fp).await.origin,
        ContactOrigin::Broadcast
    );

    // Neither a fingerprint nor a contact: not found; a non-hex prefix to unblock: invalid.
    let e = a.block("nobody", true).await.expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = a
        .block("not a fingerprint", false)
        .await
        .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::InvalidParams, "{e}");
    assert_eq!(a.block(&b_fp.to_lowercase(), true).await.unwrap(), b_fp);
    // Its announces are verified (counted) and ignored: it does not come back.
    let accepted = a.discovery_stats().await.unwrap().accepted;
    let port = a.settings.discovery.port;
    let fresh = signed_announce(&b.keys, "bob", b.tcp_port, now_secs()).await;
    broadcast(&fresh, port);
    wait_until(20, "two more announces of bob", || {
        let a = a.node.clone();
        async move { (a.discovery_stats().await.ok()?.accepted >= accepted + 2).then_some(()) }
    })
    .await;
    assert!(
        a.find_contact(&b_fp).await.is_err(),
        "a blocked key's announces are ignored"
    );
    // ...and not answered (bob is the only other source on this network).
    let (accepted, replies) = {
        let s = a.discovery_stats().await.unwrap();
        (s.accepted, s.replies_sent)
    };
    broadcast(
        &signed_announce(&b.keys, "bob", b.tcp_port, now_secs()).await,
        port,
    );
    wait_until(20, "two more announces of bob", || {
        let a = a.node.clone();
        async move { (a.discovery_stats().await.ok()?.accepted >= accepted + 2).then_some(()) }
    })
    .await;
    assert_eq!(
        a.discovery_stats().await.unwrap().replies_sent,
        replies,
        "not answered"
    );
    // Its requests are turned away without asking the user.
    wait_contact(b, a.keys.fingerprint()).await;
    let e = b
        .open(a.keys.fingerprint(), "secret")
        .await
        .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    assert!(a.requests().await.unwrap().is_empty());
    // ...and listed among the requests turned away without asking, reason "blocked".
    let refused = a.refused_requests().await.unwrap();
    assert!(
        refused
            .iter()
            .any(|r| r.fingerprint == b_fp && r.reason == "blocked"),
        "{refused:?}"
    );
    assert_eq!(a.blocked().await.unwrap(), vec![b_fp.clone()]);
    // Unblocked: heard again, and its requests reach the user.
    // Unblocked by a prefix of the blocked fingerprint (its contact is forgotten: no name).
    assert_eq!(a.block(&b_fp[..8], false).await.unwrap(), b_fp);
    assert!(a.blocked().await.unwrap().is_empty());
    wait_contact(a, &b_fp).await;
    let (opened, accepted) = open_discussion(b, a, "s", "s").await;
    assert_eq!(opened.expect("opened"), accepted.expect("accepted"));
}

#[actix_rt::test]
async fn a_flood_of_announces_does_not_evict_a_contact_added_by_address() {
    const MAX_CONTACTS: usize = 3;
    init_logs();
    let port = free_udp_port();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let mut s = settings("alice", &dir, port);
    s.discovery.enabled = false;
    s.limits.max_contacts = MAX_CONTACTS;
    let a = start_node(s, SecretCert::generate("alice").unwrap())
        .await
        .unwrap();
    // Dave answers once, then goes silent: its contact is not refreshed by re-probes.
    let dave = Arc::new(RawPeer::new("dave"));
    let dave_port = answers_once(dave.clone(), Arc::new(AtomicUsize::new(0))).await;
    let added = a
        .add_contact(&format!("127.0.0.1:{dave_port}"))
        .await
        .unwrap();
    // The newcomers come a second later: the added contact is the least recently seen, the one an
    // eviction would pick.
    wait_until(5, "the next second", || async {
        (now_secs() > added.last_seen).then_some(())
    })
    .await;
    // Ten validly signed newcomers, more than the table holds.
    let accepted = a.discovery_stats().await.unwrap().accepted;
    for i in 0..10 {
        let k = RawPeer::new(&format!("flood{i}")).keys;
        broadcast(
            &signed_announce(&k, &format!("flood{i}"), 1, now_secs()).await,
            port,
        );
    }
    wait_until(30, "the ten announces to be verified", || {
        let a = a.clone();
        async move { (a.discovery_stats().await.ok()?.accepted >= accepted + 10).then_some(()) }
    })
    .await;
    let contacts = a.contacts().await.unwrap();
    assert!(contacts.len() <= MAX_CONTACTS, "{}", contacts.len());
    assert!(
        contacts
            .iter()
            .any(|c| c.fingerprint == dave.keys.fingerprint()),
        "the contact added by address is kept"
    );
}

/// The real binary: `add-contact` by IPv4 and by name, its errors, the origin in `contacts` (text
/// and JSON) kept across a restart, `remove-contact`, `block` and `unblock`.
mod binary {
    use crate::binary::Person;
    use crate::common::free_udp_port;

    /// A person whose core does not broadcast: met only by address.
    fn quiet(name: &str, port: u16) -> Person {
        let p = Person::new(name, port);
        let profile = std::fs::read_to_string(&p.config).unwrap();
        let profile = profile.replace(
            "interval_secs = 1\n",
            "interval_secs = 1\nenabled = false\n",
        );
        std::fs::write(&p.config, profile).unwrap();
        p.init();
        p
    }

    fn fails(p: &Person, args: &[&str]) -> String {
        let o = p.run(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    #[test]
    fn add_contact_by_address_shows_its_origin_across_a_restart_then_remove_and_block() {
        let port = free_udp_port();
        let (mut alice, mut bob) = (quiet("alice", port), quiet("bob", port));
        alice.start();
        bob.start();
        let bob_fp = bob.fingerprint();
        let at = format!("127.0.0.1:{}", bob.tcp_port());
        let added = alice.json(&["add-contact", &at]);
        assert_eq!(added["fingerprint"], bob_fp.as_str(), "{added}");
        assert_eq!(added["origin"]["kind"], "added", "{added}");
        let by_name = alice.ok(&["add-contact", &format!("localhost:{}", bob.tcp_port())]);
        assert!(
            by_name.contains("bob") && by_name.contains("added"),
            "{by_name}"
        );
        assert!(alice.ok(&["contacts"]).contains("added"));

        let e = fails(&alice, &["add-contact", "bob"]);
        assert!(e.contains("is not HOST:PORT"), "{e}");
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let nothing = format!("127.0.0.1:{}", free.local_addr().unwrap().port());
        drop(free);
        let e = fails(&alice, &["add-contact", &nothing]);
        assert!(e.contains("cannot reach"), "{e}");

        alice.kill();
        alice.start();
        let c = alice.json(&["contacts"]);
        assert_eq!(c[0]["fingerprint"], bob_fp.as_str(), "{c}");
        assert_eq!(
            c[0]["origin"]["kind"], "added",
            "kept across a restart: {c}"
        );

        alice.ok(&["remove-contact", "bob"]);
        assert_eq!(alice.json(&["contacts"]), serde_json::json!([]));
        let blocked = alice.json(&["block", &bob_fp]);
        assert_eq!(blocked["blocked"], true, "{blocked}");
        let e = fails(&alice, &["add-contact", &at]);
        assert!(e.contains("is blocked"), "{e}");
        assert_eq!(alice.json(&["blocked"]), serde_json::json!([bob_fp]));
        assert!(alice.ok(&["blocked"]).contains(&bob_fp));
        alice.ok(&["unblock", &bob_fp]);
        assert_eq!(alice.json(&["blocked"]), serde_json::json!([]));
        assert!(alice.ok(&["blocked"]).contains("no key is blocked"));
        assert_eq!(alice.json(&["add-contact", &at])["origin"]["kind"], "added");

        // Block by name or by the 16 digits `contacts` shows; unblock by a prefix.
        let blocked = alice.json(&["block", "bob"]);
        assert_eq!(blocked["fingerprint"], bob_fp.as_str(), "{blocked}");
        alice.ok(&["unblock", &bob_fp[..16]]);
        alice.json(&["add-contact", &at]);
        alice.ok(&["block", &bob_fp[..16]]);
        assert_eq!(alice.json(&["blocked"]), serde_json::json!([bob_fp]));
        let e = fails(&alice, &["block", "nobody"]);
        assert!(e.contains("no contact matches 'nobody'"), "{e}");
        let e = fails(&alice, &["unblock", "%%"]);
        assert!(e.contains("40 or 64 hexadecimal digits"), "{e}");
        assert!(!e.contains("(40 hexadecimal"), "{e}");
        alice.kill();
        bob.kill();
    }

    /// The port `add-contact` needs is shown by `whoami` and `status` (the running core's), and
    /// without a core `whoami` says where it comes from.
    #[test]
    fn whoami_and_status_show_the_main_tcp_port() {
        let mut alice = quiet("alice", free_udp_port());
        let w = alice.json(&["whoami"]);
        assert_eq!(w["tcp_port"], serde_json::Value::Null, "{w}");
        assert_eq!(w["core_running"], false, "{w}");
        assert!(
            alice.ok(&["whoami"]).contains("chosen by the running core"),
            "no core: says where the port comes from"
        );
        assert!(!alice.run(&["status"]).status.success(), "no core");
        alice.start();
        let port = alice.tcp_port();
        let w = alice.json(&["whoami"]);
        assert_eq!(w["tcp_port"], port, "{w}");
        assert!(
            alice.ok(&["whoami"]).contains(&format!("TCP port {port}")),
            "human whoami shows the port"
        );
        assert_eq!(alice.json(&["status"])["whoami"]["tcp_port"], port);
        assert!(alice.ok(&["status"]).contains(&format!("TCP port {port}")));
        // The DHT's state (issue 11): off in the shipped profiles.
        assert!(alice.ok(&["status"]).contains("DHT: off"));
        assert_eq!(alice.json(&["status"])["dht"]["enabled"], false);
        alice.kill();
    }
}
