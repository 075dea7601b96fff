//! One connection of the main listener, as a task: the first frame's routing, and both sides of the
//! handshake (receiver: check, wait for the user, SPAKE2 and confirmation, `Ready`; requester: the
//! mirror image). Talks back to the [`Listener`] actor with `Arrived`, `Gone`, `Failure`.

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
        let purpose = match net::recv_hello(&mut conn, first).await {
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
            }),
            Purpose::Handshake => {
                if let Err(e) = self.receive_request(&mut conn, from, slot).await {
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

    /// Receiver's side of the handshake.
    async fn receive_request(
        &self,
        conn: &mut Conn<TcpStream>,
        from: SocketAddr,
        slot: &Slot,
    ) -> Result<(), ListenerError> {
        let deadline = self.deadline();
        let decrypted = match self.recv_unauthenticated(conn, from).await {
            Ok(d) => d,
            Err(e @ NetError::SealedFrameRefused) => {
                net::refuse_sealed(conn, deadline).await;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        let me = self.keys.fingerprint().to_string();
        let checked = self
            .keys
            .run(move |_| Ok(check_request(&decrypted, &me)))
            .await
            .map_err(|e| ListenerError::Internal(e.to_string()))?;
        let (request, peer_cert) = match checked {
            Ok(x) => x,
            Err(e) => {
                // One fixed text whatever failed (the request is not answered with anything
                // derived from its plaintext), and unsealed: we cannot seal to a certificate we
                // could not check.
                net::refuse_sealed(conn, deadline).await;
                return Err(e.into());
            }
        };
        slot.verified();
        let fingerprint = request.from.clone();
        let trusted = self
            .store
            .run(move |s| s.is_trusted_peer(&fingerprint))
            .await
            .unwrap_or(false);
        let key_changed = self
            .contacts
            .send(NameHasOtherKey {
                name: request.name.clone(),
                fingerprint: request.from.clone(),
            })
            .await
            .unwrap_or(false);
        let info = RequestInfo {
            id: 0,
            name: net::sanitize(&request.name),
            fingerprint: request.from.clone(),
            address: from.ip().to_string(),
            received: now_secs(),
            key_changed,
        };
        if let Err(e) = check_fresh(&request, now_secs()) {
            let step = Handshake::Failed { reason: e.reason() };
            let _ = net::send_sealed(conn, &self.keys, &peer_cert, &step, deadline).await;
            return Err(e.into());
        }
        let arrived = self
            .me
            .send(Arrived {
                info,
                nonce: request.nonce,
                trusted,
            })
            .await
            .map_err(|e| ListenerError::Internal(e.to_string()))?;
        let (id, decision) = match arrived {
            Ok(x) => x,
            Err(reason) => {
                let step = Handshake::Failed { reason };
                let _ = net::send_sealed(conn, &self.keys, &peer_cert, &step, deadline).await;
                return Err(ListenerError::Failed(reason));
            }
        };
        // Wait for the user, or for the requester to give up (any frame or EOF ends the wait).
        let wait = Duration::from_secs(self.settings.limits.request_timeout_secs);
        let decision = tokio::select! {
            d = decision => d.ok(),
            _ = conn.next() => {
                self.me.do_send(Gone { id, reason: "withdrawn by the requester".into() });
                return Err(ListenerError::Net(NetError::Closed));
            }
            _ = tokio::time::sleep(wait) => None,
        };
        let Some(decision) = decision else {
            self.me.do_send(Gone {
                id,
                reason: "no decision in time".into(),
            });
            let step = Handshake::Failed {
                reason: FailReason::Timeout,
            };
            let _ = net::send_sealed(conn, &self.keys, &peer_cert, &step, deadline).await;
            return Err(ListenerError::Failed(FailReason::Timeout));
        };
        let (password, done) = match decision {
            Decision::Refuse => {
                let step = Handshake::Refused {
                    nonce: request.nonce,
                    reason: "the user declined".into(),
                };
                net::send_sealed(conn, &self.keys, &peer_cert, &step, deadline).await?;
                return Ok(());
            }
            Decision::Accept { password, done } => (password, done),
        };
        let result = self
            .finish_as_receiver(conn, from, &request, &peer_cert, password)
            .await;
        let reply = result
            .as_ref()
            .map(Clone::clone)
            .map_err(ToString::to_string);
        let _ = done.send(reply);
        result.map(|_| ())
    }

    async fn finish_as_receiver(
        &self,
        conn: &mut Conn<TcpStream>,
        from: SocketAddr,
        request: &crate::wire::RequestBody,
        peer_cert: &PublicCert,
        password: String,
    ) -> Result<String, ListenerError> {
        let deadline = self.deadline();
        let (dkey, sealed) = self
            .keys
            .new_discussion_key(format!("pgpchat discussion with {}", request.name))
            .await
            .map_err(|e| ListenerError::Internal(e.to_string()))?;
        let me = self.keys.fingerprint().to_string();
        let (req, dpub) = (request.clone(), dkey.public().clone());
        let (responder, accept) = self
            .keys
            .run(move |_| Ok(Responder::accept(&req, &me, &dpub, password.as_bytes())))
            .await
            .map_err(|e| ListenerError::Internal(e.to_string()))??;
        net::send_sealed(
            conn,
            &self.keys,
            peer_cert,
            &Handshake::Accept(accept),
            deadline,
        )
        .await?;
        // From here the requester can test its guess of the secret against our confirmation: any
        // end but a valid `Confirm` is a failed attempt (else it could guess, then hang up).
        let answer = net::recv_sealed_from(conn, &self.keys, peer_cert, deadline).await;
        let agreed = match answer {
            Ok(Handshake::Confirm { confirm }) => match responder.on_confirm(&confirm) {
                Ok(a) => a,
                Err(e) => {
                    let step = Handshake::Failed { reason: e.reason() };
                    let _ = net::send_sealed(conn, &self.keys, peer_cert, &step, deadline).await;
                    self.failed(&request.from, from.ip(), e.reason());
                    return Err(e.into());
                }
            },
            Ok(Handshake::Failed { reason }) => {
                self.failed(&request.from, from.ip(), reason);
                return Err(ListenerError::Failed(reason));
            }
            other => {
                let why = match other {
                    Err(NetError::Closed) => "it hung up".to_string(),
                    Err(NetError::Timeout) => "it timed out".to_string(),
                    Err(e) => e.to_string(),
                    Ok(_) => "it sent another handshake step".to_string(),
                };
                let step = Handshake::Failed {
                    reason: FailReason::Protocol,
                };
                let _ = net::send_sealed(conn, &self.keys, peer_cert, &step, deadline).await;
                let e = ListenerError::NotConfirmed {
                    name: net::sanitize(&request.name),
                    why,
                };
                self.failed_because(&request.from, from.ip(), e.to_string());
                return Err(e);
            }
        };
        let record = DiscussionRecord {
            id: agreed.discussion_id.clone(),
            peer_fingerprint: request.from.clone(),
            peer_name: net::sanitize(&request.name),
            role: Role::Receiver,
            state: DiscussionState::Open,
            created: now_secs(),
            own_key_sealed: sealed,
            peer_key: agreed.peer_discussion_key.to_bytes(),
            peer_address: from.ip().to_string(),
            peer_port: 0,
            listen_port: 0,
        };
        let port = self
            .create_discussion(record, dkey, agreed.peer_discussion_key)
            .await?;
        let ready = Handshake::Ready {
            discussion_id: agreed.discussion_id.clone(),
            port,
        };
        net::send_sealed(conn, &self.keys, peer_cert, &ready, deadline).await?;
        log::info!(
            "[{}] discussion {} opened by {}",
            self.node,
            agreed.discussion_id,
            request.name
        );
        self.events.emit(Event::DiscussionOpened {
            discussion_id: agreed.discussion_id.clone(),
            peer_name: net::sanitize(&request.name),
            peer_fingerprint: request.from.clone(),
        });
        Ok(agreed.discussion_id)
    }

    /// Store the new discussion and start its session; the port of its listener (receiver) or 0.
    async fn create_discussion(
        &self,
        record: DiscussionRecord,
        own_key: crate::crypto::SecretCert,
        peer_key: PublicCert,
    ) -> Result<u16, ListenerError> {
        self.directory
            .send(CreateDiscussion {
                record,
                own_key,
                peer_key,
            })
            .await
            .map_err(|e| ListenerError::Internal(e.to_string()))?
            .map_err(|e| ListenerError::Internal(e.to_string()))
    }

    /// The first sealed frame of a connection, decrypted within the crypto budget of
    /// unauthenticated peers: a few decryptions per address, one at a time in all.
    async fn recv_unauthenticated(
        &self,
        conn: &mut Conn<TcpStream>,
        from: SocketAddr,
    ) -> Result<crate::crypto::Decrypted, NetError> {
        let first = crate::admission::first_frame_deadline(&self.settings);
        let bytes = match net::recv(conn, first).await? {
            Frame::Sealed(bytes) => bytes,
            other => return Err(NetError::Unexpected(net::frame_name(&other).into())),
        };
        if !self.budget.spend(from.ip(), Instant::now()) {
            return Err(NetError::Unexpected(
                "sealed frame over this address's decryption budget".into(),
            ));
        }
        let _running = self.budget.run_permit().await;
        self.keys
            .unseal(bytes)
            .await
            .map_err(|_| NetError::SealedFrameRefused)
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

    /// Requester's side of the handshake.
    pub(super) async fn request(
        &self,
        contact: ContactRecord,
        password: String,
    ) -> Result<String, ListenerError> {
        let deadline = self.deadline();
        let peer_cert = self
            .keys
            .parse_cert(contact.cert.clone())
            .await
            .map_err(|e| ListenerError::Internal(format!("contact's key: {e}")))?;
        let ip: IpAddr = contact
            .address
            .parse()
            .map_err(|_| ListenerError::Internal(format!("bad address {}", contact.address)))?;
        let endpoint = SocketAddr::new(ip, contact.tcp_port);
        let stream = tokio::time::timeout(deadline, TcpStream::connect(endpoint))
            .await
            .map_err(|_| ListenerError::Unreachable(contact.name.clone(), "timed out".into()))?
            .map_err(|e| ListenerError::Unreachable(contact.name.clone(), e.to_string()))?;
        let mut conn = net::framed(stream, self.settings.limits.max_frame_bytes);
        net::send(
            &mut conn,
            Frame::Hello {
                version: PROTOCOL_VERSION,
                purpose: Purpose::Handshake,
            },
            deadline,
        )
        .await?;
        let (dkey, sealed) = self
            .keys
            .new_discussion_key(format!("pgpchat discussion with {}", contact.name))
            .await
            .map_err(|e| ListenerError::Internal(e.to_string()))?;
        let (name, peer_fp, dpub) = (
            self.keys.name().to_string(),
            contact.fingerprint.clone(),
            dkey.public().clone(),
        );
        let (requester, request) = self
            .keys
            .run(move |id| {
                Ok(Requester::start(
                    id,
                    &name,
                    &peer_fp,
                    &dpub,
                    password.as_bytes(),
                    now_secs(),
                ))
            })
            .await
            .map_err(|e| ListenerError::Internal(e.to_string()))?;
        let nonce = request.nonce;
        net::send_sealed(
            &mut conn,
            &self.keys,
            &peer_cert,
            &Handshake::Request(request),
            deadline,
        )
        .await?;
        // The peer's user decides: wait as long as a request may wait, plus the handshake deadline.
        let wait = Duration::from_secs(self.settings.limits.request_timeout_secs) + deadline;
        let accept = match net::recv_sealed_from(&mut conn, &self.keys, &peer_cert, wait).await? {
            Handshake::Accept(a) => a,
            Handshake::Refused { nonce: n, reason } if n == nonce => {
                return Err(ListenerError::Refused {
                    name: contact.name.clone(),
                    reason: net::sanitize(&reason),
                })
            }
            Handshake::Failed { reason } => {
                if reason == FailReason::WrongSecretOrIntercepted {
                    self.failed(&contact.fingerprint, ip, reason);
                }
                return Err(ListenerError::Failed(reason));
            }
            _ => return Err(ListenerError::Failed(FailReason::Protocol)),
        };
        let outcome = self
            .keys
            .run(move |_| Ok(requester.on_accept(&accept)))
            .await;
        let (confirm, agreed) = match outcome.map_err(|e| ListenerError::Internal(e.to_string()))? {
            Ok(x) => x,
            Err(e) => {
                let step = Handshake::Failed { reason: e.reason() };
                let _ = net::send_sealed(&mut conn, &self.keys, &peer_cert, &step, deadline).await;
                self.failed(&contact.fingerprint, ip, e.reason());
                return Err(e.into());
            }
        };
        net::send_sealed(
            &mut conn,
            &self.keys,
            &peer_cert,
            &Handshake::Confirm { confirm },
            deadline,
        )
        .await?;
        let port = match net::recv_sealed_from(&mut conn, &self.keys, &peer_cert, deadline).await? {
            Handshake::Ready {
                discussion_id,
                port,
            } if discussion_id == agreed.discussion_id => port,
            Handshake::Failed { reason } => {
                self.failed(&contact.fingerprint, ip, reason);
                return Err(ListenerError::Failed(reason));
            }
            _ => return Err(ListenerError::Failed(FailReason::Protocol)),
        };
        let record = DiscussionRecord {
            id: agreed.discussion_id.clone(),
            peer_fingerprint: contact.fingerprint.clone(),
            peer_name: contact.name.clone(),
            role: Role::Requester,
            state: DiscussionState::Open,
            created: now_secs(),
            own_key_sealed: sealed,
            peer_key: agreed.peer_discussion_key.to_bytes(),
            peer_address: ip.to_string(),
            peer_port: port,
            listen_port: 0,
        };
        self.create_discussion(record, dkey, agreed.peer_discussion_key)
            .await?;
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
}
