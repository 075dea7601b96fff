//! Contact-list exchange actor (issue 10, part 2; `docs/protocol.md`, "Contact-list exchange"),
//! the control channel's first user.
//!
//! - Asked by a peer ([`Receive`] of a `ListRequest`, from [`crate::control::dispatch`]): answers
//!   with our own fresh signed announce and the contacts `sharing.share` allows (each relayed with
//!   its own last signed announce, so we cannot forge them), at most `limits.max_list_entries`;
//!   at most one answer per peer per [`LIST_REQUEST_MIN_INTERVAL`] (else `ListRefused`). The user
//!   sees every request ([`Event::ListRequested`]).
//! - Asking ([`AskList`], `pgpchat contacts --from PEER`): a live request with a timeout
//!   (`limits.list_request_timeout_secs`), not queued for later; the answer is refused whole if it
//!   is unsolicited or longer than `limits.max_list_entries`; each entry's announce is checked by
//!   [`crate::announce`] ([`merge::parse_entry`], then its signature), blocked fingerprints are
//!   ignored, and the rest is merged by fingerprint into the contact list ([`crate::contacts::LearnContacts`]),
//!   origin `via NAME FINGERPRINT`. Learned addresses are hints: nothing here dials them (opening a
//!   discussion with such a contact does).
//!
//! Lifecycle: started by the node before the discussion directory (sessions dispatch to it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use actix::prelude::*;
use thiserror::Error;
use tokio::sync::oneshot;

use crate::contacts::{ContactRegistry, LearnContacts, Learned, Merged};
use crate::control::Received;
use crate::events::{now_secs, Event, EventBus};
use crate::handshake::random_nonce;
use crate::keys::KeysHandle;
use crate::session::{DiscussionSession, SendControl};
use crate::settings::{Settings, ShareFrom};
use crate::store::StoreHandle;
use crate::wire::{AnnounceBody, Control, ListEntry, ANNOUNCE_VERSION};

pub mod merge;
pub use merge::MAX_ENTRY_BYTES;

/// A peer's list requests are answered at most once in this long (a list is a piece of our social
/// graph; asking in a loop would also cost us a signature and a store read each time).
pub const LIST_REQUEST_MIN_INTERVAL: Duration = Duration::from_secs(30);
/// Our own list requests waiting for an answer, all peers together.
pub const MAX_PENDING_ASKS: usize = 16;
/// Peers remembered for [`LIST_REQUEST_MIN_INTERVAL`] (older ones are forgotten first).
pub const MAX_REMEMBERED_ASKERS: usize = 1024;

#[derive(Debug, Error)]
pub enum ExchangeError {
    #[error("too many contact-list requests waiting for an answer")]
    Busy,
    #[error("the peer did not answer within {0} s")]
    Timeout(u64),
    #[error("the peer refused: asked too often; try again later")]
    Refused,
    #[error("the peer's list has {0} entries, more than the {1} accepted: refused")]
    TooLarge(usize, usize),
    #[error("cannot ask: {0}")]
    Session(#[from] crate::session::SessionError),
    #[error("the discussion is gone")]
    Gone,
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

/// What asking for a list did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListOutcome {
    #[serde(flatten)]
    pub merged: Merged,
    /// Entries dropped: malformed, or their announce's signature did not verify.
    pub dropped: u64,
    /// Entries for blocked fingerprints, ignored.
    pub blocked: u64,
    /// The origin recorded for the new contacts (`via` the peer asked).
    pub origin: crate::store::ContactOrigin,
}

type Answer = Result<Vec<ListEntry>, ExchangeError>;

struct Pending {
    peer_fingerprint: String,
    answer: oneshot::Sender<Answer>,
}

pub struct ContactExchange {
    node: String,
    settings: Settings,
    keys: KeysHandle,
    store: StoreHandle,
    events: EventBus,
    contacts: Addr<ContactRegistry>,
    tcp_port: u16,
    pending: HashMap<u64, Pending>,
    /// When each peer last had a list from us.
    answered: HashMap<String, Instant>,
    next_request_id: u64,
}

impl ContactExchange {
    pub fn new(
        settings: Settings,
        keys: KeysHandle,
        store: StoreHandle,
        events: EventBus,
        contacts: Addr<ContactRegistry>,
        tcp_port: u16,
    ) -> Self {
        Self {
            node: settings.node.name.clone(),
            settings,
            keys,
            store,
            events,
            contacts,
            tcp_port,
            pending: HashMap::new(),
            answered: HashMap::new(),
            next_request_id: u64::from_be_bytes(random_nonce()[..8].try_into().unwrap_or([0; 8])),
        }
    }

    /// Whether `peer` may have a list now (and note that it does).
    fn may_answer(&mut self, peer: &str) -> bool {
        let now = Instant::now();
        self.answered
            .retain(|_, t| now.duration_since(*t) < LIST_REQUEST_MIN_INTERVAL);
        if self.answered.contains_key(peer) {
            return false;
        }
        if self.answered.len() >= MAX_REMEMBERED_ASKERS {
            // Every slot is a peer answered within the interval: refuse rather than forget one.
            return false;
        }
        self.answered.insert(peer.to_string(), now);
        true
    }

    /// Answer `m`'s `ListRequest` (off the actor: a signature and a store read).
    fn answer(&mut self, m: Received, request_id: u64, ctx: &mut Context<Self>) {
        let refused = !self.may_answer(&m.peer_fingerprint);
        let share: Vec<&'static str> = self
            .settings
            .sharing
            .share
            .iter()
            .map(|s| match s {
                ShareFrom::Broadcast => "broadcast",
                ShareFrom::Added => "added",
                ShareFrom::Learned => "learned",
            })
            .collect();
        let max = self.settings.limits.max_list_entries;
        let (keys, store, events, node) = (
            self.keys.clone(),
            self.store.clone(),
            self.events.clone(),
            self.node.clone(),
        );
        let tcp_port = self.tcp_port;
        let fut = async move {
            let shared = if refused {
                m.session
                    .send(SendControl(Control::ListRefused { request_id }))
                    .await
                    .map_err(|_| ExchangeError::Gone)??;
                0
            } else {
                let mut entries = vec![own_entry(&keys, tcp_port).await?];
                let asker = m.peer_fingerprint.clone();
                let others = store
                    .run(move |s| s.shareable_contacts(&share, &asker, max.saturating_sub(1)))
                    .await?;
                entries.extend(
                    others
                        .into_iter()
                        .filter(|(a, addr)| a.len() + addr.len() <= MAX_ENTRY_BYTES)
                        .map(|(announce, address)| ListEntry { announce, address }),
                );
                let shared = entries.len() as u64 - 1;
                m.session
                    .send(SendControl(Control::ListResponse {
                        request_id,
                        entries,
                    }))
                    .await
                    .map_err(|_| ExchangeError::Gone)??;
                shared
            };
            log::info!(
                "[{node}] {} {} asked for our contact list: {}",
                m.peer_name,
                m.peer_fingerprint,
                if refused {
                    "refused (asked too often)".to_string()
                } else {
                    format!("{shared} contacts shared")
                }
            );
            events.emit(Event::ListRequested {
                peer_name: m.peer_name,
                peer_fingerprint: m.peer_fingerprint,
                shared,
                refused,
            });
            Ok::<_, ExchangeError>(())
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, _| {
            if let Err(e) = res {
                log::warn!("[{}] answering a contact-list request: {e}", act.node);
            }
        }));
    }
}

/// Our own entry: a fresh announce, signed now, unpadded; no address (the asker reaches us at the
/// discussion's).
async fn own_entry(keys: &KeysHandle, tcp_port: u16) -> Result<ListEntry, ExchangeError> {
    let body = AnnounceBody {
        version: ANNOUNCE_VERSION,
        name: keys
            .name()
            .chars()
            .take(crate::discovery::MAX_NAME_CHARS)
            .collect(),
        tcp_port,
        cert: keys.public().to_bytes(),
        nonce: random_nonce(),
        time: now_secs(),
        reply: true,
    };
    let announce = crate::discovery::sign_announce(keys, &body, 0)
        .await
        .map_err(|_| ExchangeError::Gone)?;
    Ok(ListEntry {
        announce,
        address: String::new(),
    })
}

impl Actor for ContactExchange {
    type Context = Context<Self>;
}

/// A list request, answer or refusal from a peer (from [`crate::control::dispatch`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Receive(pub Received);

impl Handler<Receive> for ContactExchange {
    type Result = ();
    fn handle(&mut self, Receive(m): Receive, ctx: &mut Context<Self>) {
        let (request_id, answer) = match &m.control {
            &Control::ListRequest { request_id } => return self.answer(m, request_id, ctx),
            Control::ListResponse {
                request_id,
                entries,
            } => (*request_id, Ok(entries.clone())),
            Control::ListRefused { request_id } => (*request_id, Err(ExchangeError::Refused)),
            // Routed elsewhere by `control::dispatch`, never here.
            Control::Introduction(_) | Control::Rendezvous(_) | Control::Rotation(_) => return,
        };
        match self.pending.remove(&request_id) {
            Some(p) if p.peer_fingerprint == m.peer_fingerprint => {
                let _ = p.answer.send(answer);
            }
            other => {
                if let Some(p) = other {
                    self.pending.insert(request_id, p);
                }
                // Unsolicited (never asked, already answered, or asked of someone else).
                crate::log_limit::hostile(
                    log::Level::Info,
                    &self.node,
                    &m.peer_fingerprint,
                    format_args!("unsolicited contact list from {} refused", m.peer_name),
                );
            }
        }
    }
}

/// Ask the peer of a discussion for its contact list and merge it.
#[derive(Message)]
#[rtype(result = "Result<ListOutcome, ExchangeError>")]
pub struct AskList {
    pub session: Addr<DiscussionSession>,
    pub peer_fingerprint: String,
    pub peer_name: String,
    /// Where the discussion reaches the peer: the address of its own entry.
    pub peer_address: Option<IpAddr>,
}

impl Handler<AskList> for ContactExchange {
    type Result = ResponseFuture<Result<ListOutcome, ExchangeError>>;

    fn handle(&mut self, m: AskList, _: &mut Context<Self>) -> Self::Result {
        self.pending.retain(|_, p| !p.answer.is_closed());
        if self.pending.len() >= MAX_PENDING_ASKS {
            return Box::pin(async { Err(ExchangeError::Busy) });
        }
        let request_id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1);
        let (tx, rx) = oneshot::channel();
        self.pending.insert(
            request_id,
            Pending {
                peer_fingerprint: m.peer_fingerprint.clone(),
                answer: tx,
            },
        );
        let secs = self.settings.limits.list_request_timeout_secs;
        let max = self.settings.limits.max_list_entries;
        let (keys, store, contacts) =
            (self.keys.clone(), self.store.clone(), self.contacts.clone());
        Box::pin(async move {
            m.session
                .send(SendControl(Control::ListRequest { request_id }))
                .await
                .map_err(|_| ExchangeError::Gone)??;
            let entries = tokio::time::timeout(Duration::from_secs(secs), rx)
                .await
                .map_err(|_| ExchangeError::Timeout(secs))?
                .map_err(|_| ExchangeError::Gone)??;
            if entries.len() > max {
                return Err(ExchangeError::TooLarge(entries.len(), max));
            }
            let (learned, dropped) = verify_entries(&keys, entries, m.peer_address).await;
            let fingerprints: Vec<String> = learned.iter().map(|l| l.fingerprint.clone()).collect();
            let blocked = store
                .run(move |s| {
                    fingerprints
                        .iter()
                        .map(|f| s.is_blocked(f))
                        .collect::<Result<Vec<bool>, _>>()
                })
                .await?;
            let before = learned.len();
            let learned: Vec<Learned> = learned
                .into_iter()
                .zip(blocked)
                .filter_map(|(l, b)| (!b).then_some(l))
                .collect();
            let blocked = (before - learned.len()) as u64;
            let origin = merge::via(&m.peer_name, &m.peer_fingerprint);
            let merged = contacts
                .send(LearnContacts {
                    entries: learned,
                    origin: origin.clone(),
                })
                .await
                .map_err(|_| ExchangeError::Gone)?;
            Ok(ListOutcome {
                merged,
                dropped,
                blocked,
                origin,
            })
        })
    }
}

/// Parse each entry and verify its announce's signature with the certificate inside it (on the
/// crypto workers, [`crate::announce::verify_parsed`]); our own fingerprint is skipped. Returns the
/// verified ones and how many were dropped.
async fn verify_entries(
    keys: &KeysHandle,
    entries: Vec<ListEntry>,
    peer_address: Option<IpAddr>,
) -> (Vec<Learned>, u64) {
    let mut learned = Vec::new();
    let mut dropped = 0;
    for e in entries {
        let Ok(p) = merge::parse_entry(&e) else {
            dropped += 1;
            continue;
        };
        let Some(address) = p.address.or(peer_address) else {
            dropped += 1;
            continue;
        };
        let Ok(v) = crate::announce::verify_parsed(keys, p.announce, p.body).await else {
            dropped += 1;
            continue;
        };
        if v.fingerprint == keys.fingerprint() {
            continue;
        }
        learned.push(Learned {
            fingerprint: v.fingerprint,
            name: v.name,
            cert: v.cert,
            address,
            tcp_port: v.tcp_port,
            time: v.time,
            // As the sharer sent it (not re-encoded), as before.
            announce: e.announce,
        });
    }
    (learned, dropped)
}
