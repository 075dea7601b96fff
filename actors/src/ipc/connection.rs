//! One front-end's connection: a reader that parses and runs its requests, a writer fed by a bounded
//! queue, the event subscription, the idle timeout and the `lagged` and `closing` notices.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc, Notify, Semaphore};
use tokio_util::codec::{
    AnyDelimiterCodec, AnyDelimiterCodecError, FramedRead, FramedWrite, LinesCodec,
};

use super::clients::ClientSlot;
use super::jsonrpc::{error_line, error_of, result_line};
use super::{dispatch, parse_request, MAX_IN_FLIGHT_PER_CLIENT};
use crate::api::{self, ErrorKind, Notification, Request};
use crate::node::NodeHandle;

/// The notice sent before an idle connection is closed: the client knows its next request was not
/// read, so it may reconnect and send it again without running it twice.
fn closing_notice() -> String {
    Notification::Closing {
        reason: "idle".into(),
    }
    .to_value()
    .to_string()
}

fn lagged_notice() -> String {
    Notification::Lagged {}.to_value().to_string()
}

pub(super) async fn serve_client(node: NodeHandle, stream: UnixStream, slot: Arc<ClientSlot>) {
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
    // Dropped when this connection ends: what its requests wait for (an `open`) is withdrawn.
    let (_alive, client_gone) = tokio::sync::watch::channel(());
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
                let _ = tx.try_send(error_of(
                    Value::Null,
                    ErrorKind::InvalidRequest,
                    &format!(
                        "request line longer than {} bytes",
                        limits.ipc_max_line_bytes
                    ),
                ));
                break;
            }
            Err(AnyDelimiterCodecError::Io(_)) => break,
        };
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        let Ok(line) = std::str::from_utf8(line) else {
            if !answer(
                &tx,
                error_of(
                    Value::Null,
                    ErrorKind::ParseError,
                    "parse error: the line is not valid UTF-8",
                ),
            ) {
                break;
            }
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        let (id, request) = match parse_request(line) {
            Ok(r) => (r.id, r.request),
            Err(e) => {
                if !answer(&tx, e.line()) {
                    break;
                }
                continue;
            }
        };
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                if let Some(id) = id {
                    if !answer(&tx, error_line(id, &e)) {
                        break;
                    }
                }
                continue;
            }
        };
        if matches!(request, Request::Subscribe(_)) {
            if events.is_none() {
                slot.update(|a| a.subscribed = true);
                events = Some(actix_rt::spawn(forward_events(
                    node.settings.node.name.clone(),
                    node.subscribe(),
                    tx.clone(),
                    lag.clone(),
                )));
            }
            if let Some(id) = id {
                let subscribed = api::Subscribed { subscribed: true };
                let line = result_line(id, serde_json::to_value(subscribed).unwrap_or_default());
                if !answer(&tx, line) {
                    break;
                }
            }
            continue;
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            if let Some(id) = id {
                if !answer(
                    &tx,
                    error_of(
                        id,
                        ErrorKind::TooManyInFlight,
                        "too many requests in flight",
                    ),
                ) {
                    break;
                }
            }
            continue;
        };
        slot.update(|a| a.in_flight += 1);
        let (node, tx, slot, gone) = (node.clone(), tx.clone(), slot.clone(), client_gone.clone());
        actix_rt::spawn(async move {
            let result = dispatch(&node, request, gone).await;
            if let Some(id) = id {
                let line = match result.map(serde_json::to_value) {
                    Ok(Ok(v)) => result_line(id, v),
                    Ok(Err(e)) => error_of(id, ErrorKind::Internal, &e.to_string()),
                    Err(e) => error_of(id, e.kind(), &e.to_string()),
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

/// Queue an answer from the reader loop; false when the client must be closed. The reader never
/// waits on the queue: a client that writes but does not read would hold it there, deaf to its
/// idle timeout and to eviction, and keep its connection open after leaving the client table. A
/// full queue means the client has not read `ipc_event_queue` lines: it is closed.
fn answer(tx: &mpsc::Sender<String>, line: String) -> bool {
    tx.try_send(line).is_ok()
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
                let line = Notification::Event(e.into()).to_value().to_string();
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
