//! Every request a front-end can make: one struct per method (its `params`), the [`Request`] enum
//! that holds any of them, and the [`Method`] trait that ties each struct to its method name and
//! its result type. The method table below is the single list: the enum, the decoder, the typed
//! [`Response`], and the OpenRPC document are all generated from it.
//!
//! Parameters are decoded once, from the request line, into these structs; an invalid one is
//! named in the error (`parameter 'force' must be a boolean`).

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::response::*;
use super::version::VersionInfo;
use crate::redact::Hidden;

/// A request struct: its method name and the type of its result.
pub trait Method: Serialize + Into<Request> {
    const NAME: &'static str;
    type Result: Serialize + DeserializeOwned + JsonSchema;
}

/// Why a request line's method and params are not a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown method '{0}'")]
    UnknownMethod(String),
    #[error("{0}")]
    InvalidParams(String),
}

/// One method of the table, for the OpenRPC document.
pub(crate) struct MethodDoc {
    pub name: &'static str,
    pub summary: String,
    pub params: schemars::Schema,
    pub result: schemars::Schema,
}

macro_rules! methods {
    ($( $(#[doc = $doc:literal])* $variant:ident($req:ident) = $name:literal -> $result:ty; )*) => {
        /// Any request, decoded. Its `Debug` hides shared secrets and message texts.
        #[derive(Debug, Clone)]
        pub enum Request {
            $( $(#[doc = $doc])* $variant($req), )*
        }

        /// Any result, typed; on the wire it is the bare `result` value.
        #[derive(Debug, Clone, Serialize)]
        #[serde(untagged)]
        pub enum Response {
            $( $(#[doc = $doc])* $variant($result), )*
        }

        $(
            impl From<$req> for Request {
                fn from(r: $req) -> Self {
                    Self::$variant(r)
                }
            }

            impl Method for $req {
                const NAME: &'static str = $name;
                type Result = $result;
            }
        )*

        impl Request {
            /// The JSON-RPC method name.
            pub fn method(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $name, )*
                }
            }

            /// The JSON-RPC `params` object.
            pub fn params(&self) -> Result<Value, serde_json::Error> {
                match self {
                    $( Self::$variant(r) => serde_json::to_value(r), )*
                }
            }

            /// Decode a request from its method name and `params` (absent or null: no parameters).
            pub fn decode(method: &str, params: Option<Value>) -> Result<Self, DecodeError> {
                match method {
                    $( $name => Ok(Self::$variant(params_of(params)?)), )*
                    _ => Err(DecodeError::UnknownMethod(method.to_string())),
                }
            }
        }

        pub(crate) fn method_docs(g: &mut schemars::SchemaGenerator) -> Vec<MethodDoc> {
            vec![$(
                MethodDoc {
                    name: $name,
                    summary: [$($doc),*].iter().map(|l| l.trim()).collect::<Vec<_>>().join(" "),
                    params: <$req as JsonSchema>::json_schema(g),
                    result: g.subschema_for::<$result>(),
                },
            )*]
        }
    };
}

methods! {
    /// The core's identity: name, fingerprint, node, TCP port, data directory.
    Whoami(WhoamiRequest) = "whoami" -> WhoAmI;
    /// Identity, API version and discovery counters.
    Status(StatusRequest) = "status" -> Status;
    /// The API version (major.minor) and the core's version.
    Version(VersionRequest) = "version" -> VersionInfo;
    /// Contacts seen on the network.
    Contacts(ContactsRequest) = "contacts" -> Vec<Contact>;
    /// Mark a contact verified (or not) after comparing fingerprints out of band.
    Verify(VerifyRequest) = "verify" -> Contact;
    /// Ask the peer of a discussion for its contact list and merge it into ours (a live request:
    /// it waits for the answer up to `limits.list_request_timeout_secs`).
    ContactsFrom(ContactsFromRequest) = "contacts_from" -> ListMerged;
    /// Never share a contact in our contact list (or share it again, by `sharing.share`).
    NeverShare(NeverShareRequest) = "never_share" -> NeverShared;
    /// Add the node at `HOST:PORT` (its main TCP port) as a contact: it is probed for its signed
    /// announce; answers with the contact (origin `added`).
    AddContact(AddContactRequest) = "add_contact" -> Contact;
    /// Forget a contact; answers with it. It comes back if it announces itself again.
    RemoveContact(RemoveContactRequest) = "remove_contact" -> Contact;
    /// Block (or with `blocked: false`, unblock) a fingerprint: its announces, discussion requests
    /// and contact-list entries are ignored (requests recorded as refused, reason `blocked`); its
    /// contact is forgotten. Discussions already open stay open: close them to stop them.
    Block(BlockRequest) = "block" -> BlockAnswer;
    /// The blocked fingerprints (full, upper case), sorted.
    Blocked(BlockedRequest) = "blocked" -> Vec<String>;
    /// Ask a contact for a discussion; answers once it is open (waits for the peer's decision).
    Open(OpenRequest) = "open" -> Opened;
    /// Withdraw our requests to a contact that wait for an answer: each `open` waiting on one
    /// fails with `cancelled`, and the request disappears from the peer's `requests`.
    Cancel(CancelRequest) = "cancel" -> Cancelled;
    /// Requests waiting for a decision; with `refused: true`, the last requests turned away
    /// without asking the user, oldest first.
    Requests(RequestsRequest) = "requests" -> RequestList;
    /// Accept a request with the shared secret; answers once the discussion is open.
    Accept(AcceptRequest) = "accept" -> Opened;
    /// Refuse a request.
    Refuse(RefuseRequest) = "refuse" -> RefusedAnswer;
    /// Discussions, most recent activity first.
    Discussions(DiscussionsRequest) = "discussions" -> Vec<Discussion>;
    /// Queue a message; answers once it is committed to disk (state `stored`, or `sent`).
    Send(SendRequest) = "send" -> Message;
    /// Messages of a discussion, oldest first: the last `limit`, or a page by position
    /// (`before`, `after`); marks the discussion read.
    History(HistoryRequest) = "history" -> Vec<Message>;
    /// Mark every message of a discussion read.
    MarkRead(MarkReadRequest) = "mark_read" -> MarkedRead;
    /// Close a discussion (`closing` until the peer confirms; `force`: `closed` at once).
    Close(CloseRequest) = "close" -> CloseAnswer;
    /// Rotate our encryption key of a discussion now (forward secrecy; it also rotates by itself,
    /// `[rotation]`): answers the new key's id once it is stored and announced (`pending`; the one
    /// already pending if a rotation is under way); the `key_rotated` event says when the peer has
    /// switched to it and the old key is being destroyed. Fails with a peer below protocol 4.
    Rotate(RotateRequest) = "rotate" -> Rotated;
    /// Introduce two contacts you each have an open discussion with to each other (each is sent
    /// the other's certificate, announce and address, and one fresh secret).
    Introduce(IntroduceRequest) = "introduce" -> Introduced;
    /// Introductions made to us, newest first (ended ones too).
    Introductions(IntroductionsRequest) = "introductions" -> Vec<Introduction>;
    /// Accept an introduction made to us: once the other side accepts too, the discussion opens
    /// by itself.
    AcceptIntroduction(AcceptIntroductionRequest) = "accept_introduction" -> Introduction;
    /// Decline an introduction made to us (its secret is destroyed).
    DeclineIntroduction(DeclineIntroductionRequest) = "decline_introduction" -> Introduction;
    /// Stop the core; it removes its socket.
    Shutdown(ShutdownRequest) = "shutdown" -> Stopping;
    /// Receive event notifications on this connection from now on.
    Subscribe(SubscribeRequest) = "subscribe" -> Subscribed;
    /// This API's description (OpenRPC 1.3, with the events under `x-events`).
    Discover(DiscoverRequest) = "rpc.discover" -> Value;
}

/// Decode `params` into a method's struct, naming the parameter that is wrong.
fn params_of<T: DeserializeOwned>(params: Option<Value>) -> Result<T, DecodeError> {
    let v = match params {
        None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
        Some(v) => v,
    };
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        DecodeError::InvalidParams(if path == "." {
            format!("invalid parameters: {inner}")
        } else {
            format!("parameter '{path}' {inner}")
        })
    })
}

/// Field decoders whose errors read as the end of "parameter 'x' ...".
mod param {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        String::deserialize(d).map_err(|_| D::Error::custom("must be a string"))
    }

    pub fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        u64::deserialize(d).map_err(|_| D::Error::custom("must be a non-negative integer"))
    }

    pub fn opt_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<u64>::deserialize(d)
            .map_err(|_| D::Error::custom("must be a non-negative integer"))
    }

    pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        Option::<bool>::deserialize(d).map_err(|_| D::Error::custom("must be a boolean"))
    }
}

macro_rules! no_params {
    ($($(#[doc = $doc:literal])* $name:ident;)*) => {$(
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
        pub struct $name {}
    )*};
}

no_params! {
    /// `whoami`: no parameters.
    WhoamiRequest;
    /// `status`: no parameters.
    StatusRequest;
    /// `version`: no parameters.
    VersionRequest;
    /// `contacts`: no parameters.
    ContactsRequest;
    /// `blocked`: no parameters.
    BlockedRequest;
    /// `discussions`: no parameters.
    DiscussionsRequest;
    /// `introductions`: no parameters.
    IntroductionsRequest;
    /// `shutdown`: no parameters.
    ShutdownRequest;
    /// `subscribe`: no parameters.
    SubscribeRequest;
    /// `rpc.discover`: no parameters.
    DiscoverRequest;
}

/// `introduce`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IntroduceRequest {
    /// One contact: a name (case-insensitive, exact) or a fingerprint prefix of 4+ hex digits.
    #[serde(deserialize_with = "param::string")]
    pub a: String,
    /// The other contact, likewise.
    #[serde(deserialize_with = "param::string")]
    pub b: String,
}

/// `accept_introduction`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AcceptIntroductionRequest {
    /// The introduction's id (as `introductions` lists it).
    #[serde(deserialize_with = "param::count")]
    pub introduction: u64,
}

/// `decline_introduction`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeclineIntroductionRequest {
    /// The introduction's id (as `introductions` lists it).
    #[serde(deserialize_with = "param::count")]
    pub introduction: u64,
}

/// `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VerifyRequest {
    /// A name (case-insensitive, exact) or a fingerprint prefix of 4+ hex digits.
    #[serde(deserialize_with = "param::string")]
    pub contact: String,
    /// Verified (default) or not.
    #[serde(
        default,
        deserialize_with = "param::flag",
        skip_serializing_if = "Option::is_none"
    )]
    pub verified: Option<bool>,
}

/// `contacts_from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ContactsFromRequest {
    /// A discussion id or unique prefix, or a contact (its latest discussion): whom to ask.
    #[serde(deserialize_with = "param::string")]
    pub peer: String,
}

/// `never_share`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NeverShareRequest {
    /// A name (case-insensitive, exact) or a fingerprint prefix of 4+ hex digits.
    #[serde(deserialize_with = "param::string")]
    pub contact: String,
    /// Never share (default) or share again.
    #[serde(
        default,
        deserialize_with = "param::flag",
        skip_serializing_if = "Option::is_none"
    )]
    pub never: Option<bool>,
}

/// `add_contact`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AddContactRequest {
    /// `HOST:PORT`: HOST a name, an IPv4 address or `[IPv6]`; PORT the node's main TCP port. With
    /// `dht`, a full fingerprint instead.
    #[serde(deserialize_with = "param::string")]
    pub address: String,
    /// Look `address` (a fingerprint) up on the Mainline DHT: the person's opt-in identity record
    /// says where to probe (issue 11). Absent: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dht: Option<bool>,
}

/// `remove_contact`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RemoveContactRequest {
    /// A name (case-insensitive, exact) or a fingerprint prefix of 4+ hex digits.
    #[serde(deserialize_with = "param::string")]
    pub contact: String,
}

/// `block`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BlockRequest {
    /// A full fingerprint (40 or 64 hex digits; spaces allowed); or, to block, a contact's name
    /// or fingerprint prefix (4+ hex digits); to unblock, a prefix of a blocked fingerprint.
    /// Ambiguous: an error.
    #[serde(deserialize_with = "param::string")]
    pub fingerprint: String,
    /// Block (default) or unblock.
    #[serde(
        default,
        deserialize_with = "param::flag",
        skip_serializing_if = "Option::is_none"
    )]
    pub blocked: Option<bool>,
}

/// `open`. Its `Debug` hides the shared secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OpenRequest {
    /// A name (case-insensitive, exact) or a fingerprint prefix of 4+ hex digits.
    #[serde(deserialize_with = "param::string")]
    pub contact: String,
    /// The secret shared out of band with the contact.
    #[serde(deserialize_with = "param::string")]
    pub password: String,
}

impl std::fmt::Debug for OpenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenRequest")
            .field("contact", &self.contact)
            .field("password", &Hidden::of(&self.password))
            .finish()
    }
}

/// `cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CancelRequest {
    /// A name (case-insensitive, exact) or a fingerprint prefix of 4+ hex digits.
    #[serde(deserialize_with = "param::string")]
    pub contact: String,
}

/// `requests`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RequestsRequest {
    /// List the requests turned away without asking the user instead (default false).
    #[serde(
        default,
        deserialize_with = "param::flag",
        skip_serializing_if = "Option::is_none"
    )]
    pub refused: Option<bool>,
}

/// `accept`. Its `Debug` hides the shared secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AcceptRequest {
    /// The request's id.
    #[serde(deserialize_with = "param::count")]
    pub request: u64,
    /// The secret shared out of band with the requester.
    #[serde(deserialize_with = "param::string")]
    pub password: String,
}

impl std::fmt::Debug for AcceptRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptRequest")
            .field("request", &self.request)
            .field("password", &Hidden::of(&self.password))
            .finish()
    }
}

/// `refuse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RefuseRequest {
    /// The request's id.
    #[serde(deserialize_with = "param::count")]
    pub request: u64,
}

/// `send`. Its `Debug` hides the text.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SendRequest {
    /// A discussion id, a unique id prefix (4+ characters), or a contact (its most recent open
    /// discussion, else its most recent one).
    #[serde(deserialize_with = "param::string")]
    pub discussion: String,
    /// The message (not empty, at most `limits.max_message_bytes`).
    #[serde(deserialize_with = "param::string")]
    pub text: String,
}

impl std::fmt::Debug for SendRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendRequest")
            .field("discussion", &self.discussion)
            .field("text", &Hidden::of(&self.text))
            .finish()
    }
}

/// `history`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryRequest {
    /// A discussion id, a unique id prefix (4+ characters), or a contact (its most recent open
    /// discussion, else its most recent one).
    #[serde(deserialize_with = "param::string")]
    pub discussion: String,
    /// How many messages at most (default 100, at most 100000).
    #[serde(
        default,
        deserialize_with = "param::opt_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub limit: Option<u64>,
    /// Only messages before this position (a message's `position`; 1 is the first message): the
    /// last `limit` of them.
    #[serde(
        default,
        deserialize_with = "param::opt_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub before: Option<u64>,
    /// Only messages after this position; without `before`, the first `limit` of them (paging
    /// forward).
    #[serde(
        default,
        deserialize_with = "param::opt_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub after: Option<u64>,
}

/// `mark_read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MarkReadRequest {
    /// A discussion id, a unique id prefix (4+ characters), or a contact (its most recent open
    /// discussion, else its most recent one).
    #[serde(deserialize_with = "param::string")]
    pub discussion: String,
}

/// `rotate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RotateRequest {
    /// A discussion id, a unique id prefix (4+ characters), or a contact (its most recent open
    /// discussion, else its most recent one).
    #[serde(deserialize_with = "param::string")]
    pub discussion: String,
}

/// `close`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CloseRequest {
    /// A discussion id, a unique id prefix (4+ characters), or a contact (its most recent open
    /// discussion, else its most recent one).
    #[serde(deserialize_with = "param::string")]
    pub discussion: String,
    /// Close now: keys destroyed at once, the peer told when it is next reachable (default false).
    #[serde(
        default,
        deserialize_with = "param::flag",
        skip_serializing_if = "Option::is_none"
    )]
    pub force: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(method: &str, params: Value) -> Result<Request, DecodeError> {
        Request::decode(method, Some(params))
    }

    #[test]
    fn a_wrong_parameter_is_named_and_its_type_said() {
        let e = decode("close", json!({"discussion": "x", "force": "yes"})).unwrap_err();
        assert_eq!(
            e,
            DecodeError::InvalidParams("parameter 'force' must be a boolean".into())
        );
        let e = decode("send", json!({"discussion": 5, "text": "t"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameter 'discussion' must be a string",
            "{e}"
        );
        let e = decode("accept", json!({"request": -1, "password": "p"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameter 'request' must be a non-negative integer"
        );
        let e = decode("open", json!({"contact": "bob"})).unwrap_err();
        assert!(e.to_string().contains("password"), "{e}");
        assert_eq!(
            decode("frobnicate", json!({})).unwrap_err(),
            DecodeError::UnknownMethod("frobnicate".into())
        );
    }

    #[test]
    fn optional_parameters_may_be_absent_or_null_and_no_params_is_fine() {
        let r = decode("close", json!({"discussion": "x", "force": null})).unwrap();
        assert!(matches!(
            r,
            Request::Close(CloseRequest { force: None, .. })
        ));
        assert!(matches!(
            Request::decode("whoami", None).unwrap(),
            Request::Whoami(_)
        ));
        assert!(matches!(
            decode("requests", json!({})).unwrap(),
            Request::Requests(RequestsRequest { refused: None })
        ));
    }

    #[test]
    fn a_request_round_trips_through_its_method_and_params() {
        let r: Request = HistoryRequest {
            discussion: "bob".into(),
            limit: Some(5),
            ..HistoryRequest::default()
        }
        .into();
        assert_eq!(r.method(), "history");
        assert_eq!(
            r.params().unwrap(),
            json!({"discussion": "bob", "limit": 5})
        );
        let back = Request::decode(r.method(), Some(r.params().unwrap())).unwrap();
        assert!(matches!(back, Request::History(h) if h.limit == Some(5)));
    }

    #[test]
    fn secrets_and_texts_never_show_in_debug() {
        let r: Request = OpenRequest {
            contact: "bob".into(),
            password: "hunter2".into(),
        }
        .into();
        let s: Request = SendRequest {
            discussion: "bob".into(),
            text: "attack at dawn".into(),
        }
        .into();
        let dbg = format!("{r:?} {s:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("attack"), "{dbg}");
    }
}
