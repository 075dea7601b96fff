//! The limits on what unauthenticated requesters can do (docs/security.md, threats 2 and 6): guessing
//! the secret then hanging up, the guessing caps per key, per address and in all, the request queue,
//! and the crypto spent on a frame before its sender is known. Raw requesters bind chosen loopback
//! addresses (127.0.0.x) to stand for different hosts.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use pgpchat_actors::codec;
use pgpchat_actors::crypto::SecretCert;
use pgpchat_actors::events::{now_secs, Event};
use pgpchat_actors::handshake::Requester;
use pgpchat_actors::net::Crypto as _;
use pgpchat_actors::net::{self, Conn};
use pgpchat_actors::node::NodeHandle;
use pgpchat_actors::wire::{FailReason, Frame, Handshake, Purpose, PROTOCOL_VERSION};
use serde_json::json;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::broadcast;

use crate::common::*;

const T: Duration = Duration::from_secs(10);
const SECRET: &str = "the real secret";

pub fn lo(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// A TCP connection to `port` on 127.0.0.1 from the source address `from`.
pub async fn connect_from(from: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::from((from, 0)))?;
    s.connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
}

/// A handshake connection to `b` from `from`: the hello is sent.
async fn dial_handshake_from(from: Ipv4Addr, b: &NodeHandle) -> Conn<TcpStream> {
    let stream = connect_from(from, b.tcp_port).await.expect("connect");
    let mut conn = net::framed(stream, 1 << 20);
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION,
        purpose: Purpose::Handshake,
    };
    net::send(&mut conn, hello, T).await.expect("hello");
    conn
}

/// `peer`'s sealed `Request` to `b`, guessing `guess`.
async fn sealed_request(peer: &RawPeer, b: &NodeHandle, guess: &str) -> (Requester, Vec<u8>) {
    let dkey = SecretCert::generate("d").unwrap();
    let (state, req) = Requester::start(
        &peer.identity,
        "mallory",
        b.keys.fingerprint(),
        dkey.public(),
        guess.as_bytes(),
        now_secs(),
    );
    let sealed = peer
        .keys
        .seal(
            b.keys.public().clone(),
            codec::encode(&Handshake::Request(req)).unwrap(),
        )
        .await
        .unwrap();
    (state, sealed)
}

/// Send `frame` as a handshake from `from`; the open connection.
async fn send_from(from: Ipv4Addr, b: &NodeHandle, frame: Vec<u8>) -> Conn<TcpStream> {
    let mut conn = dial_handshake_from(from, b).await;
    net::send(&mut conn, Frame::Sealed(frame), T)
        .await
        .expect("request");
    conn
}

/// `b`'s next handshake step on `conn`, read as `peer`.
async fn read_step(
    peer: &RawPeer,
    b: &NodeHandle,
    conn: &mut Conn<TcpStream>,
    wait: Duration,
) -> Result<Handshake, net::NetError> {
    match net::recv(conn, wait).await? {
        Frame::Sealed(bytes) => {
            let d = peer.keys.unseal(bytes).await?;
            d.verify(b.keys.public())?;
            Ok(codec::decode(&d.plaintext)?)
        }
        other => Err(net::NetError::Unexpected(net::frame_name(&other))),
    }
}

/// Requests from `fp` waiting at `b`.
async fn waiting_from(b: &NodeHandle, fp: &str) -> usize {
    b.requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.fingerprint == fp)
        .count()
}

/// Wait until `b` lists a request from `peer`; its id.
async fn request_id(b: &NodeHandle, peer: &RawPeer) -> u64 {
    let fp = peer.identity.fingerprint().to_string();
    wait_until(10, "the request to reach the user", || {
        let (b, fp) = (b.clone(), fp.clone());
        async move {
            b.requests()
                .await
                .ok()?
                .into_iter()
                .find(|r| r.fingerprint == fp)
                .map(|r| r.id)
        }
    })
    .await
}

/// One guess by `peer` from `from`: its request is accepted by `b`'s user with the real secret,
/// the guesser checks its guess against the `Accept` and hangs up. What `b`'s user was told.
async fn guess_then_hang_up(peer: &RawPeer, b: &NodeHandle, from: Ipv4Addr) -> String {
    let (state, sealed) = sealed_request(peer, b, "a wrong guess").await;
    let mut conn = send_from(from, b, sealed).await;
    let id = request_id(b, peer).await;
    let b2 = b.clone();
    let accepting = actix_rt::spawn(async move { b2.accept(id, SECRET).await });
    let Handshake::Accept(accept) = read_step(peer, b, &mut conn, T).await.expect("Accept") else {
        panic!("expected an Accept");
    };
    // The confirmation in the Accept tells the guesser its guess was wrong; it hangs up.
    assert_eq!(
        state.on_accept(&accept).unwrap_err().reason(),
        FailReason::WrongSecretOrIntercepted
    );
    drop(conn);
    accepting
        .await
        .unwrap()
        .expect_err("no discussion")
        .to_string()
}

/// The next `request_refused` event's reason, within a few seconds.
async fn refused_reason(events: &mut broadcast::Receiver<Event>, fp: &str) -> String {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(Event::RequestRefused {
                fingerprint,
                reason,
                ..
            })) if fingerprint == fp => return reason,
            Ok(Ok(_)) => {}
            other => panic!("no request_refused event for {fp}: {other:?}"),
        }
    }
}

#[actix_rt::test]
async fn a_requester_that_hangs_up_after_the_accept_burns_an_attempt() {
    let n = spawn_nodes(&["bob"]).await;
    let b = &n[0];
    let mut events = b.subscribe();
    let m = RawPeer::new("mallory");
    let fp = m.identity.fingerprint().to_string();
    for _ in 0..3 {
        let told = guess_then_hang_up(&m, b, lo(1)).await;
        assert!(told.contains("guessing"), "the user is warned: {told}");
    }
    let mut reported = 0;
    while let Ok(e) = events.try_recv() {
        if let Event::HandshakeFailed {
            peer_fingerprint,
            reason,
        } = e
        {
            assert_eq!(peer_fingerprint, fp);
            assert!(reason.contains("guessing"), "{reason}");
            reported += 1;
        }
    }
    assert_eq!(reported, 3, "each hang-up is a handshake_failed event");
    // The key's attempts are spent: the next request is refused without asking the user.
    let (_, sealed) = sealed_request(&m, b, "another guess").await;
    let mut conn = send_from(lo(1), b, sealed).await;
    let answer = read_step(&m, b, &mut conn, T).await;
    assert!(
        matches!(
            answer,
            Ok(Handshake::Failed {
                reason: FailReason::TooManyAttempts
            })
        ),
        "{answer:?}"
    );
    assert_eq!(waiting_from(b, &fp).await, 0);
    assert!(refused_reason(&mut events, &fp).await.contains("this key"));
}

#[actix_rt::test]
async fn guessing_is_capped_in_all_but_trusted_contacts_still_get_through() {
    init_logs();
    let port = free_udp_port();
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut sb = settings("bob", tb.path(), port);
    sb.limits.max_failed_attempts_total = 4;
    let start = |s, name| async move {
        pgpchat_actors::node::start_node(s, SecretCert::generate(name).unwrap())
            .await
            .unwrap()
    };
    let a = start(settings("alice", ta.path(), port), "alice").await;
    let b = start(sb, "bob").await;
    wait_sees(&a, &b).await;
    // alice had a discussion with bob: from now on, strangers' failures cannot lock her out.
    let (opened, _) = open_discussion(&a, &b, "pw", "pw").await;
    opened.expect("first discussion");
    let mut events = b.subscribe();

    // Three strangers fail from alice's own address (127.0.0.1): the address is locked...
    for i in 0..3 {
        let s = RawPeer::new(&format!("stranger {i}"));
        guess_then_hang_up(&s, &b, lo(1)).await;
    }
    let late = RawPeer::new("late stranger");
    let (_, sealed) = sealed_request(&late, &b, "guess").await;
    let mut conn = send_from(lo(1), &b, sealed).await;
    let answer = read_step(&late, &b, &mut conn, T).await;
    assert!(
        matches!(
            answer,
            Ok(Handshake::Failed {
                reason: FailReason::TooManyAttempts
            })
        ),
        "{answer:?}"
    );
    let why = refused_reason(&mut events, late.identity.fingerprint()).await;
    assert!(why.contains("this address"), "{why}");
    // ...but not for alice.
    let (opened, _) = open_discussion(&a, &b, "pw2", "pw2").await;
    opened.expect("alice is not locked out by her address");

    // A fourth failure from a fresh address fills the cap of everyone's failures: a fresh key from
    // yet another address is refused without reaching the user, and the user is told why.
    guess_then_hang_up(&RawPeer::new("stranger 3"), &b, lo(2)).await;
    let fresh = RawPeer::new("fresh stranger");
    let (_, sealed) = sealed_request(&fresh, &b, "guess").await;
    let mut conn = send_from(lo(3), &b, sealed).await;
    let answer = read_step(&fresh, &b, &mut conn, T).await;
    assert!(
        matches!(
            answer,
            Ok(Handshake::Failed {
                reason: FailReason::TooManyAttempts
            })
        ),
        "{answer:?}"
    );
    assert_eq!(waiting_from(&b, fresh.identity.fingerprint()).await, 0);
    let why = refused_reason(&mut events, fresh.identity.fingerprint()).await;
    assert!(why.contains("all requesters"), "{why}");
    // `requests` keeps the refusals and their reasons for the user.
    let refused = b.refused_requests().await.unwrap();
    assert!(
        refused
            .iter()
            .any(|r| r.fingerprint == fresh.identity.fingerprint()
                && r.reason.contains("all requesters")
                && r.address == "127.0.0.3"),
        "{refused:?}"
    );
    // alice still gets through.
    let (opened, _) = open_discussion(&a, &b, "pw3", "pw3").await;
    opened.expect("alice is not locked out by everyone's failures");
}

#[actix_rt::test]
async fn one_key_or_one_address_cannot_fill_the_request_queue() {
    let n = spawn_nodes(&["alice", "bob"]).await;
    let (a, b) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    let (per_key, per_address) = (
        b.settings.limits.max_pending_requests_per_key,
        b.settings.limits.max_pending_requests_per_address,
    );
    let mut events = b.subscribe();
    let mut held = Vec::new();
    // One key from 127.0.0.2: its share of the queue, then Busy.
    let m = RawPeer::new("mallory");
    let busy = |answer: &Result<Handshake, net::NetError>| {
        matches!(
            answer,
            Ok(Handshake::Failed {
                reason: FailReason::Busy
            })
        )
    };
    for i in 0..=per_key {
        let (_, sealed) = sealed_request(&m, b, "x").await;
        let mut conn = send_from(lo(2), b, sealed).await;
        if i < per_key {
            let want = i + 1;
            let fp = m.identity.fingerprint().to_string();
            wait_until(10, "the request waiting", || {
                let (b, fp) = (b.node.clone(), fp.clone());
                async move { (waiting_from(&b, &fp).await == want).then_some(()) }
            })
            .await;
        } else {
            let answer = read_step(&m, b, &mut conn, T).await;
            assert!(busy(&answer), "{answer:?}");
            let why = refused_reason(&mut events, m.identity.fingerprint()).await;
            assert!(why.contains("this key"), "{why}");
        }
        held.push(conn);
    }
    // More keys from the same address: the address's share, then Busy.
    let mut n_waiting = per_key;
    loop {
        let k = RawPeer::new("mallory's friend");
        let (_, sealed) = sealed_request(&k, b, "x").await;
        let mut conn = send_from(lo(2), b, sealed).await;
        if n_waiting < per_address {
            request_id(b, &k).await;
            n_waiting += 1;
            held.push(conn);
            continue;
        }
        let answer = read_step(&k, b, &mut conn, T).await;
        assert!(busy(&answer), "{answer:?}");
        let why = refused_reason(&mut events, k.identity.fingerprint()).await;
        assert!(why.contains("this address"), "{why}");
        break;
    }
    assert_eq!(b.requests().await.unwrap().len(), per_address);
    // Front-ends see the refusals and why: IPC `requests {refused: true}`.
    let refused = ipc_call(b, json!({"refused": true})).await;
    let reasons: Vec<&str> = refused
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| r["reason"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(reasons.len(), 2, "{refused}");
    assert!(reasons[0].contains("this key") && reasons[1].contains("this address"));
    assert_eq!(
        ipc_call(b, json!({})).await.as_array().unwrap().len(),
        per_address
    );
    // Someone else can still ask, and be accepted.
    let (opened, accepted) = open_discussion(a, b, "pw", "pw").await;
    assert_eq!(opened.expect("open"), accepted.expect("accept"));
    drop(held);
}

/// The answer to `requests` with `params`, through `node`'s IPC socket.
async fn ipc_call(node: &TestNode, params: serde_json::Value) -> serde_json::Value {
    use std::io::{BufRead, BufReader, Write};
    let path = node.settings.ipc_socket();
    if !path.exists() {
        use actix::Actor;
        pgpchat_actors::ipc::IpcServer::bind(node.node.clone(), &path)
            .expect("ipc")
            .start();
    }
    let line = json!({"jsonrpc": "2.0", "id": 1, "method": "requests", "params": params});
    tokio::task::spawn_blocking(move || {
        let mut s = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        s.set_read_timeout(Some(T)).unwrap();
        writeln!(s, "{line}").unwrap();
        let mut answer = String::new();
        BufReader::new(s).read_line(&mut answer).expect("answer");
        let v: serde_json::Value = serde_json::from_str(&answer).expect("json");
        v["result"].clone()
    })
    .await
    .expect("client thread")
}

/// Length of the first OpenPGP packet (new-format header) of `msg`.
fn first_packet_len(msg: &[u8]) -> usize {
    match msg[1] {
        l @ 0..=191 => 2 + l as usize,
        l => 3 + ((l as usize - 192) << 8) + msg[2] as usize + 192,
    }
}

/// Whether `b` drops `conn` without an answer.
async fn dropped(conn: &mut Conn<TcpStream>) -> bool {
    matches!(
        net::recv(conn, T).await,
        Err(net::NetError::Closed | net::NetError::Codec(_) | net::NetError::Peer(_))
    )
}

#[actix_rt::test]
async fn frames_with_repeated_or_anonymous_recipients_are_refused_before_decryption() {
    let n = spawn_nodes(&["bob"]).await;
    let b = &n[0];
    let m = RawPeer::new("mallory");
    let (_, sealed) = sealed_request(&m, b, "x").await;
    let len = first_packet_len(&sealed);
    let (pkesk, rest) = sealed.split_at(len);
    // Every copy of the recipient packet is valid: a node that decrypted would list the request.
    let mut repeated = pkesk.repeat(pgpchat_actors::crypto::MAX_RECIPIENTS + 1);
    repeated.extend_from_slice(rest);
    // The v3 recipient's key id (after the header and version octet) zeroed: the wildcard.
    let header = if sealed[1] < 192 { 2 } else { 3 };
    let mut anonymous = sealed.clone();
    anonymous[header + 1..header + 9].fill(0);
    for (what, frame) in [("repeated", repeated), ("anonymous", anonymous)] {
        let mut conn = send_from(lo(3), b, frame).await;
        assert!(dropped(&mut conn).await, "{what}: dropped");
        assert!(
            b.requests().await.unwrap().is_empty(),
            "{what}: not decrypted"
        );
    }
    // The same request with its single recipient packet is decrypted and reaches the user.
    let _conn = send_from(lo(3), b, sealed).await;
    request_id(b, &m).await;
}

#[actix_rt::test]
async fn one_address_gets_a_bounded_number_of_decryptions() {
    let n = spawn_nodes(&["bob"]).await;
    let b = &n[0];
    // Junk that costs a decryption attempt each, one connection after the other.
    let burst = pgpchat_actors::admission::DECRYPT_BURST_PER_ADDRESS as usize;
    for i in 0..2 * burst {
        let junk = vec![0xC1, 0x05, 3, i as u8, 1, 2, 3];
        let mut conn = send_from(lo(4), b, junk).await;
        assert!(dropped(&mut conn).await);
    }
    // The budget of 127.0.0.4 is spent: even a valid request from there is not decrypted now...
    let m = RawPeer::new("mallory");
    let (_, sealed) = sealed_request(&m, b, "x").await;
    let mut conn = send_from(lo(4), b, sealed).await;
    assert!(dropped(&mut conn).await);
    assert!(b.requests().await.unwrap().is_empty());
    // ...while another address is served at once.
    let k = RawPeer::new("karen");
    let (_, sealed) = sealed_request(&k, b, "x").await;
    let _conn = send_from(lo(5), b, sealed).await;
    request_id(b, &k).await;
}
