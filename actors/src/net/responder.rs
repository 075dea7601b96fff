//! The receiver's side of the handshake, after a `Hello { purpose: Handshake }`: the first sealed
//! frame decrypted within the budget of unauthenticated peers, the request checked (signed by the
//! certificate it carries, meant for us, fresh), the user's decision awaited, then SPAKE2 with key
//! confirmation and the `Ready` with the new discussion's port. Generic over the byte stream, the
//! [`Crypto`] and a [`ResponderHost`] (what the node does around the script: the listener's table
//! of requests, the guessing limits, the directory), so tests run it on in-memory pipes.

use std::error::Error as StdError;
use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use super::{
    frame_name, recv, recv_sealed_from, refuse_sealed, sanitize, send_sealed, Conn, Crypto,
    NetError,
};
use crate::admission::DecryptBudget;
use crate::crypto::{CryptoError, Decrypted, PublicCert, SecretCert};
use crate::events::now_secs;
use crate::handshake::{check_fresh, check_request, Agreed, HandshakeError, Responder};
use crate::wire::{FailReason, Frame, Handshake, RequestBody};

/// How the receiver's side ended without a discussion.
#[derive(Debug, Error)]
pub enum RespondError {
    #[error("{0}")]
    Net(#[from] NetError),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    /// The request, or the peer's confirmation, did not check out.
    #[error("{0}")]
    Handshake(#[from] HandshakeError),
    /// Turned away before the user was asked, or the peer gave up, or no decision came in time.
    #[error("{0}")]
    Failed(FailReason),
    /// We sent our key confirmation (`Accept`) and no valid `Confirm` came back.
    #[error(
        "{name} received our key confirmation but did not confirm ({why}): this may be someone \
         guessing the secret; it counts as a failed attempt"
    )]
    NotConfirmed {
        name: String,
        #[source]
        why: Unconfirmed,
    },
    /// The node could not keep the new discussion.
    #[error("{0}")]
    Create(Box<dyn StdError + Send + Sync>),
}

/// Why no valid `Confirm` came back after our `Accept`; the connection's error, when there was
/// one, kept as it is.
#[derive(Debug, Error)]
pub enum Unconfirmed {
    #[error("it hung up")]
    HungUp,
    #[error("it timed out")]
    TimedOut,
    #[error("{0}")]
    Net(#[source] NetError),
    #[error("it sent another handshake step")]
    OtherStep,
}

/// The user's decision on a request; `T` is whatever the node wants back with the outcome (the
/// listener: the channel that answers the user's `accept`).
pub enum Decision<T> {
    Accept { password: String, then: T },
    Refuse,
}

/// A request registered for the user's decision (its id, the channel the decision comes on), or
/// turned away with a reason.
pub type Arrival<T> = Result<(u64, oneshot::Receiver<Decision<T>>), FailReason>;

/// What the node does around the receiver's script.
pub trait ResponderHost {
    /// What comes back with an accepting [`Decision`].
    type Then;

    /// The peer's first frame verified: it may no longer be evicted for a newcomer.
    fn verified(&self);

    /// A checked, fresh request: register it for the user's decision (its id and the channel the
    /// decision comes on), or turn it away with a reason.
    fn arrived(&self, request: &RequestBody) -> impl Future<Output = Arrival<Self::Then>>;

    /// The request `id` ended before a decision (`reason` for the user).
    fn gone(&self, id: u64, reason: &str);

    /// A burned attempt by `fingerprint`: the user is told `reason`, and it counts against the
    /// guessing limits.
    fn failed(&self, fingerprint: &str, reason: String);

    /// Keep the new discussion; the port its listener took.
    fn create_discussion(
        &self,
        request: &RequestBody,
        agreed: Agreed,
        own_key: SecretCert,
        own_key_sealed: Vec<u8>,
    ) -> impl Future<Output = Result<u16, Box<dyn StdError + Send + Sync>>>;
}

/// Deadlines of the receiver's side.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// The first sealed frame (short: a peer that has proved nothing holds a slot meanwhile).
    pub first_frame: Duration,
    /// Each later step's read or write.
    pub step: Duration,
    /// How long a request waits for the user's decision.
    pub decision: Duration,
}

/// How the receiver's side ended well.
pub enum Responded<T> {
    /// The user refused (the peer was told).
    Refused,
    /// A discussion was opened (its id), and what came with the decision.
    Opened { discussion_id: String, then: T },
}

/// Run the receiver's side on `conn` for a peer at `from`. On an error after an accepting decision,
/// its `then` comes back with the error.
pub async fn respond<S, H>(
    conn: &mut Conn<S>,
    crypto: &impl Crypto,
    host: &H,
    budget: &DecryptBudget,
    from: IpAddr,
    deadlines: Deadlines,
) -> Result<Responded<H::Then>, (RespondError, Option<H::Then>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: ResponderHost,
{
    let deadline = deadlines.step;
    let fail = |e: RespondError| (e, None);
    let decrypted = match recv_unauthenticated(conn, crypto, budget, from, deadlines).await {
        Ok(d) => d,
        Err(e @ NetError::SealedFrameRefused) => {
            refuse_sealed(conn, deadline).await;
            return Err(fail(e.into()));
        }
        Err(e) => return Err(fail(e.into())),
    };
    let me = crypto.fingerprint().to_string();
    let checked = crypto
        .run(move |_| Ok(check_request(&decrypted, &me)))
        .await
        .map_err(|e| fail(e.into()))?;
    let (request, peer_cert) = match checked {
        Ok(x) => x,
        Err(e) => {
            // One fixed text whatever failed (the request is not answered with anything derived
            // from its plaintext), and unsealed: we cannot seal to a certificate we could not check.
            refuse_sealed(conn, deadline).await;
            return Err(fail(e.into()));
        }
    };
    host.verified();
    if let Err(e) = check_fresh(&request, now_secs()) {
        let step = Handshake::Failed { reason: e.reason() };
        let _ = send_sealed(conn, crypto, &peer_cert, &step, deadline).await;
        return Err(fail(e.into()));
    }
    let (id, decision) = match host.arrived(&request).await {
        Ok(x) => x,
        Err(reason) => {
            let step = Handshake::Failed { reason };
            let _ = send_sealed(conn, crypto, &peer_cert, &step, deadline).await;
            return Err(fail(RespondError::Failed(reason)));
        }
    };
    // Wait for the user, or for the requester to give up (any frame or EOF ends the wait).
    let decision = tokio::select! {
        d = decision => d.ok(),
        _ = conn.next() => {
            host.gone(id, "withdrawn by the requester");
            return Err(fail(NetError::Closed.into()));
        }
        _ = tokio::time::sleep(deadlines.decision) => None,
    };
    let Some(decision) = decision else {
        host.gone(id, "no decision in time");
        let step = Handshake::Failed {
            reason: FailReason::Timeout,
        };
        let _ = send_sealed(conn, crypto, &peer_cert, &step, deadline).await;
        return Err(fail(RespondError::Failed(FailReason::Timeout)));
    };
    let (password, then) = match decision {
        Decision::Refuse => {
            let step = Handshake::Refused {
                nonce: request.nonce,
                reason: "the user declined".into(),
            };
            send_sealed(conn, crypto, &peer_cert, &step, deadline)
                .await
                .map_err(|e| fail(e.into()))?;
            return Ok(Responded::Refused);
        }
        Decision::Accept { password, then } => (password, then),
    };
    match finish(conn, crypto, host, &request, &peer_cert, password, deadline).await {
        Ok(discussion_id) => Ok(Responded::Opened {
            discussion_id,
            then,
        }),
        Err(e) => Err((e, Some(then))),
    }
}

/// The first sealed frame of a connection, decrypted within the crypto budget of unauthenticated
/// peers: a few decryptions per address, one at a time in all.
async fn recv_unauthenticated<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    crypto: &impl Crypto,
    budget: &DecryptBudget,
    from: IpAddr,
    deadlines: Deadlines,
) -> Result<Decrypted, NetError> {
    let bytes = match recv(conn, deadlines.first_frame).await? {
        Frame::Sealed(bytes) => bytes,
        other => return Err(NetError::Unexpected(frame_name(&other))),
    };
    if !budget.spend(from, Instant::now()) {
        return Err(NetError::OverBudget);
    }
    let _running = budget.run_permit().await;
    crypto
        .unseal(bytes)
        .await
        .map_err(|_| NetError::SealedFrameRefused)
}

/// After the user accepted with `password`: SPAKE2 and key confirmation, the discussion kept,
/// `Ready` sent.
async fn finish<S: AsyncRead + AsyncWrite + Unpin, H: ResponderHost>(
    conn: &mut Conn<S>,
    crypto: &impl Crypto,
    host: &H,
    request: &RequestBody,
    peer_cert: &PublicCert,
    password: String,
    deadline: Duration,
) -> Result<String, RespondError> {
    let (own_key, own_key_sealed) = crypto
        .new_discussion_key(format!("pgpchat discussion with {}", request.name))
        .await?;
    let me = crypto.fingerprint().to_string();
    let (req, dpub) = (request.clone(), own_key.public().clone());
    let (responder, accept) = crypto
        .run(move |_| Ok(Responder::accept(&req, &me, &dpub, password.as_bytes())))
        .await??;
    send_sealed(
        conn,
        crypto,
        peer_cert,
        &Handshake::Accept(accept),
        deadline,
    )
    .await?;
    // From here the requester can test its guess of the secret against our confirmation: any end
    // but a valid `Confirm` is a failed attempt (else it could guess, then hang up).
    let answer = recv_sealed_from(conn, crypto, peer_cert, deadline).await;
    let agreed = match answer {
        Ok(Handshake::Confirm { confirm }) => match responder.on_confirm(&confirm) {
            Ok(a) => a,
            Err(e) => {
                let step = Handshake::Failed { reason: e.reason() };
                let _ = send_sealed(conn, crypto, peer_cert, &step, deadline).await;
                host.failed(&request.from, e.reason().to_string());
                return Err(e.into());
            }
        },
        Ok(Handshake::Failed { reason }) => {
            host.failed(&request.from, reason.to_string());
            return Err(RespondError::Failed(reason));
        }
        other => {
            let why = match other {
                Err(NetError::Closed) => Unconfirmed::HungUp,
                Err(NetError::Timeout) => Unconfirmed::TimedOut,
                Err(e) => Unconfirmed::Net(e),
                Ok(_) => Unconfirmed::OtherStep,
            };
            let step = Handshake::Failed {
                reason: FailReason::Protocol,
            };
            let _ = send_sealed(conn, crypto, peer_cert, &step, deadline).await;
            let e = RespondError::NotConfirmed {
                name: sanitize(&request.name),
                why,
            };
            host.failed(&request.from, e.to_string());
            return Err(e);
        }
    };
    let discussion_id = agreed.discussion_id.clone();
    let port = host
        .create_discussion(request, agreed, own_key, own_key_sealed)
        .await
        .map_err(RespondError::Create)?;
    let ready = Handshake::Ready {
        discussion_id: discussion_id.clone(),
        port,
    };
    send_sealed(conn, crypto, peer_cert, &ready, deadline).await?;
    Ok(discussion_id)
}
