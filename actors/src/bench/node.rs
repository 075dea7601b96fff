//! The node figures of `pgpchat bench`: two complete nodes in this process (one actix System), on
//! loopback with a private discovery port, each in its own directory. Everything is measured from
//! the API a front-end uses ([`NodeHandle`]) and from the node's events, never by polling.
//!
//! - P4: opening a discussion (`open` on one node, `accept` on the other as soon as its `request`
//!   event arrives), until `open` returns.
//! - P2: one message at a time: `send` returning (stored) and the sender's `delivered` event (the
//!   acknowledgement is back: the message is on disk on both sides), then the next.
//! - P1: one discussion, `opts.senders` callers each calling `send` as fast as it returns (their
//!   sends are committed together: the store's group commit); a message counts when its
//!   `delivered` event is back at the sender.

use std::time::Instant;

use tokio::sync::broadcast;

use super::{BenchError, BenchOptions, Quantiles, Stage};
use crate::crypto::SecretCert;
use crate::events::Event;
use crate::node::start_node;
use crate::settings::Settings;
use crate::simulate::{open_discussion, wait_for_contacts};
use crate::store::DeliveryState;

/// Bytes of each benchmark message's text (the one-message-at-a-time figure used 190).
pub const NODE_MESSAGE_BYTES: usize = 190;

/// What the node figures measured.
pub struct NodeFigures {
    pub open: Quantiles,
    pub stored: Quantiles,
    pub delivered: Quantiles,
    pub throughput_messages: usize,
    pub throughput_seconds: f64,
    /// Key rotations completed by either node.
    pub rotations: usize,
}

/// Start the two nodes, wait until they see each other, then measure P4, P2 and P1 in that order.
pub async fn run(
    opts: &BenchOptions,
    dir: &std::path::Path,
    progress: &(dyn Fn(Stage, usize, usize) + Sync),
) -> Result<NodeFigures, BenchError> {
    let deadline = Instant::now() + opts.deadline;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())?;
    let mut nodes = Vec::new();
    for name in ["bench-a", "bench-b"] {
        let data = dir.join(name);
        std::fs::create_dir_all(&data)?;
        let mut s = Settings::loopback(name, &data, port);
        // Three events per message at the sender (queued, sent, delivered): room for a P1 burst.
        s.limits.ipc_event_queue = s.limits.ipc_event_queue.max(4 * opts.messages + 64);
        s.rotation.messages = opts.rotate_every;
        s.rotation.hours = 0;
        nodes.push(start_node(s, SecretCert::generate(name)?).await?);
    }
    let (a, b) = (nodes[0].clone(), nodes[1].clone());
    let rotations = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for n in [&a, &b] {
        let (mut events, rotations) = (n.subscribe(), rotations.clone());
        actix::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(crate::events::Event::KeyRotated { .. }) => {
                        rotations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
        });
    }
    wait_for_contacts(&a, 1, deadline).await?;
    wait_for_contacts(&b, 1, deadline).await?;

    let mut b_events = b.subscribe();
    let mut opens = Vec::with_capacity(opts.opens);
    let mut discussion = String::new();
    for i in 0..opts.opens {
        let t = Instant::now();
        discussion = open_discussion(&a, &b, &mut b_events, "bench secret", deadline).await?;
        opens.push(t.elapsed());
        progress(Stage::Open, i + 1, opts.opens);
    }
    drop(b_events);

    let text = "m".repeat(NODE_MESSAGE_BYTES);
    let mut a_events = a.subscribe();
    let (mut stored, mut delivered) = (Vec::new(), Vec::new());
    for i in 0..opts.one_at_a_time {
        let t = Instant::now();
        let record = a.send(&discussion, &text).await?;
        stored.push(t.elapsed());
        wait_delivered(
            &mut a_events,
            &discussion,
            |seq| seq == record.seq,
            deadline,
        )
        .await?;
        delivered.push(t.elapsed());
        progress(Stage::OneAtATime, i + 1, opts.one_at_a_time);
    }

    // P1: `senders` callers send while the event stream collects the acknowledgements.
    let start = Instant::now();
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let senders = (0..opts.senders).map(|s| {
        let (a, discussion, text, sent) = (&a, &discussion, &text, &sent);
        // The first senders take one message more when they do not divide evenly.
        let share = opts.messages / opts.senders + usize::from(s < opts.messages % opts.senders);
        async move {
            let mut last = 0;
            for _ in 0..share {
                last = a.send(discussion, text).await?.seq;
                let done = sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if done % 64 == 0 {
                    progress(Stage::Throughput, done, opts.messages);
                }
            }
            Ok::<u64, BenchError>(last)
        }
    });
    let mut last = 0;
    for r in futures::future::join_all(senders).await {
        last = last.max(r?);
    }
    // Delivery is in order: the last message delivered means all were.
    if opts.messages > 0 {
        wait_delivered(&mut a_events, &discussion, |seq| seq >= last, deadline).await?;
    }
    let span = start.elapsed().as_secs_f64().max(1e-9);
    progress(Stage::Throughput, opts.messages, opts.messages);
    drop(nodes);
    Ok(NodeFigures {
        open: Quantiles::of(opens),
        stored: Quantiles::of(stored),
        delivered: Quantiles::of(delivered),
        throughput_messages: opts.messages,
        throughput_seconds: span,
        rotations: rotations.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// Wait for the sender's `delivered` event of a message of `discussion` whose seq satisfies `which`.
async fn wait_delivered(
    events: &mut broadcast::Receiver<Event>,
    discussion: &str,
    which: impl Fn(u64) -> bool,
    deadline: Instant,
) -> Result<(), BenchError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(Event::Delivery {
                discussion_id,
                seq,
                state: DeliveryState::Delivered,
            })) if discussion_id == discussion && which(seq) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => return Err(BenchError::Lagged(n)),
            Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => {
                return Err(BenchError::Timeout("a delivery acknowledgement"))
            }
        }
    }
}
