//! The results of the methods (`result` on the wire), and the objects inside them. These are the
//! API's own types: the core converts its store rows and actor answers into them here, so the
//! store's rows can change without the API changing.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::version::VersionInfo;
use crate::redact::Hidden;

/// Answer of `whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WhoAmI {
    /// The name in the identity key.
    pub name: String,
    /// The identity key's fingerprint (hex).
    pub fingerprint: String,
    /// The node's name (the profile's).
    pub node: String,
    /// The main TCP port.
    pub tcp_port: u16,
    pub data_dir: PathBuf,
}

/// Discovery counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DiscoveryCounters {
    pub received: u64,
    pub dropped_malformed: u64,
    pub dropped_busy: u64,
    pub dropped_bad_signature: u64,
    pub accepted: u64,
    pub replies_sent: u64,
    pub announces_sent: u64,
}

/// Answer of `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Status {
    pub whoami: WhoAmI,
    pub version: VersionInfo,
    pub discovery: DiscoveryCounters,
    /// The Mainline DHT (issue 11). Absent from cores before it: off.
    #[serde(default)]
    pub dht: DhtInfo,
}

/// How the node stands on the Mainline DHT.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DhtInfo {
    /// `[dht] enabled` in the settings; every other field is empty or zero when false.
    pub enabled: bool,
    /// The node's DHT socket (`ip:port`, UDP).
    pub local_address: Option<String>,
    /// The address other DHT nodes see for this node (`ip:port`), once some have answered.
    pub public_address: Option<String>,
    /// The DHT's UDP port does not look reachable from outside (`mainline`'s "firewalled"). Says
    /// nothing about the chat's TCP port.
    pub firewalled: bool,
    /// Discussions whose rendezvous records this node publishes.
    pub tracked: u64,
    /// Lookups sent to the DHT since the core started.
    pub lookups: u64,
    /// Records stored, and puts that failed, since the core started.
    pub puts: u64,
    pub put_failures: u64,
}

/// A contact seen on the network (or in a handshake).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Contact {
    pub fingerprint: String,
    /// The name it announces (chosen by the peer: escape it before printing).
    pub name: String,
    pub address: String,
    pub tcp_port: u16,
    pub first_seen: u64,
    pub last_seen: u64,
    pub verified: bool,
    /// Another key announced this name first: this is *not* the person you knew.
    pub key_changed: bool,
    /// Where the contact came from (recorded once). Absent from cores before API 1.1.
    #[serde(default)]
    pub origin: ContactOrigin,
    /// Met through an introduction by this contact (recorded once; never makes it verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced_by: Option<Introducer>,
}

/// Where a contact came from: `{"kind": "broadcast"}`, `{"kind": "added"}`,
/// `{"kind": "via", "fingerprint": .., "name": ..}`, `{"kind": "introduced", ..}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ContactOrigin {
    /// Heard by broadcast on our network segment.
    #[default]
    Broadcast,
    /// Added by address (`add_contact`).
    Added,
    /// Learned from the contact list of this peer (its fingerprint, and its name then).
    Via { fingerprint: String, name: String },
    /// Introduced by this peer (its fingerprint, and its name then). Not verified.
    Introduced { fingerprint: String, name: String },
}

impl std::fmt::Display for ContactOrigin {
    /// `broadcast`, `added`, `via NAME`, `introduced by NAME` (NAME chosen by a peer: escape it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Broadcast => f.write_str("broadcast"),
            Self::Added => f.write_str("added"),
            Self::Via { name, .. } => write!(f, "via {name}"),
            Self::Introduced { name, .. } => write!(f, "introduced by {name}"),
        }
    }
}

/// Who introduced a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Introducer {
    pub fingerprint: String,
    /// Its name (chosen by the peer: escape it before printing).
    pub name: String,
}

/// Where an introduction made to us stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IntroductionState {
    /// Waiting for our decision.
    Pending,
    /// We accepted; waiting for the other side.
    Accepted,
    /// Both accepted: the side with the lower fingerprint dials.
    Ready,
    /// A discussion opened through it.
    Used,
    /// We declined.
    Declined,
    /// The other side declined.
    Cancelled,
    /// Its window passed.
    Expired,
}

/// An introduction made to us: `introducer` introduces `peer` to us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Introduction {
    /// Our number for it (what `accept_introduction` takes).
    pub id: i64,
    pub introducer: Introducer,
    /// The person introduced (name chosen by the peer; escape it before printing).
    pub peer_name: String,
    pub peer_fingerprint: String,
    /// Where the introducer reaches the peer: a hint only.
    pub peer_address: String,
    pub peer_port: u16,
    /// The peer's name is known here with another key: this may not be who you think.
    pub key_changed: bool,
    pub state: IntroductionState,
    pub received: u64,
    /// When it ends (its secret destroyed) if not used before.
    pub expires: u64,
    /// The discussion it opened, once used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discussion_id: Option<String>,
}

/// Answer of `introduce`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Introduced {
    /// The introduction's id (the same at both sides).
    pub introduction: String,
}

/// Answer of `block`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BlockAnswer {
    /// The fingerprint, normalised (upper case, no spaces).
    pub fingerprint: String,
    pub blocked: bool,
}

/// An incoming discussion request waiting for the user's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PendingRequest {
    pub id: u64,
    pub name: String,
    pub fingerprint: String,
    pub address: String,
    pub received: u64,
    /// The requester's name is known with another key.
    pub key_changed: bool,
}

/// A request turned away without asking the user (guessing limits, a full queue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Refusal {
    pub name: String,
    pub fingerprint: String,
    pub address: String,
    pub time: u64,
    /// Which limit refused it.
    pub reason: String,
}

/// Answer of `requests`: pending requests, or (with `refused: true`) refusals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RequestList {
    Pending(Vec<PendingRequest>),
    Refused(Vec<Refusal>),
}

/// Who asked for the discussion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Requester,
    Receiver,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiscussionState {
    Open,
    /// Closed here; the peer has not confirmed yet (it is told on the next connection).
    Closing,
    Closed,
}

/// One discussion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Discussion {
    pub id: String,
    pub peer_fingerprint: String,
    pub peer_name: String,
    pub role: Role,
    pub state: DiscussionState,
    pub created: u64,
    pub unread: u64,
    pub messages: u64,
    pub last_activity: u64,
    /// Closed here with `force`; the peer has not confirmed yet (it is told when reachable).
    pub peer_not_told: bool,
    /// Our current encryption key of the discussion (the subkey id the peer encrypts to; absent
    /// once closed: every key is destroyed). Since API 1.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// When that key replaced the previous one (seconds since the epoch); absent if it never
    /// rotated. Since API 1.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

/// Outgoing: stored → sent → delivered. Incoming: received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Stored,
    Sent,
    Delivered,
    Received,
}

/// One message. Its `Debug` hides the body.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Message {
    pub discussion_id: String,
    pub direction: Direction,
    pub seq: u64,
    pub time: u64,
    /// Exactly what was sent (escape it before printing).
    pub body: String,
    pub state: DeliveryState,
    /// In `history` answers: the message's place in its discussion (1 = the first, in the order
    /// history shows them), what `history`'s `before` and `after` take. Absent in events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("discussion_id", &self.discussion_id)
            .field("direction", &self.direction)
            .field("seq", &self.seq)
            .field("time", &self.time)
            .field("body", &Hidden::of(&self.body))
            .field("state", &self.state)
            .field("position", &self.position)
            .finish()
    }
}

/// Answer of `contacts_from`: what merging the peer's list did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListMerged {
    /// Names of the new contacts (origin `via NAME FINGERPRINT`).
    pub learned: Vec<String>,
    /// Entries for contacts already known (they keep their origin).
    pub known: u64,
    /// Names of new contacts whose name was known with another key (also a `key_changed` event).
    pub key_changed: Vec<String>,
    /// Entries not merged: the contact table is full of kept contacts.
    pub no_room: u64,
    /// Entries dropped: malformed, or their signed announce did not verify.
    pub dropped: u64,
    /// Entries of blocked fingerprints, ignored.
    pub blocked: u64,
    /// The origin recorded for the new contacts (`via` the peer asked). Absent from earlier cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<ContactOrigin>,
}

impl From<crate::exchange::ListOutcome> for ListMerged {
    fn from(o: crate::exchange::ListOutcome) -> Self {
        Self {
            learned: o.merged.learned,
            known: o.merged.known,
            key_changed: o.merged.key_changed,
            no_room: o.merged.no_room,
            dropped: o.dropped,
            blocked: o.blocked,
            origin: Some((&o.origin).into()),
        }
    }
}

/// Answer of `never_share`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NeverShared {
    pub fingerprint: String,
    pub never_share: bool,
}

/// Answer of `open` and `accept`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Opened {
    pub discussion_id: String,
}

/// Answer of `cancel`: how many of our requests to the contact were withdrawn (0: none was
/// waiting, it was answered already).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Cancelled {
    pub cancelled: u64,
}

/// Answer of `refuse` (always true).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RefusedAnswer {
    pub refused: bool,
}

/// Answer of `mark_read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MarkedRead {
    pub discussion_id: String,
}

/// Answer of `rotate`: our new encryption key (pending until the peer acknowledges it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Rotated {
    pub discussion_id: String,
    /// The new encryption subkey's key id (16 upper-case hex digits).
    pub key_id: String,
}

/// Answer of `close`: `closing` (the peer confirms later) or `closed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CloseAnswer {
    pub discussion_id: String,
    pub state: DiscussionState,
}

/// Answer of `shutdown` (always true).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Stopping {
    pub stopping: bool,
}

/// Answer of `subscribe` (always true); event notifications follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Subscribed {
    pub subscribed: bool,
}

// Conversions from the core's own types: the one place that knows both.

impl From<&crate::store::ContactRecord> for Contact {
    fn from(c: &crate::store::ContactRecord) -> Self {
        Self {
            fingerprint: c.fingerprint.clone(),
            name: c.name.clone(),
            address: c.address.clone(),
            tcp_port: c.tcp_port,
            first_seen: c.first_seen,
            last_seen: c.last_seen,
            verified: c.verified,
            key_changed: c.key_changed,
            origin: (&c.origin).into(),
            introduced_by: None,
        }
    }
}

impl From<&crate::store::ContactOrigin> for ContactOrigin {
    fn from(o: &crate::store::ContactOrigin) -> Self {
        use crate::store::ContactOrigin as O;
        match o.clone() {
            O::Broadcast => Self::Broadcast,
            O::Added => Self::Added,
            O::Via { fingerprint, name } => Self::Via { fingerprint, name },
            O::Introduced { fingerprint, name } => Self::Introduced { fingerprint, name },
        }
    }
}

impl From<crate::introduction::IntroState> for IntroductionState {
    fn from(s: crate::introduction::IntroState) -> Self {
        use crate::introduction::IntroState as S;
        match s {
            S::Pending => Self::Pending,
            S::Accepted => Self::Accepted,
            S::Ready => Self::Ready,
            S::Used => Self::Used,
            S::Declined => Self::Declined,
            S::Cancelled => Self::Cancelled,
            S::Expired => Self::Expired,
        }
    }
}

impl From<&crate::store::introductions::ReceivedIntroduction> for Introduction {
    fn from(i: &crate::store::introductions::ReceivedIntroduction) -> Self {
        Self {
            id: i.local_id,
            introducer: Introducer {
                fingerprint: i.introducer_fingerprint.clone(),
                name: i.introducer_name.clone(),
            },
            peer_name: i.peer_name.clone(),
            peer_fingerprint: i.peer_fingerprint.clone(),
            peer_address: i.peer_address.clone(),
            peer_port: i.peer_port,
            key_changed: i.key_changed,
            state: i.state.into(),
            received: i.received,
            expires: i.expires,
            discussion_id: i.discussion_id.clone(),
        }
    }
}

impl From<crate::store::DiscussionState> for DiscussionState {
    fn from(s: crate::store::DiscussionState) -> Self {
        use crate::store::DiscussionState as S;
        match s {
            S::Open => Self::Open,
            S::Closing => Self::Closing,
            S::Closed => Self::Closed,
        }
    }
}

impl From<crate::store::Direction> for Direction {
    fn from(d: crate::store::Direction) -> Self {
        match d {
            crate::store::Direction::In => Self::In,
            crate::store::Direction::Out => Self::Out,
        }
    }
}

impl From<crate::store::DeliveryState> for DeliveryState {
    fn from(s: crate::store::DeliveryState) -> Self {
        use crate::store::DeliveryState as S;
        match s {
            S::Stored => Self::Stored,
            S::Sent => Self::Sent,
            S::Delivered => Self::Delivered,
            S::Received => Self::Received,
        }
    }
}

impl From<&crate::store::MessageRecord> for Message {
    fn from(m: &crate::store::MessageRecord) -> Self {
        Self {
            discussion_id: m.discussion_id.clone(),
            direction: m.direction.into(),
            seq: m.seq,
            time: m.time,
            body: m.body.clone(),
            state: m.state.into(),
            position: None,
        }
    }
}

impl From<&crate::store::DiscussionSummary> for Discussion {
    fn from(d: &crate::store::DiscussionSummary) -> Self {
        let role = match d.role {
            crate::wire::Role::Requester => Role::Requester,
            crate::wire::Role::Receiver => Role::Receiver,
        };
        Self {
            id: d.id.clone(),
            peer_fingerprint: d.peer_fingerprint.clone(),
            peer_name: d.peer_name.clone(),
            role,
            state: d.state.into(),
            created: d.created,
            unread: d.unread,
            messages: d.messages,
            last_activity: d.last_activity,
            peer_not_told: d.peer_not_told,
            key_id: d.key_id.clone(),
            last_rotation: d.last_rotation,
        }
    }
}

impl From<&crate::events::RequestInfo> for PendingRequest {
    fn from(r: &crate::events::RequestInfo) -> Self {
        Self {
            id: r.id,
            name: r.name.clone(),
            fingerprint: r.fingerprint.clone(),
            address: r.address.clone(),
            received: r.received,
            key_changed: r.key_changed,
        }
    }
}

impl From<&crate::events::RefusedRequest> for Refusal {
    fn from(r: &crate::events::RefusedRequest) -> Self {
        Self {
            name: r.name.clone(),
            fingerprint: r.fingerprint.clone(),
            address: r.address.clone(),
            time: r.time,
            reason: r.reason.clone(),
        }
    }
}

impl From<crate::discovery::DiscoveryStats> for DiscoveryCounters {
    fn from(s: crate::discovery::DiscoveryStats) -> Self {
        Self {
            received: s.received,
            dropped_malformed: s.dropped_malformed,
            dropped_busy: s.dropped_busy,
            dropped_bad_signature: s.dropped_bad_signature,
            accepted: s.accepted,
            replies_sent: s.replies_sent,
            announces_sent: s.announces_sent,
        }
    }
}

impl From<crate::node::WhoAmI> for WhoAmI {
    fn from(w: crate::node::WhoAmI) -> Self {
        Self {
            name: w.name,
            fingerprint: w.fingerprint,
            node: w.node,
            tcp_port: w.tcp_port,
            data_dir: w.data_dir,
        }
    }
}
