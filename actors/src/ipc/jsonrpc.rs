//! JSON-RPC 2.0 framing of the IPC: a request line decoded once into a typed
//! [`crate::api::Request`], and the answer lines (`result`, or `error` with its code and its
//! machine-readable kind in `error.data`).

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::request::DecodeError;
use crate::api::{ErrorKind, Request, RpcError};

/// A request line's envelope; `params` are then decoded into the method's own struct.
#[derive(Deserialize)]
struct Envelope {
    jsonrpc: String,
    #[serde(default)]
    id: Option<Value>,
    method: String,
    #[serde(default)]
    params: Option<Value>,
}

/// A JSON-RPC request read from a line.
#[derive(Debug)]
pub struct Incoming {
    /// None: a notification (it runs, no answer).
    pub id: Option<Value>,
    /// The decoded request, or the error to answer (unknown method, invalid params).
    pub request: Result<Request, RpcError>,
}

/// A line that is not a JSON-RPC request at all, and the id to answer it with (null when unknown).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct NotARequest {
    pub id: Value,
    pub error: RpcError,
}

impl NotARequest {
    /// The answer line.
    pub fn line(&self) -> String {
        error_line(self.id.clone(), &self.error)
    }
}

/// Parse a request line.
pub fn parse_request(line: &str) -> Result<Incoming, NotARequest> {
    let env: Envelope = serde_json::from_str(line).map_err(|e| {
        // Only on this error path is the line read a second time, to tell "not JSON" from "not
        // a request" and to answer with the request's id when it has one.
        match serde_json::from_str::<Value>(line) {
            Err(_) => NotARequest {
                id: Value::Null,
                error: RpcError::new(ErrorKind::ParseError, format!("parse error: {e}")),
            },
            Ok(v) => NotARequest {
                id: v.get("id").cloned().unwrap_or(Value::Null),
                error: RpcError::new(ErrorKind::InvalidRequest, format!("invalid request: {e}")),
            },
        }
    })?;
    if env.jsonrpc != "2.0" {
        return Err(NotARequest {
            id: env.id.unwrap_or(Value::Null),
            error: RpcError::new(
                ErrorKind::InvalidRequest,
                "invalid request: jsonrpc must be \"2.0\"",
            ),
        });
    }
    let request = Request::decode(&env.method, env.params).map_err(|e| match e {
        DecodeError::UnknownMethod(_) => RpcError::new(ErrorKind::MethodNotFound, e.to_string()),
        DecodeError::InvalidParams(_) => RpcError::new(ErrorKind::InvalidParams, e.to_string()),
    });
    Ok(Incoming {
        id: env.id,
        request,
    })
}

/// A `result` answer line.
pub(super) fn result_line(id: Value, result: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
}

/// An `error` answer line.
pub(super) fn error_line(id: Value, e: &RpcError) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": e}).to_string()
}

/// An error answer line of `kind` with `message`.
pub(super) fn error_of(id: Value, kind: ErrorKind, message: &str) -> String {
    error_line(id, &RpcError::new(kind, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_line_gets_its_code_and_kind() {
        let e = parse_request("not json").unwrap_err();
        assert_eq!((e.id.clone(), e.error.code), (Value::Null, -32700));
        let e = parse_request(r#"{"jsonrpc":"1.0","id":2,"method":"whoami"}"#).unwrap_err();
        assert_eq!((e.id.clone(), e.error.code), (json!(2), -32600));
        assert_eq!(e.error.kind(), ErrorKind::InvalidRequest);
        let e = parse_request(r#"{"jsonrpc":"2.0","id":3}"#).unwrap_err();
        assert_eq!((e.id, e.error.code), (json!(3), -32600));
        let r = parse_request(r#"{"jsonrpc":"2.0","id":4,"method":"frob"}"#).unwrap();
        assert_eq!(r.request.unwrap_err().code, -32601);
        let r =
            parse_request(r#"{"jsonrpc":"2.0","id":5,"method":"send","params":{"discussion":5}}"#)
                .unwrap();
        let e = r.request.unwrap_err();
        assert_eq!((e.code, e.kind()), (-32602, ErrorKind::InvalidParams));
        let line = error_line(json!(5), &e);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["error"]["data"], json!({"kind": "invalid-params"}));
        let r = parse_request(r#"{"jsonrpc":"2.0","method":"whoami"}"#).unwrap();
        assert!(r.id.is_none() && r.request.is_ok());
    }
}
