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
    /// The protocol version of the connection it came on: an exchange newer than that is dropped
    /// ([`allowed_at`]).
    pub version: u16,
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
    /// The handler could not store its step (nothing changed): the message stays unhandled and
    /// is handled again at the next start.
    #[error("not done, handled again at the next start: {0}")]
    NotDone(String),
}

/// Whether `control` may arrive on a connection agreed at `version`: a variant newer than the
/// connection (a peer that agreed on an older version cannot mean it) is dropped.
pub fn allowed_at(control: &Control, version: u16) -> bool {
    match control {
        Control::Rendezvous(_) => version >= crate::wire::RENDEZVOUS_VERSION,
        Control::Rotation(_) => version >= crate::wire::ROTATION_VERSION,
        _ => true,
    }
}

/// Route a received control message to its handler.
pub async fn dispatch(cx: &ControlContext, m: Received) -> Result<(), ControlError> {
    if !allowed_at(&m.control, m.version) {
        // Dropped with no state change; marked handled like any other (it will not come back).
        log::debug!(
            "[{}] {}: control {} dropped: not at version {}",
            cx.node,
            m.discussion_id,
            m.seq,
            m.version
        );
        return Ok(());
    }
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
        // The discussion's own keys (`session/rotation.rs`).
        Control::Rotation(message) => m
            .session
            .send(crate::session::ReceiveRotation {
                seq: m.seq,
                message,
            })
            .await?
            .map_err(|e| ControlError::NotDone(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{RendezvousMessage, SecretBytes, RENDEZVOUS_VERSION};

    /// Issue 11 finding 9: a rendezvous message on a connection below `RENDEZVOUS_VERSION` is
    /// not dispatched.
    #[test]
    fn a_rendezvous_message_below_its_version_is_dropped() {
        for m in [
            Control::Rendezvous(RendezvousMessage::Wanted),
            Control::Rendezvous(RendezvousMessage::Secret(SecretBytes([1; 32]))),
        ] {
            assert!(!allowed_at(&m, RENDEZVOUS_VERSION - 1));
            assert!(allowed_at(&m, RENDEZVOUS_VERSION));
        }
        assert!(allowed_at(&Control::ListRefused { request_id: 1 }, 2));
    }
}
