//! TCP connection helpers shared by the listener and the discussion sessions: framed connections,
//! reads and writes with deadlines, sealed handshake frames, and the discussion-key authentication
//! that every discussion connection (first or re-established) starts with.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::codec::{self, CodecError, FrameCodec};
use crate::crypto::{CryptoError, Decrypted, PublicCert, SecretCert};
use crate::handshake::random_nonce;
use crate::keys::KeysHandle;
use crate::wire::{
    close_data, session_auth_data, Frame, Handshake, Nonce, Purpose, Role, PROTOCOL_VERSION,
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
    Unexpected(String),
    #[error("peer says: {0}")]
    Peer(String),
    /// The peer answered a discussion connection with a `Close` (it closed the discussion while
    /// we could not be told). Not yet verified: see [`confirm_close`].
    #[error("the peer closed the discussion")]
    PeerClosedDiscussion(Vec<u8>),
    #[error("unsupported protocol version {0} (this node speaks {PROTOCOL_VERSION})")]
    Version(u16),
    #[error("discussion authentication failed: {0}")]
    Auth(String),
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

/// Read the first frame of an incoming connection: the hello with version and purpose.
pub async fn recv_hello<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    deadline: Duration,
) -> Result<Purpose, NetError> {
    match recv(conn, deadline).await? {
        Frame::Hello {
            purpose: Purpose::Discussion { discussion_id, .. },
            version: PROTOCOL_VERSION,
        } if !crate::wire::is_discussion_id(&discussion_id) => {
            // Not quoted: the peer chose it, up to a whole frame long.
            Err(NetError::Unexpected(
                "hello with a malformed discussion id".into(),
            ))
        }
        Frame::Hello { version, purpose } if version == PROTOCOL_VERSION => Ok(purpose),
        Frame::Hello { version, .. } => {
            let _ = send(
                conn,
                Frame::Error {
                    reason: format!("unsupported protocol version {version}; this node speaks {PROTOCOL_VERSION}"),
                },
                deadline,
            )
            .await;
            Err(NetError::Version(version))
        }
        other => Err(NetError::Unexpected(frame_name(&other).into())),
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
    }
}

/// Seal a handshake step to `to` and send it.
pub async fn send_sealed<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    keys: &KeysHandle,
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
    keys: &KeysHandle,
    deadline: Duration,
) -> Result<Decrypted, NetError> {
    match recv(conn, deadline).await? {
        Frame::Sealed(bytes) => keys
            .unseal(bytes)
            .await
            .map_err(|_| NetError::SealedFrameRefused),
        other => Err(NetError::Unexpected(frame_name(&other).into())),
    }
}

/// Receive a sealed frame from a known peer: decrypt, verify its signature, then decode. Every
/// failure is [`NetError::SealedFrameRefused`].
pub async fn recv_sealed_from<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    keys: &KeysHandle,
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

/// What a discussion connection authenticates with.
#[derive(Clone)]
pub struct SessionKeys {
    pub discussion_id: String,
    pub role: Role,
    pub own: Arc<SecretCert>,
    pub peer: PublicCert,
    /// Our `Close`, signed once when first needed (an Ed25519 signature over fixed data never
    /// changes): sent on each connection while closing, in confirmations, and kept in the store.
    own_close: Arc<tokio::sync::OnceCell<Vec<u8>>>,
}

impl SessionKeys {
    pub fn new(discussion_id: String, role: Role, own: Arc<SecretCert>, peer: PublicCert) -> Self {
        Self {
            discussion_id,
            role,
            own,
            peer,
            own_close: Arc::default(),
        }
    }

    /// Our `Close` for this discussion, signed by our discussion key.
    pub async fn own_close(&self, keys: &KeysHandle) -> Result<Vec<u8>, CryptoError> {
        self.own_close
            .get_or_try_init(|| keys.sign_with(self.own.clone(), close_data(&self.discussion_id)))
            .await
            .cloned()
    }
}

/// Check a `Close` for discussion `id` with the peer's discussion key.
pub async fn verify_close(
    keys: &KeysHandle,
    peer: &PublicCert,
    id: &str,
    signature: Vec<u8>,
) -> Result<(), NetError> {
    keys.verify_detached(peer.clone(), close_data(id), signature)
        .await
        .map_err(|e| NetError::Auth(e.to_string()))
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
        .map_err(|e| NetError::Peer(format!("{to}: {e}")))?;
    Ok(framed(stream, max_frame_bytes))
}

/// The first frame of a discussion connection, with a fresh nonce (returned too).
fn discussion_hello(discussion_id: &str) -> (Frame, Nonce) {
    let nonce = random_nonce();
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION,
        purpose: Purpose::Discussion {
            discussion_id: discussion_id.to_string(),
            nonce,
        },
    };
    (hello, nonce)
}

/// Connecting side: send the hello, check the listener's proof, send ours. Returns the listener's
/// current discussion port (as it signed it).
pub async fn authenticate_as_connector<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    keys: &KeysHandle,
    sk: &SessionKeys,
    deadline: Duration,
) -> Result<u16, NetError> {
    let (hello, own_nonce) = discussion_hello(&sk.discussion_id);
    send(conn, hello, deadline).await?;
    let (peer_nonce, port, signature) = match recv(conn, deadline).await? {
        Frame::SessionAuth {
            nonce,
            port,
            signature,
        } => (nonce, port, signature),
        Frame::Close { signature } => return Err(NetError::PeerClosedDiscussion(signature)),
        other => return Err(NetError::Unexpected(frame_name(&other).into())),
    };
    let data = session_auth_data(
        &sk.discussion_id,
        sk.role.peer(),
        &own_nonce,
        &peer_nonce,
        port,
    );
    keys.verify_detached(sk.peer.clone(), data, signature)
        .await
        .map_err(|e| NetError::Auth(e.to_string()))?;
    let proof = session_auth_data(&sk.discussion_id, sk.role, &peer_nonce, &own_nonce, 0);
    let signature = keys.sign_with(sk.own.clone(), proof).await?;
    send(
        conn,
        Frame::SessionAuth {
            nonce: own_nonce,
            port: 0,
            signature,
        },
        deadline,
    )
    .await?;
    Ok(port)
}

/// The peer sent `Close` instead of authenticating ([`NetError::PeerClosedDiscussion`]): check it
/// with the peer's discussion key, then confirm with our own `Close`. `Ok` means the discussion is
/// closed on both sides and ours must now be closed too.
pub async fn confirm_close<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    keys: &KeysHandle,
    sk: &SessionKeys,
    signature: Vec<u8>,
    deadline: Duration,
) -> Result<(), NetError> {
    verify_close(keys, &sk.peer, &sk.discussion_id, signature).await?;
    let signature = sk.own_close(keys).await?;
    // Best effort: the peer asks again on its next connection if this one is lost.
    let _ = send(conn, Frame::Close { signature }, deadline).await;
    Ok(())
}

/// A discussion we closed without the peer: our key is gone and `proof` is the `Close` we signed
/// with it first. What a closed discussion still needs to tell the peer, for one connection.
pub struct CloseNotice {
    pub discussion_id: String,
    pub peer: PublicCert,
    pub proof: Vec<u8>,
}

/// Connecting side of a [`CloseNotice`]: the hello, then our `Close` where our proof would go; the
/// peer's `Close` (checked with its discussion key) confirms.
pub async fn tell_closed_as_connector<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    keys: &KeysHandle,
    notice: &CloseNotice,
    deadline: Duration,
) -> Result<(), NetError> {
    send(conn, discussion_hello(&notice.discussion_id).0, deadline).await?;
    let peer_closed = match recv(conn, deadline).await? {
        Frame::SessionAuth { .. } => None,
        Frame::Close { signature } => Some(signature),
        other => return Err(NetError::Unexpected(frame_name(&other).into())),
    };
    if let Some(signature) = peer_closed {
        // Both closed without the other: its proof is the confirmation.
        verify_close(keys, &notice.peer, &notice.discussion_id, signature).await?;
        let _ = send(conn, close_frame(notice), deadline).await;
        return Ok(());
    }
    send(conn, close_frame(notice), deadline).await?;
    expect_close(conn, keys, notice, deadline).await
}

/// Listening side of a [`CloseNotice`], after the hello: our `Close` where our proof would go,
/// then the peer's confirmation.
pub async fn tell_closed_as_listener<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    keys: &KeysHandle,
    notice: &CloseNotice,
    deadline: Duration,
) -> Result<(), NetError> {
    send(conn, close_frame(notice), deadline).await?;
    expect_close(conn, keys, notice, deadline).await
}

fn close_frame(notice: &CloseNotice) -> Frame {
    Frame::Close {
        signature: notice.proof.clone(),
    }
}

async fn expect_close<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    keys: &KeysHandle,
    notice: &CloseNotice,
    deadline: Duration,
) -> Result<(), NetError> {
    match recv(conn, deadline).await? {
        Frame::Close { signature } => {
            verify_close(keys, &notice.peer, &notice.discussion_id, signature).await
        }
        other => Err(NetError::Unexpected(frame_name(&other).into())),
    }
}

/// Listening side, after the hello (which carried the connector's nonce): prove ourselves with a
/// fresh nonce (and our current discussion port), then check the connector's proof over that nonce.
pub async fn authenticate_as_listener<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    keys: &KeysHandle,
    sk: &SessionKeys,
    connector_nonce: Nonce,
    listen_port: u16,
    deadline: Duration,
) -> Result<(), NetError> {
    let own_nonce = random_nonce();
    let proof = session_auth_data(
        &sk.discussion_id,
        sk.role,
        &connector_nonce,
        &own_nonce,
        listen_port,
    );
    let signature = keys.sign_with(sk.own.clone(), proof).await?;
    send(
        conn,
        Frame::SessionAuth {
            nonce: own_nonce,
            port: listen_port,
            signature,
        },
        deadline,
    )
    .await?;
    let signature = match recv(conn, deadline).await? {
        Frame::SessionAuth { signature, .. } => signature,
        Frame::Close { signature } => return Err(NetError::PeerClosedDiscussion(signature)),
        other => return Err(NetError::Unexpected(frame_name(&other).into())),
    };
    let data = session_auth_data(
        &sk.discussion_id,
        sk.role.peer(),
        &own_nonce,
        &connector_nonce,
        0,
    );
    keys.verify_detached(sk.peer.clone(), data, signature)
        .await
        .map_err(|e| NetError::Auth(e.to_string()))
}
