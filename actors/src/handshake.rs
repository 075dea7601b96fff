//! The discussion handshake as plain code (no actors, no sockets): SPAKE2 over the shared secret with
//! both identity fingerprints as identities, key confirmation both ways, and the exchange of the
//! per-discussion public keys. The actors in [`crate::listener`] move these values over TCP inside
//! frames sealed with the identity keys. See `docs/protocol.md` ("Handshake") and `docs/security.md`.
//!
//! A requests, B receives:
//! 1. A → B `Request` (A's certificate, A's discussion key, SPAKE2 `X`, nonce, time)
//! 2. B → A `Accept`  (echoed nonce, B's nonce, B's discussion key, SPAKE2 `Y`, `confirm_B`)
//! 3. A → B `Confirm` (`confirm_A`)
//! 4. B → A `Ready`   (discussion id, port of B's discussion listener)
//!
//! `T = SHA-256(domain ‖ len ‖ Request ‖ len ‖ Accept with confirm zeroed)`,
//! `confirm_X = HMAC-SHA-256(HKDF-SHA-256(K, salt = T, info = "confirm X"), T)`.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity, Password, Spake2};
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::codec;
use crate::crypto::{Decrypted, PublicCert, SecretCert};
use crate::wire::{
    AcceptBody, FailReason, Handshake, Nonce, RequestBody, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

/// How far a request's clock may be from ours.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

#[derive(Debug, Error)]
pub enum HandshakeError {
    #[error("{0}")]
    Failed(FailReason),
    #[error("unsupported protocol version {0} (this node speaks {PROTOCOL_VERSION})")]
    Version(u16),
    #[error("bad handshake frame: {0}")]
    Invalid(&'static str),
    /// A key in a handshake frame that our policy or rpgp refused.
    #[error("bad handshake frame: {0}")]
    Key(#[from] crate::crypto::CryptoError),
    #[error("bad handshake frame: {0}")]
    Codec(#[from] codec::CodecError),
    /// A sealed frame that did not decrypt, decode or verify: its content is not trusted, so the
    /// error says nothing about it (the text is [`crate::net::SEALED_FRAME_REFUSED`]).
    #[error("{}", crate::net::SEALED_FRAME_REFUSED)]
    Unauthenticated,
}

impl HandshakeError {
    /// The reason to tell the peer.
    pub fn reason(&self) -> FailReason {
        match self {
            Self::Failed(r) => *r,
            Self::Version(_)
            | Self::Invalid(_)
            | Self::Key(_)
            | Self::Codec(_)
            | Self::Unauthenticated => FailReason::Protocol,
        }
    }
}

fn invalid(what: &'static str) -> HandshakeError {
    HandshakeError::Invalid(what)
}

pub fn random_nonce() -> Nonce {
    let mut n = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut n);
    n
}

/// What both sides agree on when the handshake succeeds.
#[derive(Debug, Clone)]
pub struct Agreed {
    pub discussion_id: String,
    pub peer_discussion_key: PublicCert,
    /// The discussion's rendezvous secret for the DHT (issue 11), from the SPAKE2 key and the
    /// transcript with its own label (`dht::derive`): only the two peers know it.
    pub rendezvous: crate::dht::RendezvousSecret,
}

/// The requester (A) between sending `Request` and receiving `Accept`.
pub struct Requester {
    spake: Spake2<Ed25519Group>,
    request: RequestBody,
}

impl Requester {
    /// Start a handshake as A. `password` is the secret shared out of band; it stays here.
    pub fn start(
        identity: &SecretCert,
        name: &str,
        peer_fingerprint: &str,
        discussion_key: &PublicCert,
        password: &[u8],
        now: u64,
    ) -> (Self, RequestBody) {
        let at = (identity, name, peer_fingerprint, discussion_key);
        Self::start_at(PROTOCOL_VERSION, at, password, now)
    }

    /// [`Requester::start`] saying protocol `version` in the request (1 after a version-1 peer
    /// refused our hello). The version is in the transcript: both sides agree on it.
    pub fn start_at(
        version: u16,
        (identity, name, peer_fingerprint, discussion_key): (&SecretCert, &str, &str, &PublicCert),
        password: &[u8],
        now: u64,
    ) -> (Self, RequestBody) {
        let (spake, msg) = Spake2::<Ed25519Group>::start_a(
            &Password::new(password),
            &Identity::new(identity.fingerprint().as_bytes()),
            &Identity::new(peer_fingerprint.as_bytes()),
        );
        let request = RequestBody {
            version,
            from: identity.fingerprint().to_string(),
            to: peer_fingerprint.to_string(),
            name: name.to_string(),
            nonce: random_nonce(),
            time: now,
            cert: identity.public().to_bytes(),
            discussion_key: discussion_key.to_bytes(),
            spake: msg,
        };
        (
            Self {
                spake,
                request: request.clone(),
            },
            request,
        )
    }

    pub fn request(&self) -> &RequestBody {
        &self.request
    }

    /// Check B's `Accept`; on success return `confirm_A` to send and the agreement.
    pub fn on_accept(self, accept: &AcceptBody) -> Result<([u8; 32], Agreed), HandshakeError> {
        if accept.request_nonce != self.request.nonce {
            return Err(HandshakeError::Failed(FailReason::Replay));
        }
        let key = self
            .spake
            .finish(&accept.spake)
            .map_err(|_| HandshakeError::Failed(FailReason::Protocol))?;
        let t = transcript(&self.request, accept)?;
        let expected = confirmation(&key, &t, b"confirm B");
        if !bool::from(expected.ct_eq(&accept.confirm)) {
            return Err(HandshakeError::Failed(FailReason::WrongSecretOrIntercepted));
        }
        let peer_discussion_key = PublicCert::from_bytes(&accept.discussion_key)?;
        Ok((
            confirmation(&key, &t, b"confirm A"),
            Agreed {
                discussion_id: discussion_id(&t),
                peer_discussion_key,
                rendezvous: crate::dht::RendezvousSecret::from_handshake(&key, &t),
            },
        ))
    }
}

/// What is read of a sealed frame's plaintext before its signature is checked: that it is a
/// `Request`, and its sender's certificate, the one field needed to check the signature. The fields
/// before it are only stepped over (borrowed byte strings, never interpreted), and nothing after it
/// is read. Its layout is pinned to [`RequestBody`] by a test.
#[derive(serde::Deserialize)]
struct RequestSigner<'a> {
    /// Index of the `Handshake` variant; 0 is `Request`.
    variant: u32,
    _version: u16,
    _from: &'a [u8],
    _to: &'a [u8],
    _name: &'a [u8],
    _nonce: Nonce,
    _time: u64,
    cert: &'a [u8],
}

/// Index of `Handshake::Request` in its bincode encoding.
const REQUEST_VARIANT: u32 = 0;

/// Check the plaintext of the first sealed frame B receives: a `Request` for us, signed by the
/// certificate it carries. Returns the request and A's certificate. Freshness: [`check_fresh`].
///
/// Until the signature is verified the plaintext is unauthenticated, possibly someone else's data
/// encrypted to us: only the certificate is read ([`RequestSigner`]), and every failure up to there
/// is [`HandshakeError::Unauthenticated`], which says nothing about the plaintext. Only then is the
/// request decoded and checked.
pub fn check_request(
    decrypted: &Decrypted,
    my_fingerprint: &str,
) -> Result<(RequestBody, PublicCert), HandshakeError> {
    let signer: RequestSigner<'_> =
        codec::decode_prefix(&decrypted.plaintext).map_err(|_| HandshakeError::Unauthenticated)?;
    if signer.variant != REQUEST_VARIANT {
        return Err(HandshakeError::Unauthenticated);
    }
    let cert = PublicCert::from_bytes(signer.cert).map_err(|_| HandshakeError::Unauthenticated)?;
    decrypted
        .verify(&cert)
        .map_err(|_| HandshakeError::Unauthenticated)?;
    // Authenticated from here on: signed by the certificate it carries.
    let Handshake::Request(req) = codec::decode(&decrypted.plaintext)? else {
        return Err(invalid("expected a Request"));
    };
    if req.version < MIN_PROTOCOL_VERSION {
        return Err(HandshakeError::Version(req.version));
    }
    if cert.fingerprint() != req.from {
        return Err(invalid("request's fingerprint is not its certificate's"));
    }
    if req.to != my_fingerprint {
        return Err(invalid("request is meant for another node"));
    }
    PublicCert::from_bytes(&req.discussion_key)?;
    Ok((req, cert))
}

/// A checked request must also be fresh: within [`MAX_CLOCK_SKEW`] of our clock. Separate from
/// [`check_request`] so that a stale request, whose sender is known by then, gets a sealed answer.
pub fn check_fresh(request: &RequestBody, now: u64) -> Result<(), HandshakeError> {
    if now.abs_diff(request.time) > MAX_CLOCK_SKEW.as_secs() {
        return Err(HandshakeError::Failed(FailReason::Replay));
    }
    Ok(())
}

/// The receiver (B) between sending `Accept` and receiving `Confirm`.
pub struct Responder {
    key: Vec<u8>,
    transcript: [u8; 32],
    peer_discussion_key: PublicCert,
}

impl Responder {
    /// B's user accepted with `password`: answer with `Accept`.
    pub fn accept(
        request: &RequestBody,
        my_fingerprint: &str,
        discussion_key: &PublicCert,
        password: &[u8],
    ) -> Result<(Self, AcceptBody), HandshakeError> {
        let (spake, msg) = Spake2::<Ed25519Group>::start_b(
            &Password::new(password),
            &Identity::new(request.from.as_bytes()),
            &Identity::new(my_fingerprint.as_bytes()),
        );
        let key = spake
            .finish(&request.spake)
            .map_err(|_| HandshakeError::Failed(FailReason::Protocol))?;
        let mut accept = AcceptBody {
            request_nonce: request.nonce,
            nonce: random_nonce(),
            discussion_key: discussion_key.to_bytes(),
            spake: msg,
            confirm: [0; 32],
        };
        let t = transcript(request, &accept)?;
        accept.confirm = confirmation(&key, &t, b"confirm B");
        let peer_discussion_key = PublicCert::from_bytes(&request.discussion_key)?;
        Ok((
            Self {
                key,
                transcript: t,
                peer_discussion_key,
            },
            accept,
        ))
    }

    /// Check A's `Confirm`.
    pub fn on_confirm(self, confirm: &[u8; 32]) -> Result<Agreed, HandshakeError> {
        let expected = confirmation(&self.key, &self.transcript, b"confirm A");
        if !bool::from(expected.ct_eq(confirm)) {
            return Err(HandshakeError::Failed(FailReason::WrongSecretOrIntercepted));
        }
        Ok(Agreed {
            discussion_id: discussion_id(&self.transcript),
            peer_discussion_key: self.peer_discussion_key,
            rendezvous: crate::dht::RendezvousSecret::from_handshake(&self.key, &self.transcript),
        })
    }
}

fn transcript(request: &RequestBody, accept: &AcceptBody) -> Result<[u8; 32], HandshakeError> {
    let mut zeroed = accept.clone();
    zeroed.confirm = [0; 32];
    let r = codec::encode(request)?;
    let a = codec::encode(&zeroed)?;
    let mut h = Sha256::new();
    h.update(b"pgpchat-handshake-v1\0");
    h.update((r.len() as u64).to_be_bytes());
    h.update(&r);
    h.update((a.len() as u64).to_be_bytes());
    h.update(&a);
    Ok(h.finalize().into())
}

fn confirmation(key: &[u8], transcript: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(Some(transcript), key);
    // HMAC zero-pads a key shorter than its 64-byte block, so a 32-byte key in a zeroed block is the
    // same key; this form of construction cannot fail.
    let mut block = [0u8; 64];
    // 32 bytes is far below HKDF-SHA-256's 8160-byte maximum: expand cannot fail.
    let _ = hk.expand(label, &mut block[..32]);
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new(&block.into());
    mac.update(transcript);
    mac.finalize().into_bytes().into()
}

fn discussion_id(transcript: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(b"pgpchat-discussion-id-v1\0");
    h.update(transcript);
    hex::encode(&h.finalize()[..16])
}

/// Nonces seen recently, so a recorded frame cannot be played again. Bounded: the oldest entry
/// goes first when full (an entry older than the clock-skew window is useless anyway, because the
/// time check refuses such frames).
pub struct ReplayCache {
    seen: HashMap<Nonce, Instant>,
    order: VecDeque<Nonce>,
    capacity: usize,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            seen: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// True the first time a nonce is seen, false after.
    pub fn insert(&mut self, nonce: Nonce, now: Instant) -> bool {
        while let Some(old) = self.order.front() {
            let expired = self
                .seen
                .get(old)
                .is_none_or(|t| now.duration_since(*t) > MAX_CLOCK_SKEW * 2);
            if expired || self.order.len() >= self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.seen.remove(&old);
                }
            } else {
                break;
            }
        }
        if self.seen.contains_key(&nonce) {
            return false;
        }
        self.seen.insert(nonce, now);
        self.order.push_back(nonce);
        true
    }
}

/// Who a failed attempt is charged to: the contact's fingerprint, and the address it came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttemptKey {
    Contact(String),
    Address(IpAddr),
}

/// At most `max` failed attempts per key within `window`. Bounded in keys: when full, the key with
/// the oldest failure is forgotten.
pub struct AttemptLimiter {
    failures: HashMap<AttemptKey, VecDeque<Instant>>,
    max: usize,
    window: Duration,
    capacity: usize,
}

impl AttemptLimiter {
    pub fn new(max: usize, window: Duration, capacity: usize) -> Self {
        Self {
            failures: HashMap::new(),
            max,
            window,
            capacity: capacity.max(1),
        }
    }

    /// Whether another attempt is allowed for `key` now.
    pub fn allowed(&mut self, key: &AttemptKey, now: Instant) -> bool {
        let window = self.window;
        match self.failures.get_mut(key) {
            Some(times) => {
                times.retain(|t| now.duration_since(*t) < window);
                times.len() < self.max
            }
            None => true,
        }
    }

    pub fn record_failure(&mut self, key: AttemptKey, now: Instant) {
        if !self.failures.contains_key(&key) && self.failures.len() >= self.capacity {
            let window = self.window;
            self.failures
                .retain(|_, t| t.back().is_some_and(|t| now.duration_since(*t) < window));
            if self.failures.len() >= self.capacity {
                let oldest = self
                    .failures
                    .iter()
                    .min_by_key(|(_, t)| t.back().copied())
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.failures.remove(&k);
                }
            }
        }
        self.failures.entry(key).or_default().push_back(now);
    }
}

/// Why the guessing limits turn a request away before it reaches the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// This key failed `max` times in the window.
    Key,
    /// Requests from this address failed `max` times in the window.
    Address,
    /// Everyone together failed `max_total` times in the window.
    Everyone,
}

impl std::fmt::Display for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Key => "too many failed attempts by this key recently",
            Self::Address => "too many failed attempts from this address recently",
            Self::Everyone => {
                "too many failed attempts from all requesters recently (possibly someone guessing \
                 secrets); until the window passes only verified contacts and past discussion \
                 partners may ask"
            }
        })
    }
}

/// The online-guessing limits of a node: at most `max` failures per key and per address, and at
/// most `max_total` from everyone together, within `window`. A *trusted* requester (a verified
/// contact, or one that has or had a discussion with us) is held only to its own key's limit, so
/// strangers' failures (from a shared address, or everyone's) cannot lock it out.
pub struct GuessLimits {
    per_peer: AttemptLimiter,
    total: VecDeque<Instant>,
    max_total: usize,
    window: Duration,
}

impl GuessLimits {
    pub fn new(max: usize, max_total: usize, window: Duration, capacity: usize) -> Self {
        Self {
            per_peer: AttemptLimiter::new(max, window, capacity),
            total: VecDeque::new(),
            max_total,
            window,
        }
    }

    /// Whether a requester may try now.
    pub fn check(
        &mut self,
        fingerprint: &str,
        address: Option<IpAddr>,
        trusted: bool,
        now: Instant,
    ) -> Result<(), Throttle> {
        if !self
            .per_peer
            .allowed(&AttemptKey::Contact(fingerprint.to_string()), now)
        {
            return Err(Throttle::Key);
        }
        if trusted {
            return Ok(());
        }
        if let Some(a) = address {
            if !self.per_peer.allowed(&AttemptKey::Address(a), now) {
                return Err(Throttle::Address);
            }
        }
        self.forget_old(now);
        if self.total.len() >= self.max_total {
            return Err(Throttle::Everyone);
        }
        Ok(())
    }

    pub fn record_failure(&mut self, fingerprint: &str, address: Option<IpAddr>, now: Instant) {
        self.per_peer
            .record_failure(AttemptKey::Contact(fingerprint.to_string()), now);
        if let Some(a) = address {
            self.per_peer.record_failure(AttemptKey::Address(a), now);
        }
        self.forget_old(now);
        // Bounded by `max_total`: past it, the oldest failure stands for the newest.
        if self.total.len() >= self.max_total {
            self.total.pop_front();
        }
        self.total.push_back(now);
    }

    fn forget_old(&mut self, now: Instant) {
        while self
            .total
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.total.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Party {
        id: SecretCert,
        dkey: SecretCert,
    }

    fn party(name: &str) -> Party {
        Party {
            id: SecretCert::generate(name).unwrap(),
            dkey: SecretCert::generate("discussion").unwrap(),
        }
    }

    fn run(pw_a: &[u8], pw_b: &[u8]) -> Result<(Agreed, Agreed), HandshakeError> {
        let (a, b) = (party("alice"), party("bob"));
        let (req_state, req) = Requester::start(
            &a.id,
            "alice",
            b.id.fingerprint(),
            a.dkey.public(),
            pw_a,
            1000,
        );
        let (resp_state, accept) =
            Responder::accept(&req, b.id.fingerprint(), b.dkey.public(), pw_b)?;
        let (confirm, agreed_a) = req_state.on_accept(&accept)?;
        let agreed_b = resp_state.on_confirm(&confirm)?;
        assert_eq!(
            agreed_a.peer_discussion_key.fingerprint(),
            b.dkey.fingerprint()
        );
        assert_eq!(
            agreed_b.peer_discussion_key.fingerprint(),
            a.dkey.fingerprint()
        );
        Ok((agreed_a, agreed_b))
    }

    #[test]
    fn same_secret_agrees_on_one_discussion() {
        let (a, b) = run(b"tulip", b"tulip").unwrap();
        assert_eq!(a.discussion_id, b.discussion_id);
        assert_eq!(a.discussion_id.len(), 32);
    }

    #[test]
    fn both_sides_derive_the_same_rendezvous_secret_and_each_discussion_its_own() {
        let (a, b) = run(b"tulip", b"tulip").unwrap();
        assert_eq!(a.rendezvous, b.rendezvous);
        // The discussion id is public: the secret is not derived from it alone.
        assert_ne!(
            a.rendezvous.as_bytes().as_slice(),
            a.discussion_id.as_bytes()
        );
        let (c, _) = run(b"tulip", b"tulip").unwrap();
        assert_ne!(a.rendezvous, c.rendezvous);
    }

    #[test]
    fn wrong_secret_fails_confirmation() {
        let err = run(b"tulip", b"tulips").unwrap_err();
        assert_eq!(err.reason(), FailReason::WrongSecretOrIntercepted);
    }

    #[test]
    fn substituted_identity_fails_even_with_the_right_secret() {
        // A believes it talks to M (whose key M announced as "bob"); B sees a request from M.
        // M forwards A's SPAKE2 message unchanged: the identities differ on both sides.
        let (a, b, m) = (party("alice"), party("bob"), party("bob"));
        let (req_state, req) = Requester::start(
            &a.id,
            "alice",
            m.id.fingerprint(),
            a.dkey.public(),
            b"pw",
            1,
        );
        let mut relayed = req.clone();
        relayed.from = m.id.fingerprint().to_string();
        relayed.to = b.id.fingerprint().to_string();
        let (_, accept) =
            Responder::accept(&relayed, b.id.fingerprint(), b.dkey.public(), b"pw").unwrap();
        let err = req_state.on_accept(&accept).unwrap_err();
        assert_eq!(err.reason(), FailReason::WrongSecretOrIntercepted);
    }

    #[test]
    fn tampered_accept_fails() {
        let (a, b) = (party("alice"), party("bob"));
        let (req_state, req) = Requester::start(
            &a.id,
            "alice",
            b.id.fingerprint(),
            a.dkey.public(),
            b"pw",
            1,
        );
        let (_, mut accept) =
            Responder::accept(&req, b.id.fingerprint(), b.dkey.public(), b"pw").unwrap();
        // Swap in another discussion key: the transcript no longer matches confirm_B.
        accept.discussion_key = party("x").dkey.public().to_bytes();
        assert!(req_state.on_accept(&accept).is_err());
    }

    #[test]
    fn confirmation_is_hmac_sha256_under_the_hkdf_key() {
        // Cross-check the block-padded construction against HMAC keyed with the 32-byte key.
        let (k, t) = (b"spake2 shared key".as_slice(), [5u8; 32]);
        let mut mac_key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&t), k)
            .expand(b"confirm A", &mut mac_key)
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&mac_key).unwrap();
        mac.update(&t);
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(confirmation(k, &t, b"confirm A"), expected);
        assert_ne!(confirmation(k, &t, b"confirm B"), expected);
    }

    #[test]
    fn only_the_certificate_is_read_before_the_signature_and_failures_say_nothing() {
        let (a, b, m) = (party("alice"), party("bob"), party("mallory"));
        let (_, req) = Requester::start(
            &a.id,
            "a name of some length",
            b.id.fingerprint(),
            a.dkey.public(),
            b"pw",
            1000,
        );
        let plain = codec::encode(&Handshake::Request(req.clone())).unwrap();
        // The layout of RequestSigner is the layout of a Request up to its certificate.
        let signer: RequestSigner<'_> = codec::decode_prefix(&plain).unwrap();
        assert_eq!(signer.variant, REQUEST_VARIANT);
        assert_eq!(signer.cert, &req.cert[..]);
        let other = codec::encode(&Handshake::Confirm { confirm: [7; 32] }).unwrap();

        let open = |sender: &SecretCert, plaintext: &[u8]| {
            let sealed = sender.sign_and_encrypt(b.id.public(), plaintext).unwrap();
            let d = b.id.decrypt_unverified(&sealed).unwrap();
            check_request(&d, b.id.fingerprint())
        };
        assert!(open(&a.id, &plain).is_ok());
        // Signed by another key than the certificate inside; not a request; not bincode at all.
        for (what, sender, plaintext) in [
            ("wrong signer", &m.id, plain.clone()),
            ("not a request", &a.id, other),
            ("garbage", &a.id, vec![0xde, 0xad, 0xbe, 0xef, 1, 2, 3]),
            ("truncated", &a.id, plain[..plain.len() / 2].to_vec()),
        ] {
            let e = open(sender, &plaintext).unwrap_err();
            assert!(matches!(e, HandshakeError::Unauthenticated), "{what}: {e}");
            assert_eq!(e.to_string(), crate::net::SEALED_FRAME_REFUSED, "{what}");
        }
    }

    #[test]
    fn stale_requests_are_replays() {
        let a = party("alice");
        let (_, req) = Requester::start(&a.id, "alice", "B", a.dkey.public(), b"pw", 10_000);
        assert!(check_fresh(&req, 10_000 + MAX_CLOCK_SKEW.as_secs()).is_ok());
        let late = check_fresh(&req, 10_001 + MAX_CLOCK_SKEW.as_secs()).unwrap_err();
        assert_eq!(late.reason(), FailReason::Replay);
        assert!(check_fresh(&req, 10_000 - MAX_CLOCK_SKEW.as_secs() - 1).is_err());
    }

    #[test]
    fn replay_cache_and_limiter() {
        let now = Instant::now();
        let mut cache = ReplayCache::new(2);
        assert!(cache.insert([1; 32], now));
        assert!(!cache.insert([1; 32], now));
        assert!(cache.insert([2; 32], now));
        assert!(cache.insert([3; 32], now));
        assert_eq!(cache.seen.len(), 2);

        let mut lim = AttemptLimiter::new(3, Duration::from_secs(600), 2);
        let k = AttemptKey::Contact("F".into());
        for _ in 0..3 {
            assert!(lim.allowed(&k, now));
            lim.record_failure(k.clone(), now);
        }
        assert!(!lim.allowed(&k, now));
        assert!(lim.allowed(&k, now + Duration::from_secs(601)));
        lim.record_failure(AttemptKey::Contact("G".into()), now);
        lim.record_failure(AttemptKey::Contact("H".into()), now);
        assert!(lim.failures.len() <= 2);
    }

    #[test]
    fn guess_limits_bound_everyone_but_spare_trusted_contacts() {
        let now = Instant::now();
        let window = Duration::from_secs(600);
        let mut g = GuessLimits::new(3, 5, window, 64);
        let shared: IpAddr = [10, 0, 0, 1].into();
        // Three strangers' failures from one address lock the address, not a trusted contact on it.
        for k in ["S1", "S2", "S3"] {
            assert_eq!(g.check(k, Some(shared), false, now), Ok(()));
            g.record_failure(k, Some(shared), now);
        }
        assert_eq!(
            g.check("S4", Some(shared), false, now),
            Err(Throttle::Address)
        );
        assert_eq!(g.check("FRIEND", Some(shared), true, now), Ok(()));
        // Fresh keys from fresh addresses: the total caps them.
        for (i, k) in ["N1", "N2"].iter().enumerate() {
            let a: IpAddr = [10, 0, 1, i as u8].into();
            assert_eq!(g.check(k, Some(a), false, now), Ok(()));
            g.record_failure(k, Some(a), now);
        }
        let fresh: IpAddr = [10, 0, 2, 1].into();
        assert_eq!(
            g.check("N3", Some(fresh), false, now),
            Err(Throttle::Everyone)
        );
        assert_eq!(g.check("FRIEND", Some(fresh), true, now), Ok(()));
        // A trusted key is still held to its own three failures.
        for _ in 0..3 {
            g.record_failure("FRIEND", Some(fresh), now);
        }
        assert_eq!(
            g.check("FRIEND", Some(fresh), true, now),
            Err(Throttle::Key)
        );
        // And it all passes with the window.
        let later = now + window;
        assert_eq!(g.check("N3", Some(fresh), false, later), Ok(()));
        assert_eq!(g.total.len(), 0);
    }
}
