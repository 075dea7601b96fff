//! Listener actor: the node's main TCP port, where discussions are asked for (SPEC 3.2, seed 2.B).
//!
//! Each incoming connection is served by a task: the first frame says its purpose. A discussion
//! (re)connection is routed to the directory. A handshake is checked (sealed, signed by the
//! certificate it carries, meant for us, fresh, not replayed, within the failure limits), then waits
//! as a *request* for the user's decision: refuse, or accept by typing the same secret. The SPAKE2
//! exchange, key confirmation, discussion keys and the `Ready` with the new discussion listener's
//! port follow (see [`crate::handshake`]). The same actor runs the requester's side ([`Open`]).
//! A probe (`add-contact HOST:PORT`) is answered with our signed announce bound to the prober's
//! nonce ([`crate::net::probe`]), then the connection closes.
//!
//! Messages: [`Open`], [`ListRequests`], [`Decide`], and from its own tasks `Arrived`, `Gone`,
//! `Failure`. Talks to: key manager, contact registry, directory, store (who is trusted), event bus.
//! Bounds: `limits.max_pending_connections` connections in the handshake phase
//! (`limits.max_connections_per_address` per address, unverified ones evicted for newcomers, see
//! [`crate::admission`]), `limits.max_pending_requests` requests awaiting a decision (per key and
//! per address too), the guessing limits ([`GuessLimits`]), a replay cache of request nonces, and
//! a budget of decryptions for unauthenticated frames.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::{Duration, Instant};

use actix::prelude::*;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::admission::{ConnectionPool, DecryptBudget, Slot};
use crate::contacts::{ContactRegistry, IsBlocked, NameHasOtherKey};
use crate::crypto::{PublicCert, SecretCert};
use crate::discussions::{CreateDiscussion, DiscussionDirectory, RouteConnection};
use crate::events::{now_secs, Event, EventBus, RefusedRequest, RequestInfo};
use crate::handshake::{Agreed, GuessLimits, HandshakeError, ReplayCache, Throttle};
use crate::keys::KeysHandle;
use crate::net::requester::{self, RequestError};
use crate::net::responder::{self, RespondError, Responded, Unconfirmed};
use crate::net::Crypto as _;
use crate::net::{self, Conn, NetError};
use crate::settings::Settings;
use crate::store::{ContactRecord, DiscussionRecord, DiscussionState, StoreHandle};
use crate::wire::{FailReason, Frame, Purpose, RequestBody, Role, MIN_PROTOCOL_VERSION};

/// Request nonces remembered against replay.
pub const REPLAY_CACHE_ENTRIES: usize = 4096;
/// Contacts and addresses tracked by the failure limiter.
pub const LIMITER_ENTRIES: usize = 4096;
/// Requests turned away without asking the user, remembered for `requests` (the newest).
pub const RECENT_REFUSALS: usize = 16;

#[derive(Debug, Error)]
pub enum ListenerError {
    #[error("no pending request {0}")]
    NoRequest(u64),
    #[error("{0}")]
    Failed(FailReason),
    #[error("{0}")]
    Net(#[from] NetError),
    #[error("{0}")]
    Handshake(#[from] HandshakeError),
    #[error("{name} refused the discussion: {reason}")]
    Refused { name: String, reason: String },
    /// The contact's TCP endpoint did not answer (a timeout is `io::ErrorKind::TimedOut`).
    #[error("cannot reach {0}: {1}")]
    Unreachable(String, #[source] std::io::Error),
    /// We sent our key confirmation (`Accept`) and no valid `Confirm` came back.
    #[error(
        "{name} received our key confirmation but did not confirm ({why}): this may be someone \
         guessing the secret; it counts as a failed attempt"
    )]
    NotConfirmed {
        name: String,
        #[source]
        why: Unconfirmed,
    },
    #[error("{0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("contact's key: {0}")]
    ContactKey(#[source] crate::crypto::CryptoError),
    #[error("bad address {0}")]
    BadAddress(String),
    #[error("{0}")]
    Directory(#[from] crate::discussions::DirectoryError),
    /// The node could not keep a new discussion (the directory's error).
    #[error("{0}")]
    Create(Box<dyn std::error::Error + Send + Sync>),
    #[error("the discussion directory is unavailable")]
    DirectoryGone,
    /// Our own core will not try this contact again yet: too many failed attempts recently.
    #[error(
        "too many failed attempts with {name} recently: try again in at most {minutes} min (each \
         failure counts for that long)"
    )]
    Locked { name: String, minutes: u64 },
    /// Our own user withdrew the request (`cancel`) before it was answered.
    #[error("the request to {0} was cancelled")]
    Cancelled(String),
}

impl From<RespondError> for ListenerError {
    /// Each end of the receiver's side keeps its kind (and its text).
    fn from(e: RespondError) -> Self {
        match e {
            RespondError::Net(e) => Self::Net(e),
            RespondError::Crypto(e) => Self::Crypto(e),
            RespondError::Handshake(e) => Self::Handshake(e),
            RespondError::Failed(r) => Self::Failed(r),
            RespondError::NotConfirmed { name, why } => Self::NotConfirmed { name, why },
            RespondError::Create(e) => match e.downcast::<ListenerError>() {
                Ok(e) => *e,
                Err(e) => Self::Create(e),
            },
        }
    }
}

impl ListenerError {
    /// The requester's side ended towards the contact `name`: each end keeps its kind.
    fn from_request(e: RequestError, name: &str) -> Self {
        match e {
            RequestError::Net(e) => Self::Net(e),
            RequestError::Crypto(e) => Self::Crypto(e),
            RequestError::Refused(reason) => Self::Refused {
                name: name.to_string(),
                reason,
            },
            RequestError::Failed(r) | RequestError::FailedAfterConfirm(r) => Self::Failed(r),
            RequestError::Handshake(e) => Self::Handshake(e),
        }
    }
}

/// The user's decision on a request; an accepting one is answered when the handshake has ended.
pub type Decision = responder::Decision<oneshot::Sender<Result<String, ListenerError>>>;

struct Pending {
    info: RequestInfo,
    decide: oneshot::Sender<Decision>,
}

pub struct Listener {
    node: String,
    settings: Settings,
    keys: KeysHandle,
    contacts: Addr<ContactRegistry>,
    directory: Addr<DiscussionDirectory>,
    store: StoreHandle,
    events: EventBus,
    listener: Option<TcpListener>,
    /// Our main TCP port, as announced in the answer to a probe.
    tcp_port: u16,
    pending: HashMap<u64, Pending>,
    refusals: VecDeque<RefusedRequest>,
    next_request: u64,
    pool: ConnectionPool,
    budget: DecryptBudget,
    limiter: GuessLimits,
    replay: ReplayCache,
    /// Our own requests still running (`open`), by a local id: how to withdraw each one. One entry
    /// per `open` in flight, so bounded by the IPC's clients times their requests in flight.
    outgoing: HashMap<u64, Outgoing>,
    next_outgoing: u64,
    /// The DHT worker, told about each new discussion's rendezvous secret (issue 11).
    dht: Option<Addr<crate::dht::DhtWorker>>,
}

/// One of our own requests still running.
struct Outgoing {
    /// The contact asked.
    fingerprint: String,
    /// Ends the request: its connection is dropped, which the peer's core takes as withdrawn.
    cancel: oneshot::Sender<()>,
}

impl Listener {
    /// Publish new discussions' rendezvous records through `dht` (when the DHT is on).
    pub fn with_dht(mut self, dht: Option<Addr<crate::dht::DhtWorker>>) -> Self {
        self.dht = dht;
        self
    }

    pub fn new(
        settings: Settings,
        listener: TcpListener,
        keys: KeysHandle,
        contacts: Addr<ContactRegistry>,
        directory: Addr<DiscussionDirectory>,
        store: StoreHandle,
        events: EventBus,
    ) -> Self {
        let l = &settings.limits;
        let tcp_port = listener.local_addr().map_or(0, |a| a.port());
        Self {
            tcp_port,
            node: settings.node.name.clone(),
            limiter: GuessLimits::new(
                l.max_failed_attempts,
                l.max_failed_attempts_total,
                Duration::from_secs(l.failed_attempts_window_secs),
                LIMITER_ENTRIES,
            ),
            pool: ConnectionPool::new(l.max_pending_connections, l.max_connections_per_address),
            budget: DecryptBudget::default(),
            replay: ReplayCache::new(REPLAY_CACHE_ENTRIES),
            settings,
            keys,
            contacts,
            directory,
            store,
            events,
            listener: Some(listener),
            dht: None,
            pending: HashMap::new(),
            refusals: VecDeque::new(),
            next_request: 1,
            outgoing: HashMap::new(),
            next_outgoing: 1,
        }
    }

    fn task_context(&self, me: Addr<Self>) -> Task {
        Task {
            node: self.node.clone(),
            settings: self.settings.clone(),
            keys: self.keys.clone(),
            contacts: self.contacts.clone(),
            directory: self.directory.clone(),
            store: self.store.clone(),
            events: self.events.clone(),
            budget: self.budget.clone(),
            tcp_port: self.tcp_port,
            dht: self.dht.clone(),
            me,
        }
    }
}

impl Actor for Listener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(l) = self.listener.take() {
            let node = self.node.clone();
            let accepts = futures::stream::unfold(l, move |l| {
                let node = node.clone();
                async move {
                    loop {
                        match l.accept().await {
                            Ok((s, from)) => return Some((Accepted(s, from), l)),
                            Err(e) => {
                                log::warn!("[{node}] accept: {e}");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                }
            });
            ctx.add_stream(accepts);
        }
    }
}

struct Accepted(TcpStream, SocketAddr);

impl StreamHandler<Accepted> for Listener {
    fn handle(&mut self, Accepted(stream, from): Accepted, ctx: &mut Context<Self>) {
        let slot = match self.pool.admit(from.ip(), Instant::now()) {
            Ok(slot) => slot,
            Err(why) => {
                crate::log_limit::hostile(
                    log::Level::Info,
                    &self.node,
                    &from.ip(),
                    format_args!("connection from {from} dropped: {why:?}"),
                );
                return;
            }
        };
        let task = self.task_context(ctx.address());
        actix_rt::spawn(async move { task.serve(stream, from, slot).await });
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

mod task;
use task::Task;

/// A checked request waits for the user: registers it (or refuses it with a reason).
#[derive(Message)]
#[rtype(result = "Result<(u64, oneshot::Receiver<Decision>), FailReason>")]
struct Arrived {
    info: RequestInfo,
    /// Where the request came from (`info.address` is its text, for front-ends).
    address: IpAddr,
    nonce: crate::wire::Nonce,
    /// A verified contact, or one that has (had) a discussion with us.
    trusted: bool,
    /// An introduction our user accepted matches the requester: its local id and secret. The
    /// request is then accepted with that secret without asking the user (a wrong secret fails
    /// the handshake like any other).
    introduction: Option<(i64, zeroize::Zeroizing<String>)>,
    /// The requester's key is blocked: refused (recorded, reason "blocked"), the peer told busy.
    blocked: bool,
}

impl Handler<Arrived> for Listener {
    type Result = MessageResult<Arrived>;
    fn handle(&mut self, m: Arrived, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        if !self.replay.insert(m.nonce, now) {
            return MessageResult(Err(FailReason::Replay));
        }
        if m.blocked {
            self.refused(&m.info, "blocked");
            return MessageResult(Err(FailReason::Busy));
        }
        if let Err(why) = self
            .limiter
            .check(&m.info.fingerprint, Some(m.address), m.trusted, now)
        {
            self.refused(&m.info, &why.to_string());
            return MessageResult(Err(FailReason::TooManyAttempts));
        }
        let id = self.next_request;
        if let Some((local_id, secret)) = m.introduction {
            self.next_request += 1;
            return MessageResult(Ok(self.accept_introduced(id, &m.info, local_id, secret)));
        }
        if let Err(why) = self.queue_room(&m.info) {
            self.refused(&m.info, why);
            return MessageResult(Err(FailReason::Busy));
        }
        self.next_request += 1;
        let mut info = m.info;
        info.id = id;
        let (tx, rx) = oneshot::channel();
        // The requester is not yet known to be anyone (fresh keys cost nothing): limited per
        // address like other hostile input; the user sees every request as an event.
        crate::log_limit::hostile(
            log::Level::Info,
            &self.node,
            &info.address,
            format_args!(
                "discussion request {id} from {} {} at {}",
                info.name, info.fingerprint, info.address
            ),
        );
        self.events.emit(Event::Request {
            request: info.clone(),
        });
        self.pending.insert(id, Pending { info, decide: tx });
        MessageResult(Ok((id, rx)))
    }
}

impl Listener {
    /// A request that matches the accepted introduction `local_id`: accepted at once with its
    /// secret, not queued for the user; once the discussion opens, the introduction is used.
    fn accept_introduced(
        &self,
        id: u64,
        info: &RequestInfo,
        local_id: i64,
        secret: zeroize::Zeroizing<String>,
    ) -> (u64, oneshot::Receiver<Decision>) {
        log::info!(
            "[{}] request {id} from {} {} matches introduction {local_id}: accepted",
            self.node,
            info.name,
            info.fingerprint
        );
        let (tx, rx) = oneshot::channel();
        let (done, outcome) = oneshot::channel();
        let _ = tx.send(Decision::Accept {
            password: secret.to_string(),
            then: done,
        });
        drop(secret);
        let (store, events) = (self.store.clone(), self.events.clone());
        actix_rt::spawn(async move {
            if let Ok(Ok(discussion_id)) = outcome.await {
                crate::introductions::mark_used(&store, &events, local_id, &discussion_id).await;
            }
        });
        (id, rx)
    }

    /// Whether the queue of requests has room for one more from this key and address.
    fn queue_room(&self, info: &RequestInfo) -> Result<(), &'static str> {
        let l = &self.settings.limits;
        let waiting = self.pending.values().map(|p| &p.info);
        if waiting
            .clone()
            .filter(|i| i.fingerprint == info.fingerprint)
            .count()
            >= l.max_pending_requests_per_key
        {
            return Err("this key already has requests waiting");
        }
        if waiting.filter(|i| i.address == info.address).count()
            >= l.max_pending_requests_per_address
        {
            return Err("this address already has requests waiting");
        }
        if self.pending.len() >= l.max_pending_requests {
            return Err("too many requests waiting");
        }
        Ok(())
    }

    /// Tell the user that a request was turned away without asking, and why.
    fn refused(&mut self, info: &RequestInfo, why: &str) {
        crate::log_limit::hostile(
            log::Level::Warn,
            &self.node,
            &info.address,
            format_args!(
                "request from {} {} at {} refused: {why}",
                info.name, info.fingerprint, info.address
            ),
        );
        self.events.emit(Event::RequestRefused {
            name: info.name.clone(),
            fingerprint: info.fingerprint.clone(),
            address: info.address.clone(),
            reason: why.to_string(),
        });
        if self.refusals.len() >= RECENT_REFUSALS {
            self.refusals.pop_front();
        }
        self.refusals.push_back(RefusedRequest {
            name: info.name.clone(),
            fingerprint: info.fingerprint.clone(),
            address: info.address.clone(),
            time: now_secs(),
            reason: why.to_string(),
        });
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Gone {
    id: u64,
    reason: String,
}

impl Handler<Gone> for Listener {
    type Result = ();
    fn handle(&mut self, m: Gone, _: &mut Context<Self>) {
        if self.pending.remove(&m.id).is_some() {
            self.events.emit(Event::RequestClosed {
                request_id: m.id,
                reason: m.reason,
            });
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Failure {
    fingerprint: String,
    address: Option<IpAddr>,
}

impl Handler<Failure> for Listener {
    type Result = ();
    fn handle(&mut self, m: Failure, _: &mut Context<Self>) {
        self.limiter
            .record_failure(&m.fingerprint, m.address, Instant::now());
    }
}

/// Requests waiting for a decision.
#[derive(Message)]
#[rtype(result = "Vec<RequestInfo>")]
pub struct ListRequests;

impl Handler<ListRequests> for Listener {
    type Result = MessageResult<ListRequests>;
    fn handle(&mut self, _: ListRequests, _: &mut Context<Self>) -> Self::Result {
        let mut v: Vec<_> = self.pending.values().map(|p| p.info.clone()).collect();
        v.sort_by_key(|r| r.id);
        MessageResult(v)
    }
}

/// Requests recently turned away without asking the user, oldest first.
#[derive(Message)]
#[rtype(result = "Vec<RefusedRequest>")]
pub struct ListRefusals;

impl Handler<ListRefusals> for Listener {
    type Result = MessageResult<ListRefusals>;
    fn handle(&mut self, _: ListRefusals, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.refusals.iter().cloned().collect())
    }
}

/// Accept (with the secret) or refuse a request. Accepting answers once the handshake has ended:
/// with the new discussion's id, or with why it failed.
#[derive(Message)]
#[rtype(result = "Result<Option<String>, ListenerError>")]
pub struct Decide {
    pub request_id: u64,
    /// `Some(secret)` accepts, `None` refuses.
    pub password: Option<String>,
}

impl Handler<Decide> for Listener {
    type Result = ResponseFuture<Result<Option<String>, ListenerError>>;
    fn handle(&mut self, m: Decide, _: &mut Context<Self>) -> Self::Result {
        let Some(p) = self.pending.remove(&m.request_id) else {
            return Box::pin(async move { Err(ListenerError::NoRequest(m.request_id)) });
        };
        let (reason, fut): (&str, Self::Result) = match m.password {
            None => {
                let _ = p.decide.send(Decision::Refuse);
                ("refused", Box::pin(async { Ok(None) }))
            }
            Some(password) => {
                let (done, result) = oneshot::channel();
                let sent = p
                    .decide
                    .send(Decision::Accept {
                        password,
                        then: done,
                    })
                    .is_ok();
                (
                    "accepted",
                    Box::pin(async move {
                        if !sent {
                            return Err(ListenerError::Net(NetError::Closed));
                        }
                        match result.await {
                            Ok(Ok(id)) => Ok(Some(id)),
                            Ok(Err(e)) => Err(e),
                            Err(_) => Err(ListenerError::Net(NetError::Closed)),
                        }
                    }),
                )
            }
        };
        self.events.emit(Event::RequestClosed {
            request_id: m.request_id,
            reason: reason.into(),
        });
        fut
    }
}

/// Ask a contact for a discussion with the shared secret. Answers when the handshake has ended:
/// the new discussion's id, or why not (refused, wrong secret or interception, unreachable, ...).
#[derive(Message)]
#[rtype(result = "Result<String, ListenerError>")]
pub struct Open {
    pub contact: ContactRecord,
    pub password: String,
    /// Ends when whoever asked is gone (the IPC connection that sent `open` closed): the request
    /// is then withdrawn as by [`Cancel`].
    pub asker_gone: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// An introduction's dial: said as [`crate::wire::Purpose::Introduced`], so that the peer
    /// may match it to the introduction its user accepted (an ordinary `open` never is).
    pub introduced: bool,
}

impl Handler<Open> for Listener {
    type Result = ResponseFuture<Result<String, ListenerError>>;
    fn handle(&mut self, m: Open, ctx: &mut Context<Self>) -> Self::Result {
        // Our own user asks: only this contact's own failures count.
        let own = self
            .limiter
            .check(&m.contact.fingerprint, None, true, Instant::now());
        if own == Err(Throttle::Key) {
            // Say for how long: the window after which the oldest failure no longer counts.
            let e = ListenerError::Locked {
                name: m.contact.name.clone(),
                minutes: self
                    .settings
                    .limits
                    .failed_attempts_window_secs
                    .div_ceil(60),
            };
            return Box::pin(async { Err(e) });
        }
        let task = self.task_context(ctx.address());
        let (cancel, cancelled) = oneshot::channel();
        let id = self.next_outgoing;
        self.next_outgoing += 1;
        self.outgoing.insert(
            id,
            Outgoing {
                fingerprint: m.contact.fingerprint.clone(),
                cancel,
            },
        );
        let me = ctx.address();
        let name = m.contact.name.clone();
        Box::pin(async move {
            // Cancelling drops the request's future, and with it its connection: the peer's core
            // sees the end of the stream while its user decides, and withdraws the request.
            let asker_gone = async {
                match m.asker_gone {
                    Some(gone) => gone.await,
                    None => futures::future::pending().await,
                }
            };
            let r = tokio::select! {
                r = task.request(m.contact, m.password, m.introduced) => r,
                _ = cancelled => Err(ListenerError::Cancelled(name)),
                () = asker_gone => Err(ListenerError::Cancelled(name)),
            };
            me.do_send(OpenEnded(id));
            r
        })
    }
}

/// One of our own requests ended (answered, failed or cancelled): forget how to cancel it.
#[derive(Message)]
#[rtype(result = "()")]
struct OpenEnded(u64);

impl Handler<OpenEnded> for Listener {
    type Result = ();
    fn handle(&mut self, m: OpenEnded, _: &mut Context<Self>) {
        self.outgoing.remove(&m.0);
    }
}

/// Withdraw our own requests to a contact that are still running (`open` not yet answered); how
/// many were. Each `open` waiting on one answers with [`ListenerError::Cancelled`].
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Cancel {
    pub fingerprint: String,
}

impl Handler<Cancel> for Listener {
    type Result = usize;
    fn handle(&mut self, m: Cancel, _: &mut Context<Self>) -> usize {
        let ids: Vec<u64> = self
            .outgoing
            .iter()
            .filter(|(_, o)| o.fingerprint == m.fingerprint)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            if let Some(o) = self.outgoing.remove(id) {
                let _ = o.cancel.send(());
            }
        }
        ids.len()
    }
}
