//! Introductions actor: introduces two people we each have a discussion with, and takes the
//! introductions others make to us (the rules are [`crate::introduction`]'s; the rows are the
//! store's `introductions` and `introductions_made`).
//!
//! Messages: [`Introduce`] (our user introduces A and B), [`ControlIntroduction`] (a control
//! message of an introduction arrived over a discussion), [`DecideIntroduction`] (our user
//! accepts or declines one), [`ListIntroductions`]. Talks to: the contact registry (the new
//! contact, key-changed), the directory (our discussions with the introducer and the introduced,
//! and the control messages over them), the listener (the dial once both accepted), the key
//! manager (the secret sealed at rest), the store, the event bus. A timer ends expired
//! introductions (their secret destroyed) and dials again a ready introduction that did not open
//! (the peer was offline), every [`crate::introduction::INTRODUCTION_DIAL_RETRY_SECS`] at most.
//!
//! The receiving side of a request that matches an accepted introduction is the listener's
//! (`listener/task.rs`): it asks the store ([`crate::store::Store::introduction_for_request`]),
//! opens the secret, and accepts without asking the user; [`mark_used`] ends the introduction.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use actix::prelude::*;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::at_rest::{self, Sealed};
use crate::codec;
use crate::contacts::{
    ContactError, ContactRegistry, FindContact, LearnContacts, Learned, NameHasOtherKey,
};
use crate::crypto::{CryptoError, PublicCert};
use crate::discovery::MAX_NAME_CHARS;
use crate::discussions::{DirectoryError, DiscussionDirectory, Lookup, Resolve};
use crate::events::{now_secs, Event, EventBus};
use crate::introduction::{
    is_hex_of, outcome_of, random_hex, we_dial, Answer, BadTransition, IntroState,
    IntroductionMessage, IntroductionOffer, INTRODUCTION_DIAL_RETRY_SECS, INTRODUCTION_ID_BYTES,
    INTRODUCTION_SECRET_BYTES,
};
use crate::keys::KeysHandle;
use crate::listener::{Listener, ListenerError, Open};
use crate::session::SendControl;
use crate::settings::Settings;
use crate::store::introductions::{
    KeepError, MadeIntroduction, NewIntroduction, ReceivedIntroduction,
};
use crate::store::{ContactOrigin, ContactRecord, DiscussionState, StoreError, StoreHandle};
use crate::wire::{Announce, AnnounceBody, Control};

#[derive(Debug, Error)]
pub enum IntroError {
    #[error("{0}")]
    Contact(#[from] ContactError),
    #[error("{0}")]
    Directory(#[from] DirectoryError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    #[error("{0}")]
    Transition(#[from] BadTransition),
    #[error("no introduction {0}")]
    NotFound(i64),
    /// Our user decides on an introduction that is past deciding.
    #[error("introduction {id} {}: nothing to decide", done_words(*state))]
    AlreadyDecided { id: i64, state: IntroState },
    #[error("cannot introduce {0} to themselves")]
    SamePerson(String),
    #[error("no open discussion with {0}: an introduction travels over one")]
    NoDiscussion(String),
    #[error("too many introductions of ours still wait for answers")]
    TooMany,
    #[error("one of them is blocked")]
    Blocked,
    #[error("cannot send over the discussion with {name}: {why}")]
    Send { name: String, why: String },
    #[error("the node is stopping")]
    Unavailable,
}

/// Where an introduction that can no longer be decided stands, in words.
fn done_words(state: IntroState) -> &'static str {
    match state {
        IntroState::Pending => "still waits for your decision",
        IntroState::Accepted => "was already accepted (waiting for the other side)",
        IntroState::Ready => "was already accepted by both sides (the discussion is opening)",
        IntroState::Used => "was already used (its discussion is open)",
        IntroState::Declined => "was already declined",
        IntroState::Cancelled => {
            "was cancelled (the other side declined, or the introducer withdrew it)"
        }
        IntroState::Expired => "has expired",
    }
}

/// Our user introduces `a` and `b` (names or fingerprint prefixes) to each other. Answers with the
/// introduction's id once both offers are stored in our outbox.
#[derive(Message)]
#[rtype(result = "Result<String, IntroError>")]
pub struct Introduce {
    pub a: String,
    pub b: String,
}

/// A control message of an introduction arrived over the discussion `discussion_id` with the
/// peer `from` (its identity fingerprint), after it was stored.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ControlIntroduction {
    pub discussion_id: String,
    pub from: String,
    pub message: IntroductionMessage,
}

/// Our user accepts or declines the introduction `local_id`.
#[derive(Message)]
#[rtype(result = "Result<ReceivedIntroduction, IntroError>")]
pub struct DecideIntroduction {
    pub local_id: i64,
    pub accept: bool,
}

/// Every introduction we received, newest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<ReceivedIntroduction>, IntroError>")]
pub struct ListIntroductions;

pub struct Introductions {
    node: String,
    settings: Settings,
    keys: KeysHandle,
    store: StoreHandle,
    events: EventBus,
    contacts: Addr<ContactRegistry>,
    directory: Addr<DiscussionDirectory>,
    listener: Addr<Listener>,
    /// Introductions being dialled now (one dial at a time each).
    dialling: HashSet<i64>,
}

impl Introductions {
    pub fn new(
        settings: Settings,
        keys: KeysHandle,
        store: StoreHandle,
        events: EventBus,
        contacts: Addr<ContactRegistry>,
        directory: Addr<DiscussionDirectory>,
        listener: Addr<Listener>,
    ) -> Self {
        Self {
            node: settings.node.name.clone(),
            settings,
            keys,
            store,
            events,
            contacts,
            directory,
            listener,
            dialling: HashSet::new(),
        }
    }

    fn window(&self) -> u64 {
        self.settings.limits.introduction_window_secs
    }

    /// End expired introductions, then dial the ready ones that are ours to dial.
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let events = self.events.clone();
        let me = self.keys.fingerprint().to_string();
        let fut = async move {
            let now = now_secs();
            let ended = store.run(move |s| s.expire_introductions(now)).await?;
            for i in ended {
                events.emit(Event::IntroductionEnded {
                    local_id: i.local_id,
                    state: IntroState::Expired,
                });
            }
            let all = store.run(|s| s.introductions()).await?;
            Ok::<_, StoreError>(
                all.into_iter()
                    .filter(|i| i.state == IntroState::Ready && we_dial(&me, &i.peer_fingerprint))
                    .collect::<Vec<_>>(),
            )
        };
        ctx.spawn(fut.into_actor(self).map(|r, act, ctx| match r {
            Ok(ready) => {
                for i in ready {
                    act.dial(i, ctx);
                }
            }
            Err(e) => log::warn!("[{}] introductions: {e}", act.node),
        }));
    }

    /// Dial the introduced peer of a ready introduction (we have the lower fingerprint).
    fn dial(&mut self, i: ReceivedIntroduction, ctx: &mut Context<Self>) {
        if !self.dialling.insert(i.local_id) {
            return;
        }
        let (keys, store, events, listener) = (
            self.keys.clone(),
            self.store.clone(),
            self.events.clone(),
            self.listener.clone(),
        );
        let node = self.node.clone();
        let local_id = i.local_id;
        let contacts = self.contacts.clone();
        let fut = async move {
            let secret = open_secret(&keys, &store, local_id).await?;
            let mut contact = contact_of(&i);
            contact.name = discussion_name(&contacts, &i).await;
            let opened = listener
                .send(Open {
                    contact,
                    password: secret.to_string(),
                    asker_gone: None,
                    introduced: true,
                })
                .await
                .map_err(|_| IntroError::Unavailable)?;
            drop(secret);
            match opened {
                Ok(discussion_id) => {
                    mark_used(&store, &events, local_id, &discussion_id).await;
                    Ok(())
                }
                Err(e) => Err(IntroError::Send {
                    name: i.peer_name.clone(),
                    why: dial_error(&e),
                }),
            }
        };
        ctx.spawn(fut.into_actor(self).map(move |r, act, _| {
            act.dialling.remove(&local_id);
            if let Err(e) = r {
                log::info!("[{node}] introduction {local_id}: dial failed, will retry: {e}");
            }
        }));
    }
}

fn dial_error(e: &ListenerError) -> String {
    e.to_string()
}

impl Actor for Introductions {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.sweep(ctx);
        let every = Duration::from_secs(
            INTRODUCTION_DIAL_RETRY_SECS
                .min(self.settings.limits.introduction_window_secs)
                .max(1),
        );
        ctx.run_interval(every, |act, ctx| act.sweep(ctx));
    }
}

/// The name of a discussion opened through the introduction `i`: the peer name our user
/// accepted, never the requester's own choice; if that name is now known with another key (the
/// key-changed warning was raised when the user accepted), it is qualified with the start of the
/// fingerprint, so that the name still means the contact the user knew and is never ambiguous.
pub async fn discussion_name(contacts: &Addr<ContactRegistry>, i: &ReceivedIntroduction) -> String {
    let taken = contacts
        .send(NameHasOtherKey {
            name: i.peer_name.clone(),
            fingerprint: i.peer_fingerprint.clone(),
        })
        .await
        // The registry is stopping: qualify (the safe side).
        .unwrap_or(true);
    if taken || i.key_changed {
        let short: String = i.peer_fingerprint.chars().take(8).collect();
        format!("{}-{short}", i.peer_name)
    } else {
        i.peer_name.clone()
    }
}

/// The contact record a dial uses: the introduced peer as the introduction describes it.
fn contact_of(i: &ReceivedIntroduction) -> ContactRecord {
    ContactRecord {
        fingerprint: i.peer_fingerprint.clone(),
        name: i.peer_name.clone(),
        cert: i.peer_cert.clone(),
        address: i.peer_address.clone(),
        tcp_port: i.peer_port,
        first_seen: i.received,
        last_seen: i.received,
        announce_time: 0,
        verified: false,
        key_changed: i.key_changed,
        origin: introduced_origin(i),
        announce: i.peer_announce.clone().unwrap_or_default(),
        probe: None,
    }
}

/// The contact origin of the peer of `i`: introduced by its introducer, recorded once.
fn introduced_origin(i: &ReceivedIntroduction) -> ContactOrigin {
    ContactOrigin::Introduced {
        fingerprint: i.introducer_fingerprint.clone(),
        name: i.introducer_name.clone(),
    }
}

/// The secret of a live introduction, opened from the store (zeroized when dropped).
pub async fn open_secret(
    keys: &KeysHandle,
    store: &StoreHandle,
    local_id: i64,
) -> Result<Zeroizing<String>, IntroError> {
    let sealed = store
        .run(move |s| s.introduction_secret(local_id))
        .await?
        .ok_or(IntroError::NotFound(local_id))?;
    Ok(unseal_secret(keys, sealed).await?)
}

/// Open an introduction's secret sealed at rest (zeroized when dropped).
pub async fn unseal_secret(
    keys: &KeysHandle,
    sealed: Vec<u8>,
) -> Result<Zeroizing<String>, CryptoError> {
    keys.run(move |id| {
        let plain = at_rest::open(id, Sealed::IntroductionSecret, &sealed)?;
        let text = std::str::from_utf8(&plain)
            .map_err(|_| CryptoError::Malformed("introduction secret".into()))?;
        Ok(Zeroizing::new(text.to_string()))
    })
    .await
}

/// A discussion opened through the introduction `local_id`: it is used, its secret destroyed.
pub async fn mark_used(store: &StoreHandle, events: &EventBus, local_id: i64, discussion_id: &str) {
    let d = discussion_id.to_string();
    match store
        .run(move |s| s.step_introduction(local_id, IntroState::used, Some(&d)))
        .await
    {
        Ok(Ok(_)) => events.emit(Event::IntroductionEnded {
            local_id,
            state: IntroState::Used,
        }),
        Ok(Err(e)) => log::debug!("introduction {local_id}: {e}"),
        Err(e) => log::warn!("introduction {local_id}: cannot mark it used: {e}"),
    }
}

/// Send an introduction's control message over the discussion `discussion_id`.
async fn send_control(
    directory: &Addr<DiscussionDirectory>,
    discussion_id: &str,
    name: &str,
    message: IntroductionMessage,
) -> Result<(), IntroError> {
    let failed = |why: String| IntroError::Send {
        name: name.to_string(),
        why,
    };
    let session = directory
        .send(Lookup(discussion_id.to_string()))
        .await
        .map_err(|_| IntroError::Unavailable)?
        .map_err(|e| failed(e.to_string()))?;
    session
        .send(SendControl(Control::Introduction(message)))
        .await
        .map_err(|_| IntroError::Unavailable)?
        .map_err(|e| failed(e.to_string()))?;
    Ok(())
}

impl Handler<Introduce> for Introductions {
    type Result = ResponseFuture<Result<String, IntroError>>;

    fn handle(&mut self, m: Introduce, _: &mut Context<Self>) -> Self::Result {
        let (contacts, directory, store) = (
            self.contacts.clone(),
            self.directory.clone(),
            self.store.clone(),
        );
        let window = self.window();
        Box::pin(async move {
            let find = |q: String| {
                let contacts = contacts.clone();
                async move {
                    contacts
                        .send(FindContact(q))
                        .await
                        .map_err(|_| IntroError::Unavailable)?
                        .map_err(IntroError::from)
                }
            };
            let a = find(m.a.clone()).await?;
            let b = find(m.b.clone()).await?;
            if a.fingerprint == b.fingerprint {
                return Err(IntroError::SamePerson(a.name));
            }
            let parties = [a.fingerprint.clone(), b.fingerprint.clone()];
            if store
                .run(move |s| s.any_blocked(&[&parties[0], &parties[1]]))
                .await?
            {
                return Err(IntroError::Blocked);
            }
            let discussion_with = |c: ContactRecord| {
                let (directory, store) = (directory.clone(), store.clone());
                async move {
                    let id = directory
                        .send(Resolve(c.fingerprint.clone()))
                        .await
                        .map_err(|_| IntroError::Unavailable)?
                        .map_err(|_| IntroError::NoDiscussion(c.name.clone()))?;
                    let i = id.clone();
                    let d = store.run(move |s| s.discussion(&i)).await?;
                    if d.state != DiscussionState::Open || d.peer_fingerprint != c.fingerprint {
                        return Err(IntroError::NoDiscussion(c.name.clone()));
                    }
                    Ok::<_, IntroError>(id)
                }
            };
            let da = discussion_with(a.clone()).await?;
            let db = discussion_with(b.clone()).await?;
            let id = random_hex(INTRODUCTION_ID_BYTES).to_string();
            let secret = random_hex(INTRODUCTION_SECRET_BYTES);
            let now = now_secs();
            let made = MadeIntroduction {
                id: id.clone(),
                a_fingerprint: a.fingerprint.clone(),
                a_discussion: da.clone(),
                a_answer: Answer::Waiting,
                b_fingerprint: b.fingerprint.clone(),
                b_discussion: db.clone(),
                b_answer: Answer::Waiting,
                created: now,
                expires: now + window,
                told: false,
            };
            if !store.run(move |s| s.keep_made_introduction(&made)).await? {
                return Err(IntroError::TooMany);
            }
            // Each side gets the other one, and the same secret.
            let offer = |other: &ContactRecord| {
                IntroductionMessage::Offer(IntroductionOffer {
                    id: id.clone(),
                    peer_cert: other.cert.clone(),
                    peer_announce: (!other.announce.is_empty()).then(|| other.announce.clone()),
                    peer_name: other.name.clone(),
                    peer_address: other.address.clone(),
                    peer_port: other.tcp_port,
                    secret: secret.to_string(),
                })
            };
            send_control(&directory, &da, &a.name, offer(&b)).await?;
            send_control(&directory, &db, &b.name, offer(&a)).await?;
            drop(secret);
            Ok(id)
        })
    }
}

impl Handler<ControlIntroduction> for Introductions {
    /// Answers once the message is processed (the control channel then marks it handled), so
    /// a crash before that processes it again at start; every step is idempotent (a second
    /// offer is a duplicate, a second answer or outcome a refused transition).
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, m: ControlIntroduction, _: &mut Context<Self>) -> Self::Result {
        match m.message {
            IntroductionMessage::Offer(offer) => self.on_offer(m.discussion_id, m.from, offer),
            IntroductionMessage::Answer { id, accepted } => self.on_answer(m.from, id, accepted),
            IntroductionMessage::Outcome { id, go } => self.on_outcome(m.from, id, go),
        }
    }
}

/// Why an offer was dropped (logged, rate-limited; the introducer is not told).
#[derive(Debug, Error)]
enum OfferRefused {
    #[error("malformed id, secret, name or address")]
    Malformed,
    #[error("certificate: {0}")]
    Cert(#[from] CryptoError),
    #[error("the announce does not verify with the certificate")]
    Announce,
    #[error("introduces us, or the introducer, to itself")]
    SelfIntroduction,
    #[error("the introducer or the introduced is blocked")]
    Blocked,
    #[error("{0}")]
    Keep(#[from] KeepError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the node is stopping")]
    Unavailable,
}

impl Introductions {
    fn on_offer(
        &mut self,
        discussion_id: String,
        introducer: String,
        offer: IntroductionOffer,
    ) -> ResponseActFuture<Self, ()> {
        let (keys, store, events, contacts) = (
            self.keys.clone(),
            self.store.clone(),
            self.events.clone(),
            self.contacts.clone(),
        );
        let me = self.keys.fingerprint().to_string();
        let window = self.window();
        let node = self.node.clone();
        let fut = async move {
            if !is_hex_of(&offer.id, INTRODUCTION_ID_BYTES)
                || !is_hex_of(&offer.secret, INTRODUCTION_SECRET_BYTES)
                || offer.peer_address.parse::<IpAddr>().is_err()
            {
                return Err(OfferRefused::Malformed);
            }
            let secret = Zeroizing::new(offer.secret);
            let (cert, announced) = {
                let (cert_bytes, announce) = (offer.peer_cert.clone(), offer.peer_announce.clone());
                keys.run(move |_| {
                    let cert = PublicCert::from_bytes(&cert_bytes)?;
                    let announced =
                        announce.map(|bytes| verify_announce(&cert, &cert_bytes, &bytes));
                    Ok((cert, announced))
                })
                .await?
            };
            let (name, port) = match announced {
                None => (offer.peer_name, offer.peer_port),
                Some(Some(body)) => (body.name, body.tcp_port),
                Some(None) => return Err(OfferRefused::Announce),
            };
            let name: String = crate::net::sanitize(&name)
                .chars()
                .take(MAX_NAME_CHARS)
                .collect();
            if name.is_empty() {
                return Err(OfferRefused::Malformed);
            }
            let fingerprint = cert.fingerprint().to_string();
            if fingerprint == me || fingerprint == introducer {
                return Err(OfferRefused::SelfIntroduction);
            }
            let parties = [introducer.clone(), fingerprint.clone()];
            if store
                .run(move |s| s.any_blocked(&[&parties[0], &parties[1]]))
                .await?
            {
                return Err(OfferRefused::Blocked);
            }
            let key_changed = contacts
                .send(NameHasOtherKey {
                    name: name.clone(),
                    fingerprint: fingerprint.clone(),
                })
                .await
                .map_err(|_| OfferRefused::Unavailable)?;
            let d = discussion_id.clone();
            let introducer_name = store.run(move |s| s.discussion(&d)).await?.peer_name;
            let plain = secret.as_bytes().to_vec();
            let sealed = keys
                .run(move |id| at_rest::seal(id, Sealed::IntroductionSecret, &plain))
                .await?;
            let now = now_secs();
            let row = ReceivedIntroduction {
                local_id: 0,
                introducer_fingerprint: introducer,
                id: offer.id,
                introducer_name,
                introducer_discussion: discussion_id,
                peer_fingerprint: fingerprint,
                peer_name: name,
                peer_cert: offer.peer_cert,
                peer_announce: offer.peer_announce,
                peer_address: offer.peer_address,
                peer_port: port,
                key_changed,
                state: IntroState::Pending,
                received: now,
                expires: now + window,
                discussion_id: None,
            };
            let new = NewIntroduction {
                row: row.clone(),
                sealed_secret: sealed,
            };
            let local_id = store
                .run(move |s| Ok(s.keep_introduction(&new, now)))
                .await??;
            let row = ReceivedIntroduction { local_id, ..row };
            events.emit(Event::Introduction {
                introduction: row.clone(),
            });
            Ok(row)
        };
        Box::pin(fut.into_actor(self).map(move |r, _, _| {
            if let Err(e) = r {
                log::warn!("[{node}] introduction dropped: {e}");
            }
        }))
    }

    /// One side answered an introduction we made: once both answered, tell both the outcome.
    fn on_answer(
        &mut self,
        from: String,
        id: String,
        accepted: bool,
    ) -> ResponseActFuture<Self, ()> {
        if !is_hex_of(&id, INTRODUCTION_ID_BYTES) {
            return Box::pin(actix::fut::ready(()));
        }
        let (store, directory) = (self.store.clone(), self.directory.clone());
        let node = self.node.clone();
        let answer = if accepted {
            Answer::Accepted
        } else {
            Answer::Declined
        };
        let fut = async move {
            let i = id.clone();
            let Some(m) = store
                .run(move |s| s.answer_made_introduction(&i, &from, answer))
                .await?
            else {
                return Ok(());
            };
            let Some(go) = outcome_of(m.a_answer, m.b_answer) else {
                return Ok(());
            };
            for d in [&m.a_discussion, &m.b_discussion] {
                let msg = IntroductionMessage::Outcome { id: id.clone(), go };
                if let Err(e) = send_control(&directory, d, d, msg).await {
                    log::info!("[{node}] introduction outcome not sent: {e}");
                }
            }
            store.run(move |s| s.made_introduction_told(&id)).await?;
            Ok::<_, IntroError>(())
        };
        let node = self.node.clone();
        Box::pin(fut.into_actor(self).map(move |r, _, _| {
            if let Err(e) = r {
                log::warn!("[{node}] introduction answer: {e}");
            }
        }))
    }

    /// The introducer's outcome of an introduction it made to us.
    fn on_outcome(&mut self, from: String, id: String, go: bool) -> ResponseActFuture<Self, ()> {
        if !is_hex_of(&id, INTRODUCTION_ID_BYTES) {
            return Box::pin(actix::fut::ready(()));
        }
        let (store, events) = (self.store.clone(), self.events.clone());
        let me = self.keys.fingerprint().to_string();
        let fut = async move {
            let Some(i) = store.run(move |s| s.introduction_by_id(&from, &id)).await? else {
                return Ok(None);
            };
            let local_id = i.local_id;
            let stepped = store
                .run(move |s| s.step_introduction(local_id, |st| st.outcome(go), None))
                .await?;
            let Ok(i) = stepped else {
                return Ok(None);
            };
            if i.state == IntroState::Cancelled {
                events.emit(Event::IntroductionEnded {
                    local_id,
                    state: IntroState::Cancelled,
                });
            }
            Ok::<_, StoreError>(
                (i.state == IntroState::Ready && we_dial(&me, &i.peer_fingerprint)).then_some(i),
            )
        };
        Box::pin(fut.into_actor(self).map(|r, act, ctx| match r {
            Ok(Some(i)) => act.dial(i, ctx),
            Ok(None) => {}
            Err(e) => log::warn!("[{}] introduction outcome: {e}", act.node),
        }))
    }
}

/// The body of `bytes` (a `bincode(Announce)`) if it is signed by `cert` and carries `cert_bytes`.
fn verify_announce(cert: &PublicCert, cert_bytes: &[u8], bytes: &[u8]) -> Option<AnnounceBody> {
    let a = codec::decode::<Announce>(bytes).ok()?;
    crate::crypto::verify_detached(cert, &a.body, &a.signature).ok()?;
    let body = codec::decode::<AnnounceBody>(&a.body).ok()?;
    (body.cert == cert_bytes).then_some(body)
}

impl Handler<DecideIntroduction> for Introductions {
    type Result = ResponseFuture<Result<ReceivedIntroduction, IntroError>>;

    fn handle(&mut self, m: DecideIntroduction, _: &mut Context<Self>) -> Self::Result {
        let (store, events, contacts, directory) = (
            self.store.clone(),
            self.events.clone(),
            self.contacts.clone(),
            self.directory.clone(),
        );
        Box::pin(async move {
            let id = m.local_id;
            let now = now_secs();
            store.run(move |s| s.expire_introductions(now)).await?;
            let i = store
                .run(move |s| s.step_introduction(id, |st| st.decide(m.accept), None))
                .await
                .map_err(|e| match e {
                    StoreError::NoDiscussion(_) => IntroError::NotFound(id),
                    e => e.into(),
                })?
                .map_err(|t| IntroError::AlreadyDecided { id, state: t.from })?;
            if m.accept {
                // Now a contact (origin: this introduction); a name known with another key
                // raises the key-changed warning, as discovery does.
                if let Ok(address) = i.peer_address.parse() {
                    let _ = contacts
                        .send(LearnContacts {
                            entries: vec![Learned {
                                fingerprint: i.peer_fingerprint.clone(),
                                name: i.peer_name.clone(),
                                cert: i.peer_cert.clone(),
                                address,
                                tcp_port: i.peer_port,
                                time: 1,
                                announce: i.peer_announce.clone().unwrap_or_default(),
                            }],
                            origin: introduced_origin(&i),
                        })
                        .await;
                }
            } else {
                events.emit(Event::IntroductionEnded {
                    local_id: id,
                    state: IntroState::Declined,
                });
            }
            let answer = IntroductionMessage::Answer {
                id: i.id.clone(),
                accepted: m.accept,
            };
            send_control(
                &directory,
                &i.introducer_discussion,
                &i.introducer_name,
                answer,
            )
            .await?;
            Ok(i)
        })
    }
}

impl Handler<ListIntroductions> for Introductions {
    type Result = ResponseFuture<Result<Vec<ReceivedIntroduction>, IntroError>>;

    fn handle(&mut self, _: ListIntroductions, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            let now = now_secs();
            Ok(store
                .run(move |s| {
                    s.expire_introductions(now)?;
                    s.introductions()
                })
                .await?)
        })
    }
}
