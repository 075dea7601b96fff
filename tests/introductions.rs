//! Introductions (issue 10, part 3), several complete nodes in one process over loopback: carol,
//! who has a discussion with alice and with bob, introduces them; each side accepts or declines;
//! when both accept, the lower fingerprint dials and the other side accepts without asking its
//! user; the secret is gone from the store once the introduction ends.

use pgpchat_actors::events::Event;
use pgpchat_actors::introduction::IntroState;
use pgpchat_actors::node::NodeHandle;
use pgpchat_actors::store::introductions::ReceivedIntroduction;
use pgpchat_actors::store::{DeliveryState, Direction};

use crate::common::*;

fn fp(n: &NodeHandle) -> String {
    n.keys.fingerprint().to_string()
}

/// `n` learns `other` as a contact named `name`, as if added by address (without the probe: `other`
/// may sit on a discovery network of its own, and the name may be one `n` knows with another key).
async fn learn_contact(n: &NodeHandle, other: &NodeHandle, name: &str) {
    n.contacts
        .send(pgpchat_actors::contacts::AnnounceSeen {
            fingerprint: fp(other),
            cert: other.keys.public().to_bytes(),
            name: name.into(),
            address: std::net::Ipv4Addr::LOCALHOST.into(),
            tcp_port: other.tcp_port,
            time: pgpchat_actors::events::now_secs(),
            announce: vec![],
            origin: pgpchat_actors::store::ContactOrigin::Added,
            probe_address: None,
        })
        .await
        .unwrap();
}

/// `c` opens a discussion with each of `others` (c asks, each accepts). The set-up, not what is
/// tested: on a loaded machine a handshake step may time out, so it is tried again.
async fn discussions_with(c: &NodeHandle, others: &[&NodeHandle]) {
    for o in others {
        wait_sees(c, o).await;
        let mut last = String::new();
        let opened = 'tries: {
            for _ in 0..3 {
                match open_discussion(c, o, "tulip", "tulip").await {
                    (Ok(x), Ok(y)) if x == y => break 'tries true,
                    other => last = format!("{other:?}"),
                }
            }
            false
        };
        assert!(opened, "set-up discussion: {last}");
    }
}

/// The introduction made to `n` by `introducer`, once it is in state `state`.
async fn introduction_in(n: &NodeHandle, peer: &str, state: IntroState) -> ReceivedIntroduction {
    wait_until(30, &format!("an introduction in state {state:?}"), || {
        let (n, peer) = (n.clone(), peer.to_string());
        async move {
            n.introductions()
                .await
                .ok()?
                .into_iter()
                .find(|i| i.peer_fingerprint == peer && i.state == state)
        }
    })
    .await
}

/// The introduction of `peer` made to `n`, in whatever state.
async fn any_introduction(n: &NodeHandle, peer: &str) -> ReceivedIntroduction {
    wait_until(30, "an introduction", || {
        let (n, peer) = (n.clone(), peer.to_string());
        async move {
            n.introductions()
                .await
                .ok()?
                .into_iter()
                .find(|i| i.peer_fingerprint == peer)
        }
    })
    .await
}

async fn secret_of(n: &NodeHandle, local_id: i64) -> Option<Vec<u8>> {
    n.store
        .run(move |s| s.introduction_secret(local_id))
        .await
        .unwrap()
}

/// The discussion between `a` and the peer `peer`, if one is open.
async fn discussion_with(a: &NodeHandle, peer: &str) -> Option<String> {
    a.discussions()
        .await
        .ok()?
        .into_iter()
        .find(|d| d.peer_fingerprint == peer)
        .map(|d| d.id)
}

#[actix_rt::test]
async fn both_accept_and_the_introduced_chat_without_any_request_to_accept() {
    let n = spawn_nodes(&["alice", "bob", "carol"]).await;
    let (a, b, c) = (&n[0].node, &n[1].node, &n[2].node);
    discussions_with(c, &[a, b]).await;
    let (mut ea, mut eb) = (a.subscribe(), b.subscribe());

    c.introduce(&fp(a), &fp(b)).await.expect("introduce");
    let ia = introduction_in(a, &fp(b), IntroState::Pending).await;
    let ib = introduction_in(b, &fp(a), IntroState::Pending).await;
    assert_eq!(
        (ia.introducer_fingerprint.as_str(), ia.peer_name.as_str()),
        (fp(c).as_str(), "bob")
    );
    assert_eq!(ib.introducer_name, "carol");
    assert!(!ia.key_changed && !ib.key_changed);
    assert!(
        secret_of(a, ia.local_id).await.is_some(),
        "sealed while it lives"
    );

    a.decide_introduction(ia.local_id, true)
        .await
        .expect("alice accepts");
    b.decide_introduction(ib.local_id, true)
        .await
        .expect("bob accepts");
    let id = wait_until(40, "the introduced discussion", || {
        let (a, b_fp) = (a.clone(), fp(b));
        async move { discussion_with(&a, &b_fp).await }
    })
    .await;
    wait_until(20, "bob's side of it", || {
        let (b, a_fp, id) = (b.clone(), fp(a), id.clone());
        async move { discussion_with(&b, &a_fp).await.filter(|d| *d == id) }
    })
    .await;

    a.send(&id, "hello bob").await.unwrap();
    b.send(&id, "hello alice").await.unwrap();
    for (me, theirs) in [(a, "hello alice"), (b, "hello bob")] {
        wait_until(30, "both messages delivered", || {
            let (me, id) = (me.clone(), id.clone());
            async move {
                let h = me.history(&id, 10).await.ok()?;
                let delivered = h
                    .iter()
                    .any(|m| m.direction == Direction::Out && m.state == DeliveryState::Delivered);
                let got = h
                    .iter()
                    .any(|m| m.direction == Direction::In && m.body == theirs);
                (delivered && got).then_some(())
            }
        })
        .await;
    }

    // Nobody was asked to accept a request; both introductions are used, their secrets gone.
    for events in [&mut ea, &mut eb] {
        while let Ok(e) = events.try_recv() {
            assert!(
                !matches!(e, Event::Request { .. }),
                "a user was asked: {e:?}"
            );
        }
    }
    for (n, i) in [(a, &ia), (b, &ib)] {
        let used = introduction_in(n, &i.peer_fingerprint, IntroState::Used).await;
        assert_eq!(used.discussion_id.as_deref(), Some(id.as_str()));
        assert_eq!(secret_of(n, i.local_id).await, None);
        // Deciding again says why, in words.
        let e = n.decide_introduction(i.local_id, true).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "introduction {} was already used (its discussion is open): nothing to decide",
                i.local_id
            )
        );
    }
    // Alice shows bob as introduced by carol, and not verified.
    let origin = a.introduced_contacts().await.unwrap();
    assert!(
        origin.contains(&(fp(b), fp(c), "carol".to_string())),
        "{origin:?}"
    );
    let bob = a
        .contacts()
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.fingerprint == fp(b))
        .unwrap();
    assert!(
        !bob.verified,
        "an introduced contact is never verified by itself"
    );
}

#[actix_rt::test]
async fn a_declined_introduction_opens_nothing_and_its_secret_is_gone_on_both_sides() {
    let n = spawn_nodes(&["alice", "bob", "carol"]).await;
    let (a, b, c) = (&n[0].node, &n[1].node, &n[2].node);
    discussions_with(c, &[a, b]).await;
    c.introduce(&fp(a), &fp(b)).await.expect("introduce");
    let ia = introduction_in(a, &fp(b), IntroState::Pending).await;
    let ib = introduction_in(b, &fp(a), IntroState::Pending).await;
    a.decide_introduction(ia.local_id, true).await.unwrap();
    b.decide_introduction(ib.local_id, false).await.unwrap();
    introduction_in(a, &fp(b), IntroState::Cancelled).await;
    introduction_in(b, &fp(a), IntroState::Declined).await;
    assert_eq!(secret_of(a, ia.local_id).await, None);
    assert_eq!(secret_of(b, ib.local_id).await, None);
    let e = b
        .decide_introduction(ib.local_id, true)
        .await
        .expect_err("no second decision");
    assert!(e.to_string().contains("was already declined"), "{e}");
    let e = a.decide_introduction(ia.local_id, false).await.unwrap_err();
    assert!(e.to_string().contains("was cancelled"), "{e}");
    // A request from bob is no longer accepted by itself: it waits for alice's user.
    let (b2, a_fp) = (b.clone(), fp(a));
    let opening = actix_rt::spawn(async move { b2.open(&a_fp, "guess").await });
    wait_until(20, "bob's request to wait for alice's user", || {
        let (a, b_fp) = (a.clone(), fp(b));
        async move {
            a.requests()
                .await
                .ok()?
                .into_iter()
                .find(|r| r.fingerprint == b_fp)
        }
    })
    .await;
    opening.abort();
    assert_eq!(discussion_with(a, &fp(b)).await, None);
}

#[actix_rt::test]
async fn an_introduction_left_unanswered_expires_and_its_secret_is_gone() {
    let n = spawn_nodes_with(&["alice", "bob", "carol"], |_, s| {
        s.limits.introduction_window_secs = 6;
    })
    .await;
    let (a, b, c) = (&n[0].node, &n[1].node, &n[2].node);
    discussions_with(c, &[a, b]).await;
    c.introduce(&fp(a), &fp(b)).await.expect("introduce");
    let (ia, ib) = (
        any_introduction(a, &fp(b)).await,
        any_introduction(b, &fp(a)).await,
    );
    // Alice accepts (on a slow machine the window may already be over: then it is refused);
    // bob never answers.
    if let Err(e) = a.decide_introduction(ia.local_id, true).await {
        assert!(e.to_string().contains("has expired"), "{e}");
    }
    introduction_in(a, &fp(b), IntroState::Expired).await;
    introduction_in(b, &fp(a), IntroState::Expired).await;
    assert_eq!(secret_of(a, ia.local_id).await, None);
    assert_eq!(secret_of(b, ib.local_id).await, None);
    let e = b.decide_introduction(ib.local_id, true).await.unwrap_err();
    assert!(e.to_string().contains("has expired"), "{e}");
    assert_eq!(discussion_with(a, &fp(b)).await, None);
    assert_eq!(discussion_with(b, &fp(a)).await, None);
}

#[actix_rt::test]
async fn a_request_claiming_an_introduction_with_a_wrong_secret_fails_and_counts() {
    let n = spawn_nodes(&["alice", "bob", "carol"]).await;
    let (a, b, c) = (&n[0].node, &n[1].node, &n[2].node);
    discussions_with(c, &[a, b]).await;
    c.introduce(&fp(a), &fp(b)).await.expect("introduce");
    let ia = introduction_in(a, &fp(b), IntroState::Pending).await;
    a.decide_introduction(ia.local_id, true).await.unwrap();
    let mut events = a.subscribe();
    // Bob (who never accepted, so holds the secret but says another) dials alice as the
    // introduction's dialer does.
    wait_sees(b, a).await;
    let e = b
        .listener
        .send(pgpchat_actors::listener::Open {
            contact: b.find_contact(&fp(a)).await.unwrap(),
            password: "not the introduction's secret".into(),
            asker_gone: None,
            introduced: true,
        })
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("secrets do not match"), "{e}");
    let mut seen = false;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline && !seen {
        match events.try_recv() {
            Ok(Event::HandshakeFailed {
                peer_fingerprint, ..
            }) if peer_fingerprint == fp(b) => seen = true,
            Ok(_) => {}
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    assert!(seen, "the wrong secret is a failed attempt at alice");
    assert!(
        a.requests().await.unwrap().is_empty(),
        "alice's user was not asked"
    );
    assert_eq!(discussion_with(a, &fp(b)).await, None);
    let still = a.introductions().await.unwrap();
    assert!(still
        .iter()
        .any(|i| i.local_id == ia.local_id && i.state == IntroState::Accepted));
}

#[actix_rt::test]
async fn an_introduced_name_known_with_another_key_raises_key_changed() {
    let n = spawn_nodes(&["alice", "bob", "carol"]).await;
    let (a, b, c) = (&n[0].node, &n[1].node, &n[2].node);
    wait_sees(a, b).await;
    // Another "bob", on a discovery network of its own: alice never heard it.
    let other = spawn_nodes(&["bob"]).await;
    let d = &other[0].node;
    learn_contact(c, d, "bob").await;
    discussions_with(c, &[a, d]).await;
    let mut events = a.subscribe();
    c.introduce(&fp(a), &fp(d)).await.expect("introduce");
    let i = introduction_in(a, &fp(d), IntroState::Pending).await;
    assert!(i.key_changed, "the introduction carries the warning");
    a.decide_introduction(i.local_id, true).await.unwrap();
    let warned = wait_until(20, "a key-changed event", || {
        let e = events.try_recv().ok();
        async move {
            match e {
                Some(Event::KeyChanged {
                    name,
                    new_fingerprint,
                    ..
                }) => Some((name, new_fingerprint)),
                _ => None,
            }
        }
    })
    .await;
    assert_eq!(warned, ("bob".to_string(), fp(d)));
    // "bob" still means the bob alice knew.
    assert_eq!(a.find_contact(&fp(b)).await.unwrap().name, "bob");
}

#[actix_rt::test]
async fn an_introduction_of_a_blocked_fingerprint_is_ignored() {
    let n = spawn_nodes(&["alice", "bob", "carol"]).await;
    let (a, b, c) = (&n[0], &n[1].node, &n[2].node);
    discussions_with(c, &[a, b]).await;
    // Alice blocked bob.
    a.block(&fp(b), true).await.unwrap();
    c.introduce(&fp(a), &fp(b)).await.expect("introduce");
    // Bob gets his; alice's is dropped (a second one, unblocked, shows the first was processed).
    introduction_in(b, &fp(a), IntroState::Pending).await;
    let other = spawn_nodes(&["dave"]).await;
    let d = &other[0].node;
    learn_contact(c, d, "dave").await;
    discussions_with(c, &[d]).await;
    c.introduce(&fp(a), &fp(d)).await.expect("introduce");
    introduction_in(a, &fp(d), IntroState::Pending).await;
    let all = a.introductions().await.unwrap();
    assert!(
        all.iter().all(|i| i.peer_fingerprint != fp(b)),
        "an introduction of a blocked fingerprint is ignored: {all:?}"
    );
}

/// F5: an accepted introduction does not capture the person's ordinary requests: bob's plain
/// `open` with a secret agreed out of band reaches alice's user, who accepts it.
#[actix_rt::test]
async fn an_ordinary_request_of_an_introduced_person_still_goes_to_the_user() {
    let n = spawn_nodes(&["alice", "bob", "carol"]).await;
    let (a, b, c) = (&n[0].node, &n[1].node, &n[2].node);
    discussions_with(c, &[a, b]).await;
    c.introduce(&fp(a), &fp(b)).await.expect("introduce");
    let ia = introduction_in(a, &fp(b), IntroState::Pending).await;
    a.decide_introduction(ia.local_id, true).await.unwrap();
    // Bob does not answer the introduction; he asks alice the ordinary way.
    wait_sees(b, a).await;
    let (opened, accepted) = open_discussion(b, a, "agreed-apart", "agreed-apart").await;
    let id = opened.expect("bob's ordinary request opens");
    assert_eq!(accepted.expect("alice's user accepts"), id);
    // The introduction is untouched: still accepted, its secret kept.
    let still = a.introductions().await.unwrap();
    assert!(still
        .iter()
        .any(|i| i.local_id == ia.local_id && i.state == IntroState::Accepted));
    assert!(secret_of(a, ia.local_id).await.is_some());
}

/// F1: an introduced key whose own name is "bob", beside the bob alice knows: the discussion
/// it opens is not named "bob", and "bob" still means the bob alice knew.
#[actix_rt::test]
async fn an_introduced_discussion_never_takes_a_known_name_of_another_key() {
    let n = spawn_nodes(&["alice", "bob", "carol"]).await;
    let (a, b, c) = (&n[0].node, &n[1].node, &n[2].node);
    let other = spawn_nodes(&["bob"]).await;
    let d = &other[0].node;
    learn_contact(c, d, "bob").await;
    discussions_with(c, &[a, d]).await;
    // Alice chats with the real bob.
    discussions_with(a, &[b]).await;
    let real = discussion_with(a, &fp(b)).await.expect("alice and bob");
    c.introduce(&fp(a), &fp(d)).await.expect("introduce");
    let ia = introduction_in(a, &fp(d), IntroState::Pending).await;
    let id_ = introduction_in(d, &fp(a), IntroState::Pending).await;
    a.decide_introduction(ia.local_id, true).await.unwrap();
    d.decide_introduction(id_.local_id, true).await.unwrap();
    let opened = wait_until(40, "the introduced discussion", || {
        let (a, d_fp) = (a.clone(), fp(d));
        async move {
            a.discussions()
                .await
                .ok()?
                .into_iter()
                .find(|x| x.peer_fingerprint == d_fp)
        }
    })
    .await;
    assert_ne!(opened.peer_name, "bob", "{opened:?}");
    assert!(opened.peer_name.starts_with("bob-"), "{opened:?}");
    assert_eq!(a.resolve("bob").await.unwrap(), real, "bob is still bob");
}

/// F3: ended introductions are bounded: 40 offers from one introducer, each ended at once (as an
/// offer-then-cancel would), leave at most the named number of ended rows, the newest.
#[actix_rt::test]
async fn ended_introductions_are_bounded_per_introducer_and_in_total() {
    use pgpchat_actors::introduction::{
        MAX_ENDED_INTRODUCTIONS, MAX_ENDED_INTRODUCTIONS_PER_INTRODUCER,
    };
    use pgpchat_actors::store::introductions::NewIntroduction;
    let n = spawn_nodes(&["alice"]).await;
    let a = &n[0].node;
    let row = |introducer: &str, k: usize| ReceivedIntroduction {
        local_id: 0,
        introducer_fingerprint: introducer.into(),
        id: format!("{k:032x}"),
        introducer_name: "carol".into(),
        introducer_discussion: "d".into(),
        peer_fingerprint: format!("{k:040X}"),
        peer_name: "bob".into(),
        peer_cert: vec![],
        peer_announce: None,
        peer_address: "127.0.0.1".into(),
        peer_port: 1,
        key_changed: false,
        state: IntroState::Pending,
        received: 1,
        expires: u64::MAX / 2,
        discussion_id: None,
    };
    let mut last = 0;
    for (introducer, count) in [
        ("C1", 40),
        ("C2", 40),
        ("C3", 40),
        ("C4", 40),
        ("C5", 40),
        ("C6", 40),
        ("C7", 40),
        ("C8", 40),
        ("C9", 40),
    ] {
        for k in 0..count {
            let new = NewIntroduction {
                row: row(introducer, k),
                sealed_secret: vec![1; 8],
            };
            last = a
                .store
                .run(move |s| {
                    let id = s.keep_introduction(&new, 2).unwrap();
                    s.set_introduction_state(id, IntroState::Cancelled, None)?;
                    Ok(id)
                })
                .await
                .unwrap();
        }
    }
    let all = a.introductions().await.unwrap();
    assert!(all.len() <= MAX_ENDED_INTRODUCTIONS, "{}", all.len());
    for c in ["C1", "C9"] {
        let from = all.iter().filter(|i| i.introducer_fingerprint == c).count();
        assert!(
            from <= MAX_ENDED_INTRODUCTIONS_PER_INTRODUCER,
            "{c}: {from}"
        );
    }
    assert!(all.iter().any(|i| i.local_id == last), "the newest is kept");
}

/// Control rows of `dir`'s store whose body is still there (an offer's body holds its secret).
fn control_bodies(dir: &std::path::Path) -> i64 {
    let db = files_under(dir)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "db"))
        .expect("the store's database");
    let conn = rusqlite::Connection::open_with_flags(
        &db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    conn.query_row(
        "SELECT COUNT(*) FROM messages WHERE kind = 'control' AND length(body) > 0",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// F2: once an introduction is used, the control rows that carried its offer (and so its
/// secret) keep no body, at both sides and at the introducer: an incoming one is dropped once
/// handled, an outgoing one once acknowledged.
#[actix_rt::test]
async fn a_used_introduction_leaves_no_control_row_with_its_offer() {
    let n = spawn_nodes(&["alice", "bob", "carol"]).await;
    let (a, b, c) = (&n[0].node, &n[1].node, &n[2].node);
    discussions_with(c, &[a, b]).await;
    c.introduce(&fp(a), &fp(b)).await.expect("introduce");
    let ia = introduction_in(a, &fp(b), IntroState::Pending).await;
    let ib = introduction_in(b, &fp(a), IntroState::Pending).await;
    a.decide_introduction(ia.local_id, true).await.unwrap();
    b.decide_introduction(ib.local_id, true).await.unwrap();
    introduction_in(a, &fp(b), IntroState::Used).await;
    introduction_in(b, &fp(a), IntroState::Used).await;
    for node in &n {
        wait_until(30, "no control row keeps its body", || {
            let dir = node.dir.clone();
            async move { (control_bodies(&dir) == 0).then_some(()) }
        })
        .await;
    }
}
