//! The sending half of a session: stored messages encrypted (with [`net::chat`]) onto the
//! connection, a few ahead of the socket on the crypto workers, and the `stored` → `sent` step,
//! one store write per batch.

use super::*;

/// Messages encrypted ahead of the one being written to the connection (each on a crypto worker).
pub const SEAL_AHEAD: usize = 8;

/// What sending needs, detached from the actor so it can run inside a future.
pub(super) struct Sender {
    pub(super) node: String,
    pub(super) keys: KeysHandle,
    pub(super) store: StoreHandle,
    pub(super) events: EventBus,
    pub(super) sk: SessionKeys,
    pub(super) deadline: Duration,
    pub(super) stale_target: super::rotation::StaleTarget,
    pub(super) tap: Option<super::RotationTap>,
}

impl Sender {
    /// Encrypt a batch of stored messages (chat or control, in order, up to [`SEAL_AHEAD`] at a
    /// time), queue each on the connection in order, then mark the chat ones sent in one write.
    /// Returns the sequence number after the last one queued (`from` if none).
    pub(super) async fn transmit_all(
        &self,
        tx: &mpsc::Sender<Frame>,
        batch: Vec<Outgoing>,
        from: u64,
    ) -> Result<u64, LinkError> {
        let mut next = from;
        let mut sent = Vec::new();
        let mut frames =
            futures::stream::iter(batch.iter().map(|m| self.seal(m))).buffered(SEAL_AHEAD);
        let mut result = Ok(());
        for m in &batch {
            let Some(frame) = frames.next().await else {
                break;
            };
            let queued = match frame {
                Ok(frame) => tokio::time::timeout(self.deadline, tx.send(frame))
                    .await
                    .map_err(|_| LinkError::TooSlow)
                    .and_then(|r| r.map_err(|_| LinkError::ConnectionGone)),
                Err(e) => Err(e),
            };
            if let Err(e) = queued {
                result = Err(e);
                break;
            }
            next = m.record.seq + 1;
            if m.record.state == DeliveryState::Stored && m.kind == MessageKind::Text {
                sent.push(m.record.seq);
            }
        }
        drop(frames);
        if !sent.is_empty() {
            let id = self.sk.discussion_id.clone();
            let changed = self
                .store
                .write(Durability::Relaxed, move |w| w.mark_sent_all(&id, &sent))
                .await?;
            for seq in changed {
                self.events.emit(Event::Delivery {
                    discussion_id: self.sk.discussion_id.clone(),
                    seq,
                    state: DeliveryState::Sent,
                });
            }
        }
        result.map(|()| next)
    }

    /// One stored message (chat or control) as the frame that carries it.
    async fn seal(&self, item: &Outgoing) -> Result<Frame, LinkError> {
        let m = &item.record;
        // Read now, not when the pump started: a rotation of the peer's key may have happened
        // since (its acknowledgement's number is the first that must go to the new subkey).
        let peer = self
            .stale_target
            .take_one(m.seq)
            .unwrap_or_else(|| self.sk.encryption_target());
        let own = self.sk.own.clone();
        let recipient = self.sk.peer.fingerprint().to_string();
        Ok(match item.kind {
            MessageKind::Text => {
                let payload = ChatPayload {
                    discussion_id: self.sk.discussion_id.clone(),
                    seq: m.seq,
                    time: m.time,
                    recipient,
                    body: m.body.clone(),
                };
                let bytes = self
                    .keys
                    .run(move |_| Ok(encrypt_chat(&own, &peer, &payload)))
                    .await??;
                if let Some(tap) = &self.tap {
                    tap.frame(m.seq, &bytes);
                }
                Frame::Chat(bytes)
            }
            MessageKind::Control => {
                // Queued only once the peer is known to speak v2 (`SendControl`), and the floor
                // never goes back down: a v1 connection never carries one.
                let control = hex::decode(&m.body)
                    .ok()
                    .and_then(|b| crate::codec::decode(&b).ok())
                    .ok_or(LinkError::BadControlRow(m.seq))?;
                let payload = ControlPayload {
                    discussion_id: self.sk.discussion_id.clone(),
                    seq: m.seq,
                    time: m.time,
                    recipient,
                    control,
                };
                let bytes = self
                    .keys
                    .run(move |_| Ok(encrypt_control(&own, &peer, &payload)))
                    .await??;
                Frame::Control(bytes)
            }
        })
    }
}
