//! Probing a node at an address (`add-contact HOST:PORT`, re-probing): both sides over one byte
//! stream. The prober says `Hello { purpose: Probe { nonce } }`; the node answers one
//! [`Frame::ProbeAnswer`] holding its signed announce with that nonce in its body, and closes. The
//! answer is checked exactly as a broadcast announce ([`crate::announce`]), and must carry our nonce.
//!
//! A node older than probing cannot decode the hello and closes without a word; [`speaks_pgpchat`]
//! then tells an older pgpchat (it answers a hello of version 0 with an `Error`, as every version
//! does) from something else listening on that port.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{recv, send, Conn, Crypto, NetError};
use crate::announce::{self, AnnounceRefused, Freshness, VerifiedAnnounce};
use crate::codec;
use crate::wire::{Announce, AnnounceBody, Frame, Nonce, Purpose, PROTOCOL_VERSION};

/// Why a probe got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Closed without answering: an older pgpchat, or not pgpchat (see [`speaks_pgpchat`]).
    #[error("closed the connection without answering the probe")]
    NoAnswer,
    #[error("did not answer the probe in time")]
    Timeout,
    /// Bytes that are not a pgpchat frame.
    #[error("answered something that is not the pgpchat protocol")]
    NotPgpchat,
    /// A pgpchat `Error` frame (e.g. a protocol version it does not speak).
    #[error("answered: {0}")]
    Peer(String),
    #[error("answered with an unexpected frame ({0})")]
    Unexpected(&'static str),
    #[error("answered with an announce that is refused: {0}")]
    Announce(#[from] AnnounceRefused),
    /// The announce is valid but not made for this probe: replayed, or relayed from elsewhere.
    #[error("answered with an announce not made for this probe (replayed?)")]
    WrongNonce,
    #[error("{0}")]
    Net(NetError),
}

impl From<NetError> for ProbeError {
    fn from(e: NetError) -> Self {
        match e {
            NetError::Closed => Self::NoAnswer,
            NetError::Timeout => Self::Timeout,
            NetError::Codec(_) => Self::NotPgpchat,
            NetError::Peer(reason) => Self::Peer(reason),
            e => Self::Net(e),
        }
    }
}

/// The prober's side: send the probe with a fresh `nonce`, verify the answer.
pub async fn ask<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    keys: &impl Crypto,
    nonce: Nonce,
    deadline: Duration,
) -> Result<VerifiedAnnounce, ProbeError> {
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION,
        purpose: Purpose::Probe { nonce },
    };
    send(conn, hello, deadline).await?;
    let bytes = match recv(conn, deadline).await? {
        Frame::ProbeAnswer(bytes) => bytes,
        other => return Err(ProbeError::Unexpected(super::frame_name(&other))),
    };
    let verified = announce::verify(keys, &bytes, Freshness::Live).await?;
    if verified.nonce != nonce || !verified.reply {
        return Err(ProbeError::WrongNonce);
    }
    Ok(verified)
}

/// The node's side, after the probe's hello: sign `body` (its nonce the prober's) and answer.
pub async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    keys: &impl Crypto,
    body: &AnnounceBody,
    deadline: Duration,
) -> Result<(), NetError> {
    let signed = codec::encode(body)?;
    let signature = keys.sign(signed.clone()).await?;
    let answer = codec::encode(&Announce {
        body: signed,
        signature,
        padding: vec![],
    })?;
    send(conn, Frame::ProbeAnswer(answer), deadline).await
}

/// Whether the node on `conn` speaks pgpchat at all: every version answers a hello of version 0
/// (below any it speaks) with an `Error` frame.
pub async fn speaks_pgpchat<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    deadline: Duration,
) -> bool {
    let hello = Frame::Hello {
        version: 0,
        purpose: Purpose::Handshake,
    };
    if send(conn, hello, deadline).await.is_err() {
        return false;
    }
    matches!(recv(conn, deadline).await, Err(NetError::Peer(_)))
}
