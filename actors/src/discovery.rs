//! Discovery actor: "who's there" over UDP (SPEC 3.1, seed 2.A).
//!
//! Two sockets. The *shared* socket is bound to the network's discovery port with SO_REUSEADDR, so
//! every node on a host hears every broadcast. The *own* socket (ephemeral port) sends this node's
//! announces and replies, and receives the replies meant for this node: a reply goes to the source
//! address of the announce it answers, which is that node's own socket.
//!
//! Every interval (and at start) the node broadcasts a signed announce, padded to
//! [`ANNOUNCE_PADDED_BYTES`]. A node hearing an announce that is not its own and not a reply answers
//! the sender with its unpadded announce, and only if that reply is not larger than what it answers
//! (no amplification). It answers only a source it has not heard for [`REPLY_QUIET_INTERVALS`]
//! intervals (a newcomer: the others hear our broadcasts anyway), at most
//! [`MAX_REPLIES_PER_INTERVAL`] an interval, each after a random delay of up to
//! [`REPLY_SPREAD_PER_SOURCE`] per source heard recently and at most half an interval (so a node
//! joining N others is not sent N replies at once, most of which it would drop). With N
//! nodes that are all up, an interval costs each node N−1 checks, not 2·(N−1).
//!
//! Signatures are checked on the key manager's workers, at most [`MAX_VERIFICATIONS_IN_FLIGHT`] at
//! a time; anything beyond is dropped and counted, so a flood costs bounded memory and CPU. The
//! certificate inside an announce is checked once for given bytes ([`crate::announce::cert_cache`]);
//! the announce's own signature every time.
//!
//! A blocked fingerprint's announces are ignored by the registry and not answered.
//!
//! Talks to: the key manager (sign, verify), the contact registry ([`AnnounceSeen`], [`IsBlocked`]).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::net::UdpSocket;

use crate::announce::cert_cache::{CertCache, SharedCertCache};
use crate::announce::{self, AnnounceRefused, Freshness};
use crate::codec;
use crate::contacts::{AnnounceSeen, ContactRegistry, IsBlocked};
use crate::events::now_secs;
use crate::handshake::random_nonce;
use crate::keys::KeysHandle;
use crate::settings::Settings;
use crate::store::ContactOrigin;
use crate::wire::{Announce, AnnounceBody, ANNOUNCE_VERSION};

/// Broadcast announces are padded to this size; replies are not padded.
pub const ANNOUNCE_PADDED_BYTES: usize = 1200;
/// Announce signatures being checked at once; further datagrams are dropped until one finishes.
pub const MAX_VERIFICATIONS_IN_FLIGHT: usize = 32;
/// Distinct sources remembered as recently heard (for [`REPLY_QUIET_INTERVALS`]).
pub const MAX_REPLY_SOURCES: usize = 4096;
/// A source heard within this many intervals is not answered: it heard our broadcasts too. Many
/// intervals, so that a busy node dropping some announces (`dropped_busy`) does not take a node it
/// knows for a newcomer.
pub const REPLY_QUIET_INTERVALS: u32 = 10;
/// Replies sent in one interval at most; newcomers beyond learn us from our next broadcast.
pub const MAX_REPLIES_PER_INTERVAL: usize = 64;
/// A reply waits a random delay of up to this much per source heard recently (about what a
/// newcomer's worker takes to check one announce), and at most half an interval: with two nodes
/// the answer is immediate, with a hundred the newcomer's replies come over ~200 ms.
pub const REPLY_SPREAD_PER_SOURCE: Duration = Duration::from_millis(2);
pub use crate::announce::MAX_NAME_CHARS;

/// Counters, readable through [`GetDiscoveryStats`].
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct DiscoveryStats {
    pub received: u64,
    pub dropped_malformed: u64,
    pub dropped_busy: u64,
    pub dropped_bad_signature: u64,
    pub accepted: u64,
    pub replies_sent: u64,
    pub announces_sent: u64,
}

pub struct Discovery {
    node: String,
    settings: Settings,
    keys: KeysHandle,
    contacts: Addr<ContactRegistry>,
    own: Arc<UdpSocket>,
    shared: Option<Arc<UdpSocket>>,
    /// Our certificate as announced (to recognise our own broadcasts without re-encoding).
    own_cert: Vec<u8>,
    tcp_port: u16,
    /// This interval's signed reply, ready to send.
    reply: Option<Arc<Vec<u8>>>,
    /// Sources whose announce (broadcast or reply) checked out, and when last.
    heard: HashMap<SocketAddr, Instant>,
    replies_this_interval: usize,
    certs: SharedCertCache,
    in_flight: usize,
    stats: DiscoveryStats,
}

/// Bound discovery sockets, created before the actor so errors surface at node start.
pub struct DiscoverySockets {
    pub own: UdpSocket,
    pub shared: UdpSocket,
}

impl DiscoverySockets {
    pub fn bind(settings: &Settings) -> io::Result<Self> {
        use socket2::{Domain, Protocol, Socket, Type};
        let d = &settings.discovery;
        let shared_addr = SocketAddr::new(d.bind, d.port);
        let shared = Socket::new(
            Domain::for_address(shared_addr),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        shared.set_reuse_address(true)?;
        shared.set_broadcast(true)?;
        shared.set_nonblocking(true)?;
        shared.bind(&shared_addr.into()).map_err(|e| {
            io::Error::new(e.kind(), format!("discovery socket {shared_addr}: {e}"))
        })?;
        let own_addr = SocketAddr::new(d.source, 0);
        let own = Socket::new(
            Domain::for_address(own_addr),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        own.set_broadcast(true)?;
        own.set_nonblocking(true)?;
        own.bind(&own_addr.into())
            .map_err(|e| io::Error::new(e.kind(), format!("discovery source {own_addr}: {e}")))?;
        Ok(Self {
            own: UdpSocket::from_std(own.into())?,
            shared: UdpSocket::from_std(shared.into())?,
        })
    }
}

impl Discovery {
    pub fn new(
        settings: Settings,
        sockets: DiscoverySockets,
        keys: KeysHandle,
        contacts: Addr<ContactRegistry>,
        tcp_port: u16,
    ) -> Self {
        Self {
            node: settings.node.name.clone(),
            own_cert: keys.public().to_bytes(),
            settings,
            keys,
            contacts,
            own: Arc::new(sockets.own),
            shared: Some(Arc::new(sockets.shared)),
            tcp_port,
            reply: None,
            heard: HashMap::new(),
            replies_this_interval: 0,
            certs: CertCache::shared(),
            in_flight: 0,
            stats: DiscoveryStats::default(),
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(self.settings.discovery.interval_secs)
    }

    fn body(&self, reply: bool) -> AnnounceBody {
        announce_body(
            self.keys.name(),
            self.own_cert.clone(),
            self.tcp_port,
            random_nonce(),
            reply,
        )
    }

    /// Sign this interval's announce and reply, then broadcast the announce.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let quiet = self.interval() * REPLY_QUIET_INTERVALS;
        self.heard.retain(|_, t| now.duration_since(*t) < quiet);
        self.replies_this_interval = 0;
        let keys = self.keys.clone();
        let bodies = (self.body(false), self.body(true));
        let broadcast = SocketAddr::new(
            self.settings.discovery.broadcast,
            self.settings.discovery.port,
        );
        let enabled = self.settings.discovery.enabled;
        let fut = async move {
            let announce = sign_announce(&keys, &bodies.0, ANNOUNCE_PADDED_BYTES).await?;
            let reply = sign_announce(&keys, &bodies.1, 0).await?;
            Ok::<_, AnnounceError>((announce, reply))
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, _| match res {
            Ok((announce, reply)) => {
                act.reply = Some(Arc::new(reply));
                if enabled {
                    let own = act.own.clone();
                    let node = act.node.clone();
                    act.stats.announces_sent += 1;
                    actix_rt::spawn(async move {
                        if let Err(e) = own.send_to(&announce, broadcast).await {
                            log::warn!("[{node}] announce to {broadcast}: {e}");
                        }
                    });
                }
            }
            Err(e) => log::error!("[{}] cannot sign announce: {e}", act.node),
        }));
    }

    fn on_datagram(&mut self, bytes: Vec<u8>, from: SocketAddr, ctx: &mut Context<Self>) {
        self.stats.received += 1;
        let received_len = bytes.len();
        let (announce, body) = match announce::parse(&bytes, Freshness::Live) {
            Ok(parsed) => parsed,
            Err(e) => {
                self.stats.dropped_malformed += 1;
                let what = match e {
                    AnnounceRefused::Malformed => "malformed datagram",
                    _ => "refused announce (version, name or time)",
                };
                crate::log_limit::hostile(
                    log::Level::Debug,
                    &self.node,
                    &from.ip(),
                    format_args!("{what} from {from}"),
                );
                return;
            }
        };
        if body.cert == self.own_cert {
            return; // our own broadcast
        }
        if self.in_flight >= MAX_VERIFICATIONS_IN_FLIGHT {
            self.stats.dropped_busy += 1;
            return;
        }
        self.in_flight += 1;
        let keys = self.keys.clone();
        let reply = body.reply;
        let certs = self.certs.clone();
        let fut =
            async move { announce::verify_parsed_cached(&keys, &certs, announce, body).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.in_flight -= 1;
            let verified = match res {
                Ok(c) => c,
                Err(e) => {
                    act.stats.dropped_bad_signature += 1;
                    crate::log_limit::hostile(
                        log::Level::Debug,
                        &act.node,
                        &from.ip(),
                        format_args!("announce from {from} refused: {e}"),
                    );
                    return;
                }
            };
            act.stats.accepted += 1;
            // Heard now, by broadcast or by reply (a reply means it heard us): was it before?
            let recently = act.heard_recently(from);
            let blocked = IsBlocked(verified.fingerprint.clone());
            let seen = AnnounceSeen::new(verified, from.ip(), ContactOrigin::Broadcast);
            let contacts = act.contacts.clone();
            ctx.spawn(
                async move {
                    // A blocked key is not answered either (the registry ignores its announce).
                    let blocked = contacts.send(blocked).await.unwrap_or(true);
                    let _ = contacts.send(seen).await;
                    blocked
                }
                .into_actor(act)
                .map(move |blocked, act, _| {
                    if !reply && !blocked && !recently {
                        act.maybe_reply(from, received_len);
                    }
                }),
            );
        }));
    }

    /// Whether a checked announce came from `from` within [`REPLY_QUIET_INTERVALS`]; remembers
    /// this one (up to [`MAX_REPLY_SOURCES`] sources; the tick forgets the quiet ones).
    fn heard_recently(&mut self, from: SocketAddr) -> bool {
        let now = Instant::now();
        let quiet = self.interval() * REPLY_QUIET_INTERVALS;
        let recently = self
            .heard
            .get(&from)
            .is_some_and(|t| now.duration_since(*t) < quiet);
        // Before our first reply is signed we cannot answer: do not count the source as answered.
        let can_answer = self.reply.is_some();
        if can_answer && (self.heard.len() < MAX_REPLY_SOURCES || self.heard.contains_key(&from)) {
            self.heard.insert(from, now);
        }
        recently
    }

    fn maybe_reply(&mut self, to: SocketAddr, received_len: usize) {
        let Some(reply) = self.reply.clone() else {
            return;
        };
        if reply.len() > received_len {
            log::debug!(
                "[{}] no reply to {to}: it would be larger than the announce",
                self.node
            );
            return;
        }
        if self.replies_this_interval >= MAX_REPLIES_PER_INTERVAL {
            return;
        }
        self.replies_this_interval += 1;
        self.stats.replies_sent += 1;
        let own = self.own.clone();
        let node = self.node.clone();
        // Every node that hears a newcomer answers it: the more nodes there are, the wider the
        // replies are spread, so the newcomer can check them as they come.
        let spread = (REPLY_SPREAD_PER_SOURCE * self.heard.len() as u32).min(self.interval() / 2);
        let delay = spread.mul_f64(rand::random::<f64>());
        actix_rt::spawn(async move {
            actix_rt::time::sleep(delay).await;
            if let Err(e) = own.send_to(&reply, to).await {
                log::debug!("[{node}] reply to {to}: {e}");
            }
        });
    }
}

/// Why our own announce could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[error("{0}")]
    Codec(#[from] crate::codec::CodecError),
    #[error("{0}")]
    Crypto(#[from] crate::crypto::CryptoError),
}

/// This node's announce body: `name` (truncated), main TCP port, certificate, `nonce`, now.
pub fn announce_body(
    name: &str,
    cert: Vec<u8>,
    tcp_port: u16,
    nonce: crate::wire::Nonce,
    reply: bool,
) -> AnnounceBody {
    AnnounceBody {
        version: ANNOUNCE_VERSION,
        name: name.chars().take(MAX_NAME_CHARS).collect(),
        tcp_port,
        cert,
        nonce,
        time: now_secs(),
        reply,
    }
}

/// Sign an announce body and pad the datagram to `pad_to` bytes (0: no padding).
pub async fn sign_announce(
    keys: &impl crate::net::Crypto,
    body: &AnnounceBody,
    pad_to: usize,
) -> Result<Vec<u8>, AnnounceError> {
    let body = codec::encode(body)?;
    let signature = keys.sign(body.clone()).await?;
    let mut a = Announce {
        body,
        signature,
        padding: vec![],
    };
    let len = codec::encode(&a)?.len();
    a.padding = vec![0; pad_to.saturating_sub(len)];
    Ok(codec::encode(&a)?)
}

/// A received datagram.
struct Datagram(Vec<u8>, SocketAddr);

fn datagrams(
    node: String,
    socket: Arc<UdpSocket>,
    max: usize,
) -> impl futures::Stream<Item = Datagram> {
    futures::stream::unfold(socket, move |socket| {
        let node = node.clone();
        async move {
            let mut buf = vec![0u8; max + 1];
            loop {
                match socket.recv_from(&mut buf).await {
                    // Longer than the limit (truncated by the kernel to max + 1): not ours.
                    Ok((n, _)) if n > max => continue,
                    Ok((n, from)) => {
                        buf.truncate(n);
                        return Some((Datagram(buf, from), socket));
                    }
                    Err(e) => {
                        log::debug!("[{node}] discovery recv: {e}");
                        actix_rt::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
    })
}

impl Actor for Discovery {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let max = self.settings.limits.max_datagram_bytes;
        if let Some(shared) = self.shared.take() {
            ctx.add_stream(datagrams(self.node.clone(), shared, max));
        }
        ctx.add_stream(datagrams(self.node.clone(), self.own.clone(), max));
        self.tick(ctx);
        ctx.run_interval(self.interval(), |act, ctx| act.tick(ctx));
        log::info!(
            "[{}] discovery on port {} (broadcast {}), announcing TCP port {}",
            self.node,
            self.settings.discovery.port,
            self.settings.discovery.broadcast,
            self.tcp_port
        );
    }
}

impl StreamHandler<Datagram> for Discovery {
    fn handle(&mut self, d: Datagram, ctx: &mut Context<Self>) {
        self.on_datagram(d.0, d.1, ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // The datagram streams never end; nothing to do (and do not stop the actor).
    }
}

#[derive(Message)]
#[rtype(result = "DiscoveryStats")]
pub struct GetDiscoveryStats;

impl Handler<GetDiscoveryStats> for Discovery {
    type Result = MessageResult<GetDiscoveryStats>;
    fn handle(&mut self, _: GetDiscoveryStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.stats)
    }
}
