//! The opt-in identity record: "where to reach the person with this fingerprint", found by anyone
//! who knows the fingerprint (`pgpchat add-contact --dht FINGERPRINT`). Off by default: it tells the
//! world when the node is online and at which address.
//!
//! - BEP 44 key: Ed25519 seed `HKDF-SHA-256(ikm = fingerprint (40 upper-case hex ASCII), salt =
//!   "pgpchat-dht-identity-v1", info = "bep44 signing seed")`. Anyone can compute it, so anyone can
//!   also overwrite the item: denial only, because
//! - the value is signed by the identity key itself, as an OpenPGP detached signature (the same
//!   signing as announces, see `crypto::SecretCert::sign_detached`), over
//!   `"pgpchat-dht-identity-v1\0" ‖ bincode(IdentityBody)`, and carries the identity certificate so
//!   the finder can check it against the fingerprint it asked for. We chose the OpenPGP signature
//!   over a separate Ed25519 key bound in the certificate: nothing new to bind, rotate or revoke.
//!
//! ```text
//! value        = bincode(IdentityRecord { body: bincode(IdentityBody), signature })  ≤ 1000 bytes
//! IdentityBody = { fingerprint, cert, port, addresses (≤ MAX_ADDRESSES), time_us }
//! seq          = time_us
//! ```
//!
//! Signing and checking are OpenPGP work: call them on a crypto worker.

use std::net::IpAddr;

use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::codec;
use crate::crypto::{verify_detached, PublicCert, SecretCert};
use crate::dht::record::{
    PeerRecord, MAX_ADDRESSES, MAX_CLOCK_SKEW, MAX_RECORD_AGE, MAX_VALUE_BYTES,
};

const SALT: &[u8] = b"pgpchat-dht-identity-v1";
const SIGNED_DOMAIN: &[u8] = b"pgpchat-dht-identity-v1\0";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdentityRecordError {
    #[error("not a fingerprint: {0}")]
    BadFingerprint(String),
    #[error("a record lists at most {MAX_ADDRESSES} addresses, not {0}")]
    TooManyAddresses(usize),
    #[error("identity record of {0} bytes exceeds the DHT's {MAX_VALUE_BYTES}")]
    TooLarge(usize),
    #[error("identity record is under another key")]
    WrongKey,
    #[error("identity record is malformed")]
    Malformed,
    #[error("identity record is for another key")]
    OtherIdentity,
    #[error("identity record's signature does not verify")]
    BadSignature,
    #[error("identity record is stale ({0} s old)")]
    Stale(u64),
    #[error("identity record is dated in the future")]
    Future,
    #[error("identity record could not be signed: {0}")]
    Sign(String),
}

#[derive(Serialize, Deserialize)]
struct IdentityRecord {
    body: Vec<u8>,
    signature: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct IdentityBody {
    fingerprint: String,
    cert: Vec<u8>,
    port: u16,
    addresses: Vec<IpAddr>,
    time_us: u64,
}

/// A fingerprint as the key derivation reads it: 40 hex digits, upper case, no spaces.
pub fn normalize_fingerprint(fingerprint: &str) -> Result<String, IdentityRecordError> {
    let f: String = fingerprint
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    if f.len() != 40 || !f.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(IdentityRecordError::BadFingerprint(
            fingerprint.chars().take(60).collect(),
        ));
    }
    Ok(f)
}

/// The BEP 44 signing seed of `fingerprint`'s identity record (public: anyone can derive it).
pub fn signing_seed(fingerprint: &str) -> Result<Zeroizing<[u8; 32]>, IdentityRecordError> {
    let f = normalize_fingerprint(fingerprint)?;
    let mut out = Zeroizing::new([0u8; 32]);
    let _ =
        Hkdf::<Sha256>::new(Some(SALT), f.as_bytes()).expand(b"bep44 signing seed", out.as_mut());
    Ok(out)
}

/// The BEP 44 public key of `fingerprint`'s identity record.
pub fn public_key(fingerprint: &str) -> Result<[u8; 32], IdentityRecordError> {
    Ok(
        mainline::SigningKey::from_bytes(&*signing_seed(fingerprint)?)
            .verifying_key()
            .to_bytes(),
    )
}

/// Sign and build the identity record of `identity` (blocking: OpenPGP signing).
pub fn seal(
    identity: &SecretCert,
    port: u16,
    addresses: &[IpAddr],
    time_us: u64,
) -> Result<mainline::MutableItem, IdentityRecordError> {
    if addresses.len() > MAX_ADDRESSES {
        return Err(IdentityRecordError::TooManyAddresses(addresses.len()));
    }
    let fingerprint = normalize_fingerprint(identity.fingerprint())?;
    let body = codec::encode(&IdentityBody {
        fingerprint: fingerprint.clone(),
        cert: identity.public().to_bytes(),
        port,
        addresses: addresses.to_vec(),
        time_us,
    })
    .map_err(|e| IdentityRecordError::Sign(e.to_string()))?;
    let signature = identity
        .sign_detached(&[SIGNED_DOMAIN, &body].concat())
        .map_err(|e| IdentityRecordError::Sign(e.to_string()))?;
    let value = codec::encode(&IdentityRecord { body, signature })
        .map_err(|e| IdentityRecordError::Sign(e.to_string()))?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(IdentityRecordError::TooLarge(value.len()));
    }
    let seq = i64::try_from(time_us).map_err(|_| IdentityRecordError::Malformed)?;
    Ok(mainline::MutableItem::new(
        mainline::SigningKey::from_bytes(&*signing_seed(&fingerprint)?),
        &value,
        seq,
        None,
    ))
}

/// The first of `items` (most recent first, as the worker's `GetItem` gives them) that [`open`]s:
/// a garbage item at a high `seq` (anyone can sign under this key) does not hide the valid one
/// that other DHT nodes still serve. The last error when none opens.
pub fn open_first(
    fingerprint: &str,
    items: &[mainline::MutableItem],
    now_us: u64,
) -> Result<(PeerRecord, PublicCert), IdentityRecordError> {
    let mut last = IdentityRecordError::Malformed;
    for item in items {
        match open(fingerprint, item, now_us) {
            Ok(found) => return Ok(found),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Check an item found at `fingerprint`'s identity record (blocking: OpenPGP verification). Returns
/// the address record and the person's certificate (proven to have this fingerprint).
pub fn open(
    fingerprint: &str,
    item: &mainline::MutableItem,
    now_us: u64,
) -> Result<(PeerRecord, PublicCert), IdentityRecordError> {
    let fingerprint = normalize_fingerprint(fingerprint)?;
    if item.key() != &public_key(&fingerprint)? || item.salt().is_some() {
        return Err(IdentityRecordError::WrongKey);
    }
    if item.value().len() > MAX_VALUE_BYTES {
        return Err(IdentityRecordError::Malformed);
    }
    let record: IdentityRecord =
        codec::decode(item.value()).map_err(|_| IdentityRecordError::Malformed)?;
    let body: IdentityBody =
        codec::decode(&record.body).map_err(|_| IdentityRecordError::Malformed)?;
    let cert = PublicCert::from_bytes(&body.cert).map_err(|_| IdentityRecordError::Malformed)?;
    if cert.fingerprint() != fingerprint || body.fingerprint != fingerprint {
        return Err(IdentityRecordError::OtherIdentity);
    }
    verify_detached(
        &cert,
        &[SIGNED_DOMAIN, &record.body].concat(),
        &record.signature,
    )
    .map_err(|_| IdentityRecordError::BadSignature)?;
    if i64::try_from(body.time_us).ok() != Some(item.seq()) {
        return Err(IdentityRecordError::Malformed);
    }
    if body.addresses.is_empty() || body.addresses.len() > MAX_ADDRESSES || body.port == 0 {
        return Err(IdentityRecordError::Malformed);
    }
    if body.time_us > now_us.saturating_add(MAX_CLOCK_SKEW.as_micros() as u64) {
        return Err(IdentityRecordError::Future);
    }
    let age = now_us.saturating_sub(body.time_us) / 1_000_000;
    if age > MAX_RECORD_AGE.as_secs() {
        return Err(IdentityRecordError::Stale(age));
    }
    Ok((
        PeerRecord {
            port: body.port,
            addresses: body.addresses,
            time_us: body.time_us,
        },
        cert,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn addrs() -> Vec<IpAddr> {
        vec![IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9))]
    }
    const NOW: u64 = 1_800_000_000_000_000;

    #[test]
    fn an_identity_record_fits_and_is_found_by_fingerprint_alone() {
        let id = SecretCert::generate("Alice Example <alice@example.org>").expect("key");
        let many: Vec<IpAddr> = (0..MAX_ADDRESSES as u8)
            .map(|i| {
                IpAddr::V6(std::net::Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    0,
                    0,
                    0,
                    0,
                    i.into(),
                ))
            })
            .collect();
        let item = seal(&id, 40_001, &many, NOW).expect("seal");
        assert!(
            item.value().len() <= MAX_VALUE_BYTES,
            "{}",
            item.value().len()
        );
        // The finder knows only the fingerprint (any case, grouped).
        let asked = crate::crypto::fingerprint_groups(id.fingerprint()).to_lowercase();
        assert_eq!(item.key(), &public_key(&asked).expect("key"));
        let (record, cert) = open(&asked, &item, NOW + 1).expect("open");
        assert_eq!(record.port, 40_001);
        assert_eq!(record.addresses, many);
        assert_eq!(cert.fingerprint(), id.fingerprint());
    }

    #[test]
    fn an_identity_record_cannot_be_forged_by_whoever_can_overwrite_it() {
        let alice = SecretCert::generate("alice").expect("key");
        let mallory = SecretCert::generate("mallory").expect("key");
        let fp = alice.fingerprint().to_string();
        // Mallory derives Alice's BEP 44 key (public) and puts her own signed record there.
        let hers = seal(&mallory, 40_002, &addrs(), NOW).expect("seal");
        let planted = mainline::MutableItem::new(
            mainline::SigningKey::from_bytes(&signing_seed(&fp).expect("seed")),
            hers.value(),
            hers.seq(),
            None,
        );
        assert_eq!(
            open(&fp, &planted, NOW).err(),
            Some(IdentityRecordError::OtherIdentity)
        );
        // Alice's real record with a body altered by Mallory: the signature fails.
        let real = seal(&alice, 40_001, &addrs(), NOW).expect("seal");
        let mut record: IdentityRecord = codec::decode(real.value()).expect("decode");
        let mut body: IdentityBody = codec::decode(&record.body).expect("decode");
        body.addresses = vec![IpAddr::V4(Ipv4Addr::new(198, 51, 100, 66))];
        record.body = codec::encode(&body).expect("encode");
        let altered = mainline::MutableItem::new(
            mainline::SigningKey::from_bytes(&signing_seed(&fp).expect("seed")),
            &codec::encode(&record).expect("encode"),
            real.seq(),
            None,
        );
        assert_eq!(
            open(&fp, &altered, NOW).err(),
            Some(IdentityRecordError::BadSignature)
        );
        // Garbage under the right key.
        let junk = mainline::MutableItem::new(
            mainline::SigningKey::from_bytes(&signing_seed(&fp).expect("seed")),
            b"junk",
            1,
            None,
        );
        assert_eq!(
            open(&fp, &junk, NOW).err(),
            Some(IdentityRecordError::Malformed)
        );
        // The real record, served long after: stale.
        assert!(matches!(
            open(&fp, &real, NOW + 3 * 86_400 * 1_000_000),
            Err(IdentityRecordError::Stale(_))
        ));
        assert!(open(&fp, &real, NOW).is_ok());
        // Found under another fingerprint's key: refused.
        assert_eq!(
            open(mallory.fingerprint(), &real, NOW).err(),
            Some(IdentityRecordError::WrongKey)
        );
    }

    #[test]
    fn fingerprints_are_checked() {
        assert!(matches!(
            public_key("not a fingerprint"),
            Err(IdentityRecordError::BadFingerprint(_))
        ));
        assert_eq!(
            public_key("0123456789abcdef0123456789abcdef01234567"),
            public_key("0123 4567 89AB CDEF 0123  4567 89AB CDEF 0123 4567")
        );
    }

    /// Issue 11 finding 8: one put at `seq = i64::MAX` under the (public) key no longer hides the
    /// person's valid record when it is among the candidates.
    #[test]
    fn garbage_at_the_highest_seq_does_not_hide_the_valid_record() {
        let alice = SecretCert::generate("alice").expect("key");
        let fp = alice.fingerprint().to_string();
        let real = seal(&alice, 40_001, &addrs(), NOW).expect("seal");
        let junk = mainline::MutableItem::new(
            mainline::SigningKey::from_bytes(&signing_seed(&fp).expect("seed")),
            b"junk",
            i64::MAX,
            None,
        );
        let (record, _) = open_first(&fp, &[junk.clone(), real], NOW).expect("valid one found");
        assert_eq!(record.port, 40_001);
        assert_eq!(
            open_first(&fp, &[junk], NOW).err(),
            Some(IdentityRecordError::Malformed)
        );
        assert!(open_first(&fp, &[], NOW).is_err());
    }
}
