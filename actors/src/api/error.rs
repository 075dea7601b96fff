//! Errors as front-ends see them: a JSON-RPC code, one human-readable line, and a machine-readable
//! kind in `error.data` (`{"kind": "not-found"}`), so a front-end never parses English.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What went wrong, for programs. New kinds may come with a minor version: treat an unknown kind
/// (`other`) by its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The line is not JSON (or not UTF-8).
    ParseError,
    /// Not a JSON-RPC 2.0 request, or the line is too long.
    InvalidRequest,
    /// No such method.
    MethodNotFound,
    /// A parameter is missing, of the wrong type or out of bounds, or a name is ambiguous.
    InvalidParams,
    /// An internal error (see the core's log).
    Internal,
    /// Too many requests in flight on this connection.
    TooManyInFlight,
    /// No such contact, discussion or request.
    NotFound,
    /// The peer refused the discussion.
    Refused,
    /// Key confirmation failed: the secrets differ, or someone is in the middle.
    WrongSecretOrIntercepted,
    /// Too many failed attempts with this contact recently.
    TooManyAttempts,
    /// The peer has too many requests waiting for a decision.
    Busy,
    /// The peer cannot be reached.
    Unreachable,
    /// The discussion is closed.
    Closed,
    /// The peer or a handshake step took too long.
    Timeout,
    /// The peer did not follow the protocol (or replayed a frame).
    Protocol,
    /// The peer got our key confirmation and did not confirm (possibly guessing the secret).
    NotConfirmed,
    /// The operation failed for another reason.
    Failed,
    /// Our own request was withdrawn (`cancel`) before the peer answered.
    Cancelled,
    /// A kind this client does not know (a newer core).
    #[serde(other)]
    Other,
}

impl ErrorKind {
    /// The JSON-RPC error code of this kind (`docs/ipc.md`).
    pub fn code(self) -> i64 {
        match self {
            Self::ParseError => -32700,
            Self::InvalidRequest => -32600,
            Self::MethodNotFound => -32601,
            Self::InvalidParams => -32602,
            Self::Internal => -32603,
            Self::TooManyInFlight => -32000,
            Self::NotFound => 1,
            Self::Refused
            | Self::WrongSecretOrIntercepted
            | Self::TooManyAttempts
            | Self::Busy
            | Self::Unreachable
            | Self::Closed
            | Self::Timeout
            | Self::Protocol
            | Self::NotConfirmed
            | Self::Failed
            | Self::Cancelled
            | Self::Other => 2,
        }
    }
}

/// `error.data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorData {
    pub kind: ErrorKind,
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    pub code: i64,
    /// One human-readable line (it may quote a peer: escape it before printing).
    pub message: String,
    /// Absent from cores before API 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<ErrorData>,
}

impl RpcError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            code: kind.code(),
            message: message.into(),
            data: Some(ErrorData { kind }),
        }
    }

    /// The kind, or `Other` from a core that sent none.
    pub fn kind(&self) -> ErrorKind {
        self.data.map_or(ErrorKind::Other, |d| d.kind)
    }
}
