//! Discussion directory actor: starts, finds and forgets the node's [`DiscussionSession`]s.
//!
//! At start it resumes every open discussion from the store (unsealing each discussion key with the
//! identity key, rebinding the receiver's listener on its old port when free). Messages:
//! [`CreateDiscussion`] (from the listener when a handshake succeeds), [`Resolve`] (a discussion id,
//! id prefix, or contact name/fingerprint prefix → the most recent matching discussion), [`Lookup`],
//! [`RouteConnection`] (a discussion connection that arrived on the main listener), and
//! [`SessionStopped`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use actix::prelude::*;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};

use crate::contacts::{ContactRegistry, KeepContact};
use crate::crypto::{PublicCert, SecretCert};
use crate::events::{now_secs, EventBus};
use crate::keys::KeysHandle;
use crate::net::Conn;
use crate::net::Crypto as _;
use crate::session::{AuthenticateIncoming, DiscussionSession, SessionParams, SessionStopped};
use crate::settings::Settings;
use crate::store::{DiscussionRecord, DiscussionState, StoreError, StoreHandle};
use crate::wire::{Nonce, Role};

mod notices;
pub use notices::Tombstone;

#[derive(Debug, Error)]
pub enum DirectoryError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("no discussion matches '{0}'")]
    NotFound(String),
    #[error("'{0}' matches several discussions: {1}")]
    Ambiguous(String, String),
    #[error("discussion '{0}' is closed")]
    Closed(String),
    #[error("cannot open the discussion listener: {0}")]
    Bind(#[source] std::io::Error),
    #[error("{0}")]
    Key(String),
}

pub struct DiscussionDirectory {
    node: String,
    settings: Settings,
    keys: KeysHandle,
    store: StoreHandle,
    events: EventBus,
    contacts: Addr<ContactRegistry>,
    /// What every session's received control messages are dispatched with.
    control: crate::control::ControlContext,
    sessions: HashMap<String, Addr<DiscussionSession>>,
    /// Discussions being created (stored, their session not started yet), with the lookups waiting
    /// for their session: a front-end that sees the new discussion may send to it at once.
    creating: HashMap<String, Vec<tokio::sync::oneshot::Sender<Addr<DiscussionSession>>>>,
    /// Discussions closed without the peer, until it confirms ([`notices`]).
    tombstones: HashMap<String, Tombstone>,
    /// Bounds the connections being told a discussion is closed (the id in a hello is visible).
    tombstone_permits: Arc<tokio::sync::Semaphore>,
    /// Those connections per source address (at most [`notices::TOMBSTONE_CONNECTIONS_PER_ADDRESS`]).
    tombstone_conns: HashMap<IpAddr, usize>,
    /// The DHT worker, given to each session (issue 11).
    dht: Option<Addr<crate::dht::DhtWorker>>,
}

impl DiscussionDirectory {
    pub fn new(
        settings: Settings,
        keys: KeysHandle,
        store: StoreHandle,
        events: EventBus,
        contacts: Addr<ContactRegistry>,
        control: crate::control::ControlContext,
    ) -> Self {
        Self {
            contacts,
            control,
            node: settings.node.name.clone(),
            settings,
            keys,
            store,
            events,
            sessions: HashMap::new(),
            creating: HashMap::new(),
            tombstones: HashMap::new(),
            tombstone_permits: Arc::new(tokio::sync::Semaphore::new(
                crate::session::MAX_UNAUTHENTICATED,
            )),
            tombstone_conns: HashMap::new(),
            dht: None,
        }
    }

    /// Sessions reach a peer that moved through `dht` (when the DHT is on).
    pub fn with_dht(mut self, dht: Option<Addr<crate::dht::DhtWorker>>) -> Self {
        self.dht = dht;
        self
    }

    fn start_session(
        &mut self,
        record: &DiscussionRecord,
        own_key: SecretCert,
        peer_key: PublicCert,
        listener: Option<TcpListener>,
        ctx: &mut Context<Self>,
    ) {
        let role = record.role();
        let peer_endpoint = peer_endpoint(record);
        let session = DiscussionSession::new(SessionParams {
            settings: self.settings.clone(),
            discussion_id: record.id.clone(),
            role,
            own_key,
            peer_key,
            peer_name: record.peer_name.clone(),
            peer_fingerprint: record.peer_fingerprint.clone(),
            peer_endpoint,
            listener,
            contacts: Some(self.contacts.clone()),
            dht: self.dht.clone(),
            closing: record.state == DiscussionState::Closing,
            peer_version: record.peer_version,
            control: self.control.clone(),
            keys: self.keys.clone(),
            store: self.store.clone(),
            events: self.events.clone(),
            directory: ctx.address().recipient(),
        })
        .start();
        self.sessions.insert(record.id.clone(), session);
    }
}

/// Requester: where the receiver's discussion listener was last known to be.
fn peer_endpoint(record: &DiscussionRecord) -> Option<SocketAddr> {
    if record.role() != Role::Requester {
        return None;
    }
    format!("{}:{}", record.peer_address, record.peer_port)
        .parse::<SocketAddr>()
        .ok()
        .or_else(|| {
            record
                .peer_address
                .parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, record.peer_port))
        })
}

/// The peer's certificate with the subkey it announced as current (issue 14; none announced: the
/// one it opened the discussion with), and our own current subkey's id (the newest we hold).
async fn current_subkeys(
    store: &StoreHandle,
    id: &str,
    peer: PublicCert,
    own: &SecretCert,
) -> Result<(PublicCert, String), DirectoryError> {
    let i = id.to_string();
    let announced = store.run(move |s| s.peer_subkey(&i)).await?;
    let peer = if announced.is_empty() {
        peer
    } else {
        peer.with_current_subkey(&announced)
            .map_err(|e| DirectoryError::Key(format!("peer subkey: {e}")))?
    };
    let own_first = own.encryption_subkey_ids().pop().unwrap_or_default();
    Ok((peer, own_first))
}

/// Bind a discussion listener, on `port` if it is free, else on any port.
async fn bind_discussion_listener(
    settings: &Settings,
    port: u16,
) -> Result<TcpListener, DirectoryError> {
    let bind = settings.listener.bind;
    if port != 0 {
        if let Ok(l) = TcpListener::bind(SocketAddr::new(bind, port)).await {
            return Ok(l);
        }
    }
    TcpListener::bind(SocketAddr::new(bind, 0))
        .await
        .map_err(DirectoryError::Bind)
}

impl Actor for DiscussionDirectory {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Resume before serving anyone: `wait` holds the mailbox until every session is back.
        let (store, keys, settings) =
            (self.store.clone(), self.keys.clone(), self.settings.clone());
        let node = self.node.clone();
        let fut = async move {
            let ids = store.run(|s| s.open_discussion_ids()).await?;
            let mut resumed = Vec::new();
            for id in ids {
                let i = id.clone();
                let record = store.run(move |s| s.discussion(&i)).await?;
                let own = match keys
                    .unseal_discussion_key(record.own_key_sealed.clone())
                    .await
                {
                    Ok(k) => k,
                    Err(e) => {
                        log::error!("[{node}] discussion {id}: cannot unseal its key: {e}");
                        continue;
                    }
                };
                let peer = match keys.parse_cert(record.peer_key.clone()).await {
                    Ok(k) => k,
                    Err(e) => {
                        log::error!("[{node}] discussion {id}: bad peer key: {e}");
                        continue;
                    }
                };
                // Its subkey states exist: made with the discussion, or recorded at start for one
                // from before issue 14 (`node::record_first_subkeys`).
                let (peer, _) = match current_subkeys(&store, &id, peer, &own).await {
                    Ok(k) => k,
                    Err(e) => {
                        log::error!("[{node}] discussion {id}: {e}");
                        continue;
                    }
                };
                let listener = if record.role() == Role::Receiver {
                    let l = bind_discussion_listener(&settings, record.listen_port).await?;
                    let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
                    if port != record.listen_port {
                        let i = id.clone();
                        store.run(move |s| s.set_listen_port(&i, port)).await?;
                    }
                    Some(l)
                } else {
                    None
                };
                resumed.push((record, own, peer, listener));
            }
            let mut tombstones = Vec::new();
            for (record, proof) in store.run(|s| s.close_notices()).await? {
                match keys.parse_cert(record.peer_key.clone()).await {
                    Ok(peer) => tombstones.push(Tombstone::from_record(&record, peer, proof)),
                    Err(e) => log::error!("[{node}] discussion {}: bad peer key: {e}", record.id),
                }
            }
            Ok::<_, DirectoryError>((resumed, tombstones))
        };
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok((resumed, tombstones)) => {
                for t in tombstones {
                    act.keep_tombstone(t, ctx);
                }
                for (record, own, peer, listener) in resumed {
                    log::info!(
                        "[{}] resuming discussion {} with {}",
                        act.node,
                        record.id,
                        record.peer_name
                    );
                    act.start_session(&record, own, peer, listener, ctx);
                }
            }
            Err(e) => log::error!("[{}] cannot resume discussions: {e}", act.node),
        }));
    }
}

/// A handshake succeeded: store the discussion and start its session. Returns the port of the
/// discussion listener (receiver) or 0 (requester).
#[derive(Message)]
#[rtype(result = "Result<u16, DirectoryError>")]
pub struct CreateDiscussion {
    pub record: DiscussionRecord,
    pub own_key: SecretCert,
    pub peer_key: PublicCert,
}

impl Handler<CreateDiscussion> for DiscussionDirectory {
    type Result = ResponseActFuture<Self, Result<u16, DirectoryError>>;

    fn handle(&mut self, m: CreateDiscussion, _: &mut Context<Self>) -> Self::Result {
        let (store, settings) = (self.store.clone(), self.settings.clone());
        let mut record = m.record;
        let own_first = m.own_key.encryption_subkey_ids().pop().unwrap_or_default();
        let creating = record.id.clone();
        self.creating.entry(creating.clone()).or_default();
        let fut = async move {
            let listener = if record.role() == Role::Receiver {
                let l = bind_discussion_listener(&settings, 0).await?;
                record.listen_port = l.local_addr().map_err(DirectoryError::Bind)?.port();
                Some(l)
            } else {
                None
            };
            // One store job: the discussion and its first subkey state.
            let r = record.clone();
            store
                .run(move |s| {
                    s.insert_discussion(&r)?;
                    s.record_first_subkey(&r.id, &own_first, now_secs())
                })
                .await?;
            Ok::<_, DirectoryError>((record, listener))
        };
        Box::pin(fut.into_actor(self).map(move |res, act, ctx| {
            // Lookups that waited get the session; on an error they are dropped (not found).
            let waiting = act.creating.remove(&creating).unwrap_or_default();
            let (record, listener) = res?;
            let port = record.listen_port;
            act.contacts.do_send(KeepContact {
                fingerprint: record.peer_fingerprint.clone(),
            });
            act.start_session(&record, m.own_key, m.peer_key, listener, ctx);
            if let Some(session) = act.sessions.get(&record.id) {
                for w in waiting {
                    let _ = w.send(session.clone());
                }
            }
            Ok(port)
        }))
    }
}

/// Find a discussion: its id, a unique id prefix (4+ characters), or a contact's name or
/// fingerprint prefix: the most recently opened *open* discussion with that contact, or the most
/// recently opened one if none is open (so `send bob` reaches the discussion that can carry it,
/// and `history bob` still finds a closed one).
#[derive(Message)]
#[rtype(result = "Result<String, DirectoryError>")]
pub struct Resolve(pub String);

impl Handler<Resolve> for DiscussionDirectory {
    type Result = ResponseFuture<Result<String, DirectoryError>>;

    fn handle(&mut self, m: Resolve, _: &mut Context<Self>) -> Self::Result {
        let q = m.0.trim().to_string();
        // The common case (a front-end sending to an id it has) needs no store at all.
        if self.sessions.contains_key(&q) {
            return Box::pin(async move { Ok(q) });
        }
        let store = self.store.clone();
        Box::pin(async move {
            let all = store.run(|s| s.discussion_refs()).await?; // newest first
            if let Some(d) = all.iter().find(|d| d.id == q) {
                return Ok(d.id.clone());
            }
            let lower = q.to_lowercase();
            let by_id: Vec<_> = all
                .iter()
                .filter(|d| lower.len() >= 4 && d.id.starts_with(&lower))
                .collect();
            if by_id.len() == 1 {
                return Ok(by_id[0].id.clone());
            }
            if by_id.len() > 1 {
                return Err(DirectoryError::Ambiguous(q, "use more of the id".into()));
            }
            let hex = q.replace(' ', "").to_uppercase();
            let is_fpr = hex.len() >= 4 && hex.chars().all(|c| c.is_ascii_hexdigit());
            let by_peer: Vec<_> = all
                .iter()
                .filter(|d| {
                    d.peer_name.eq_ignore_ascii_case(&q)
                        || (is_fpr && d.peer_fingerprint.starts_with(&hex))
                })
                .collect();
            let Some(first) = by_peer.first() else {
                return Err(DirectoryError::NotFound(q));
            };
            if by_peer
                .iter()
                .any(|d| d.peer_fingerprint != first.peer_fingerprint)
            {
                return Err(DirectoryError::Ambiguous(
                    q,
                    "several contacts have this name; use a fingerprint prefix or the discussion id"
                        .into(),
                ));
            }
            // Newest first: the newest open one, else the newest.
            let chosen = by_peer
                .iter()
                .find(|d| d.state == DiscussionState::Open)
                .unwrap_or(first);
            Ok(chosen.id.clone())
        })
    }
}

/// The session of an open discussion.
#[derive(Message)]
#[rtype(result = "Result<Addr<DiscussionSession>, DirectoryError>")]
pub struct Lookup(pub String);

impl Handler<Lookup> for DiscussionDirectory {
    type Result = ResponseFuture<Result<Addr<DiscussionSession>, DirectoryError>>;
    fn handle(&mut self, m: Lookup, _: &mut Context<Self>) -> Self::Result {
        let found = self.sessions.get(&m.0).cloned();
        let store = self.store.clone();
        // Being created: its session comes when the creation ends.
        let pending = self.creating.get_mut(&m.0).map(|w| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            w.push(tx);
            rx
        });
        Box::pin(async move {
            if let Some(a) = found {
                return Ok(a);
            }
            if let Some(rx) = pending {
                if let Ok(a) = rx.await {
                    return Ok(a);
                }
            }
            let id = m.0.clone();
            let d = store.run(move |s| s.discussion(&id)).await?;
            match d.state {
                DiscussionState::Closed => Err(DirectoryError::Closed(m.0)),
                DiscussionState::Open | DiscussionState::Closing => {
                    Err(DirectoryError::Key(format!(
                        "discussion '{}' could not be resumed (see the core's log)",
                        m.0
                    )))
                }
            }
        })
    }
}

/// A connection for a discussion that arrived on the main listener (the requester falls back to it
/// when the discussion listener is unreachable).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RouteConnection {
    pub discussion_id: String,
    pub nonce: Nonce,
    pub conn: Conn<TcpStream>,
    /// Who connected: the key of its log lines and of its per-address bound.
    pub from: SocketAddr,
    /// The protocol version agreed from the hello.
    pub version: u16,
}

impl Handler<RouteConnection> for DiscussionDirectory {
    type Result = ();
    fn handle(&mut self, m: RouteConnection, ctx: &mut Context<Self>) {
        if let Some(s) = self.sessions.get(&m.discussion_id) {
            s.do_send(AuthenticateIncoming {
                conn: m.conn,
                nonce: m.nonce,
                version: m.version,
            });
        } else {
            self.tell_incoming(m.discussion_id, m.conn, m.from, ctx);
        }
    }
}

impl Handler<SessionStopped> for DiscussionDirectory {
    type Result = ();
    fn handle(&mut self, m: SessionStopped, ctx: &mut Context<Self>) {
        self.sessions.remove(&m.discussion_id);
        if let Some(t) = m.notice {
            self.keep_tombstone(t, ctx);
        }
    }
}
