//! Chat messages on the wire, and the sending half of a session: encoding, encryption and the
//! `stored` → `sent` step.

use super::*;

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
pub(super) struct Sender {
    pub(super) node: String,
    pub(super) keys: KeysHandle,
    pub(super) store: StoreHandle,
    pub(super) events: EventBus,
    pub(super) sk: SessionKeys,
    pub(super) deadline: Duration,
}

impl Sender {
    /// Encrypt one stored message, queue it on the connection, mark it sent.
    pub(super) async fn transmit(
        &self,
        tx: &mpsc::Sender<Frame>,
        m: &MessageRecord,
    ) -> Result<(), String> {
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
                    state: DeliveryState::Sent,
                });
            }
        }
        Ok(())
    }
}
