//! The sending half of a session: one stored message encrypted (with [`net::chat`]) onto the
//! connection, and the `stored` → `sent` step.

use super::*;

/// What sending needs, detached from the actor so it can run inside a future.
pub(super) struct Sender {
    pub(super) node: String,
    pub(super) keys: KeysHandle,
    pub(super) store: StoreHandle,
    pub(super) events: EventBus,
    pub(super) sk: SessionKeys,
    pub(super) deadline: Duration,
}

impl Sender {
    /// Encrypt one stored message (chat or control), queue it on the connection, mark it sent.
    pub(super) async fn transmit(
        &self,
        tx: &mpsc::Sender<Frame>,
        item: &Outgoing,
    ) -> Result<(), LinkError> {
        let m = &item.record;
        let (own, peer) = (self.sk.own.clone(), self.sk.peer.clone());
        let recipient = self.sk.peer.fingerprint().to_string();
        let frame = match item.kind {
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
        };
        tokio::time::timeout(self.deadline, tx.send(frame))
            .await
            .map_err(|_| LinkError::TooSlow)?
            .map_err(|_| LinkError::ConnectionGone)?;
        if m.state == DeliveryState::Stored && item.kind == MessageKind::Text {
            let (id, seq) = (self.sk.discussion_id.clone(), m.seq);
            let changed = self.store.run(move |s| s.mark_sent(&id, seq)).await?;
            if changed {
                self.events.emit(Event::Delivery {
                    discussion_id: self.sk.discussion_id.clone(),
                    seq: m.seq,
                    state: DeliveryState::Sent,
                });
            }
        }
        Ok(())
    }
}
