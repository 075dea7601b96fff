//! Node events, fanned out to every subscribed front-end (`pgpchat watch`, the prompt).
//!
//! A bounded broadcast channel: a subscriber that falls more than `limits.ipc_event_queue` events
//! behind is told it lagged and is disconnected by the IPC layer; it can re-sync from history.
//! Events are informational: everything they say is also in the store.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::store::{ContactRecord, DeliveryState, MessageRecord};

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A contact announced itself for the first time (or under a new address or name).
    ContactSeen { contact: ContactRecord },
    /// A known name is announced by a different key.
    KeyChanged {
        name: String,
        old_fingerprint: String,
        new_fingerprint: String,
    },
    /// Someone asks for a discussion.
    Request { request: RequestInfo },
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
    /// A checked request was turned away without asking the user (guessing limits, a full
    /// queue): who asked, from where, and why.
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
    /// A handshake failed (a burned attempt: it counts against the guessing limits).
    HandshakeFailed {
        peer_fingerprint: String,
        reason: String,
    },
    /// A message arrived (stored and acknowledged) or was queued by us.
    Message { message: MessageRecord },
    /// Delivery state of an outgoing message changed.
    Delivery {
        discussion_id: String,
        seq: u64,
        state: DeliveryState,
    },
    /// The discussion connection is up or down.
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
    /// Someone introduces someone to us: accept or decline it.
    Introduction {
        introduction: crate::store::introductions::ReceivedIntroduction,
    },
    /// An introduction ended: used, declined, cancelled (the other side declined) or expired;
    /// its secret is gone.
    IntroductionEnded {
        local_id: i64,
        state: crate::introduction::IntroState,
    },
}

/// A request turned away without asking the user (kept in a short list for `requests`).
#[derive(Debug, Clone, Serialize)]
pub struct RefusedRequest {
    pub name: String,
    pub fingerprint: String,
    pub address: String,
    pub time: u64,
    pub reason: String,
}

/// An incoming discussion request waiting for the user's decision.
#[derive(Debug, Clone, Serialize)]
pub struct RequestInfo {
    pub id: u64,
    pub name: String,
    pub fingerprint: String,
    pub address: String,
    pub received: u64,
    /// The requester's name is known with another key.
    pub key_changed: bool,
}

#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    node: std::sync::Arc<str>,
}

impl EventBus {
    pub fn new(capacity: usize, node: &str) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Self {
            tx,
            node: node.into(),
        }
    }

    pub fn emit(&self, e: Event) {
        log::debug!("[{}] event {:?}", self.node, e);
        // No subscriber is fine: the store has it all.
        let _ = self.tx.send(e);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
