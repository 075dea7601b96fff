//! The one connection of `pgpchat web` to the core, shared by every browser WebSocket.
//!
//! Requests go through the library's async client, which matches answers by id, so many pages'
//! requests are in flight on it at once. The connection is subscribed: the core's notifications
//! are fanned out to the subscribed WebSockets as JSON-RPC lines on a bounded broadcast channel.
//!
//! When the core goes away (stopped, crashed, or it dropped this connection as lagging), the pages
//! are told with the web-only notification `{"method":"core","params":{"connected":false}}`; this
//! process connects again every [`RECONNECT_EVERY`] and, once a core answers and is subscribed,
//! says `{"connected":true}`, after which each page reads its state again.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use pgpchat_actors::api::{ErrorKind, Notification, Request, RpcError, SubscribeRequest};
use pgpchat_actors::client::{AsyncClient, ClientError};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit, Semaphore};

/// Lines kept for the slowest subscribed WebSocket; one that falls further behind is sent `lagged`
/// and closed (as the core does with its own clients).
pub const EVENT_BUFFER: usize = 1024;

/// Requests of all pages in flight on the core's connection at once: under the core's own bound
/// per connection (64), so the core never refuses this process.
pub const MAX_CORE_IN_FLIGHT: usize = 48;

/// How often the liveness of the core's connection is checked.
const LIVENESS_POLL: Duration = Duration::from_millis(500);

/// How often a gone core is tried again.
pub const RECONNECT_EVERY: Duration = Duration::from_secs(1);

pub struct CoreLink {
    socket: PathBuf,
    client: RwLock<Option<Arc<AsyncClient>>>,
    events: broadcast::Sender<Arc<str>>,
    in_flight: Arc<Semaphore>,
}

/// The web-only notice of the core's connection state.
pub fn core_notice(connected: bool) -> String {
    json!({"jsonrpc": "2.0", "method": "core", "params": {"connected": connected}}).to_string()
}

impl CoreLink {
    /// Take over a connected client and its events, subscribed before this returns (a page's
    /// first request finds the core connected); the supervisor runs on the current runtime.
    pub async fn start(
        socket: PathBuf,
        client: AsyncClient,
        events: mpsc::Receiver<Notification>,
    ) -> Result<Arc<Self>, ClientError> {
        client.call(SubscribeRequest {}).await?;
        let (tx, _) = broadcast::channel(EVENT_BUFFER);
        let client = Arc::new(client);
        let link = Arc::new(Self {
            socket,
            client: RwLock::new(Some(client.clone())),
            events: tx,
            in_flight: Arc::new(Semaphore::new(MAX_CORE_IN_FLIGHT)),
        });
        tokio::spawn(link.clone().supervise(client, events));
        Ok(link)
    }

    /// A receiver of every line for the pages from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.events.subscribe()
    }

    /// Whether a core is connected now.
    pub fn connected(&self) -> bool {
        self.current().is_some()
    }

    fn current(&self) -> Option<Arc<AsyncClient>> {
        self.client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, c: Option<Arc<AsyncClient>>) {
        *self.client.write().unwrap_or_else(|e| e.into_inner()) = c;
    }

    /// A slot among [`MAX_CORE_IN_FLIGHT`], or none when all are taken.
    pub fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.in_flight.clone().try_acquire_owned().ok()
    }

    /// Run a request on the core: its `result`, or the error object to answer with.
    pub async fn call(&self, request: Request) -> Result<Value, RpcError> {
        let Some(client) = self.current() else {
            return Err(gone());
        };
        match client.request::<Value>(request).await {
            Ok(v) => Ok(v),
            Err(ClientError::Rpc(e)) => Err(e),
            Err(
                ClientError::Closed | ClientError::ClosedWith(_) | ClientError::NotRunning { .. },
            ) => Err(gone()),
            Err(e) => Err(RpcError::new(ErrorKind::Internal, e.to_string())),
        }
    }

    async fn supervise(
        self: Arc<Self>,
        mut client: Arc<AsyncClient>,
        mut events: mpsc::Receiver<Notification>,
    ) {
        loop {
            self.forward(&client, &mut events).await;
            self.set(None);
            let _ = self.events.send(core_notice(false).into());
            log::warn!("the core's connection ended; waiting for a core");
            loop {
                let (c, rx) = self.reconnect().await;
                if c.call(SubscribeRequest {}).await.is_ok() {
                    (client, events) = (Arc::new(c), rx);
                    break;
                }
            }
            self.set(Some(client.clone()));
            let _ = self.events.send(core_notice(true).into());
        }
    }

    /// Forward the core's notifications until its connection ends.
    async fn forward(&self, client: &AsyncClient, events: &mut mpsc::Receiver<Notification>) {
        loop {
            tokio::select! {
                n = events.recv() => match n {
                    Some(n) => {
                        let _ = self.events.send(n.to_value().to_string().into());
                    }
                    None => return,
                },
                () = tokio::time::sleep(LIVENESS_POLL) => {
                    if !client.is_connected().await {
                        // Lines read before the end are still queued: pass them on.
                        while let Ok(n) = events.try_recv() {
                            let _ = self.events.send(n.to_value().to_string().into());
                        }
                        return;
                    }
                }
            }
        }
    }

    async fn reconnect(&self) -> (AsyncClient, mpsc::Receiver<Notification>) {
        loop {
            tokio::time::sleep(RECONNECT_EVERY).await;
            if let Ok((c, rx)) = AsyncClient::connect(&self.socket).await {
                match c.check_version().await {
                    Ok(_) => return (c, rx),
                    Err(e) => log::warn!("{e}"),
                }
            }
        }
    }
}

fn gone() -> RpcError {
    RpcError::new(
        ErrorKind::Failed,
        "the core is not running (pgpchat web connects again as soon as one is started)",
    )
}
