//! IPC actor: the front-ends' door (SPEC 1, seed 1.B). JSON-RPC 2.0 over a Unix socket, one JSON
//! object per line, documented in `docs/ipc.md`.
//!
//! The socket lives in a directory only the owner can enter (0700) and is itself 0600; on top of
//! that every connection's peer user id (SO_PEERCRED) must be the owner's, or it is closed.
//!
//! Files: this one (the socket, accepting clients, the methods), `ipc/clients.rs` (the table of
//! clients and their idleness), `ipc/connection.rs` (serving one client).
//!
//! Each client is served by two tasks: a reader that parses requests (lines bounded by
//! `limits.ipc_max_line_bytes`) and runs each one concurrently (at most
//! [`MAX_IN_FLIGHT_PER_CLIENT`]), and a writer fed by a bounded queue (`limits.ipc_event_queue`).
//! Events for a subscribed client are pushed with `try_send`: a client that stops reading is sent
//! the `lagged` notice (what was queued is dropped to make way for it) and disconnected, instead of
//! stalling anything else; it can re-sync from `history`.
//!
//! A client with no subscription and nothing in flight is idle: after `limits.ipc_idle_timeout_secs`
//! of silence, or at once when all `limits.ipc_max_clients` are taken and it is the longest idle,
//! it is sent a `closing` notice and closed, before any further line of it is read (so a client may
//! safely send that line again on a new connection). Idle clients therefore never lock out others.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::{UnixListener, UnixStream};

use crate::node::{ApiError, NodeError, NodeHandle};

mod clients;
mod connection;

use clients::ClientTable;
use connection::serve_client;

/// Requests of one client running at once (each `open`/`accept` may wait minutes for a person).
pub const MAX_IN_FLIGHT_PER_CLIENT: usize = 64;
/// Default and largest `limit` of `history`.
pub const DEFAULT_HISTORY: u64 = 100;
pub const MAX_HISTORY: u64 = 100_000;

pub struct IpcServer {
    node: NodeHandle,
    listener: Option<UnixListener>,
    owner_uid: u32,
    clients: Arc<Mutex<ClientTable>>,
    path: PathBuf,
}

impl IpcServer {
    /// Create the socket (and its private directory) at `path`. A stale socket left by a dead core is
    /// replaced; a live one is an error (another core serves this profile).
    pub fn bind(node: NodeHandle, path: &Path) -> Result<Self, NodeError> {
        let err = |m: String| NodeError::Ipc(format!("{}: {m}", path.display()));
        let dir = path
            .parent()
            .ok_or_else(|| err("no parent directory".into()))?;
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| err(e.to_string()))?;
        let owner_uid = std::fs::metadata(dir)
            .map_err(|e| err(e.to_string()))?
            .uid();
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(err("a core is already running for this profile".into()));
            }
            std::fs::remove_file(path).map_err(|e| err(e.to_string()))?;
        }
        let listener = UnixListener::bind(path).map_err(|e| err(e.to_string()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            node,
            listener: Some(listener),
            owner_uid,
            clients: Arc::default(),
            path: path.to_path_buf(),
        })
    }
}

impl Actor for IpcServer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(l) = self.listener.take() {
            let node = self.node.settings.node.name.clone();
            let accepts = futures::stream::unfold(l, move |l| {
                let node = node.clone();
                async move {
                    loop {
                        match l.accept().await {
                            Ok((s, _)) => return Some((Client(s), l)),
                            Err(e) => {
                                log::warn!("[{node}] ipc accept: {e}");
                                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            }
                        }
                    }
                }
            });
            ctx.add_stream(accepts);
        }
        log::info!(
            "[{}] IPC on {}",
            self.node.settings.node.name,
            self.path.display()
        );
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Client(UnixStream);

impl StreamHandler<Client> for IpcServer {
    fn handle(&mut self, Client(stream): Client, _: &mut Context<Self>) {
        let name = self.node.settings.node.name.clone();
        match stream.peer_cred() {
            Ok(c) if c.uid() == self.owner_uid => {}
            Ok(c) => {
                log::warn!("[{name}] IPC connection from uid {} refused", c.uid());
                return;
            }
            Err(e) => {
                log::warn!("[{name}] IPC peer credentials: {e}");
                return;
            }
        }
        let max = self.node.settings.limits.ipc_max_clients;
        let admitted = self
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(max);
        let Some((id, slot)) = admitted else {
            log::warn!("[{name}] too many busy IPC clients; one refused");
            return;
        };
        let (node, clients) = (self.node.clone(), self.clients.clone());
        actix_rt::spawn(async move {
            serve_client(node, stream, slot).await;
            clients.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        });
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

/// One parsed JSON-RPC request line.
#[derive(Deserialize)]
pub struct Request {
    pub jsonrpc: String,
    #[serde(default)]
    pub id: Option<Value>,
    pub method: String,
    #[serde(default)]
    pub params: Value,
}

/// The parameters never show: they carry shared secrets (`open`, `accept`) and message texts.
impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.id)
            .field("method", &self.method)
            .field(
                "params",
                &crate::redact::Hidden::of(self.params.to_string()),
            )
            .finish()
    }
}

/// Parse a request line; an error is the JSON-RPC error response to send back.
pub fn parse_request(line: &str) -> Result<Request, String> {
    let v: Value = serde_json::from_str(line)
        .map_err(|e| error_response(Value::Null, -32700, &format!("parse error: {e}")))?;
    let id = v.get("id").cloned().unwrap_or(Value::Null);
    let r: Request = serde_json::from_value(v)
        .map_err(|e| error_response(id.clone(), -32600, &format!("invalid request: {e}")))?;
    if r.jsonrpc != "2.0" {
        return Err(error_response(
            id,
            -32600,
            "invalid request: jsonrpc must be \"2.0\"",
        ));
    }
    Ok(r)
}

fn ok_response(id: Value, result: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
}

fn error_response(id: Value, code: i64, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

fn param<'a>(params: &'a Value, name: &str) -> Result<&'a Value, ApiError> {
    params
        .get(name)
        .ok_or_else(|| ApiError::Invalid(format!("missing parameter '{name}'")))
}

fn str_param<'a>(params: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    param(params, name)?
        .as_str()
        .ok_or_else(|| ApiError::Invalid(format!("parameter '{name}' must be a string")))
}

fn u64_param(params: &Value, name: &str) -> Result<u64, ApiError> {
    param(params, name)?.as_u64().ok_or_else(|| {
        ApiError::Invalid(format!("parameter '{name}' must be a non-negative integer"))
    })
}

fn to_value<T: serde::Serialize>(v: T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::Internal(e.to_string()))
}

/// An optional boolean parameter.
fn bool_param(p: &Value, name: &str, default: bool) -> Result<bool, ApiError> {
    match p.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| ApiError::Invalid(format!("parameter '{name}' must be a boolean"))),
    }
}

/// Run one method. Every method of `docs/ipc.md` is here.
pub async fn dispatch(node: &NodeHandle, method: &str, params: Value) -> Result<Value, ApiError> {
    let p = &params;
    match method {
        "whoami" => to_value(node.whoami()),
        "contacts" => to_value(node.contacts().await?),
        "verify" => {
            let verified = bool_param(p, "verified", true)?;
            to_value(
                node.set_verified(str_param(p, "contact")?, verified)
                    .await?,
            )
        }
        "open" => {
            let id = node
                .open(str_param(p, "contact")?, str_param(p, "password")?)
                .await?;
            Ok(json!({ "discussion_id": id }))
        }
        "requests" if bool_param(p, "refused", false)? => to_value(node.refused_requests().await?),
        "requests" => to_value(node.requests().await?),
        "accept" => {
            let id = node
                .accept(u64_param(p, "request")?, str_param(p, "password")?)
                .await?;
            Ok(json!({ "discussion_id": id }))
        }
        "refuse" => {
            node.refuse(u64_param(p, "request")?).await?;
            Ok(json!({ "refused": true }))
        }
        "discussions" => to_value(node.discussions().await?),
        "send" => to_value(
            node.send(str_param(p, "discussion")?, str_param(p, "text")?)
                .await?,
        ),
        "history" => {
            let limit = match p.get("limit") {
                None | Some(Value::Null) => DEFAULT_HISTORY,
                Some(_) => u64_param(p, "limit")?.min(MAX_HISTORY),
            };
            to_value(node.history(str_param(p, "discussion")?, limit).await?)
        }
        "mark_read" => {
            let id = node.mark_read(str_param(p, "discussion")?).await?;
            Ok(json!({ "discussion_id": id }))
        }
        "close" => {
            let force = bool_param(p, "force", false)?;
            let (id, state) = node.close(str_param(p, "discussion")?, force).await?;
            Ok(json!({ "discussion_id": id, "state": state }))
        }
        "shutdown" => {
            node.shutdown.notify_one();
            Ok(json!({ "stopping": true }))
        }
        "status" => Ok(json!({
            "whoami": to_value(node.whoami())?,
            "discovery": to_value(node.discovery_stats().await?)?,
        })),
        _ => Err(ApiError::NotFoundMethod(method.to_string())),
    }
}
