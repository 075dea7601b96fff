//! A discussion's DHT rendezvous secret when the handshake did not give it one (opened before
//! issue 11, or with a peer on an older build; `docs/protocol.md`, section 7): brought over the
//! control channel, end to end encrypted and signed like any control message.
//!
//! The requester's secret is the discussion's: on the first connection at version 3 or more of a
//! run, a requester without one draws 32 random bytes, keeps them sealed and sends them
//! ([`RendezvousMessage::Secret`]); a receiver without one asks ([`RendezvousMessage::Wanted`]) and
//! the requester answers with its own. A receiver that asked keeps what the requester sent in place
//! of any it had, so both end with the same secret whichever side lost it; an unasked `Secret` only
//! fills a gap (never replaces a kept one), and at most one is taken per run (each costs a seal, a
//! durable write and a DHT put). Either side then publishes, if the secret was kept.

use super::*;
use crate::at_rest::{self, Sealed};
use crate::dht::RendezvousSecret;
use crate::wire::{Control, RendezvousMessage, SecretBytes, RENDEZVOUS_VERSION};

/// A [`Control::Rendezvous`] from the peer (from [`crate::control::dispatch`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReceiveRendezvous(pub RendezvousMessage);

impl Handler<ReceiveRendezvous> for DiscussionSession {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, m: ReceiveRendezvous, ctx: &mut Context<Self>) -> Self::Result {
        // One answer per run is enough (control messages are durable): a peer repeating `Wanted`
        // gets no more than that.
        if self.sk.role == Role::Requester && m.0 == RendezvousMessage::Wanted {
            if self.rendezvous_answered {
                return Box::pin(fut::ready(()));
            }
            self.rendezvous_answered = true;
        }
        // A receiver takes at most one `Secret` per run: each costs a seal, a durable write and a DHT
        // put, and must not replace a secret the handshake gave us unless we asked.
        let is_secret = matches!(m.0, RendezvousMessage::Secret(_));
        if self.sk.role == Role::Receiver && is_secret {
            if self.rendezvous_secret_taken {
                log::debug!(
                    "[{}] {}: rendezvous secret already taken this run: ignored",
                    self.node,
                    self.id()
                );
                return Box::pin(fut::ready(()));
            }
            self.rendezvous_secret_taken = true;
        }
        let wanted = self.rendezvous_wanted;
        let work = self.rendezvous_work(ctx);
        let role = self.sk.role;
        let fut = async move {
            match (role, m.0) {
                (Role::Receiver, RendezvousMessage::Secret(sent)) => {
                    let secret = RendezvousSecret::from_bytes(sent.0);
                    // Unasked, it may only fill a gap: one we keep (the handshake's, or one
                    // exchanged earlier) is never replaced.
                    if !wanted && work.own().await?.is_some() {
                        log::debug!(
                            "[{}] {}: unasked rendezvous secret ignored (we keep one)",
                            work.node,
                            work.id
                        );
                        return Ok(());
                    }
                    if work.keep(&secret, wanted).await? {
                        work.publish(secret);
                    }
                }
                (Role::Requester, RendezvousMessage::Wanted) => {
                    let secret = work.own_or_new().await?;
                    work.send(&secret).await?;
                }
                // Only the requester gives the secret, only the receiver asks: ignored.
                (role, other) => {
                    log::debug!(
                        "[{}] {}: rendezvous {other:?} ignored (we are the {})",
                        work.node,
                        work.id,
                        role.as_str()
                    );
                }
            }
            Ok::<_, String>(())
        };
        Box::pin(fut.into_actor(self).map(|res, act, _| {
            if let Err(e) = res {
                log::warn!("[{}] {}: rendezvous secret: {e}", act.node, act.id());
            }
        }))
    }
}

/// The receiver is about to ask for the requester's secret: the answer may replace its own.
#[derive(Message)]
#[rtype(result = "()")]
struct MarkRendezvousWanted;

impl Handler<MarkRendezvousWanted> for DiscussionSession {
    type Result = ();

    fn handle(&mut self, _: MarkRendezvousWanted, _: &mut Context<Self>) {
        self.rendezvous_wanted = true;
    }
}

impl DiscussionSession {
    /// Once per run, on a connection agreed at `version`: a discussion without a rendezvous secret
    /// gets one from the requester (see the module's comment). A peer below version 3 cannot
    /// decode the exchange and is never sent it.
    pub(super) fn check_rendezvous(&mut self, version: u16, ctx: &mut Context<Self>) {
        if version < RENDEZVOUS_VERSION || self.rendezvous_checked {
            return;
        }
        self.rendezvous_checked = true;
        let work = self.rendezvous_work(ctx);
        let role = self.sk.role;
        let fut = async move {
            if work.own().await?.is_some() {
                return Ok(());
            }
            match role {
                Role::Requester => {
                    let secret = work.own_or_new().await?;
                    work.send(&secret).await
                }
                Role::Receiver => {
                    work.session.do_send(MarkRendezvousWanted);
                    work.ask().await
                }
            }
        };
        ctx.spawn(fut.into_actor(self).map(|res: Result<(), String>, act, _| {
            if let Err(e) = res {
                log::warn!("[{}] {}: rendezvous secret: {e}", act.node, act.id());
            }
        }));
    }

    fn rendezvous_work(&self, ctx: &Context<Self>) -> Work {
        Work {
            node: self.node.clone(),
            id: self.id().to_string(),
            role: self.sk.role,
            keys: self.keys.clone(),
            store: self.store.clone(),
            dht: self.dht.clone(),
            session: ctx.address(),
        }
    }
}

/// What the exchange needs, off the actor: sealing on a crypto worker, the store on its worker.
struct Work {
    node: String,
    id: String,
    role: Role,
    keys: KeysHandle,
    store: StoreHandle,
    dht: Option<Addr<crate::dht::DhtWorker>>,
    session: Addr<DiscussionSession>,
}

impl Work {
    /// The secret this node keeps for the discussion, opened.
    async fn own(&self) -> Result<Option<RendezvousSecret>, String> {
        let id = self.id.clone();
        let Some(sealed) = self
            .store
            .run(move |s| s.rendezvous_secret(&id))
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let opened = self
            .keys
            .run(move |me| at_rest::open(me, Sealed::RendezvousSecret, &sealed))
            .await
            .map_err(|e| e.to_string())?;
        let bytes = <[u8; 32]>::try_from(opened.as_slice())
            .map_err(|_| "the stored secret is not 32 bytes".to_string())?;
        Ok(Some(RendezvousSecret::from_bytes(bytes)))
    }

    /// Ours, or a new random one kept (and published) now. If another was kept meanwhile, that one.
    async fn own_or_new(&self) -> Result<RendezvousSecret, String> {
        if let Some(secret) = self.own().await? {
            return Ok(secret);
        }
        let fresh = RendezvousSecret::random();
        if !self.keep(&fresh, false).await? {
            return self
                .own()
                .await?
                .ok_or_else(|| "the discussion is not open".to_string());
        }
        self.publish(RendezvousSecret::from_bytes(*fresh.as_bytes()));
        Ok(fresh)
    }

    /// Seal and store `secret` (`replace`: in place of any kept). Whether it was written.
    async fn keep(&self, secret: &RendezvousSecret, replace: bool) -> Result<bool, String> {
        let bytes = *secret.as_bytes();
        let sealed = self
            .keys
            .run(move |me| at_rest::seal(me, Sealed::RendezvousSecret, &bytes))
            .await
            .map_err(|e| e.to_string())?;
        let id = self.id.clone();
        self.store
            .run(move |s| match replace {
                true => s.replace_rendezvous_secret(&id, &sealed),
                false => s.set_rendezvous_secret(&id, &sealed),
            })
            .await
            .map_err(|e| e.to_string())
    }

    /// Publish our record under `secret` (in place of any tracked), when the DHT is on.
    fn publish(&self, secret: RendezvousSecret) {
        if let Some(dht) = &self.dht {
            dht.do_send(crate::dht::worker::Track {
                discussion_id: self.id.clone(),
                secret,
                role: self.role,
            });
        }
    }

    async fn send(&self, secret: &RendezvousSecret) -> Result<(), String> {
        let message = RendezvousMessage::Secret(SecretBytes(*secret.as_bytes()));
        self.queue(message).await
    }

    async fn ask(&self) -> Result<(), String> {
        self.queue(RendezvousMessage::Wanted).await
    }

    async fn queue(&self, message: RendezvousMessage) -> Result<(), String> {
        self.session
            .send(SendControl(Control::Rendezvous(message)))
            .await
            .map_err(|e| e.to_string())?
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
