//! The protocol layer: everything a node says to a peer over one byte stream, as plain async code
//! generic over `AsyncRead + AsyncWrite` and over the [`Crypto`] it needs (never an actor address),
//! so each path runs in a unit test over `tokio::io::duplex`.
//!
//! This file: framed connections, reads and writes with deadlines, the hello, sealed handshake
//! frames. Below it: [`crypto`] (the [`Crypto`] trait and its in-memory implementation),
//! [`discussion`] (the discussion-key authentication every discussion connection starts with, and
//! the signed `Close`), [`chat`] (the chat payload codec and its checks), [`requester`] and
//! [`responder`] (the two sides of the handshake). The actors (listener, sessions) are thin shells
//! around these.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::codec::{self, CodecError, FrameCodec};
use crate::crypto::{CryptoError, Decrypted, PublicCert};
use crate::wire::{Frame, Handshake, Purpose, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

pub mod chat;
pub mod control;
pub mod crypto;
pub mod discussion;
pub mod probe;
pub mod requester;
pub mod responder;

pub use crypto::{Crypto, LocalCrypto};
pub use discussion::{
    authenticate_as_connector, authenticate_as_connector_at, authenticate_as_listener,
    authenticate_as_listener_at, confirm_close, tell_closed_as_connector,
    tell_closed_as_connector_at, tell_closed_as_listener, verify_close, CloseNotice, SessionKeys,
    Versions,
};

/// A framed connection over any byte stream (TCP in the node, in-memory pipes in tests).
pub type Conn<S> = Framed<S, FrameCodec<Frame, Frame>>;

pub fn framed<S: AsyncRead + AsyncWrite>(stream: S, max_frame_bytes: usize) -> Conn<S> {
    Framed::new(stream, FrameCodec::new(max_frame_bytes))
}

/// The one text a node answers (in an `Error` frame) and logs for a sealed handshake frame that it
/// could not decrypt, decode, or verify, whatever failed: a text derived from the failure could carry
/// bytes of someone else's plaintext (a decryption oracle).
pub const SEALED_FRAME_REFUSED: &str = "sealed handshake frame refused";

#[derive(Debug, Error)]
pub enum NetError {
    /// A sealed handshake frame that did not decrypt, verify or decode ([`SEALED_FRAME_REFUSED`]).
    #[error("{SEALED_FRAME_REFUSED}")]
    SealedFrameRefused,
    #[error("timed out waiting for the peer")]
    Timeout,
    #[error("the peer closed the connection")]
    Closed,
    #[error("{0}")]
    Codec(#[from] CodecError),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    #[error("unexpected frame: {0}")]
    Unexpected(&'static str),
    /// An unauthenticated sealed frame over its address's [`DecryptBudget`](crate::admission::DecryptBudget).
    #[error("unexpected frame: sealed frame over this address's decryption budget")]
    OverBudget,
    /// Nowhere to dial: no address is known for the peer.
    #[error("no address known for the peer")]
    NoAddress,
    #[error("cannot connect to {to}: {source}")]
    Connect {
        to: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("peer says: {0}")]
    Peer(String),
    /// The peer answered a discussion connection with a `Close` (it closed the discussion while
    /// we could not be told). Not yet verified: see [`confirm_close`].
    #[error("the peer closed the discussion")]
    PeerClosedDiscussion(Vec<u8>),
    #[error("unsupported protocol version {0} (this node speaks {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION})")]
    Version(u16),
    /// A discussion whose peer authenticated at `floor` before, now offered at `agreed` (below):
    /// refused, so that a forged version refusal cannot strip later versions' features.
    #[error("discussion runs at protocol version {floor}; a connection at {agreed} is refused")]
    Downgrade { agreed: u16, floor: u16 },
    /// A discussion-key proof (or `Close`) that did not verify.
    #[error("discussion authentication failed: {0}")]
    Auth(#[source] CryptoError),
}

pub async fn recv<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    deadline: Duration,
) -> Result<Frame, NetError> {
    match tokio::time::timeout(deadline, conn.next()).await {
        Err(_) => Err(NetError::Timeout),
        Ok(None) => Err(NetError::Closed),
        Ok(Some(Err(e))) => Err(e.into()),
        Ok(Some(Ok(Frame::Error { reason }))) => Err(NetError::Peer(sanitize(&reason))),
        Ok(Some(Ok(f))) => Ok(f),
    }
}

pub async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    frame: Frame,
    deadline: Duration,
) -> Result<(), NetError> {
    match tokio::time::timeout(deadline, conn.send(frame)).await {
        Err(_) => Err(NetError::Timeout),
        Ok(r) => Ok(r?),
    }
}

/// A peer's unauthenticated text, made safe to log and show: printable, at most 200 characters.
pub fn sanitize(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// How every build answers a hello version it does not speak (the start of its `Error` text): a
/// version-1 build says this for any version but 1, and a connecting side that reads it falls back
/// to version 1 once ([`is_version_refusal`]).
pub const VERSION_REFUSED: &str = "unsupported protocol version";

/// Whether `e` is the peer refusing our hello's version (it speaks an older protocol only).
pub fn is_version_refusal(e: &NetError) -> bool {
    matches!(e, NetError::Peer(reason) if reason.starts_with(VERSION_REFUSED))
}

/// The version both sides of a connection speak, given the connecting side's highest (`theirs`)
/// and ours (`max`). `None`: refused. A node limited to version 1 (`max == 1`) behaves as builds
/// before versions were negotiated, which refused any other version; from version 2 on any version
/// from [`MIN_PROTOCOL_VERSION`] up is fine, and a higher one than ours is met at ours.
pub fn agree_version(theirs: u16, max: u16) -> Option<u16> {
    if max <= MIN_PROTOCOL_VERSION {
        return (theirs == MIN_PROTOCOL_VERSION).then_some(MIN_PROTOCOL_VERSION);
    }
    (theirs >= MIN_PROTOCOL_VERSION).then(|| theirs.min(max))
}

/// Read the first frame of an incoming connection: the hello with version and purpose, at this
/// build's highest version.
pub async fn recv_hello<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    deadline: Duration,
) -> Result<Purpose, NetError> {
    recv_hello_at(conn, deadline, PROTOCOL_VERSION)
        .await
        .map(|(_, purpose)| purpose)
}

/// Read the hello of an incoming connection, speaking versions up to `max`; returns the agreed
/// version ([`agree_version`]) and the purpose. A version we do not speak is answered with an
/// `Error` starting with [`VERSION_REFUSED`].
pub async fn recv_hello_at<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    deadline: Duration,
    max: u16,
) -> Result<(u16, Purpose), NetError> {
    let (version, purpose) = match recv(conn, deadline).await? {
        Frame::Hello { version, purpose } => (version, purpose),
        other => return Err(NetError::Unexpected(frame_name(&other))),
    };
    let Some(agreed) = agree_version(version, max) else {
        let _ = send(
            conn,
            Frame::Error {
                reason: format!("{VERSION_REFUSED} {version}; this node speaks {max}"),
            },
            deadline,
        )
        .await;
        return Err(NetError::Version(version));
    };
    match purpose {
        Purpose::Discussion { discussion_id, .. }
            if !crate::wire::is_discussion_id(&discussion_id) =>
        {
            // Not quoted: the peer chose it, up to a whole frame long.
            Err(NetError::Unexpected("hello with a malformed discussion id"))
        }
        purpose => Ok((agreed, purpose)),
    }
}

pub fn frame_name(f: &Frame) -> &'static str {
    match f {
        Frame::Hello { .. } => "Hello",
        Frame::Sealed(_) => "Sealed",
        Frame::SessionAuth { .. } => "SessionAuth",
        Frame::Chat(_) => "Chat",
        Frame::Ack { .. } => "Ack",
        Frame::Close { .. } => "Close",
        Frame::Error { .. } => "Error",
        Frame::ProbeAnswer(_) => "ProbeAnswer",
        Frame::Control(_) => "Control",
        Frame::Unreadable { .. } => "Unreadable",
    }
}

/// Seal a handshake step to `to` and send it.
pub async fn send_sealed<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    keys: &impl Crypto,
    to: &PublicCert,
    step: &Handshake,
    deadline: Duration,
) -> Result<(), NetError> {
    let sealed = keys.seal(to.clone(), codec::encode(step)?).await?;
    send(conn, Frame::Sealed(sealed), deadline).await
}

/// Receive a sealed frame and decrypt it (the signature is checked by the caller). Any failure to
/// decrypt is [`NetError::SealedFrameRefused`], whose text says nothing about the frame.
pub async fn recv_sealed<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    keys: &impl Crypto,
    deadline: Duration,
) -> Result<Decrypted, NetError> {
    match recv(conn, deadline).await? {
        Frame::Sealed(bytes) => keys
            .unseal(bytes)
            .await
            .map_err(|_| NetError::SealedFrameRefused),
        other => Err(NetError::Unexpected(frame_name(&other))),
    }
}

/// Receive a sealed frame from a known peer: decrypt, verify its signature, then decode. Every
/// failure is [`NetError::SealedFrameRefused`].
pub async fn recv_sealed_from<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    keys: &impl Crypto,
    from: &PublicCert,
    deadline: Duration,
) -> Result<Handshake, NetError> {
    let d = recv_sealed(conn, keys, deadline).await?;
    d.verify(from).map_err(|_| NetError::SealedFrameRefused)?;
    codec::decode(&d.plaintext).map_err(|_| NetError::SealedFrameRefused)
}

/// Answer a refused sealed frame: the fixed [`SEALED_FRAME_REFUSED`], best effort (the sender's
/// certificate is unchecked, so nothing can be sealed to it).
pub async fn refuse_sealed<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    deadline: Duration,
) {
    let reason = SEALED_FRAME_REFUSED.to_string();
    let _ = send(conn, Frame::Error { reason }, deadline).await;
}

/// A TCP connection to `to`, framed, within `deadline`.
pub async fn dial(
    to: std::net::SocketAddr,
    deadline: Duration,
    max_frame_bytes: usize,
) -> Result<Conn<tokio::net::TcpStream>, NetError> {
    let stream = tokio::time::timeout(deadline, tokio::net::TcpStream::connect(to))
        .await
        .map_err(|_| NetError::Timeout)?
        .map_err(|source| NetError::Connect { to, source })?;
    Ok(framed(stream, max_frame_bytes))
}

#[cfg(test)]
mod handshake_tests;
#[cfg(test)]
mod tests;
