//! IPC actor: the front-ends' door (SPEC 1, seed 1.B). JSON-RPC 2.0 over a Unix socket, one JSON
//! object per line, documented in `docs/ipc.md`.
//!
//! The socket lives in a directory only the owner can enter (0700) and is itself 0600; on top of
//! that every connection's peer user id (SO_PEERCRED) must be the owner's, or it is closed.
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

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, Notify, Semaphore};
use tokio_util::codec::{
    AnyDelimiterCodec, AnyDelimiterCodecError, FramedRead, FramedWrite, LinesCodec,
};

use crate::node::{ApiError, NodeError, NodeHandle};

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

/// The connected front-ends, bounded by `limits.ipc_max_clients`.
#[derive(Default)]
struct ClientTable {
    next_id: u64,
    slots: HashMap<u64, Arc<ClientSlot>>,
}

/// One connected front-end, as the table sees it: whether it is idle, and a way to close it.
struct ClientSlot {
    activity: Mutex<Activity>,
    /// Wakes the client's reader to close the connection (evicted for a newcomer).
    evict: Notify,
}

struct Activity {
    in_flight: usize,
    subscribed: bool,
    /// Since when the client has been idle (no subscription, nothing in flight, no line read);
    /// `None` while it is busy.
    idle_since: Option<Instant>,
}

impl ClientSlot {
    fn new() -> Self {
        Self {
            activity: Mutex::new(Activity {
                in_flight: 0,
                subscribed: false,
                idle_since: Some(Instant::now()),
            }),
            evict: Notify::new(),
        }
    }

    /// Apply `f` and restart the idle clock: every change is activity.
    fn update(&self, f: impl FnOnce(&mut Activity)) {
        let mut a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut a);
        a.idle_since = (a.in_flight == 0 && !a.subscribed).then(Instant::now);
    }

    fn idle_since(&self) -> Option<Instant> {
        self.activity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .idle_since
    }
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
        let (id, slot) = {
            let mut table = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            if table.slots.len() >= max {
                // Full: the longest-idle client makes room (it can reconnect; a subscribed or
                // waiting one is never chosen). If every client is busy, the newcomer is refused.
                let oldest = table
                    .slots
                    .iter()
                    .filter_map(|(id, c)| c.idle_since().map(|t| (t, *id)))
                    .min();
                match oldest.and_then(|(_, id)| table.slots.remove(&id)) {
                    Some(evicted) => evicted.evict.notify_one(),
                    None => {
                        log::warn!("[{name}] too many busy IPC clients; one refused");
                        return;
                    }
                }
            }
            table.next_id += 1;
            let id = table.next_id;
            let slot = Arc::new(ClientSlot::new());
            table.slots.insert(id, slot.clone());
            (id, slot)
        };
        let (node, clients) = (self.node.clone(), self.clients.clone());
        actix_rt::spawn(async move {
            serve_client(node, stream, slot).await;
            clients
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .slots
                .remove(&id);
        });
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

/// The notice sent before an idle connection is closed: the client knows its next request was not
/// read, so it may reconnect and send it again without running it twice.
fn closing_notice() -> String {
    json!({"jsonrpc": "2.0", "method": "closing", "params": {"reason": "idle"}}).to_string()
}

fn lagged_notice() -> String {
    json!({"jsonrpc": "2.0", "method": "lagged", "params": {}}).to_string()
}

async fn serve_client(node: NodeHandle, stream: UnixStream, slot: Arc<ClientSlot>) {
    let limits = node.settings.limits.clone();
    let idle_timeout = Duration::from_secs(limits.ipc_idle_timeout_secs);
    let (r, w) = stream.into_split();
    // Bytes, not `LinesCodec`: a line that is not UTF-8 gets a parse error, not a dead connection.
    let mut lines = FramedRead::new(
        r,
        AnyDelimiterCodec::new_with_max_length(
            b"\n".to_vec(),
            b"\n".to_vec(),
            limits.ipc_max_line_bytes,
        ),
    );
    let (tx, rx) = mpsc::channel::<String>(limits.ipc_event_queue);
    // Set when the client fell behind its events: the writer drops what is queued and sends the
    // `lagged` notice instead (the queue is full, so the notice cannot wait in it).
    let lag = Arc::new(Notify::new());
    let writer = actix_rt::spawn(write_lines(w, rx, lag.clone(), idle_timeout));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_CLIENT));
    let mut events: Option<actix_rt::task::JoinHandle<bool>> = None;
    let idle_check = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle_check);
    let mut lagged = false;
    loop {
        // A subscription that ends means the client lagged (true) or the node is stopping:
        // disconnect it.
        let subscription_ended = async {
            match events.as_mut() {
                Some(h) => matches!(h.await, Ok(true)),
                None => futures::future::pending::<bool>().await,
            }
        };
        let line = tokio::select! {
            l = lines.next() => l,
            l = subscription_ended => {
                lagged = l;
                break;
            }
            _ = slot.evict.notified() => {
                let _ = tx.try_send(closing_notice());
                break;
            }
            _ = &mut idle_check => {
                match slot.idle_since() {
                    Some(t) if t.elapsed() >= idle_timeout => {
                        let _ = tx.try_send(closing_notice());
                        break;
                    }
                    since => {
                        let next = since.map_or(idle_timeout, |t| idle_timeout.saturating_sub(t.elapsed()));
                        idle_check.as_mut().reset(tokio::time::Instant::now() + next);
                        continue;
                    }
                }
            }
        };
        let Some(line) = line else { break };
        slot.update(|_| {});
        let line = match line {
            Ok(l) => l,
            Err(AnyDelimiterCodecError::MaxChunkLengthExceeded) => {
                let _ = tx
                    .send(error_response(
                        Value::Null,
                        -32600,
                        &format!(
                            "request line longer than {} bytes",
                            limits.ipc_max_line_bytes
                        ),
                    ))
                    .await;
                break;
            }
            Err(AnyDelimiterCodecError::Io(_)) => break,
        };
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        let Ok(line) = std::str::from_utf8(line) else {
            if tx
                .send(error_response(
                    Value::Null,
                    -32700,
                    "parse error: the line is not valid UTF-8",
                ))
                .await
                .is_err()
            {
                break;
            }
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        let req = match parse_request(line) {
            Ok(r) => r,
            Err(resp) => {
                if tx.send(resp).await.is_err() {
                    break;
                }
                continue;
            }
        };
        if req.method == "subscribe" {
            if events.is_none() {
                slot.update(|a| a.subscribed = true);
                events = Some(actix_rt::spawn(forward_events(
                    node.settings.node.name.clone(),
                    node.subscribe(),
                    tx.clone(),
                    lag.clone(),
                )));
            }
            if let Some(id) = req.id {
                let _ = tx.send(ok_response(id, json!({"subscribed": true}))).await;
            }
            continue;
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            if let Some(id) = req.id {
                let _ = tx
                    .send(error_response(id, -32000, "too many requests in flight"))
                    .await;
            }
            continue;
        };
        slot.update(|a| a.in_flight += 1);
        let (node, tx, slot) = (node.clone(), tx.clone(), slot.clone());
        actix_rt::spawn(async move {
            let result = dispatch(&node, &req.method, req.params).await;
            if let Some(id) = req.id {
                let line = match result {
                    Ok(v) => ok_response(id, v),
                    Err(e) => error_response(id, e.code(), &e.to_string()),
                };
                let _ = tx.send(line).await;
            }
            slot.update(|a| a.in_flight -= 1);
            drop(permit);
        });
    }
    if let Some(e) = events {
        e.abort();
    }
    drop(tx);
    // Let the writer flush what is queued (answers, a notice), but not forever: requests still
    // running hold senders, and a client that does not read would hold the writer. One that lagged
    // gets the idle timeout to come back and read its notice.
    let wait = if lagged {
        idle_timeout
    } else {
        Duration::from_secs(1)
    };
    let abort = writer.abort_handle();
    if tokio::time::timeout(wait, writer).await.is_err() {
        abort.abort();
    }
}

/// Write queued lines to the client. When `lag` fires, what is still queued is dropped (the client
/// re-reads `history`) and the `lagged` notice is written after the last whole line, waiting at
/// most `notice_wait` for the client to read.
async fn write_lines(
    w: tokio::net::unix::OwnedWriteHalf,
    mut rx: mpsc::Receiver<String>,
    lag: Arc<Notify>,
    notice_wait: Duration,
) {
    let mut out = FramedWrite::new(w, LinesCodec::new());
    let lagged = loop {
        tokio::select! {
            biased;
            _ = lag.notified() => break true,
            line = rx.recv() => {
                let Some(line) = line else { break false };
                // A write blocked on a client that stopped reading is interrupted by the lag; the
                // part of the line not yet written stays in `out`'s buffer and goes first.
                tokio::select! {
                    biased;
                    _ = lag.notified() => break true,
                    r = out.send(line) => if r.is_err() { return },
                }
            }
        }
    };
    if lagged {
        drop(rx);
        let _ = tokio::time::timeout(notice_wait, out.send(lagged_notice())).await;
    }
}

/// Push events to a subscribed client. A client that lags (its queue is full, or it fell behind
/// the event bus) is sent the `lagged` notice and disconnected: returns true then, false when the
/// event bus closed (the node is stopping).
async fn forward_events(
    node: String,
    mut rx: broadcast::Receiver<crate::events::Event>,
    tx: mpsc::Sender<String>,
    lag: Arc<Notify>,
) -> bool {
    loop {
        match rx.recv().await {
            Ok(e) => {
                let line = json!({"jsonrpc": "2.0", "method": "event", "params": e}).to_string();
                if tx.try_send(line).is_err() {
                    log::warn!("[{node}] IPC client too slow for events; disconnecting it");
                    break;
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                log::warn!("[{node}] IPC client missed {n} events; disconnecting it");
                break;
            }
            Err(broadcast::error::RecvError::Closed) => return false,
        }
    }
    lag.notify_one();
    // Returning ends the subscription, which tells the reader loop to disconnect this client.
    true
}

/// One parsed JSON-RPC request line.
#[derive(Debug, Deserialize)]
pub struct Request {
    pub jsonrpc: String,
    #[serde(default)]
    pub id: Option<Value>,
    pub method: String,
    #[serde(default)]
    pub params: Value,
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
