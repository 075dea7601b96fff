//! At-rest sealing of message text: AES-256-GCM under the node's storage key (itself sealed for
//! the node only, see [`crate::at_rest`], so it is as safe as the passphrase), a random nonce per
//! row, and the row's discussion, direction and sequence number as associated data, so a row's
//! body cannot be swapped with another's or moved. A store opened without its key reads
//! everything but the text ([`StoreError::Locked`]).

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use super::rows::{DeliveryState, Direction, MessageRecord};
use super::StoreError;

/// Length of the storage key.
pub const STORAGE_KEY_BYTES: usize = 32;
/// AES-GCM's nonce, stored in front of each sealed body.
const NONCE_BYTES: usize = 12;

/// The cipher of a storage key.
pub(super) fn cipher(key: &[u8; STORAGE_KEY_BYTES]) -> Aes256Gcm {
    Aes256Gcm::new(key.into())
}

/// Binds a body to its row: discussion, direction and sequence number.
fn body_aad(discussion_id: &str, direction: Direction, seq: u64) -> Vec<u8> {
    let mut v = b"pgpchat-body-v1\0".to_vec();
    v.extend_from_slice(discussion_id.as_bytes());
    v.push(0);
    v.extend_from_slice(direction.as_str().as_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v
}

/// A message row before its text is opened.
pub(super) struct RawMessage {
    pub discussion_id: String,
    pub direction: Direction,
    pub seq: u64,
    pub time: u64,
    pub body: Vec<u8>,
    pub state: DeliveryState,
}

/// Reads the columns `discussion_id, direction, seq, time, body, state`, in that order.
pub(super) fn raw_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawMessage> {
    Ok(RawMessage {
        discussion_id: r.get(0)?,
        direction: r.get(1)?,
        seq: r.get(2)?,
        time: r.get(3)?,
        body: r.get(4)?,
        state: r.get(5)?,
    })
}

/// Seal `body` for the row (`discussion_id`, `direction`, `seq`): nonce then ciphertext.
pub(super) fn seal_body(
    cipher: Option<&Aes256Gcm>,
    discussion_id: &str,
    direction: Direction,
    seq: u64,
    body: &str,
) -> Result<Vec<u8>, StoreError> {
    let cipher = cipher.ok_or(StoreError::Locked)?;
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let ct = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: body.as_bytes(),
                aad: &body_aad(discussion_id, direction, seq),
            },
        )
        .map_err(|_| StoreError::Undecryptable)?;
    let mut v = nonce.to_vec();
    v.extend_from_slice(&ct);
    Ok(v)
}

/// Open a row's body: the wrong key, a tampered or moved row is [`StoreError::Undecryptable`].
pub(super) fn open_body(
    cipher: Option<&Aes256Gcm>,
    r: RawMessage,
) -> Result<MessageRecord, StoreError> {
    let cipher = cipher.ok_or(StoreError::Locked)?;
    if r.body.len() < NONCE_BYTES {
        return Err(StoreError::Undecryptable);
    }
    let (nonce, ct) = r.body.split_at(NONCE_BYTES);
    let plain = cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: &body_aad(&r.discussion_id, r.direction, r.seq),
            },
        )
        .map_err(|_| StoreError::Undecryptable)?;
    Ok(MessageRecord {
        discussion_id: r.discussion_id,
        direction: r.direction,
        seq: r.seq,
        time: r.time,
        body: String::from_utf8(plain).map_err(|_| StoreError::Undecryptable)?,
        state: r.state,
    })
}
