//! Connection slots held by silent clients (docs/security.md, threat 6): an attacker on several
//! loopback addresses (127.0.0.x) keeps renewing connections that never send a byte, faster than any
//! deadline, while an honest peer opens a discussion or reconnects to one.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pgpchat_actors::discussions::Lookup;
use pgpchat_actors::events::Event;
use pgpchat_actors::session::{Reconnect, MAX_UNAUTHENTICATED, MAX_UNAUTHENTICATED_PER_ADDRESS};
use pgpchat_actors::store::DeliveryState;

use crate::common::*;
use crate::limits::{connect_from, lo};

/// Each silent connection is replaced after this long: shorter than the first-frame deadline.
const RENEWED_AFTER: Duration = Duration::from_secs(3);
/// Each attacking address opens a connection this often.
const PACE: Duration = Duration::from_millis(20);
/// Connections a flood makes at most, all addresses together.
const MAX_FLOOD: usize = 20_000;

/// Silent connections to `port` from `addresses`: each address opens one every `every` and closes
/// it after `hold` (before any deadline of the node can close it), until `stop`; at most 60 s and
/// [`MAX_FLOOD`] connections. Counts the connections made.
struct SilentFlood {
    stop: Arc<AtomicBool>,
    made: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SilentFlood {
    fn start(port: u16, addresses: Vec<Ipv4Addr>, hold: Duration, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let made = Arc::new(AtomicUsize::new(0));
        let tasks = addresses
            .into_iter()
            .map(|from| {
                let (stop, made) = (stop.clone(), made.clone());
                tokio::spawn(async move {
                    let end = tokio::time::Instant::now() + Duration::from_secs(60);
                    let mut conns = VecDeque::new();
                    while !stop.load(Ordering::Relaxed)
                        && tokio::time::Instant::now() < end
                        && made.load(Ordering::Relaxed) < MAX_FLOOD
                    {
                        let now = tokio::time::Instant::now();
                        while conns.front().is_some_and(|(t, _)| now - *t > hold) {
                            conns.pop_front();
                        }
                        if let Ok(s) = connect_from(from, port).await {
                            conns.push_back((now, s));
                            made.fetch_add(1, Ordering::Relaxed);
                        }
                        tokio::time::sleep(every).await;
                    }
                })
            })
            .collect();
        Self { stop, made, tasks }
    }

    fn made(&self) -> usize {
        self.made.load(Ordering::Relaxed)
    }

    async fn wait_running(&self, at_least: usize) {
        wait_until(20, "the flood to run", || async {
            (self.made() >= at_least).then_some(())
        })
        .await;
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

#[actix_rt::test]
async fn silent_connections_cannot_keep_an_honest_requester_out() {
    let _ = rlimit::increase_nofile_limit(8192);
    let n = spawn_nodes(&["alice", "bob"]).await;
    let (a, b) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    let l = &b.settings.limits;
    // Enough addresses, each holding more than its share, to fill the whole pool.
    let addresses = l.max_pending_connections / l.max_connections_per_address;
    assert!(RENEWED_AFTER.as_secs() < l.first_frame_timeout_secs);
    let flood = SilentFlood::start(
        b.tcp_port,
        (0..addresses).map(|i| lo(10 + i as u8)).collect(),
        RENEWED_AFTER,
        PACE,
    );
    flood.wait_running(l.max_pending_connections * 2).await;
    let before = flood.made();
    let (opened, accepted) = open_discussion(a, b, "pw", "pw").await;
    let during = flood.made() - before;
    flood.stop().await;
    assert_eq!(opened.expect("open"), accepted.expect("accept"));
    assert!(
        during > 0,
        "the discussion opened while the flood was running"
    );
}

#[actix_rt::test]
async fn silent_connections_on_a_discussion_port_do_not_stop_a_reconnection() {
    let _ = rlimit::increase_nofile_limit(8192);
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
    let addresses = MAX_UNAUTHENTICATED / MAX_UNAUTHENTICATED_PER_ADDRESS;
    let flood = SilentFlood::start(
        listen_port,
        (0..addresses).map(|i| lo(30 + i as u8)).collect(),
        RENEWED_AFTER,
        PACE,
    );
    flood.wait_running(MAX_UNAUTHENTICATED * 2).await;
    // alice's connection drops; she must come back through the held port (or the main one).
    let mut events = a.subscribe();
    let session = a.directory.send(Lookup(id.clone())).await.unwrap().unwrap();
    session.send(Reconnect).await.unwrap();
    a.send(&id, "through the flood").await.unwrap();
    let before = flood.made();
    wait_until(20, "delivered after the reconnection", || {
        let (a, id) = (a.node.clone(), id.clone());
        async move {
            a.history(&id, 10)
                .await
                .ok()?
                .iter()
                .all(|m| m.state == DeliveryState::Delivered)
                .then_some(())
        }
    })
    .await;
    let during = flood.made() - before;
    flood.stop().await;
    assert!(during > 0, "reconnected while the flood was running");
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
