//! IPC actor: the front-ends' door (SPEC 1, seed 1.B). JSON-RPC 2.0 over a Unix socket, one JSON
//! object per line, documented in `docs/ipc.md`.
//!
//! The socket lives in a directory only the owner can enter (0700) and is itself 0600; on top of
//! that every connection's peer user id (SO_PEERCRED) must be the owner's, or it is closed.
//!
//! Files: this one (the socket, accepting clients), `ipc/jsonrpc.rs` (request lines in, answer
//! lines out, error codes), `ipc/dispatch.rs` (running one typed [`crate::api::Request`] on the
//! node), `ipc/clients.rs` (the table of clients and their idleness), `ipc/connection.rs` (serving
//! one client). The types themselves are [`crate::api`]'s, shared with the client library.
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
use tokio::net::{UnixListener, UnixStream};

use crate::node::{IpcSetupError, NodeError, NodeHandle};

mod clients;
mod connection;
mod dispatch;
mod jsonrpc;

use clients::ClientTable;
use connection::serve_client;
pub use dispatch::dispatch;
pub use jsonrpc::{parse_request, Incoming, NotARequest};

/// Requests of one client running at once (each `open`/`accept` may wait minutes for a person).
pub const MAX_IN_FLIGHT_PER_CLIENT: usize = 64;
pub use dispatch::{DEFAULT_HISTORY, MAX_HISTORY};

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
        let err = |source: IpcSetupError| NodeError::Ipc {
            path: path.to_path_buf(),
            source,
        };
        let io = |e: std::io::Error| err(e.into());
        let dir = path.parent().ok_or_else(|| err(IpcSetupError::NoParent))?;
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        let owner_uid = std::fs::metadata(dir).map_err(io)?.uid();
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(err(IpcSetupError::AlreadyRunning));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
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
