//! Delivery in one process: cuts, duplicates, gaps, misdirected frames and replayed proofs.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use pgpchat_actors::crypto::{verify_detached, SecretCert};
use pgpchat_actors::discussions::Lookup;
use pgpchat_actors::events::{now_secs, Event};
use pgpchat_actors::handshake::random_nonce;
use pgpchat_actors::keys::KeysHandle;
use pgpchat_actors::net::chat::encrypt_chat;
use pgpchat_actors::net::Crypto as _;
use pgpchat_actors::net::{self, requester, Conn, SessionKeys};
use pgpchat_actors::node::NodeHandle;
use pgpchat_actors::session::Reconnect;
use pgpchat_actors::store::{DeliveryState, Direction, DiscussionState};
use pgpchat_actors::wire::{
    ack_data, close_data, session_auth_data_at, ChatPayload, Frame, Purpose, Role, PROTOCOL_VERSION,
};
use tokio::net::TcpStream;

use crate::common::*;

const T: Duration = Duration::from_secs(10);

/// The test itself is the requester: a full handshake with `b` (whose user accepts), done with the
/// library's requester driver. Returns the discussion id, our session keys and b's discussion port.
pub(crate) async fn handshake_as_test_peer(
    b: &NodeHandle,
) -> (String, SessionKeys, u16, KeysHandle) {
    let peer = RawPeer::new("tester");
    let b_cert = b.keys.public().clone();
    let mut conn = peer.dial_handshake(b).await;
    let keys = peer.keys;
    let b2 = b.clone();
    let accepting = actix_rt::spawn(async move {
        let r = wait_until(10, "request", || {
            let b2 = b2.clone();
            async move { b2.requests().await.ok()?.into_iter().next() }
        })
        .await;
        b2.accept(r.id, "pw").await.unwrap()
    });
    let deadlines = requester::Deadlines {
        step: T,
        decision: T,
    };
    let done = requester::request(&mut conn, &keys, &b_cert, "b", "pw".into(), deadlines)
        .await
        .unwrap();
    let discussion_id = done.agreed.discussion_id.clone();
    assert_eq!(accepting.await.unwrap(), discussion_id);
    let sk = SessionKeys::new(
        discussion_id.clone(),
        Role::Requester,
        Arc::new(done.own_key),
        done.agreed.peer_discussion_key,
    );
    (discussion_id, sk, done.port, keys)
}

/// The next `discussion_closed` event for `id`, within `T`: its `by_peer`.
async fn closed_event(events: &mut tokio::sync::broadcast::Receiver<Event>, id: &str) -> bool {
    use tokio::sync::broadcast::error::RecvError;
    tokio::time::timeout(T, async {
        loop {
            match events.recv().await {
                Ok(Event::DiscussionClosed {
                    discussion_id,
                    by_peer,
                }) if discussion_id == id => return by_peer,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => panic!("the event bus closed"),
            }
        }
    })
    .await
    .expect("a discussion_closed event")
}

/// What `close --force` keeps on our side: our `Close`, signed with our discussion key.
async fn our_close_notice(sk: &SessionKeys, keys: &KeysHandle) -> net::CloseNotice {
    net::CloseNotice {
        discussion_id: sk.discussion_id.clone(),
        peer: sk.peer.clone(),
        proof: keys
            .sign_with(sk.own.clone(), close_data(&sk.discussion_id))
            .await
            .unwrap(),
    }
}

/// A framed connection to a local port.
pub(crate) async fn dial(port: u16) -> Conn<TcpStream> {
    net::framed(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap(),
        1 << 20,
    )
}

fn chat(sk: &SessionKeys, seq: u64, body: &str) -> Frame {
    let p = ChatPayload {
        discussion_id: sk.discussion_id.clone(),
        seq,
        time: now_secs(),
        recipient: sk.peer.fingerprint().to_string(),
        body: body.into(),
    };
    Frame::Chat(encrypt_chat(&sk.own, &sk.peer, &p).unwrap())
}

/// Expect the next frame to be an ack for `upto`, correctly signed by the peer's discussion key.
async fn expect_ack(conn: &mut Conn<TcpStream>, sk: &SessionKeys, upto: u64) {
    match net::recv(conn, T).await.unwrap() {
        Frame::Ack {
            upto: got,
            signature,
        } => {
            assert_eq!(got, upto, "acknowledged up to");
            verify_detached(&sk.peer, &ack_data(&sk.discussion_id, got), &signature).unwrap();
        }
        other => panic!("expected an ack, got {other:?}"),
    }
}

async fn bodies_in(b: &NodeHandle, id: &str) -> Vec<String> {
    b.history(id, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.direction == Direction::In)
        .map(|m| m.body)
        .collect()
}

#[actix_rt::test]
async fn duplicates_gaps_and_misdirected_frames() {
    let n = spawn_nodes(&["bob"]).await;
    let b = &n[0];
    let (id, sk, port, keys) = handshake_as_test_peer(b).await;
    let mut conn = dial(port).await;
    let told = net::authenticate_as_connector(&mut conn, &keys, &sk, T)
        .await
        .unwrap();
    assert_eq!(told, port, "the listener tells its port, signed");

    net::send(&mut conn, chat(&sk, 1, "one"), T).await.unwrap();
    expect_ack(&mut conn, &sk, 1).await;
    net::send(&mut conn, chat(&sk, 1, "one"), T).await.unwrap(); // a re-send after a lost ack
    expect_ack(&mut conn, &sk, 1).await;
    net::send(&mut conn, chat(&sk, 3, "three"), T)
        .await
        .unwrap(); // a gap: not stored, not acked
    net::send(&mut conn, chat(&sk, 2, "two"), T).await.unwrap();
    expect_ack(&mut conn, &sk, 2).await;
    net::send(&mut conn, chat(&sk, 3, "three"), T)
        .await
        .unwrap();
    expect_ack(&mut conn, &sk, 3).await;

    // Moved from another discussion, or meant for someone else: dropped, never acked.
    let mut other = sk.clone();
    other.discussion_id = "ffffffffffffffffffffffffffffffff".into();
    net::send(&mut conn, chat(&other, 4, "elsewhere"), T)
        .await
        .unwrap();
    let stranger = SecretCert::generate("stranger").unwrap();
    let wrong = ChatPayload {
        discussion_id: id.clone(),
        seq: 4,
        time: now_secs(),
        recipient: stranger.fingerprint().into(),
        body: "not for bob".into(),
    };
    net::send(
        &mut conn,
        Frame::Chat(encrypt_chat(&sk.own, &sk.peer, &wrong).unwrap()),
        T,
    )
    .await
    .unwrap();
    // Signed by a key that is not the discussion's.
    let forged = SessionKeys::new(
        sk.discussion_id.clone(),
        sk.role,
        Arc::new(stranger),
        sk.peer.clone(),
    );
    net::send(&mut conn, chat(&forged, 4, "forged"), T)
        .await
        .unwrap();
    net::send(&mut conn, Frame::Chat(vec![0x85, 0x01, 0x02]), T)
        .await
        .unwrap(); // garbage OpenPGP
    net::send(&mut conn, chat(&sk, 4, "four"), T).await.unwrap();
    expect_ack(&mut conn, &sk, 4).await;

    assert_eq!(bodies_in(b, &id).await, ["one", "two", "three", "four"]);
}

#[actix_rt::test]
async fn a_replayed_reconnection_proof_is_refused() {
    let n = spawn_nodes(&["bob"]).await;
    let b = &n[0];
    let (id, sk, port, keys) = handshake_as_test_peer(b).await;
    let nonce = random_nonce();
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION,
        purpose: Purpose::Discussion {
            discussion_id: id.clone(),
            nonce,
        },
    };

    // A legitimate connection, recorded.
    let mut first = dial(port).await;
    net::send(&mut first, hello.clone(), T).await.unwrap();
    let Frame::SessionAuth {
        nonce: listener_nonce,
        ..
    } = net::recv(&mut first, T).await.unwrap()
    else {
        panic!("no challenge")
    };
    let proof = keys
        .sign_with(
            sk.own.clone(),
            session_auth_data_at(
                PROTOCOL_VERSION,
                &id,
                Role::Requester,
                &listener_nonce,
                &nonce,
                0,
            ),
        )
        .await
        .unwrap();
    let recorded = Frame::SessionAuth {
        nonce,
        port: 0,
        signature: proof,
    };
    net::send(&mut first, recorded.clone(), T).await.unwrap();
    net::send(&mut first, chat(&sk, 1, "legit"), T)
        .await
        .unwrap();
    expect_ack(&mut first, &sk, 1).await;

    // The attacker replays the same hello and the recorded proof: the listener's fresh nonce differs.
    let mut replay = dial(port).await;
    net::send(&mut replay, hello, T).await.unwrap();
    let Frame::SessionAuth { nonce: fresh, .. } = net::recv(&mut replay, T).await.unwrap() else {
        panic!("no challenge")
    };
    assert_ne!(fresh, listener_nonce);
    net::send(&mut replay, recorded, T).await.unwrap();
    let _ = net::send(&mut replay, chat(&sk, 2, "replayed"), T).await;
    assert!(matches!(
        net::recv(&mut replay, T).await,
        Err(net::NetError::Closed) | Err(net::NetError::Codec(_))
    ));

    // The legitimate connection is still the discussion's.
    net::send(&mut first, chat(&sk, 2, "still legit"), T)
        .await
        .unwrap();
    expect_ack(&mut first, &sk, 2).await;
    assert_eq!(bodies_in(b, &id).await, ["legit", "still legit"]);
}

#[actix_rt::test]
async fn a_cut_connection_is_re_established_and_nothing_is_lost() {
    let n = spawn_nodes(&["alice", "bob"]).await;
    let (a, b) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    let (opened, _) = open_discussion(a, b, "pw", "pw").await;
    let id = opened.unwrap();
    for i in 0..3 {
        a.send(&id, &format!("before {i}")).await.unwrap();
    }
    wait_until(
        30,
        "the first messages delivered (so the connection is up)",
        || {
            let a = a.node.clone();
            let id = id.clone();
            async move {
                let h = a.history(&id, 100).await.ok()?;
                (h.len() == 3 && h.iter().all(|m| m.state == DeliveryState::Delivered))
                    .then_some(())
            }
        },
    )
    .await;
    let mut events = a.subscribe();
    // bob drops the connection (as a network blip would); alice keeps sending meanwhile.
    let session = b.directory.send(Lookup(id.clone())).await.unwrap().unwrap();
    session.send(Reconnect).await.unwrap();
    for i in 0..20 {
        a.send(&id, &format!("during {i}")).await.unwrap();
    }
    let h = wait_until(30, "everything delivered", || {
        let a = a.node.clone();
        let id = id.clone();
        async move {
            let h = a.history(&id, 100).await.ok()?;
            h.iter()
                .all(|m| m.state == DeliveryState::Delivered)
                .then_some(h)
        }
    })
    .await;
    assert_eq!(h.len(), 23);
    let want: Vec<String> = (0..3)
        .map(|i| format!("before {i}"))
        .chain((0..20).map(|i| format!("during {i}")))
        .collect();
    assert_eq!(bodies_in(b, &id).await, want, "exactly once, in order");
    let mut saw = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::Connection { connected, .. } = e {
            saw.push(connected);
        }
    }
    assert!(
        saw.windows(2).any(|w| w == [false, true]),
        "disconnected, then reconnected: {saw:?}"
    );
}

#[actix_rt::test]
async fn a_forged_close_is_refused_and_a_genuine_one_closes_the_discussion() {
    let n = spawn_nodes(&["bob"]).await;
    let b = &n[0];
    let (id, sk, port, keys) = handshake_as_test_peer(b).await;
    let state = |b: NodeHandle, id: String| async move {
        b.discussions()
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.id == id)
            .map(|d| d.state)
    };

    // A close from someone without our discussion key (say a man in the middle): refused, nothing
    // changes, and the discussion still carries messages.
    let stranger = SecretCert::generate("stranger").unwrap();
    let forged = net::CloseNotice {
        discussion_id: id.clone(),
        peer: sk.peer.clone(),
        proof: stranger.sign_detached(&close_data(&id)).unwrap(),
    };
    let mut conn = dial(port).await;
    assert!(net::tell_closed_as_connector(&mut conn, &keys, &forged, T)
        .await
        .is_err());
    assert_eq!(
        state(b.node.clone(), id.clone()).await,
        Some(DiscussionState::Open)
    );
    let mut conn = dial(port).await;
    net::authenticate_as_connector(&mut conn, &keys, &sk, T)
        .await
        .unwrap();
    net::send(&mut conn, chat(&sk, 1, "still open"), T)
        .await
        .unwrap();
    expect_ack(&mut conn, &sk, 1).await;
    drop(conn);

    // The genuine close, signed with the discussion key before it was destroyed (what `close
    // --force` keeps): bob confirms with his own, verified here, and closes.
    let mut events = b.node.subscribe();
    let genuine = our_close_notice(&sk, &keys).await;
    let mut conn = dial(port).await;
    net::tell_closed_as_connector(&mut conn, &keys, &genuine, T)
        .await
        .expect("bob confirms");
    let by_peer = closed_event(&mut events, &id).await;
    assert!(by_peer);
    assert_eq!(
        state(b.node.clone(), id.clone()).await,
        Some(DiscussionState::Closed)
    );
    let own = {
        let i = id.clone();
        b.node
            .store
            .run(move |s| s.discussion(&i))
            .await
            .unwrap()
            .own_key_sealed
    };
    assert!(own.is_empty(), "bob's discussion key is destroyed");
}

#[actix_rt::test]
async fn a_lost_close_confirmation_is_given_again_on_the_next_connection() {
    let n = spawn_nodes(&["bob"]).await;
    let b = &n[0];
    let (id, sk, port, keys) = handshake_as_test_peer(b).await;
    let mut events = b.node.subscribe();
    let mut conn = dial(port).await;
    net::authenticate_as_connector(&mut conn, &keys, &sk, T)
        .await
        .unwrap();
    let close = keys
        .sign_with(sk.own.clone(), close_data(&id))
        .await
        .unwrap();
    net::send(&mut conn, Frame::Close { signature: close }, T)
        .await
        .unwrap();
    closed_event(&mut events, &id).await; // bob closes
    drop(conn); // bob's confirmation is lost with this connection

    // We reconnect as a closing requester would: bob's discussion listener is gone, his main
    // listener answers with the `Close` he kept, signed by his discussion key.
    let mut conn = dial(b.tcp_port).await;
    match net::authenticate_as_connector(&mut conn, &keys, &sk, T).await {
        Err(net::NetError::PeerClosedDiscussion(signature)) => {
            net::confirm_close(&mut conn, &keys, &sk, signature, T)
                .await
                .expect("bob's kept close verifies with his discussion key");
        }
        other => panic!("expected bob's close, got {other:?}"),
    }
}

#[actix_rt::test]
async fn a_closing_receiver_whose_confirmation_was_lost_dials_the_requester() {
    let n = spawn_nodes(&["bob"]).await;
    let b = &n[0];
    let (id, sk, port, keys) = handshake_as_test_peer(b).await;
    // We announce ourselves, so bob knows where our main listener is.
    let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port_main = main.local_addr().unwrap().port();
    broadcast(
        &signed_announce(&keys, "tester", port_main, now_secs()).await,
        b.settings.discovery.port,
    );
    wait_contact(b, keys.fingerprint()).await;

    // Bob closes while we are connected; we take his Close and close our side, and the
    // confirmation is lost with the connection.
    let mut conn = dial(port).await;
    net::authenticate_as_connector(&mut conn, &keys, &sk, T)
        .await
        .unwrap();
    let (_, state) = b.node.close(&id, false).await.unwrap();
    assert_eq!(state, DiscussionState::Closing);
    match net::recv(&mut conn, T).await.unwrap() {
        Frame::Close { signature } => {
            verify_detached(&sk.peer, &close_data(&id), &signature).unwrap()
        }
        other => panic!("expected bob's close, got {other:?}"),
    }
    drop(conn);

    // We are the requester and closed: we never dial again. Bob, still closing, comes to our main
    // listener, and our kept Close (where our proof would be) ends it.
    let (stream, _) = tokio::time::timeout(Duration::from_secs(30), main.accept())
        .await
        .expect("bob dials our main listener")
        .unwrap();
    let mut conn = net::framed(stream, 1 << 20);
    match net::recv_hello(&mut conn, T).await.unwrap() {
        Purpose::Discussion { discussion_id, .. } => assert_eq!(discussion_id, id),
        other => panic!("unexpected hello {other:?}"),
    }
    let notice = our_close_notice(&sk, &keys).await;
    net::tell_closed_as_listener(&mut conn, &keys, &notice, T)
        .await
        .expect("bob confirms again");
    wait_until(10, "bob's side closed", || {
        let (b, id) = (b.node.clone(), id.clone());
        async move {
            b.discussions()
                .await
                .ok()?
                .into_iter()
                .find(|d| d.id == id && d.state == DiscussionState::Closed)
        }
    })
    .await;
}

/// The peer closes while our outbox is not empty (found by a new user: messages sent while the
/// peer was away stayed `stored` for ever when it closed on its return). We keep delivering: our
/// `Close` confirmation comes only once the peer has acknowledged every message, so nothing is
/// lost; meanwhile `send` is refused.
#[actix_rt::test]
async fn a_peer_that_closes_gets_our_outbox_before_our_confirmation() {
    let n = spawn_nodes(&["bob"]).await;
    let b = &n[0];
    let (id, sk, port, keys) = handshake_as_test_peer(b).await;
    // bob writes while we (the test peer) are away.
    for body in ["first while away", "second while away"] {
        b.send(&id, body).await.unwrap();
    }
    let mut events = b.node.subscribe();
    let mut conn = dial(port).await;
    net::authenticate_as_connector(&mut conn, &keys, &sk, T)
        .await
        .unwrap();
    // We come back and close at once, as `close` right after a restart does.
    let close = keys
        .sign_with(sk.own.clone(), close_data(&id))
        .await
        .unwrap();
    net::send(&mut conn, Frame::Close { signature: close }, T)
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        match net::recv(&mut conn, T).await.unwrap() {
            Frame::Chat(bytes) => {
                let p = pgpchat_actors::net::chat::decrypt_chat(&sk.own, &sk.peer, &bytes).unwrap();
                got.push(p.body);
            }
            other => panic!("expected bob's undelivered messages first, got {other:?}"),
        }
    }
    assert_eq!(got, ["first while away", "second while away"]);
    // Not acknowledged yet: bob must not confirm (his key would go with the messages unconfirmed).
    match tokio::time::timeout(Duration::from_millis(1500), net::recv(&mut conn, T)).await {
        Err(_) => {}
        Ok(frame) => panic!("bob answered before our ack: {frame:?}"),
    }
    assert!(
        b.send(&id, "too late").await.is_err(),
        "no new message once the peer closes"
    );
    let signature = keys
        .sign_with(sk.own.clone(), ack_data(&id, 2))
        .await
        .unwrap();
    net::send(&mut conn, Frame::Ack { upto: 2, signature }, T)
        .await
        .unwrap();
    match net::recv(&mut conn, T).await.unwrap() {
        Frame::Close { signature } => {
            verify_detached(&sk.peer, &close_data(&id), &signature).unwrap();
        }
        other => panic!("expected bob's close, got {other:?}"),
    }
    assert!(closed_event(&mut events, &id).await, "closed by the peer");
    let h = b.history(&id, 100).await.unwrap();
    assert_eq!(h.len(), 2, "the refused message was not stored");
    assert!(
        h.iter().all(|m| m.state == DeliveryState::Delivered),
        "both delivered: {h:?}"
    );
}

/// Frames that arrive together (one write: read in one batch, `INBOUND_BATCH`) are handled in the
/// order they came, although chat runs are opened and stored together and actix runs pending
/// waits newest first: chat frames, an ack for bob's outbox, more chat, then the peer's `Close`.
/// Each message is stored once and in order before the close; the ack is taken before the close
/// (else bob would wait for it, his outbox seemingly undelivered); then bob confirms and closes.
#[actix_rt::test]
async fn chat_ack_and_close_frames_sent_together_are_handled_in_their_order() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let n = spawn_nodes(&["bob"]).await;
    let b = &n[0];
    let (id, sk, port, keys) = handshake_as_test_peer(b).await;
    for body in ["bob one", "bob two"] {
        b.send(&id, body).await.unwrap();
    }
    let mut events = b.node.subscribe();
    let mut conn = dial(port).await;
    net::authenticate_as_connector(&mut conn, &keys, &sk, T)
        .await
        .unwrap();
    for _ in 0..2 {
        match net::recv(&mut conn, T).await.unwrap() {
            Frame::Chat(_) => {}
            other => panic!("expected bob's outbox, got {other:?}"),
        }
    }
    let ack = keys
        .sign_with(sk.own.clone(), ack_data(&id, 2))
        .await
        .unwrap();
    let close = keys
        .sign_with(sk.own.clone(), close_data(&id))
        .await
        .unwrap();
    let mut frames: Vec<Frame> = (1..=5).map(|i| chat(&sk, i, &format!("m{i}"))).collect();
    frames.push(Frame::Ack {
        upto: 2,
        signature: ack,
    });
    frames.push(chat(&sk, 6, "m6"));
    frames.push(Frame::Close { signature: close });
    // Encoded one after the other, written to the socket at once.
    let (encode, mut encoded) = tokio::io::duplex(1 << 22);
    let mut encode = net::framed(encode, 1 << 20);
    for f in frames {
        net::send(&mut encode, f, T).await.unwrap();
    }
    drop(encode);
    let mut bytes = Vec::new();
    encoded.read_to_end(&mut bytes).await.unwrap();
    conn.get_mut().write_all(&bytes).await.unwrap();
    // Bob's answers: acks for what he stored, then his confirming close.
    let mut acked = 0;
    loop {
        match net::recv(&mut conn, T).await.unwrap() {
            Frame::Ack { upto, signature } => {
                verify_detached(&sk.peer, &ack_data(&id, upto), &signature).unwrap();
                assert!(upto > acked, "acks go up: {upto} after {acked}");
                acked = upto;
            }
            Frame::Close { signature } => {
                verify_detached(&sk.peer, &close_data(&id), &signature).unwrap();
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(acked, 6, "every message acknowledged before the close");
    assert!(closed_event(&mut events, &id).await, "closed by the peer");
    assert_eq!(
        bodies_in(b, &id).await,
        ["m1", "m2", "m3", "m4", "m5", "m6"]
    );
    let h = b.history(&id, 100).await.unwrap();
    assert!(
        h.iter()
            .filter(|m| m.direction == Direction::Out)
            .all(|m| m.state == DeliveryState::Delivered),
        "bob's outbox delivered by the ack: {h:?}"
    );
}
