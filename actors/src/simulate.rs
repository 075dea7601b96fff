//! `pgpchat simulate`: N complete nodes in this process (one actix System), on loopback with a
//! private discovery port, each in its own temporary directory. Node i opens a discussion with node
//! i+1 (a ring) with a shared secret, the requesters send M messages each, and the run reports how long
//! discovery took (also in announce intervals), resident memory per node and idle CPU, handshake and
//! message latencies, throughput and peak memory (SPEC 6). The announce interval is chosen for N
//! ([`announce_interval_for`]) unless given. Every wait is on the nodes' events, not a timer.
//!
//! Only loopback is used: discovery broadcasts to 127.255.255.255.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;
use tokio::sync::broadcast;

use crate::crypto::{CryptoError, SecretCert};
use crate::events::Event;
use crate::node::{start_node, ApiError, NodeError, NodeHandle};
use crate::settings::Settings;

#[derive(Debug, Error)]
pub enum SimulateError {
    #[error("simulate needs at least 2 nodes")]
    TooFewNodes,
    #[error("no free UDP port: {0}")]
    NoPort(#[source] std::io::Error),
    #[error("{0}")]
    TempDir(#[source] std::io::Error),
    #[error("{0}")]
    Identity(#[source] CryptoError),
    #[error("{0}")]
    Node(#[source] NodeError),
    /// A node's API refused a step (`what`: accept, open) or a message.
    #[error("{what}: {source}")]
    Step {
        what: &'static str,
        source: ApiError,
    },
    #[error("{0}")]
    Send(#[source] ApiError),
    #[error("{0}")]
    Task(#[source] tokio::task::JoinError),
    #[error("timed out: {0}")]
    Timeout(String),
}

#[derive(Debug, Clone)]
pub struct SimulateOptions {
    pub nodes: usize,
    pub messages: usize,
    /// Give up after this long.
    pub deadline: Duration,
    /// Announce interval in seconds; `None`: [`announce_interval_for`] the number of nodes.
    pub interval_secs: Option<u64>,
}

/// Announces (with their checks) the simulation lets the whole process receive per second on
/// the 2-core machine: at 1 s intervals 32 nodes fit, 100 nodes get 10 s. Measured in
/// `docs/performance.md` ("Discovery that scales").
pub const ANNOUNCES_PER_SECOND_BUDGET: u64 = 1000;
/// The longest announce interval the simulation chooses (a node still appears within seconds).
pub const MAX_CHOSEN_INTERVAL_SECS: u64 = 10;

/// The announce interval for `nodes` nodes in one process: every node hears the N−1 others once
/// an interval, so N·(N−1) announces an interval, kept within [`ANNOUNCES_PER_SECOND_BUDGET`], at
/// least 1 s and at most [`MAX_CHOSEN_INTERVAL_SECS`].
pub fn announce_interval_for(nodes: usize) -> u64 {
    let n = nodes as u64;
    (n * n.saturating_sub(1))
        .div_ceil(ANNOUNCES_PER_SECOND_BUDGET)
        .clamp(1, MAX_CHOSEN_INTERVAL_SECS)
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The `q` quantile (nearest rank) of `sorted`, in milliseconds; 0 for no sample. One rule for
/// `simulate` and `bench`, so their figures compare.
pub(crate) fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

impl Latency {
    fn of(mut v: Vec<Duration>) -> Self {
        v.sort();
        Self {
            count: v.len(),
            p50_ms: quantile_ms(&v, 0.50),
            p99_ms: quantile_ms(&v, 0.99),
            max_ms: v.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub nodes: usize,
    pub discussions: usize,
    pub messages: usize,
    /// The announce interval the nodes used (chosen for N unless given).
    pub announce_interval_secs: u64,
    /// From the last node started until every node lists every other.
    pub discovery_ms: f64,
    /// `discovery_ms` in announce intervals (the target is at most 2).
    pub discovery_intervals: f64,
    /// Resident memory after discovery minus before the first node started, divided by N, KiB.
    pub resident_per_node_kib: u64,
    /// CPU used by the whole process during one announce interval after discovery, while the
    /// nodes are idle (announces only), in percent of one core.
    pub idle_cpu_percent: f64,
    pub handshake: Latency,
    /// From `send` being called until the receiver stored the message.
    pub message: Latency,
    pub messages_per_second: f64,
    /// Peak resident memory of the process (VmHWM), KiB.
    pub peak_memory_kib: u64,
}

fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Current resident memory of the process (VmRSS), KiB.
fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU time used so far by the process's live threads (the first field of each
/// `/proc/self/task/*/schedstat`, nanoseconds).
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn free_udp_port() -> Result<u16, SimulateError> {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(SimulateError::NoPort)
}

/// Wait until `node` lists at least `want` contacts: checked again on each of its events (a new
/// contact is a `ContactSeen`), never by polling on a timer.
pub(crate) async fn wait_for_contacts(
    node: &NodeHandle,
    want: usize,
    deadline: Instant,
) -> Result<(), SimulateError> {
    let mut events = node.subscribe();
    loop {
        if node.contacts().await.map_or(0, |c| c.len()) >= want {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Err(_) => return Err(SimulateError::Timeout("discovery".into())),
            // A lagged receiver missed events: check the contacts again.
            Ok(Err(broadcast::error::RecvError::Lagged(_))) | Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Closed)) => {
                return Err(SimulateError::Timeout("discovery (node stopped)".into()))
            }
        }
    }
}

/// `a` opens a discussion with `b`, which accepts as soon as its `request` event arrives on
/// `b_events` (subscribed before the call, so the event cannot be missed). Returns the
/// discussion id once `a`'s `open` returned, that is once the discussion is open on both sides.
pub(crate) async fn open_discussion(
    a: &NodeHandle,
    b: &NodeHandle,
    b_events: &mut broadcast::Receiver<Event>,
    secret: &str,
    deadline: Instant,
) -> Result<String, SimulateError> {
    let (na, fb, sa) = (
        a.clone(),
        b.keys.fingerprint().to_string(),
        secret.to_string(),
    );
    let mut opening = actix_rt::spawn(async move { na.open(&fb, &sa).await });
    let fa = a.keys.fingerprint();
    let request_id = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::select! {
            e = tokio::time::timeout(left, b_events.recv()) => e,
            // `open` ended before any request was seen: it failed; say why.
            done = &mut opening => {
                let answer = done.map_err(SimulateError::Task)?;
                return answer.map_err(|source| SimulateError::Step { what: "open", source });
            }
        };
        match event {
            Ok(Ok(Event::Request { request })) if request.fingerprint == fa => break request.id,
            Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                // Missed events: the request may be among them; it is still listed.
                if let Some(r) = b
                    .requests()
                    .await
                    .ok()
                    .and_then(|rs| rs.into_iter().find(|r| r.fingerprint == fa))
                {
                    break r.id;
                }
            }
            Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => {
                return Err(SimulateError::Timeout("a request".into()))
            }
        }
    };
    b.accept(request_id, secret)
        .await
        .map_err(|source| SimulateError::Step {
            what: "accept",
            source,
        })?;
    opening
        .await
        .map_err(SimulateError::Task)?
        .map_err(|source| SimulateError::Step {
            what: "open",
            source,
        })
}

/// Run the simulation in the current actix System.
pub async fn run(opts: SimulateOptions) -> Result<Report, SimulateError> {
    if opts.nodes < 2 {
        return Err(SimulateError::TooFewNodes);
    }
    let deadline = Instant::now() + opts.deadline;
    let port = free_udp_port()?;
    let interval = opts
        .interval_secs
        .unwrap_or_else(|| announce_interval_for(opts.nodes))
        .max(1);
    let mut dirs = Vec::new();
    let mut nodes: Vec<NodeHandle> = Vec::new();
    let rss_before = resident_kib();
    for i in 0..opts.nodes {
        let dir = tempfile::tempdir().map_err(SimulateError::TempDir)?;
        let name = format!("node{i}");
        let mut s = Settings::loopback(&name, dir.path(), port);
        s.discovery.interval_secs = interval;
        s.limits.max_contacts = s.limits.max_contacts.max(opts.nodes * 2);
        let id = SecretCert::generate(&name).map_err(SimulateError::Identity)?;
        nodes.push(start_node(s, id).await.map_err(SimulateError::Node)?);
        dirs.push(dir);
    }
    let start = Instant::now();
    for n in &nodes {
        wait_for_contacts(n, opts.nodes - 1, deadline).await?;
    }
    let discovery = start.elapsed();
    let resident_per_node_kib = resident_kib().saturating_sub(rss_before) / opts.nodes as u64;
    // Idle: every node up and known, no discussion yet; only announces (and timers) run.
    let (cpu_before, idle_from) = (cpu_ns(), Instant::now());
    tokio::time::sleep(Duration::from_secs(interval)).await;
    let idle_cpu_percent =
        (cpu_ns().saturating_sub(cpu_before)) as f64 / 1e9 / idle_from.elapsed().as_secs_f64()
            * 100.0;

    // A ring of discussions: i asks i+1 (for two nodes, one discussion).
    let pairs: Vec<(usize, usize)> = if opts.nodes == 2 {
        vec![(0, 1)]
    } else {
        (0..opts.nodes).map(|i| (i, (i + 1) % opts.nodes)).collect()
    };
    let mut handshakes = Vec::new();
    let mut discussions = Vec::new();
    for &(a, b) in &pairs {
        let mut b_events = nodes[b].subscribe();
        let started = Instant::now();
        let secret = format!("secret {a}-{b}");
        let id = open_discussion(&nodes[a], &nodes[b], &mut b_events, &secret, deadline).await?;
        handshakes.push(started.elapsed());
        discussions.push((a, b, id));
    }

    // Receivers report when each message is stored.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<((String, u64), Instant)>();
    for &(_, b, _) in &discussions {
        let mut events = nodes[b].subscribe();
        let tx = tx.clone();
        actix_rt::spawn(async move {
            while let Ok(e) = events.recv().await {
                if let Event::Message { message } = e {
                    if message.direction == crate::store::Direction::In {
                        let _ = tx.send(((message.discussion_id, message.seq), Instant::now()));
                    }
                }
            }
        });
    }
    let sending = Instant::now();
    let mut senders = Vec::new();
    for (a, _, id) in &discussions {
        let (n, id, m) = (nodes[*a].clone(), id.clone(), opts.messages);
        senders.push(actix_rt::spawn(async move {
            let mut sent = Vec::new();
            for i in 0..m {
                let t = Instant::now();
                match n.send(&id, &format!("message {i} of the simulation")).await {
                    Ok(r) => sent.push(((id.clone(), r.seq), t)),
                    Err(e) => return Err(SimulateError::Send(e)),
                }
            }
            Ok(sent)
        }));
    }
    let mut sent_at = HashMap::new();
    for s in senders {
        let sent = s.await.map_err(SimulateError::Task)??;
        sent_at.extend(sent);
    }
    let total = discussions.len() * opts.messages;
    let mut latencies = Vec::with_capacity(total);
    let mut last = sending;
    while latencies.len() < total {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some((key, at))) => {
                if let Some(t) = sent_at.get(&key) {
                    latencies.push(at.saturating_duration_since(*t));
                    last = last.max(at);
                }
            }
            _ => {
                return Err(SimulateError::Timeout(format!(
                    "{} of {total} messages arrived",
                    latencies.len()
                )))
            }
        }
    }
    let span = last.duration_since(sending).as_secs_f64().max(1e-9);
    Ok(Report {
        nodes: opts.nodes,
        discussions: discussions.len(),
        messages: total,
        announce_interval_secs: interval,
        discovery_ms: discovery.as_secs_f64() * 1000.0,
        discovery_intervals: discovery.as_secs_f64() / interval as f64,
        resident_per_node_kib,
        idle_cpu_percent,
        handshake: Latency::of(handshakes),
        message: Latency::of(latencies),
        messages_per_second: total as f64 / span,
        peak_memory_kib: peak_kib(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announce_interval_grows_with_the_square_of_the_nodes_within_bounds() {
        assert_eq!(announce_interval_for(2), 1);
        assert_eq!(announce_interval_for(32), 1);
        assert_eq!(announce_interval_for(50), 3);
        assert_eq!(announce_interval_for(100), MAX_CHOSEN_INTERVAL_SECS);
        assert_eq!(announce_interval_for(250), MAX_CHOSEN_INTERVAL_SECS);
    }
}
