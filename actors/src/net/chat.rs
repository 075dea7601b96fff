//! Chat messages on the wire: the payload codec (`bincode(payload)` signed by our discussion key and
//! encrypted to the peer's, standard OpenPGP that gpg decrypts and verifies given the keys), and the
//! checks a decrypted payload must pass before it is stored. Blocking crypto: the node runs these on
//! the key manager's workers.

use thiserror::Error;

use crate::codec::{self, CodecError};
use crate::crypto::{CryptoError, PublicCert, SecretCert};
use crate::wire::ChatPayload;

/// Why a chat message could not be made, or was not accepted. Texts name what was wrong, never
/// anything of the plaintext.
#[derive(Debug, Error)]
pub enum ChatError {
    #[error("cannot encode the message: {0}")]
    Encode(#[source] CodecError),
    #[error("cannot encrypt the message: {0}")]
    Encrypt(#[source] CryptoError),
    #[error("undecryptable message: {0}")]
    Undecryptable(#[source] CryptoError),
    /// Encrypted to our subkey `0`, which we no longer hold (destroyed by a rotation): answered
    /// with a [`Frame::Unreadable`](crate::wire::Frame::Unreadable).
    #[error("message encrypted to subkey {0}, which is destroyed")]
    DestroyedKey(String),
    #[error("bad payload: {0}")]
    BadPayload(#[source] CodecError),
    #[error("message for another discussion")]
    OtherDiscussion,
    #[error("message meant for another recipient")]
    OtherRecipient,
    #[error("message of {0} bytes exceeds the limit")]
    TooLarge(usize),
}

/// A chat message as it goes on the wire: `bincode(payload)` signed by `own` (our discussion key)
/// and encrypted to `peer` (the peer's).
pub fn encrypt_chat(
    own: &SecretCert,
    peer: &PublicCert,
    payload: &ChatPayload,
) -> Result<Vec<u8>, ChatError> {
    let plain = codec::encode(payload).map_err(ChatError::Encode)?;
    own.sign_and_encrypt(peer, &plain)
        .map_err(ChatError::Encrypt)
}

/// Decrypt, verify (signed by `peer`) and decode a chat message. [`check_chat`] then checks
/// discussion, recipient and size.
pub fn decrypt_chat(
    own: &SecretCert,
    peer: &PublicCert,
    bytes: &[u8],
) -> Result<ChatPayload, ChatError> {
    let plain = own
        .decrypt_and_verify(bytes, peer)
        .map_err(|e| undecryptable(own, bytes, e))?;
    codec::decode(&plain).map_err(ChatError::BadPayload)
}

/// Why a frame did not decrypt: a subkey of ours that is gone, or anything else.
pub(crate) fn undecryptable(own: &SecretCert, bytes: &[u8], e: CryptoError) -> ChatError {
    match own.missing_subkey(bytes) {
        Some(key_id) => ChatError::DestroyedKey(key_id),
        None => ChatError::Undecryptable(e),
    }
}

/// A decrypted payload is for this discussion, for us (`own_fingerprint`: our discussion key), and
/// at most `max_body` bytes long. A peer could otherwise replay a message of another discussion
/// signed by the same key, or one it was sent by someone else.
pub fn check_chat(
    p: &ChatPayload,
    discussion_id: &str,
    own_fingerprint: &str,
    max_body: usize,
) -> Result<(), ChatError> {
    if p.discussion_id != discussion_id {
        return Err(ChatError::OtherDiscussion);
    }
    if p.recipient != own_fingerprint {
        return Err(ChatError::OtherRecipient);
    }
    if p.body.len() > max_body {
        return Err(ChatError::TooLarge(p.body.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(to: &SecretCert) -> ChatPayload {
        ChatPayload {
            discussion_id: "d1".into(),
            seq: 1,
            time: 0,
            recipient: to.fingerprint().to_string(),
            body: "hello".into(),
        }
    }

    #[test]
    fn a_message_round_trips_and_passes_its_checks() {
        let (a, b) = (
            SecretCert::generate("a").unwrap(),
            SecretCert::generate("b").unwrap(),
        );
        let bytes = encrypt_chat(&a, b.public(), &payload(&b)).unwrap();
        let p = decrypt_chat(&b, a.public(), &bytes).unwrap();
        assert_eq!(p.body, "hello");
        check_chat(&p, "d1", b.fingerprint(), 5).unwrap();
    }

    #[test]
    fn each_check_has_its_own_error() {
        let (a, b, c) = (
            SecretCert::generate("a").unwrap(),
            SecretCert::generate("b").unwrap(),
            SecretCert::generate("c").unwrap(),
        );
        let p = payload(&b);
        assert!(matches!(
            check_chat(&p, "d2", b.fingerprint(), 100),
            Err(ChatError::OtherDiscussion)
        ));
        assert!(matches!(
            check_chat(&p, "d1", a.fingerprint(), 100),
            Err(ChatError::OtherRecipient)
        ));
        assert!(matches!(
            check_chat(&p, "d1", b.fingerprint(), 4),
            Err(ChatError::TooLarge(5))
        ));
        // Signed by someone other than the peer; garbage.
        let bytes = encrypt_chat(&c, b.public(), &p).unwrap();
        assert!(matches!(
            decrypt_chat(&b, a.public(), &bytes),
            Err(ChatError::Undecryptable(_))
        ));
        assert!(matches!(
            decrypt_chat(&b, a.public(), b"junk"),
            Err(ChatError::Undecryptable(_))
        ));
    }
}
