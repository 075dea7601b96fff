//! The messages a [`DiscussionSession`] handles, and its inbound frame stream.

use super::*;

/// Inbound frames of connection `generation` that were ready together (at most
/// [`INBOUND_BATCH`]), in order; `end`: the connection's stream ended after them.
pub(super) struct Inbound {
    pub(super) generation: u64,
    pub(super) frames: Vec<Result<Frame, CodecError>>,
    pub(super) end: bool,
}

/// Frames read off a connection at a time: consecutive chat frames among them are one unit
/// (opened together, stored in one write, acknowledged once).
pub const INBOUND_BATCH: usize = 32;

/// The frames of one [`Inbound`] not yet handled, of connection `generation`.
#[derive(Default)]
pub(super) struct InboundBacklog {
    pub(super) generation: u64,
    pub(super) frames: std::collections::VecDeque<Result<Frame, CodecError>>,
    pub(super) end: bool,
}

impl DiscussionSession {
    /// Handle the backlog's next unit (a run of chat frames, or one other frame), in order. A unit
    /// that waits (`ctx.wait`: the actor takes no other message meanwhile) continues the backlog
    /// when it ends ([`Self::continue_inbound`]); one that does not (a refused frame) is followed
    /// at once. Units are not all registered at once: actix runs pending waits newest first.
    pub(super) fn next_inbound(&mut self, ctx: &mut Context<Self>) {
        loop {
            let generation = self.inbound.generation;
            if self.finished || self.conn.as_ref().map(|l| l.generation) != Some(generation) {
                self.inbound.frames.clear();
                self.inbound.end = false;
                return;
            }
            let Some(item) = self.inbound.frames.pop_front() else {
                if std::mem::take(&mut self.inbound.end) {
                    self.disconnect(generation, "closed by peer", ctx);
                }
                return;
            };
            let waits = match item {
                Ok(Frame::Chat(bytes)) => {
                    let mut run = vec![bytes];
                    while matches!(self.inbound.frames.front(), Some(Ok(Frame::Chat(_)))) {
                        if let Some(Ok(Frame::Chat(bytes))) = self.inbound.frames.pop_front() {
                            run.push(bytes);
                        }
                    }
                    self.on_chats(run, generation, ctx)
                }
                Ok(Frame::Control(bytes)) => self.on_control(bytes, generation, ctx),
                Ok(Frame::Ack { upto, signature }) => self.on_ack(upto, signature, ctx),
                Ok(Frame::Close { signature }) => self.on_close(signature, ctx),
                Ok(Frame::Unreadable {
                    key_id,
                    last_seq,
                    signature,
                }) => self.on_unreadable(key_id, last_seq, signature, generation, ctx),
                Err(e) => {
                    self.disconnect(generation, &e.to_string(), ctx);
                    false
                }
                Ok(other) => {
                    let why = format!("unexpected {} frame", net::frame_name(&other));
                    self.disconnect(generation, &why, ctx);
                    false
                }
            };
            if waits {
                return;
            }
        }
    }

    /// Called first by every inbound unit's end: the backlog goes on after it, and after whatever
    /// waits the unit's end itself registers (those are newer, so actix runs them first).
    pub(super) fn continue_inbound(&mut self, ctx: &mut Context<Self>) {
        if !self.inbound.frames.is_empty() || self.inbound.end {
            ctx.wait(actix::fut::ready(()).map(|(), act: &mut Self, ctx| act.next_inbound(ctx)));
        }
    }
}

impl StreamHandler<Inbound> for DiscussionSession {
    fn handle(&mut self, m: Inbound, ctx: &mut Context<Self>) {
        if self.conn.as_ref().map(|l| l.generation) != Some(m.generation) {
            return; // a replaced connection's leftovers
        }
        if self.inbound.generation != m.generation {
            self.inbound = InboundBacklog::default();
            self.inbound.generation = m.generation;
        }
        self.inbound.frames.extend(m.frames);
        self.inbound.end |= m.end;
        self.next_inbound(ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // Each connection's end arrives as `item: None`; the session outlives its connections.
    }
}

/// An authenticated connection for this discussion (from its listener, the main listener, or a
/// reconnect), at the protocol `version` agreed on it. Replaces any current one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub conn: Conn<TcpStream>,
    pub version: u16,
}

impl Handler<Attach> for DiscussionSession {
    type Result = ();
    fn handle(&mut self, m: Attach, ctx: &mut Context<Self>) {
        if let Some(link) = &self.conn {
            let g = link.generation;
            self.disconnect(g, "replaced by a new connection", ctx);
        }
        self.attach(m.conn, m.version, ctx);
    }
}

/// A discussion connection whose hello was read elsewhere (the main listener): authenticate it as
/// the listening side, then attach it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AuthenticateIncoming {
    pub conn: Conn<TcpStream>,
    pub nonce: crate::wire::Nonce,
    /// The protocol version agreed from the hello.
    pub version: u16,
}

impl Handler<AuthenticateIncoming> for DiscussionSession {
    type Result = ();
    fn handle(&mut self, m: AuthenticateIncoming, ctx: &mut Context<Self>) {
        // The discussion id travels in clear in a hello: anyone who saw one can make us wait here.
        // The same pool bounds the discussion listener.
        let from = m.conn.get_ref().peer_addr().map(|a| a.ip());
        let admitted = from.map(|ip| {
            self.unauthenticated
                .admit(ip, std::time::Instant::now())
                .map_err(|why| format!("{why:?}"))
        });
        let mut slot = match admitted {
            Ok(Ok(slot)) => slot,
            Ok(Err(why)) => {
                return crate::log_limit::hostile(
                    log::Level::Info,
                    &self.node,
                    &self.id(),
                    format_args!("{}: routed connection dropped: {why}", self.id()),
                )
            }
            Err(e) => {
                return crate::log_limit::hostile(
                    log::Level::Info,
                    &self.node,
                    &self.id(),
                    format_args!("{}: routed connection dropped: {e}", self.id()),
                )
            }
        };
        let (keys, sk, deadline) = (self.keys.clone(), self.sk.clone(), self.deadline());
        let (port, floor) = (self.listen_port, self.version_floor());
        let mut conn = m.conn;
        let fut = async move {
            let evicted = slot.watch_eviction();
            let auth = super::connection::accept(
                &mut conn, &keys, &sk, m.nonce, port, m.version, floor, deadline,
            );
            // Until it has authenticated, a newcomer may take its place.
            let accepted = tokio::select! {
                Ok(()) = evicted => Err(net::NetError::Unexpected(
                    "evicted for a newer connection",
                )),
                res = auth => res,
            }?;
            drop(slot);
            Ok::<_, net::NetError>((accepted, conn))
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok((super::connection::Accepted::PeerClosed, _)) => act.peer_closed(ctx),
            Ok((super::connection::Accepted::Open(version), conn)) => {
                if let Some(link) = &act.conn {
                    let g = link.generation;
                    act.disconnect(g, "replaced by a new connection", ctx);
                }
                act.attach(conn, version, ctx)
            }
            Err(e) => crate::log_limit::hostile(
                log::Level::Info,
                &act.node,
                &act.id(),
                format_args!("{}: routed connection refused: {e}", act.id()),
            ),
        }));
    }
}

/// Queue a message: returns once it is committed to the store.
#[derive(Message)]
#[rtype(result = "Result<MessageRecord, SessionError>")]
pub struct SendText(pub String);

impl Handler<SendText> for DiscussionSession {
    /// Not atomic: sends that arrive together are committed together (the store's group commit),
    /// each numbered by the store in the order its write ran.
    type Result = ResponseActFuture<Self, Result<MessageRecord, SessionError>>;

    fn handle(&mut self, m: SendText, _: &mut Context<Self>) -> Self::Result {
        let max = self.settings.limits.max_message_bytes;
        let closed = self.finished || self.closing || self.peer_closing;
        let id = self.id().to_string();
        let (store, events) = (self.store.clone(), self.events.clone());
        Box::pin(
            async move {
                if closed {
                    return Err(SessionError::Closed);
                }
                if m.0.len() > max {
                    return Err(SessionError::TooLarge(m.0.len(), max));
                }
                let body = m.0;
                let record = store
                    .write(Durability::Durable, move |w| {
                        w.queue_outgoing(&id, MessageKind::Text, &body, now_secs())
                    })
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
        )
    }
}

/// Close the discussion for good: tell the peer (now or when it is back), then destroy our key;
/// history stays. Answers the state: `closing` until the peer confirms.
///
/// With `force`, close at once without waiting for the peer: a `Close` is signed with the
/// discussion key, then the key is destroyed and the state is `closed`; the directory keeps the
/// signed `Close` and hands it to the peer when it is next reachable (undelivered messages stay
/// undelivered).
#[derive(Message)]
#[rtype(result = "Result<DiscussionState, SessionError>")]
pub struct CloseDiscussion {
    pub force: bool,
}

impl Handler<CloseDiscussion> for DiscussionSession {
    type Result = AtomicResponse<Self, Result<DiscussionState, SessionError>>;

    /// Refuse new messages at once (state `closing`, persisted); the peer is told now if connected,
    /// else on the next connection, after the outbox. Keys go when the peer confirms.
    fn handle(&mut self, m: CloseDiscussion, _: &mut Context<Self>) -> Self::Result {
        if m.force && !self.finished {
            return self.force_close();
        }
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
                // Not connected: a receiver must now go and tell the peer (a requester already
                // dials with backoff).
                if act.conn.is_none() && act.sk.role == Role::Receiver {
                    act.schedule_reconnect(ctx);
                }
                Ok(DiscussionState::Closing)
            }),
        ))
    }
}

impl DiscussionSession {
    fn force_close(&mut self) -> AtomicResponse<Self, Result<DiscussionState, SessionError>> {
        let (keys, sk, store) = (self.keys.clone(), self.sk.clone(), self.store.clone());
        AtomicResponse::new(Box::pin(
            async move {
                let proof = sk.own_close(&keys).await?;
                let (i, p) = (sk.discussion_id.clone(), proof.clone());
                store
                    .run(move |s| s.close_discussion(&i, Some(&p), false))
                    .await?;
                Ok::<_, SessionError>(proof)
            }
            .into_actor(self)
            .map(|res, act, ctx| {
                let proof = res?;
                act.finished = true;
                act.close_proof = Some(proof);
                log::info!(
                    "[{}] discussion {} closed without the peer; it is told when reachable",
                    act.node,
                    act.id()
                );
                act.events.emit(Event::DiscussionClosed {
                    discussion_id: act.id().to_string(),
                    by_peer: false,
                });
                ctx.stop();
                Ok(DiscussionState::Closed)
            }),
        ))
    }
}

/// The peer closed the discussion while we could not be told, and a connection brought its
/// verified `Close` (already confirmed on that connection): close ours.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct PeerClosed;

impl Handler<PeerClosed> for DiscussionSession {
    type Result = ();
    fn handle(&mut self, _: PeerClosed, ctx: &mut Context<Self>) {
        self.peer_closed(ctx);
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

/// A discussion closed without the peer, until the peer confirms: what the stopped session hands
/// the directory to keep telling the peer. Defined here, with the session that makes it, so the
/// session needs nothing of the directory (which owns sessions and imports this module).
#[derive(Clone)]
pub struct Tombstone {
    pub notice: Arc<net::CloseNotice>,
    pub role: Role,
    pub peer_fingerprint: String,
    /// Requester: the peer's discussion listener as last known.
    pub endpoint: Option<SocketAddr>,
}

/// Told to the directory when a session ends.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionStopped {
    pub discussion_id: String,
    /// The session was closed without the peer, which must still be told.
    pub notice: Option<Tombstone>,
}
