//! The one client of the core's IPC, typed with [`crate::api`]: a blocking one
//! ([`blocking::Client`], for terminal front-ends, scripts and the tests) and an async one
//! ([`nonblocking::AsyncClient`], tokio, for a front-end that multiplexes many sessions on one
//! connection). Both speak the JSON-RPC lines of `docs/ipc.md` and read every answer into its
//! method's result type: a renamed or missing field is a [`ClientError::BadAnswer`], never an
//! empty string.
//!
//! Files: this one (errors and the line format both share), `client/blocking.rs`,
//! `client/nonblocking.rs`.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{
    ApiVersion, ErrorKind, Notification, Request, RpcError, VersionInfo, API_VERSION,
};

pub mod blocking;
pub mod nonblocking;

pub use blocking::Client;
pub use nonblocking::AsyncClient;

/// Largest line accepted from the core (a long history answer fits many times).
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the core is not running (no answer on {}: {source})", socket.display())]
    NotRunning {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("the core closed the connection")]
    Closed,
    #[error("the core closed the connection ({0})")]
    ClosedWith(std::io::Error),
    #[error("bad line from the core: {0}")]
    BadLine(serde_json::Error),
    #[error("a line from the core is longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong,
    /// The core answered with an error (its message is one line; it may quote a peer).
    #[error("{0}")]
    Rpc(RpcError),
    /// The answer does not have the shape this client's API says.
    #[error("the core's answer to '{method}' does not match this client's API: {source}")]
    BadAnswer {
        method: &'static str,
        source: serde_json::Error,
    },
    #[error(
        "the running core speaks API {core}, this client needs {API_VERSION}: stop it with \
         `pgpchat stop`, then start it again"
    )]
    Incompatible { core: String },
    #[error("cannot encode the request: {0}")]
    Encode(serde_json::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// The kind of a core's error answer, if this is one.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Self::Rpc(e) => Some(e.kind()),
            _ => None,
        }
    }
}

/// One line from the core: an answer (with `id`) or a notification (with `method`).
#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    result: Value,
    #[serde(default)]
    error: Option<RpcError>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Value,
}

/// What a line from the core says.
enum Incoming {
    Answer {
        id: u64,
        result: Result<Value, RpcError>,
    },
    Notice(Notification),
    /// A notification this client does not know, or an answer to no request of ours.
    Other,
}

fn parse_line(line: &str) -> Result<Incoming, ClientError> {
    let l: Line = serde_json::from_str(line).map_err(ClientError::BadLine)?;
    if let Some(method) = l.method {
        let n = serde_json::from_value(json!({"method": method, "params": l.params}));
        return Ok(n.map_or(Incoming::Other, Incoming::Notice));
    }
    let Some(id) = l.id.as_ref().and_then(Value::as_u64) else {
        return Ok(Incoming::Other);
    };
    Ok(Incoming::Answer {
        id,
        result: match l.error {
            Some(e) => Err(e),
            None => Ok(l.result),
        },
    })
}

fn request_line(id: u64, request: &Request) -> Result<String, ClientError> {
    let params = request.params().map_err(ClientError::Encode)?;
    Ok(
        json!({"jsonrpc": "2.0", "id": id, "method": request.method(), "params": params})
            .to_string(),
    )
}

fn decode<T: DeserializeOwned>(method: &'static str, v: Value) -> Result<T, ClientError> {
    serde_json::from_value(v).map_err(|source| ClientError::BadAnswer { method, source })
}

/// The answer to `version`, checked against this client's API version. A core from before the
/// API was versioned has no `version` method.
fn check_version(answer: Result<VersionInfo, ClientError>) -> Result<VersionInfo, ClientError> {
    let v = match answer {
        Err(ClientError::Rpc(e)) if e.code == ErrorKind::MethodNotFound.code() => {
            return Err(ClientError::Incompatible {
                core: "0 (before versioning)".into(),
            })
        }
        other => other?,
    };
    match ApiVersion::parse(&v.api) {
        Some(core) if API_VERSION.works_with(core) => Ok(v),
        _ => Err(ClientError::Incompatible { core: v.api }),
    }
}
