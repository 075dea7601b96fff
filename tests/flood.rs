//! Floods on loopback, bounded in count and time: the node keeps serving, its tables stay bounded.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use pgpchat_actors::codec;
use pgpchat_actors::crypto::SecretCert;
use pgpchat_actors::discovery::{sign_announce, ANNOUNCE_PADDED_BYTES};
use pgpchat_actors::events::now_secs;
use pgpchat_actors::handshake::random_nonce;
use pgpchat_actors::keys::KeyManager;
use pgpchat_actors::node::{start_node, NodeHandle};
use pgpchat_actors::wire::{Announce, AnnounceBody, ANNOUNCE_VERSION};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::*;

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

async fn nodes_with(
    names: &[&str],
    tune: impl Fn(&mut pgpchat_actors::settings::Settings),
) -> Vec<(NodeHandle, tempfile::TempDir)> {
    init_logs();
    let port = free_udp_port();
    let mut v = Vec::new();
    for name in names {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = settings(name, tmp.path(), port);
        tune(&mut s);
        let node = start_node(s, SecretCert::generate(name).unwrap())
            .await
            .unwrap();
        v.push((node, tmp));
    }
    v
}

#[actix_rt::test]
async fn a_datagram_flood_leaves_discovery_working_and_bounded() {
    const MAX_CONTACTS: usize = 200;
    let n = nodes_with(&["alice", "bob"], |s| s.limits.max_contacts = MAX_CONTACTS).await;
    let (a, b) = (&n[0].0, &n[1].0);
    wait_sees(a, b).await;
    let before = rss_kib();
    let to = SocketAddr::from((Ipv4Addr::new(127, 255, 255, 255), a.settings.discovery.port));
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_broadcast(true).unwrap();

    // 300 distinct, validly signed identities (more than the contact table holds)...
    let mut valid = Vec::new();
    for i in 0..300 {
        let k = KeyManager::start(SecretCert::generate(&format!("flood{i}")).unwrap(), 1);
        let body = AnnounceBody {
            version: ANNOUNCE_VERSION,
            name: format!("flood{i}"),
            tcp_port: 1,
            cert: k.public().to_bytes(),
            nonce: random_nonce(),
            time: now_secs(),
            reply: false,
        };
        valid.push(
            sign_announce(&k, &body, ANNOUNCE_PADDED_BYTES)
                .await
                .unwrap(),
        );
    }
    // ...a forged one (good shape, bad signature), and junk.
    let mut forged: Announce = codec::decode(&valid[0]).unwrap();
    forged.signature[20] ^= 0xff;
    let forged = codec::encode(&forged).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let start = Instant::now();
    for i in 0..100_000usize {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let junk;
        let d: &[u8] = match i % 10 {
            0 => &valid[(i / 10) % valid.len()],
            1 => &forged,
            2 => {
                junk = vec![0xAB; 5000]; // over the datagram limit
                &junk
            }
            _ => {
                junk = (0..(x % 1400) as usize)
                    .map(|j| (x >> (j % 56)) as u8)
                    .collect();
                &junk
            }
        };
        let _ = udp.send_to(d, to);
        if i % 250 == 0 {
            tokio::task::yield_now().await; // let the node's event loop run during the flood
        }
    }
    let sent_in = start.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let stats = a.discovery_stats().await.unwrap();
    assert!(stats.received > 1000, "{stats:?}");
    assert!(
        stats.dropped_malformed > 0 && stats.dropped_bad_signature + stats.dropped_busy > 0,
        "{stats:?}"
    );
    let contacts = a.contacts().await.unwrap();
    assert!(
        contacts.len() <= MAX_CONTACTS,
        "contact table bounded: {}",
        contacts.len()
    );
    // A legitimate peer is still found, and a discussion still opens.
    wait_sees(a, b).await;
    let (opened, _) = open_discussion(a, b, "pw", "pw").await;
    opened.expect("a discussion opens after the flood");
    let grown = rss_kib().saturating_sub(before);
    eprintln!("datagram flood: 100000 sent in {sent_in:?}; {stats:?}; RSS grew {grown} KiB");
    assert!(
        grown < 256 * 1024,
        "memory stayed bounded (grew {grown} KiB)"
    );
}

#[actix_rt::test]
async fn idle_connections_and_oversize_prefixes_do_not_stop_the_listener() {
    let _ = rlimit::increase_nofile_limit(8192);
    let n = nodes_with(&["alice", "bob"], |s| {
        s.limits.handshake_timeout_secs = 2;
        s.limits.max_pending_connections = 64;
    })
    .await;
    let (a, b) = (&n[0].0, &n[1].0);
    wait_sees(a, b).await;
    let before = rss_kib();
    let addr = (Ipv4Addr::LOCALHOST, b.tcp_port);
    let mut idle = Vec::new();
    for _ in 0..1000 {
        match TcpStream::connect(addr).await {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connect: {e}"),
        }
    }
    for _ in 0..200 {
        if let Ok(mut s) = TcpStream::connect(addr).await {
            let _ = s.write_all(&[0xff, 0xff, 0xff, 0xff]).await;
        }
    }
    // The idle ones hold at most 64 slots, each for at most the handshake timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (opened, accepted) = open_discussion(a, b, "pw", "pw").await;
    assert_eq!(opened.expect("open"), accepted.expect("accept"));
    drop(idle);
    let grown = rss_kib().saturating_sub(before);
    eprintln!("1000 idle + 200 oversize connections: RSS grew {grown} KiB");
    assert!(
        grown < 256 * 1024,
        "memory stayed bounded (grew {grown} KiB)"
    );
}
