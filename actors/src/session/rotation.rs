//! Forward secrecy (issue 14, `docs/protocol.md`, "Key rotation"): each side rotates its own
//! discussion encryption subkey and destroys the old one once the peer has switched.
//!
//! Our side: a new subkey is made on a crypto worker, put in memory (so we can read the peer's
//! frames under it before it could know it), then stored `pending` in the same transaction as the
//! outbox entry that announces it ([`RotationMessage::Announce`]); a crash before that commit loses
//! an unannounced key, after it the stored key is the one announced (never made twice). The peer's
//! [`RotationMessage::Acknowledge`] makes it `active` from that message's sequence number on and the
//! replaced one `draining`; a draining key is destroyed as soon as every message numbered before the
//! switch is stored (at once: messages are stored in order, and the acknowledgement itself is), or
//! `rotation.drain_max_hours` after the switch whatever is missing. What a crash interrupted is
//! finished at the next start ([`DiscussionSession::finish_rotation`]).
//!
//! Triggers: `rotation.messages` messages received under the current subkey, `rotation.hours`
//! under it, or [`Rotate`] (the IPC `rotate` method). Only with a peer that has authenticated at
//! [`ROTATION_VERSION`] or more: an older peer cannot decode the announcement.
//!
//! The peer's side ([`ReceiveRotation`] with an announcement): the subkey is checked against the
//! peer's discussion key, used for every message encrypted from then on (in memory first), and
//! stored with our acknowledgement in one transaction.
//!
//! One step at a time (`RotationState::busy`), beside the session's other work (`ctx.spawn`: a
//! rotation does not hold up the frames of a busy discussion). That is safe because the new key is
//! in memory before its announcement is queued, and a destruction replaces the key in memory only
//! while no other step can change it.

use super::*;
use crate::wire::{unreadable_data, Control, RotationMessage, ROTATION_VERSION};

/// Test hook ([`EncryptToForTests`]): a certificate the next frames are encrypted to, how many
/// more, and the last sequence number it took (a frame sent again goes to the current subkey).
#[derive(Clone, Default)]
pub(super) struct StaleTarget(Arc<std::sync::Mutex<Option<(PublicCert, u32, u64)>>>);

impl StaleTarget {
    /// The certificate for frame `seq`, if the hook is set and `seq` is new to it.
    pub(super) fn take_one(&self, seq: u64) -> Option<PublicCert> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (cert, left, last) = slot.as_mut()?;
        if seq <= *last {
            return None;
        }
        let cert = cert.clone();
        *last = seq;
        *left -= 1;
        if *left == 0 {
            *slot = None;
        }
        Some(cert)
    }
}

/// Most entries a [`RotationTap`] keeps of each kind (a test hook, bounded like everything else).
pub const MAX_TAPPED: usize = 4096;

/// Recorded chat frames: (sequence number, the OpenPGP bytes on the wire).
pub type TappedFrames = Arc<std::sync::Mutex<Vec<(u64, Vec<u8>)>>>;

/// Recorded subkeys: (key id, raw secret parameters, the sealed key that first held it).
pub type TappedSubkeys = Arc<std::sync::Mutex<Vec<(String, Vec<u8>, Vec<u8>)>>>;

/// Test hook ([`TapForTests`]): what a test of forward secrecy records as it happens. Secret
/// material goes here only when a test installed the tap; nothing in the node does.
#[derive(Clone, Default)]
pub struct RotationTap {
    /// Every chat frame this session wrote: (sequence number, the OpenPGP bytes on the wire).
    pub frames: TappedFrames,
    /// Every subkey this session made, when it was made: (key id, raw secret parameters, the
    /// sealed discussion key that first held it).
    pub subkeys: TappedSubkeys,
}

impl RotationTap {
    fn push<T>(v: &std::sync::Mutex<Vec<T>>, item: T) {
        let mut v = v.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() < MAX_TAPPED {
            v.push(item);
        }
    }

    pub(super) fn frame(&self, seq: u64, bytes: &[u8]) {
        Self::push(&self.frames, (seq, bytes.to_vec()));
    }

    fn subkey(&self, key_id: &str, material: Vec<u8>, sealed: &[u8]) {
        Self::push(
            &self.subkeys,
            (key_id.to_string(), material, sealed.to_vec()),
        );
    }
}

/// Test hook: record this session's chat frames and new subkeys in the tap from now on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TapForTests(pub RotationTap);

impl Handler<TapForTests> for DiscussionSession {
    type Result = ();
    fn handle(&mut self, m: TapForTests, _: &mut Context<Self>) {
        self.tap = Some(m.0);
    }
}

/// Test hook: encrypt the next `frames` frames of this discussion to `cert` (an old certificate of
/// the peer, whose subkey it has destroyed) instead of its current subkey, as a sender with a
/// stale view would (restored from a backup); each sequence number once (sent again, it goes to
/// the current subkey). For the tests of `Frame::Unreadable`; nothing in the
/// node sends it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EncryptToForTests {
    pub cert: PublicCert,
    pub frames: u32,
}

impl Handler<EncryptToForTests> for DiscussionSession {
    type Result = ();
    fn handle(&mut self, m: EncryptToForTests, _: &mut Context<Self>) {
        if m.frames > 0 {
            *self
                .stale_target
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some((m.cert, m.frames, 0));
        }
    }
}

/// How often a session checks its time-based rotation and its draining keys' deadline.
pub const ROTATION_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// What the session knows of its own rotation, loaded from the store at start.
#[derive(Debug, Default)]
pub(super) struct RotationState {
    /// Loaded from the store: nothing is triggered before.
    loaded: bool,
    /// When our active subkey became active (its row's `changed`).
    active_since: u64,
    /// Messages received under it (approximately: counted since this run's load).
    received: u64,
    /// Our subkey announced and not yet acknowledged.
    pending: Option<String>,
    /// A step is running (waits on workers): no other one starts.
    busy: bool,
    /// A destruction was asked for while a step ran: done when it ends.
    finish_again: bool,
}

/// Rotate our encryption subkey now. Answers with the new subkey's id once it is stored pending
/// (an [`Event::KeyRotated`] says when the peer has acknowledged it); while one is pending, that
/// one (it is never made twice).
#[derive(Message)]
#[rtype(result = "Result<String, SessionError>")]
pub struct Rotate;

/// A [`Control::Rotation`] from the peer, with its sequence number (from [`crate::control`]).
/// An error: its step could not be stored (nothing changed), so the message must stay unhandled
/// and be handled again at the next start, not be dropped (the rotation would stay pending on the
/// peer's side for good).
#[derive(Message)]
#[rtype(result = "Result<(), SessionError>")]
pub struct ReceiveRotation {
    pub seq: u64,
    pub message: RotationMessage,
}

impl Handler<Rotate> for DiscussionSession {
    type Result = ResponseActFuture<Self, Result<String, SessionError>>;

    fn handle(&mut self, _: Rotate, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.may_rotate() {
            return Box::pin(fut::ready(Err(e)));
        }
        if let Some(pending) = &self.rotation.pending {
            return Box::pin(fut::ready(Ok(pending.clone())));
        }
        if self.rotation.busy {
            return Box::pin(fut::ready(Err(SessionError::RotationBusy)));
        }
        Box::pin(self.begin_rotation(ctx))
    }
}

impl Handler<ReceiveRotation> for DiscussionSession {
    type Result = ResponseActFuture<Self, Result<(), SessionError>>;

    fn handle(&mut self, m: ReceiveRotation, _: &mut Context<Self>) -> Self::Result {
        match m.message {
            RotationMessage::Announce { key_id, cert } => Box::pin(self.peer_rotated(key_id, cert)),
            RotationMessage::Acknowledge { key_id } => Box::pin(self.acknowledged(key_id, m.seq)),
        }
    }
}

impl DiscussionSession {
    /// Whether this discussion can rotate now.
    fn may_rotate(&self) -> Result<(), SessionError> {
        if self.finished || self.closing || self.peer_closing {
            return Err(SessionError::Closed);
        }
        let version = self.version_floor().min(self.max_version);
        if version < ROTATION_VERSION {
            return Err(SessionError::NoRotation(version));
        }
        Ok(())
    }

    /// Load the rotation state, then finish what a crash interrupted; check the triggers now and
    /// every [`ROTATION_CHECK_INTERVAL`].
    pub(super) fn start_rotation(&mut self, ctx: &mut Context<Self>) {
        let (store, id) = (self.store.clone(), self.id().to_string());
        let fut = async move {
            let i = id.clone();
            let keys = store.run(move |s| s.own_subkeys(&i)).await?;
            let last_in = store.run(move |s| s.last_in_seq(&id)).await?;
            Ok::<_, StoreError>((keys, last_in))
        };
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok((keys, last_in)) => {
                act.rotation.loaded = true;
                for k in keys {
                    match k.state {
                        SubkeyState::Pending => act.rotation.pending = Some(k.key_id),
                        SubkeyState::Active => {
                            act.rotation.active_since = k.changed;
                            act.rotation.received = (last_in + 1).saturating_sub(k.from_seq.max(1));
                        }
                        SubkeyState::Draining => {}
                    }
                }
                act.finish_rotation(ctx);
            }
            Err(e) => log::error!("[{}] {}: rotation state: {e}", act.node, act.id()),
        }));
        ctx.run_interval(ROTATION_CHECK_INTERVAL, |act, ctx| {
            act.finish_rotation(ctx);
        });
    }

    /// `n` messages were stored under our current subkey: rotate if that reaches the count.
    pub(super) fn received_under_key(&mut self, n: u64, ctx: &mut Context<Self>) {
        self.rotation.received += n;
        self.maybe_rotate(ctx);
    }

    /// Start a rotation if a trigger says so (and none is under way).
    fn maybe_rotate(&mut self, ctx: &mut Context<Self>) {
        let r = &self.rotation;
        let limits = &self.settings.rotation;
        if !r.loaded || r.busy || r.pending.is_some() || self.may_rotate().is_err() {
            return;
        }
        let by_count = limits.messages > 0 && r.received >= limits.messages;
        let by_time = limits.hours > 0 && now_secs() >= r.active_since + limits.hours * 3600;
        if by_count || by_time {
            let fut = self.begin_rotation(ctx).map(|res, act, _| {
                if let Err(e) = res {
                    log::warn!("[{}] {}: key rotation: {e}", act.node, act.id());
                }
            });
            ctx.spawn(fut);
        }
    }

    /// Destroy the draining keys that may go, then check the triggers. Also called when the peer is
    /// first seen at a higher protocol version: a rotation due (by time, at start) but refused while
    /// the peer's recorded version was below [`ROTATION_VERSION`] starts then, not a check interval
    /// later.
    pub(super) fn finish_rotation(&mut self, ctx: &mut Context<Self>) {
        if self.rotation.busy {
            self.rotation.finish_again = true;
            return;
        }
        if !self.rotation.loaded {
            return;
        }
        self.rotation.finish_again = false;
        self.rotation.busy = true;
        let (store, keys, id) = (self.store.clone(), self.keys.clone(), self.id().to_string());
        let own = self.sk.own.clone();
        let drain_max = self.settings.rotation.drain_max_hours * 3600;
        let node = self.node.clone();
        let fut = async move {
            let i = id.clone();
            let subkeys = store.run(move |s| s.own_subkeys(&i)).await?;
            let i = id.clone();
            let last_in = store.run(move |s| s.last_in_seq(&i)).await?;
            let mut own = own;
            let mut destroyed = Vec::new();
            for k in subkeys
                .into_iter()
                .filter(|k| k.state == SubkeyState::Draining)
            {
                let drained = k.from_seq <= last_in + 1;
                let expired = now_secs() >= k.changed + drain_max;
                if !drained && !expired {
                    continue;
                }
                if !drained {
                    log::warn!(
                        "[{node}] {id}: subkey destroyed {} h after the switch, messages before {} \
                         still missing",
                        drain_max / 3600,
                        k.from_seq
                    );
                }
                let (smaller, sealed) = keys
                    .drop_discussion_subkey(own.clone(), k.key_id.clone())
                    .await?;
                let (i, kid) = (id.clone(), k.key_id.clone());
                store
                    .run(move |s| s.destroy_subkey(&i, &kid, &sealed))
                    .await?;
                own = Arc::new(smaller);
                destroyed.push(k.key_id);
            }
            Ok::<_, SessionError>((own, destroyed))
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.rotation.busy = false;
            match res {
                Ok((own, destroyed)) => {
                    if !destroyed.is_empty() {
                        crash_point("destroyed");
                        act.set_own_key(own);
                        log::info!(
                            "[{}] {}: {} old subkey(s) destroyed",
                            act.node,
                            act.id(),
                            destroyed.len()
                        );
                    }
                    act.maybe_rotate(ctx);
                }
                Err(e) => log::error!("[{}] {}: destroying a subkey: {e}", act.node, act.id()),
            }
        }));
    }

    /// Make, keep and announce a new subkey; answers its id once stored pending.
    fn begin_rotation(
        &mut self,
        _: &mut Context<Self>,
    ) -> impl ActorFuture<Self, Output = Result<String, SessionError>> {
        self.rotation.busy = true;
        let (keys, own) = (self.keys.clone(), self.sk.own.clone());
        async move { Ok::<_, SessionError>(keys.add_discussion_subkey(own, now_secs()).await?) }
            .into_actor(self)
            .then(|made, act, _| {
                let store = act.store.clone();
                let id = act.id().to_string();
                let previous = act.sk.own.clone();
                let made = made.map(|m| {
                    if let Some(tap) = &act.tap {
                        let material = m.key.subkey_material_for_audit(&m.key_id);
                        tap.subkey(&m.key_id, material.unwrap_or_default(), &m.sealed);
                    }
                    // In memory before the announcement can leave: the peer's first frame under
                    // the new subkey must find it here.
                    act.set_own_key(Arc::new(m.key));
                    (m.key_id, m.sealed, m.announcement)
                });
                async move {
                    let (key_id, sealed, cert) = made?;
                    let control = Control::Rotation(RotationMessage::Announce {
                        key_id: key_id.clone(),
                        cert,
                    });
                    let bytes = crate::codec::encode(&control)?;
                    let kid = key_id.clone();
                    store
                        .run(move |s| s.begin_rotation(&id, &kid, &sealed, &bytes, now_secs()))
                        .await?;
                    Ok::<_, SessionError>(key_id)
                }
                .into_actor(act)
                .map(move |res, act, ctx| {
                    act.rotation.busy = false;
                    if act.rotation.finish_again {
                        act.finish_rotation(ctx);
                    }
                    match &res {
                        Ok(key_id) => {
                            log::info!(
                                "[{}] {}: new subkey {key_id} announced",
                                act.node,
                                act.id()
                            );
                            act.rotation.pending = Some(key_id.clone());
                            crash_point("pending-stored");
                            act.pump(ctx);
                        }
                        // Never announced: the key goes (a pending one of an earlier run stays).
                        Err(_) => act.set_own_key(previous),
                    }
                    res
                })
            })
    }

    /// The peer announced a new subkey: check it, encrypt to it from now on, keep it and
    /// acknowledge it (one transaction: the acknowledgement's number is where the switch is).
    fn peer_rotated(
        &mut self,
        key_id: String,
        cert: Vec<u8>,
    ) -> impl ActorFuture<Self, Output = Result<(), SessionError>> {
        let current = self.sk.encryption_target();
        let (keys, node, id) = (self.keys.clone(), self.node.clone(), self.id().to_string());
        let already = current.current_subkey().ok().as_deref() == Some(key_id.as_str());
        let peer = self.sk.peer.clone();
        async move {
            if already {
                // Handled before a crash (its acknowledgement was stored with it).
                return None;
            }
            match keys
                .check_announcement(peer, cert.clone(), key_id.clone(), now_secs())
                .await
            {
                Ok(new) => Some((new, cert, key_id)),
                Err(e) => {
                    log::warn!("[{node}] {id}: the peer's new subkey is refused: {e}");
                    None
                }
            }
        }
        .into_actor(self)
        .then(|checked, act, _| {
            let store = act.store.clone();
            let id = act.id().to_string();
            let previous = act.sk.encryption_target();
            let checked = checked.map(|(new, cert, key_id)| {
                // From now on, before the acknowledgement gets its number.
                act.sk.set_encryption_target(new);
                (cert, key_id)
            });
            async move {
                let Some((cert, key_id)) = checked else {
                    return Ok(None);
                };
                let ack = Control::Rotation(RotationMessage::Acknowledge {
                    key_id: key_id.clone(),
                });
                let bytes = crate::codec::encode(&ack)?;
                let kid = key_id.clone();
                store
                    .run(move |s| s.accept_peer_rotation(&id, &cert, &kid, &bytes, now_secs()))
                    .await?;
                Ok::<_, SessionError>(Some(key_id))
            }
            .into_actor(act)
            .map(|res, act, ctx| match res {
                Ok(Some(key_id)) => {
                    log::info!("[{}] {}: the peer rotated to {key_id}", act.node, act.id());
                    // What it could not read under its destroyed subkey goes again, to this one.
                    if let Some(from) = act.unreadable_waiting.take() {
                        act.resend_from(from);
                    }
                    crash_point("peer-stored");
                    act.pump(ctx);
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => {
                    // Not stored: back to the subkey the store names (the peer still holds it:
                    // unacknowledged, its old one stays active), and handled again at the next
                    // start.
                    act.sk.set_encryption_target(previous);
                    log::error!("[{}] {}: peer rotation: {e}", act.node, act.id());
                    Err(e)
                }
            })
        })
    }

    /// The peer encrypts to our subkey `key_id` from `seq` on: active; the one it replaces drains.
    fn acknowledged(
        &mut self,
        key_id: String,
        seq: u64,
    ) -> impl ActorFuture<Self, Output = Result<(), SessionError>> {
        let (store, id) = (self.store.clone(), self.id().to_string());
        let kid = key_id.clone();
        async move {
            store
                .run(move |s| s.acknowledge_rotation(&id, &kid, seq, now_secs()))
                .await
        }
        .into_actor(self)
        .map(move |res, act, ctx| {
            let res = match res {
                Ok(true) => {
                    crash_point("acknowledged");
                    log::info!("[{}] {}: subkey {key_id} active", act.node, act.id());
                    act.rotation.pending = None;
                    act.rotation.active_since = now_secs();
                    act.rotation.received = 0;
                    act.events.emit(Event::KeyRotated {
                        discussion_id: act.id().to_string(),
                        key_id,
                    });
                    Ok(())
                }
                Ok(false) => Ok(()),
                Err(e) => {
                    log::error!("[{}] {}: acknowledgement: {e}", act.node, act.id());
                    Err(e.into())
                }
            };
            act.finish_rotation(ctx);
            res
        })
    }
}

/// `Frame::Unreadable`s a peer may send on one connection before the next costs it. An honest
/// peer sends at most one per subkey and position, and has at most 3 subkeys; each one makes us
/// encrypt our undelivered messages again, so a peer naming keys at random would otherwise have us
/// re-encrypt the outbox for every frame it sends.
pub const MAX_UNREADABLE_PER_CONNECTION: u32 = 4;

/// Test hook: when this environment variable names a step of a rotation, the process is killed right
/// after that step is committed to the store (as a SIGKILL would end it there): `pending-stored`
/// (our new subkey and its announcement), `peer-stored` (the peer's new subkey and our
/// acknowledgement), `acknowledged` (ours active, the old one draining), `destroyed` (the old
/// one gone, before the WAL is truncated). For the crash tests of `tests/rotation.rs`; unset, it
/// costs one environment lookup per step.
pub const CRASH_AT_ENV: &str = "PGPCHAT_TEST_CRASH_AT";

fn crash_point(step: &str) {
    if std::env::var(CRASH_AT_ENV).is_ok_and(|v| v == step) {
        log::error!("crash point {step}: killed ({CRASH_AT_ENV})");
        log::logger().flush();
        // SIGKILL, as the crash tests' other kills (no core dump, nothing run on the way out).
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &std::process::id().to_string()])
            .status();
        std::process::abort();
    }
}

/// Longest subkey id accepted in a `Frame::Unreadable` (16 hex digits).
const KEY_ID_CHARS: usize = 16;

impl DiscussionSession {
    /// A frame of connection `generation` was encrypted to our subkey `key_id`, which is gone: tell
    /// the peer which, and the last message we stored, so it encrypts the rest again (signed; at
    /// version 4 only; not twice for the same subkey and position on one connection).
    pub(super) fn answer_unreadable(
        &mut self,
        key_id: String,
        generation: u64,
        ctx: &mut Context<Self>,
    ) {
        let Some(link) = &self.conn else { return };
        if link.version < ROTATION_VERSION || link.generation != generation {
            return;
        }
        let tx = link.tx.clone();
        let (keys, store, sk) = (self.keys.clone(), self.store.clone(), self.sk.clone());
        let deadline = self.deadline();
        let id = sk.discussion_id.clone();
        let fut = async move {
            let last_seq = store.run(move |s| s.last_in_seq(&id)).await?;
            Ok::<_, LinkError>((last_seq, key_id))
        };
        ctx.spawn(fut.into_actor(self).then(move |res, act, _| {
            let answer = match res {
                Ok((last_seq, key_id)) => {
                    let this = (generation, key_id.clone(), last_seq);
                    if act.unreadable_sent.as_ref() == Some(&this) {
                        None
                    } else {
                        act.unreadable_sent = Some(this);
                        Some((last_seq, key_id))
                    }
                }
                Err(e) => {
                    log::error!("[{}] {}: unreadable frame: {e}", act.node, act.id());
                    None
                }
            };
            async move {
                let Some((last_seq, key_id)) = answer else {
                    return Ok(());
                };
                let data = unreadable_data(&sk.discussion_id, &key_id, last_seq);
                let signature = keys.sign_with(sk.own.clone(), data).await?;
                let frame = Frame::Unreadable {
                    key_id,
                    last_seq,
                    signature,
                };
                tokio::time::timeout(deadline, tx.send(frame))
                    .await
                    .map_err(|_| LinkError::TooSlowForAcks)?
                    .map_err(|_| LinkError::ConnectionGone)?;
                Ok::<_, LinkError>(())
            }
            .into_actor(act)
            .map(move |res, act, ctx| {
                if let Err(e) = res {
                    act.frame_dropped("unreadable answer", e, generation, ctx);
                }
            })
        }));
    }

    /// The peer could not read our frames encrypted to its subkey `key_id` after `last_seq`:
    /// checked (its signature), then everything after `last_seq` goes again, encrypted to its
    /// current subkey. If that is the subkey it cannot read, nothing is sent again (no loop): the
    /// views disagree, which a reconnection does not fix either (logged). Returns `true` (waits).
    pub(super) fn on_unreadable(
        &mut self,
        key_id: String,
        last_seq: u64,
        signature: Vec<u8>,
        generation: u64,
        ctx: &mut Context<Self>,
    ) -> bool {
        let version = self.conn.as_ref().map_or(0, |l| l.version);
        if version < ROTATION_VERSION || key_id.len() > KEY_ID_CHARS {
            self.disconnect(generation, "unexpected Unreadable frame", ctx);
            return false;
        }
        if self.unreadable_on.0 != generation {
            self.unreadable_on = (generation, 0);
        }
        self.unreadable_on.1 += 1;
        if self.unreadable_on.1 > MAX_UNREADABLE_PER_CONNECTION {
            self.disconnect(generation, "too many Unreadable frames", ctx);
            return false;
        }
        let (keys, sk) = (self.keys.clone(), self.sk.clone());
        let data = unreadable_data(&sk.discussion_id, &key_id, last_seq);
        let fut = async move { keys.verify_detached(sk.peer.clone(), data, signature).await };
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| {
            act.continue_inbound(ctx);
            if let Err(e) = res {
                act.frame_dropped("unreadable", LinkError::BadAck(e), generation, ctx);
                return;
            }
            let current = act.sk.encryption_target().current_subkey().ok();
            if current.as_deref() == Some(key_id.as_str()) {
                // It destroyed the subkey we know as its current one (after
                // `rotation.drain_max_hours`, while we were away): its announcement of the new
                // one is on its way; what it could not read goes again then.
                log::warn!(
                    "[{}] {}: the peer no longer holds its subkey {key_id} we encrypt to: sent \
                     again once it announces the new one",
                    act.node,
                    act.id()
                );
                let from = last_seq.saturating_add(1);
                act.unreadable_waiting = Some(act.unreadable_waiting.map_or(from, |w| w.min(from)));
                return;
            }
            log::info!(
                "[{}] {}: the peer no longer holds subkey {key_id}: sending again after {last_seq}",
                act.node,
                act.id()
            );
            act.resend_from(last_seq.saturating_add(1));
            act.pump(ctx);
        }));
        true
    }

    /// The pump sends again from sequence number `from` (now, or when the running pass ends).
    fn resend_from(&mut self, from: u64) {
        if self.pumping {
            self.rewind = Some(self.rewind.map_or(from, |r| r.min(from)));
        } else {
            self.next_to_send = self.next_to_send.min(from);
        }
    }
}

/// Test hook: the discussion key this session holds now (for a test that checks, through a
/// [`std::sync::Weak`], that a key replaced by a rotation is dropped, and so zeroized, by every
/// holder). Nothing in the node sends it.
#[derive(Message)]
#[rtype(result = "Arc<SecretCert>")]
pub struct OwnKeyForTests;

impl Handler<OwnKeyForTests> for DiscussionSession {
    type Result = MessageResult<OwnKeyForTests>;
    fn handle(&mut self, _: OwnKeyForTests, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.sk.own.clone())
    }
}
