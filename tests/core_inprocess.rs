//! Several complete nodes in one actix System over real loopback sockets.

use crate::common::*;
use pgpchat_actors::store::{DeliveryState, Direction};

#[actix_rt::test]
async fn discovery_works_both_ways() {
    let n = spawn_nodes(&["alice", "bob"]).await;
    wait_sees(&n[0], &n[1]).await;
    wait_sees(&n[1], &n[0]).await;
    let c = n[0].contacts().await.unwrap();
    assert_eq!(c.len(), 1, "a node never lists itself");
    assert_eq!(c[0].name, "bob");
    assert_eq!(c[0].tcp_port, n[1].tcp_port);
    assert!(!c[0].key_changed);
}

#[actix_rt::test]
async fn discussion_with_the_right_secret_carries_messages_both_ways() {
    let n = spawn_nodes(&["alice", "bob"]).await;
    let (a, b) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    let (opened, accepted) = open_discussion(a, b, "purple tulip", "purple tulip").await;
    let id = opened.expect("alice's open succeeds");
    assert_eq!(accepted.expect("bob's accept succeeds"), id);

    for i in 1..=5 {
        a.send(&id, &format!("a{i}")).await.unwrap();
        b.send(&id, &format!("b{i}")).await.unwrap();
    }
    // Each side ends with 10 messages: its 5 delivered, the peer's 5 received once, in order.
    for (me, mine, theirs) in [(a, "a", "b"), (b, "b", "a")] {
        let h = wait_until(20, "all delivered", || {
            let me = me.node.clone();
            let id = id.clone();
            async move {
                let h = me.history(&id, 100).await.ok()?;
                let done = h.len() == 10
                    && h.iter()
                        .filter(|m| m.direction == Direction::Out)
                        .all(|m| m.state == DeliveryState::Delivered);
                done.then_some(h)
            }
        })
        .await;
        let out: Vec<_> = h
            .iter()
            .filter(|m| m.direction == Direction::Out)
            .map(|m| m.body.clone())
            .collect();
        let inn: Vec<_> = h
            .iter()
            .filter(|m| m.direction == Direction::In)
            .map(|m| m.body.clone())
            .collect();
        assert_eq!(
            out,
            (1..=5).map(|i| format!("{mine}{i}")).collect::<Vec<_>>()
        );
        assert_eq!(
            inn,
            (1..=5).map(|i| format!("{theirs}{i}")).collect::<Vec<_>>()
        );
    }
    // By name too: "bob" stands for alice's most recently opened discussion with bob.
    assert_eq!(a.resolve("bob").await.unwrap(), id);
    let (second, _) = open_discussion(a, b, "another secret", "another secret").await;
    let second = second.unwrap();
    assert_ne!(second, id);
    assert_eq!(a.resolve("bob").await.unwrap(), second);
    // Issue 12, defect 5: the newest discussion closed, the name means the older open one (a
    // `send bob` must not fail with "is closed" while a discussion with bob is open)...
    a.close(&second, true).await.unwrap();
    assert_eq!(a.resolve("bob").await.unwrap(), id, "the open one");
    a.send("bob", "still here").await.unwrap();
    // ... and with none open, the newest one (its history stays reachable by name).
    a.close(&id, true).await.unwrap();
    assert_eq!(
        a.resolve("bob").await.unwrap(),
        second,
        "none open: the newest"
    );
    assert_eq!(a.resolve(&id[..8]).await.unwrap(), id, "a unique id prefix");
    assert!(a.resolve("carol").await.is_err());
}

#[actix_rt::test]
async fn wrong_secret_is_refused_on_both_sides() {
    let n = spawn_nodes(&["alice", "bob"]).await;
    let (a, b) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    let (opened, accepted) = open_discussion(a, b, "purple tulip", "yellow tulip").await;
    let ea = opened.unwrap_err();
    let eb = accepted.unwrap_err();
    assert!(ea.contains("secrets do not match"), "alice: {ea}");
    assert!(eb.contains("secrets do not match"), "bob: {eb}");
    assert!(a.discussions().await.unwrap().is_empty());
    assert!(b.discussions().await.unwrap().is_empty());
}

#[actix_rt::test]
async fn simulate_runs_a_ring_of_nodes_and_reports() {
    init_logs();
    let r = pgpchat_actors::simulate::run(pgpchat_actors::simulate::SimulateOptions {
        nodes: 3,
        messages: 5,
        deadline: std::time::Duration::from_secs(120),
        interval_secs: None,
    })
    .await
    .expect("simulation");
    assert_eq!((r.nodes, r.discussions, r.messages), (3, 3, 15));
    assert_eq!(r.handshake.count, 3);
    assert_eq!(r.message.count, 15);
    assert!(r.message.p50_ms <= r.message.p99_ms && r.message.p99_ms <= r.message.max_ms);
    assert!(r.messages_per_second > 0.0 && r.peak_memory_kib > 0);
    // The interval is chosen for N and reported, with discovery in intervals and the idle cost.
    assert_eq!(
        r.announce_interval_secs,
        pgpchat_actors::simulate::announce_interval_for(3)
    );
    assert!(r.discovery_intervals > 0.0 && r.idle_cpu_percent >= 0.0);
}

/// `accept` keeps the handshake's error kind (it was an `Internal` string): the receiver's listener
/// answers the user's decision with the same typed error the handshake ended with.
#[actix_rt::test]
async fn a_failed_accept_keeps_its_error_kind() {
    use pgpchat_actors::listener::{Decide, ListenerError};
    use pgpchat_actors::node::NodeHandle;
    use pgpchat_actors::wire::FailReason;
    let n = spawn_nodes(&["alice", "bob"]).await;
    let (a, b): (&NodeHandle, &NodeHandle) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    let (a2, b_fp) = (a.clone(), b.keys.fingerprint().to_string());
    let opening = actix_rt::spawn(async move { a2.open(&b_fp, "purple tulip").await });
    let req = wait_until(20, "the request to arrive", || {
        let b = b.clone();
        async move { b.requests().await.ok()?.into_iter().next() }
    })
    .await;
    let decided = b
        .listener
        .send(Decide {
            request_id: req.id,
            password: Some("yellow tulip".into()),
        })
        .await
        .expect("listener");
    assert!(
        matches!(
            decided,
            Err(ListenerError::Failed(FailReason::WrongSecretOrIntercepted))
        ),
        "{decided:?}"
    );
    assert!(opening.await.expect("open task").is_err());
}

/// Our own user withdraws a request before the peer answered (issue 12, defect 2: Ctrl-C while
/// "waiting for bob to accept" used to leave it running, and the discussion opened later anyway).
#[actix_rt::test]
async fn a_cancelled_request_fails_its_open_and_disappears_from_the_peers_requests() {
    let n = spawn_nodes(&["alice", "bob"]).await;
    let (a, b) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    let (a2, b_fp) = (a.node.clone(), b.keys.fingerprint().to_string());
    let opening = actix_rt::spawn(async move { a2.open(&b_fp, "pw").await });
    let a_fp = a.keys.fingerprint().to_string();
    wait_until(20, "the request to arrive", || {
        let (b, a_fp) = (b.node.clone(), a_fp.clone());
        async move {
            let r = b.requests().await.ok()?;
            r.iter().any(|r| r.fingerprint == a_fp).then_some(())
        }
    })
    .await;
    assert_eq!(a.cancel("bob").await.unwrap(), 1);
    let e = opening.await.expect("open task").unwrap_err();
    assert_eq!(e.kind(), pgpchat_actors::api::ErrorKind::Cancelled, "{e}");
    wait_until(20, "bob's request to disappear", || {
        let b = b.node.clone();
        async move { b.requests().await.ok()?.is_empty().then_some(()) }
    })
    .await;
    assert!(a.discussions().await.unwrap().is_empty());
    // Nothing is waiting any more: a second cancel withdraws nothing.
    assert_eq!(a.cancel("bob").await.unwrap(), 0);
}
