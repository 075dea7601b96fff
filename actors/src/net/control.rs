//! Control messages on the wire (version 2 and later): the payload codec, signed by our discussion
//! key and encrypted to the peer's exactly like chat ([`super::chat`]), and the checks a decrypted
//! payload must pass before it is stored. Blocking crypto: run on the key manager's workers.

use super::chat::ChatError;
use crate::codec;
use crate::crypto::{PublicCert, SecretCert};
use crate::wire::ControlPayload;

/// A control message as it goes on the wire: `bincode(payload)` signed by `own` and encrypted to
/// `peer`.
pub fn encrypt_control(
    own: &SecretCert,
    peer: &PublicCert,
    payload: &ControlPayload,
) -> Result<Vec<u8>, ChatError> {
    let plain = codec::encode(payload).map_err(ChatError::Encode)?;
    own.sign_and_encrypt(peer, &plain)
        .map_err(ChatError::Encrypt)
}

/// Decrypt, verify (signed by `peer`) and decode a control message; then [`check_control`].
pub fn decrypt_control(
    own: &SecretCert,
    peer: &PublicCert,
    bytes: &[u8],
) -> Result<ControlPayload, ChatError> {
    let plain = own
        .decrypt_and_verify(bytes, peer)
        .map_err(|e| super::chat::undecryptable(own, bytes, e))?;
    codec::decode(&plain).map_err(ChatError::BadPayload)
}

/// A decrypted control payload is for this discussion and for us (a replay from another
/// discussion signed by the same key, or one sent to someone else, is refused). Its size is bounded
/// by the frame size and by each variant's own limits, checked by its handler.
pub fn check_control(
    p: &ControlPayload,
    discussion_id: &str,
    own_fingerprint: &str,
) -> Result<(), ChatError> {
    if p.discussion_id != discussion_id {
        return Err(ChatError::OtherDiscussion);
    }
    if p.recipient != own_fingerprint {
        return Err(ChatError::OtherRecipient);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Control;

    #[test]
    fn a_control_message_round_trips_and_is_checked() {
        let (a, b) = (
            SecretCert::generate("a").unwrap(),
            SecretCert::generate("b").unwrap(),
        );
        let p = ControlPayload {
            discussion_id: "d1".into(),
            seq: 3,
            time: 0,
            recipient: b.fingerprint().to_string(),
            control: Control::ListRequest { request_id: 9 },
        };
        let bytes = encrypt_control(&a, b.public(), &p).unwrap();
        let got = decrypt_control(&b, a.public(), &bytes).unwrap();
        assert_eq!(got, p);
        check_control(&got, "d1", b.fingerprint()).unwrap();
        assert!(matches!(
            check_control(&got, "d2", b.fingerprint()),
            Err(ChatError::OtherDiscussion)
        ));
        assert!(matches!(
            check_control(&got, "d1", a.fingerprint()),
            Err(ChatError::OtherRecipient)
        ));
    }
}
