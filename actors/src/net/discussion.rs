//! Discussion-key authentication, which every discussion connection (first or re-established)
//! starts with, and the signed `Close` that ends a discussion on both sides (SPEC: a discussion is
//! closed when each side holds the other's `Close`, or the peer's when ours was sent first).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{frame_name, recv, send, Conn, Crypto, NetError};
use crate::crypto::{CryptoError, PublicCert, SecretCert};
use crate::handshake::random_nonce;
use crate::wire::{
    close_data, session_auth_data_at, Frame, Nonce, Purpose, Role, MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
};

/// The protocol versions a connecting side may run a discussion connection at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Versions {
    /// What our hello says: our highest, or 1 after the peer refused it (a version-1 peer).
    pub hello: u16,
    /// The lowest version we accept for this discussion: the highest its peer has authenticated
    /// at (downgrade defence: once at 2, never below).
    pub floor: u16,
}

impl Default for Versions {
    fn default() -> Self {
        Self {
            hello: PROTOCOL_VERSION,
            floor: MIN_PROTOCOL_VERSION,
        }
    }
}

/// What a discussion connection authenticates with.
#[derive(Clone)]
pub struct SessionKeys {
    pub discussion_id: String,
    pub role: Role,
    pub own: Arc<SecretCert>,
    /// The peer's discussion certificate: it verifies the peer's signatures (its primary key never
    /// changes).
    pub peer: PublicCert,
    /// What messages to the peer are encrypted to, read when each one is encrypted: its
    /// certificate with the subkey it announced as current. Shared by every copy, so a rotation
    /// (`session/rotation.rs`) reaches encryptions already under way on the crypto workers.
    encrypt_to: Arc<std::sync::RwLock<PublicCert>>,
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
            encrypt_to: Arc::new(std::sync::RwLock::new(peer.clone())),
            peer,
            own_close: Arc::default(),
        }
    }

    /// The peer's certificate as messages are encrypted to it now.
    pub fn encryption_target(&self) -> PublicCert {
        match self.encrypt_to.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// From now on, encrypt to `cert` (the peer's checked announcement of its new subkey).
    pub fn set_encryption_target(&self, cert: PublicCert) {
        match self.encrypt_to.write() {
            Ok(mut c) => *c = cert,
            Err(poisoned) => *poisoned.into_inner() = cert,
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
fn discussion_hello(discussion_id: &str, version: u16) -> (Frame, Nonce) {
    let nonce = random_nonce();
    let hello = Frame::Hello {
        version,
        purpose: Purpose::Discussion {
            discussion_id: discussion_id.to_string(),
            nonce,
        },
    };
    (hello, nonce)
}

/// Connecting side: send the hello, check the listener's proof, send ours. Returns the listener's
/// current discussion port (as it signed it). At this build's highest version, any agreed.
pub async fn authenticate_as_connector<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    keys: &impl Crypto,
    sk: &SessionKeys,
    deadline: Duration,
) -> Result<u16, NetError> {
    authenticate_as_connector_at(conn, keys, sk, Versions::default(), deadline)
        .await
        .map(|(port, _)| port)
}

/// [`authenticate_as_connector`] with the hello's version and the discussion's floor: returns the
/// listener's port and the agreed version. The listener signs its proof at the version it agreed
/// (`min(hello, its highest)`), which only its signature tells: the versions from `hello` down to
/// `floor` are tried, highest first, so a version below the floor is never accepted.
pub async fn authenticate_as_connector_at<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    keys: &impl Crypto,
    sk: &SessionKeys,
    versions: Versions,
    deadline: Duration,
) -> Result<(u16, u16), NetError> {
    let (hello, own_nonce) = discussion_hello(&sk.discussion_id, versions.hello);
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
    let floor = versions.floor.max(MIN_PROTOCOL_VERSION);
    let mut version = versions.hello;
    loop {
        let data = session_auth_data_at(
            version,
            &sk.discussion_id,
            sk.role.peer(),
            &own_nonce,
            &peer_nonce,
            port,
        );
        match keys
            .verify_detached(sk.peer.clone(), data, signature.clone())
            .await
        {
            Ok(()) => break,
            Err(e) if version <= floor => return Err(NetError::Auth(e)),
            Err(_) => version -= 1,
        }
    }
    let proof = session_auth_data_at(
        version,
        &sk.discussion_id,
        sk.role,
        &peer_nonce,
        &own_nonce,
        0,
    );
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
    Ok((port, version))
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
    tell_closed_as_connector_at(conn, keys, notice, PROTOCOL_VERSION, deadline).await
}

/// [`tell_closed_as_connector`] with the hello at `version` (1 for a peer that refused ours).
pub async fn tell_closed_as_connector_at<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    keys: &impl Crypto,
    notice: &CloseNotice,
    version: u16,
    deadline: Duration,
) -> Result<(), NetError> {
    send(
        conn,
        discussion_hello(&notice.discussion_id, version).0,
        deadline,
    )
    .await?;
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
/// At this build's highest version.
pub async fn authenticate_as_listener<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    keys: &impl Crypto,
    sk: &SessionKeys,
    connector_nonce: Nonce,
    listen_port: u16,
    deadline: Duration,
) -> Result<(), NetError> {
    let at = PROTOCOL_VERSION;
    authenticate_as_listener_at(conn, keys, sk, connector_nonce, listen_port, at, deadline).await
}

/// [`authenticate_as_listener`] at the `version` agreed from the hello: both proofs sign it.
pub async fn authenticate_as_listener_at<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    keys: &impl Crypto,
    sk: &SessionKeys,
    connector_nonce: Nonce,
    listen_port: u16,
    version: u16,
    deadline: Duration,
) -> Result<(), NetError> {
    let own_nonce = random_nonce();
    let proof = session_auth_data_at(
        version,
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
    let data = session_auth_data_at(
        version,
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
