//! Key derivations for the rendezvous records, all HKDF-SHA-256 with a purpose in `info`, so no two
//! uses share a key:
//!
//! - the discussion's rendezvous secret, from the handshake's SPAKE2 key and transcript
//!   ([`RendezvousSecret::from_handshake`]): `HKDF(ikm = K, salt = T, info = "pgpchat rendezvous secret v1")`
//!   (the confirmations use the same `K`, `T` with other `info` labels, see `handshake.rs`);
//! - per (secret, role, period): the Ed25519 seed of the BEP 44 key and the AEAD key of the value,
//!   `HKDF(ikm = secret, salt = "pgpchat-dht-rendezvous-v1", info = purpose ‖ role ‖ period)`.
//!
//! Only the two peers know the secret, so only they can compute where a record is or read it; the
//! role is in the derivation, so each side signs under its own key and neither can overwrite the
//! other's record; the period is in it, so records of two periods (and of two discussions) share no
//! key and cannot be linked by anyone else.

use std::fmt;
use std::time::Duration;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::wire::Role;

/// Length of a period: records move to a fresh key every day (UTC days since the Unix epoch).
pub const PERIOD_SECS: u64 = 24 * 60 * 60;

/// Salt of the per-period derivations (its version is the record format's).
const RENDEZVOUS_SALT: &[u8] = b"pgpchat-dht-rendezvous-v1";
/// `info` of the secret's derivation from the handshake.
const SECRET_INFO: &[u8] = b"pgpchat rendezvous secret v1";
const SIGNING_PURPOSE: &[u8] = b"bep44 signing seed";
const VALUE_PURPOSE: &[u8] = b"record value key";

/// A discussion's rendezvous secret: 32 bytes only its two peers know. Never logged, never sent
/// except inside the discussion's own encrypted control channel; sealed at rest.
#[derive(Clone, PartialEq, Eq)]
pub struct RendezvousSecret(Zeroizing<[u8; 32]>);

impl fmt::Debug for RendezvousSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RendezvousSecret(hidden)")
    }
}

impl RendezvousSecret {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh random secret (for discussions opened before issue 11: one side draws it and sends
    /// it over the control channel).
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        Self::from_bytes(bytes)
    }

    /// Derived from the handshake's SPAKE2 key `K` and transcript hash `T`.
    pub fn from_handshake(spake_key: &[u8], transcript: &[u8; 32]) -> Self {
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF-SHA-256's 8160-byte maximum: expand cannot fail.
        let _ = Hkdf::<Sha256>::new(Some(transcript), spake_key).expand(SECRET_INFO, &mut out);
        Self::from_bytes(out)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The keys of `role`'s record for `period`.
    pub fn slot(&self, role: Role, period: Period) -> SlotKeys {
        let hk = Hkdf::<Sha256>::new(Some(RENDEZVOUS_SALT), self.0.as_ref());
        let expand = |purpose: &[u8]| {
            let mut info = purpose.to_vec();
            info.push(b'\0');
            info.extend_from_slice(role_label(role));
            info.extend_from_slice(&period.0.to_be_bytes());
            let mut out = Zeroizing::new([0u8; 32]);
            let _ = hk.expand(&info, out.as_mut());
            out
        };
        let signing_seed = expand(SIGNING_PURPOSE);
        let public_key = mainline::SigningKey::from_bytes(&signing_seed)
            .verifying_key()
            .to_bytes();
        SlotKeys {
            role,
            period,
            signing_seed,
            public_key,
            value_key: expand(VALUE_PURPOSE),
        }
    }
}

fn role_label(role: Role) -> &'static [u8] {
    match role {
        Role::Requester => b"requester",
        Role::Receiver => b"receiver",
    }
}

/// A period number: whole [`PERIOD_SECS`] since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period(pub u64);

impl Period {
    pub fn at(unix_secs: u64) -> Self {
        Self(unix_secs / PERIOD_SECS)
    }

    pub fn now() -> Self {
        Self::at(crate::dht::record::unix_micros() / 1_000_000)
    }

    /// The period before this one (a peer that published yesterday and not yet today is found
    /// there).
    pub fn previous(self) -> Self {
        Self(self.0.saturating_sub(1))
    }

    pub fn length() -> Duration {
        Duration::from_secs(PERIOD_SECS)
    }
}

/// The keys of one record: who publishes it (`role`), when (`period`), the BEP 44 signing key (as
/// its raw Ed25519 seed: `mainline` uses ed25519-dalek 3, rpgp 2, so only raw bytes cross) and the
/// AEAD key of its value.
pub struct SlotKeys {
    pub role: Role,
    pub period: Period,
    pub signing_seed: Zeroizing<[u8; 32]>,
    /// The BEP 44 public key (the item's `k`); the DHT target is `SHA-1(k)`.
    pub public_key: [u8; 32],
    pub value_key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for SlotKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotKeys")
            .field("role", &self.role)
            .field("period", &self.period)
            .field("public_key", &hex::encode(self.public_key))
            .finish_non_exhaustive()
    }
}

impl SlotKeys {
    pub fn signing_key(&self) -> mainline::SigningKey {
        mainline::SigningKey::from_bytes(&self.signing_seed)
    }

    /// Where the record lives in the DHT.
    pub fn target(&self) -> mainline::Id {
        mainline::MutableItem::target_from_key(&self.public_key, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_periods_and_secrets_never_share_a_key() {
        let a = RendezvousSecret::from_bytes([1; 32]);
        let b = RendezvousSecret::from_bytes([2; 32]);
        let mut seen = std::collections::HashSet::new();
        for secret in [&a, &b] {
            for role in [Role::Requester, Role::Receiver] {
                for period in [Period(10), Period(11)] {
                    let k = secret.slot(role, period);
                    assert_ne!(*k.signing_seed, *k.value_key, "purposes are apart");
                    assert!(seen.insert(*k.signing_seed));
                    assert!(seen.insert(*k.value_key));
                    assert!(seen.insert(k.public_key));
                }
            }
        }
        assert_eq!(seen.len(), 2 * 2 * 2 * 3);
    }

    #[test]
    fn derivation_is_deterministic_so_both_peers_compute_the_same_slot() {
        let s = RendezvousSecret::from_handshake(b"spake2 shared key", &[5; 32]);
        let t = RendezvousSecret::from_handshake(b"spake2 shared key", &[5; 32]);
        assert_eq!(s, t);
        assert_ne!(
            s,
            RendezvousSecret::from_handshake(b"spake2 shared key", &[6; 32])
        );
        let (x, y) = (
            s.slot(Role::Receiver, Period(3)),
            t.slot(Role::Receiver, Period(3)),
        );
        assert_eq!(x.public_key, y.public_key);
        assert_eq!(*x.value_key, *y.value_key);
        assert_eq!(x.target(), y.target());
    }

    #[test]
    fn periods_are_utc_days() {
        assert_eq!(Period::at(0), Period(0));
        assert_eq!(Period::at(PERIOD_SECS - 1), Period(0));
        assert_eq!(Period::at(PERIOD_SECS), Period(1));
        assert_eq!(Period(1).previous(), Period(0));
        assert_eq!(Period(0).previous(), Period(0));
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        let s = RendezvousSecret::from_bytes([0xAB; 32]);
        assert!(!format!("{s:?}").contains("ab"));
        let k = s.slot(Role::Requester, Period(1));
        let shown = format!("{k:?}");
        assert!(!shown.contains(&hex::encode(*k.signing_seed)));
        assert!(!shown.contains(&hex::encode(*k.value_key)));
    }
}
