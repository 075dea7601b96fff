//! What the node seals for itself on disk (the storage key in `storage.key`, each discussion's secret
//! key in the store), kept cryptographically apart from what peers may send it.
//!
//! Before issue 8 both were OpenPGP messages signed by and encrypted to the identity key: exactly what
//! a peer sends in a handshake frame, so a copy of `storage.key` sent as one was decrypted by the
//! handshake code (and answered with an error that quoted its first bytes). Now they are sealed with
//! AES-256-GCM under a key derived from the identity's secret for that one purpose
//! ([`SecretCert::derive_local_key`]), with the purpose as associated data:
//!
//! - no peer can make such a blob (the key never leaves the node), and the handshake code cannot
//!   open one (it has no public-key packet for us: rpgp refuses it before any decryption);
//! - a handshake frame, or any OpenPGP message, is not one (wrong magic, no tag);
//! - a storage key does not open as a discussion key or the other way round (purpose in the key and
//!   in the associated data).
//!
//! Format: `MAGIC ‖ nonce (12) ‖ AES-256-GCM(ciphertext ‖ tag)`. The magic's first byte has its top
//! bit clear, which no OpenPGP packet has: [`is_legacy`] tells the two formats apart for the one-time
//! conversion of data directories made before issue 8 ([`open_legacy`]).
//!
//! Blocking CPU work (the key derivation): call it on a crypto worker.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use crate::crypto::{CryptoError, SecretCert};

/// First bytes of every blob sealed by this module (version 1 of the format).
pub const MAGIC: &[u8; 8] = b"PGPCHAT1";
const NONCE_BYTES: usize = 12;

/// What a sealed blob holds; part of both the key derivation and the associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    /// The store's message-text key (`<data_dir>/storage.key`).
    StorageKey,
    /// A discussion's secret key (the `discussion_keys` table of the store).
    DiscussionKey,
    /// The one-time secret of an introduction we received (the `introductions` table).
    IntroductionSecret,
    /// A discussion's DHT rendezvous secret (the `rendezvous_secrets` table, issue 11).
    RendezvousSecret,
}

impl Sealed {
    fn context(self) -> &'static [u8] {
        match self {
            Self::StorageKey => b"pgpchat at rest v1: storage key",
            Self::DiscussionKey => b"pgpchat at rest v1: discussion secret key",
            Self::IntroductionSecret => b"pgpchat at rest v1: introduction secret",
            Self::RendezvousSecret => b"pgpchat at rest v1: discussion rendezvous secret",
        }
    }
}

fn cipher(identity: &SecretCert, what: Sealed) -> Result<Aes256Gcm, CryptoError> {
    let key = identity.derive_local_key(what.context())?;
    Ok(Aes256Gcm::new(key.as_ref().into()))
}

fn refused() -> CryptoError {
    CryptoError::Decrypt(
        "sealed data does not open (another key, another purpose, or altered)".into(),
    )
}

/// Seal `plaintext` for this node only.
pub fn seal(identity: &SecretCert, what: Sealed, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let aad = [MAGIC.as_slice(), what.context()].concat();
    let ct = cipher(identity, what)?
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| CryptoError::Failed("sealing failed"))?;
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Open a blob made by [`seal`] for the same purpose.
pub fn open(
    identity: &SecretCert,
    what: Sealed,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let body = sealed.strip_prefix(MAGIC.as_slice()).ok_or_else(refused)?;
    if body.len() < NONCE_BYTES {
        return Err(refused());
    }
    let (nonce, ct) = body.split_at(NONCE_BYTES);
    let aad = [MAGIC.as_slice(), what.context()].concat();
    cipher(identity, what)?
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
        .map(Zeroizing::new)
        .map_err(|_| refused())
}

/// A blob in the format from before issue 8: an OpenPGP message (every OpenPGP packet header has
/// its top bit set; [`MAGIC`] does not).
pub fn is_legacy(sealed: &[u8]) -> bool {
    sealed.first().is_some_and(|b| b & 0x80 != 0)
}

/// Open a blob from before issue 8 (signed by and encrypted to our own identity). Only the one-time
/// conversion of an old data directory calls this; nothing a peer sends reaches it.
pub fn open_legacy(
    identity: &SecretCert,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    Ok(Zeroizing::new(
        identity.decrypt_and_verify(sealed, identity.public())?,
    ))
}

/// Convert a blob from before issue 8 to this format (same purpose, same plaintext).
pub fn convert_legacy(
    identity: &SecretCert,
    what: Sealed,
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    seal(identity, what, &open_legacy(identity, sealed)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unprotected test identity and a blob it sealed (`Sealed::StorageKey`, "golden
    /// plaintext"), made once: if the key derivation or the format ever changed, every existing
    /// `storage.key` and discussion key would stop opening.
    const GOLDEN_KEY: &str = concat!(
        "c558046b09c83c16092b06010401da470f010107400a1b215a0cedd1f1ecca7426ef81e9d625fdd61c293265",
        "6c6245378a869719db000100c5a06d733085b9acf17774e82fffc1d409d9419b70c5716284aa30b1e618268a",
        "116acd06676f6c64656ec28604131608002e05026b09c83c16210438fc3446f6dafee63538686344163a1c6b",
        "d066e8021b03021e01010b011501160127021901000a091044163a1c6bd066e834300100ba4512a82a477611",
        "32282da085888b3f7a60106fe4ac1dadef12b458b1d484cf0100b8ea64197c200ec56070d5f866a335b6a989",
        "179ab11a142110c67af04353b603c75d046b09c83c120a2b060104019755010501010740d302ba75de7aa54f",
        "d04f5e0182dbbed0f3789011ca53075f5b70d98b74eada5b030108070000ff6f9a0f43a99cbfd88247c7ef61",
        "d0e70ddf7eb1820aa19683a6529a05512590f011bbc27804181608002005026b09c83c021b0c16210438fc34",
        "46f6dafee63538686344163a1c6bd066e8000a091044163a1c6bd066e88f5f00ff6d3e3062fcbe7595b50610",
        "5a3bd54d807632fab4a33daf6cbfae030c4faf8f4900fe3feab224145c58264f0b458fdf7626f7b6e82ea187",
        "7c14b35701bdb2ada37b01",
    );
    const GOLDEN_BLOB: &str = concat!(
        "5047504348415431d50a1daa3e168ceefdcad9f01a2370c54f553ecb26ebb3169fb9d3deff8365fc859fb849",
        "2e89c67cd98cd97a",
    );

    #[test]
    fn the_format_and_key_derivation_are_pinned() {
        let id = SecretCert::unlock(&hex::decode(GOLDEN_KEY).unwrap(), None).unwrap();
        let blob = hex::decode(GOLDEN_BLOB).unwrap();
        assert_eq!(
            &open(&id, Sealed::StorageKey, &blob).unwrap()[..],
            b"golden plaintext"
        );
    }

    #[test]
    fn round_trip_and_purposes_are_apart() {
        let id = SecretCert::generate("me").unwrap();
        let blob = seal(&id, Sealed::StorageKey, b"thirty-two bytes of key material").unwrap();
        assert!(!is_legacy(&blob));
        assert_eq!(
            &open(&id, Sealed::StorageKey, &blob).unwrap()[..],
            b"thirty-two bytes of key material"
        );
        assert!(open(&id, Sealed::DiscussionKey, &blob).is_err());
        let other = SecretCert::generate("someone else").unwrap();
        assert!(open(&other, Sealed::StorageKey, &blob).is_err());
        let mut altered = blob.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(open(&id, Sealed::StorageKey, &altered).is_err());
        assert!(open(&id, Sealed::StorageKey, &blob[..MAGIC.len() + 5]).is_err());
    }

    #[test]
    fn a_self_sealed_blob_is_no_handshake_frame_and_the_other_way_round() {
        let id = SecretCert::generate("me").unwrap();
        let peer = SecretCert::generate("peer").unwrap();
        // What we seal for ourselves does not even parse where peers' frames are opened.
        let blob = seal(&id, Sealed::DiscussionKey, b"secret").unwrap();
        assert!(id.decrypt_unverified(&blob).is_err());
        // What a peer (or we ourselves, the old way) can send is never a self-sealed blob.
        let frame = peer.sign_and_encrypt(id.public(), b"secret").unwrap();
        assert!(is_legacy(&frame));
        assert!(open(&id, Sealed::DiscussionKey, &frame).is_err());
        let old = id.sign_and_encrypt(id.public(), b"secret").unwrap();
        assert!(open(&id, Sealed::DiscussionKey, &old).is_err());
        // ...and only the one-time conversion reads the old format, into the new one.
        let converted = convert_legacy(&id, Sealed::DiscussionKey, &old).unwrap();
        assert_eq!(
            &open(&id, Sealed::DiscussionKey, &converted).unwrap()[..],
            b"secret"
        );
        assert!(convert_legacy(&id, Sealed::DiscussionKey, &frame).is_err());
    }
}
