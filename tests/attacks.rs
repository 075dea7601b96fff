//! Attacks by a node written for the test: a man in the middle at discovery, and hostile frames.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgpchat_actors::codec;
use pgpchat_actors::crypto::{PublicCert, SecretCert};
use pgpchat_actors::events::now_secs;
use pgpchat_actors::keys::KeyManager;
use pgpchat_actors::net;
use pgpchat_actors::wire::{Frame, Handshake, Purpose, PROTOCOL_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;

const SECRET: &str = "s3cret-rendezvous-Tulip";

#[actix_rt::test]
async fn man_in_the_middle_is_detected_and_never_learns_the_secret() {
    let n = spawn_nodes(&["alice", "bob"]).await;
    let (a, b) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    wait_sees(b, a).await;
    let disc_port = a.settings.discovery.port;

    // Mallory announces herself as "bob", with her own key and her own TCP port.
    let mallory = KeyManager::start(SecretCert::generate("bob").expect("key"), 1);
    let m_fp = mallory.fingerprint().to_string();
    let m_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let m_port = m_listener.local_addr().expect("addr").port();
    broadcast(
        &signed_announce(&mallory, "bob", m_port, now_secs()).await,
        disc_port,
    );

    // alice now has two "bob"s; the new one is flagged, never merged into the old.
    let fake = wait_contact(a, &m_fp).await;
    assert!(fake.key_changed);
    assert_eq!(a.contacts().await.unwrap().len(), 2);

    // Mallory relays between alice (who thinks she is bob) and bob (to whom she claims to be alice),
    // decrypting everything she can and keeping every plaintext.
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let (keys, seen2) = (mallory.clone(), seen.clone());
    let bob_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, b.tcp_port));
    let bob_cert = b.keys.public().clone();
    let relay = actix_rt::spawn(async move {
        let t = Duration::from_secs(30);
        let (s, _) = m_listener.accept().await.expect("accept");
        let mut from_a = net::framed(s, 1 << 20);
        net::recv_hello(&mut from_a, t).await.expect("hello");
        let d = net::recv_sealed(&mut from_a, &keys, t)
            .await
            .expect("request");
        seen2.lock().unwrap().push(d.plaintext.clone());
        let Handshake::Request(req) = codec::decode(&d.plaintext).expect("decode") else {
            panic!("not a request")
        };
        let a_cert = PublicCert::from_bytes(&req.cert).expect("alice's cert");
        let mut to_b = net::framed(
            TcpStream::connect(bob_addr).await.expect("connect"),
            1 << 20,
        );
        net::send(
            &mut to_b,
            Frame::Hello {
                version: PROTOCOL_VERSION,
                purpose: Purpose::Handshake,
            },
            t,
        )
        .await
        .expect("hello");
        let mut forged = req.clone();
        forged.from = keys.fingerprint().to_string();
        forged.to = bob_cert.fingerprint().to_string();
        forged.cert = keys.public().to_bytes();
        net::send_sealed(&mut to_b, &keys, &bob_cert, &Handshake::Request(forged), t)
            .await
            .expect("fwd");
        // bob's Accept, relayed to alice; alice's answer relayed back to bob.
        let d = net::recv_sealed(&mut to_b, &keys, t).await.expect("accept");
        seen2.lock().unwrap().push(d.plaintext.clone());
        let h: Handshake = codec::decode(&d.plaintext).expect("decode");
        net::send_sealed(&mut from_a, &keys, &a_cert, &h, t)
            .await
            .expect("relay");
        let d = net::recv_sealed(&mut from_a, &keys, t)
            .await
            .expect("alice's answer");
        seen2.lock().unwrap().push(d.plaintext.clone());
        let h: Handshake = codec::decode(&d.plaintext).expect("decode");
        net::send_sealed(&mut to_b, &keys, &bob_cert, &h, t)
            .await
            .expect("relay");
        h
    });

    let a2 = a.node.clone();
    let m_fp2 = m_fp.clone();
    let opening = actix_rt::spawn(async move { a2.open(&m_fp2, SECRET).await });
    let req = wait_until(20, "the relayed request", || {
        let b = b.node.clone();
        async move { b.requests().await.ok()?.into_iter().next() }
    })
    .await;
    assert_eq!(req.name, "alice");
    assert_eq!(req.fingerprint, m_fp);
    assert!(
        req.key_changed,
        "bob is warned: 'alice' is known with another key"
    );
    let accepted = b.accept(req.id, SECRET).await;
    let opened = opening.await.expect("task");

    let ea = opened
        .expect_err("alice must not open a discussion")
        .to_string();
    let eb = accepted
        .expect_err("bob must not open a discussion")
        .to_string();
    assert!(ea.contains("secrets do not match"), "alice: {ea}");
    assert!(eb.contains("secrets do not match"), "bob: {eb}");
    let last = relay.await.expect("relay");
    assert!(matches!(last, Handshake::Failed { .. }));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "mallory decrypted every frame she could");
    for p in seen.iter() {
        assert!(
            !p.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "secret leaked"
        );
    }
    assert!(a.discussions().await.unwrap().is_empty());
    assert!(b.discussions().await.unwrap().is_empty());
}

/// Write `bytes`, then read until the server closes; true if it closed within the deadline.
async fn closed_after(port: u16, bytes: &[u8]) -> bool {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .expect("connect");
    let _ = s.write_all(bytes).await;
    let mut buf = vec![0u8; 4096];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read_all)
        .await
        .is_ok()
}

#[actix_rt::test]
async fn oversize_and_garbage_frames_close_only_that_connection() {
    let n = spawn_nodes(&["alice", "bob"]).await;
    let (a, b) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    let (opened, _) = open_discussion(a, b, "pw", "pw").await;
    let id = opened.expect("open");
    let i = id.clone();
    let listen_port = b
        .store
        .run(move |s| s.discussion(&i))
        .await
        .expect("record")
        .listen_port;

    let huge = [0xff, 0xff, 0xff, 0xf0, 1, 2, 3];
    let garbage = [0, 0, 0, 6, 0xde, 0xad, 0xbe, 0xef, 0x42, 0x42];
    let wrong_version = codec::encode(&Frame::Hello {
        version: 99,
        purpose: Purpose::Handshake,
    })
    .unwrap();
    let mut framed_wrong = (wrong_version.len() as u32).to_be_bytes().to_vec();
    framed_wrong.extend_from_slice(&wrong_version);
    for port in [b.tcp_port, listen_port] {
        assert!(
            closed_after(port, &huge).await,
            "oversize length prefix on {port}"
        );
        assert!(
            closed_after(port, &garbage).await,
            "garbage frame on {port}"
        );
        assert!(
            closed_after(port, &framed_wrong).await,
            "wrong version on {port}"
        );
    }
    // An unauthenticated hello for the discussion, then a bogus proof: refused.
    let hello = codec::encode(&Frame::Hello {
        version: PROTOCOL_VERSION,
        purpose: Purpose::Discussion {
            discussion_id: id.clone(),
            nonce: [7; 32],
        },
    })
    .unwrap();
    let proof = codec::encode(&Frame::SessionAuth {
        nonce: [8; 32],
        port: 0,
        signature: vec![1, 2, 3],
    })
    .unwrap();
    let mut bytes = (hello.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&hello);
    bytes.extend_from_slice(&(proof.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&proof);
    assert!(
        closed_after(listen_port, &bytes).await,
        "forged discussion proof"
    );

    // The real discussion is unharmed and the node still serves everyone.
    a.send(&id, "still here").await.expect("send");
    wait_until(20, "delivery after the attacks", || {
        let b = b.node.clone();
        let id = id.clone();
        async move {
            let h = b.history(&id, 10).await.ok()?;
            h.iter().any(|m| m.body == "still here").then_some(())
        }
    })
    .await;
    wait_sees(b, a).await;
}

#[actix_rt::test]
async fn routed_reconnection_attempts_are_bounded() {
    let n = spawn_nodes(&["alice", "bob"]).await;
    let (a, b) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    let (opened, _) = open_discussion(a, b, "pw", "pw").await;
    let id = opened.expect("open");
    // The id is visible in any reconnection hello; an observer replays hellos and never proves.
    let hello = codec::encode(&Frame::Hello {
        version: PROTOCOL_VERSION,
        purpose: Purpose::Discussion {
            discussion_id: id.clone(),
            nonce: [1; 32],
        },
    })
    .unwrap();
    let mut framed_hello = (hello.len() as u32).to_be_bytes().to_vec();
    framed_hello.extend_from_slice(&hello);
    let mut conns = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, b.tcp_port))
            .await
            .unwrap();
        s.write_all(&framed_hello).await.unwrap();
        conns.push(s);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let (mut challenged, mut closed) = (0, 0);
    for s in &mut conns {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            Ok(Ok(_)) => challenged += 1,
            Err(_) => {}
        }
    }
    assert!(
        challenged <= pgpchat_actors::session::MAX_UNAUTHENTICATED_PER_ADDRESS,
        "at most 2 routed connections from one address authenticate at once ({challenged})"
    );
    assert!(closed >= 6, "the others are dropped ({closed})");
    a.send(&id, "unharmed").await.unwrap();
    wait_until(20, "delivery", || {
        let b = b.node.clone();
        let id = id.clone();
        async move {
            b.history(&id, 10)
                .await
                .ok()?
                .iter()
                .any(|m| m.body == "unharmed")
                .then_some(())
        }
    })
    .await;
}
