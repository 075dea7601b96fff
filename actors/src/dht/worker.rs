//! `DhtWorker`: the node's one DHT client, as an actor. It publishes the rendezvous record of every
//! discussion it is told about ([`Track`]) on a bounded schedule and whenever the listener's address
//! changes ([`SetListener`]), resolves a peer's record at a bounded rate ([`Resolve`]), and reports
//! how the DHT sees this node ([`GetDhtStatus`]).
//!
//! The `mainline` client runs its own thread; its async API is awaited from futures spawned on
//! this actor's context (never blocking the actor). Build the client with [`super::guard::build`]
//! outside the runtime (it binds a socket), then start this actor with it.
//!
//! Bounds: at most [`MAX_TRACKED`] discussions; at most [`MAX_PUTS_IN_FLIGHT`] puts at once (the
//! rest wait for the next tick); one lookup per discussion at a time, and
//! `min_lookup_interval` between the end of one and the start of the next.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use mainline::async_dht::AsyncDht;
use thiserror::Error;

use crate::dht::derive::{Period, RendezvousSecret};
use crate::dht::record::{self, unix_micros, PeerRecord, MAX_ADDRESSES};
use crate::wire::Role;

/// Discussions whose records one node publishes (one per open discussion; more are refused).
pub const MAX_TRACKED: usize = 4096;
/// Puts running at once; the others are due at the next tick.
pub const MAX_PUTS_IN_FLIGHT: usize = 4;
/// How often the worker checks which records are due (a period change, a failed put, a republish)
/// and asks the DHT how it sees this node's address (a change republishes every record).
pub const TICK: Duration = Duration::from_secs(30);
/// The address the DHT reports for this node is a majority vote of the nodes that answered, set
/// before it is confirmed: while the crate says "firewalled", it is published only once it was the
/// same on this many checks in a row ([`TICK`] apart), so a few answering nodes cannot steer where
/// our peers knock with one reply.
pub const PUBLIC_ADDRESS_STABLE_CHECKS: u32 = 2;

/// Where the worker learns the address the DHT sees for this node: the DHT itself, or a fixed value
/// that can be changed (tests: an address change without a restart).
#[derive(Clone, Default)]
pub enum AddressSource {
    #[default]
    Dht,
    /// Taken as confirmed (not firewalled).
    Fixed(Arc<Mutex<Option<Ipv4Addr>>>),
}

/// The public address to publish, from successive observations (pure: see
/// [`PUBLIC_ADDRESS_STABLE_CHECKS`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PublicAddress {
    /// What is published now.
    pub adopted: Option<IpAddr>,
    /// The last value seen and how many checks in a row saw it.
    seen: Option<(IpAddr, u32)>,
}

impl PublicAddress {
    /// One observation; whether the adopted address changed (then every record is due).
    pub fn observe(&mut self, seen: Option<IpAddr>, firewalled: bool) -> bool {
        let Some(ip) = seen else {
            // The DHT lost its view (no answers): keep publishing the last good one.
            self.seen = None;
            return false;
        };
        let count = match self.seen {
            Some((last, n)) if last == ip => n.saturating_add(1),
            _ => 1,
        };
        self.seen = Some((ip, count));
        if self.adopted != Some(ip) && (!firewalled || count >= PUBLIC_ADDRESS_STABLE_CHECKS) {
            self.adopted = Some(ip);
            return true;
        }
        false
    }
}

/// Node-wide: lookups (a [`Resolve`] or a [`GetItem`]) running at once, whatever the discussion.
pub const MAX_LOOKUPS_IN_FLIGHT: usize = 8;
/// Node-wide token bucket of DHT traversals (a [`Resolve`] costs 2: two periods; a [`GetItem`] 1):
/// at most this many in a burst...
pub const LOOKUP_BURST: u32 = 16;
/// ...then one more per this interval (30 a minute), however many discussions want one.
pub const LOOKUP_REFILL: Duration = Duration::from_secs(2);
/// Distinct items of one key tried, most recent first: anyone can put garbage at a high `seq` under
/// the identity record's public key, so the newest item is not trusted to be the valid one.
pub const MAX_CANDIDATES: usize = 8;

/// The node-wide lookup budget (pure; see [`MAX_LOOKUPS_IN_FLIGHT`], [`LOOKUP_BURST`]).
#[derive(Debug, Clone)]
pub struct LookupBudget {
    tokens: u32,
    refilled_at: Instant,
    in_flight: usize,
}

impl LookupBudget {
    pub fn new(now: Instant) -> Self {
        Self {
            tokens: LOOKUP_BURST,
            refilled_at: now,
            in_flight: 0,
        }
    }

    /// Take `cost` traversals and one in-flight slot, or refuse (nothing taken).
    pub fn try_start(&mut self, cost: u32, now: Instant) -> bool {
        let earned =
            now.saturating_duration_since(self.refilled_at).as_millis() / LOOKUP_REFILL.as_millis();
        let earned = u32::try_from(earned).unwrap_or(u32::MAX);
        if earned > 0 {
            self.tokens = self.tokens.saturating_add(earned).min(LOOKUP_BURST);
            self.refilled_at = if self.tokens == LOOKUP_BURST {
                now
            } else {
                self.refilled_at + LOOKUP_REFILL * earned
            };
        }
        if self.in_flight >= MAX_LOOKUPS_IN_FLIGHT || self.tokens < cost {
            return false;
        }
        self.tokens -= cost;
        self.in_flight += 1;
        true
    }

    /// A lookup started with [`Self::try_start`] ended.
    pub fn finish(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DhtError {
    #[error("the DHT is busy with other lookups (at most {MAX_LOOKUPS_IN_FLIGHT} at once, {LOOKUP_BURST} then one every {LOOKUP_REFILL:?}): try again later")]
    Busy,
    #[error("the DHT was asked about this discussion less than {0:?} ago")]
    RateLimited(Duration),
    #[error("the DHT does not know this discussion")]
    Unknown,
    #[error("the DHT already tracks {MAX_TRACKED} discussions")]
    Full,
}

/// The worker's schedule (from `[dht]` in the settings).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Republish every record at least this often even if nothing changed.
    pub republish_interval: Duration,
    /// Smallest time between two lookups of one discussion's peer.
    pub min_lookup_interval: Duration,
}

struct Tracked {
    secret: RendezvousSecret,
    role: Role,
    /// When and for which period the record was last stored, and under which address generation.
    published: Option<(Instant, Period, u64)>,
    putting: bool,
    /// The last `seq` put under this discussion's key of a period (the next must be above it).
    last_seq: Option<(Period, i64)>,
    looking_up: bool,
    last_lookup: Option<Instant>,
}

pub struct DhtWorker {
    dht: AsyncDht,
    config: WorkerConfig,
    tracked: HashMap<String, Tracked>,
    port: u16,
    addresses: Vec<IpAddr>,
    /// The DHT's view of our address, as published (see [`PublicAddress`]).
    public: PublicAddress,
    source: AddressSource,
    /// Bumped when the listener's address or the public one changes: records of older generations
    /// are due at once.
    generation: u64,
    puts_in_flight: usize,
    lookups: LookupBudget,
    counters: Arc<Counters>,
}

/// What the worker did, for `status` and for tests (lookups that reached the DHT, puts stored).
#[derive(Debug, Default)]
pub struct Counters {
    pub lookups: AtomicU64,
    pub puts: AtomicU64,
    pub put_failures: AtomicU64,
}

impl DhtWorker {
    pub fn new(dht: mainline::Dht, config: WorkerConfig) -> Self {
        Self {
            dht: dht.as_async(),
            config,
            tracked: HashMap::new(),
            port: 0,
            addresses: Vec::new(),
            public: PublicAddress::default(),
            source: AddressSource::Dht,
            generation: 0,
            puts_in_flight: 0,
            lookups: LookupBudget::new(Instant::now()),
            counters: Arc::default(),
        }
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Learn the public address from `source` instead of the DHT (tests).
    pub fn with_address_source(mut self, source: AddressSource) -> Self {
        self.source = source;
        self
    }

    /// Ask how the DHT sees our address; a change (see [`PublicAddress`]) republishes every record.
    /// Then start the puts that are due.
    fn check_address(&mut self, ctx: &mut Context<Self>) {
        let (dht, source) = (self.dht.clone(), self.source.clone());
        let ask = async move {
            match source {
                AddressSource::Dht => {
                    let info = dht.info().await;
                    (
                        info.public_address().map(|a| IpAddr::V4(*a.ip())),
                        info.firewalled(),
                    )
                }
                AddressSource::Fixed(v) => {
                    let ip = *v.lock().unwrap_or_else(|p| p.into_inner());
                    (ip.map(IpAddr::V4), false)
                }
            }
        };
        ctx.spawn(ask.into_actor(self).map(|(seen, firewalled), act, ctx| {
            if act.public.observe(seen, firewalled) {
                log::debug!("dht: our public address changed: republishing");
                act.generation += 1;
            }
            act.publish_due(ctx);
        }));
    }

    /// Start the puts that are due, up to [`MAX_PUTS_IN_FLIGHT`].
    fn publish_due(&mut self, ctx: &mut Context<Self>) {
        if self.port == 0 {
            return;
        }
        let period = Period::now();
        let now = Instant::now();
        let due: Vec<String> = self
            .tracked
            .iter()
            .filter(|(_, t)| !t.putting)
            .filter(|(_, t)| match t.published {
                None => true,
                Some((at, p, generation)) => {
                    p != period
                        || generation != self.generation
                        || now.duration_since(at) >= self.config.republish_interval
                }
            })
            .map(|(id, _)| id.clone())
            .take(MAX_PUTS_IN_FLIGHT.saturating_sub(self.puts_in_flight))
            .collect();
        for id in due {
            let Some(t) = self.tracked.get_mut(&id) else {
                continue;
            };
            t.putting = true;
            self.puts_in_flight += 1;
            let keys = t.secret.slot(t.role, period);
            let last = t.last_seq.filter(|(p, _)| *p == period).map(|(_, seq)| seq);
            let time_us = unix_micros();
            let seq = record::next_seq(period, time_us, last);
            t.last_seq = Some((period, seq));
            let (dht, port, mut addresses) = (self.dht.clone(), self.port, self.addresses.clone());
            let generation = self.generation;
            let counters = self.counters.clone();
            // The DHT's view of our address comes first (what a peer elsewhere can reach), once
            // adopted; the listener's own addresses always follow.
            if let Some(ip) = self.public.adopted {
                addresses.retain(|a| *a != ip);
                addresses.insert(0, ip);
            }
            let put = async move {
                addresses.truncate(MAX_ADDRESSES);
                if addresses.is_empty() {
                    return false;
                }
                let Ok(item) = record::seal_with_seq(&keys, port, &addresses, time_us, seq) else {
                    return false;
                };
                match dht.put_mutable(item, None).await {
                    Ok(_) => {
                        counters.puts.fetch_add(1, Ordering::Relaxed);
                        true
                    }
                    Err(e) => {
                        counters.put_failures.fetch_add(1, Ordering::Relaxed);
                        log::debug!("dht: put failed: {e}");
                        false
                    }
                }
            };
            ctx.spawn(put.into_actor(self).map(move |stored, act, ctx| {
                act.puts_in_flight -= 1;
                if let Some(t) = act.tracked.get_mut(&id) {
                    t.putting = false;
                    if stored {
                        t.published = Some((Instant::now(), period, generation));
                    }
                }
                act.publish_due(ctx);
            }));
        }
    }
}

impl Actor for DhtWorker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.check_address(ctx);
        ctx.run_interval(TICK.min(self.config.republish_interval), |act, ctx| {
            act.check_address(ctx)
        });
    }
}

/// Run one [`TICK`] now (tests: no need to wait 30 s for the address check).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Tick;

impl Handler<Tick> for DhtWorker {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Self::Context) {
        self.check_address(ctx);
    }
}

/// Publish (and keep publishing) this discussion's record as `role`.
#[derive(Message)]
#[rtype(result = "Result<(), DhtError>")]
pub struct Track {
    pub discussion_id: String,
    pub secret: RendezvousSecret,
    /// Our own role in the discussion (we publish under it; we read the peer's).
    pub role: Role,
}

impl Handler<Track> for DhtWorker {
    type Result = Result<(), DhtError>;

    fn handle(&mut self, m: Track, ctx: &mut Self::Context) -> Self::Result {
        if !self.tracked.contains_key(&m.discussion_id) && self.tracked.len() >= MAX_TRACKED {
            return Err(DhtError::Full);
        }
        // Tracked again (a new secret): published anew, but the lookup limiter's state is kept,
        // so re-tracking is no way around `min_lookup_interval`.
        let (looking_up, last_lookup, last_seq) = self
            .tracked
            .get(&m.discussion_id)
            .map_or((false, None, None), |t| {
                (t.looking_up, t.last_lookup, t.last_seq)
            });
        self.tracked.insert(
            m.discussion_id,
            Tracked {
                secret: m.secret,
                role: m.role,
                published: None,
                putting: false,
                last_seq,
                looking_up,
                last_lookup,
            },
        );
        self.publish_due(ctx);
        Ok(())
    }
}

/// Stop publishing this discussion's record (closed: its secret is being destroyed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Untrack(pub String);

impl Handler<Untrack> for DhtWorker {
    type Result = ();

    fn handle(&mut self, m: Untrack, _: &mut Self::Context) {
        self.tracked.remove(&m.0);
    }
}

/// Keep only these discussions (the store's open ones): after missed `DiscussionClosed` events, a
/// closed discussion's record is not published any longer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retain(pub std::collections::HashSet<String>);

impl Handler<Retain> for DhtWorker {
    type Result = ();

    fn handle(&mut self, m: Retain, _: &mut Self::Context) {
        self.tracked.retain(|id, _| m.0.contains(id));
    }
}

/// The main listener's port and the addresses to publish besides the DHT's view of ours; a change
/// republishes every record at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetListener {
    pub port: u16,
    pub addresses: Vec<IpAddr>,
}

impl Handler<SetListener> for DhtWorker {
    type Result = ();

    fn handle(&mut self, m: SetListener, ctx: &mut Self::Context) {
        let mut addresses = m.addresses;
        addresses.truncate(MAX_ADDRESSES);
        if m.port != self.port || addresses != self.addresses {
            self.port = m.port;
            self.addresses = addresses;
            self.generation += 1;
            self.publish_due(ctx);
        }
    }
}

/// Look up where this discussion's peer published itself (its current period, else the previous).
/// `Ok(None)`: no valid record found.
#[derive(Message)]
#[rtype(result = "Result<Option<PeerRecord>, DhtError>")]
pub struct Resolve(pub String);

impl Handler<Resolve> for DhtWorker {
    type Result = ResponseActFuture<Self, Result<Option<PeerRecord>, DhtError>>;

    fn handle(&mut self, m: Resolve, _: &mut Self::Context) -> Self::Result {
        let min = self.config.min_lookup_interval;
        let Some(t) = self.tracked.get_mut(&m.0) else {
            return Box::pin(fut::ready(Err(DhtError::Unknown)));
        };
        // One lookup at a time per discussion, and the next no sooner than `min` after the last
        // one ended (a lookup itself takes seconds on the real DHT).
        if t.looking_up || t.last_lookup.is_some_and(|at| at.elapsed() < min) {
            return Box::pin(fut::ready(Err(DhtError::RateLimited(min))));
        }
        // And node-wide: two traversals (two periods) from the shared budget.
        if !self.lookups.try_start(2, Instant::now()) {
            return Box::pin(fut::ready(Err(DhtError::Busy)));
        }
        t.looking_up = true;
        let current = Period::now();
        let slots = [
            t.secret.slot(t.role.peer(), current),
            t.secret.slot(t.role.peer(), current.previous()),
        ];
        let (dht, counters) = (self.dht.clone(), self.counters.clone());
        let lookup = async move {
            // Both periods at once; the current one's record wins when both are valid.
            let lookups = slots.iter().map(|keys| {
                counters.lookups.fetch_add(1, Ordering::Relaxed);
                let dht = dht.clone();
                async move { dht.get_mutable_most_recent(&keys.public_key, None).await }
            });
            let found = futures::future::join_all(lookups).await;
            for (keys, item) in slots.iter().zip(found) {
                if let Some(item) = item {
                    match record::open(keys, &item, unix_micros()) {
                        Ok(r) => return Ok(Some(r)),
                        Err(e) => log::debug!("dht: record refused: {e}"),
                    }
                }
            }
            Ok(None)
        };
        let id = m.0;
        Box::pin(lookup.into_actor(self).map(move |result, act, _| {
            act.lookups.finish();
            if let Some(t) = act.tracked.get_mut(&id) {
                t.looking_up = false;
                t.last_lookup = Some(Instant::now());
            }
            result
        }))
    }
}

/// Store a ready-signed item (the opt-in identity record, signed on a crypto worker).
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct PutItem(pub mainline::MutableItem);

impl Handler<PutItem> for DhtWorker {
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, m: PutItem, _: &mut Self::Context) -> Self::Result {
        let (dht, counters) = (self.dht.clone(), self.counters.clone());
        Box::pin(async move {
            match dht.put_mutable(m.0, None).await {
                Ok(_) => {
                    counters.puts.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Err(e) => {
                    counters.put_failures.fetch_add(1, Ordering::Relaxed);
                    Err(e.to_string())
                }
            }
        })
    }
}

/// Fetch the items under a BEP 44 key (the opt-in identity record: the caller checks them on a
/// crypto worker with `identity_record::open`, in this order, and keeps the first valid one): at
/// most [`MAX_CANDIDATES`] distinct ones, most recent (`seq`) first. Counted as a lookup, from the
/// node-wide budget ([`DhtError::Busy`] when spent).
#[derive(Message)]
#[rtype(result = "Result<Vec<mainline::MutableItem>, DhtError>")]
pub struct GetItem(pub [u8; 32]);

impl Handler<GetItem> for DhtWorker {
    type Result = ResponseActFuture<Self, Result<Vec<mainline::MutableItem>, DhtError>>;

    fn handle(&mut self, m: GetItem, _: &mut Self::Context) -> Self::Result {
        if !self.lookups.try_start(1, Instant::now()) {
            return Box::pin(fut::ready(Err(DhtError::Busy)));
        }
        let (dht, counters) = (self.dht.clone(), self.counters.clone());
        let get = async move {
            counters.lookups.fetch_add(1, Ordering::Relaxed);
            Ok(candidates(dht.get_mutable(&m.0, None, None)).await)
        };
        Box::pin(get.into_actor(self).map(|result, act, _| {
            act.lookups.finish();
            result
        }))
    }
}

/// The first [`MAX_CANDIDATES`] distinct items of a lookup's stream, most recent first (the
/// stream itself ends with the traversal).
async fn candidates(
    mut items: impl futures::Stream<Item = mainline::MutableItem> + Unpin,
) -> Vec<mainline::MutableItem> {
    use futures::StreamExt;
    let mut kept: Vec<mainline::MutableItem> = Vec::new();
    while let Some(item) = items.next().await {
        if kept
            .iter()
            .any(|k| k.seq() == item.seq() && k.value() == item.value())
        {
            continue;
        }
        kept.push(item);
        // The first distinct ones to arrive (each node answers with one item): enough to get past
        // a few nodes holding garbage; more would only be more garbage to check.
        if kept.len() == MAX_CANDIDATES {
            break;
        }
    }
    kept.sort_by_key(|k| std::cmp::Reverse(k.seq()));
    kept
}

/// How the DHT sees this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhtStatus {
    /// The node's own DHT socket.
    pub local_address: std::net::SocketAddrV4,
    /// The address other DHT nodes see for this node (none until some have answered).
    pub public_address: Option<std::net::SocketAddrV4>,
    /// The crate's "firewalled": the DHT's UDP port does not look reachable from outside. Says
    /// nothing about the chat's TCP port.
    pub firewalled: bool,
    /// Discussions whose records this node publishes.
    pub tracked: usize,
    pub lookups: u64,
    pub puts: u64,
    pub put_failures: u64,
}

#[derive(Message)]
#[rtype(result = "DhtStatus")]
pub struct GetDhtStatus;

impl Handler<GetDhtStatus> for DhtWorker {
    type Result = ResponseFuture<DhtStatus>;

    fn handle(&mut self, _: GetDhtStatus, _: &mut Self::Context) -> Self::Result {
        let (dht, counters, tracked) =
            (self.dht.clone(), self.counters.clone(), self.tracked.len());
        Box::pin(async move {
            let info = dht.info().await;
            DhtStatus {
                local_address: info.local_addr(),
                public_address: info.public_address(),
                firewalled: info.firewalled(),
                tracked,
                lookups: counters.lookups.load(Ordering::Relaxed),
                puts: counters.puts.load(Ordering::Relaxed),
                put_failures: counters.put_failures.load(Ordering::Relaxed),
            }
        })
    }
}

#[cfg(test)]
mod tests;
