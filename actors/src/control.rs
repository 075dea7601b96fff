//! The control channel's dispatch point: every received control message, once stored and
//! acknowledged by its [`DiscussionSession`](crate::session::DiscussionSession), comes here and is
//! routed by variant to the one handler of its exchange (`docs/protocol.md`, "Control channel").
//!
//! To add an exchange: a variant in [`crate::wire::Control`], an arm in [`dispatch`] calling a
//! handler in its own module, and whatever that handler needs as a field of [`ControlContext`]
//! (an actor address, set in `node.rs`). Handlers run off the session's actor; they must be
//! idempotent: a message whose handling a crash interrupted is handled again at start. A handler
//! answers the peer through [`Received::session`] with [`SendControl`](crate::session::SendControl).

use actix::Addr;
use thiserror::Error;

use crate::session::DiscussionSession;
use crate::wire::Control;

/// What handlers may use: given to every session by the directory, built once in `node.rs`.
#[derive(Clone)]
pub struct ControlContext {
    pub node: String,
    /// The contact-list exchange (`None` in tests that build sessions without it).
    pub exchange: Option<Addr<crate::exchange::ContactExchange>>,
    /// Introductions (`None` in tests that build sessions without it).
    pub introductions: Option<Addr<crate::introductions::Introductions>>,
}

/// One received control message.
pub struct Received {
    pub discussion_id: String,
    /// The peer's identity fingerprint (proven in the discussion's handshake).
    pub peer_fingerprint: String,
    pub peer_name: String,
    /// Its sequence number in the discussion.
    pub seq: u64,
    pub control: Control,
    /// The discussion's session: answer with [`crate::session::SendControl`].
    pub session: Addr<DiscussionSession>,
}

#[derive(Debug, Error)]
pub enum ControlError {
    #[error("no handler for this control message here")]
    NoHandler,
    #[error("handler unavailable")]
    Mailbox(#[from] actix::MailboxError),
}

/// Route a received control message to its handler.
pub async fn dispatch(cx: &ControlContext, m: Received) -> Result<(), ControlError> {
    match m.control {
        Control::ListRequest { .. }
        | Control::ListResponse { .. }
        | Control::ListRefused { .. } => {
            let exchange = cx.exchange.as_ref().ok_or(ControlError::NoHandler)?;
            exchange.send(crate::exchange::Receive(m)).await?;
            Ok(())
        }
        Control::Introduction(message) => {
            let introductions = cx.introductions.as_ref().ok_or(ControlError::NoHandler)?;
            introductions
                .send(crate::introductions::ControlIntroduction {
                    discussion_id: m.discussion_id,
                    from: m.peer_fingerprint,
                    message,
                })
                .await?;
            Ok(())
        }
        // The discussion's own business: its session keeps the secret (`session/rendezvous.rs`).
        Control::Rendezvous(message) => {
            m.session
                .send(crate::session::ReceiveRendezvous(message))
                .await?;
            Ok(())
        }
    }
}
