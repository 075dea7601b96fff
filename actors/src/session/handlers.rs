//! The messages a [`DiscussionSession`] handles, and its inbound frame stream.

use super::*;

/// One inbound frame (or the end of the stream: `item: None`) of connection `generation`.
pub(super) struct Inbound {
    pub(super) generation: u64,
    pub(super) item: Option<Result<Frame, CodecError>>,
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
            Some(Ok(Frame::Control(bytes))) => self.on_control(bytes, m.generation, ctx),
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
    type Result = AtomicResponse<Self, Result<MessageRecord, SessionError>>;

    fn handle(&mut self, m: SendText, _: &mut Context<Self>) -> Self::Result {
        let max = self.settings.limits.max_message_bytes;
        let closed = self.finished || self.closing || self.peer_closing;
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
