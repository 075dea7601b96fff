//! Protocol versions and the control channel (issue 10, part 0; `docs/protocol.md`, "Versions" and
//! "Control channel"): several nodes in one process over loopback.

use std::net::Ipv4Addr;
use std::time::Duration;

use pgpchat_actors::discussions::Lookup;
use pgpchat_actors::handshake::random_nonce;
use pgpchat_actors::net;
use pgpchat_actors::node::NodeHandle;
use pgpchat_actors::session::Reconnect;
use pgpchat_actors::store::{DeliveryState, Direction};
use pgpchat_actors::wire::{Control, Frame, Purpose, PROTOCOL_VERSION};

use crate::common::*;

const T: Duration = Duration::from_secs(10);

/// Send `text` from `from` and wait until `to` has it and `from` sees it delivered.
async fn chat_arrives(from: &NodeHandle, to: &NodeHandle, id: &str, text: &str) {
    from.send(id, text).await.unwrap();
    wait_until(20, "the message delivered", || {
        let (from, to, id, text) = (from.clone(), to.clone(), id.to_string(), text.to_string());
        async move {
            let got = to.history(&id, 1000).await.ok()?;
            let sent = from.history(&id, 1000).await.ok()?;
            let arrived = got
                .iter()
                .any(|m| m.direction == Direction::In && m.body == text);
            let delivered = sent.iter().any(|m| {
                m.direction == Direction::Out
                    && m.body == text
                    && m.state == DeliveryState::Delivered
            });
            (arrived && delivered).then_some(())
        }
    })
    .await;
}

async fn peer_version(node: &NodeHandle, id: &str) -> u16 {
    let id = id.to_string();
    node.store.run(move |s| s.peer_version(&id)).await.unwrap()
}

#[actix_rt::test]
async fn an_old_node_and_a_new_node_keep_chatting_both_ways() {
    // bob speaks only version 1, as every build before negotiation: it refuses any other hello.
    let n = spawn_nodes_with(&["alice", "bob"], |name, s| {
        if name == "bob" {
            s.listener.max_protocol_version = 1;
        }
    })
    .await;
    let (a, b) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    wait_sees(b, a).await;
    // New asks old: alice's hellos (main listener, then bob's discussion listener) are refused at 2
    // and retried at 1.
    let (opened, accepted) = open_discussion(a, b, "pw", "pw").await;
    let first = opened.expect("alice opens with bob");
    assert_eq!(accepted.unwrap(), first);
    chat_arrives(a, b, &first, "new to old").await;
    chat_arrives(b, a, &first, "old to new").await;
    // Old asks new.
    let (opened, accepted) = open_discussion(b, a, "pw2", "pw2").await;
    let second = opened.expect("bob opens with alice");
    assert_eq!(accepted.unwrap(), second);
    chat_arrives(b, a, &second, "old asks").await;
    chat_arrives(a, b, &second, "new answers").await;
    // A reconnection of alice (requester) falls back again.
    let session = a
        .directory
        .send(Lookup(first.clone()))
        .await
        .unwrap()
        .unwrap();
    session.send(Reconnect).await.unwrap();
    chat_arrives(a, b, &first, "after a reconnection").await;
    for (node, id) in [(a, &first), (a, &second), (b, &first), (b, &second)] {
        assert_eq!(peer_version(node, id).await, 1, "both discussions run at 1");
    }
    // The new node never queues a frame the old one cannot decode.
    for id in [&first, &second] {
        let refused = a
            .send_control(id, Control::ListRequest { request_id: 1 })
            .await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("without the control channel")),
            "{refused:?}"
        );
    }
}

/// Dial `port` with a discussion hello at `version` for `id`: whether the node answered with its
/// proof (`SessionAuth`).
async fn answers_hello_at(port: u16, id: &str, version: u16) -> bool {
    let stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .unwrap();
    let mut conn = net::framed(stream, 1 << 20);
    let hello = Frame::Hello {
        version,
        purpose: Purpose::Discussion {
            discussion_id: id.to_string(),
            nonce: random_nonce(),
        },
    };
    net::send(&mut conn, hello, T).await.unwrap();
    matches!(net::recv(&mut conn, T).await, Ok(Frame::SessionAuth { .. }))
}

#[actix_rt::test]
async fn a_discussion_that_authenticated_at_v2_refuses_v1() {
    let n = spawn_nodes(&["alice", "bob"]).await;
    let (a, b) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    let (opened, _) = open_discussion(a, b, "pw", "pw").await;
    let id = opened.unwrap();
    chat_arrives(a, b, &id, "hello").await;
    assert_eq!(peer_version(a, &id).await, PROTOCOL_VERSION);
    assert_eq!(peer_version(b, &id).await, PROTOCOL_VERSION);
    let i = id.clone();
    let port = b
        .store
        .run(move |s| s.discussion(&i))
        .await
        .unwrap()
        .listen_port;
    // Someone between them who rewrites the hello to version 1 (to strip version 2's features)
    // gets no proof, on the discussion listener or through the main listener; the current does.
    assert!(!answers_hello_at(port, &id, 1).await);
    assert!(!answers_hello_at(b.tcp_port, &id, 1).await);
    assert!(answers_hello_at(port, &id, PROTOCOL_VERSION).await);
    // And the discussion goes on at the current version.
    let session = a.directory.send(Lookup(id.clone())).await.unwrap().unwrap();
    session.send(Reconnect).await.unwrap();
    chat_arrives(a, b, &id, "still at the current version").await;
    assert_eq!(peer_version(b, &id).await, PROTOCOL_VERSION);
}

#[actix_rt::test]
async fn control_messages_are_acknowledged_like_chat_and_never_shown_nor_counted() {
    let n = spawn_nodes(&["alice", "bob"]).await;
    let (a, b) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    let (opened, _) = open_discussion(a, b, "pw", "pw").await;
    let id = opened.unwrap();
    a.send(&id, "before").await.unwrap();
    // An answer to no request: stored, acknowledged, handled (ignored), never shown.
    let seq = a
        .send_control(
            &id,
            Control::ListResponse {
                request_id: 77,
                entries: vec![],
            },
        )
        .await
        .unwrap();
    assert_eq!(seq, 2, "control messages share the chat's sequence numbers");
    chat_arrives(a, b, &id, "after").await;
    // Everything acknowledged, the control message included.
    let i = id.clone();
    wait_until(20, "the outbox empty", || {
        let (a, i) = (a.node.clone(), i.clone());
        async move {
            let rest = a.store.run(move |s| s.has_undelivered(&i)).await.ok()?;
            (!rest).then_some(())
        }
    })
    .await;
    let summary = b
        .discussions()
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.id == id)
        .unwrap();
    assert_eq!(summary.messages, 2, "only the two texts count");
    let bodies: Vec<_> = b
        .history(&id, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.seq, m.body))
        .collect();
    assert_eq!(bodies, [(1, "before".into()), (3, "after".into())]);
    let i = id.clone();
    wait_until(20, "the control message handled", || {
        let (b, i) = (b.node.clone(), i.clone());
        async move {
            let rest = b.store.run(move |s| s.unhandled_controls(&i)).await.ok()?;
            rest.is_empty().then_some(())
        }
    })
    .await;
    let unread = b
        .discussions()
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.id == id)
        .unwrap()
        .unread;
    assert_eq!(
        unread, 0,
        "history read the texts; the control message was never unread"
    );
}

/// A node running in its own thread and actix System, so the test can stop it (all its actors,
/// sockets and workers go with the System) and start it again on the same data directory.
struct Restartable {
    node: NodeHandle,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Restartable {
    fn start(
        settings: pgpchat_actors::settings::Settings,
        id: pgpchat_actors::crypto::SecretCert,
    ) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let sys = actix_rt::System::new();
            sys.block_on(async move {
                let node = pgpchat_actors::node::start_node(settings, id)
                    .await
                    .expect("node starts");
                tx.send(node).unwrap();
                let _ = stopped.await;
                actix_rt::System::current().stop();
            });
        });
        let node = rx.recv().expect("the node's handle");
        Self { node, stop, thread }
    }

    fn stop(self) {
        drop(self.node);
        let _ = self.stop.send(());
        self.thread.join().unwrap();
    }
}

#[actix_rt::test]
async fn control_messages_survive_a_restart_of_both_sides() {
    init_logs();
    let port = free_udp_port();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sa, sb) = (
        settings("alice", da.path(), port),
        settings("bob", db.path(), port),
    );
    let ida = pgpchat_actors::crypto::SecretCert::generate("alice").unwrap();
    let idb = pgpchat_actors::crypto::SecretCert::generate("bob").unwrap();
    let a = Restartable::start(sa.clone(), ida.clone());
    let b = Restartable::start(sb.clone(), idb.clone());
    wait_sees(&a.node, &b.node).await;
    let (opened, _) = open_discussion(&a.node, &b.node, "pw", "pw").await;
    let id = opened.unwrap();
    // Alice is away: bob's control message and text wait in his outbox, across his restart.
    a.stop();
    let seq = b
        .node
        .send_control(
            &id,
            Control::ListResponse {
                request_id: 9,
                entries: vec![],
            },
        )
        .await
        .unwrap();
    b.node.send(&id, "after the control message").await.unwrap();
    b.stop();
    let b = Restartable::start(sb, idb);
    let a = Restartable::start(sa, ida);
    chat_arrives_eventually(&b.node, &a.node, &id, "after the control message").await;
    let i = id.clone();
    wait_until(30, "bob's outbox empty", || {
        let (b, i) = (b.node.clone(), i.clone());
        async move {
            let rest = b.store.run(move |s| s.has_undelivered(&i)).await.ok()?;
            (!rest).then_some(())
        }
    })
    .await;
    // The text came after the control message (it would be a gap without it), which was handled.
    let h = a.node.history(&id, 10).await.unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].seq, seq + 1);
    let i = id.clone();
    let unhandled = a
        .node
        .store
        .run(move |s| s.unhandled_controls(&i))
        .await
        .unwrap();
    assert!(unhandled.is_empty());
    a.stop();
    b.stop();
}

/// Like [`chat_arrives`] for a text already queued.
async fn chat_arrives_eventually(from: &NodeHandle, to: &NodeHandle, id: &str, text: &str) {
    wait_until(30, "the queued message delivered", || {
        let (from, to, id, text) = (from.clone(), to.clone(), id.to_string(), text.to_string());
        async move {
            let got = to.history(&id, 1000).await.ok()?;
            let sent = from.history(&id, 1000).await.ok()?;
            let arrived = got.iter().any(|m| m.body == text);
            let delivered = sent
                .iter()
                .any(|m| m.body == text && m.state == DeliveryState::Delivered);
            (arrived && delivered).then_some(())
        }
    })
    .await;
}
