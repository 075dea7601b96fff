//! One browser's WebSocket at `/ws`: JSON-RPC lines in text frames, both ways.
//!
//! The upgrade needs a live session cookie and this page's own `Origin` (`http://` and the `Host`
//! it was checked against): a page of another site cannot open it with the user's cookie
//! (cross-site WebSocket hijacking). It also needs the session's key, offered as the subprotocol
//! `pgpchat-key.KEY` next to `pgpchat` (the one chosen): a copy of the cookie that another port
//! of this machine received opens nothing (`auth`). Bounds: [`MAX_SOCKETS`] WebSockets at once, a frame of at
//! most [`MAX_REQUEST_BYTES`], [`MAX_IN_FLIGHT`] requests in flight per WebSocket (and
//! `core_link::MAX_CORE_IN_FLIGHT` in all); a page that reads its notifications too slowly falls
//! [`super::core_link::EVENT_BUFFER`] lines behind, is sent `lagged` and closed.
//!
//! A WebSocket closes when its session ends (logout). An `open` still waiting when its WebSocket
//! closes is withdrawn with `cancel` (the core would do
//! so for a connection of its own; here the core's connection is shared by every page).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use pgpchat_actors::api::{CancelRequest, ErrorKind, Notification, Request, RpcError};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit, Semaphore};

use super::core_link::CoreLink;
use super::rpc::{self, Call};
use super::Web;

/// Browser WebSockets open at once, all sessions together.
pub const MAX_SOCKETS: usize = 16;

/// Largest message from a browser (as `limits.ipc_max_line_bytes` by default).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Requests of one WebSocket in flight at once; more get `too-many-in-flight`.
pub const MAX_IN_FLIGHT: usize = 16;

/// Whether the request's `Origin` is this page's own (the origin of the Host it was sent to).
pub fn origin_is_own(headers: &HeaderMap, port: u16) -> bool {
    let (Some(origin), Some(host)) = (
        headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()),
        super::guard::host_of(headers, port),
    ) else {
        return false;
    };
    origin == format!("http://{host}")
}

/// The subprotocol the page asks for and is given.
pub const PROTOCOL: &str = "pgpchat";

/// The prefix of the subprotocol that carries the session's key.
const KEY_PROTOCOL_PREFIX: &str = "pgpchat-key.";

/// The key offered in `Sec-WebSocket-Protocol`, if any.
fn offered_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(KEY_PROTOCOL_PREFIX))
}

/// `GET /ws`: the upgrade, for a logged-in page of this origin only.
pub async fn upgrade(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(session) = web.auth.session_of(&headers) else {
        return (StatusCode::UNAUTHORIZED, "refused: not logged in").into_response();
    };
    if !origin_is_own(&headers, web.port) {
        return (
            StatusCode::FORBIDDEN,
            "refused: the WebSocket must be opened by this page (Origin)",
        )
            .into_response();
    }
    if !offered_key(&headers).is_some_and(|k| web.auth.key_matches(&session, k)) {
        return (
            StatusCode::FORBIDDEN,
            "refused: the WebSocket needs this session's key (open the login link again)",
        )
            .into_response();
    }
    let Ok(slot) = web.sockets.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "refused: too many pages are open",
        )
            .into_response();
    };
    let core = web.core.clone();
    let web = web.clone();
    ws.protocols([PROTOCOL])
        .max_message_size(MAX_REQUEST_BYTES)
        .max_frame_size(MAX_REQUEST_BYTES)
        .on_upgrade(move |socket| async move {
            serve(socket, core, &web, &session).await;
            drop(slot);
        })
}

/// Where a WebSocket's notifications come from: the core's link (a plain channel in the tests).
trait EventSource {
    /// Every line for the pages from now on.
    fn subscribe(&self) -> broadcast::Receiver<Arc<str>>;
    /// Whether a core is connected now.
    fn connected(&self) -> bool;
}

impl EventSource for CoreLink {
    fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        CoreLink::subscribe(self)
    }

    fn connected(&self) -> bool {
        CoreLink::connected(self)
    }
}

/// What the reader hands the writer.
enum Out {
    Line(String),
    /// Answer `subscribe` and start passing notifications on.
    Subscribe(String),
}

/// Opens in flight on this WebSocket: withdrawn if it closes first.
type Opens = Arc<Mutex<HashMap<u64, String>>>;

async fn serve(socket: WebSocket, core: Arc<CoreLink>, web: &Web, session: &str) {
    let mut ended = web.auth.watch_ended();
    let (sink, mut stream) = socket.split();
    // Each request in flight answers once, and the reader waits for a slot otherwise: bounded.
    let (out, out_rx) = mpsc::channel::<Out>(MAX_IN_FLIGHT + 4);
    let mut writer = tokio::spawn(write(sink, out_rx, core.clone()));
    let mine = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let opens: Opens = Arc::default();
    let next_open = AtomicU64::new(0);
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            // The writer ended (the page lagged, or its socket broke): so does the reader.
            _ = &mut writer => break,
            // Its session ended (logout): the WebSocket closes now, whatever is in flight.
            _ = ended.changed() => {
                if web.auth.is_live(session) {
                    continue;
                }
                writer.abort();
                break;
            }
        };
        let Some(Ok(msg)) = msg else { break };
        let line = match msg {
            Message::Text(t) => t.to_string(),
            Message::Close(_) => break,
            Message::Binary(_) => {
                let e = RpcError::new(
                    ErrorKind::InvalidRequest,
                    "invalid request: send text frames",
                );
                if out
                    .send(Out::Line(rpc::error_line(&Value::Null, &e)))
                    .await
                    .is_err()
                {
                    break;
                }
                continue;
            }
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        let sent = match rpc::decode(&line) {
            Err(answer) => out.send(Out::Line(answer)).await,
            Ok(Call::Subscribe { id }) => {
                let answer = id.map(|id| rpc::result_line(&id, json!({"subscribed": true})));
                out.send(Out::Subscribe(answer.unwrap_or_default())).await
            }
            Ok(Call::Core { id, request }) => {
                let slots = mine.clone().try_acquire_owned().ok().zip(core.try_slot());
                match slots {
                    None => {
                        let e = RpcError::new(
                            ErrorKind::TooManyInFlight,
                            "too many requests in flight",
                        );
                        out.send(Out::Line(rpc::error_line(&id.unwrap_or(Value::Null), &e)))
                            .await
                    }
                    Some(slots) => {
                        let open = match &request {
                            Request::Open(o) => {
                                let n = next_open.fetch_add(1, Ordering::Relaxed);
                                lock(&opens).insert(n, o.contact.clone());
                                Some(n)
                            }
                            _ => None,
                        };
                        tokio::spawn(run(
                            core.clone(),
                            id,
                            request,
                            out.clone(),
                            slots,
                            open,
                            opens.clone(),
                        ));
                        Ok(())
                    }
                }
            }
        };
        if sent.is_err() {
            break;
        }
    }
    drop(out);
    let withdrawn: Vec<String> = lock(&opens).drain().map(|(_, c)| c).collect();
    for contact in withdrawn {
        let _ = core.call(CancelRequest { contact }.into()).await;
    }
    if !writer.is_finished() {
        // An aborted writer answers at once.
        let _ = writer.await;
    }
}

fn lock(o: &Opens) -> std::sync::MutexGuard<'_, HashMap<u64, String>> {
    o.lock().unwrap_or_else(|e| e.into_inner())
}

async fn run(
    core: Arc<CoreLink>,
    id: Option<Value>,
    request: Request,
    out: mpsc::Sender<Out>,
    _slots: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    open: Option<u64>,
    opens: Opens,
) {
    let answer = core.call(request).await;
    if let Some(n) = open {
        lock(&opens).remove(&n);
    }
    // A request without id is a notification: it runs, no answer.
    if let Some(id) = id {
        let line = match answer {
            Ok(v) => rpc::result_line(&id, v),
            Err(e) => rpc::error_line(&id, &e),
        };
        let _ = out.send(Out::Line(line)).await;
    }
}

/// The writer: answers, and once subscribed the notifications, until the reader ends or the page
/// lags behind its notifications.
async fn write<S, E>(mut sink: S, mut out: mpsc::Receiver<Out>, core: Arc<E>)
where
    S: futures::Sink<Message> + Unpin,
    E: EventSource,
{
    let mut events: Option<broadcast::Receiver<Arc<str>>> = None;
    loop {
        let line: String = tokio::select! {
            o = out.recv() => match o {
                None => break,
                Some(Out::Line(l)) => l,
                Some(Out::Subscribe(answer)) => {
                    if events.is_none() {
                        events = Some(core.subscribe());
                    }
                    if !answer.is_empty() && sink.send(Message::text(answer)).await.is_err() {
                        break;
                    }
                    if core.connected() {
                        continue;
                    }
                    super::core_link::core_notice(false)
                }
            },
            e = recv(&mut events) => match e {
                Ok(l) => l.to_string(),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let lagged = Notification::Lagged {}.to_value().to_string();
                    let _ = sink.send(Message::text(lagged)).await;
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        };
        if sink.send(Message::text(line)).await.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
}

async fn recv(
    events: &mut Option<broadcast::Receiver<Arc<str>>>,
) -> Result<Arc<str>, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::core_link::EVENT_BUFFER;

    struct Bus(broadcast::Sender<Arc<str>>);

    impl EventSource for Bus {
        fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
            self.0.subscribe()
        }
        fn connected(&self) -> bool {
            true
        }
    }

    fn text(m: Option<Message>) -> Option<String> {
        match m {
            Some(Message::Text(t)) => Some(t.as_str().to_string()),
            Some(other) => panic!("not a text frame: {other:?}"),
            None => None,
        }
    }

    #[tokio::test]
    async fn a_page_that_falls_behind_its_events_is_sent_lagged_and_closed() {
        let bus = Arc::new(Bus(broadcast::channel(EVENT_BUFFER).0));
        // The page's side of its WebSocket: it reads when the test says so.
        let (sink, mut page) = futures::channel::mpsc::channel::<Message>(0);
        let (out, out_rx) = mpsc::channel(4);
        let writer = tokio::spawn(write(sink, out_rx, bus.clone()));
        out.send(Out::Subscribe("subscribed".into()))
            .await
            .expect("writer");
        assert_eq!(text(page.next().await).as_deref(), Some("subscribed"));
        // A page that keeps up gets every line.
        for i in 0..3 {
            bus.0
                .send(format!("line {i}").into())
                .expect("a subscriber");
            assert_eq!(text(page.next().await), Some(format!("line {i}")));
        }
        // It stops reading while more lines come than the buffer holds.
        for i in 0..EVENT_BUFFER + 10 {
            bus.0
                .send(format!("late {i}").into())
                .expect("a subscriber");
        }
        let mut rest = Vec::new();
        let read_to_end = async {
            while let Some(line) = text(page.next().await) {
                rest.push(line);
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), read_to_end)
            .await
            .expect("the WebSocket of a page that fell behind is closed");
        assert_eq!(
            rest.last().map(String::as_str),
            Some(r#"{"jsonrpc":"2.0","method":"lagged","params":{}}"#),
            "{rest:?}"
        );
        assert!(
            rest.len() <= 3,
            "lines after the page fell behind: {rest:?}"
        );
        writer.await.expect("the writer ends");
        // Nothing was kept for it.
        assert_eq!(bus.0.receiver_count(), 0);
    }
}
