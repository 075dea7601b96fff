//! The store's row types: what a query returns and what a write takes. Some of them are also
//! today's IPC answers (their serde form is the JSON front-ends read, so it does not change here).
//!
//! States, roles and directions are Rust enums stored as short text columns (`'open'`, `'out'`,
//! `'delivered'`, `'requester'`…) through [`rusqlite::types::ToSql`] / [`FromSql`]: a value no
//! variant spells is an [`UnknownValue`] error when read, never a silent default.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::Serialize;
use thiserror::Error;

use crate::wire::Role;

/// A text column held a value that no variant of its enum spells (a store written by something
/// else, or damaged). Reported as a conversion error of the query that read it.
#[derive(Debug, Error)]
#[error("unknown {column} '{value}' in the store")]
pub struct UnknownValue {
    /// What the column holds ("discussion state", "role"…).
    pub column: &'static str,
    pub value: String,
}

/// An enum kept as a text column: its SQL spelling both ways, with no fallback.
macro_rules! text_column {
    ($ty:ident, $what:literal, $($variant:ident => $text:literal),+ $(,)?) => {
        impl $ty {
            /// The text stored in the column (also the JSON form).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
            /// The variant spelled `s` in the column, if any.
            pub fn from_column(s: &str) -> Option<Self> {
                match s {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }
        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }
        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let s = value.as_str()?;
                Self::from_column(s).ok_or_else(|| {
                    FromSqlError::Other(Box::new(UnknownValue {
                        column: $what,
                        value: s.to_string(),
                    }))
                })
            }
        }
    };
}

/// A contact seen on the network (or in a handshake).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactRecord {
    pub fingerprint: String,
    pub name: String,
    #[serde(skip)]
    pub cert: Vec<u8>,
    pub address: String,
    pub tcp_port: u16,
    pub first_seen: u64,
    pub last_seen: u64,
    /// Time inside the newest announce accepted (older announces are replays).
    #[serde(skip)]
    pub announce_time: u64,
    pub verified: bool,
    /// Another key already announced this name: this contact is not the one you knew.
    pub key_changed: bool,
    /// Where the contact came from: set once, from the message that brought it, never rewritten.
    pub origin: ContactOrigin,
    /// Its own last signed announce, unpadded (`bincode(Announce)`), to relay it unchanged; empty
    /// for contacts stored before issue 10 until their next announce.
    #[serde(skip)]
    pub announce: Vec<u8>,
    /// Set when the user added it by address: it is then re-probed while broadcast cannot reach it.
    #[serde(skip)]
    pub probe: Option<ProbeState>,
}

/// Where a contact came from ([`ContactRecord::origin`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ContactOrigin {
    /// Heard by broadcast on our network segment.
    Broadcast,
    /// Added by the user by address (`add-contact HOST:PORT`).
    Added,
    /// Learned from the contact list of the peer `fingerprint` (then called `name`).
    Via { fingerprint: String, name: String },
    /// Introduced by the peer `fingerprint` (then called `name`).
    Introduced { fingerprint: String, name: String },
}

impl ContactOrigin {
    /// The `origin` column's text.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Broadcast => "broadcast",
            Self::Added => "added",
            Self::Via { .. } => "via",
            Self::Introduced { .. } => "introduced",
        }
    }

    /// The peer it came through (via, introduced), as `(fingerprint, name)`.
    pub fn peer(&self) -> Option<(&str, &str)> {
        match self {
            Self::Via { fingerprint, name } | Self::Introduced { fingerprint, name } => {
                Some((fingerprint, name))
            }
            Self::Broadcast | Self::Added => None,
        }
    }

    /// Read back from the columns `origin`, `origin_fingerprint`, `origin_name`.
    pub fn from_columns(kind: &str, fingerprint: String, name: String) -> Option<Self> {
        Some(match kind {
            "broadcast" => Self::Broadcast,
            "added" => Self::Added,
            "via" => Self::Via { fingerprint, name },
            "introduced" => Self::Introduced { fingerprint, name },
            _ => return None,
        })
    }
}

/// How a contact added by address is re-probed ([`crate::contacts::probing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeState {
    /// `HOST:PORT` as the user gave it (a name is resolved again at each probe).
    pub address: String,
    /// Probes without an answer since the last answer (the backoff's exponent).
    pub failures: u32,
    /// Not probed before this time (seconds since the Unix epoch).
    pub next: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscussionState {
    Open,
    /// We closed it; the peer has not confirmed yet (it is told on the next connection).
    Closing,
    Closed,
}

text_column!(DiscussionState, "discussion state",
    Open => "open", Closing => "closing", Closed => "closed");

/// The role column: [`Role`] is the wire's type (its serde form is the wire's), stored as its
/// [`Role::as_str`].
impl ToSql for Role {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Role {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_str()? {
            "requester" => Ok(Role::Requester),
            "receiver" => Ok(Role::Receiver),
            s => Err(FromSqlError::Other(Box::new(UnknownValue {
                column: "role",
                value: s.to_string(),
            }))),
        }
    }
}

/// A role in JSON as in the column ("requester", "receiver"), as front-ends have always read it.
fn role_as_str<S: serde::Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(role.as_str())
}

/// A discussion with everything needed to resume it after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscussionRecord {
    pub id: String,
    pub peer_fingerprint: String,
    pub peer_name: String,
    pub role: Role,
    pub state: DiscussionState,
    pub created: u64,
    /// Our discussion secret key, sealed for this node only ([`crate::at_rest`], useless without
    /// the passphrase); empty once destroyed. Kept in the `discussion_keys` table, not in the
    /// `discussions` row.
    pub own_key_sealed: Vec<u8>,
    /// The peer's public discussion key (binary OpenPGP).
    pub peer_key: Vec<u8>,
    /// Requester: where the receiver's discussion listener is. Receiver: unused.
    pub peer_address: String,
    pub peer_port: u16,
    /// Receiver: the port of our discussion listener (reused after a restart when free).
    pub listen_port: u16,
    /// The highest protocol version the peer has authenticated at (the downgrade defence's floor).
    pub peer_version: u16,
}

impl DiscussionRecord {
    pub fn role(&self) -> Role {
        self.role
    }
}

/// A discussion's id, peer and state (what resolving a name needs).
#[derive(Debug, Clone, PartialEq)]
pub struct DiscussionRef {
    pub id: String,
    pub peer_name: String,
    pub peer_fingerprint: String,
    pub state: DiscussionState,
}

/// One line of `discussions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiscussionSummary {
    pub id: String,
    pub peer_fingerprint: String,
    pub peer_name: String,
    #[serde(serialize_with = "role_as_str")]
    pub role: Role,
    pub state: DiscussionState,
    pub created: u64,
    pub unread: u64,
    pub messages: u64,
    pub last_activity: u64,
    /// Closed here with `close --force`; the peer has not confirmed yet (it is told when reachable).
    pub peer_not_told: bool,
    /// Our active encryption subkey (issue 14); `None` once closed.
    pub key_id: Option<String>,
    /// When it became active, if it replaced another (a rotation).
    pub last_rotation: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

text_column!(Direction, "message direction", In => "in", Out => "out");

/// Delivery state. Outgoing: stored → sent → delivered. Incoming: received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Stored,
    Sent,
    Delivered,
    Received,
}

text_column!(DeliveryState, "delivery state",
    Stored => "stored", Sent => "sent", Delivered => "delivered", Received => "received");

/// What a `messages` row holds: a chat text, or a control message (`docs/protocol.md`, "Control
/// channel"), never shown in history nor counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Control,
}

text_column!(MessageKind, "message kind", Text => "text", Control => "control");

/// One undelivered outgoing row, of either kind (for a control message, `record.body` is the hex
/// of `bincode(Control)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub kind: MessageKind,
    pub record: MessageRecord,
}

/// Which messages of a discussion `history` answers: at most `limit`, between the positions
/// `after` and `before` (both excluded; 1 is the first message). With only `after`, the first
/// `limit` after it (paging forward); otherwise the last `limit` before `before` (or the end).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryPage {
    pub limit: u64,
    pub before: Option<u64>,
    pub after: Option<u64>,
}

#[derive(Clone, PartialEq, Serialize)]
pub struct MessageRecord {
    pub discussion_id: String,
    pub direction: Direction,
    pub seq: u64,
    pub time: u64,
    pub body: String,
    pub state: DeliveryState,
}

/// The text never shows: events are logged with `{:?}`.
impl std::fmt::Debug for MessageRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageRecord")
            .field("discussion_id", &self.discussion_id)
            .field("direction", &self.direction)
            .field("seq", &self.seq)
            .field("time", &self.time)
            .field("body", &crate::redact::Hidden::of(&self.body))
            .field("state", &self.state)
            .finish()
    }
}

/// What became of an incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// New, stored now.
    Stored,
    /// Already stored (a re-send after a lost ack).
    Duplicate,
    /// A sequence number beyond the next expected one: not stored, the sender re-sends.
    Gap { expected: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The column text is the JSON text, for every variant, and reads back to the same variant.
    #[test]
    fn every_enum_column_round_trips_and_matches_its_json() {
        fn check<T: ToSql + FromSql + Serialize + PartialEq + std::fmt::Debug>(v: T) {
            let text = match v.to_sql().unwrap() {
                ToSqlOutput::Borrowed(ValueRef::Text(t)) => String::from_utf8(t.to_vec()).unwrap(),
                other => panic!("{other:?}"),
            };
            assert_eq!(serde_json::to_value(&v).unwrap(), serde_json::json!(text));
            assert_eq!(
                T::column_result(ValueRef::Text(text.as_bytes())).unwrap(),
                v
            );
        }
        for s in [
            DiscussionState::Open,
            DiscussionState::Closing,
            DiscussionState::Closed,
        ] {
            check(s);
        }
        for d in [Direction::In, Direction::Out] {
            check(d);
        }
        for s in [
            DeliveryState::Stored,
            DeliveryState::Sent,
            DeliveryState::Delivered,
            DeliveryState::Received,
        ] {
            check(s);
        }
        for r in [Role::Requester, Role::Receiver] {
            assert_eq!(
                Role::column_result(ValueRef::Text(r.as_str().as_bytes())).unwrap(),
                r
            );
        }
    }

    #[test]
    fn an_unknown_value_is_an_error_not_a_default() {
        let e = DiscussionState::column_result(ValueRef::Text(b"opened")).unwrap_err();
        assert!(
            e.to_string().contains("unknown discussion state 'opened'"),
            "{e}"
        );
        assert!(Role::column_result(ValueRef::Text(b"Requester")).is_err());
        assert!(Direction::column_result(ValueRef::Text(b"")).is_err());
        assert!(DeliveryState::column_result(ValueRef::Integer(1)).is_err());
    }
}

/// State of one of our encryption subkeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubkeyState {
    Pending,
    Active,
    Draining,
}

text_column!(SubkeyState, "subkey state",
    Pending => "pending", Active => "active", Draining => "draining");
