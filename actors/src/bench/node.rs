//! The node figures of `pgpchat bench`: two complete nodes in this process (one actix System), on
//! loopback with a private discovery port, each in its own directory. Everything is measured from
//! the API a front-end uses ([`NodeHandle`]) and from the node's events, never by polling.
//!
//! - P4: opening a discussion (`open` on one node, `accept` on the other as soon as its `request`
//!   event arrives), until `open` returns.
//! - P2: one message at a time: `send` returning (stored) and the sender's `delivered` event (the
//!   acknowledgement is back: the message is on disk on both sides), then the next.
//! - P1: one discussion, `send` as fast as it returns; a message counts when its `delivered` event
//!   is back at the sender.

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
        nodes.push(start_node(s, SecretCert::generate(name)?).await?);
    }
    let (a, b) = (nodes[0].clone(), nodes[1].clone());
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

    // P1: a task counts the acknowledgements while this one sends.
    let last_seq = {
        let t = Instant::now();
        let mut last = 0;
        for i in 0..opts.messages {
            last = a.send(&discussion, &text).await?.seq;
            if i % 64 == 63 {
                progress(Stage::Throughput, i + 1, opts.messages);
            }
        }
        (t, last)
    };
    let (start, last) = last_seq;
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
