//! A discussion key's encryption subkeys, which rotate (issue 14, `docs/security.md`, "Forward
//! secrecy"): the discussion's Ed25519 primary key signs for its whole life, while its Curve25519
//! encryption subkey is replaced now and then and the old secret destroyed, so a key taken later
//! opens none of the frames sent under the destroyed ones.
//!
//! A [`SecretCert`] holds every encryption subkey not yet destroyed (pending, active, draining):
//! rpgp picks the one a message names by its key id, so a receiver reads a frame under any of
//! them. A sender encrypts to one named subkey of the peer's certificate: the one the peer
//! announced as current ([`SecretCert::sign_and_encrypt_to`]), never "the first".
//!
//! A new subkey travels as an announcement ([`SecretCert::announcement`]): the public discussion
//! certificate with that one subkey and its binding signature by the primary key, which the peer
//! checks with [`PublicCert::rotated`]. Its creation time is backdated by the allowed clock skew
//! (implementations ignore a subkey from the future), never before the primary key; its binding
//! signature is made now, so it never predates the subkey (gpg and sq refuse that).

use pgp::composed::SignedSecretSubKey;
use pgp::packet::{KeyFlags, PubKeyInner, PublicSubkey, SecretSubkey};
use pgp::types::{KeyId, Timestamp};

use super::*;

/// Upper-case hex of a v4 key id (16 characters): how a subkey is named in the store, the wire
/// and the API.
pub type SubkeyId = String;

/// Most encryption subkeys a discussion key holds at once: the active one, one pending, and one
/// draining (a second rotation waits for the first to complete).
pub const MAX_LIVE_SUBKEYS: usize = 3;

/// Upper-case hex of a key id.
pub fn key_id_hex(id: &KeyId) -> SubkeyId {
    hex::encode_upper(id.as_ref())
}

fn is_encryption_subkey(key: &impl KeyDetails, sigs: &[Signature]) -> bool {
    use pgp::crypto::public_key::PublicKeyAlgorithm as A;
    matches!(key.algorithm(), A::ECDH | A::X25519)
        && sigs.iter().any(|sig| sig.key_flags().encrypt_comms())
}

/// The key ids a message's recipient packets (PKESK) name, as they are on the wire: for a frame
/// that does not decrypt, whether it was encrypted to one of our subkeys that is gone.
pub fn recipient_key_ids(message: &[u8]) -> Result<Vec<SubkeyId>, CryptoError> {
    use pgp::composed::Esk;
    let msg = Message::from_bytes(Cursor::new(message)).map_err(CryptoError::MalformedPgp)?;
    let Message::Encrypted { esk, .. } = &msg else {
        return Err(CryptoError::Policy("message is not encrypted".into()));
    };
    Ok(esk
        .iter()
        .take(MAX_RECIPIENTS + 1)
        .filter_map(|e| match e {
            Esk::PublicKeyEncryptedSessionKey(p) => p.id().ok().map(key_id_hex),
            _ => None,
        })
        .collect())
}

impl SecretCert {
    /// For a frame that did not decrypt: the subkey it was encrypted to, if it names none that
    /// this key holds (one destroyed, or never ours).
    pub fn missing_subkey(&self, message: &[u8]) -> Option<SubkeyId> {
        let ids = recipient_key_ids(message).ok()?;
        let held = self.encryption_subkey_ids();
        if ids.iter().any(|id| held.contains(id)) {
            return None;
        }
        ids.into_iter().next()
    }

    /// Ids of the encryption subkeys this key holds, oldest first.
    pub fn encryption_subkey_ids(&self) -> Vec<SubkeyId> {
        self.secret
            .secret_subkeys
            .iter()
            .filter(|s| is_encryption_subkey(&s.key, &s.signatures))
            .map(|s| key_id_hex(&s.key.legacy_key_id()))
            .collect()
    }

    /// Add a fresh Curve25519 encryption subkey, bound by the primary key; returns its id.
    /// `now` and `skew` in seconds: it is created at `now - skew`, but never before the primary
    /// key; its binding signature carries the real time (so it never predates the subkey).
    /// Refused past [`MAX_LIVE_SUBKEYS`].
    pub fn add_encryption_subkey(&mut self, now: u64, skew: u64) -> Result<SubkeyId, CryptoError> {
        if self.secret.secret_subkeys.len() >= MAX_LIVE_SUBKEYS {
            return Err(CryptoError::Policy(format!(
                "already {MAX_LIVE_SUBKEYS} encryption subkeys"
            )));
        }
        let primary_created = u64::from(self.secret.primary_key.created_at().as_secs());
        let created = now.saturating_sub(skew).max(primary_created);
        let created = u32::try_from(created).map_err(|_| CryptoError::Failed("time overflow"))?;
        let key_type = KeyType::ECDH(ECCCurve::Curve25519Legacy);
        let (public_params, secret_params) = key_type.generate(thread_rng()).map_err(pgp_err)?;
        let inner = PubKeyInner::new(
            KeyVersion::V4,
            key_type.to_alg(),
            Timestamp::from_secs(created),
            None,
            public_params,
        )
        .map_err(pgp_err)?;
        let public = PublicSubkey::from_inner(inner).map_err(pgp_err)?;
        let sub = SecretSubkey::new(public, secret_params).map_err(pgp_err)?;
        let mut flags = KeyFlags::default();
        flags.set_encrypt_comms(true);
        flags.set_encrypt_storage(true);
        let binding = sub
            .sign(
                thread_rng(),
                &self.secret.primary_key,
                self.secret.primary_key.public_key(),
                &Password::empty(),
                flags,
                None,
            )
            .map_err(pgp_err)?;
        let id = key_id_hex(&sub.legacy_key_id());
        self.secret
            .secret_subkeys
            .push(SignedSecretSubKey::new(sub, vec![binding]));
        self.public = PublicCert::checked(self.secret.to_public_key())?;
        Ok(id)
    }

    /// The same key without encryption subkey `id` (its secret dropped, which zeroizes it; other
    /// copies of this key keep theirs until they are dropped). Refused for the last one.
    pub fn without_subkey(&self, id: &str) -> Result<SecretCert, CryptoError> {
        let mut copy = self.secret.clone();
        let before = copy.secret_subkeys.len();
        copy.secret_subkeys
            .retain(|s| key_id_hex(&s.key.legacy_key_id()) != id);
        if copy.secret_subkeys.len() == before {
            return Err(CryptoError::Policy(format!("no subkey {id}")));
        }
        if copy.secret_subkeys.is_empty() {
            return Err(CryptoError::Policy(
                "the last encryption subkey stays".into(),
            ));
        }
        SecretCert::from_unlocked(copy)
    }

    /// What announces subkey `id` to the peer: the public certificate (binary) with the primary
    /// key, its user id and that one subkey with its binding signature.
    pub fn announcement(&self, id: &str) -> Result<Vec<u8>, CryptoError> {
        let mut public = self.secret.to_public_key();
        public
            .public_subkeys
            .retain(|s| key_id_hex(&s.key.legacy_key_id()) == id);
        if public.public_subkeys.len() != 1 {
            return Err(CryptoError::Policy(format!("no subkey {id}")));
        }
        public.to_bytes().map_err(pgp_err)
    }

    /// The unprotected secret parameters of subkey `id` (as in an unprotected key packet), for
    /// audits and tests that search files for it ([`Self::secret_material_for_audit`]).
    pub fn subkey_material_for_audit(&self, id: &str) -> Option<Vec<u8>> {
        self.secret
            .secret_subkeys
            .iter()
            .find(|s| key_id_hex(&s.key.legacy_key_id()) == id)
            .and_then(|s| plain_secret(s.key.secret_params()))
            .map(|z| z.to_vec())
    }

    /// Sign `plaintext` and encrypt it to `recipient`'s encryption subkey `subkey` (the one the
    /// peer announced as current): SEIPD v1, AES-256, SHA-256, no compression.
    pub fn sign_and_encrypt_to(
        &self,
        recipient: &PublicCert,
        subkey: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let subkey = recipient.encryption_subkey_by_id(subkey)?;
        self.sign_and_encrypt_to_subkey(subkey, plaintext)
    }
}

impl PublicCert {
    /// Ids of the certificate's encryption subkeys, oldest first.
    pub fn encryption_subkey_ids(&self) -> Vec<SubkeyId> {
        self.cert
            .public_subkeys
            .iter()
            .filter(|s| is_encryption_subkey(&s.key, &s.signatures))
            .map(|s| key_id_hex(&s.key.legacy_key_id()))
            .collect()
    }

    /// This certificate, with messages going to its encryption subkey `id` (the one its owner
    /// announced as current). Refused if it has no such subkey.
    pub fn with_current_subkey(mut self, id: &str) -> Result<PublicCert, CryptoError> {
        self.encryption_subkey_by_id(id)?;
        self.current = Some(id.to_string());
        Ok(self)
    }

    /// The subkey messages to this certificate go to.
    pub fn current_subkey(&self) -> Result<SubkeyId, CryptoError> {
        match &self.current {
            Some(id) => Ok(id.clone()),
            None => encryption_subkey(&self.cert).map(|s| key_id_hex(&s.key.legacy_key_id())),
        }
    }

    /// The newest encryption subkey (by creation time, the last one listed on a tie): what a
    /// sender encrypts to when the peer has announced nothing else.
    pub fn newest_encryption_subkey(&self) -> Result<SubkeyId, CryptoError> {
        self.cert
            .public_subkeys
            .iter()
            .filter(|s| is_encryption_subkey(&s.key, &s.signatures))
            .max_by_key(|s| s.key.created_at().as_secs())
            .map(|s| key_id_hex(&s.key.legacy_key_id()))
            .ok_or_else(|| CryptoError::Policy("no Curve25519 encryption subkey".into()))
    }

    pub(super) fn encryption_subkey_by_id(
        &self,
        id: &str,
    ) -> Result<&pgp::composed::SignedPublicSubKey, CryptoError> {
        self.cert
            .public_subkeys
            .iter()
            .find(|s| {
                is_encryption_subkey(&s.key, &s.signatures)
                    && key_id_hex(&s.key.legacy_key_id()) == id
            })
            .ok_or_else(|| CryptoError::Policy(format!("no encryption subkey {id}")))
    }

    /// Check a peer's subkey announcement ([`SecretCert::announcement`]) against this, its
    /// current certificate: the same primary key, valid bindings, exactly one encryption subkey,
    /// named `id`, created no earlier than the primary key and no later than `now + skew`, its
    /// binding signature no older than the subkey. Returns the announced certificate, which
    /// replaces this one (its only subkey is the new one).
    pub fn rotated(
        &self,
        announced: &[u8],
        id: &str,
        now: u64,
        skew: u64,
    ) -> Result<PublicCert, CryptoError> {
        let new = PublicCert::from_bytes(announced)?;
        if new.fingerprint() != self.fingerprint() {
            return Err(CryptoError::Policy(
                "announced subkey bound to another discussion key".into(),
            ));
        }
        let [sub] = new.cert.public_subkeys.as_slice() else {
            return Err(CryptoError::Policy(
                "an announcement carries exactly one subkey".into(),
            ));
        };
        if key_id_hex(&sub.key.legacy_key_id()) != id {
            return Err(CryptoError::Policy("announced subkey id mismatch".into()));
        }
        let created = u64::from(sub.key.created_at().as_secs());
        let primary = u64::from(self.cert.primary_key.created_at().as_secs());
        if created < primary || created > now + skew {
            return Err(CryptoError::Policy(
                "announced subkey created outside the allowed times".into(),
            ));
        }
        let bound_at = sub
            .signatures
            .iter()
            .filter_map(|s| s.created())
            .map(|t| u64::from(t.as_secs()))
            .min()
            .unwrap_or(0);
        if bound_at < created {
            return Err(CryptoError::Policy(
                "the binding signature predates the subkey".into(),
            ));
        }
        new.with_current_subkey(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKEW: u64 = 300;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn a_sender_encrypts_to_the_named_subkey_and_the_receiver_finds_it_by_id() {
        let a = SecretCert::generate("a").unwrap();
        let mut b = SecretCert::generate("b").unwrap();
        let first = b.encryption_subkey_ids()[0].clone();
        let second = b.add_encryption_subkey(now(), SKEW).unwrap();
        let third = b.add_encryption_subkey(now(), SKEW).unwrap();
        assert_eq!(
            b.encryption_subkey_ids(),
            [first.clone(), second.clone(), third.clone()]
        );
        assert!(b.add_encryption_subkey(now(), SKEW).is_err(), "bounded");
        for id in [&first, &second, &third] {
            let msg = a
                .sign_and_encrypt_to(b.public(), id, id.as_bytes())
                .unwrap();
            assert_eq!(
                b.decrypt_and_verify(&msg, a.public()).unwrap(),
                id.as_bytes()
            );
            // The frame names the subkey it was encrypted to (PKESK v3: the key id).
            let header = if msg[1] < 192 { 2 } else { 3 };
            assert_eq!(hex::encode_upper(&msg[header + 1..header + 9]), *id);
        }
        // A certificate names the subkey messages go to; by default the first.
        let view = b.public().clone();
        assert_eq!(view.current_subkey().unwrap(), first);
        let view = view.with_current_subkey(&second).unwrap();
        let msg = a.sign_and_encrypt(&view, b"to second").unwrap();
        let header = if msg[1] < 192 { 2 } else { 3 };
        assert_eq!(hex::encode_upper(&msg[header + 1..header + 9]), second);
        assert!(b.public().clone().with_current_subkey("00").is_err());
        // Without the first subkey: its frames are unreadable, the others still read.
        let old = a.sign_and_encrypt_to(b.public(), &first, b"old").unwrap();
        let cur = a.sign_and_encrypt_to(b.public(), &third, b"cur").unwrap();
        let b2 = b.without_subkey(&first).unwrap();
        assert!(b2.decrypt_and_verify(&old, a.public()).is_err());
        assert_eq!(b2.missing_subkey(&old), Some(first.clone()));
        assert_eq!(b2.missing_subkey(&cur), None);
        assert_eq!(b2.missing_subkey(b"junk"), None);
        assert_eq!(b2.decrypt_and_verify(&cur, a.public()).unwrap(), b"cur");
        assert_eq!(b2.fingerprint(), b.fingerprint(), "same discussion key");
        assert!(b2.subkey_material_for_audit(&first).is_none());
        assert!(b.subkey_material_for_audit(&first).is_some());
        let only = b2.without_subkey(&second).unwrap();
        assert!(only.without_subkey(&third).is_err(), "the last one stays");
    }

    #[test]
    fn an_announcement_is_checked_and_replaces_the_peer_certificate() {
        let mut b = SecretCert::generate("b").unwrap();
        let peer_view = b.public().clone();
        let new = b.add_encryption_subkey(now(), SKEW).unwrap();
        let ann = b.announcement(&new).unwrap();
        let cert = peer_view.rotated(&ann, &new, now(), SKEW).unwrap();
        assert_eq!(cert.encryption_subkey_ids(), std::slice::from_ref(&new));
        assert_eq!(cert.newest_encryption_subkey().unwrap(), new);
        // Backdated by the skew, never before the primary key (made just now).
        let sub = &cert.inner().public_subkeys[0];
        assert_eq!(
            sub.key.created_at(),
            b.secret.primary_key.created_at(),
            "clamped to the primary key's creation"
        );
        assert!(sub.signatures[0].created().unwrap() >= sub.key.created_at());
        // Wrong id, another key's announcement, garbage.
        assert!(peer_view
            .rotated(&ann, "0000000000000000", now(), SKEW)
            .is_err());
        let mut m = SecretCert::generate("m").unwrap();
        let mid = m.add_encryption_subkey(now(), SKEW).unwrap();
        let forged = m.announcement(&mid).unwrap();
        assert!(peer_view.rotated(&forged, &mid, now(), SKEW).is_err());
        assert!(peer_view.rotated(b"junk", &new, now(), SKEW).is_err());
        // A certificate with two subkeys is not an announcement.
        assert!(peer_view
            .rotated(&b.public().to_bytes(), &new, now(), SKEW)
            .is_err());
    }

    #[test]
    fn a_subkey_made_long_after_the_primary_is_backdated_by_the_skew() {
        let mut b = SecretCert::generate("b").unwrap();
        let later = now() + 3600;
        let id = b.add_encryption_subkey(later, SKEW).unwrap();
        let sub = b
            .public()
            .inner()
            .public_subkeys
            .iter()
            .find(|s| key_id_hex(&s.key.legacy_key_id()) == id)
            .unwrap();
        assert_eq!(u64::from(sub.key.created_at().as_secs()), later - SKEW);
    }
}
