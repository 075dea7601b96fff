//! The async client (tokio): many requests in flight at once on one connection, answers matched
//! by id, events delivered on a bounded channel. Meant for a front-end that multiplexes many
//! sessions (a web backend); the terminal uses [`super::blocking::Client`].
//!
//! Like the blocking client, it reconnects when the core closed the connection as idle (the
//! `closing` notice says no later line of it was read) and sends the requests caught by the close
//! again: they were not run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite, LinesCodec};

use super::{
    check_version, decode, parse_line, request_line, ClientError, Incoming, MAX_LINE_BYTES,
};
use crate::api::{Method, Notification, Request, VersionInfo, VersionRequest};

/// Notifications buffered for the application; when it does not read them, the reader waits, and
/// the core in turn disconnects this client as lagging (`docs/ipc.md`).
pub const EVENT_QUEUE: usize = 1024;

/// How a request's connection ended without its answer.
enum Ended {
    Answer(Result<Value, ClientError>),
    /// Closed as idle: the request was not read by the core.
    ClosedIdle,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Ended>>>>;

struct Connection {
    writer: tokio::sync::Mutex<FramedWrite<OwnedWriteHalf, LinesCodec>>,
    pending: Pending,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

pub struct AsyncClient {
    socket: PathBuf,
    conn: tokio::sync::Mutex<Arc<Connection>>,
    next_id: AtomicU64,
    events: mpsc::Sender<Notification>,
}

impl AsyncClient {
    /// Connect; notifications (after `subscribe`) arrive on the returned receiver.
    pub async fn connect(
        socket: &Path,
    ) -> Result<(Self, mpsc::Receiver<Notification>), ClientError> {
        let (events, rx) = mpsc::channel(EVENT_QUEUE);
        let conn = open(socket, events.clone()).await?;
        Ok((
            Self {
                socket: socket.to_path_buf(),
                conn: tokio::sync::Mutex::new(Arc::new(conn)),
                next_id: AtomicU64::new(1),
                events,
            },
            rx,
        ))
    }

    /// Ask the core's versions; an error if this client cannot use it.
    pub async fn check_version(&self) -> Result<VersionInfo, ClientError> {
        check_version(self.call(VersionRequest {}).await)
    }

    /// Whether the connection to the core is still up (false once the core closed it or went
    /// away; a connection closed as idle is opened again by the next call).
    pub async fn is_connected(&self) -> bool {
        !self.conn.lock().await.reader.is_finished()
    }

    /// Call a method and wait for its typed answer.
    pub async fn call<M: Method>(&self, request: M) -> Result<M::Result, ClientError> {
        self.request(request.into()).await
    }

    /// Send `request` and read its answer as `T`.
    pub async fn request<T: DeserializeOwned>(&self, request: Request) -> Result<T, ClientError> {
        let method = request.method();
        for _ in 0..2 {
            let conn = self.conn.lock().await.clone();
            match self.exchange(&conn, &request).await? {
                Ended::Answer(r) => return decode(method, r?),
                Ended::ClosedIdle => {
                    let mut current = self.conn.lock().await;
                    // Another call may have reconnected already.
                    if Arc::ptr_eq(&current, &conn) {
                        *current = Arc::new(open(&self.socket, self.events.clone()).await?);
                    }
                }
            }
        }
        Err(ClientError::Closed)
    }

    async fn exchange(&self, conn: &Connection, request: &Request) -> Result<Ended, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let line = request_line(id, request)?;
        let (tx, rx) = oneshot::channel();
        lock(&conn.pending).insert(id, tx);
        let written = conn.writer.lock().await.send(line).await;
        if written.is_err() {
            // Unread: whether the connection was closed as idle is for the reader to say.
            if let Ok(ended) = rx.await {
                return Ok(ended);
            }
            return Err(ClientError::Closed);
        }
        rx.await.map_err(|_| ClientError::Closed)
    }
}

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Ended>>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

async fn open(
    socket: &Path,
    events: mpsc::Sender<Notification>,
) -> Result<Connection, ClientError> {
    let s = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::NotRunning {
            socket: socket.to_path_buf(),
            source,
        })?;
    let (r, w) = s.into_split();
    let pending: Pending = Arc::default();
    let reader = tokio::spawn(read_lines(
        FramedRead::new(r, LinesCodec::new_with_max_length(MAX_LINE_BYTES)),
        pending.clone(),
        events,
    ));
    Ok(Connection {
        writer: tokio::sync::Mutex::new(FramedWrite::new(w, LinesCodec::new())),
        pending,
        reader,
    })
}

/// Route answers to their callers and notifications to the event channel, until the connection
/// ends; then every caller still waiting learns how it ended.
async fn read_lines(
    mut lines: FramedRead<tokio::net::unix::OwnedReadHalf, LinesCodec>,
    pending: Pending,
    events: mpsc::Sender<Notification>,
) {
    let mut closed_idle = false;
    while let Some(Ok(line)) = lines.next().await {
        match parse_line(&line) {
            Ok(Incoming::Answer { id, result }) => {
                if let Some(tx) = lock(&pending).remove(&id) {
                    let _ = tx.send(Ended::Answer(result.map_err(ClientError::Rpc)));
                }
            }
            Ok(Incoming::Notice(Notification::Closing { .. })) => closed_idle = true,
            Ok(Incoming::Notice(n)) => {
                let _ = events.send(n).await;
            }
            Ok(Incoming::Other) | Err(_) => {}
        }
    }
    for (_, tx) in lock(&pending).drain() {
        let _ = tx.send(if closed_idle {
            Ended::ClosedIdle
        } else {
            Ended::Answer(Err(ClientError::Closed))
        });
    }
}
