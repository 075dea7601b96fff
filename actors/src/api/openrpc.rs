//! The API's machine-readable description: an OpenRPC 1.3 document generated from the types in
//! this module, served by `rpc.discover` and kept in `docs/openrpc.json` (a test fails when that
//! file is out of date). OpenRPC has no place for server-pushed notifications, so the events are
//! described as schemas and listed under the extension `x-events`; the error kinds of
//! `error.data` are under `x-error-kinds`.

use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use super::error::{ErrorData, ErrorKind};
use super::event::Event;
use super::request::method_docs;
use super::version::API_VERSION;

/// The OpenRPC document of this API.
pub fn document() -> Value {
    let mut g = schemars::generate::SchemaSettings::draft07()
        .with(|s| {
            s.definitions_path = "#/components/schemas/".into();
            s.meta_schema = None;
        })
        .into_generator();
    let methods: Vec<Value> = method_docs(&mut g)
        .into_iter()
        .map(|m| {
            let p = m.params.as_value();
            let required: Vec<&str> = p
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let params: Vec<Value> = p
                .get("properties")
                .and_then(Value::as_object)
                .map(|props| {
                    props
                        .iter()
                        .map(|(name, schema)| {
                            let mut schema = schema.clone();
                            let description =
                                schema.as_object_mut().and_then(|o| o.remove("description"));
                            let mut d = json!({
                                "name": name,
                                "required": required.contains(&name.as_str()),
                                "schema": schema,
                            });
                            if let Some(text) = description {
                                d["description"] = text;
                            }
                            d
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "name": m.name,
                "summary": m.summary,
                "paramStructure": "by-name",
                "params": params,
                "result": {"name": "result", "schema": m.result},
            })
        })
        .collect();
    let events = event_list(&mut g);
    let event_schema = g.subschema_for::<Event>();
    let error_data = g.subschema_for::<ErrorData>();
    let schemas: Map<String, Value> = g.take_definitions(true);
    json!({
        "openrpc": "1.3.2",
        "info": {
            "title": "pgpchat core IPC",
            "version": API_VERSION.to_string(),
            "description": "JSON-RPC 2.0 over a Unix socket, one JSON object per line \
                (docs/ipc.md). Errors carry a machine-readable kind in error.data \
                (x-error-kinds). After `subscribe`, the core pushes \
                {\"jsonrpc\":\"2.0\",\"method\":\"event\",\"params\":Event} (x-events).",
        },
        "methods": methods,
        "components": {"schemas": schemas},
        "x-events": {"schema": event_schema, "kinds": events},
        "x-error-data": error_data,
        "x-error-kinds": error_kinds(),
    })
}

/// Each event kind with its description.
fn event_list(g: &mut SchemaGenerator) -> Vec<Value> {
    let schema = Event::json_schema(g);
    schema
        .as_value()
        .get("oneOf")
        .and_then(Value::as_array)
        .map(|variants| {
            variants
                .iter()
                .filter_map(|v| {
                    let kind = v.pointer("/properties/event/const")?.as_str()?;
                    Some(json!({
                        "name": kind,
                        "description": v.get("description").cloned().unwrap_or(Value::Null),
                    }))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Each error kind with its JSON-RPC code.
fn error_kinds() -> Vec<Value> {
    use ErrorKind::*;
    [
        ParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        Internal,
        TooManyInFlight,
        NotFound,
        Refused,
        WrongSecretOrIntercepted,
        TooManyAttempts,
        Busy,
        Unreachable,
        Closed,
        Timeout,
        Protocol,
        NotConfirmed,
        Failed,
    ]
    .into_iter()
    .map(|k| json!({"kind": k, "code": k.code()}))
    .collect()
}

/// The document as written to `docs/openrpc.json`.
pub fn document_text() -> String {
    let mut s = serde_json::to_string_pretty(&document()).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openrpc.json");

    /// `docs/openrpc.json` is what the types say. When this fails after a change of the API, run
    /// `cargo test -p pgpchat-actors --lib -- --ignored write_the_openrpc_document` and commit the
    /// file (and think about the API version).
    #[test]
    fn docs_openrpc_json_is_up_to_date() {
        let on_disk = std::fs::read_to_string(FILE).unwrap_or_default();
        assert!(
            on_disk == document_text(),
            "docs/openrpc.json is out of date: regenerate it (see this test's doc)"
        );
    }

    #[test]
    #[ignore = "writes docs/openrpc.json"]
    fn write_the_openrpc_document() {
        std::fs::write(FILE, document_text()).unwrap();
    }

    #[test]
    fn every_method_and_event_is_described() {
        let doc = document();
        let methods = doc["methods"].as_array().unwrap();
        assert_eq!(methods.len(), 29);
        let close = methods.iter().find(|m| m["name"] == "close").unwrap();
        let params: Vec<(&str, bool)> = close["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["required"] == true))
            .collect();
        assert_eq!(params, [("discussion", true), ("force", false)]);
        let events: Vec<&str> = doc["x-events"]["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["name"].as_str())
            .collect();
        assert_eq!(events.len(), 15, "{events:?}");
        assert!(events.contains(&"discussion_closed"), "{events:?}");
        assert_eq!(doc["info"]["version"], API_VERSION.to_string());
    }
}
