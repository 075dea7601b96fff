//! The control channel of a session (protocol version 2 and later, `docs/protocol.md`): queueing a
//! control message ([`SendControl`]: durable in the outbox with chat, same sequence numbers, same
//! acks), and receiving one: decrypted and checked like chat, stored exactly once and in order,
//! acknowledged, then handed to [`crate::control::dispatch`] and marked handled. Control messages
//! stored but not handled when the node stopped are dispatched again at start.

use std::collections::BTreeMap;

use super::*;
use crate::wire::{Control, CONTROL_VERSION};

/// Received control messages kept in memory for their handler, per session; more stay in the store
/// (unhandled) until these are done.
pub const MAX_QUEUED_CONTROLS: usize = 64;

/// A handler that has not finished by then is given up (logged; the message is marked handled) so
/// that one stuck exchange cannot hold up the discussion's later control messages.
pub const CONTROL_HANDLER_TIMEOUT: Duration = Duration::from_secs(30);

/// Received control messages waiting for their handler ([`DiscussionSession::dispatch_control`]).
#[derive(Default)]
pub(super) struct ControlQueue {
    /// By sequence number: handled lowest first.
    waiting: BTreeMap<u64, Control>,
    /// The one whose handler runs.
    running: Option<u64>,
    /// Some were not queued (the queue was full): read them back from the store once it drains.
    overflowed: bool,
    /// The store is being read back: nothing starts until its messages are queued in order.
    replaying: bool,
}

/// Queue a control message for the peer: returns its sequence number once it is on disk. Refused
/// if the discussion is closed or closing, or its peer is not known to speak version 2
/// ([`SessionError::NoControlChannel`]).
#[derive(Message)]
#[rtype(result = "Result<u64, SessionError>")]
pub struct SendControl(pub Control);

impl Handler<SendControl> for DiscussionSession {
    type Result = AtomicResponse<Self, Result<u64, SessionError>>;

    fn handle(&mut self, m: SendControl, _: &mut Context<Self>) -> Self::Result {
        let closed = self.finished || self.closing || self.peer_closing;
        let version = self.version_floor().min(self.max_version);
        let id = self.id().to_string();
        let store = self.store.clone();
        AtomicResponse::new(Box::pin(
            async move {
                if closed {
                    return Err(SessionError::Closed);
                }
                if version < CONTROL_VERSION {
                    return Err(SessionError::NoControlChannel(version));
                }
                // May hold a secret (a rendezvous `Secret`): wiped once stored (sealed at rest).
                let bytes = zeroize::Zeroizing::new(crate::codec::encode(&m.0)?);
                Ok(store
                    .run(move |s| s.queue_control(&id, &bytes, now_secs()))
                    .await?)
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

impl DiscussionSession {
    /// A `Control` frame: like a chat frame (decrypt, check, store once and in order, ack), then
    /// dispatched by variant. Only on a connection agreed at version 2 or later.
    /// Returns whether it waits (see [`Self::next_inbound`]).
    pub(super) fn on_control(
        &mut self,
        bytes: Vec<u8>,
        generation: u64,
        ctx: &mut Context<Self>,
    ) -> bool {
        let Some(link) = &self.conn else { return false };
        if link.version < CONTROL_VERSION {
            let why = LinkError::ControlBeforeV2(link.version).to_string();
            self.disconnect(generation, &why, ctx);
            return false;
        }
        let tx = link.tx.clone();
        let (keys, store, sk) = (self.keys.clone(), self.store.clone(), self.sk.clone());
        let deadline = self.deadline();
        let node = self.node.clone();
        let fut = async move {
            let (own, peer) = (sk.own.clone(), sk.peer.clone());
            let p = keys
                .run(move |_| Ok(decrypt_control(&own, &peer, &bytes)))
                .await??;
            check_control(&p, &sk.discussion_id, sk.own.fingerprint())?;
            let id = sk.discussion_id.clone();
            let (seq, time) = (p.seq, p.time);
            let encoded = zeroize::Zeroizing::new(
                crate::codec::encode(&p.control).map_err(ChatError::Encode)?,
            );
            let (outcome, upto) = store
                .run(move |s| s.store_incoming_control(&id, seq, time, &encoded))
                .await?;
            let fresh = match outcome {
                Incoming::Stored => Some((seq, p.control)),
                Incoming::Duplicate => {
                    log::debug!("[{node}] duplicate control {seq} in {}", sk.discussion_id);
                    None
                }
                Incoming::Gap { expected } => return Err(LinkError::Gap { seq, expected }),
            };
            super::inbound::send_ack(&keys, &sk, &tx, upto, deadline).await?;
            Ok(fresh)
        };
        ctx.wait(fut.into_actor(self).map(
            move |res: Result<Option<(u64, Control)>, LinkError>, act, ctx| {
                act.continue_inbound(ctx);
                match res {
                    Ok(Some((seq, control))) => act.dispatch_control(seq, control, ctx),
                    Ok(None) => {}
                    Err(e) => act.frame_dropped("control", e, generation, ctx),
                }
            },
        ));
        true
    }

    /// Queue a stored control message for its handler. Handlers run one at a time, in sequence
    /// order, off the actor (a handler may ask this session to send an answer): an exchange may
    /// depend on the order of its messages (an offer, then its withdrawal). A message already
    /// queued or running is not queued twice; when [`MAX_QUEUED_CONTROLS`] wait, later ones stay
    /// unhandled in the store and are read back, in order, once the queue has drained.
    pub(super) fn dispatch_control(&mut self, seq: u64, control: Control, ctx: &mut Context<Self>) {
        let q = &mut self.controls;
        if q.running == Some(seq) || q.waiting.contains_key(&seq) {
            return;
        }
        if q.overflowed || q.waiting.len() >= MAX_QUEUED_CONTROLS {
            q.overflowed = true;
            return;
        }
        q.waiting.insert(seq, control);
        self.next_control(ctx);
    }

    /// Start the next waiting control message's handler, unless one runs or the store is being
    /// read back; when none waits and some were left in the store, read them back.
    fn next_control(&mut self, ctx: &mut Context<Self>) {
        let q = &mut self.controls;
        if q.running.is_some() || q.replaying {
            return;
        }
        let Some((seq, control)) = q.waiting.pop_first() else {
            if q.overflowed {
                self.replay_unhandled_controls(ctx);
            }
            return;
        };
        q.running = Some(seq);
        let received = crate::control::Received {
            discussion_id: self.id().to_string(),
            peer_fingerprint: self.peer_fingerprint.clone(),
            peer_name: self.peer_name.clone(),
            seq,
            // The connection it came on (a replay at start: the discussion's agreed floor).
            version: self
                .conn
                .as_ref()
                .map_or_else(|| self.version_floor(), |l| l.version),
            control,
            session: ctx.address(),
        };
        let (cx, store, node) = (self.control.clone(), self.store.clone(), self.node.clone());
        let fut = async move {
            let id = received.discussion_id.clone();
            match tokio::time::timeout(
                CONTROL_HANDLER_TIMEOUT,
                crate::control::dispatch(&cx, received),
            )
            .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e @ crate::control::ControlError::NotDone(_))) => {
                    // Left unhandled: replayed at the next start.
                    log::warn!("[{node}] {id}: control message {seq}: {e}");
                    return;
                }
                Ok(Err(e)) => log::warn!("[{node}] {id}: control message {seq}: {e}"),
                Err(_) => log::warn!("[{node}] {id}: control message {seq}: its handler timed out"),
            }
            if let Err(e) = store.run(move |s| s.mark_control_handled(&id, seq)).await {
                log::error!("[{node}] marking control message {seq} handled: {e}");
            }
        };
        ctx.spawn(fut.into_actor(self).map(|(), act, ctx| {
            act.controls.running = None;
            act.next_control(ctx);
        }));
    }

    /// Control messages stored but not handled go to their handlers (at start: the node stopped in
    /// between; later: the queue was full). Handlers are idempotent.
    pub(super) fn replay_unhandled_controls(&mut self, ctx: &mut Context<Self>) {
        self.controls.replaying = true;
        self.controls.overflowed = false;
        let (store, id) = (self.store.clone(), self.id().to_string());
        let fut = async move { store.run(move |s| s.unhandled_controls(&id)).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.controls.replaying = false;
            match res {
                Ok(rows) => {
                    for (seq, bytes) in rows {
                        let bytes = zeroize::Zeroizing::new(bytes);
                        match crate::codec::decode::<Control>(&bytes) {
                            Ok(control) => act.dispatch_control(seq, control, ctx),
                            Err(e) => log::error!("[{}] control message {seq}: {e}", act.node),
                        }
                    }
                }
                Err(e) => log::error!("[{}] {}: unhandled controls: {e}", act.node, act.id()),
            }
            act.next_control(ctx);
        }));
    }
}
