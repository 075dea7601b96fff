//! Helpers shared by the integration tests: throwaway nodes on loopback, and waiting with a deadline.

#![allow(dead_code)]

use std::future::Future;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pgpchat_actors::crypto::SecretCert;
use pgpchat_actors::keys::{KeyManager, KeysHandle};
use pgpchat_actors::net::{self, Conn};
use pgpchat_actors::node::{start_node, NodeHandle};
use pgpchat_actors::settings::Settings;
use pgpchat_actors::wire::{Frame, Purpose, PROTOCOL_VERSION};
use tempfile::TempDir;

pub fn init_logs() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// A UDP port for one test's private discovery network, never handed to another test of this run.
///
/// Taken from 20000–31999, below Linux's ephemeral range (32768+), so sockets bound to port 0 never
/// collide with it either; the process id spreads concurrent test processes over the range.
pub fn free_udp_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    const BASE: u16 = 20_000;
    const SPAN: u16 = 12_000;
    let start = (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let i = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = BASE + (start.wrapping_add(i)) % SPAN;
        if UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.255.255.255", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free UDP port in {BASE}..{}", BASE + SPAN);
}

pub struct TestNode {
    pub node: NodeHandle,
    pub dir: PathBuf,
    _tmp: Option<TempDir>,
}

impl TestNode {
    /// A node whose data directory `dir` lives in `tmp` (removed with it).
    pub fn with_tmp(node: NodeHandle, dir: PathBuf, tmp: TempDir) -> Self {
        Self {
            node,
            dir,
            _tmp: Some(tmp),
        }
    }
}

impl std::ops::Deref for TestNode {
    type Target = NodeHandle;
    fn deref(&self) -> &NodeHandle {
        &self.node
    }
}

pub fn settings(name: &str, dir: &std::path::Path, discovery_port: u16) -> Settings {
    let mut s = Settings::loopback(name, dir, discovery_port);
    s.limits.handshake_timeout_secs = 10;
    s
}

/// Start `names.len()` nodes on one private loopback discovery network, in the current System.
pub async fn spawn_nodes(names: &[&str]) -> Vec<TestNode> {
    spawn_nodes_with(names, |_, _| {}).await
}

/// [`spawn_nodes`], with `adjust(name, settings)` applied to each node's settings before it starts.
pub async fn spawn_nodes_with(
    names: &[&str],
    adjust: impl Fn(&str, &mut Settings),
) -> Vec<TestNode> {
    init_logs();
    let port = free_udp_port();
    let mut v = Vec::new();
    for name in names {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = settings(name, &dir, port);
        adjust(name, &mut s);
        let id = SecretCert::generate(name).expect("identity");
        let node = start_node(s, id).await.expect("node starts");
        v.push(TestNode {
            node,
            dir,
            _tmp: Some(tmp),
        });
    }
    v
}

/// Poll `check` until it returns Some, or panic after `secs` seconds with `what`.
pub async fn wait_until<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until `a` lists `b` as a contact.
pub async fn wait_sees(a: &NodeHandle, b: &NodeHandle) {
    let fp = b.keys.fingerprint().to_string();
    wait_until(20, "discovery", || {
        let a = a.clone();
        let fp = fp.clone();
        async move {
            a.contacts()
                .await
                .ok()
                .filter(|c| c.iter().any(|c| c.fingerprint == fp))
                .map(|_| ())
        }
    })
    .await
}

/// Open a discussion from `a` to `b`, `b` accepting with `pw_b`. Returns (a's result, b's result).
pub async fn open_discussion(
    a: &NodeHandle,
    b: &NodeHandle,
    pw_a: &str,
    pw_b: &str,
) -> (Result<String, String>, Result<String, String>) {
    let (a2, b_fp, pw) = (
        a.clone(),
        b.keys.fingerprint().to_string(),
        pw_a.to_string(),
    );
    let opening =
        actix_rt::spawn(async move { a2.open(&b_fp, &pw).await.map_err(|e| e.to_string()) });
    let a_fp = a.keys.fingerprint().to_string();
    let req = wait_until(20, "the request to arrive", || {
        let b = b.clone();
        let a_fp = a_fp.clone();
        async move {
            b.requests()
                .await
                .ok()
                .and_then(|r| r.into_iter().find(|r| r.fingerprint == a_fp))
        }
    })
    .await;
    let accepted = b.accept(req.id, pw_b).await.map_err(|e| e.to_string());
    let opened = opening.await.expect("open task");
    (opened, accepted)
}

/// A peer written for a test, outside any node: its own identity and key manager.
pub struct RawPeer {
    pub identity: SecretCert,
    pub keys: KeysHandle,
}

impl RawPeer {
    pub fn new(name: &str) -> Self {
        let identity = SecretCert::generate(name).expect("identity");
        let keys = KeyManager::start(identity.clone(), 1);
        Self { identity, keys }
    }

    /// A connection to `node`'s main listener whose hello asks for a handshake.
    pub async fn dial_handshake(&self, node: &NodeHandle) -> Conn<tokio::net::TcpStream> {
        let stream = tokio::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, node.tcp_port))
            .await
            .expect("connect");
        let mut conn = net::framed(stream, 1 << 20);
        let hello = Frame::Hello {
            version: PROTOCOL_VERSION,
            purpose: Purpose::Handshake,
        };
        net::send(&mut conn, hello, Duration::from_secs(10))
            .await
            .expect("hello");
        conn
    }
}

/// A signed announce from `keys`, as discovery sends it: `name`, TCP `tcp_port`, sent at `time`.
pub async fn signed_announce(keys: &KeysHandle, name: &str, tcp_port: u16, time: u64) -> Vec<u8> {
    let body = pgpchat_actors::wire::AnnounceBody {
        version: pgpchat_actors::wire::ANNOUNCE_VERSION,
        name: name.into(),
        tcp_port,
        cert: keys.public().to_bytes(),
        nonce: pgpchat_actors::handshake::random_nonce(),
        time,
        reply: false,
    };
    pgpchat_actors::discovery::sign_announce(
        keys,
        &body,
        pgpchat_actors::discovery::ANNOUNCE_PADDED_BYTES,
    )
    .await
    .expect("sign announce")
}

/// Send `datagram` to the test nodes on discovery `port` (loopback broadcast only).
pub fn broadcast(datagram: &[u8], port: u16) {
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.set_broadcast(true).expect("broadcast");
    udp.send_to(
        datagram,
        (std::net::Ipv4Addr::new(127, 255, 255, 255), port),
    )
    .expect("send announce");
}

/// Wait until `node` lists the contact whose fingerprint is `fp`; that contact.
pub async fn wait_contact(node: &NodeHandle, fp: &str) -> pgpchat_actors::store::ContactRecord {
    wait_until(10, &format!("contact {fp}"), || {
        let (node, fp) = (node.clone(), fp.to_string());
        async move {
            node.contacts()
                .await
                .ok()?
                .into_iter()
                .find(|c| c.fingerprint == fp)
        }
    })
    .await
}

/// Every file below `dir` (its subdirectories too).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    out
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
