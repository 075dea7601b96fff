//! A signed announce, checked: the one place that decides whether announce bytes become a contact,
//! whoever brought them (a broadcast, the answer to a probe, an entry of a peer's contact list).
//!
//! [`parse`] does the cheap checks (decodes, version, name, time) on the caller's thread, so a
//! flood is refused before it costs a signature check; [`verify_parsed`] checks the signature on the
//! crypto workers; [`verify`] does both. The result keeps the announce's bytes *unpadded*, so a
//! contact can be relayed later exactly as its owner signed it.

pub mod cert_cache;

use crate::codec;
use crate::crypto::CryptoError;
use crate::events::now_secs;
use crate::handshake::MAX_CLOCK_SKEW;
use crate::net::Crypto;
use crate::wire::{Announce, AnnounceBody, Nonce, ANNOUNCE_VERSION};

/// Longest display name announced or accepted.
pub const MAX_NAME_CHARS: usize = 64;

/// How recent an announce must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Heard from its owner just now (broadcast, probe): its time within [`MAX_CLOCK_SKEW`].
    Live,
    /// Relayed by someone else (a contact list): any age; the contact registry still refuses one
    /// older than what it holds for that fingerprint.
    Relayed,
}

/// Why announce bytes were refused.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceRefused {
    #[error("not an announce")]
    Malformed,
    #[error("announce version {0} (this node reads {ANNOUNCE_VERSION})")]
    Version(u16),
    #[error("announced name too long or with control characters")]
    Name,
    #[error("announce time too far from ours (stale, or a clock off by more than {}s)", MAX_CLOCK_SKEW.as_secs())]
    Stale,
    #[error("announce signature does not verify: {0}")]
    BadSignature(#[source] CryptoError),
}

/// An announce whose signature checked out.
#[derive(Debug, Clone)]
pub struct VerifiedAnnounce {
    pub fingerprint: String,
    pub cert: Vec<u8>,
    pub name: String,
    pub tcp_port: u16,
    pub time: u64,
    pub nonce: Nonce,
    pub reply: bool,
    /// `bincode(Announce)` without its padding: what is stored and relayed.
    pub signed: Vec<u8>,
}

/// Decode and check everything but the signature.
pub fn parse(
    bytes: &[u8],
    freshness: Freshness,
) -> Result<(Announce, AnnounceBody), AnnounceRefused> {
    let announce = codec::decode::<Announce>(bytes).map_err(|_| AnnounceRefused::Malformed)?;
    let body =
        codec::decode::<AnnounceBody>(&announce.body).map_err(|_| AnnounceRefused::Malformed)?;
    if body.version != ANNOUNCE_VERSION {
        return Err(AnnounceRefused::Version(body.version));
    }
    if body.name.chars().count() > MAX_NAME_CHARS || body.name.chars().any(char::is_control) {
        return Err(AnnounceRefused::Name);
    }
    if freshness == Freshness::Live && now_secs().abs_diff(body.time) > MAX_CLOCK_SKEW.as_secs() {
        return Err(AnnounceRefused::Stale);
    }
    Ok((announce, body))
}

/// Check the signature of a parsed announce by the certificate inside it (on the crypto workers).
pub async fn verify_parsed(
    keys: &impl Crypto,
    announce: Announce,
    body: AnnounceBody,
) -> Result<VerifiedAnnounce, AnnounceRefused> {
    verify_with(keys, None, announce, body).await
}

/// [`verify_parsed`], taking the certificate from `cache` when these exact bytes were checked
/// already (the announce's own signature is always checked): see [`cert_cache`].
pub async fn verify_parsed_cached(
    keys: &impl Crypto,
    cache: &cert_cache::SharedCertCache,
    announce: Announce,
    body: AnnounceBody,
) -> Result<VerifiedAnnounce, AnnounceRefused> {
    verify_with(keys, Some(cache.clone()), announce, body).await
}

async fn verify_with(
    keys: &impl Crypto,
    cache: Option<cert_cache::SharedCertCache>,
    announce: Announce,
    body: AnnounceBody,
) -> Result<VerifiedAnnounce, AnnounceRefused> {
    let unpadded = Announce {
        padding: vec![],
        ..announce
    };
    let signed = codec::encode(&unpadded).map_err(|_| AnnounceRefused::Malformed)?;
    let (cert_bytes, data, signature) = (
        body.cert.clone(),
        unpadded.body.clone(),
        unpadded.signature.clone(),
    );
    let cert = keys
        .run(move |_| {
            let cert = match &cache {
                Some(cache) => cert_cache::checked_cert(
                    cache,
                    &cert_bytes,
                    crate::crypto::PublicCert::from_bytes,
                )?,
                None => crate::crypto::PublicCert::from_bytes(&cert_bytes)?,
            };
            crate::crypto::verify_detached(&cert, &data, &signature)?;
            Ok(cert)
        })
        .await
        .map_err(AnnounceRefused::BadSignature)?;
    Ok(VerifiedAnnounce {
        fingerprint: cert.fingerprint().to_string(),
        cert: body.cert,
        name: body.name,
        tcp_port: body.tcp_port,
        time: body.time,
        nonce: body.nonce,
        reply: body.reply,
        signed,
    })
}

/// [`parse`] then [`verify_parsed`].
pub async fn verify(
    keys: &impl Crypto,
    bytes: &[u8],
    freshness: Freshness,
) -> Result<VerifiedAnnounce, AnnounceRefused> {
    let (a, b) = parse(bytes, freshness)?;
    verify_parsed(keys, a, b).await
}
