//! Discussion session actor: one per open discussion (SPEC 3.3, 3.4; seed 1.A and 2.C).
//!
//! Owns the discussion's keys, its connection and its delivery state:
//! - the receiver owns a TCP listener for this discussion (port kept in the store and reused after
//!   a restart when free); the requester connects to it, and reconnects with backoff after a drop;
//! - every connection starts with the discussion-key authentication of [`crate::net`];
//! - outgoing messages are committed to the store first (`stored`), written to the peer (`sent`)
//!   and marked `delivered` when the peer's signed cumulative ack arrives; on every (re)connection
//!   the whole undelivered outbox is sent again in order;
//! - incoming messages are decrypted and verified on the key manager's workers, checked (discussion,
//!   intended recipient, size), stored exactly once and in order, then acknowledged.
//!
//! Messages: [`SendText`], [`Attach`] (an authenticated connection), [`CloseDiscussion`],
//! [`Reconnect`]. Talks to: key manager, store worker, event bus, directory ([`SessionStopped`]).
//! Incoming frames are handled one at a time (`ctx.wait`): ordering is what makes "exactly once, in
//! order" simple, and the awaited workers never call back into this actor.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::{SinkExt, StreamExt};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::admission::ConnectionPool;
use crate::codec::CodecError;
use crate::contacts::{ContactRegistry, FindContact};
use crate::crypto::{PublicCert, SecretCert};
use crate::events::{now_secs, Event, EventBus};
use crate::keys::KeysHandle;
use crate::net::chat::{check_chat, decrypt_chat, encrypt_chat, ChatError};
use crate::net::control::{check_control, decrypt_control, encrypt_control};
use crate::net::Crypto as _;
use crate::net::{self, Conn, SessionKeys};
use crate::settings::Settings;
use crate::store::{
    DeliveryState, DiscussionState, Durability, Incoming, MessageKind, MessageRecord, Outgoing,
    StoreError, StoreHandle, SubkeyState,
};
use crate::wire::{ack_data, ChatPayload, ControlPayload, Frame, Purpose, Role};

/// First reconnection delay; it doubles up to `limits.reconnect_max_secs`.
pub const RECONNECT_MIN: Duration = Duration::from_millis(250);
/// A closing receiver's first dial waits at least this long after a drop.
pub const RECEIVER_DIAL_MIN: Duration = Duration::from_secs(2);
/// With the DHT on, a receiver still without a connection this long after a drop (or its start)
/// looks the requester up on the DHT and dials it (issue 11); again as long as it stays
/// disconnected, each lookup bounded by `dht.min_lookup_interval_secs`.
pub const RECEIVER_DHT_DIAL_AFTER: Duration = Duration::from_secs(5);
/// Connections of one discussion still authenticating (both ways in). When full, a newcomer evicts
/// an unauthenticated one ([`crate::admission::ConnectionPool`]).
pub const MAX_UNAUTHENTICATED: usize = 8;
/// Of those, from one source address.
pub const MAX_UNAUTHENTICATED_PER_ADDRESS: usize = 2;
/// Messages the sender pump reads from the store at a time.
pub const PUMP_BATCH: u64 = 256;

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("message of {0} bytes exceeds the limit of {1}")]
    TooLarge(usize, usize),
    #[error("the discussion is closed")]
    Closed,
    #[error("cannot sign with the discussion key: {0}")]
    Key(#[from] crate::crypto::CryptoError),
    /// A key rotation with a peer not (yet) known to speak protocol version 4.
    #[error("the peer speaks protocol version {0}, without key rotation (4)")]
    NoRotation(u16),
    /// A rotation step runs: asked again a moment later, `rotate` answers with its key.
    #[error("a key rotation step is under way: try again")]
    RotationBusy,
    /// A control message for a peer not (yet) known to speak protocol version 2.
    #[error("the peer speaks protocol version {0}, without the control channel")]
    NoControlChannel(u16),
    #[error("cannot encode the control message: {0}")]
    Encode(#[from] CodecError),
}

/// Why a frame was dropped or a connection's sending stopped: one bad frame costs that frame, a
/// slow or gone connection costs the connection ([`LinkError::costs_the_connection`]).
#[derive(Debug, Error)]
pub enum LinkError {
    #[error("{0}")]
    Chat(#[from] ChatError),
    #[error("{0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("message {seq} while {expected} is missing")]
    Gap { seq: u64, expected: u64 },
    #[error("bad ack signature: {0}")]
    BadAck(#[source] crate::crypto::CryptoError),
    #[error("peer too slow")]
    TooSlow,
    #[error("peer too slow to take acks")]
    TooSlowForAcks,
    #[error("connection gone")]
    ConnectionGone,
    #[error("outgoing control message {0} cannot be read back")]
    BadControlRow(u64),
    #[error("control message on a version-{0} connection")]
    ControlBeforeV2(u16),
}

impl LinkError {
    /// The connection cannot carry on (its queue is full past the deadline, or it is gone).
    pub fn costs_the_connection(&self) -> bool {
        matches!(
            self,
            Self::TooSlow | Self::TooSlowForAcks | Self::ConnectionGone
        )
    }
}

pub struct DiscussionSession {
    node: String,
    settings: Settings,
    sk: SessionKeys,
    /// The same keys, for the receiver's discussion listener: its loop lives as long as the
    /// session, so it reads them here at each connection rather than keep a copy (which would keep
    /// a key a rotation replaced, and its destroyed subkey, in memory). Changed only with `sk.own`
    /// ([`Self::set_own_key`]).
    listener_sk: Arc<std::sync::Mutex<SessionKeys>>,
    peer_name: String,
    peer_fingerprint: String,
    /// Requester: where the receiver's discussion listener is.
    peer_endpoint: Option<SocketAddr>,
    listener: Option<TcpListener>,
    /// Receiver: our discussion listener's port (told to the peer inside `SessionAuth`).
    listen_port: u16,
    /// Requester: where to find the peer's main listener when the discussion port is unreachable.
    contacts: Option<Addr<ContactRegistry>>,
    /// Requester: the DHT, last resort when neither the discussion port nor the announced main
    /// listener answers (the peer moved and is not heard by broadcast; issue 11).
    dht: Option<Addr<crate::dht::DhtWorker>>,
    /// Receiver: a dial through the DHT is scheduled ([`RECEIVER_DHT_DIAL_AFTER`]).
    dht_dial_scheduled: bool,
    /// We closed the discussion; the peer has not confirmed yet (persisted as `closing`).
    closing: bool,
    /// The peer sent its `Close` while our outbox was not empty: no new messages; we confirm once
    /// the peer has acknowledged the rest (not persisted: the closing peer sends its `Close` again
    /// on every connection).
    peer_closing: bool,
    /// The connection generation on which our `Close` was sent.
    close_sent: Option<u64>,
    /// Sender pump: running, asked to run again, next sequence number to send on this connection.
    pumping: bool,
    pump_again: bool,
    next_to_send: u64,
    /// Connections still authenticating, whether they came to the discussion listener or were
    /// routed from the main one: [`MAX_UNAUTHENTICATED`] in all.
    unauthenticated: ConnectionPool,
    keys: KeysHandle,
    store: StoreHandle,
    events: EventBus,
    directory: Recipient<SessionStopped>,
    conn: Option<Link>,
    generation: u64,
    /// Frames read off the connection and not yet handled (`handlers::next_inbound`).
    inbound: handlers::InboundBacklog,
    backoff: Duration,
    connecting: bool,
    finished: bool,
    /// Closed without the peer ([`CloseDiscussion`] `force`): the `Close` signed before our key was
    /// destroyed, handed to the directory when the session stops so the peer is told later.
    close_proof: Option<Vec<u8>>,
    /// The highest protocol version the peer has authenticated at: no connection below it is
    /// accepted (downgrade defence). Shared with the discussion listener's accept loop.
    peer_version: Arc<std::sync::atomic::AtomicU16>,
    /// The highest version we speak (`listener.max_protocol_version`).
    max_version: u16,
    control: crate::control::ControlContext,
    /// Received control messages waiting for their handler, handled one at a time in sequence order.
    controls: control::ControlQueue,
    /// Whether this run has checked that the discussion has a rendezvous secret (once, on the
    /// first connection at version 3 or more: `rendezvous.rs`).
    rendezvous_checked: bool,
    /// Whether this run has answered the receiver's `Wanted` (once is enough: `rendezvous.rs`).
    rendezvous_answered: bool,
    /// Receiver: whether this run asked the requester for its secret (`Wanted`), and whether it
    /// already took one: a `Secret` is kept only when asked for or when there is none, once per run
    /// (`rendezvous.rs`).
    rendezvous_wanted: bool,
    rendezvous_secret_taken: bool,
    /// Our key rotation's state (`rotation.rs`).
    rotation: rotation::RotationState,
    /// The peer could not read our frames from this sequence number on (`Frame::Unreadable`):
    /// the running pump's cursor goes back there when it ends.
    rewind: Option<u64>,
    /// The last `Frame::Unreadable` we sent: (connection, subkey, last stored): not repeated.
    unreadable_sent: Option<(u64, String, u64)>,
    /// The peer could not read our frames from this number on, under the subkey we still encrypt
    /// to: sent again once it announces its new one (`rotation.rs`).
    unreadable_waiting: Option<u64>,
    /// `Frame::Unreadable`s received on connection `.0`: `.1` of them
    /// ([`rotation::MAX_UNREADABLE_PER_CONNECTION`]).
    unreadable_on: (u64, u32),
    /// Test hook ([`EncryptToForTests`]): the next frames go to this certificate.
    stale_target: rotation::StaleTarget,
    /// Test hook ([`TapForTests`]): frames and subkeys recorded for a test.
    tap: Option<RotationTap>,
}

/// The live connection: a bounded queue drained by a writer task.
struct Link {
    tx: mpsc::Sender<Frame>,
    generation: u64,
    /// The protocol version agreed on this connection.
    version: u16,
}

pub struct SessionParams {
    pub settings: Settings,
    pub discussion_id: String,
    pub role: Role,
    pub own_key: SecretCert,
    pub peer_key: PublicCert,
    pub peer_name: String,
    pub peer_fingerprint: String,
    pub peer_endpoint: Option<SocketAddr>,
    pub listener: Option<TcpListener>,
    pub contacts: Option<Addr<ContactRegistry>>,
    pub dht: Option<Addr<crate::dht::DhtWorker>>,
    pub closing: bool,
    /// The highest protocol version the peer has authenticated at (the store's `peer_version`).
    pub peer_version: u16,
    /// Where received control messages go ([`crate::control`]).
    pub control: crate::control::ControlContext,
    pub keys: KeysHandle,
    pub store: StoreHandle,
    pub events: EventBus,
    pub directory: Recipient<SessionStopped>,
}

impl DiscussionSession {
    pub fn new(p: SessionParams) -> Self {
        let sk = SessionKeys::new(p.discussion_id, p.role, Arc::new(p.own_key), p.peer_key);
        Self {
            node: p.settings.node.name.clone(),
            max_version: p.settings.listener.max_protocol_version,
            listener_sk: Arc::new(std::sync::Mutex::new(sk.clone())),
            sk,
            settings: p.settings,
            peer_name: p.peer_name,
            peer_fingerprint: p.peer_fingerprint,
            peer_endpoint: p.peer_endpoint,
            listen_port: p
                .listener
                .as_ref()
                .and_then(|l| l.local_addr().ok())
                .map_or(0, |a| a.port()),
            listener: p.listener,
            contacts: p.contacts,
            dht: p.dht,
            dht_dial_scheduled: false,
            closing: p.closing,
            peer_closing: false,
            close_sent: None,
            pumping: false,
            inbound: Default::default(),
            pump_again: false,
            next_to_send: 0,
            unauthenticated: ConnectionPool::new(
                MAX_UNAUTHENTICATED,
                MAX_UNAUTHENTICATED_PER_ADDRESS,
            ),
            keys: p.keys,
            store: p.store,
            events: p.events,
            directory: p.directory,
            conn: None,
            generation: 0,
            backoff: RECONNECT_MIN,
            connecting: false,
            finished: false,
            close_proof: None,
            peer_version: Arc::new(std::sync::atomic::AtomicU16::new(p.peer_version)),
            control: p.control,
            controls: control::ControlQueue::default(),
            rendezvous_checked: false,
            rendezvous_answered: false,
            rendezvous_wanted: false,
            rendezvous_secret_taken: false,
            rotation: Default::default(),
            rewind: None,
            unreadable_sent: None,
            unreadable_waiting: None,
            unreadable_on: (0, 0),
            stale_target: Default::default(),
            tap: None,
        }
    }

    /// The lowest version a connection of this discussion may run at.
    fn version_floor(&self) -> u16 {
        self.peer_version.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn id(&self) -> &str {
        &self.sk.discussion_id
    }

    fn deadline(&self) -> Duration {
        self.settings.handshake_timeout()
    }

    /// The only path by which chat frames leave: send, in sequence order, every undelivered message
    /// from the current connection's cursor on, reading them from the store; then, if we are closing,
    /// the `Close`. One pump runs at a time; a request while it runs makes it go round again.
    ///
    /// Reading from the store (rather than handing over the message being sent) is what makes the
    /// order safe: actix may run a handler's wait future after a flush that was registered later in
    /// the same poll, so "send what was just stored" can race a flush; "send what the store holds
    /// from the cursor on" cannot.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.pumping {
            self.pump_again = true;
            return;
        }
        let Some(link) = &self.conn else { return };
        let (tx, generation) = (link.tx.clone(), link.generation);
        self.pumping = true;
        self.pump_again = false;
        let ctxs = self.sender_context();
        let id = self.id().to_string();
        let from = self.next_to_send;
        let close =
            (self.closing && self.close_sent != Some(generation)).then(|| self.close_frame());
        let fut = async move {
            let batch = ctxs
                .store
                .run(move |s| s.outbox_from(&id, from, PUMP_BATCH))
                .await?;
            let full = batch.len() as u64 == PUMP_BATCH;
            if let (Some(first), Some(last)) = (batch.first(), batch.last()) {
                log::debug!(
                    "[{}] {}: sending {}..={}",
                    ctxs.node,
                    ctxs.sk.discussion_id,
                    first.record.seq,
                    last.record.seq
                );
            }
            let next = ctxs.transmit_all(&tx, batch, from).await?;
            // A close goes after everything queued before it.
            let closed = match close {
                Some(close) if !full => {
                    close.await;
                    true
                }
                _ => false,
            };
            Ok::<_, LinkError>((next, full, closed))
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.pumping = false;
            if act.conn.as_ref().map(|l| l.generation) != Some(generation) {
                // The connection changed meanwhile: the new one has its own cursor and pump.
                return;
            }
            match res {
                Ok((next, full, closed)) => {
                    act.next_to_send = act.next_to_send.max(next);
                    // The peer could not read some frames (a destroyed subkey): from there again.
                    if let Some(from) = act.rewind.take() {
                        act.next_to_send = act.next_to_send.min(from);
                        act.pump_again = true;
                    }
                    if closed {
                        act.close_sent = Some(generation);
                    }
                    if full || act.pump_again {
                        act.pump(ctx);
                    }
                }
                Err(e) => act.disconnect(generation, &format!("sending: {e}"), ctx),
            }
        }));
    }

    /// Our discussion key from now on (a rotation step): in `sk` and for the listener.
    fn set_own_key(&mut self, key: Arc<SecretCert>) {
        self.sk.own = key;
        *self.listener_sk.lock().unwrap_or_else(|p| p.into_inner()) = self.sk.clone();
    }

    fn sender_context(&self) -> Sender {
        Sender {
            node: self.node.clone(),
            keys: self.keys.clone(),
            store: self.store.clone(),
            events: self.events.clone(),
            sk: self.sk.clone(),
            deadline: self.deadline(),
            stale_target: self.stale_target.clone(),
            tap: self.tap.clone(),
        }
    }
}

impl Actor for DiscussionSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(l) = self.listener.take() {
            self.serve(l, ctx);
        }
        self.replay_unhandled_controls(ctx);
        self.start_rotation(ctx);
        self.connect(ctx);
        self.schedule_dht_dial(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        let notice = self.close_proof.take().map(|proof| Tombstone {
            notice: Arc::new(net::CloseNotice {
                discussion_id: self.id().to_string(),
                peer: self.sk.peer.clone(),
                proof,
            }),
            role: self.sk.role,
            peer_fingerprint: self.peer_fingerprint.clone(),
            endpoint: self.peer_endpoint,
        });
        self.directory.do_send(SessionStopped {
            discussion_id: self.id().to_string(),
            notice,
        });
    }
}

mod chat;
mod connection;
mod control;
pub(crate) use connection::reach_peer;
mod handlers;
mod inbound;
mod rendezvous;
mod rotation;

use chat::Sender;
pub use control::SendControl;
pub use handlers::{
    Attach, AuthenticateIncoming, CloseDiscussion, Reconnect, SendText, SessionStopped, Tombstone,
};
use handlers::{Inbound, INBOUND_BATCH};
pub use rendezvous::ReceiveRendezvous;
pub use rotation::{
    EncryptToForTests, OwnKeyForTests, ReceiveRotation, Rotate, RotationTap, TapForTests,
    CRASH_AT_ENV, MAX_TAPPED, ROTATION_CHECK_INTERVAL,
};
