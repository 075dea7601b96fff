//! The rendezvous record: where a discussion's peer can be reached, readable only by the two peers.
//!
//! A BEP 44 mutable item, signed with the slot's derived Ed25519 key (no salt), `seq` = the minutes
//! since the period's start times [`SEQ_SPREAD`] plus a random offset below it, one more than the
//! last when that is not above it ([`next_seq`]: strictly increasing per key, so every republish
//! replaces the last one). `seq` is in clear: coarse and randomised, it does not tell which records
//! were put in the same burst (a microsecond timestamp did). The exact time is inside. Value:
//!
//! ```text
//! value     = nonce (12) ‖ AES-256-GCM(value_key, nonce, padded, aad)        = 284 bytes, always
//! aad       = "pgpchat-dht-record-v1" ‖ public key (32) ‖ seq (8, big-endian)
//! padded    = len (2, big-endian) ‖ bincode(RecordBody) ‖ zeros, PADDED_BYTES in all
//! RecordBody = { role, period, time_us, port, addresses (at most MAX_ADDRESSES) }
//! ```
//!
//! Nothing in it is in clear: the key and target are unlinkable to the discussion without the secret,
//! the value is random-looking and of one fixed size whatever the addresses. A reader accepts an item
//! only if it is under the expected key, opens under the expected value key with this `seq`, names the
//! expected role and period, and is fresh ([`MAX_RECORD_AGE`], [`MAX_CLOCK_SKEW`]): a DHT node can
//! withhold a record or serve an older one (bounded by the age check), never forge or alter one.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::codec;
use crate::dht::derive::{Period, SlotKeys};
use crate::wire::Role;

/// BEP 44's (and `mainline`'s) largest value.
pub const MAX_VALUE_BYTES: usize = 1000;
/// Addresses one record may list (the main listener's reachable addresses).
pub const MAX_ADDRESSES: usize = 8;
/// Size of the padded plaintext: every record has the same length whatever it lists.
pub const PADDED_BYTES: usize = 256;
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
/// Size of every record value.
pub const VALUE_BYTES: usize = NONCE_BYTES + PADDED_BYTES + TAG_BYTES;
/// Oldest record accepted: two periods (a record is republished at least hourly while its node runs;
/// an older one names an address the peer has probably left).
pub const MAX_RECORD_AGE: Duration = Duration::from_secs(2 * crate::dht::derive::PERIOD_SECS);
/// How far in the future a record's time may be (clock skew between the two peers).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
const AAD_DOMAIN: &[u8] = b"pgpchat-dht-record-v1";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("a record lists at most {MAX_ADDRESSES} addresses, not {0}")]
    TooManyAddresses(usize),
    #[error("record is under another key")]
    WrongKey,
    #[error("record value does not open (not ours, or altered)")]
    Unopened,
    #[error("record value is malformed")]
    Malformed,
    #[error("record names another role or period")]
    WrongSlot,
    #[error("record is stale ({0} s old)")]
    Stale(u64),
    #[error("record is dated in the future")]
    Future,
    #[error("record encoding failed")]
    Encode,
}

/// What a record says, once opened and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// Port of the publisher's main TCP listener.
    pub port: u16,
    /// Addresses it can be reached at (the DHT's view of its public address first, then its own).
    pub addresses: Vec<IpAddr>,
    /// When it was published, µs since the Unix epoch (also the item's `seq`).
    pub time_us: u64,
}

#[derive(Serialize, Deserialize)]
struct RecordBody {
    role: Role,
    period: u64,
    time_us: u64,
    port: u16,
    addresses: Vec<IpAddr>,
}

pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// `seq` granularity: one step per minute of the period, and a random offset below this within it.
pub const SEQ_SPREAD: i64 = 1 << 32;

/// A fresh `seq` for a record of `period` made at `time_us`: the minute since the period's start
/// times [`SEQ_SPREAD`], plus a random offset below [`SEQ_SPREAD`]; above `last` (the last one
/// put under this key) whatever the clock and the draw.
pub fn next_seq(period: Period, time_us: u64, last: Option<i64>) -> i64 {
    let minute = (time_us / 1_000_000).saturating_sub(period.0 * crate::dht::PERIOD_SECS) / 60;
    let minute = i64::try_from(minute)
        .unwrap_or(0)
        .min(i64::MAX / SEQ_SPREAD - 1);
    let offset = i64::from(rand::RngCore::next_u32(&mut OsRng));
    let fresh = minute * SEQ_SPREAD + offset;
    match last {
        Some(last) if fresh <= last => last.saturating_add(1),
        _ => fresh,
    }
}

fn aad(keys: &SlotKeys, seq: i64) -> Vec<u8> {
    [AAD_DOMAIN, &keys.public_key, &seq.to_be_bytes()].concat()
}

/// Seal `port` and `addresses` into the record of `keys`' slot, dated `time_us`, with a fresh
/// `seq` ([`next_seq`]): returns the signed BEP 44 item to put.
pub fn seal(
    keys: &SlotKeys,
    port: u16,
    addresses: &[IpAddr],
    time_us: u64,
) -> Result<mainline::MutableItem, RecordError> {
    seal_with_seq(
        keys,
        port,
        addresses,
        time_us,
        next_seq(keys.period, time_us, None),
    )
}

/// [`seal`] with a given `seq` (the worker's: above the last it put under this key).
pub fn seal_with_seq(
    keys: &SlotKeys,
    port: u16,
    addresses: &[IpAddr],
    time_us: u64,
    seq: i64,
) -> Result<mainline::MutableItem, RecordError> {
    if addresses.len() > MAX_ADDRESSES {
        return Err(RecordError::TooManyAddresses(addresses.len()));
    }
    let body = codec::encode(&RecordBody {
        role: keys.role,
        period: keys.period.0,
        time_us,
        port,
        addresses: addresses.to_vec(),
    })
    .map_err(|_| RecordError::Encode)?;
    // MAX_ADDRESSES IPv6 addresses take 8 × 20 bytes: the body always fits (tested).
    if body.len() + 2 > PADDED_BYTES {
        return Err(RecordError::Encode);
    }
    let mut padded = vec![0u8; PADDED_BYTES];
    padded[..2].copy_from_slice(&(body.len() as u16).to_be_bytes());
    padded[2..2 + body.len()].copy_from_slice(&body);
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let ct = Aes256Gcm::new(keys.value_key.as_ref().into())
        .encrypt(
            &nonce,
            Payload {
                msg: &padded,
                aad: &aad(keys, seq),
            },
        )
        .map_err(|_| RecordError::Encode)?;
    let mut value = nonce.to_vec();
    value.extend_from_slice(&ct);
    debug_assert_eq!(value.len(), VALUE_BYTES);
    Ok(mainline::MutableItem::new(
        keys.signing_key(),
        &value,
        seq,
        None,
    ))
}

/// Open and check a record found at `keys`' slot (`mainline` has already checked its BEP 44
/// signature against its key): `now_us` is the reader's clock.
pub fn open(
    keys: &SlotKeys,
    item: &mainline::MutableItem,
    now_us: u64,
) -> Result<PeerRecord, RecordError> {
    if item.key() != &keys.public_key || item.salt().is_some() {
        return Err(RecordError::WrongKey);
    }
    let value = item.value();
    if value.len() != VALUE_BYTES {
        return Err(RecordError::Unopened);
    }
    let (nonce, ct) = value.split_at(NONCE_BYTES);
    let padded = zeroize::Zeroizing::new(
        Aes256Gcm::new(keys.value_key.as_ref().into())
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: &aad(keys, item.seq()),
                },
            )
            .map_err(|_| RecordError::Unopened)?,
    );
    let len = usize::from(u16::from_be_bytes([padded[0], padded[1]]));
    let body = padded.get(2..2 + len).ok_or(RecordError::Malformed)?;
    let body: RecordBody = codec::decode(body).map_err(|_| RecordError::Malformed)?;
    if body.role != keys.role || body.period != keys.period.0 {
        return Err(RecordError::WrongSlot);
    }
    // `seq` is bound by the AEAD's associated data (a re-signed `seq` does not open); freshness is
    // the inner, exact time's.
    if body.addresses.len() > MAX_ADDRESSES || body.addresses.is_empty() || body.port == 0 {
        return Err(RecordError::Malformed);
    }
    if body.time_us > now_us.saturating_add(MAX_CLOCK_SKEW.as_micros() as u64) {
        return Err(RecordError::Future);
    }
    let age = now_us.saturating_sub(body.time_us) / 1_000_000;
    if age > MAX_RECORD_AGE.as_secs() {
        return Err(RecordError::Stale(age));
    }
    // A record dated outside its own period is stale or forged by a peer's clock: refused too.
    if Period::at(body.time_us / 1_000_000) != keys.period {
        return Err(RecordError::WrongSlot);
    }
    Ok(PeerRecord {
        port: body.port,
        addresses: body.addresses,
        time_us: body.time_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dht::derive::{RendezvousSecret, PERIOD_SECS};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const DAY: u64 = 20_000;
    fn at(day: u64, secs: u64) -> u64 {
        (day * PERIOD_SECS + secs) * 1_000_000
    }
    fn addrs() -> Vec<IpAddr> {
        vec![
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)),
        ]
    }

    #[test]
    fn a_record_round_trips_for_the_peer_who_knows_the_secret() {
        let s = RendezvousSecret::from_bytes([7; 32]);
        let keys = s.slot(Role::Receiver, Period(DAY));
        let item = seal(&keys, 40_001, &addrs(), at(DAY, 100)).expect("seal");
        assert!(item.value().len() <= MAX_VALUE_BYTES);
        assert_eq!(item.value().len(), VALUE_BYTES);
        // The peer derives the same slot from the same secret.
        let peer = RendezvousSecret::from_bytes([7; 32]).slot(Role::Receiver, Period(DAY));
        let got = open(&peer, &item, at(DAY, 200)).expect("open");
        assert_eq!(got.port, 40_001);
        assert_eq!(got.addresses, addrs());
    }

    #[test]
    fn the_largest_record_fits_and_all_records_have_one_size() {
        let s = RendezvousSecret::from_bytes([7; 32]);
        let keys = s.slot(Role::Requester, Period(DAY));
        let many: Vec<IpAddr> = (0..MAX_ADDRESSES as u16)
            .map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i)))
            .collect();
        let big = seal(&keys, 65_535, &many, at(DAY, 1)).expect("largest");
        let small = seal(&keys, 1, &many[..1], at(DAY, 1)).expect("smallest");
        assert_eq!(big.value().len(), small.value().len());
        assert!(big.value().len() <= MAX_VALUE_BYTES);
        let too_many: Vec<IpAddr> = many.iter().chain(&many[..1]).cloned().collect();
        assert_eq!(
            seal(&keys, 1, &too_many, at(DAY, 1)).err(),
            Some(RecordError::TooManyAddresses(MAX_ADDRESSES + 1))
        );
    }

    /// Issue 11: records of two discussions between the same two people, and of two periods, share
    /// no key and no field value; no address or fingerprint appears in clear.
    #[test]
    fn records_of_two_discussions_and_two_periods_share_no_key_and_no_field() {
        let one = RendezvousSecret::from_bytes([1; 32]);
        let two = RendezvousSecret::from_bytes([2; 32]);
        let fingerprint = "0123456789ABCDEF0123456789ABCDEF01234567";
        let mut items = Vec::new();
        for secret in [&one, &two] {
            for day in [DAY, DAY + 1] {
                let keys = secret.slot(Role::Receiver, Period(day));
                items.push(seal(&keys, 40_001, &addrs(), at(day, 100)).expect("seal"));
            }
        }
        for (i, a) in items.iter().enumerate() {
            for b in &items[i + 1..] {
                assert_ne!(a.key(), b.key());
                assert_ne!(a.target(), b.target());
                assert_ne!(a.signature(), b.signature());
                assert_ne!(a.value(), b.value());
                // No 8-byte window of one value (or key) appears in another.
                for w in a.value().windows(8) {
                    assert!(!b.value().windows(8).any(|x| x == w), "shared value bytes");
                }
            }
            let v = a.value();
            for addr in addrs() {
                let IpAddr::V4(v4) = addr else { continue };
                assert!(!v.windows(4).any(|w| w == v4.octets()), "address in clear");
            }
            let fpr = fingerprint.as_bytes();
            assert!(!v.windows(fpr.len()).any(|w| w == fpr));
            assert!(!v
                .windows(20)
                .any(|w| w == hex::decode(fingerprint).expect("hex")));
        }
    }

    #[test]
    fn a_validly_signed_item_with_a_wrong_inner_value_is_rejected() {
        let s = RendezvousSecret::from_bytes([7; 32]);
        let keys = s.slot(Role::Receiver, Period(DAY));
        let now = at(DAY, 500);
        let seq = at(DAY, 100) as i64;
        // Garbage of the right size, signed with the derived key: does not open.
        let garbage =
            mainline::MutableItem::new(keys.signing_key(), &[0x42; VALUE_BYTES], seq, None);
        assert_eq!(open(&keys, &garbage, now), Err(RecordError::Unopened));
        // Short garbage.
        let short = mainline::MutableItem::new(keys.signing_key(), b"hello", seq, None);
        assert_eq!(open(&keys, &short, now), Err(RecordError::Unopened));
        // A real value re-signed with another seq (the AEAD binds the seq).
        let good = seal(&keys, 40_001, &addrs(), at(DAY, 100)).expect("seal");
        let reseq = mainline::MutableItem::new(keys.signing_key(), good.value(), seq + 1, None);
        assert_eq!(open(&keys, &reseq, now), Err(RecordError::Unopened));
        // A value sealed for the other role, re-signed under this role's key.
        let other = s.slot(Role::Requester, Period(DAY));
        let theirs = seal(&other, 40_001, &addrs(), at(DAY, 100)).expect("seal");
        let moved = mainline::MutableItem::new(keys.signing_key(), theirs.value(), seq, None);
        assert_eq!(open(&keys, &moved, now), Err(RecordError::Unopened));
        // The same value under the other role's key is not this slot's record.
        assert_eq!(open(&keys, &theirs, now), Err(RecordError::WrongKey));
        // Another discussion's record, re-signed with this slot's key: does not open either.
        let stranger = RendezvousSecret::from_bytes([8; 32]).slot(Role::Receiver, Period(DAY));
        let foreign = seal(&stranger, 40_001, &addrs(), at(DAY, 100)).expect("seal");
        let resigned = mainline::MutableItem::new(keys.signing_key(), foreign.value(), seq, None);
        assert_eq!(open(&keys, &resigned, now), Err(RecordError::Unopened));
    }

    #[test]
    fn a_stale_or_future_record_is_rejected() {
        let s = RendezvousSecret::from_bytes([7; 32]);
        let keys = s.slot(Role::Receiver, Period(DAY));
        let item = seal(&keys, 40_001, &addrs(), at(DAY, 100)).expect("seal");
        assert!(open(&keys, &item, at(DAY, 100)).is_ok());
        // Served three days later (by a DHT node that kept it): stale.
        assert!(matches!(
            open(&keys, &item, at(DAY + 3, 0)),
            Err(RecordError::Stale(_))
        ));
        // Read by a clock an hour behind: dated in the future.
        assert_eq!(
            open(&keys, &item, at(DAY, 100) - 3_600_000_000),
            Err(RecordError::Future)
        );
        // A record whose time lies outside its period (sealed with a wrong clock) is refused.
        let late = seal(&keys, 40_001, &addrs(), at(DAY + 1, 5)).expect("seal");
        assert_eq!(
            open(&keys, &late, at(DAY + 1, 10)),
            Err(RecordError::WrongSlot)
        );
    }

    /// Issue 11 finding 7: `seq` is in clear, so records put in one burst must not carry seq values
    /// that tie them together: only the minute is shared, the rest is a random draw over
    /// `SEQ_SPREAD`; and under one key it still increases strictly.
    #[test]
    fn records_put_together_do_not_share_close_seq_values() {
        let (a, b) = (
            RendezvousSecret::from_bytes([1; 32]).slot(Role::Requester, Period(DAY)),
            RendezvousSecret::from_bytes([2; 32]).slot(Role::Receiver, Period(DAY)),
        );
        let now = at(DAY, 3 * 60 + 7);
        let mut offsets = Vec::new();
        for _ in 0..16 {
            for keys in [&a, &b] {
                let item = seal(keys, 40_001, &addrs(), now).expect("seal");
                assert_eq!(item.seq() / SEQ_SPREAD, 3, "the minute of the period only");
                offsets.push(item.seq() % SEQ_SPREAD);
                assert!(open(keys, &item, now).is_ok());
            }
        }
        // A microsecond timestamp would put them all within a few thousand of each other.
        let spread = offsets.iter().max().unwrap() - offsets.iter().min().unwrap();
        assert!(
            spread > SEQ_SPREAD / 4,
            "offsets spread over the range: {spread}"
        );
        // Strictly increasing under one key, even within the minute or with the clock going back.
        let mut last = None;
        for t in [now, now, now, at(DAY, 0)] {
            let seq = next_seq(Period(DAY), t, last);
            assert!(last.is_none_or(|l| seq > l));
            last = Some(seq);
        }
        assert_eq!(next_seq(Period(DAY), now, Some(i64::MAX - 1)), i64::MAX);
    }
}
