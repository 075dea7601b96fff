//! Builds a node from settings and an unlocked identity, wiring the actors explicitly (no global
//! registry, so several nodes run in one process), and gives back a [`NodeHandle`]: the one API that
//! the IPC server, the simulation and the tests all use.
//!
//! ```text
//!             ┌──────────── IPC (front-ends) ────────────┐
//!             ▼                                          │
//!   Discovery ──AnnounceSeen──▶ ContactRegistry ◀──FindContact── NodeHandle
//!   (UDP)        Prober ──AnnounceSeen──▲ (add-contact, re-probing; TCP)
//!   Listener (TCP) ──CreateDiscussion──▶ DiscussionDirectory ──▶ DiscussionSession (one each)
//!        all of them ──▶ KeyManager (crypto workers), StoreWorker (SQLite), EventBus
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;

use actix::prelude::*;
use serde::Serialize;
use thiserror::Error;
use tokio::sync::broadcast;

use crate::api::ErrorKind;
use crate::at_rest::{self, Sealed};
use crate::contacts::{
    Block, ContactError, ContactRegistry, FindContact, ListBlocked, ListContacts, RemoveContact,
    SetVerified,
};
use crate::crypto::{CryptoError, SecretCert};
use crate::discovery::{Discovery, DiscoverySockets, DiscoveryStats, GetDiscoveryStats};
use crate::discussions::{DirectoryError, DiscussionDirectory, Lookup, Resolve};
use crate::events::{Event, EventBus, RefusedRequest, RequestInfo};
use crate::identity;
use crate::introductions::{
    DecideIntroduction, IntroError, Introduce, Introductions, ListIntroductions,
};
use crate::keys::{KeyManager, KeysHandle};
use crate::listener::{Cancel, Decide, ListRefusals, ListRequests, Listener, ListenerError, Open};
use crate::prober::{AddContact, AddContactError, Prober};
use crate::session::{CloseDiscussion, SendText, SessionError};
use crate::settings::Settings;
use crate::store::introductions::ReceivedIntroduction;
use crate::store::STORAGE_KEY_BYTES;
use crate::store::{
    ContactRecord, DiscussionState, DiscussionSummary, HistoryPage, MessageRecord, StoreError,
    StoreHandle, StoreWorker,
};
use crate::wire::FailReason;

#[derive(Debug, Error)]
pub enum NodeError {
    #[error("{0}")]
    Identity(#[from] identity::IdentityError),
    /// Transparent: the binary prints the error chain, which would say the store's error twice.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("discovery: {0}")]
    Discovery(std::io::Error),
    /// The IPC socket at `path` could not be set up; `source` says why.
    #[error("IPC socket: {}: {source}", path.display())]
    Ipc {
        path: std::path::PathBuf,
        source: IpcSetupError,
    },
    #[error("storage key: {0}")]
    StorageKey(#[source] CryptoError),
    /// The DHT client could not be built (`[dht]` settings, or its UDP socket).
    #[error("{0}")]
    Dht(String),
}

/// Why the IPC socket could not be set up.
#[derive(Debug, Error)]
pub enum IpcSetupError {
    #[error("no parent directory")]
    NoParent,
    #[error("a core is already running for this profile")]
    AlreadyRunning,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Errors of the node API, as front-ends see them. [`ApiError::kind`] is the machine-readable kind
/// (the IPC turns it into a JSON-RPC code and `error.data`).
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(#[source] Cause),
    #[error("{0}")]
    Invalid(#[source] Cause),
    /// The operation failed: refused, wrong secret, unreachable, closed...
    #[error("{1}")]
    Failed(ErrorKind, #[source] Cause),
    /// The original error kept as the source (front-ends see its text, kind `internal`).
    #[error("internal error: {0}")]
    Internal(#[source] Cause),
}

/// What an [`ApiError`] holds: the layer's own typed error (its text is what front-ends see), or
/// a message of ours (`"...".into()`).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

impl ApiError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Invalid(_) => ErrorKind::InvalidParams,
            Self::Failed(k, _) => *k,
            Self::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// The kind of a handshake's failure reason.
fn fail_kind(r: FailReason) -> ErrorKind {
    match r {
        FailReason::WrongSecretOrIntercepted => ErrorKind::WrongSecretOrIntercepted,
        FailReason::TooManyAttempts => ErrorKind::TooManyAttempts,
        FailReason::Replay | FailReason::Protocol => ErrorKind::Protocol,
        FailReason::Timeout => ErrorKind::Timeout,
        FailReason::Busy => ErrorKind::Busy,
    }
}

impl From<ContactError> for ApiError {
    fn from(e: ContactError) -> Self {
        match e {
            ContactError::NotFound(_) => Self::NotFound(e.into()),
            ContactError::Ambiguous(..) | ContactError::NotAFingerprint(_) => {
                Self::Invalid(e.into())
            }
        }
    }
}

impl From<AddContactError> for ApiError {
    fn from(e: AddContactError) -> Self {
        use AddContactError as E;
        let kind = match e {
            E::BadAddress(_) => return Self::Invalid(e.into()),
            E::Resolve { .. } | E::Unreachable { .. } => ErrorKind::Unreachable,
            E::NotPgpchat { .. } | E::TooOld { .. } | E::Probe { .. } | E::OtherKey { .. } => {
                ErrorKind::Protocol
            }
            E::Busy => ErrorKind::Busy,
            E::Own(_) | E::Blocked(_) | E::TooMany | E::TableFull(_) => ErrorKind::Failed,
            E::Unavailable => return Self::Internal(e.into()),
        };
        Self::Failed(kind, e.into())
    }
}

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::NotFound(_) | DirectoryError::Store(StoreError::NoDiscussion(_)) => {
                Self::NotFound(e.into())
            }
            DirectoryError::Ambiguous(..) => Self::Invalid(e.into()),
            DirectoryError::Closed(_) => Self::Failed(ErrorKind::Closed, e.into()),
            _ => Self::Internal(e.into()),
        }
    }
}

impl From<ListenerError> for ApiError {
    fn from(e: ListenerError) -> Self {
        match e {
            ListenerError::NoRequest(_) => Self::NotFound(e.into()),
            ListenerError::Failed(r) => Self::Failed(fail_kind(r), e.into()),
            ListenerError::Handshake(ref h) => {
                let kind = fail_kind(h.reason());
                Self::Failed(kind, e.into())
            }
            ListenerError::Refused { .. } => Self::Failed(ErrorKind::Refused, e.into()),
            ListenerError::Unreachable(..) => Self::Failed(ErrorKind::Unreachable, e.into()),
            ListenerError::NotConfirmed { .. } => Self::Failed(ErrorKind::NotConfirmed, e.into()),
            ListenerError::Net(crate::net::NetError::Timeout) => {
                Self::Failed(ErrorKind::Timeout, e.into())
            }
            ListenerError::Net(_)
            | ListenerError::Crypto(_)
            | ListenerError::ContactKey(_)
            | ListenerError::BadAddress(_)
            | ListenerError::Directory(_)
            | ListenerError::Create(_)
            | ListenerError::DirectoryGone => Self::Failed(ErrorKind::Failed, e.into()),
            ListenerError::Cancelled(_) => Self::Failed(ErrorKind::Cancelled, e.into()),
            ListenerError::Locked { .. } => Self::Failed(ErrorKind::TooManyAttempts, e.into()),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::TooLarge(..) => Self::Invalid(e.into()),
            SessionError::Closed | SessionError::Store(StoreError::Closed(_)) => {
                Self::Failed(ErrorKind::Closed, e.into())
            }
            SessionError::NoControlChannel(_)
            | SessionError::NoRotation(_)
            | SessionError::RotationBusy => Self::Failed(ErrorKind::Failed, e.into()),
            _ => Self::Internal(e.into()),
        }
    }
}

impl From<crate::exchange::ExchangeError> for ApiError {
    fn from(e: crate::exchange::ExchangeError) -> Self {
        use crate::exchange::ExchangeError as X;
        match e {
            X::Session(e) => e.into(),
            X::Store(e) => e.into(),
            X::Timeout(_) => Self::Failed(ErrorKind::Timeout, e.into()),
            X::Refused => Self::Failed(ErrorKind::Refused, e.into()),
            X::Busy => Self::Failed(ErrorKind::Busy, e.into()),
            X::TooLarge(..) => Self::Failed(ErrorKind::Failed, e.into()),
            X::Gone => Self::Internal(e.into()),
        }
    }
}

impl From<IntroError> for ApiError {
    fn from(e: IntroError) -> Self {
        match e {
            IntroError::Contact(e) => e.into(),
            IntroError::NotFound(_) | IntroError::NoDiscussion(_) => Self::NotFound(e.into()),
            IntroError::SamePerson(_)
            | IntroError::Transition(_)
            | IntroError::AlreadyDecided { .. }
            | IntroError::Blocked => Self::Invalid(e.into()),
            IntroError::TooMany => Self::Failed(ErrorKind::Busy, e.into()),
            IntroError::Send { .. } => Self::Failed(ErrorKind::Failed, e.into()),
            _ => Self::Internal(e.into()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoDiscussion(_) => Self::NotFound(e.into()),
            _ => Self::Internal(e.into()),
        }
    }
}

/// An actor of the node did not answer (it stopped): the mailbox error kept as the source.
#[derive(Debug, Error)]
#[error("actor unavailable: {0}")]
pub struct Unavailable(#[source] pub MailboxError);

fn mailbox(e: MailboxError) -> ApiError {
    ApiError::Internal(Box::new(Unavailable(e)))
}

#[derive(Debug, Clone, Serialize)]
pub struct WhoAmI {
    pub name: String,
    pub fingerprint: String,
    pub node: String,
    pub tcp_port: u16,
    pub data_dir: PathBuf,
}

/// A running node. Cheap to clone.
#[derive(Clone)]
pub struct NodeHandle {
    pub settings: Settings,
    pub keys: KeysHandle,
    pub store: StoreHandle,
    pub events: EventBus,
    pub contacts: Addr<ContactRegistry>,
    pub discovery: Addr<Discovery>,
    pub listener: Addr<Listener>,
    pub directory: Addr<DiscussionDirectory>,
    /// The contact-list exchange over discussions' control channels.
    pub exchange: Addr<crate::exchange::ContactExchange>,
    pub prober: Addr<Prober>,
    /// Introductions (made by us, or to us).
    pub introductions: Addr<Introductions>,
    /// The Mainline DHT worker, when `[dht] enabled` (issue 11).
    pub dht: Option<Addr<crate::dht::DhtWorker>>,
    pub tcp_port: u16,
    /// Notified when a front-end asks the core to stop (`shutdown`); the daemon waits on it.
    pub shutdown: std::sync::Arc<tokio::sync::Notify>,
}

/// Start every actor of a node in the current actix System.
pub async fn start_node(settings: Settings, identity: SecretCert) -> Result<NodeHandle, NodeError> {
    let name = settings.node.name.clone();
    identity::ensure_data_dir(&settings.node.data_dir)?;
    let keys = KeyManager::start(identity, settings.limits.crypto_threads);
    let storage_key = storage_key(&keys, &settings.node.data_dir, &name).await?;
    let store = StoreWorker::start(&settings.node.data_dir.join("store.db"), &storage_key)?;
    drop(storage_key);
    store.run(|s| s.finish_destructions()).await?;
    convert_legacy_discussion_keys(&keys, &store, &name).await?;
    record_first_subkeys(&keys, &store, &name).await?;
    let loaded = store.run(|s| s.contacts()).await?;
    let blocked = store.run(|s| s.blocked()).await?;
    let events = EventBus::new(settings.limits.ipc_event_queue, &name);

    let listen_addr = SocketAddr::new(settings.listener.bind, settings.listener.port);
    let tcp = tokio::net::TcpListener::bind(listen_addr)
        .await
        .map_err(|e| NodeError::Listen(listen_addr, e))?;
    let tcp_port = tcp
        .local_addr()
        .map_err(|e| NodeError::Listen(listen_addr, e))?
        .port();
    let sockets = DiscoverySockets::bind(&settings).map_err(NodeError::Discovery)?;

    // Contacts we have (or had) a discussion with are never evicted from the table.
    let with_discussion = store
        .run(|s| s.discussion_refs())
        .await?
        .into_iter()
        .map(|d| d.peer_fingerprint)
        .collect();
    let contacts = ContactRegistry::new(
        &name,
        loaded,
        with_discussion,
        blocked,
        settings.limits.max_contacts,
        settings.discovery.interval_secs,
        store.clone(),
        events.clone(),
    )
    .start();
    let dht = crate::dht::start(&settings, tcp_port, &keys, &store, &events)
        .await
        .map_err(|e| NodeError::Dht(e.to_string()))?;
    let exchange = crate::exchange::ContactExchange::new(
        settings.clone(),
        keys.clone(),
        store.clone(),
        events.clone(),
        contacts.clone(),
        tcp_port,
    )
    .start();
    // The introductions actor needs the directory and the listener, and the directory's sessions
    // need it: its address exists now, the actor starts once the others are built.
    let introductions_context = Context::<Introductions>::new();
    let introductions = introductions_context.address();
    let control = crate::control::ControlContext {
        node: name.clone(),
        exchange: Some(exchange.clone()),
        introductions: Some(introductions.clone()),
    };
    let directory = DiscussionDirectory::new(
        settings.clone(),
        keys.clone(),
        store.clone(),
        events.clone(),
        contacts.clone(),
        control,
    )
    .with_dht(dht.clone())
    .start();
    let listener = Listener::new(
        settings.clone(),
        tcp,
        keys.clone(),
        contacts.clone(),
        directory.clone(),
        store.clone(),
        events.clone(),
    )
    .with_dht(dht.clone())
    .start();
    introductions_context.run(Introductions::new(
        settings.clone(),
        keys.clone(),
        store.clone(),
        events.clone(),
        contacts.clone(),
        directory.clone(),
        listener.clone(),
    ));
    let discovery = Discovery::new(
        settings.clone(),
        sockets,
        keys.clone(),
        contacts.clone(),
        tcp_port,
    )
    .start();
    let prober = Prober::new(settings.clone(), keys.clone(), contacts.clone()).start();
    log::info!(
        "[{name}] node up: {} {} on TCP {tcp_port}",
        keys.name(),
        keys.fingerprint()
    );
    Ok(NodeHandle {
        settings,
        keys,
        store,
        events,
        contacts,
        discovery,
        listener,
        directory,
        exchange,
        prober,
        introductions,
        dht,
        tcp_port,
        shutdown: std::sync::Arc::new(tokio::sync::Notify::new()),
    })
}

/// The key that encrypts message text in the store: random, kept in `<data_dir>/storage.key` sealed
/// for this node only ([`at_rest`]: under a key derived from the identity's secret, so it is as
/// protected as the identity's passphrase, and nothing a peer sends is ever opened as one). Created on
/// first start; a file from before issue 8 (an OpenPGP message to our own identity) is converted in
/// place, atomically. File I/O and crypto run on a crypto worker.
async fn storage_key(
    keys: &KeysHandle,
    data_dir: &std::path::Path,
    node: &str,
) -> Result<zeroize::Zeroizing<[u8; STORAGE_KEY_BYTES]>, NodeError> {
    let path = data_dir.join("storage.key");
    let node = node.to_string();
    let key = keys
        .run(move |id| {
            let io = |source| CryptoError::File {
                path: path.clone(),
                source,
            };
            let mut key = zeroize::Zeroizing::new([0u8; STORAGE_KEY_BYTES]);
            match std::fs::read(&path) {
                Ok(sealed) => {
                    let plain = if at_rest::is_legacy(&sealed) {
                        let plain = at_rest::open_legacy(id, &sealed)?;
                        let converted = at_rest::seal(id, Sealed::StorageKey, &plain)?;
                        replace_file(&path, &converted).map_err(io)?;
                        log::info!("[{node}] storage.key converted to the format of this version");
                        plain
                    } else {
                        at_rest::open(id, Sealed::StorageKey, &sealed)?
                    };
                    if plain.len() != STORAGE_KEY_BYTES {
                        return Err(CryptoError::Malformed(format!(
                            "{}: wrong length",
                            path.display()
                        )));
                    }
                    key.copy_from_slice(&plain);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, key.as_mut());
                    let sealed = at_rest::seal(id, Sealed::StorageKey, key.as_ref())?;
                    write_new_file(&path, &sealed).map_err(io)?;
                }
                Err(e) => return Err(io(e)),
            }
            Ok(key)
        })
        .await
        .map_err(NodeError::StorageKey)?;
    Ok(key)
}

/// Create `path` (owner-only) with `bytes`, durably; fails if it exists.
fn write_new_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Replace `path` with `bytes` atomically (a new file renamed over it, the directory synced): a
/// crash leaves the old file or the new one, never half of one.
fn replace_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp); // left by a crash during an earlier conversion
    write_new_file(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Bring the store's discussion keys from before issue 8 to the [`at_rest`] format (the schema
/// itself was migrated when the store opened), then compact the database so that no copy of an old
/// blob is left in its free pages or its WAL. Idempotent: a conversion cut short resumes here.
async fn convert_legacy_discussion_keys(
    keys: &KeysHandle,
    store: &StoreHandle,
    node: &str,
) -> Result<(), NodeError> {
    let legacy = store.run(|s| s.legacy_discussion_keys()).await?;
    if legacy.is_empty() {
        return Ok(());
    }
    let mut any = false;
    for (id, sealed) in legacy {
        match keys.convert_legacy(Sealed::DiscussionKey, sealed).await {
            Ok(converted) => {
                let i = id.clone();
                store
                    .run(move |s| s.replace_discussion_key(&i, &converted))
                    .await?;
                any = true;
            }
            // Left as it is: the discussion cannot resume (its log line says why), nothing else.
            Err(e) => log::error!("[{node}] discussion {id}: cannot convert its key: {e}"),
        }
    }
    // Only when something was rewritten: a key that never converts must not cost a VACUUM at
    // every start.
    if !any {
        return Ok(());
    }
    store.run(|s| s.compact()).await?;
    log::info!("[{node}] discussion keys converted to the format of this version");
    Ok(())
}

/// Discussions from before issue 14 have no subkey state: record their key's one encryption subkey
/// as active, before anything (a front-end's `discussions`) can read them. Once per discussion.
async fn record_first_subkeys(
    keys: &KeysHandle,
    store: &StoreHandle,
    node: &str,
) -> Result<(), NodeError> {
    for id in store.run(|s| s.discussions_without_subkeys()).await? {
        let i = id.clone();
        let sealed = store.run(move |s| s.discussion(&i)).await?.own_key_sealed;
        match keys.unseal_discussion_key(sealed).await {
            Ok(key) => {
                let first = key.encryption_subkey_ids().pop().unwrap_or_default();
                store
                    .run(move |s| s.record_first_subkey(&id, &first, crate::events::now_secs()))
                    .await?;
            }
            // The discussion cannot resume either; its directory's log line says why.
            Err(e) => log::error!("[{node}] discussion {id}: cannot read its key: {e}"),
        }
    }
    Ok(())
}

impl NodeHandle {
    pub fn whoami(&self) -> WhoAmI {
        WhoAmI {
            name: self.keys.name().to_string(),
            fingerprint: self.keys.fingerprint().to_string(),
            node: self.settings.node.name.clone(),
            tcp_port: self.tcp_port,
            data_dir: self.settings.node.data_dir.clone(),
        }
    }

    pub async fn contacts(&self) -> Result<Vec<ContactRecord>, ApiError> {
        self.contacts.send(ListContacts).await.map_err(mailbox)
    }

    pub async fn find_contact(&self, query: &str) -> Result<ContactRecord, ApiError> {
        Ok(self
            .contacts
            .send(FindContact(query.into()))
            .await
            .map_err(mailbox)??)
    }

    pub async fn set_verified(
        &self,
        query: &str,
        verified: bool,
    ) -> Result<ContactRecord, ApiError> {
        Ok(self
            .contacts
            .send(SetVerified {
                query: query.into(),
                verified,
            })
            .await
            .map_err(mailbox)??)
    }

    /// Add the node at `HOST:PORT` as a contact (probe its main port); answers with the contact.
    pub async fn add_contact(&self, address: &str) -> Result<ContactRecord, ApiError> {
        self.add_contact_expecting(address, None).await
    }

    /// [`Self::add_contact`], refused (nothing stored) unless the node there has `expect`.
    async fn add_contact_expecting(
        &self,
        address: &str,
        expect: Option<String>,
    ) -> Result<ContactRecord, ApiError> {
        Ok(self
            .prober
            .send(AddContact {
                address: address.into(),
                expect,
            })
            .await
            .map_err(mailbox)??)
    }

    /// Find the person with `fingerprint` through its opt-in identity record on the DHT (issue 11)
    /// and add it as a contact by probing the addresses there (the probe's signed announce must be
    /// that fingerprint's).
    pub async fn add_contact_dht(&self, fingerprint: &str) -> Result<ContactRecord, ApiError> {
        use crate::dht::identity_record;
        let dht = self.dht.as_ref().ok_or_else(|| {
            ApiError::Failed(
                ErrorKind::Unreachable,
                "the DHT is off ([dht] enabled = false)".into(),
            )
        })?;
        let fp = identity_record::normalize_fingerprint(fingerprint)
            .map_err(|e| ApiError::Invalid(Box::new(e)))?;
        let key = identity_record::public_key(&fp).map_err(|e| ApiError::Invalid(Box::new(e)))?;
        let items = dht
            .send(crate::dht::worker::GetItem(key))
            .await
            .map_err(mailbox)?
            .map_err(|e| ApiError::Failed(ErrorKind::Busy, Box::new(e)))?;
        if items.is_empty() {
            return Err(ApiError::NotFound(
                format!("no DHT record for {fp} (not published, or not found)").into(),
            ));
        }
        // Each candidate in turn (most recent first): anyone can put garbage under this key at a
        // high seq, so the newest is not necessarily the valid one.
        let wanted = fp.clone();
        let (record, _cert) = self
            .keys
            .run(move |_| {
                identity_record::open_first(&wanted, &items, crate::dht::record::unix_micros())
                    .map_err(|e| CryptoError::Malformed(e.to_string()))
            })
            .await
            .map_err(|e| ApiError::Failed(ErrorKind::Protocol, Box::new(e)))?;
        let mut last = None;
        for ip in record.addresses {
            let at = std::net::SocketAddr::new(ip, record.port).to_string();
            // Main's probing path, told whom to expect: an address that answers as another key
            // (a record overwritten by someone else) adds nothing.
            match self.add_contact_expecting(&at, Some(fp.clone())).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            ApiError::Failed(
                ErrorKind::Unreachable,
                "the DHT record lists no address".into(),
            )
        }))
    }

    /// Forget a contact (name or fingerprint prefix); answers with what was removed.
    pub async fn remove_contact(&self, query: &str) -> Result<ContactRecord, ApiError> {
        Ok(self
            .contacts
            .send(RemoveContact(query.into()))
            .await
            .map_err(mailbox)??)
    }

    /// Block (or unblock) a full fingerprint; answers with it, normalised.
    pub async fn block(&self, fingerprint: &str, blocked: bool) -> Result<String, ApiError> {
        Ok(self
            .contacts
            .send(Block {
                fingerprint: fingerprint.into(),
                blocked,
            })
            .await
            .map_err(mailbox)??)
    }

    /// The blocked fingerprints, sorted.
    pub async fn blocked(&self) -> Result<Vec<String>, ApiError> {
        self.contacts.send(ListBlocked).await.map_err(mailbox)
    }

    /// Ask a contact for a discussion; answers when it is open (its id) or failed.
    pub async fn open(&self, contact: &str, password: &str) -> Result<String, ApiError> {
        self.open_while(contact, password, None).await
    }

    /// [`Self::open`], withdrawn (`cancelled`) if `asker_gone` ends first: the front-end that
    /// asked went away, and nobody would see the discussion open.
    pub async fn open_while(
        &self,
        contact: &str,
        password: &str,
        asker_gone: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    ) -> Result<String, ApiError> {
        check_password(password)?;
        let contact = self.find_contact(contact).await?;
        Ok(self
            .listener
            .send(Open {
                contact,
                password: password.into(),
                asker_gone,
                introduced: false,
            })
            .await
            .map_err(mailbox)??)
    }

    /// Withdraw our requests to a contact still waiting for an answer; how many were.
    pub async fn cancel(&self, contact: &str) -> Result<u64, ApiError> {
        let contact = self.find_contact(contact).await?;
        let n = self
            .listener
            .send(Cancel {
                fingerprint: contact.fingerprint,
            })
            .await
            .map_err(mailbox)?;
        Ok(n as u64)
    }

    pub async fn requests(&self) -> Result<Vec<RequestInfo>, ApiError> {
        self.listener.send(ListRequests).await.map_err(mailbox)
    }

    /// Requests recently turned away without asking the user, and why (oldest first).
    pub async fn refused_requests(&self) -> Result<Vec<RefusedRequest>, ApiError> {
        self.listener.send(ListRefusals).await.map_err(mailbox)
    }

    /// Accept a request with the shared secret; answers with the discussion id once open.
    pub async fn accept(&self, request_id: u64, password: &str) -> Result<String, ApiError> {
        check_password(password)?;
        let id = self
            .listener
            .send(Decide {
                request_id,
                password: Some(password.into()),
            })
            .await
            .map_err(mailbox)??;
        id.ok_or_else(|| ApiError::Internal("accepted without a discussion".into()))
    }

    pub async fn refuse(&self, request_id: u64) -> Result<(), ApiError> {
        self.listener
            .send(Decide {
                request_id,
                password: None,
            })
            .await
            .map_err(mailbox)??;
        Ok(())
    }

    pub async fn discussions(&self) -> Result<Vec<DiscussionSummary>, ApiError> {
        Ok(self.store.run(|s| s.discussions()).await?)
    }

    pub async fn resolve(&self, discussion: &str) -> Result<String, ApiError> {
        Ok(self
            .directory
            .send(Resolve(discussion.into()))
            .await
            .map_err(mailbox)??)
    }

    /// Queue a message; answers once it is committed to the store.
    pub async fn send(&self, discussion: &str, text: &str) -> Result<MessageRecord, ApiError> {
        if text.is_empty() {
            return Err(ApiError::Invalid("empty message".into()));
        }
        let id = self.resolve(discussion).await?;
        let session = self.directory.send(Lookup(id)).await.map_err(mailbox)??;
        Ok(session
            .send(SendText(text.into()))
            .await
            .map_err(mailbox)??)
    }

    /// Queue a control message on a discussion (`docs/protocol.md`, "Control channel"): answers its
    /// sequence number once it is stored. Refused if the peer is not known to speak version 2.
    pub async fn send_control(
        &self,
        discussion: &str,
        control: crate::wire::Control,
    ) -> Result<u64, ApiError> {
        let id = self.resolve(discussion).await?;
        let session = self.directory.send(Lookup(id)).await.map_err(mailbox)??;
        Ok(session
            .send(crate::session::SendControl(control))
            .await
            .map_err(mailbox)??)
    }

    /// Rotate our encryption subkey of a discussion now (issue 14): answers the new subkey's id
    /// once it is stored pending and announced (the one already pending, if a rotation is under
    /// way); [`Event::KeyRotated`] says when the peer has switched to it.
    pub async fn rotate(&self, discussion: &str) -> Result<String, ApiError> {
        let id = self.resolve(discussion).await?;
        let session = self.directory.send(Lookup(id)).await.map_err(mailbox)??;
        Ok(session
            .send(crate::session::Rotate)
            .await
            .map_err(mailbox)??)
    }

    /// Ask the peer of a discussion (a discussion id or prefix, or the peer's name or fingerprint
    /// prefix: its most recent discussion) for its contact list, and merge it into ours.
    pub async fn contacts_from(
        &self,
        peer: &str,
    ) -> Result<crate::exchange::ListOutcome, ApiError> {
        let id = self.resolve(peer).await?;
        let i = id.clone();
        let record = self.store.run(move |s| s.discussion(&i)).await?;
        let session = self.directory.send(Lookup(id)).await.map_err(mailbox)??;
        let ask = crate::exchange::AskList {
            session,
            peer_address: record.peer_address.parse().ok(),
            peer_fingerprint: record.peer_fingerprint,
            peer_name: record.peer_name,
        };
        Ok(self.exchange.send(ask).await.map_err(mailbox)??)
    }

    /// Never share a contact (by name or fingerprint prefix) in our contact list, or share it
    /// again: returns its fingerprint.
    pub async fn set_never_share(&self, contact: &str, never: bool) -> Result<String, ApiError> {
        let fp = self.find_contact(contact).await?.fingerprint;
        let f = fp.clone();
        self.store
            .run(move |s| s.set_never_share(&f, never))
            .await?;
        Ok(fp)
    }

    /// The last `limit` messages, oldest first; marks the discussion read.
    pub async fn history(
        &self,
        discussion: &str,
        limit: u64,
    ) -> Result<Vec<MessageRecord>, ApiError> {
        let page = HistoryPage {
            limit,
            ..HistoryPage::default()
        };
        Ok(self
            .history_page(discussion, page)
            .await?
            .into_iter()
            .map(|(_, m)| m)
            .collect())
    }

    /// A page of messages (see [`HistoryPage`]), oldest first, each with its position in the
    /// discussion; marks the discussion read.
    pub async fn history_page(
        &self,
        discussion: &str,
        page: HistoryPage,
    ) -> Result<Vec<(u64, MessageRecord)>, ApiError> {
        let id = self.resolve(discussion).await?;
        Ok(self
            .store
            .run(move |s| {
                let h = s.history_page(&id, page)?;
                s.mark_read(&id)?;
                Ok(h)
            })
            .await?)
    }

    /// Mark every message of a discussion read (a front-end showed them).
    pub async fn mark_read(&self, discussion: &str) -> Result<String, ApiError> {
        let id = self.resolve(discussion).await?;
        let i = id.clone();
        self.store.run(move |s| s.mark_read(&i)).await?;
        Ok(id)
    }

    /// Close a discussion. Answers `closing` (the peer confirms later) or `closed`. With `force`,
    /// closes at once (keys destroyed now) and the peer is told when it is next reachable.
    pub async fn close(
        &self,
        discussion: &str,
        force: bool,
    ) -> Result<(String, DiscussionState), ApiError> {
        let id = self.resolve(discussion).await?;
        let session = self
            .directory
            .send(Lookup(id.clone()))
            .await
            .map_err(mailbox)??;
        let state = session
            .send(CloseDiscussion { force })
            .await
            .map_err(mailbox)??;
        Ok((id, state))
    }

    /// Introduce two contacts we each have an open discussion with; the introduction's id.
    pub async fn introduce(&self, a: &str, b: &str) -> Result<String, ApiError> {
        Ok(self
            .introductions
            .send(Introduce {
                a: a.into(),
                b: b.into(),
            })
            .await
            .map_err(mailbox)??)
    }

    /// Introductions made to us, newest first (ended ones too).
    pub async fn introductions(&self) -> Result<Vec<ReceivedIntroduction>, ApiError> {
        Ok(self
            .introductions
            .send(ListIntroductions)
            .await
            .map_err(mailbox)??)
    }

    /// Accept or decline an introduction made to us.
    pub async fn decide_introduction(
        &self,
        local_id: i64,
        accept: bool,
    ) -> Result<ReceivedIntroduction, ApiError> {
        Ok(self
            .introductions
            .send(DecideIntroduction { local_id, accept })
            .await
            .map_err(mailbox)??)
    }

    /// Contacts met through an introduction: (fingerprint, introducer fingerprint, its name).
    pub async fn introduced_contacts(&self) -> Result<Vec<(String, String, String)>, ApiError> {
        Ok(self.store.run(|s| s.introduced_contacts()).await?)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// How the DHT sees this node; `None` when the DHT is off.
    pub async fn dht_status(&self) -> Result<Option<crate::dht::DhtStatus>, ApiError> {
        match &self.dht {
            None => Ok(None),
            Some(dht) => Ok(Some(
                dht.send(crate::dht::worker::GetDhtStatus)
                    .await
                    .map_err(mailbox)?,
            )),
        }
    }

    pub async fn discovery_stats(&self) -> Result<DiscoveryStats, ApiError> {
        self.discovery
            .send(GetDiscoveryStats)
            .await
            .map_err(mailbox)
    }
}

/// Longest shared secret accepted (it is typed by people; a bound keeps hostile IPC input small).
pub const MAX_PASSWORD_BYTES: usize = 1024;

fn check_password(p: &str) -> Result<(), ApiError> {
    if p.is_empty() {
        return Err(ApiError::Invalid("the shared secret is empty".into()));
    }
    if p.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::Invalid(
            format!("the shared secret is longer than {MAX_PASSWORD_BYTES} bytes").into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn api_error_keeps_the_layers_error_typed_with_the_same_text() {
        let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
        let e = ApiError::from(ListenerError::Unreachable("bob".into(), timed_out));
        assert_eq!(e.kind(), ErrorKind::Unreachable);
        assert_eq!(e.to_string(), "cannot reach bob: timed out");
        let listener = e.source().and_then(|s| s.downcast_ref::<ListenerError>());
        let io = listener.and_then(|l| l.source()?.downcast_ref::<std::io::Error>());
        assert_eq!(io.map(|io| io.kind()), Some(std::io::ErrorKind::TimedOut));
    }
}
