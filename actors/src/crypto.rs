//! OpenPGP operations, as pure functions over rpgp 0.21.
//!
//! Everything here is blocking CPU work (tens of microseconds to tens of milliseconds): callers on an
//! actor's event loop must run it on a worker (the [`KeyManager`](crate::keys::KeyManager) sync
//! arbiter, or `spawn_blocking`).
//!
//! Key shape (both identity and per-discussion keys): v4, Ed25519 (legacy EdDSA) primary that certifies
//! and signs, plus a Curve25519 (legacy ECDH) encryption subkey. That is the variant gpg 2.2 and sq 0.27
//! accept, so every key and message this module makes is standard OpenPGP they can read.
//!
//! Messages are SEIPD v1 (with MDC), AES-256, signed with SHA-256, never compressed. On the receiving
//! side we refuse what we would never send: compressed data (decompression bombs), unsigned data,
//! signatures with a weak hash, keys of other algorithms or versions.

use std::io::Cursor;

use pgp::{
    composed::{
        ArmorOptions, Deserializable, DetachedSignature, EncryptionCaps, KeyType, Message,
        MessageBuilder, SecretKeyParamsBuilder, SignedPublicKey, SignedSecretKey,
        SubkeyParamsBuilder,
    },
    crypto::{ecc_curve::ECCCurve, hash::HashAlgorithm, sym::SymmetricKeyAlgorithm},
    packet::Signature,
    ser::Serialize,
    types::{KeyDetails, KeyVersion, Password},
};
use rand::thread_rng;
use thiserror::Error;

mod rotation;
pub use rotation::{key_id_hex, recipient_key_ids, SubkeyId, MAX_LIVE_SUBKEYS};

/// Largest OpenPGP certificate we accept from a peer (ours are about 400 bytes).
pub const MAX_CERT_BYTES: usize = 8 * 1024;

/// Most recipient (PKESK) packets a message we decrypt may carry. Ours carry one. rpgp tries every
/// packet that names our key (or no key) before any signature can be checked, each an ECDH
/// decryption (~70 µs): 2 700 copies in one frame cost ~0.2 s of a crypto worker.
pub const MAX_RECIPIENTS: usize = 3;

/// Errors of the OpenPGP layer. Messages name what was wrong; they never contain secret material.
#[derive(Debug, Error)]
pub enum CryptoError {
    #[error("wrong passphrase for the identity key")]
    WrongPassphrase,
    #[error("the identity key is passphrase-protected: a passphrase is needed")]
    PassphraseNeeded,
    // Each kind comes twice: with our own words, or with rpgp's error kept as the source (its
    // kind preserved, never turned into text here); the texts users see are the same.
    #[error("malformed OpenPGP data: {0}")]
    Malformed(String),
    #[error("malformed OpenPGP data: {0}")]
    MalformedPgp(#[source] pgp::errors::Error),
    #[error("key refused by policy: {0}")]
    Policy(String),
    #[error("bad signature: {0}")]
    BadSignature(String),
    #[error("bad signature: {0}")]
    BadSignaturePgp(#[source] pgp::errors::Error),
    /// The self-signatures binding a certificate's (`what`) user ids and subkeys do not verify.
    #[error("bad signature: {what} bindings: {source}")]
    Bindings {
        what: &'static str,
        source: pgp::errors::Error,
    },
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
    #[error("cannot decrypt: {0}")]
    DecryptPgp(#[source] pgp::errors::Error),
    /// Reading the decrypted stream failed (rpgp reports it as I/O).
    #[error("cannot decrypt: {0}")]
    DecryptIo(#[source] std::io::Error),
    #[error("OpenPGP operation failed: {0}")]
    Pgp(#[from] pgp::errors::Error),
    /// An operation of ours around OpenPGP (key derivation, sealing) failed.
    #[error("OpenPGP operation failed: {0}")]
    Failed(&'static str),
    #[error("OpenPGP operation failed: {0}")]
    KeyParams(#[from] pgp::composed::SecretKeyParamsBuilderError),
    #[error("OpenPGP operation failed: {0}")]
    SubkeyParams(#[from] pgp::composed::SubkeyParamsBuilderError),
    /// A file of sealed key material could not be read or written.
    #[error("{}: {source}", path.display())]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The key manager's workers are gone (the node is stopping).
    #[error("the key manager is unavailable")]
    WorkerUnavailable,
}

fn pgp_err(e: pgp::errors::Error) -> CryptoError {
    CryptoError::Pgp(e)
}

/// Upper-case hex fingerprint of a v4 key (40 characters).
pub type Fingerprint = String;

/// A public certificate we have checked against our policy, with its fingerprint at hand.
#[derive(Debug, Clone)]
pub struct PublicCert {
    cert: SignedPublicKey,
    fingerprint: Fingerprint,
    /// The encryption subkey messages to this certificate go to: the one its owner announced as
    /// current ([`Self::with_current_subkey`]); `None`: the first one (identity keys, and a
    /// discussion key that never rotated).
    current: Option<SubkeyId>,
}

impl PublicCert {
    /// Parse a binary or armored certificate, check its bindings and our algorithm policy.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() > MAX_CERT_BYTES {
            return Err(CryptoError::Policy(format!(
                "certificate of {} bytes exceeds {MAX_CERT_BYTES}",
                bytes.len()
            )));
        }
        let (cert, _) = SignedPublicKey::from_reader_single(Cursor::new(bytes))
            .map_err(CryptoError::MalformedPgp)?;
        Self::checked(cert)
    }

    fn checked(cert: SignedPublicKey) -> Result<Self, CryptoError> {
        cert.verify_bindings()
            .map_err(|source| CryptoError::Bindings {
                what: "certificate",
                source,
            })?;
        check_primary_policy(&cert)?;
        encryption_subkey(&cert)?;
        let fingerprint = fingerprint_hex(&cert.fingerprint());
        Ok(Self {
            cert,
            fingerprint,
            current: None,
        })
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The first user id, which for our keys is the display name (or a discussion label).
    pub fn user_id(&self) -> String {
        self.cert
            .details
            .users
            .first()
            .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
            .unwrap_or_default()
    }

    /// Binary (non-armored) OpenPGP encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising an in-memory, already-validated key only fails on a writer error, and a Vec
        // writer has none.
        self.cert.to_bytes().unwrap_or_default()
    }

    pub fn to_armored(&self) -> Result<String, CryptoError> {
        self.cert
            .to_armored_string(ArmorOptions::default())
            .map_err(pgp_err)
    }

    pub fn inner(&self) -> &SignedPublicKey {
        &self.cert
    }
}

/// An unlocked secret key (identity or discussion), kept in memory for the life of the node.
#[derive(Clone)]
pub struct SecretCert {
    secret: SignedSecretKey,
    public: PublicCert,
}

/// Only the fingerprint shows: never the key material.
impl std::fmt::Debug for SecretCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretCert")
            .field("fingerprint", &self.public.fingerprint())
            .finish_non_exhaustive()
    }
}

impl SecretCert {
    /// Generate a fresh v4 Ed25519 + Curve25519 key with `user_id`. About 90 µs.
    pub fn generate(user_id: &str) -> Result<Self, CryptoError> {
        let mut enc = SubkeyParamsBuilder::default();
        enc.key_type(KeyType::ECDH(ECCCurve::Curve25519Legacy))
            .can_sign(false)
            .can_encrypt(EncryptionCaps::All)
            .can_authenticate(false);
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .can_encrypt(EncryptionCaps::None)
            .primary_user_id(user_id.into())
            .subkeys(vec![enc.build().map_err(CryptoError::SubkeyParams)?]);
        let secret = params
            .build()
            .map_err(CryptoError::KeyParams)?
            .generate(thread_rng())
            .map_err(pgp_err)?;
        Self::from_unlocked(secret)
    }

    fn from_unlocked(secret: SignedSecretKey) -> Result<Self, CryptoError> {
        let public = PublicCert::checked(secret.to_public_key())?;
        Ok(Self { secret, public })
    }

    /// Parse a binary or armored secret key and unlock it with `passphrase` (ignored when the key is
    /// not protected; `None` on a protected key is [`CryptoError::PassphraseNeeded`]).
    pub fn unlock(bytes: &[u8], passphrase: Option<&str>) -> Result<Self, CryptoError> {
        let (mut secret, _) = SignedSecretKey::from_reader_single(Cursor::new(bytes))
            .map_err(CryptoError::MalformedPgp)?;
        secret
            .verify_bindings()
            .map_err(|source| CryptoError::Bindings {
                what: "key",
                source,
            })?;
        if Self::is_protected(&secret) {
            let pw: Password = passphrase.ok_or(CryptoError::PassphraseNeeded)?.into();
            secret
                .primary_key
                .remove_password(&pw)
                .map_err(|_| CryptoError::WrongPassphrase)?;
            for sub in &mut secret.secret_subkeys {
                sub.key
                    .remove_password(&pw)
                    .map_err(|_| CryptoError::WrongPassphrase)?;
            }
        }
        Self::from_unlocked(secret)
    }

    fn is_protected(secret: &SignedSecretKey) -> bool {
        secret.primary_key.secret_params().is_encrypted()
            || secret
                .secret_subkeys
                .iter()
                .any(|s| s.key.secret_params().is_encrypted())
    }

    /// The secret key, protected with `passphrase` (OpenPGP S2K) when one is given, as binary
    /// OpenPGP. The in-memory key stays unlocked.
    pub fn to_protected_bytes(&self, passphrase: Option<&str>) -> Result<Vec<u8>, CryptoError> {
        self.protected(passphrase)?.to_bytes().map_err(pgp_err)
    }

    /// Same as [`Self::to_protected_bytes`], armored (what `export-key --secret` prints).
    pub fn to_protected_armored(&self, passphrase: Option<&str>) -> Result<String, CryptoError> {
        self.protected(passphrase)?
            .to_armored_string(ArmorOptions::default())
            .map_err(pgp_err)
    }

    fn protected(&self, passphrase: Option<&str>) -> Result<SignedSecretKey, CryptoError> {
        let mut copy = self.secret.clone();
        if let Some(pw) = passphrase {
            let pw: Password = pw.into();
            copy.primary_key
                .set_password(thread_rng(), &pw)
                .map_err(pgp_err)?;
            for sub in &mut copy.secret_subkeys {
                sub.key.set_password(thread_rng(), &pw).map_err(pgp_err)?;
            }
        }
        Ok(copy)
    }

    pub fn public(&self) -> &PublicCert {
        &self.public
    }

    pub fn fingerprint(&self) -> &str {
        self.public.fingerprint()
    }

    /// The unprotected secret parameters of the primary key and each subkey, encoded as they would
    /// appear in an unprotected key packet. For audits that search files for leaked key material.
    pub fn secret_material_for_audit(&self) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = plain_secret(self.secret.primary_key.secret_params())
            .into_iter()
            .map(|z| z.to_vec())
            .collect();
        for sub in &self.secret.secret_subkeys {
            out.extend(plain_secret(sub.key.secret_params()).map(|z| z.to_vec()));
        }
        out
    }

    /// A 32-byte symmetric key for `context`, derived (HKDF-SHA-256) from this key's primary
    /// secret, taken as it is encoded in an unprotected OpenPGP key packet (RFC 4880 §5.5.3, an MPI:
    /// fixed by the standard, not by the library; pinned by
    /// `at_rest::tests::the_format_and_key_derivation_are_pinned`). What the node seals for itself
    /// on disk uses it (see [`crate::at_rest`]): no OpenPGP message a peer can make opens with it,
    /// and it opens nothing a peer sends.
    pub fn derive_local_key(
        &self,
        context: &[u8],
    ) -> Result<zeroize::Zeroizing<[u8; 32]>, CryptoError> {
        let ikm = plain_secret(self.secret.primary_key.secret_params())
            .ok_or_else(|| CryptoError::Policy("the key is locked".into()))?;
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2::Sha256>::new(Some(b"pgpchat local key v1"), &ikm)
            .expand(context, out.as_mut())
            .map_err(|_| CryptoError::Failed("key derivation failed"))?;
        Ok(out)
    }

    /// Detached binary signature (SHA-256) over `data`, as OpenPGP bytes.
    pub fn sign_detached(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let sig = DetachedSignature::sign_binary_data(
            thread_rng(),
            &self.secret.primary_key,
            &Password::empty(),
            HashAlgorithm::Sha256,
            data,
        )
        .map_err(pgp_err)?;
        sig.to_bytes().map_err(pgp_err)
    }

    /// Sign `plaintext` with this key and encrypt it to `recipient`'s current encryption subkey
    /// ([`PublicCert::with_current_subkey`]; the first one if none was named):
    /// one OpenPGP message, SEIPD v1 (MDC), AES-256, SHA-256 signature, no compression.
    pub fn sign_and_encrypt(
        &self,
        recipient: &PublicCert,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let subkey = match &recipient.current {
            Some(id) => recipient.encryption_subkey_by_id(id)?,
            None => encryption_subkey(recipient.inner())?,
        };
        self.sign_and_encrypt_to_subkey(subkey, plaintext)
    }

    fn sign_and_encrypt_to_subkey(
        &self,
        subkey: &pgp::composed::SignedPublicSubKey,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut builder = MessageBuilder::from_bytes("", plaintext.to_vec())
            .seipd_v1(thread_rng(), SymmetricKeyAlgorithm::AES256);
        builder
            .sign(
                &self.secret.primary_key,
                Password::empty(),
                HashAlgorithm::Sha256,
            )
            .encrypt_to_key(thread_rng(), subkey)
            .map_err(pgp_err)?;
        builder.to_vec(thread_rng()).map_err(pgp_err)
    }

    /// Decrypt `message` with this key and return the plaintext, verified as signed by `signer`.
    /// When `signer` is not known yet (the first frame of a handshake carries the sender's
    /// certificate inside), use [`Self::decrypt_unverified`] and then [`Decrypted::verify`].
    pub fn decrypt_and_verify(
        &self,
        message: &[u8],
        signer: &PublicCert,
    ) -> Result<Vec<u8>, CryptoError> {
        let d = self.decrypt_unverified(message)?;
        d.verify(signer)?;
        Ok(d.plaintext)
    }

    /// Decrypt `message`; the signature is checked later with [`Decrypted::verify`].
    pub fn decrypt_unverified(&self, message: &[u8]) -> Result<Decrypted, CryptoError> {
        let msg = Message::from_bytes(Cursor::new(message)).map_err(CryptoError::MalformedPgp)?;
        check_recipients(&msg)?;
        let mut inner = msg
            .decrypt(&Password::empty(), &self.secret)
            .map_err(CryptoError::DecryptPgp)?;
        if inner.is_compressed() {
            return Err(CryptoError::Policy(
                "compressed messages are refused".into(),
            ));
        }
        if !inner.is_signed() {
            return Err(CryptoError::Policy("message is not signed".into()));
        }
        let plaintext = inner.as_data_vec().map_err(CryptoError::DecryptIo)?;
        // Keep only the signature: the message borrows the input buffer.
        let signature = signature_of(&inner)?;
        Ok(Decrypted {
            plaintext,
            signature,
        })
    }
}

/// The unprotected secret parameters of one key packet, as they would appear in an unprotected key
/// packet; `None` when the key is still passphrase-protected.
fn plain_secret(p: &pgp::types::SecretParams) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    match p {
        pgp::types::SecretParams::Plain(plain) => {
            let mut v = zeroize::Zeroizing::new(Vec::new());
            plain.to_writer(&mut *v, KeyVersion::V4).ok()?;
            Some(v)
        }
        _ => None,
    }
}

/// A decrypted message whose signature has not been checked yet.
pub struct Decrypted {
    pub plaintext: Vec<u8>,
    signature: Signature,
}

/// The plaintext never shows (nor anything derived from it).
impl std::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decrypted")
            .field("plaintext", &crate::redact::Hidden::of(&self.plaintext))
            .finish_non_exhaustive()
    }
}

impl Decrypted {
    /// Check the signature over the plaintext against `signer`'s primary key, and that the
    /// signature names that key as its issuer.
    pub fn verify(&self, signer: &PublicCert) -> Result<(), CryptoError> {
        check_signature_policy(&self.signature)?;
        check_issuer(&self.signature, signer)?;
        self.signature
            .verify(&signer.inner().primary_key, Cursor::new(&self.plaintext))
            .map_err(CryptoError::BadSignaturePgp)
    }
}

/// Before any decryption: the message is encrypted, to at most [`MAX_RECIPIENTS`] public keys,
/// each named (an anonymous "wildcard" recipient makes us try our key on it), and to no password.
fn check_recipients(msg: &Message<'_>) -> Result<(), CryptoError> {
    use pgp::composed::Esk;
    let Message::Encrypted { esk, .. } = msg else {
        return Err(CryptoError::Policy("message is not encrypted".into()));
    };
    if esk.len() > MAX_RECIPIENTS {
        return Err(CryptoError::Policy(format!(
            "{} recipient packets (at most {MAX_RECIPIENTS})",
            esk.len()
        )));
    }
    for e in esk {
        let named = match e {
            Esk::PublicKeyEncryptedSessionKey(p) => match (p.id(), p.fingerprint()) {
                (Ok(id), _) => !id.is_wildcard(),
                (_, Ok(fingerprint)) => fingerprint.is_some(),
                _ => false,
            },
            Esk::SymKeyEncryptedSessionKey(_) => {
                return Err(CryptoError::Policy(
                    "password-encrypted session keys are refused".into(),
                ))
            }
        };
        if !named {
            return Err(CryptoError::Policy(
                "anonymous (wildcard) recipients are refused".into(),
            ));
        }
    }
    Ok(())
}

fn signature_of(msg: &Message<'_>) -> Result<Signature, CryptoError> {
    match msg {
        Message::Signed { reader, .. } if reader.num_signatures() == 1 => reader
            .signature(0)
            .cloned()
            .ok_or_else(|| CryptoError::BadSignature("no signature in message".into())),
        _ => Err(CryptoError::Policy(
            "message must carry exactly one signature".into(),
        )),
    }
}

/// Verify a detached signature made by [`SecretCert::sign_detached`].
pub fn verify_detached(
    signer: &PublicCert,
    data: &[u8],
    signature: &[u8],
) -> Result<(), CryptoError> {
    let sig =
        DetachedSignature::from_bytes(Cursor::new(signature)).map_err(CryptoError::MalformedPgp)?;
    check_signature_policy(&sig.signature)?;
    check_issuer(&sig.signature, signer)?;
    sig.verify(&signer.inner().primary_key, data)
        .map_err(CryptoError::BadSignaturePgp)
}

fn check_signature_policy(sig: &Signature) -> Result<(), CryptoError> {
    match sig.hash_alg() {
        Some(HashAlgorithm::Sha256 | HashAlgorithm::Sha384 | HashAlgorithm::Sha512) => Ok(()),
        other => Err(CryptoError::Policy(format!(
            "signature hash {other:?} is not accepted (SHA-256 or stronger)"
        ))),
    }
}

fn check_issuer(sig: &Signature, signer: &PublicCert) -> Result<(), CryptoError> {
    let expected = signer.inner().fingerprint();
    let by_fpr = sig.issuer_fingerprint();
    if !by_fpr.is_empty() {
        return if by_fpr.iter().any(|f| **f == expected) {
            Ok(())
        } else {
            Err(CryptoError::BadSignature(
                "signature issued by another key".into(),
            ))
        };
    }
    let key_id = signer.inner().legacy_key_id();
    if sig.issuer_key_id().iter().any(|k| **k == key_id) {
        Ok(())
    } else {
        Err(CryptoError::BadSignature(
            "signature names no issuer or another issuer".into(),
        ))
    }
}

fn check_primary_policy(cert: &SignedPublicKey) -> Result<(), CryptoError> {
    use pgp::crypto::public_key::PublicKeyAlgorithm as A;
    if cert.primary_key.version() != KeyVersion::V4 {
        return Err(CryptoError::Policy(format!(
            "key version {:?} (only v4)",
            cert.primary_key.version()
        )));
    }
    match cert.primary_key.algorithm() {
        A::EdDSALegacy | A::Ed25519 => Ok(()),
        other => Err(CryptoError::Policy(format!(
            "primary key algorithm {other:?} (only Ed25519)"
        ))),
    }
}

fn encryption_subkey(
    cert: &SignedPublicKey,
) -> Result<&pgp::composed::SignedPublicSubKey, CryptoError> {
    use pgp::crypto::public_key::PublicKeyAlgorithm as A;
    cert.public_subkeys
        .iter()
        .find(|s| {
            matches!(s.key.algorithm(), A::ECDH | A::X25519)
                && s.signatures
                    .iter()
                    .any(|sig| sig.key_flags().encrypt_comms())
        })
        .ok_or_else(|| CryptoError::Policy("no Curve25519 encryption subkey".into()))
}

/// The public certificate of a (possibly locked) secret key, without unlocking it.
pub fn public_of_secret(bytes: &[u8]) -> Result<PublicCert, CryptoError> {
    let (secret, _) = SignedSecretKey::from_reader_single(Cursor::new(bytes))
        .map_err(CryptoError::MalformedPgp)?;
    PublicCert::checked(secret.to_public_key())
}

/// A stored secret key, armored as it is (its protection unchanged).
pub fn armor_secret(bytes: &[u8]) -> Result<String, CryptoError> {
    let (secret, _) = SignedSecretKey::from_reader_single(Cursor::new(bytes))
        .map_err(CryptoError::MalformedPgp)?;
    secret
        .to_armored_string(ArmorOptions::default())
        .map_err(pgp_err)
}

/// Upper-case hex of a fingerprint.
pub fn fingerprint_hex(f: &pgp::types::Fingerprint) -> Fingerprint {
    hex::encode_upper(f.as_bytes())
}

/// "ABCD 1234 ..." groups of four, for people to read aloud.
pub fn fingerprint_groups(fpr: &str) -> String {
    fpr.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_encrypt_round_trip_and_wrong_signer() {
        let a = SecretCert::generate("alice").unwrap();
        let b = SecretCert::generate("bob").unwrap();
        let m = SecretCert::generate("mallory").unwrap();
        let msg = a.sign_and_encrypt(b.public(), b"hello bob").unwrap();
        assert_eq!(
            b.decrypt_and_verify(&msg, a.public()).unwrap(),
            b"hello bob"
        );
        assert!(matches!(
            b.decrypt_and_verify(&msg, m.public()),
            Err(CryptoError::BadSignature(_))
        ));
        // rpgp's error stays the source, its text the one users saw before.
        let e = m.decrypt_and_verify(&msg, a.public()).unwrap_err();
        let CryptoError::DecryptPgp(ref source) = e else {
            panic!("{e:?}")
        };
        assert!(std::error::Error::source(&e).is_some_and(|s| s.is::<pgp::errors::Error>()));
        assert_eq!(e.to_string(), format!("cannot decrypt: {source}"));
    }

    #[test]
    fn passphrase_protection_round_trip() {
        let a = SecretCert::generate("alice").unwrap();
        let locked = a.to_protected_bytes(Some("correct horse")).unwrap();
        assert!(matches!(
            SecretCert::unlock(&locked, Some("wrong")),
            Err(CryptoError::WrongPassphrase)
        ));
        assert!(matches!(
            SecretCert::unlock(&locked, None),
            Err(CryptoError::PassphraseNeeded)
        ));
        let back = SecretCert::unlock(&locked, Some("correct horse")).unwrap();
        assert_eq!(back.fingerprint(), a.fingerprint());
        // The protected form must not contain the unprotected secret.
        let plain = a.to_protected_bytes(None).unwrap();
        assert_ne!(plain, locked);
    }

    #[test]
    fn audit_material_is_what_an_unprotected_key_contains() {
        let a = SecretCert::generate("alice").unwrap();
        let parts = a.secret_material_for_audit();
        assert_eq!(parts.len(), 2, "primary and encryption subkey");
        let plain = a.to_protected_bytes(None).unwrap();
        let locked = a.to_protected_bytes(Some("pw")).unwrap();
        for p in &parts {
            assert!(p.len() >= 32);
            assert!(
                plain.windows(p.len()).any(|w| w == &p[..]),
                "found in the unprotected key"
            );
            assert!(
                !locked.windows(p.len()).any(|w| w == &p[..]),
                "absent from the protected key"
            );
        }
    }

    #[test]
    fn detached_signatures() {
        let a = SecretCert::generate("alice").unwrap();
        let m = SecretCert::generate("mallory").unwrap();
        let sig = a.sign_detached(b"data").unwrap();
        verify_detached(a.public(), b"data", &sig).unwrap();
        assert!(verify_detached(a.public(), b"datA", &sig).is_err());
        assert!(verify_detached(m.public(), b"data", &sig).is_err());
        assert!(verify_detached(a.public(), b"data", &sig[..sig.len() / 2]).is_err());
    }

    fn generate_with(primary: KeyType, version: KeyVersion) -> SignedSecretKey {
        let mut enc = SubkeyParamsBuilder::default();
        enc.version(version)
            .key_type(if version == KeyVersion::V6 {
                KeyType::X25519
            } else {
                KeyType::ECDH(ECCCurve::Curve25519Legacy)
            })
            .can_encrypt(EncryptionCaps::All);
        let mut params = SecretKeyParamsBuilder::default();
        params
            .version(version)
            .key_type(primary)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id("downgrade".into())
            .subkeys(vec![enc.build().unwrap()]);
        params.build().unwrap().generate(thread_rng()).unwrap()
    }

    #[test]
    fn downgrade_keys_are_refused() {
        for (what, key) in [
            ("RSA", generate_with(KeyType::Rsa(2048), KeyVersion::V4)),
            (
                "ECDSA P-256",
                generate_with(KeyType::ECDSA(ECCCurve::P256), KeyVersion::V4),
            ),
            (
                "v6 Ed25519",
                generate_with(KeyType::Ed25519, KeyVersion::V6),
            ),
        ] {
            let bytes = key.to_public_key().to_bytes().unwrap();
            assert!(
                matches!(PublicCert::from_bytes(&bytes), Err(CryptoError::Policy(_))),
                "{what} accepted"
            );
        }
    }

    #[test]
    fn sha1_signatures_are_refused() {
        // rpgp will not even make a SHA-1 Ed25519 signature; forge one by rewriting the hash
        // algorithm octet of a real one (v4 packet: tag, length, version, type, key algo, hash algo).
        let a = SecretCert::generate("alice").unwrap();
        let mut sig = a.sign_detached(b"data").unwrap();
        assert_eq!(
            (sig[0], sig[2], sig[5]),
            (0xC2, 4, 8),
            "new-format v4 SHA-256 signature"
        );
        sig[5] = 2; // SHA-1
        assert!(matches!(
            verify_detached(a.public(), b"data", &sig),
            Err(CryptoError::Policy(m)) if m.contains("Sha1")
        ));
    }

    #[test]
    fn compressed_and_unsigned_messages_are_refused() {
        let a = SecretCert::generate("alice").unwrap();
        let b = SecretCert::generate("bob").unwrap();
        let subkey = encryption_subkey(b.public().inner()).unwrap();
        let mut builder = MessageBuilder::from_bytes("", vec![0u8; 10_000])
            .seipd_v1(thread_rng(), SymmetricKeyAlgorithm::AES256);
        builder
            .compression(pgp::types::CompressionAlgorithm::ZLIB)
            .sign(
                &a.secret.primary_key,
                Password::empty(),
                HashAlgorithm::Sha256,
            )
            .encrypt_to_key(thread_rng(), subkey)
            .unwrap();
        let msg = builder.to_vec(thread_rng()).unwrap();
        assert!(matches!(
            b.decrypt_and_verify(&msg, a.public()),
            Err(CryptoError::Policy(_))
        ));

        let mut builder = MessageBuilder::from_bytes("", b"unsigned".to_vec())
            .seipd_v1(thread_rng(), SymmetricKeyAlgorithm::AES256);
        builder.encrypt_to_key(thread_rng(), subkey).unwrap();
        let msg = builder.to_vec(thread_rng()).unwrap();
        assert!(matches!(
            b.decrypt_and_verify(&msg, a.public()),
            Err(CryptoError::Policy(_))
        ));
    }

    /// Length of the first packet (new format header) of `msg`.
    fn first_packet_len(msg: &[u8]) -> usize {
        match msg[1] {
            l @ 0..=191 => 2 + l as usize,
            l => 3 + ((l as usize - 192) << 8) + msg[2] as usize + 192,
        }
    }

    #[test]
    fn repeated_and_anonymous_recipients_are_refused_before_decryption() {
        let a = SecretCert::generate("alice").unwrap();
        let b = SecretCert::generate("bob").unwrap();
        let msg = a.sign_and_encrypt(b.public(), b"attack at dawn").unwrap();
        assert_eq!(msg[0], 0xC1, "PKESK first");
        let n = first_packet_len(&msg);
        let (pkesk, rest) = msg.split_at(n);
        let repeated = |times: usize| {
            let mut m = pkesk.repeat(times);
            m.extend_from_slice(rest);
            m
        };
        // Valid copies would all decrypt: only the check can refuse them, and it does before.
        assert!(b
            .decrypt_and_verify(&repeated(MAX_RECIPIENTS), a.public())
            .is_ok());
        for times in [MAX_RECIPIENTS + 1, 2700] {
            let e = b.decrypt_unverified(&repeated(times)).unwrap_err();
            assert!(
                matches!(&e, CryptoError::Policy(m) if m.contains("recipient packets")),
                "{times}: {e}"
            );
        }
        // A v3 PKESK body: version 3, then the 8-byte key id. All zero is the wildcard, which
        // matches any key and would decrypt here too.
        let mut anonymous = msg.clone();
        let header = if msg[1] < 192 { 2 } else { 3 };
        assert_eq!(msg[header], 3, "v3 PKESK");
        anonymous[header + 1..header + 9].fill(0);
        let e = b.decrypt_unverified(&anonymous).unwrap_err();
        assert!(
            matches!(&e, CryptoError::Policy(m) if m.contains("anonymous")),
            "{e}"
        );
    }

    #[test]
    fn encrypted_data_without_mdc_is_refused() {
        let a = SecretCert::generate("alice").unwrap();
        let b = SecretCert::generate("bob").unwrap();
        let msg = a.sign_and_encrypt(b.public(), b"attack at dawn").unwrap();
        // Rewrite the SEIPD v1 packet (tag 18) as a legacy Symmetrically Encrypted Data packet
        // (tag 9, no integrity protection): same ciphertext minus the version octet.
        let pkesk_len = match msg[1] {
            l @ 0..=191 => 2 + l as usize,
            l => 3 + ((l as usize - 192) << 8) + msg[2] as usize + 192,
        };
        assert_eq!(msg[0], 0xC1, "PKESK first");
        let rest = &msg[pkesk_len..];
        assert_eq!(rest[0], 0xD2, "then SEIPD");
        let (body_start, body_len) = match rest[1] {
            l @ 0..=191 => (2, l as usize),
            l @ 192..=223 => (3, ((l as usize - 192) << 8) + rest[2] as usize + 192),
            _ => panic!("unexpected length encoding"),
        };
        assert_eq!(rest[body_start], 1, "SEIPD version 1");
        let sed_body = &rest[body_start + 1..body_start + body_len];
        let mut forged = msg[..pkesk_len].to_vec();
        forged.push(0xC9);
        let n = sed_body.len();
        if n < 192 {
            forged.push(n as u8);
        } else {
            forged.push((((n - 192) >> 8) + 192) as u8);
            forged.push(((n - 192) & 0xff) as u8);
        }
        forged.extend_from_slice(sed_body);
        assert!(b.decrypt_and_verify(&forged, a.public()).is_err());
        assert!(b.decrypt_and_verify(&msg, a.public()).is_ok());
    }

    #[test]
    fn certificate_round_trip_and_garbage() {
        let a = SecretCert::generate("alice").unwrap();
        let bytes = a.public().to_bytes();
        let back = PublicCert::from_bytes(&bytes).unwrap();
        assert_eq!(back.fingerprint(), a.fingerprint());
        assert_eq!(back.user_id(), "alice");
        assert_eq!(a.fingerprint().len(), 40);
        assert!(PublicCert::from_bytes(b"garbage").is_err());
        assert!(PublicCert::from_bytes(&bytes[..bytes.len() - 3]).is_err());
    }
}
