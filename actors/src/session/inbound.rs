//! Inbound frames of a session, handled in order, each (or each run of chat frames that arrived
//! together) to the end before the next (`ctx.wait`): chat messages stored exactly once and
//! acknowledged, acks checked, and the two-way close.

use super::*;

impl DiscussionSession {
    /// Chat frames that arrived together (in order): opened at once on the crypto workers,
    /// stored in one write (exactly once, in order), announced, and acknowledged with one signed
    /// ack for all of them. A frame that does not open or check costs that frame only (unless the
    /// error costs the connection: [`LinkError::costs_the_connection`]).
    /// Returns whether it waits (see [`Self::next_inbound`]).
    pub(super) fn on_chats(
        &mut self,
        frames: Vec<Vec<u8>>,
        generation: u64,
        ctx: &mut Context<Self>,
    ) -> bool {
        let Some(link) = &self.conn else { return false };
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
            let opened = futures::future::join_all(frames.into_iter().map(|bytes| {
                let (keys, sk) = (keys.clone(), sk.clone());
                async move {
                    let (own, peer) = (sk.own.clone(), sk.peer.clone());
                    let p = keys
                        .run(move |_| Ok(decrypt_chat(&own, &peer, &bytes)))
                        .await??;
                    check_chat(&p, &sk.discussion_id, sk.own.fingerprint(), max_body)?;
                    Ok::<_, LinkError>(p)
                }
            }))
            .await;
            let mut errors = Vec::new();
            let mut messages = Vec::with_capacity(opened.len());
            for p in opened {
                match p {
                    Ok(p) => messages.push((MessageKind::Text, p.seq, p.time, p.body)),
                    Err(e) => errors.push(e),
                }
            }
            if messages.is_empty() {
                return (errors, 0);
            }
            let id = sk.discussion_id.clone();
            let stored = store
                .write(Durability::Durable, move |w| {
                    let (outcomes, upto) = w.store_incoming_run(&id, &messages)?;
                    Ok((outcomes, upto, messages))
                })
                .await;
            let (outcomes, upto, messages) = match stored {
                Ok(r) => r,
                Err(e) => {
                    errors.push(e.into());
                    return (errors, 0);
                }
            };
            let mut acknowledge = false;
            let mut stored = 0;
            for (outcome, (_, seq, time, body)) in outcomes.into_iter().zip(messages) {
                match outcome {
                    Incoming::Stored => {
                        acknowledge = true;
                        stored += 1;
                        events.emit(Event::Message {
                            message: MessageRecord {
                                discussion_id: sk.discussion_id.clone(),
                                direction: crate::store::Direction::In,
                                seq,
                                time,
                                body,
                                state: DeliveryState::Received,
                            },
                        })
                    }
                    Incoming::Duplicate => {
                        acknowledge = true;
                        log::debug!("[{node}] duplicate message {seq} in {}", sk.discussion_id)
                    }
                    Incoming::Gap { expected } => errors.push(LinkError::Gap { seq, expected }),
                }
            }
            if acknowledge {
                if let Err(e) = send_ack(&keys, &sk, &tx, upto, deadline).await {
                    errors.push(e);
                }
            }
            (errors, stored)
        };
        ctx.wait(fut.into_actor(self).map(
            move |(errors, stored): (Vec<LinkError>, u64), act, ctx| {
                act.continue_inbound(ctx);
                for e in errors {
                    act.frame_dropped("chat", e, generation, ctx);
                }
                if stored > 0 {
                    act.received_under_key(stored, ctx);
                }
            },
        ));
        true
    }

    /// A received frame (`kind`: chat or control) was refused: one bad frame costs that frame; a
    /// slow peer costs its connection.
    pub(super) fn frame_dropped(
        &mut self,
        kind: &str,
        e: LinkError,
        generation: u64,
        ctx: &mut Context<Self>,
    ) {
        crate::log_limit::hostile(
            log::Level::Warn,
            &self.node,
            &self.id(),
            format_args!("{}: dropped a {kind} frame: {e}", self.id()),
        );
        if let LinkError::Chat(ChatError::DestroyedKey(key_id)) = &e {
            self.answer_unreadable(key_id.clone(), generation, ctx);
        }
        if e.costs_the_connection() {
            self.disconnect(generation, &e.to_string(), ctx);
        }
    }

    /// Returns `true`: it waits (see [`Self::next_inbound`]).
    pub(super) fn on_ack(
        &mut self,
        upto: u64,
        signature: Vec<u8>,
        ctx: &mut Context<Self>,
    ) -> bool {
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
            .map_err(LinkError::BadAck)?;
            let id = sk.discussion_id.clone();
            let (changed, all_delivered) = store
                .run(move |s| {
                    let last = s.last_out_seq(&id)?;
                    Ok((s.mark_delivered(&id, upto.min(last))?, upto >= last))
                })
                .await?;
            for seq in changed {
                events.emit(Event::Delivery {
                    discussion_id: sk.discussion_id.clone(),
                    seq,
                    state: DeliveryState::Delivered,
                });
            }
            Ok::<_, LinkError>(all_delivered)
        };
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| {
            act.continue_inbound(ctx);
            match res {
                // The peer is closing and has now acknowledged all we had to send: confirm.
                Ok(true) if act.peer_closing => act.confirm_peer_close(ctx),
                Ok(_) => {}
                Err(e) => crate::log_limit::hostile(
                    log::Level::Warn,
                    &act.node,
                    &act.id(),
                    format_args!("{}: dropped an ack: {e}", act.id()),
                ),
            }
        }));
        true
    }

    /// A verified `Close` from the peer either confirms ours, or is the peer closing. Then, once the
    /// peer has acknowledged every message of our outbox (it still stores and acknowledges them
    /// while closing), we confirm with our own `Close` (queued before we stop, so it is written) and
    /// finish. Confirming at once would destroy the keys with our undelivered messages still
    /// `stored`: they would never arrive, silently.
    ///
    /// Returns `true`: it waits (see [`Self::next_inbound`]).
    pub(super) fn on_close(&mut self, signature: Vec<u8>, ctx: &mut Context<Self>) -> bool {
        let (keys, store) = (self.keys.clone(), self.store.clone());
        let sk = self.sk.clone();
        let fut = async move {
            net::verify_close(&keys, &sk.peer, &sk.discussion_id, signature).await?;
            let id = sk.discussion_id.clone();
            // `Ok(true)`: nothing left to deliver (or the store cannot say: confirm as before).
            Ok::<_, net::NetError>(
                store
                    .run(move |s| s.has_undelivered(&id))
                    .await
                    .map_or(true, |rest| !rest),
            )
        };
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| {
            act.continue_inbound(ctx);
            act.after_close_checked(res, ctx)
        }));
        true
    }

    fn after_close_checked(&mut self, res: Result<bool, net::NetError>, ctx: &mut Context<Self>) {
        let act = self;
        match res {
            Ok(_) if act.closing => act.finish(false, ctx),
            Ok(true) => act.confirm_peer_close(ctx),
            Ok(false) => {
                if !act.peer_closing {
                    log::info!(
                        "[{}] {}: the peer closes; delivering our outbox first",
                        act.node,
                        act.id()
                    );
                }
                act.peer_closing = true;
                act.pump(ctx);
            }
            Err(e) => crate::log_limit::hostile(
                log::Level::Warn,
                &act.node,
                &act.id(),
                format_args!("{}: forged close ignored: {e}", act.id()),
            ),
        }
    }

    /// The peer closed and has everything we sent: confirm with our `Close`, then finish. Confirm
    /// first, then finish: one future, so the order holds.
    pub(super) fn confirm_peer_close(&mut self, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        let confirm = self.close_frame();
        ctx.wait(
            confirm
                .into_actor(self)
                .map(|_, act, ctx| act.finish(true, ctx)),
        );
    }

    /// A future that queues a signed `Close` on the current connection (if any). Callers run it as
    /// *one* `ctx.wait` with whatever must follow it: actix runs pending waits newest first.
    pub(super) fn close_frame(&self) -> impl std::future::Future<Output = ()> + 'static {
        let tx = self.conn.as_ref().map(|l| l.tx.clone());
        let keys = self.keys.clone();
        let sk = self.sk.clone();
        let node = self.node.clone();
        async move {
            let Some(tx) = tx else { return };
            match sk.own_close(&keys).await {
                Ok(signature) => {
                    let _ = tx.send(Frame::Close { signature }).await;
                }
                Err(e) => log::error!("[{node}] cannot sign a close: {e}"),
            }
        }
    }

    /// A connection brought the peer's verified `Close` (already confirmed on it): the peer closed
    /// while we were away, or it answers our own close.
    pub(super) fn peer_closed(&mut self, ctx: &mut Context<Self>) {
        let by_peer = !self.closing;
        self.finish(by_peer, ctx);
    }

    /// Mark closed, destroy our discussion key, stop.
    pub(super) fn finish(&mut self, by_peer: bool, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        self.finished = true;
        log::info!(
            "[{}] discussion {} closed{}",
            self.node,
            self.id(),
            if by_peer { " by the peer" } else { "" }
        );
        let id = self.id().to_string();
        let (store, events, keys, sk, node) = (
            self.store.clone(),
            self.events.clone(),
            self.keys.clone(),
            self.sk.clone(),
            self.node.clone(),
        );
        let fut = async move {
            let i = id.clone();
            // Our `Close` (usually signed already, for the peer), kept to answer the peer if its
            // confirmation to us was lost and it connects again.
            let proof = sk
                .own_close(&keys)
                .await
                .map_err(|e| log::error!("[{node}] cannot sign a close: {e}"))
                .ok();
            let res = store
                .run(move |s| s.close_discussion(&i, proof.as_deref(), true))
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

/// Acknowledge everything received up to `upto` (chat and control share the sequence and the ack):
/// signed, sent within `deadline` or the peer is too slow.
pub(super) async fn send_ack(
    keys: &KeysHandle,
    sk: &SessionKeys,
    tx: &mpsc::Sender<Frame>,
    upto: u64,
    deadline: Duration,
) -> Result<(), LinkError> {
    let signature = keys
        .sign_with(sk.own.clone(), ack_data(&sk.discussion_id, upto))
        .await?;
    tokio::time::timeout(deadline, tx.send(Frame::Ack { upto, signature }))
        .await
        .map_err(|_| LinkError::TooSlowForAcks)?
        .map_err(|_| LinkError::ConnectionGone)?;
    Ok(())
}
