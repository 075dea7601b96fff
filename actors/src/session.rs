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
//! [`SessionStatus`]. Talks to: key manager, store worker, event bus, directory ([`SessionStopped`]).
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

use crate::codec::{self, CodecError};
use crate::contacts::{ContactRegistry, FindContact};
use crate::crypto::{PublicCert, SecretCert};
use crate::events::{now_secs, Event, EventBus};
use crate::keys::KeysHandle;
use crate::net::{self, Conn, SessionKeys};
use crate::settings::Settings;
use crate::store::{
    DeliveryState, DiscussionState, Incoming, MessageRecord, StoreError, StoreHandle,
};
use crate::wire::{ack_data, close_data, ChatPayload, Frame, Purpose, Role};

/// First reconnection delay; it doubles up to `limits.reconnect_max_secs`.
pub const RECONNECT_MIN: Duration = Duration::from_millis(250);
/// Unauthenticated connections at once on a discussion listener.
pub const MAX_UNAUTHENTICATED: usize = 4;
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
}

pub struct DiscussionSession {
    node: String,
    settings: Settings,
    sk: SessionKeys,
    peer_name: String,
    peer_fingerprint: String,
    /// Requester: where the receiver's discussion listener is.
    peer_endpoint: Option<SocketAddr>,
    listener: Option<TcpListener>,
    /// Receiver: our discussion listener's port (told to the peer inside `SessionAuth`).
    listen_port: u16,
    /// Requester: where to find the peer's main listener when the discussion port is unreachable.
    contacts: Option<Addr<ContactRegistry>>,
    /// We closed the discussion; the peer has not confirmed yet (persisted as `closing`).
    closing: bool,
    /// The connection generation on which our `Close` was sent.
    close_sent: Option<u64>,
    /// Sender pump: running, asked to run again, next sequence number to send on this connection.
    pumping: bool,
    pump_again: bool,
    next_to_send: u64,
    keys: KeysHandle,
    store: StoreHandle,
    events: EventBus,
    directory: Recipient<SessionStopped>,
    conn: Option<Link>,
    generation: u64,
    backoff: Duration,
    connecting: bool,
    finished: bool,
}

/// The live connection: a bounded queue drained by a writer task.
struct Link {
    tx: mpsc::Sender<Frame>,
    generation: u64,
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
    pub closing: bool,
    pub keys: KeysHandle,
    pub store: StoreHandle,
    pub events: EventBus,
    pub directory: Recipient<SessionStopped>,
}

impl DiscussionSession {
    pub fn new(p: SessionParams) -> Self {
        Self {
            node: p.settings.node.name.clone(),
            sk: SessionKeys {
                discussion_id: p.discussion_id,
                role: p.role,
                own: Arc::new(p.own_key),
                peer: p.peer_key,
            },
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
            closing: p.closing,
            close_sent: None,
            pumping: false,
            pump_again: false,
            next_to_send: 0,
            keys: p.keys,
            store: p.store,
            events: p.events,
            directory: p.directory,
            conn: None,
            generation: 0,
            backoff: RECONNECT_MIN,
            connecting: false,
            finished: false,
        }
    }

    fn id(&self) -> &str {
        &self.sk.discussion_id
    }

    fn deadline(&self) -> Duration {
        self.settings.handshake_timeout()
    }

    /// Requester: dial the receiver's discussion listener and authenticate; if it cannot be
    /// reached, go through the receiver's main listener at its currently announced address.
    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.connecting || self.conn.is_some() || self.finished {
            return;
        }
        let Some(endpoint) = self.peer_endpoint else {
            return;
        };
        self.connecting = true;
        let keys = self.keys.clone();
        let sk = self.sk.clone();
        let deadline = self.deadline();
        let max = self.settings.limits.max_frame_bytes;
        let contacts = self.contacts.clone();
        let peer = self.peer_fingerprint.clone();
        let fut = async move {
            let dial = |to: SocketAddr| {
                let (keys, sk) = (keys.clone(), sk.clone());
                async move {
                    let stream = tokio::time::timeout(deadline, TcpStream::connect(to))
                        .await
                        .map_err(|_| net::NetError::Timeout)?
                        .map_err(|e| net::NetError::Peer(format!("{to}: {e}")))?;
                    let mut conn = net::framed(stream, max);
                    let port =
                        net::authenticate_as_connector(&mut conn, &keys, &sk, deadline).await?;
                    Ok::<_, net::NetError>((conn, to.ip(), port))
                }
            };
            let first = match dial(endpoint).await {
                Ok(x) => return Ok(x),
                Err(e) => e,
            };
            // The receiver may have restarted on another port or address: ask the registry.
            let main = match contacts {
                Some(c) => c.send(FindContact(peer)).await.ok().and_then(Result::ok),
                None => None,
            };
            match main.and_then(|c| {
                c.address
                    .parse()
                    .ok()
                    .map(|ip| SocketAddr::new(ip, c.tcp_port))
            }) {
                Some(main) if main != endpoint => dial(main).await,
                _ => Err(first),
            }
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.connecting = false;
            match res {
                Ok((conn, ip, port)) => {
                    act.learn_endpoint(ip, port, ctx);
                    act.attach(conn, ctx)
                }
                Err(e) => {
                    log::debug!("[{}] {}: reconnect: {e}", act.node, act.id());
                    act.schedule_reconnect(ctx);
                }
            }
        }));
    }

    /// The receiver told us (signed) where its discussion listener is now: remember it.
    fn learn_endpoint(&mut self, ip: std::net::IpAddr, port: u16, ctx: &mut Context<Self>) {
        if port == 0 {
            return;
        }
        let new = SocketAddr::new(ip, port);
        if self.peer_endpoint == Some(new) {
            return;
        }
        log::info!(
            "[{}] {}: peer's discussion listener is now {new}",
            self.node,
            self.id()
        );
        self.peer_endpoint = Some(new);
        let (store, id) = (self.store.clone(), self.id().to_string());
        ctx.spawn(
            async move {
                let _ = store
                    .run(move |s| s.set_peer_endpoint(&id, &ip.to_string(), port))
                    .await;
            }
            .into_actor(self),
        );
    }

    fn schedule_reconnect(&mut self, ctx: &mut Context<Self>) {
        if self.finished || self.sk.role != Role::Requester {
            return;
        }
        let delay = self.backoff;
        let max = Duration::from_secs(self.settings.limits.reconnect_max_secs);
        self.backoff = (self.backoff * 2).min(max);
        ctx.run_later(delay, |act, ctx| act.connect(ctx));
    }

    /// Receiver: accept connections on the discussion listener, authenticate them off the actor.
    fn serve(&mut self, listener: TcpListener, ctx: &mut Context<Self>) {
        let keys = self.keys.clone();
        let sk = self.sk.clone();
        let deadline = self.deadline();
        let max = self.settings.limits.max_frame_bytes;
        let me = ctx.address();
        let node = self.node.clone();
        let port = self.listen_port;
        let busy = Arc::new(tokio::sync::Semaphore::new(MAX_UNAUTHENTICATED));
        ctx.spawn(
            async move {
                loop {
                    let (stream, from) = match listener.accept().await {
                        Ok(x) => x,
                        Err(e) => {
                            log::warn!("[{node}] discussion listener: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = busy.clone().try_acquire_owned() else {
                        log::debug!(
                            "[{node}] too many unauthenticated connections; dropping {from}"
                        );
                        continue;
                    };
                    let (keys, sk, me, node) = (keys.clone(), sk.clone(), me.clone(), node.clone());
                    actix_rt::spawn(async move {
                        let _permit = permit;
                        let mut conn = net::framed(stream, max);
                        let res = async {
                            match net::recv_hello(&mut conn, deadline).await? {
                                Purpose::Discussion {
                                    discussion_id,
                                    nonce,
                                } if discussion_id == sk.discussion_id => {
                                    net::authenticate_as_listener(
                                        &mut conn, &keys, &sk, nonce, port, deadline,
                                    )
                                    .await
                                }
                                _ => Err(net::NetError::Unexpected(
                                    "hello for another purpose".into(),
                                )),
                            }
                        }
                        .await;
                        match res {
                            Ok(()) => me.do_send(Attach(conn)),
                            Err(e) => log::info!(
                                "[{node}] discussion connection from {from} refused: {e}"
                            ),
                        }
                    });
                }
            }
            .into_actor(self),
        );
    }

    fn attach(&mut self, conn: Conn<TcpStream>, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        self.generation += 1;
        let generation = self.generation;
        self.backoff = RECONNECT_MIN;
        let (mut sink, stream) = conn.split();
        let (tx, mut rx) = mpsc::channel::<Frame>(self.settings.limits.session_queue);
        let node = self.node.clone();
        actix_rt::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if let Err(e) = sink.send(frame).await {
                    log::debug!("[{node}] write: {e}");
                    break;
                }
            }
            let _ = sink.close().await;
        });
        ctx.add_stream(
            stream
                .map(move |item| Inbound {
                    generation,
                    item: Some(item),
                })
                .chain(futures::stream::once(async move {
                    Inbound {
                        generation,
                        item: None,
                    }
                })),
        );
        self.conn = Some(Link { tx, generation });
        log::info!(
            "[{}] discussion {} connected to {}",
            self.node,
            self.id(),
            self.peer_name
        );
        self.events.emit(Event::Connection {
            discussion_id: self.id().to_string(),
            connected: true,
        });
        // Every undelivered message goes again on a new connection (the receiver drops duplicates).
        self.next_to_send = 0;
        self.pump(ctx);
    }

    fn disconnect(&mut self, generation: u64, why: &str, ctx: &mut Context<Self>) {
        match &self.conn {
            Some(link) if link.generation == generation => {}
            _ => return,
        }
        self.conn = None; // dropping the sender ends the writer task, which closes the socket
        log::info!(
            "[{}] discussion {} disconnected: {why}",
            self.node,
            self.id()
        );
        self.events.emit(Event::Connection {
            discussion_id: self.id().to_string(),
            connected: false,
        });
        self.schedule_reconnect(ctx);
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
                .await
                .map_err(|e| e.to_string())?;
            let full = batch.len() as u64 == PUMP_BATCH;
            if let (Some(first), Some(last)) = (batch.first(), batch.last()) {
                log::debug!(
                    "[{}] {}: sending {}..={}",
                    ctxs.node,
                    ctxs.sk.discussion_id,
                    first.seq,
                    last.seq
                );
            }
            let mut next = from;
            for m in batch {
                ctxs.transmit(&tx, &m).await?;
                next = m.seq + 1;
            }
            // A close goes after everything queued before it.
            let closed = match close {
                Some(close) if !full => {
                    close.await;
                    true
                }
                _ => false,
            };
            Ok::<_, String>((next, full, closed))
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

    fn sender_context(&self) -> Sender {
        Sender {
            node: self.node.clone(),
            keys: self.keys.clone(),
            store: self.store.clone(),
            events: self.events.clone(),
            sk: self.sk.clone(),
            deadline: self.deadline(),
        }
    }

    fn on_chat(&mut self, bytes: Vec<u8>, generation: u64, ctx: &mut Context<Self>) {
        let Some(link) = &self.conn else { return };
        let tx = link.tx.clone();
        let (keys, store, events, sk) = (
            self.keys.clone(),
            self.store.clone(),
            self.events.clone(),
            self.sk.clone(),
        );
        let max_body = self.settings.limits.max_message_bytes;
        let deadline = self.deadline();
        let node = self.node.clone();
        let fut = async move {
            let (own, peer) = (sk.own.clone(), sk.peer.clone());
            let p = keys
                .run(move |_| Ok(decrypt_chat(&own, &peer, &bytes)))
                .await
                .map_err(|e| e.to_string())??;
            if p.discussion_id != sk.discussion_id {
                return Err("message for another discussion".to_string());
            }
            if p.recipient != sk.own.fingerprint() {
                return Err("message meant for another recipient".to_string());
            }
            if p.body.len() > max_body {
                return Err(format!(
                    "message of {} bytes exceeds the limit",
                    p.body.len()
                ));
            }
            let id = sk.discussion_id.clone();
            let (seq, time, body) = (p.seq, p.time, p.body);
            let b = body.clone();
            let (outcome, upto) = store
                .run(move |s| s.store_incoming(&id, seq, time, &b))
                .await
                .map_err(|e| e.to_string())?;
            match outcome {
                Incoming::Stored => events.emit(Event::Message {
                    message: MessageRecord {
                        discussion_id: sk.discussion_id.clone(),
                        direction: crate::store::Direction::In,
                        seq,
                        time,
                        body,
                        state: DeliveryState::Received,
                    },
                }),
                Incoming::Duplicate => {
                    log::debug!("[{node}] duplicate message {seq} in {}", sk.discussion_id)
                }
                Incoming::Gap { expected } => {
                    return Err(format!("message {seq} while {expected} is missing"));
                }
            }
            let signature = keys
                .sign_with(sk.own.clone(), ack_data(&sk.discussion_id, upto))
                .await
                .map_err(|e| e.to_string())?;
            tokio::time::timeout(deadline, tx.send(Frame::Ack { upto, signature }))
                .await
                .map_err(|_| "peer too slow to take acks".to_string())?
                .map_err(|_| "connection gone".to_string())?;
            Ok(())
        };
        ctx.wait(
            fut.into_actor(self)
                .map(move |res: Result<(), String>, act, ctx| {
                    if let Err(e) = res {
                        // One bad frame costs that frame; a slow peer costs its connection.
                        log::warn!("[{}] {}: dropped a chat frame: {e}", act.node, act.id());
                        if e.contains("too slow") || e.contains("connection gone") {
                            act.disconnect(generation, &e, ctx);
                        }
                    }
                }),
        );
    }

    fn on_ack(&mut self, upto: u64, signature: Vec<u8>, ctx: &mut Context<Self>) {
        let (keys, store, events, sk) = (
            self.keys.clone(),
            self.store.clone(),
            self.events.clone(),
            self.sk.clone(),
        );
        let fut = async move {
            keys.verify_detached(
                sk.peer.clone(),
                ack_data(&sk.discussion_id, upto),
                signature,
            )
            .await
            .map_err(|e| format!("bad ack signature: {e}"))?;
            let id = sk.discussion_id.clone();
            let changed = store
                .run(move |s| {
                    let last = s.last_out_seq(&id)?;
                    s.mark_delivered(&id, upto.min(last))
                })
                .await
                .map_err(|e| e.to_string())?;
            for seq in changed {
                events.emit(Event::Delivery {
                    discussion_id: sk.discussion_id.clone(),
                    seq,
                    state: DeliveryState::Delivered.as_str().into(),
                });
            }
            Ok::<_, String>(())
        };
        ctx.wait(fut.into_actor(self).map(|res, act, _| {
            if let Err(e) = res {
                log::warn!("[{}] {}: dropped an ack: {e}", act.node, act.id());
            }
        }));
    }

    /// A verified `Close` from the peer either confirms ours, or is the peer closing: then we
    /// confirm with our own `Close` (queued before we stop, so it is written) and finish.
    fn on_close(&mut self, signature: Vec<u8>, ctx: &mut Context<Self>) {
        let keys = self.keys.clone();
        let sk = self.sk.clone();
        let fut = async move {
            keys.verify_detached(sk.peer.clone(), close_data(&sk.discussion_id), signature)
                .await
        };
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok(()) if act.closing => act.finish(false, ctx),
            Ok(()) => {
                // Confirm first, then finish: one future, so the order holds.
                let confirm = act.close_frame();
                ctx.wait(
                    confirm
                        .into_actor(act)
                        .map(|_, act, ctx| act.finish(true, ctx)),
                );
            }
            Err(e) => log::warn!("[{}] {}: forged close ignored: {e}", act.node, act.id()),
        }));
    }

    /// A future that queues a signed `Close` on the current connection (if any). Callers run it as
    /// *one* `ctx.wait` with whatever must follow it: actix runs pending waits newest first.
    fn close_frame(&self) -> impl std::future::Future<Output = ()> + 'static {
        let tx = self.conn.as_ref().map(|l| l.tx.clone());
        let keys = self.keys.clone();
        let sk = self.sk.clone();
        let node = self.node.clone();
        async move {
            let Some(tx) = tx else { return };
            match keys
                .sign_with(sk.own.clone(), close_data(&sk.discussion_id))
                .await
            {
                Ok(signature) => {
                    let _ = tx.send(Frame::Close { signature }).await;
                }
                Err(e) => log::error!("[{node}] cannot sign a close: {e}"),
            }
        }
    }

    /// Mark closed, destroy our discussion key, stop.
    fn finish(&mut self, by_peer: bool, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let id = self.id().to_string();
        let store = self.store.clone();
        let events = self.events.clone();
        let fut = async move {
            let i = id.clone();
            let res = store
                .run(move |s| {
                    s.set_discussion_state(&i, DiscussionState::Closed)?;
                    s.forget_own_key(&i)
                })
                .await;
            events.emit(Event::DiscussionClosed {
                discussion_id: id,
                by_peer,
            });
            res
        };
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| {
            if let Err(e) = res {
                log::error!("[{}] closing {}: {e}", act.node, act.id());
            }
            ctx.stop();
        }));
    }
}

/// A chat message as it goes on the wire: `bincode(payload)` signed by our discussion key and
/// encrypted to the peer's (standard OpenPGP: gpg decrypts and verifies it given the keys).
pub fn encrypt_chat(
    own: &SecretCert,
    peer: &PublicCert,
    payload: &ChatPayload,
) -> Result<Vec<u8>, crate::crypto::CryptoError> {
    let plain =
        codec::encode(payload).map_err(|e| crate::crypto::CryptoError::Pgp(e.to_string()))?;
    own.sign_and_encrypt(peer, &plain)
}

/// Decrypt, verify (signed by `peer`) and decode a chat message. The caller checks discussion and
/// recipient.
pub fn decrypt_chat(
    own: &SecretCert,
    peer: &PublicCert,
    bytes: &[u8],
) -> Result<ChatPayload, String> {
    let plain = own
        .decrypt_and_verify(bytes, peer)
        .map_err(|e| format!("undecryptable message: {e}"))?;
    codec::decode(&plain).map_err(|e| format!("bad payload: {e}"))
}

/// What sending needs, detached from the actor so it can run inside a future.
struct Sender {
    node: String,
    keys: KeysHandle,
    store: StoreHandle,
    events: EventBus,
    sk: SessionKeys,
    deadline: Duration,
}

impl Sender {
    /// Encrypt one stored message, queue it on the connection, mark it sent.
    async fn transmit(&self, tx: &mpsc::Sender<Frame>, m: &MessageRecord) -> Result<(), String> {
        let payload = ChatPayload {
            discussion_id: self.sk.discussion_id.clone(),
            seq: m.seq,
            time: m.time,
            recipient: self.sk.peer.fingerprint().to_string(),
            body: m.body.clone(),
        };
        let (own, peer) = (self.sk.own.clone(), self.sk.peer.clone());
        let bytes = self
            .keys
            .run(move |_| encrypt_chat(&own, &peer, &payload))
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(self.deadline, tx.send(Frame::Chat(bytes)))
            .await
            .map_err(|_| "peer too slow".to_string())?
            .map_err(|_| "connection gone".to_string())?;
        if m.state == DeliveryState::Stored {
            let (id, seq) = (self.sk.discussion_id.clone(), m.seq);
            let changed = self
                .store
                .run(move |s| s.mark_sent(&id, seq))
                .await
                .map_err(|e| e.to_string())?;
            if changed {
                self.events.emit(Event::Delivery {
                    discussion_id: self.sk.discussion_id.clone(),
                    seq: m.seq,
                    state: DeliveryState::Sent.as_str().into(),
                });
            }
        }
        Ok(())
    }
}

impl Actor for DiscussionSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(l) = self.listener.take() {
            self.serve(l, ctx);
        }
        self.connect(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.directory.do_send(SessionStopped {
            discussion_id: self.id().to_string(),
        });
    }
}

/// One inbound frame (or the end of the stream: `item: None`) of connection `generation`.
struct Inbound {
    generation: u64,
    item: Option<Result<Frame, CodecError>>,
}

impl StreamHandler<Inbound> for DiscussionSession {
    fn handle(&mut self, m: Inbound, ctx: &mut Context<Self>) {
        if self.conn.as_ref().map(|l| l.generation) != Some(m.generation) {
            return; // a replaced connection's leftovers
        }
        match m.item {
            None => self.disconnect(m.generation, "closed by peer", ctx),
            Some(Err(e)) => self.disconnect(m.generation, &e.to_string(), ctx),
            Some(Ok(Frame::Chat(bytes))) => self.on_chat(bytes, m.generation, ctx),
            Some(Ok(Frame::Ack { upto, signature })) => self.on_ack(upto, signature, ctx),
            Some(Ok(Frame::Close { signature })) => self.on_close(signature, ctx),
            Some(Ok(other)) => {
                let why = format!("unexpected {} frame", net::frame_name(&other));
                self.disconnect(m.generation, &why, ctx);
            }
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // Each connection's end arrives as `item: None`; the session outlives its connections.
    }
}

/// An authenticated connection for this discussion (from its listener, the main listener, or a
/// reconnect). Replaces any current one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach(pub Conn<TcpStream>);

impl Handler<Attach> for DiscussionSession {
    type Result = ();
    fn handle(&mut self, m: Attach, ctx: &mut Context<Self>) {
        if let Some(link) = &self.conn {
            let g = link.generation;
            self.disconnect(g, "replaced by a new connection", ctx);
        }
        self.attach(m.0, ctx);
    }
}

/// A discussion connection whose hello was read elsewhere (the main listener): authenticate it as
/// the listening side, then attach it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AuthenticateIncoming {
    pub conn: Conn<TcpStream>,
    pub nonce: crate::wire::Nonce,
}

impl Handler<AuthenticateIncoming> for DiscussionSession {
    type Result = ();
    fn handle(&mut self, m: AuthenticateIncoming, ctx: &mut Context<Self>) {
        let (keys, sk, deadline) = (self.keys.clone(), self.sk.clone(), self.deadline());
        let port = self.listen_port;
        let mut conn = m.conn;
        let fut = async move {
            net::authenticate_as_listener(&mut conn, &keys, &sk, m.nonce, port, deadline).await?;
            Ok::<_, net::NetError>(conn)
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok(conn) => {
                if let Some(link) = &act.conn {
                    let g = link.generation;
                    act.disconnect(g, "replaced by a new connection", ctx);
                }
                act.attach(conn, ctx)
            }
            Err(e) => log::info!("[{}] routed connection refused: {e}", act.node),
        }));
    }
}

/// Queue a message: returns once it is committed to the store.
#[derive(Message)]
#[rtype(result = "Result<MessageRecord, SessionError>")]
pub struct SendText(pub String);

impl Handler<SendText> for DiscussionSession {
    type Result = AtomicResponse<Self, Result<MessageRecord, SessionError>>;

    fn handle(&mut self, m: SendText, _: &mut Context<Self>) -> Self::Result {
        let max = self.settings.limits.max_message_bytes;
        let closed = self.finished || self.closing;
        let id = self.id().to_string();
        let (store, events) = (self.store.clone(), self.events.clone());
        AtomicResponse::new(Box::pin(
            async move {
                if closed {
                    return Err(SessionError::Closed);
                }
                if m.0.len() > max {
                    return Err(SessionError::TooLarge(m.0.len(), max));
                }
                let body = m.0;
                let record = store
                    .run(move |s| s.queue_outgoing(&id, &body, now_secs()))
                    .await?;
                events.emit(Event::Message {
                    message: record.clone(),
                });
                Ok(record)
            }
            .into_actor(self)
            .map(|res, act, ctx| {
                if res.is_ok() {
                    act.pump(ctx);
                }
                res
            }),
        ))
    }
}

/// Close the discussion for good: tell the peer (now or when it is back), then destroy our key;
/// history stays. Answers the state: `closing` until the peer confirms.
#[derive(Message)]
#[rtype(result = "Result<DiscussionState, SessionError>")]
pub struct CloseDiscussion;

impl Handler<CloseDiscussion> for DiscussionSession {
    type Result = AtomicResponse<Self, Result<DiscussionState, SessionError>>;

    /// Refuse new messages at once (state `closing`, persisted); the peer is told now if connected,
    /// else on the next connection, after the outbox. Keys go when the peer confirms.
    fn handle(&mut self, _: CloseDiscussion, _: &mut Context<Self>) -> Self::Result {
        if self.finished || self.closing {
            let state = if self.finished {
                DiscussionState::Closed
            } else {
                DiscussionState::Closing
            };
            return AtomicResponse::new(Box::pin(actix::fut::ready(Ok(state))));
        }
        let (store, id) = (self.store.clone(), self.id().to_string());
        AtomicResponse::new(Box::pin(
            async move {
                store
                    .run(move |s| s.set_discussion_state(&id, DiscussionState::Closing))
                    .await
            }
            .into_actor(self)
            .map(|res, act, ctx| {
                res?;
                act.closing = true;
                act.pump(ctx);
                Ok(DiscussionState::Closing)
            }),
        ))
    }
}

/// Drop the current connection; the requester dials again at once (after a network change, and
/// in tests).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconnect;

impl Handler<Reconnect> for DiscussionSession {
    type Result = ();
    fn handle(&mut self, _: Reconnect, ctx: &mut Context<Self>) {
        if let Some(g) = self.conn.as_ref().map(|l| l.generation) {
            self.disconnect(g, "reconnection asked", ctx);
        }
        self.backoff = RECONNECT_MIN;
        self.connect(ctx);
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub discussion_id: String,
    pub peer_name: String,
    pub peer_fingerprint: String,
    pub connected: bool,
}

#[derive(Message)]
#[rtype(result = "Status")]
pub struct SessionStatus;

impl Handler<SessionStatus> for DiscussionSession {
    type Result = MessageResult<SessionStatus>;
    fn handle(&mut self, _: SessionStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(Status {
            discussion_id: self.id().to_string(),
            peer_name: self.peer_name.clone(),
            peer_fingerprint: self.peer_fingerprint.clone(),
            connected: self.conn.is_some(),
        })
    }
}

/// Told to the directory when a session ends.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionStopped {
    pub discussion_id: String,
}
