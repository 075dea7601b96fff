//! What the core pushes without being asked: the events of a subscribed connection, and the two
//! notices that end a connection (`closing`, `lagged`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::response::{
    Contact, DeliveryState, Introduction, IntroductionState, Message, PendingRequest,
};

/// A node event (`{"method":"event","params":{"event": KIND, ...}}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A new contact, or a contact whose address, port or name changed.
    ContactSeen { contact: Contact },
    /// A known name is announced by a different key.
    KeyChanged {
        name: String,
        old_fingerprint: String,
        new_fingerprint: String,
    },
    /// Someone asks for a discussion.
    Request { request: PendingRequest },
    /// A peer asked for our contact list: how many contacts we shared (itself not counted), or
    /// that we refused (asked too often).
    ListRequested {
        peer_name: String,
        peer_fingerprint: String,
        shared: u64,
        refused: bool,
    },
    /// A request was withdrawn, timed out or decided.
    RequestClosed { request_id: u64, reason: String },
    /// A request turned away without asking the user (also in `requests {refused: true}`).
    RequestRefused {
        name: String,
        fingerprint: String,
        address: String,
        reason: String,
    },
    /// A discussion was established.
    DiscussionOpened {
        discussion_id: String,
        peer_name: String,
        peer_fingerprint: String,
    },
    /// A burned handshake attempt: wrong secret, interception, or a requester that did not confirm.
    HandshakeFailed {
        peer_fingerprint: String,
        reason: String,
    },
    /// A message arrived (stored and acknowledged) or was queued by us (stored).
    Message { message: Message },
    /// The delivery state of an outgoing message changed (`sent`, `delivered`).
    Delivery {
        discussion_id: String,
        seq: u64,
        state: DeliveryState,
    },
    /// The discussion's connection is up or down.
    Connection {
        discussion_id: String,
        connected: bool,
    },
    /// A discussion was closed (by us or by the peer).
    DiscussionClosed {
        discussion_id: String,
        by_peer: bool,
    },
    /// Our discussion encryption subkey `key_id` is active: the peer acknowledged it and encrypts
    /// to it; the one it replaces is being destroyed (issue 14, `rotate`).
    KeyRotated {
        discussion_id: String,
        key_id: String,
    },
    /// Someone introduces someone to us: accept or decline it (`accept_introduction`).
    Introduction { introduction: Introduction },
    /// An introduction made to us ended (used, declined, cancelled, expired): its secret is gone.
    IntroductionEnded {
        introduction: i64,
        state: IntroductionState,
    },
    /// An event this client does not know (a newer core of the same major version).
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

/// A notification line from the core (no `id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
pub enum Notification {
    /// An event, on a subscribed connection.
    Event(Event),
    /// The connection was idle and is closed; nothing sent after it was read.
    Closing { reason: String },
    /// The client fell behind its events and is disconnected; re-read `discussions` and `history`.
    Lagged {},
}

impl Notification {
    /// The JSON-RPC notification object.
    pub fn to_value(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("jsonrpc".into(), "2.0".into());
        }
        v
    }
}

impl From<crate::events::Event> for Event {
    fn from(e: crate::events::Event) -> Self {
        use crate::events::Event as E;
        match e {
            E::ContactSeen { contact } => Self::ContactSeen {
                contact: (&contact).into(),
            },
            E::KeyChanged {
                name,
                old_fingerprint,
                new_fingerprint,
            } => Self::KeyChanged {
                name,
                old_fingerprint,
                new_fingerprint,
            },
            E::Request { request } => Self::Request {
                request: (&request).into(),
            },
            E::RequestClosed { request_id, reason } => Self::RequestClosed { request_id, reason },
            E::ListRequested {
                peer_name,
                peer_fingerprint,
                shared,
                refused,
            } => Self::ListRequested {
                peer_name,
                peer_fingerprint,
                shared,
                refused,
            },
            E::RequestRefused {
                name,
                fingerprint,
                address,
                reason,
            } => Self::RequestRefused {
                name,
                fingerprint,
                address,
                reason,
            },
            E::DiscussionOpened {
                discussion_id,
                peer_name,
                peer_fingerprint,
            } => Self::DiscussionOpened {
                discussion_id,
                peer_name,
                peer_fingerprint,
            },
            E::HandshakeFailed {
                peer_fingerprint,
                reason,
            } => Self::HandshakeFailed {
                peer_fingerprint,
                reason,
            },
            E::Message { message } => Self::Message {
                message: (&message).into(),
            },
            E::Delivery {
                discussion_id,
                seq,
                state,
            } => Self::Delivery {
                discussion_id,
                seq,
                state: state.into(),
            },
            E::Connection {
                discussion_id,
                connected,
            } => Self::Connection {
                discussion_id,
                connected,
            },
            E::KeyRotated {
                discussion_id,
                key_id,
            } => Self::KeyRotated {
                discussion_id,
                key_id,
            },
            E::Introduction { introduction } => Self::Introduction {
                introduction: (&introduction).into(),
            },
            E::IntroductionEnded { local_id, state } => Self::IntroductionEnded {
                introduction: local_id,
                state: state.into(),
            },
            E::DiscussionClosed {
                discussion_id,
                by_peer,
            } => Self::DiscussionClosed {
                discussion_id,
                by_peer,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn notices_are_the_documented_lines() {
        assert_eq!(
            Notification::Closing {
                reason: "idle".into()
            }
            .to_value(),
            json!({"jsonrpc": "2.0", "method": "closing", "params": {"reason": "idle"}})
        );
        assert_eq!(
            Notification::Lagged {}.to_value(),
            json!({"jsonrpc": "2.0", "method": "lagged", "params": {}})
        );
        let e = Notification::Event(Event::Connection {
            discussion_id: "d".into(),
            connected: true,
        });
        assert_eq!(
            e.to_value(),
            json!({"jsonrpc": "2.0", "method": "event",
                   "params": {"event": "connection", "discussion_id": "d", "connected": true}})
        );
        let back: Notification = serde_json::from_value(e.to_value()).unwrap();
        assert_eq!(back, e);
    }
}
