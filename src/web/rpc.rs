//! A browser's JSON-RPC line into a typed request of the API, and answers back into lines: the
//! same decoder and error kinds as the core's socket (`docs/ipc.md`), so a page sees exactly the
//! errors a script sees.

use pgpchat_actors::api::{DecodeError, ErrorKind, Request, RpcError};
use serde_json::{json, Value};

/// What a browser's line asks for.
pub enum Call {
    /// `subscribe`: this WebSocket gets the core's notifications from now on (answered here: the
    /// web process's own connection to the core is subscribed once for all pages).
    Subscribe { id: Option<Value> },
    /// Any other method, for the core.
    Core { id: Option<Value>, request: Request },
}

/// Decode one line; `Err` is the error answer to send (with the request's id when it had one).
pub fn decode(line: &str) -> Result<Call, String> {
    let v: Value = serde_json::from_str(line).map_err(|_| {
        error_line(
            &Value::Null,
            &RpcError::new(ErrorKind::ParseError, "parse error: not JSON"),
        )
    })?;
    let id = v.get("id").cloned();
    let answer_id = id.clone().unwrap_or(Value::Null);
    let invalid =
        |why: &str| error_line(&answer_id, &RpcError::new(ErrorKind::InvalidRequest, why));
    if !v.is_object() || v.get("jsonrpc") != Some(&json!("2.0")) {
        return Err(invalid("invalid request: not a JSON-RPC 2.0 request"));
    }
    if !matches!(
        id,
        None | Some(Value::Number(_) | Value::String(_) | Value::Null)
    ) {
        return Err(invalid(
            "invalid request: 'id' must be a number or a string",
        ));
    }
    let Some(method) = v.get("method").and_then(Value::as_str) else {
        return Err(invalid("invalid request: 'method' must be a string"));
    };
    let params = v.get("params").cloned();
    if method == "subscribe" {
        return Ok(Call::Subscribe { id });
    }
    match Request::decode(method, params) {
        Ok(request) => Ok(Call::Core { id, request }),
        Err(DecodeError::UnknownMethod(m)) => Err(error_line(
            &answer_id,
            &RpcError::new(ErrorKind::MethodNotFound, format!("unknown method '{m}'")),
        )),
        Err(DecodeError::InvalidParams(why)) => Err(error_line(
            &answer_id,
            &RpcError::new(ErrorKind::InvalidParams, why),
        )),
    }
}

pub fn result_line(id: &Value, result: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
}

pub fn error_line(id: &Value, e: &RpcError) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": e}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_decode_as_on_the_cores_socket() {
        assert!(matches!(
            decode(r#"{"jsonrpc":"2.0","id":1,"method":"subscribe"}"#),
            Ok(Call::Subscribe { .. })
        ));
        let Ok(Call::Core { request, .. }) = decode(
            r#"{"jsonrpc":"2.0","id":"a","method":"history","params":{"discussion":"bob"}}"#,
        ) else {
            panic!("history decodes");
        };
        assert_eq!(request.method(), "history");
        let e = |l: &str| -> Value { serde_json::from_str(&decode(l).err().unwrap()).unwrap() };
        assert_eq!(e("nope")["error"]["code"], -32700);
        assert_eq!(e(r#"{"id":1,"method":"x"}"#)["error"]["code"], -32600);
        assert_eq!(
            e(r#"{"jsonrpc":"2.0","id":2,"method":"x"}"#)["error"]["code"],
            -32601
        );
        let bad =
            e(r#"{"jsonrpc":"2.0","id":3,"method":"close","params":{"discussion":"b","force":1}}"#);
        assert_eq!(bad["error"]["code"], -32602);
        assert_eq!(bad["id"], 3);
        assert_eq!(bad["error"]["data"]["kind"], "invalid-params");
    }
}
