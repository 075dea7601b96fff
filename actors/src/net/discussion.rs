//! Discussion-key authentication, which every discussion connection (first or re-established)
//! starts with, and the signed `Close` that ends a discussion on both sides (SPEC: a discussion is
//! closed when each side holds the other's `Close`, or the peer's when ours was sent first).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{frame_name, recv, send, Conn, Crypto, NetError};
use crate::crypto::{CryptoError, PublicCert, SecretCert};
use crate::handshake::random_nonce;
use crate::wire::{close_data, session_auth_data, Frame, Nonce, Purpose, Role, PROTOCOL_VERSION};

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
    pub async fn own_close(&self, keys: &impl Crypto) -> Result<Vec<u8>, CryptoError> {
        self.own_close
            .get_or_try_init(|| keys.sign_with(self.own.clone(), close_data(&self.discussion_id)))
            .await
            .cloned()
    }
}

/// Check a `Close` for discussion `id` with the peer's discussion key.
pub async fn verify_close(
    keys: &impl Crypto,
    peer: &PublicCert,
    id: &str,
    signature: Vec<u8>,
) -> Result<(), NetError> {
    keys.verify_detached(peer.clone(), close_data(id), signature)
        .await
        .map_err(NetError::Auth)
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
    keys: &impl Crypto,
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
        other => return Err(NetError::Unexpected(frame_name(&other))),
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
        .map_err(NetError::Auth)?;
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
    keys: &impl Crypto,
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
    keys: &impl Crypto,
    notice: &CloseNotice,
    deadline: Duration,
) -> Result<(), NetError> {
    send(conn, discussion_hello(&notice.discussion_id).0, deadline).await?;
    let peer_closed = match recv(conn, deadline).await? {
        Frame::SessionAuth { .. } => None,
        Frame::Close { signature } => Some(signature),
        other => return Err(NetError::Unexpected(frame_name(&other))),
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
    keys: &impl Crypto,
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
    keys: &impl Crypto,
    notice: &CloseNotice,
    deadline: Duration,
) -> Result<(), NetError> {
    match recv(conn, deadline).await? {
        Frame::Close { signature } => {
            verify_close(keys, &notice.peer, &notice.discussion_id, signature).await
        }
        other => Err(NetError::Unexpected(frame_name(&other))),
    }
}

/// Listening side, after the hello (which carried the connector's nonce): prove ourselves with a
/// fresh nonce (and our current discussion port), then check the connector's proof over that nonce.
pub async fn authenticate_as_listener<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    keys: &impl Crypto,
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
        other => return Err(NetError::Unexpected(frame_name(&other))),
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
        .map_err(NetError::Auth)
}
