//! `pgpchat bench`: the node's figures next to the raw cost of the work they contain, measured in
//! the same process and the same run, so that a slow moment of the machine moves both and a slow
//! baseline cannot flatter a ratio (issue 13, item 5).
//!
//! First the raw baselines ([`raw`]), on the caller's thread with nothing else running: the rpgp
//! sign+encrypt then decrypt+verify of 200 B, a one-row SQLite commit (WAL, `synchronous = FULL`),
//! a key generation and the SPAKE2 exchange, each the median of its count. Then the node figures
//! ([`node`]) with two complete nodes in one actix System. Each node figure is reported in absolute
//! terms and as a ratio to its raw counterpart ("floor"):
//!
//! - P1 messages/s of one discussion ÷ the one-core crypto round-trip rate (1 / its median);
//! - P2 send → stored p50 ÷ one commit; send → delivered p50 and p99 ÷ (crypto round trip + two
//!   commits: the sender's and the receiver's);
//! - P4 opening a discussion p50 ÷ (SPAKE2 exchange + two key generations + four crypto round
//!   trips: the four sealed frames).
//!
//! Every count is bounded ([`MAX_COUNT`]) and the node part has a deadline. The binary runs it
//! through [`crate::daemon::bench`].

pub mod node;
pub mod raw;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::crypto::CryptoError;
use crate::handshake::HandshakeError;
use crate::node::{ApiError, NodeError};
use crate::simulate::{quantile_ms, SimulateError};

/// The largest count any one figure may ask for (a bench run is bounded in time and memory).
pub const MAX_COUNT: usize = 100_000;
/// The most discussions one run opens: a responder admits a burst of this many unauthenticated
/// requests from one address, then one a second (`admission::DECRYPT_BURST_PER_ADDRESS`), and
/// P4 measures a handshake, not that rate limit.
pub const MAX_OPENS: usize = crate::admission::DECRYPT_BURST_PER_ADDRESS as usize;

/// Why a bench run stopped.
#[derive(Debug, Error)]
pub enum BenchError {
    #[error("{what} is {got}: it must be between 1 and {max}")]
    Count {
        what: &'static str,
        got: usize,
        max: usize,
    },
    #[error("raw crypto: {0}")]
    Crypto(#[from] CryptoError),
    #[error("raw SPAKE2 exchange: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("raw SQLite commit: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("starting a node: {0}")]
    Node(#[from] NodeError),
    #[error("{0}")]
    Api(#[from] ApiError),
    #[error("{0}")]
    Nodes(#[from] SimulateError),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("gpg {what} failed: {stderr}")]
    Gpg { what: &'static str, stderr: String },
    #[error("the benchmark fell {0} events behind the node (raise limits.ipc_event_queue)")]
    Lagged(u64),
}

/// How many of each measurement (each at least 1, at most [`MAX_COUNT`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchOptions {
    /// Raw crypto round trips (the issue asks for at least 1 000 for a figure worth recording).
    pub crypto: usize,
    /// Raw one-row commits (likewise at least 1 000).
    pub commits: usize,
    /// Raw key generations.
    pub keygens: usize,
    /// Raw SPAKE2 exchanges.
    pub spake2: usize,
    /// Discussions opened (P4), at most [`MAX_OPENS`].
    pub opens: usize,
    /// Messages sent one at a time (P2).
    pub one_at_a_time: usize,
    /// Messages of the throughput run (P1).
    pub messages: usize,
    /// `gpg` runs of the P5 baseline (a sign+encrypt then a decrypt+verify process each, median);
    /// 0 skips it, as does a machine without `gpg`.
    #[serde(default)]
    pub gpg: usize,
    /// Concurrent senders of the throughput run (P1), each calling `send` as fast as it returns,
    /// as a front-end with several messages to send does (1: one caller, one message at a time;
    /// at most [`MAX_SENDERS`]).
    #[serde(default = "default_senders")]
    pub senders: usize,
    /// Key rotation (issue 14): each node rotates its discussion encryption subkey after this many
    /// messages received under it (`rotation.messages`); 0: never (no rotation at all, by count
    /// or time), the baseline to compare with.
    #[serde(default)]
    pub rotate_every: u64,
    /// Give up on the node part after this long.
    #[serde(with = "secs")]
    pub deadline: Duration,
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        Ok(std::time::Duration::from_secs(u64::deserialize(d)?))
    }
}

/// At most this many `gpg` round trips (two processes each).
pub const MAX_GPG: usize = 1000;

/// The P1 run's concurrent senders by default.
pub const DEFAULT_SENDERS: usize = 16;
/// At most this many concurrent senders.
pub const MAX_SENDERS: usize = 256;

fn default_senders() -> usize {
    1
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            crypto: 1000,
            commits: 1000,
            keygens: 100,
            spake2: 200,
            opens: MAX_OPENS,
            one_at_a_time: 300,
            messages: 2000,
            gpg: 20,
            senders: DEFAULT_SENDERS,
            rotate_every: 0,
            deadline: Duration::from_secs(300),
        }
    }
}

impl BenchOptions {
    fn check(&self) -> Result<(), BenchError> {
        for (what, got, max) in [
            ("crypto", self.crypto, MAX_COUNT),
            ("commits", self.commits, MAX_COUNT),
            ("keygens", self.keygens, MAX_COUNT),
            ("spake2", self.spake2, MAX_COUNT),
            ("opens", self.opens, MAX_OPENS),
            ("one_at_a_time", self.one_at_a_time, MAX_COUNT),
            ("messages", self.messages, MAX_COUNT),
            ("senders", self.senders, MAX_SENDERS),
        ] {
            if !(1..=max).contains(&got) {
                return Err(BenchError::Count { what, got, max });
            }
        }
        if self.gpg > MAX_GPG {
            return Err(BenchError::Count {
                what: "gpg",
                got: self.gpg,
                max: MAX_GPG,
            });
        }
        Ok(())
    }
}

/// What is being measured, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Crypto,
    Commits,
    Keygens,
    Spake2,
    Open,
    OneAtATime,
    Throughput,
    Gpg,
}

impl Stage {
    /// A short label for a progress line.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Crypto => "raw crypto round trips",
            Stage::Commits => "raw SQLite commits",
            Stage::Keygens => "raw key generations",
            Stage::Spake2 => "raw SPAKE2 exchanges",
            Stage::Open => "P4 discussions opened",
            Stage::OneAtATime => "P2 messages one at a time",
            Stage::Throughput => "P1 messages sent",
            Stage::Gpg => "P5 gpg round trips",
        }
    }
}

/// Median and 99th percentile of a series of timings, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Quantiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Quantiles {
    pub fn of(mut v: Vec<Duration>) -> Self {
        v.sort();
        Self {
            count: v.len(),
            p50_ms: quantile_ms(&v, 0.50),
            p99_ms: quantile_ms(&v, 0.99),
        }
    }
}

/// The raw baselines of this run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawBaselines {
    /// Sign+encrypt then decrypt+verify of 200 B, one thread.
    pub crypto_round_trip: Quantiles,
    /// 1 / the median crypto round trip: one core's rate.
    pub crypto_round_trips_per_second: f64,
    /// One-row commit, WAL, `synchronous = FULL`.
    pub sqlite_commit: Quantiles,
    pub key_generation: Quantiles,
    pub spake2_exchange: Quantiles,
    /// Median crypto round trip + two median commits: the floor of one delivered message.
    pub message_floor_ms: f64,
    /// Median SPAKE2 exchange + two key generations + four crypto round trips: the floor of
    /// opening a discussion.
    pub open_floor_ms: f64,
}

/// P5: a message through the node against `gpg` run once per message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GpgFigure {
    /// `gpg --sign --encrypt` then `gpg --decrypt` (verifying), 200 B, one process each.
    pub gpg_round_trip: Quantiles,
    /// The node's cost of one message in P1: 1 000 / its messages per second.
    pub node_ms_per_message: f64,
    /// gpg round trip p50 ÷ `node_ms_per_message` (the target is ≥ 20).
    pub times_faster_than_gpg: f64,
}

/// P1: one discussion as fast as `send` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThroughputFigure {
    pub messages: usize,
    pub seconds: f64,
    pub messages_per_second: f64,
    /// messages/s ÷ `crypto_round_trips_per_second` (the target is ≥ 1.0).
    pub ratio_to_one_core_crypto: f64,
    /// Key rotations completed (`key_rotated` events of both nodes) during the whole node part.
    #[serde(default)]
    pub rotations: usize,
}

/// P2: one message at a time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OneAtATimeFigure {
    /// `send` called → `send` returned (committed at the sender).
    pub stored: Quantiles,
    /// `send` called → the sender's `delivered` event (committed at the receiver, ack back).
    pub delivered: Quantiles,
    /// stored p50 ÷ the median commit (target ≤ 3).
    pub stored_p50_ratio_to_commit: f64,
    /// delivered p50 ÷ `message_floor_ms` (target ≤ 2).
    pub delivered_p50_ratio_to_floor: f64,
    /// delivered p99 ÷ `message_floor_ms` (target ≤ 4).
    pub delivered_p99_ratio_to_floor: f64,
}

/// P4: opening a discussion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenFigure {
    pub open: Quantiles,
    /// open p50 ÷ `open_floor_ms` (target ≤ 10).
    pub p50_ratio_to_floor: f64,
}

/// Everything one `pgpchat bench` run measured (its `--json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    pub options: BenchOptions,
    pub raw: RawBaselines,
    pub p1_throughput: ThroughputFigure,
    pub p2_one_at_a_time: OneAtATimeFigure,
    pub p4_open: OpenFigure,
    /// Absent when `gpg` is not installed or `--gpg 0`.
    pub p5_gpg: Option<GpgFigure>,
    /// Wall time of the whole run, seconds.
    pub seconds: f64,
}

/// Measure the raw baselines on this thread, then the node figures in a new actix System on this
/// thread. `progress(stage, done, of)` is called on this thread as each measurement advances.
pub fn run(
    opts: BenchOptions,
    progress: &(dyn Fn(Stage, usize, usize) + Sync),
) -> Result<BenchReport, BenchError> {
    opts.check()?;
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let crypto = raw::crypto_round_trip(opts.crypto, |i| progress(Stage::Crypto, i, opts.crypto))?;
    let commit = raw::sqlite_commit(dir.path(), opts.commits, |i| {
        progress(Stage::Commits, i, opts.commits)
    })?;
    let keygen = raw::key_generation(opts.keygens, |i| progress(Stage::Keygens, i, opts.keygens))?;
    let spake2 = raw::spake2_exchange(opts.spake2, |i| progress(Stage::Spake2, i, opts.spake2))?;
    let raw = RawBaselines {
        crypto_round_trip: crypto,
        crypto_round_trips_per_second: 1000.0 / crypto.p50_ms.max(1e-9),
        sqlite_commit: commit,
        key_generation: keygen,
        spake2_exchange: spake2,
        message_floor_ms: crypto.p50_ms + 2.0 * commit.p50_ms,
        open_floor_ms: spake2.p50_ms + 2.0 * keygen.p50_ms + 4.0 * crypto.p50_ms,
    };
    let gpg = raw::gpg_round_trip(dir.path(), opts.gpg, |i| progress(Stage::Gpg, i, opts.gpg))?;
    let figures = actix::System::new().block_on(node::run(&opts, dir.path(), progress))?;
    let ratio = |a: f64, b: f64| a / b.max(1e-9);
    let per_second = figures.throughput_messages as f64 / figures.throughput_seconds;
    Ok(BenchReport {
        p1_throughput: ThroughputFigure {
            messages: figures.throughput_messages,
            seconds: figures.throughput_seconds,
            messages_per_second: per_second,
            ratio_to_one_core_crypto: ratio(per_second, raw.crypto_round_trips_per_second),
            rotations: figures.rotations,
        },
        p2_one_at_a_time: OneAtATimeFigure {
            stored: figures.stored,
            delivered: figures.delivered,
            stored_p50_ratio_to_commit: ratio(figures.stored.p50_ms, commit.p50_ms),
            delivered_p50_ratio_to_floor: ratio(figures.delivered.p50_ms, raw.message_floor_ms),
            delivered_p99_ratio_to_floor: ratio(figures.delivered.p99_ms, raw.message_floor_ms),
        },
        p5_gpg: gpg.map(|g| {
            let node_ms = 1000.0 / per_second.max(1e-9);
            GpgFigure {
                gpg_round_trip: g,
                node_ms_per_message: node_ms,
                times_faster_than_gpg: ratio(g.p50_ms, node_ms),
            }
        }),
        p4_open: OpenFigure {
            open: figures.open,
            p50_ratio_to_floor: ratio(figures.open.p50_ms, raw.open_floor_ms),
        },
        raw,
        options: opts,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_median_and_the_99th() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let q = Quantiles::of(v);
        assert_eq!((q.count, q.p50_ms, q.p99_ms), (100, 50.0, 99.0));
    }

    #[test]
    fn counts_out_of_bounds_are_refused() {
        let mut o = BenchOptions {
            messages: 0,
            ..BenchOptions::default()
        };
        assert!(matches!(
            o.check(),
            Err(BenchError::Count {
                what: "messages",
                ..
            })
        ));
        o.messages = MAX_COUNT + 1;
        assert!(o.check().is_err());
        o.messages = 1;
        o.opens = MAX_OPENS + 1;
        assert!(matches!(
            o.check(),
            Err(BenchError::Count { what: "opens", .. })
        ));
    }
}
