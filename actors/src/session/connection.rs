//! A session's connections: dialing (requester) with fallback and backoff, serving its discussion
//! listener (receiver), attaching an authenticated connection, and losing it.

use super::*;
use handlers::PeerClosed;

/// How dialing the peer ended.
enum Dialed {
    /// Authenticated: the connection, the peer's address, its current discussion port and the
    /// agreed protocol version.
    Open(Box<Conn<TcpStream>>, std::net::IpAddr, u16, u16),
    /// The peer had closed the discussion; its `Close` was verified and confirmed.
    PeerClosed,
}

/// How the listening side of a discussion connection ended.
pub(super) enum Accepted {
    /// Authenticated at this protocol version.
    Open(u16),
    /// The peer had closed the discussion; its `Close` was verified and confirmed.
    PeerClosed,
}

/// Listening side, after the hello (agreed at `version`): authenticate, or confirm the peer's
/// `Close` if that is what it sent instead of its proof. A version below `floor` (the highest the
/// peer has authenticated at) is refused before anything is signed: the downgrade defence.
#[allow(clippy::too_many_arguments)] // each is one fact of this connection
pub(super) async fn accept(
    conn: &mut Conn<TcpStream>,
    keys: &KeysHandle,
    sk: &SessionKeys,
    nonce: crate::wire::Nonce,
    port: u16,
    version: u16,
    floor: u16,
    deadline: Duration,
) -> Result<Accepted, net::NetError> {
    if version < floor {
        return Err(net::NetError::Downgrade {
            agreed: version,
            floor,
        });
    }
    match net::authenticate_as_listener_at(conn, keys, sk, nonce, port, version, deadline).await {
        Ok(()) => Ok(Accepted::Open(version)),
        Err(net::NetError::PeerClosedDiscussion(signature)) => {
            net::confirm_close(conn, keys, sk, signature, deadline).await?;
            Ok(Accepted::PeerClosed)
        }
        Err(e) => Err(e),
    }
}

/// Reach the peer: its discussion listener (`endpoint`, when known), then, if that fails, its main
/// listener at the address it announces now (it may have restarted on another port or address).
/// `attempt` runs on each in turn; the first success wins, else the first error.
pub(crate) async fn reach_peer<T, Fut>(
    endpoint: Option<SocketAddr>,
    contacts: Option<&Addr<ContactRegistry>>,
    peer_fingerprint: String,
    attempt: impl Fn(SocketAddr) -> Fut,
) -> Result<T, net::NetError>
where
    Fut: std::future::Future<Output = Result<T, net::NetError>>,
{
    let first = match endpoint {
        Some(endpoint) => match attempt(endpoint).await {
            Ok(x) => return Ok(x),
            Err(e) => e,
        },
        None => net::NetError::NoAddress,
    };
    let main = match contacts {
        Some(c) => c
            .send(FindContact(peer_fingerprint))
            .await
            .ok()
            .and_then(Result::ok),
        None => None,
    };
    match main.and_then(|c| {
        c.address
            .parse()
            .ok()
            .map(|ip| SocketAddr::new(ip, c.tcp_port))
    }) {
        Some(main) if Some(main) != endpoint => attempt(main).await,
        _ => Err(first),
    }
}

/// One dial and authentication as the connecting side, at `versions`.
async fn dial_once(
    to: SocketAddr,
    keys: &KeysHandle,
    sk: &SessionKeys,
    versions: net::Versions,
    deadline: Duration,
    max: usize,
) -> Result<Dialed, net::NetError> {
    let mut conn = net::dial(to, deadline, max).await?;
    match net::authenticate_as_connector_at(&mut conn, keys, sk, versions, deadline).await {
        Ok((port, version)) => Ok(Dialed::Open(Box::new(conn), to.ip(), port, version)),
        Err(net::NetError::PeerClosedDiscussion(signature)) => {
            net::confirm_close(&mut conn, keys, sk, signature, deadline).await?;
            Ok(Dialed::PeerClosed)
        }
        Err(e) => Err(e),
    }
}

/// Dial at `versions`; a peer that speaks version 1 only refuses our hello: once more at 1, unless
/// the peer has authenticated at a higher version before (then the refusal is forged: the
/// downgrade defence).
async fn dial(
    to: SocketAddr,
    keys: KeysHandle,
    sk: SessionKeys,
    versions: net::Versions,
    deadline: Duration,
    max: usize,
) -> Result<Dialed, net::NetError> {
    match dial_once(to, &keys, &sk, versions, deadline, max).await {
        Err(e)
            if net::is_version_refusal(&e)
                && versions.hello > crate::wire::MIN_PROTOCOL_VERSION
                && versions.floor <= crate::wire::MIN_PROTOCOL_VERSION =>
        {
            let v1 = net::Versions {
                hello: crate::wire::MIN_PROTOCOL_VERSION,
                ..versions
            };
            dial_once(to, &keys, &sk, v1, deadline, max).await
        }
        res => res,
    }
}

/// Last resort: where the peer's DHT record says its main listener is now (the worker bounds the
/// lookups' rate: a refused lookup is `None`). Tries each address of the record in turn; `None`
/// when there is no record to try.
async fn via_dht<T, Fut>(
    dht: &Addr<crate::dht::DhtWorker>,
    discussion_id: String,
    attempt: impl Fn(SocketAddr) -> Fut,
) -> Option<Result<T, net::NetError>>
where
    Fut: std::future::Future<Output = Result<T, net::NetError>>,
{
    let record = dht
        .send(crate::dht::worker::Resolve(discussion_id))
        .await
        .ok()?
        .ok()??;
    let mut last = None;
    for ip in record.addresses {
        match attempt(SocketAddr::new(ip, record.port)).await {
            Ok(x) => return Some(Ok(x)),
            Err(e) => last = Some(Err(e)),
        }
    }
    last
}

impl DiscussionSession {
    /// Receiver with the DHT on: if still without a connection [`RECEIVER_DHT_DIAL_AFTER`] from
    /// now (a live requester dials first), look the requester up on the DHT and dial its main
    /// listener ourselves: the requester may have moved, or be unable to reach us. Repeats while
    /// disconnected; the DHT worker bounds the lookups (`dht.min_lookup_interval_secs`).
    pub(super) fn schedule_dht_dial(&mut self, ctx: &mut Context<Self>) {
        if self.sk.role != Role::Receiver
            || self.dht.is_none()
            || self.dht_dial_scheduled
            || !self.settings.dht.receiver_dials
        {
            return;
        }
        self.dht_dial_scheduled = true;
        ctx.run_later(RECEIVER_DHT_DIAL_AFTER, |act, ctx| {
            act.dht_dial_scheduled = false;
            act.dial_via_dht(ctx)
        });
    }

    fn dial_via_dht(&mut self, ctx: &mut Context<Self>) {
        if self.connecting || self.conn.is_some() || self.finished {
            return;
        }
        let Some(dht) = self.dht.clone() else { return };
        self.connecting = true;
        let (keys, sk, deadline) = (self.keys.clone(), self.sk.clone(), self.deadline());
        let max = self.settings.limits.max_frame_bytes;
        let id = self.id().to_string();
        let versions = net::Versions {
            hello: self.max_version,
            floor: self.version_floor(),
        };
        let fut = async move {
            via_dht(&dht, id, |to| {
                dial(to, keys.clone(), sk.clone(), versions, deadline, max)
            })
            .await
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.connecting = false;
            match res {
                Some(Ok(Dialed::Open(conn, _, _, version))) => {
                    if act.conn.is_none() {
                        act.attach(*conn, version, ctx)
                    }
                }
                Some(Ok(Dialed::PeerClosed)) => act.peer_closed(ctx),
                Some(Err(e)) => {
                    log::debug!("[{}] {}: dial through the DHT: {e}", act.node, act.id());
                    act.schedule_dht_dial(ctx)
                }
                None => act.schedule_dht_dial(ctx),
            }
        }));
    }

    /// Requester: dial the receiver's discussion listener and authenticate; if it cannot be
    /// reached, go through the receiver's main listener at its currently announced address.
    /// Receiver: only while closing (it must tell the peer, which may never dial again if our
    /// earlier confirmation was lost), through the requester's main listener.
    pub(super) fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.connecting || self.conn.is_some() || self.finished || !self.dials() {
            return;
        }
        let endpoint = self.peer_endpoint;
        self.connecting = true;
        let keys = self.keys.clone();
        let sk = self.sk.clone();
        let deadline = self.deadline();
        let max = self.settings.limits.max_frame_bytes;
        let contacts = self.contacts.clone();
        let peer = self.peer_fingerprint.clone();
        let (dht, id) = (self.dht.clone(), self.id().to_string());
        let versions = net::Versions {
            hello: self.max_version,
            floor: self.version_floor(),
        };
        let fut = async move {
            let attempt =
                |to: SocketAddr| dial(to, keys.clone(), sk.clone(), versions, deadline, max);
            match reach_peer(endpoint, contacts.as_ref(), peer, &attempt).await {
                Err(e) => match dht {
                    Some(dht) => via_dht(&dht, id, &attempt).await.unwrap_or(Err(e)),
                    None => Err(e),
                },
                done => done,
            }
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.connecting = false;
            match res {
                Ok(Dialed::Open(conn, ip, port, version)) => {
                    if act.sk.role == Role::Requester {
                        act.learn_endpoint(ip, port, ctx);
                    }
                    act.attach(*conn, version, ctx)
                }
                Ok(Dialed::PeerClosed) => act.peer_closed(ctx),
                Err(e) => {
                    log::debug!("[{}] {}: reconnect: {e}", act.node, act.id());
                    act.schedule_reconnect(ctx);
                }
            }
        }));
    }

    /// The receiver told us (signed) where its discussion listener is now: remember it.
    pub(super) fn learn_endpoint(
        &mut self,
        ip: std::net::IpAddr,
        port: u16,
        ctx: &mut Context<Self>,
    ) {
        if port == 0 {
            return;
        }
        let new = SocketAddr::new(ip, port);
        if self.peer_endpoint == Some(new) {
            return;
        }
        log::info!(
            "[{}] {}: peer's discussion listener is now {new}",
            self.node,
            self.id()
        );
        self.peer_endpoint = Some(new);
        let (store, id) = (self.store.clone(), self.id().to_string());
        ctx.spawn(
            async move {
                let _ = store
                    .run(move |s| s.set_peer_endpoint(&id, &ip.to_string(), port))
                    .await;
            }
            .into_actor(self),
        );
    }

    /// Whether this side dials: the requester always, the receiver only while closing.
    fn dials(&self) -> bool {
        self.sk.role == Role::Requester || self.closing
    }

    pub(super) fn schedule_reconnect(&mut self, ctx: &mut Context<Self>) {
        if self.finished || !self.dials() {
            return;
        }
        // A closing receiver gives a live requester time to dial first (it will, within
        // RECONNECT_MIN): two crossing connections would replace each other.
        let delay = match self.sk.role {
            Role::Requester => self.backoff,
            Role::Receiver => self.backoff.max(RECEIVER_DIAL_MIN),
        };
        let max = Duration::from_secs(self.settings.limits.reconnect_max_secs);
        self.backoff = (self.backoff * 2).min(max);
        ctx.run_later(delay, |act, ctx| act.connect(ctx));
    }

    /// Receiver: accept connections on the discussion listener, authenticate them off the actor.
    pub(super) fn serve(&mut self, listener: TcpListener, ctx: &mut Context<Self>) {
        let keys = self.keys.clone();
        // Not a copy of the session's keys: this loop lives as long as the session, and a copy
        // would keep the discussion key it started with (and a subkey a rotation destroyed) in
        // memory for good. Each connection reads the current ones.
        let ours = self.id().to_string();
        let current = self.listener_sk.clone();
        let deadline = self.deadline();
        let max = self.settings.limits.max_frame_bytes;
        let me = ctx.address();
        let node = self.node.clone();
        let port = self.listen_port;
        let pool = self.unauthenticated.clone();
        let first = crate::admission::first_frame_deadline(&self.settings);
        let (max_version, floor) = (self.max_version, self.peer_version.clone());
        ctx.spawn(
            async move {
                loop {
                    let (stream, from) = match listener.accept().await {
                        Ok(x) => x,
                        Err(e) => {
                            log::warn!("[{node}] discussion listener: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let mut slot = match pool.admit(from.ip(), std::time::Instant::now()) {
                        Ok(slot) => slot,
                        Err(why) => {
                            crate::log_limit::hostile(
                                log::Level::Debug,
                                &node,
                                &from.ip(),
                                format_args!("discussion connection from {from}: {why:?}"),
                            );
                            continue;
                        }
                    };
                    let (keys, me, node) = (keys.clone(), me.clone(), node.clone());
                    let (ours, current) = (ours.clone(), current.clone());
                    let floor = floor.load(std::sync::atomic::Ordering::Relaxed);
                    actix_rt::spawn(async move {
                        let evicted = slot.watch_eviction();
                        let mut conn = net::framed(stream, max);
                        let auth = async {
                            match net::recv_hello_at(&mut conn, first, max_version).await? {
                                (
                                    version,
                                    Purpose::Discussion {
                                        discussion_id,
                                        nonce,
                                    },
                                ) if discussion_id == ours => {
                                    let sk =
                                        current.lock().unwrap_or_else(|p| p.into_inner()).clone();
                                    let at = (port, version, floor);
                                    accept(&mut conn, &keys, &sk, nonce, at.0, at.1, at.2, deadline)
                                        .await
                                }
                                _ => Err(net::NetError::Unexpected("hello for another purpose")),
                            }
                        };
                        // Until it has authenticated, a newcomer may take its place.
                        let res = tokio::select! {
                            Ok(()) = evicted => Err(net::NetError::Unexpected(
                                "evicted for a newer connection",
                            )),
                            res = auth => res,
                        };
                        drop(slot);
                        match res {
                            Ok(Accepted::Open(version)) => me.do_send(Attach { conn, version }),
                            Ok(Accepted::PeerClosed) => me.do_send(PeerClosed),
                            Err(e) => crate::log_limit::hostile(
                                log::Level::Info,
                                &node,
                                &from.ip(),
                                format_args!("discussion connection from {from} refused: {e}"),
                            ),
                        }
                    });
                }
            }
            .into_actor(self),
        );
    }

    pub(super) fn attach(&mut self, conn: Conn<TcpStream>, version: u16, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        self.raise_peer_version(version, ctx);
        self.check_rendezvous(version, ctx);
        self.generation += 1;
        let generation = self.generation;
        self.backoff = RECONNECT_MIN;
        let (mut sink, stream) = conn.split();
        let (tx, mut rx) = mpsc::channel::<Frame>(self.settings.limits.session_queue);
        let node = self.node.clone();
        actix_rt::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if let Err(e) = sink.send(frame).await {
                    log::debug!("[{node}] write: {e}");
                    break;
                }
            }
            let _ = sink.close().await;
        });
        ctx.add_stream(
            stream
                .ready_chunks(INBOUND_BATCH)
                .map(move |frames| Inbound {
                    generation,
                    frames,
                    end: false,
                })
                .chain(futures::stream::once(async move {
                    Inbound {
                        generation,
                        frames: Vec::new(),
                        end: true,
                    }
                })),
        );
        self.conn = Some(Link {
            tx,
            generation,
            version,
        });
        log::info!(
            "[{}] discussion {} connected to {}",
            self.node,
            self.id(),
            self.peer_name
        );
        self.events.emit(Event::Connection {
            discussion_id: self.id().to_string(),
            connected: true,
        });
        // Every undelivered message goes again on a new connection (the receiver drops duplicates).
        self.next_to_send = 0;
        self.pump(ctx);
    }

    /// The peer authenticated at `version`: from now on no connection below it is accepted for
    /// this discussion (kept in the store, so a restart keeps the defence).
    fn raise_peer_version(&mut self, version: u16, ctx: &mut Context<Self>) {
        use std::sync::atomic::Ordering;
        if self.peer_version.fetch_max(version, Ordering::Relaxed) >= version {
            return;
        }
        log::info!(
            "[{}] {}: the peer speaks protocol version {version}",
            self.node,
            self.id()
        );
        let (store, id, node) = (self.store.clone(), self.id().to_string(), self.node.clone());
        ctx.spawn(
            async move {
                if let Err(e) = store.run(move |s| s.raise_peer_version(&id, version)).await {
                    log::error!("[{node}] recording the peer's protocol version: {e}");
                }
            }
            .into_actor(self),
        );
        // What the old floor ruled out (a rotation) may be due now.
        self.finish_rotation(ctx);
    }

    pub(super) fn disconnect(&mut self, generation: u64, why: &str, ctx: &mut Context<Self>) {
        match &self.conn {
            Some(link) if link.generation == generation => {}
            _ => return,
        }
        self.conn = None; // dropping the sender ends the writer task, which closes the socket
        log::info!(
            "[{}] discussion {} disconnected: {why}",
            self.node,
            self.id()
        );
        self.events.emit(Event::Connection {
            discussion_id: self.id().to_string(),
            connected: false,
        });
        self.schedule_reconnect(ctx);
        self.schedule_dht_dial(ctx);
    }
}
