//! The requester's side of the handshake, after its `Hello { purpose: Handshake }`: a fresh
//! discussion key, the sealed `Request`, the peer's `Accept` (or refusal), our key confirmation,
//! and the `Ready` with the new discussion's port. Generic over the byte stream and the
//! [`Crypto`]: the listener runs it on TCP with the key manager, tests on in-memory pipes.

use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{recv_sealed_from, sanitize, send_sealed, Conn, Crypto, NetError};
use crate::crypto::{CryptoError, PublicCert, SecretCert};
use crate::events::now_secs;
use crate::handshake::{Agreed, HandshakeError, Requester};
use crate::wire::{FailReason, Handshake};

/// How the requester's side ended without a discussion.
#[derive(Debug, Error)]
pub enum RequestError {
    #[error("{0}")]
    Net(#[from] NetError),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    /// The peer's user declined (its text, sanitized).
    #[error("refused the discussion: {0}")]
    Refused(String),
    /// The peer answered the request with a failure, or with another step than expected.
    #[error("{0}")]
    Failed(FailReason),
    /// The peer's `Accept` did not check out (wrong secret, or someone in the middle).
    #[error("{0}")]
    Handshake(#[from] HandshakeError),
    /// The peer gave up after our key confirmation.
    #[error("{0}")]
    FailedAfterConfirm(FailReason),
}

impl RequestError {
    /// Whether this end burns an attempt against the guessing limits: the secret was tried.
    pub fn burns_an_attempt(&self) -> bool {
        match self {
            Self::Failed(r) => *r == FailReason::WrongSecretOrIntercepted,
            Self::Handshake(_) | Self::FailedAfterConfirm(_) => true,
            _ => false,
        }
    }
}

/// A handshake that ended with a discussion: what the requester keeps.
pub struct Requested {
    pub agreed: Agreed,
    /// The receiver's discussion listener port (as it signed it in `Ready`).
    pub port: u16,
    pub own_key: SecretCert,
    /// `own_key`, sealed for our store.
    pub own_key_sealed: Vec<u8>,
}

/// Deadlines of one handshake.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// Each step's read or write.
    pub step: Duration,
    /// How long the peer's user may take to decide (the `Accept` may come that much later).
    pub decision: Duration,
}

/// Run the requester's side on `conn` (its hello already sent) with the secret `password`,
/// towards `peer` (the receiver's identity certificate, `peer_name` for our discussion key's label).
pub async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    crypto: &impl Crypto,
    peer: &PublicCert,
    peer_name: &str,
    password: String,
    deadlines: Deadlines,
) -> Result<Requested, RequestError> {
    let version = crate::wire::PROTOCOL_VERSION;
    request_at(conn, crypto, peer, peer_name, password, version, deadlines).await
}

/// [`request`] at protocol `version` (the one the hello said): the request carries it.
pub async fn request_at<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    crypto: &impl Crypto,
    peer: &PublicCert,
    peer_name: &str,
    password: String,
    version: u16,
    deadlines: Deadlines,
) -> Result<Requested, RequestError> {
    let deadline = deadlines.step;
    let (own_key, own_key_sealed) = crypto
        .new_discussion_key(format!("pgpchat discussion with {peer_name}"))
        .await?;
    let (name, peer_fp, dpub) = (
        crypto.name().to_string(),
        peer.fingerprint().to_string(),
        own_key.public().clone(),
    );
    let (requester, request) = crypto
        .run(move |id| {
            Ok(Requester::start_at(
                version,
                (id, &name, &peer_fp, &dpub),
                password.as_bytes(),
                now_secs(),
            ))
        })
        .await?;
    let nonce = request.nonce;
    send_sealed(conn, crypto, peer, &Handshake::Request(request), deadline).await?;
    // The peer's user decides: wait as long as a request may wait, plus the step deadline.
    let wait = deadlines.decision + deadline;
    let accept = match recv_sealed_from(conn, crypto, peer, wait).await? {
        Handshake::Accept(a) => a,
        Handshake::Refused { nonce: n, reason } if n == nonce => {
            return Err(RequestError::Refused(sanitize(&reason)))
        }
        Handshake::Failed { reason } => return Err(RequestError::Failed(reason)),
        _ => return Err(RequestError::Failed(FailReason::Protocol)),
    };
    let (confirm, agreed) = match crypto
        .run(move |_| Ok(requester.on_accept(&accept)))
        .await?
    {
        Ok(x) => x,
        Err(e) => {
            let step = Handshake::Failed { reason: e.reason() };
            let _ = send_sealed(conn, crypto, peer, &step, deadline).await;
            return Err(e.into());
        }
    };
    send_sealed(
        conn,
        crypto,
        peer,
        &Handshake::Confirm { confirm },
        deadline,
    )
    .await?;
    let port = match recv_sealed_from(conn, crypto, peer, deadline).await? {
        Handshake::Ready {
            discussion_id,
            port,
        } if discussion_id == agreed.discussion_id => port,
        Handshake::Failed { reason } => return Err(RequestError::FailedAfterConfirm(reason)),
        _ => return Err(RequestError::Failed(FailReason::Protocol)),
    };
    Ok(Requested {
        agreed,
        port,
        own_key,
        own_key_sealed,
    })
}
