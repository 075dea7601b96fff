//! One connection of the main listener, as a task: the first frame's routing, and both sides of the
//! handshake, whose scripts are the protocol layer's drivers ([`requester::request`],
//! [`responder::respond`]); this file is what the node does around them (trust, the table of
//! requests, the guessing limits, the new discussion). Talks back to the [`Listener`] actor with
//! `Arrived`, `Gone`, `Failure`.

use super::*;

/// What a connection task needs, detached from the actor.
pub(super) struct Task {
    pub(super) node: String,
    pub(super) settings: Settings,
    pub(super) keys: KeysHandle,
    pub(super) contacts: Addr<ContactRegistry>,
    pub(super) directory: Addr<DiscussionDirectory>,
    pub(super) store: StoreHandle,
    pub(super) events: EventBus,
    pub(super) budget: DecryptBudget,
    pub(super) tcp_port: u16,
    pub(super) dht: Option<Addr<crate::dht::DhtWorker>>,
    pub(super) me: Addr<Listener>,
}

impl Task {
    fn deadline(&self) -> Duration {
        self.settings.handshake_timeout()
    }

    /// Serve one connection while it holds `slot` in the pool; a newcomer may evict it until it
    /// has sent a verified frame.
    pub(super) async fn serve(&self, stream: TcpStream, from: SocketAddr, mut slot: Slot) {
        let evicted = slot.watch_eviction();
        tokio::select! {
            Ok(()) = evicted => {
                log::debug!("[{}] unverified connection from {from} evicted", self.node);
            }
            () = self.serve_in(stream, from, &slot) => {}
        }
    }

    async fn serve_in(&self, stream: TcpStream, from: SocketAddr, slot: &Slot) {
        let mut conn = net::framed(stream, self.settings.limits.max_frame_bytes);
        let first = crate::admission::first_frame_deadline(&self.settings);
        let max_version = self.settings.listener.max_protocol_version;
        let (version, purpose) = match net::recv_hello_at(&mut conn, first, max_version).await {
            Ok(p) => p,
            Err(e) => {
                crate::log_limit::hostile(
                    log::Level::Info,
                    &self.node,
                    &from.ip(),
                    format_args!("connection from {from} dropped: {e}"),
                );
                return;
            }
        };
        match purpose {
            Purpose::Discussion {
                discussion_id,
                nonce,
            } => self.directory.do_send(RouteConnection {
                discussion_id,
                nonce,
                conn,
                from,
                version,
            }),
            Purpose::Probe { nonce } => {
                // One signature per probe, on the crypto workers; the pool bounds how many run.
                let body = crate::discovery::announce_body(
                    self.keys.name(),
                    self.keys.public().to_bytes(),
                    self.tcp_port,
                    nonce,
                    true,
                );
                if let Err(e) =
                    net::probe::answer(&mut conn, &self.keys, &body, self.deadline()).await
                {
                    log::debug!("[{}] probe from {from}: {e}", self.node);
                }
            }
            Purpose::Handshake | Purpose::Introduced => {
                let introduced = purpose == Purpose::Introduced;
                if let Err(e) = self
                    .receive_request(&mut conn, from, slot, introduced)
                    .await
                {
                    crate::log_limit::hostile(
                        log::Level::Info,
                        &self.node,
                        &from.ip(),
                        format_args!("handshake from {from} ended: {e}"),
                    );
                }
            }
        }
    }

    /// Receiver's side of the handshake ([`responder::respond`]), with this task as its host. An
    /// accepting user is answered with the outcome, whatever it is. `introduced`: the hello said
    /// [`Purpose::Introduced`] (only such a request may match an accepted introduction).
    async fn receive_request(
        &self,
        conn: &mut Conn<TcpStream>,
        from: SocketAddr,
        slot: &Slot,
        introduced: bool,
    ) -> Result<(), ListenerError> {
        let host = Host {
            task: self,
            from,
            slot,
            introduced,
            introduced_name: std::sync::Mutex::new(None),
        };
        let deadlines = responder::Deadlines {
            first_frame: crate::admission::first_frame_deadline(&self.settings),
            step: self.deadline(),
            decision: Duration::from_secs(self.settings.limits.request_timeout_secs),
        };
        match responder::respond(conn, &self.keys, &host, &self.budget, from.ip(), deadlines).await
        {
            Ok(Responded::Refused) => Ok(()),
            Ok(Responded::Opened {
                discussion_id,
                then,
            }) => {
                let _ = then.send(Ok(discussion_id));
                Ok(())
            }
            Err((e, then)) => {
                let e = ListenerError::from(e);
                match then {
                    Some(done) => {
                        // The accepting user gets the error itself, after the log.
                        crate::log_limit::hostile(
                            log::Level::Info,
                            &self.node,
                            &from.ip(),
                            format_args!("handshake from {from} ended: {e}"),
                        );
                        let _ = done.send(Err(e));
                        Ok(())
                    }
                    None => Err(e),
                }
            }
        }
    }

    fn failed(&self, fingerprint: &str, address: IpAddr, reason: FailReason) {
        self.failed_because(fingerprint, address, reason.to_string());
    }

    /// A burned attempt: the user is told, and it counts against the guessing limits.
    fn failed_because(&self, fingerprint: &str, address: IpAddr, reason: String) {
        self.events.emit(Event::HandshakeFailed {
            peer_fingerprint: fingerprint.to_string(),
            reason,
        });
        self.me.do_send(Failure {
            fingerprint: fingerprint.to_string(),
            address: Some(address),
        });
    }

    /// Connect to `endpoint`, say hello at `version`, run the requester's side at it. Returns the
    /// outcome and the version it ran at.
    async fn request_at(
        &self,
        contact: &ContactRecord,
        endpoint: SocketAddr,
        peer_cert: &crate::crypto::PublicCert,
        password: String,
        version: u16,
        purpose: Purpose,
    ) -> Result<(requester::Requested, u16), RequestError> {
        let deadline = self.deadline();
        let stream = tokio::time::timeout(deadline, TcpStream::connect(endpoint))
            .await
            .map_err(|_| net::NetError::Connect {
                to: endpoint,
                source: std::io::Error::from(std::io::ErrorKind::TimedOut),
            })?
            .map_err(|source| net::NetError::Connect {
                to: endpoint,
                source,
            })?;
        let mut conn = net::framed(stream, self.settings.limits.max_frame_bytes);
        let hello = Frame::Hello { version, purpose };
        net::send(&mut conn, hello, deadline).await?;
        let deadlines = requester::Deadlines {
            step: deadline,
            decision: Duration::from_secs(self.settings.limits.request_timeout_secs),
        };
        let name = &contact.name;
        let requested = requester::request_at(
            &mut conn, &self.keys, peer_cert, name, password, version, deadlines,
        )
        .await?;
        Ok((requested, version))
    }

    /// Requester's side of the handshake ([`requester::request`]): connect, say hello, run it,
    /// keep the discussion. `introduced`: an introduction's dial, said with
    /// [`Purpose::Introduced`] (version 2 on: never retried at version 1, which has none).
    pub(super) async fn request(
        &self,
        contact: ContactRecord,
        password: String,
        introduced: bool,
    ) -> Result<String, ListenerError> {
        let purpose = if introduced {
            Purpose::Introduced
        } else {
            Purpose::Handshake
        };
        let peer_cert = self
            .keys
            .parse_cert(contact.cert.clone())
            .await
            .map_err(ListenerError::ContactKey)?;
        let ip: IpAddr = contact
            .address
            .parse()
            .map_err(|_| ListenerError::BadAddress(contact.address.clone()))?;
        let endpoint = SocketAddr::new(ip, contact.tcp_port);
        let max_version = self.settings.listener.max_protocol_version;
        let attempt = self
            .request_at(
                &contact,
                endpoint,
                &peer_cert,
                password.clone(),
                max_version,
                purpose,
            )
            .await;
        // A version-1 peer refuses our hello: once more at version 1 (a new discussion has no
        // floor yet; its sessions raise it once the peer authenticates at 2).
        let attempt = match attempt {
            Err(RequestError::Net(e))
                if net::is_version_refusal(&e)
                    && max_version > MIN_PROTOCOL_VERSION
                    && !introduced =>
            {
                self.request_at(
                    &contact,
                    endpoint,
                    &peer_cert,
                    password,
                    MIN_PROTOCOL_VERSION,
                    Purpose::Handshake,
                )
                .await
            }
            other => other,
        };
        let version = match &attempt {
            Ok((_, version)) => *version,
            Err(_) => MIN_PROTOCOL_VERSION,
        };
        let requested = match attempt.map(|(r, _)| r) {
            Ok(r) => r,
            Err(e) => {
                if e.burns_an_attempt() {
                    let reason = match &e {
                        RequestError::Handshake(h) => h.reason(),
                        RequestError::Failed(r) | RequestError::FailedAfterConfirm(r) => *r,
                        _ => FailReason::Protocol,
                    };
                    self.failed(&contact.fingerprint, ip, reason);
                }
                return Err(match e {
                    RequestError::Net(net::NetError::Connect { source, .. }) => {
                        ListenerError::Unreachable(contact.name.clone(), source)
                    }
                    e => ListenerError::from_request(e, &contact.name),
                });
            }
        };
        let agreed = requested.agreed;
        let record = DiscussionRecord {
            id: agreed.discussion_id.clone(),
            peer_fingerprint: contact.fingerprint.clone(),
            peer_name: contact.name.clone(),
            role: Role::Requester,
            state: DiscussionState::Open,
            created: now_secs(),
            own_key_sealed: requested.own_key_sealed,
            peer_key: agreed.peer_discussion_key.to_bytes(),
            peer_address: ip.to_string(),
            peer_port: requested.port,
            listen_port: 0,
            // The main listener does not say which version it agreed: a peer that accepted our
            // hello at 3 may speak only 2 (it answers min(ours, its)), though every peer that
            // accepts a hello at 2 or more speaks 2. The first discussion connection, whose proofs
            // are signed at the agreed version, raises it.
            peer_version: version.min(crate::wire::CONTROL_VERSION),
        };
        self.create_discussion(record, requested.own_key, agreed.peer_discussion_key)
            .await?;
        self.keep_rendezvous(&agreed.discussion_id, Role::Requester, agreed.rendezvous)
            .await;
        log::info!(
            "[{}] discussion {} with {} opened",
            self.node,
            agreed.discussion_id,
            contact.name
        );
        self.events.emit(Event::DiscussionOpened {
            discussion_id: agreed.discussion_id.clone(),
            peer_name: contact.name.clone(),
            peer_fingerprint: contact.fingerprint.clone(),
        });
        Ok(agreed.discussion_id)
    }

    /// Keep a new discussion's rendezvous secret (sealed, on a crypto worker, then in the store) and
    /// have the DHT publish its record. A failure costs only the DHT rendezvous: logged.
    async fn keep_rendezvous(&self, id: &str, role: Role, secret: crate::dht::RendezvousSecret) {
        let bytes = *secret.as_bytes();
        let sealed = self
            .keys
            .run(move |me| {
                crate::at_rest::seal(me, crate::at_rest::Sealed::RendezvousSecret, &bytes)
            })
            .await;
        let stored = match sealed {
            Ok(sealed) => {
                let id = id.to_string();
                self.store
                    .run(move |s| s.set_rendezvous_secret(&id, &sealed))
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = stored {
            log::warn!(
                "[{}] discussion {id}: rendezvous secret not kept: {e}",
                self.node
            );
            return;
        }
        if let Some(dht) = &self.dht {
            dht.do_send(crate::dht::worker::Track {
                discussion_id: id.to_string(),
                secret,
                role,
            });
        }
    }

    /// Store the new discussion and start its session; the port of its listener (receiver) or 0.
    async fn create_discussion(
        &self,
        record: DiscussionRecord,
        own_key: SecretCert,
        peer_key: PublicCert,
    ) -> Result<u16, ListenerError> {
        Ok(self
            .directory
            .send(CreateDiscussion {
                record,
                own_key,
                peer_key,
            })
            .await
            .map_err(|_| ListenerError::DirectoryGone)??)
    }
}

/// The listener's side of a received handshake: its table of requests, the guessing limits, the
/// contacts and store (trust), the directory (the new discussion), the event bus.
struct Host<'a> {
    task: &'a Task,
    from: SocketAddr,
    slot: &'a Slot,
    /// The hello said [`Purpose::Introduced`].
    introduced: bool,
    /// The name of the accepted introduction this request matched: the new discussion's name.
    introduced_name: std::sync::Mutex<Option<String>>,
}

impl responder::ResponderHost for Host<'_> {
    type Then = oneshot::Sender<Result<String, ListenerError>>;

    fn verified(&self) {
        self.slot.verified();
    }

    async fn arrived(
        &self,
        request: &RequestBody,
    ) -> Result<(u64, oneshot::Receiver<Decision>), FailReason> {
        let task = self.task;
        // A blocked key's requests are turned away without asking the user (it is told "busy");
        // the listener records them among the refusals, reason "blocked".
        let blocked = task
            .contacts
            .send(IsBlocked(request.from.clone()))
            .await
            .unwrap_or(false);
        let fingerprint = request.from.clone();
        let trusted = task
            .store
            .run(move |s| s.is_trusted_peer(&fingerprint))
            .await
            .unwrap_or(false);
        let key_changed = task
            .contacts
            .send(NameHasOtherKey {
                name: request.name.clone(),
                fingerprint: request.from.clone(),
            })
            .await
            .unwrap_or(false);
        // An introduction our user accepted for this requester, within its window: only for a
        // request that says it is one (an ordinary request of the same person goes to the user).
        let introduction = if self.introduced {
            let (fingerprint, now) = (request.from.clone(), now_secs());
            match task
                .store
                .run(move |s| s.introduction_for_request(&fingerprint, now))
                .await
            {
                Ok(Some((i, sealed))) => crate::introductions::unseal_secret(&task.keys, sealed)
                    .await
                    .ok()
                    .map(|secret| (i, secret)),
                _ => None,
            }
        } else {
            None
        };
        if self.introduced && introduction.is_none() {
            // It claims an introduction our user did not accept (or that ended): nobody to ask.
            log::debug!(
                "[{}] introduced request from {} matches no introduction",
                task.node,
                request.from
            );
            return Err(FailReason::Busy);
        }
        let introduction = match introduction {
            Some((i, secret)) => {
                let name = crate::introductions::discussion_name(&task.contacts, &i).await;
                *self
                    .introduced_name
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(name);
                Some((i.local_id, secret))
            }
            None => None,
        };
        let info = RequestInfo {
            id: 0,
            name: net::sanitize(&request.name),
            fingerprint: request.from.clone(),
            address: self.from.ip().to_string(),
            received: now_secs(),
            key_changed,
        };
        task.me
            .send(Arrived {
                info,
                address: self.from.ip(),
                nonce: request.nonce,
                trusted,
                introduction,
                blocked,
            })
            .await
            // The listener is stopping: the peer is told we are busy.
            .unwrap_or(Err(FailReason::Busy))
    }

    fn gone(&self, id: u64, reason: &str) {
        self.task.me.do_send(Gone {
            id,
            reason: reason.into(),
        });
    }

    fn failed(&self, fingerprint: &str, reason: String) {
        self.task
            .failed_because(fingerprint, self.from.ip(), reason);
    }

    async fn create_discussion(
        &self,
        request: &RequestBody,
        agreed: Agreed,
        own_key: SecretCert,
        own_key_sealed: Vec<u8>,
    ) -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
        let task = self.task;
        // Opened through an introduction: the name our user accepted, not the requester's choice.
        let peer_name = self
            .introduced_name
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| net::sanitize(&request.name));
        let record = DiscussionRecord {
            id: agreed.discussion_id.clone(),
            peer_fingerprint: request.from.clone(),
            peer_name: peer_name.clone(),
            role: Role::Receiver,
            state: DiscussionState::Open,
            created: now_secs(),
            own_key_sealed,
            peer_key: agreed.peer_discussion_key.to_bytes(),
            peer_address: self.from.ip().to_string(),
            peer_port: 0,
            listen_port: 0,
            peer_version: request
                .version
                .min(task.settings.listener.max_protocol_version),
        };
        let port = task
            .create_discussion(record, own_key, agreed.peer_discussion_key)
            .await?;
        task.keep_rendezvous(&agreed.discussion_id, Role::Receiver, agreed.rendezvous)
            .await;
        log::info!(
            "[{}] discussion {} opened by {}",
            task.node,
            agreed.discussion_id,
            request.name
        );
        task.events.emit(Event::DiscussionOpened {
            discussion_id: agreed.discussion_id.clone(),
            peer_name,
            peer_fingerprint: request.from.clone(),
        });
        Ok(port)
    }
}
