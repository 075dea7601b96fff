//! Telling a peer about a discussion we closed without it (`close` with `force`).
//!
//! The session signed a `Close` with the discussion key, destroyed the key and stopped; the
//! directory keeps the signed `Close` (also in the store, table `close_notices`) as a
//! [`Tombstone`] until the peer confirms with its own `Close`:
//! - requester side: we dial the peer (its discussion listener, then its main listener) with
//!   backoff, as the session did, and hand it the `Close` where our proof would go;
//! - receiver side: our discussion listener is gone, so the peer's reconnection comes through the
//!   main listener ([`super::RouteConnection`]) and gets the `Close` where our proof would go.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::net::TcpStream;

use super::DiscussionDirectory;
use crate::contacts::ContactRegistry;
use crate::keys::KeysHandle;
use crate::net::Crypto as _;
use crate::net::{self, CloseNotice, Conn};
use crate::session::{reach_peer, RECONNECT_MIN};
use crate::store::{DiscussionRecord, StoreHandle};
use crate::wire::Role;

/// Connections from one address being told that a discussion is closed (or found unknown), at
/// once: the same bound as connections routed to a session. All addresses together:
/// [`crate::session::MAX_UNAUTHENTICATED`].
pub const TOMBSTONE_CONNECTIONS_PER_ADDRESS: usize =
    crate::session::MAX_UNAUTHENTICATED_PER_ADDRESS;

pub use crate::session::Tombstone;

impl Tombstone {
    pub(super) fn from_record(
        record: &DiscussionRecord,
        peer: crate::crypto::PublicCert,
        proof: Vec<u8>,
    ) -> Self {
        Self {
            notice: Arc::new(CloseNotice {
                discussion_id: record.id.clone(),
                peer,
                proof,
            }),
            role: record.role(),
            peer_fingerprint: record.peer_fingerprint.clone(),
            endpoint: super::peer_endpoint(record),
        }
    }
}

/// The peer confirmed: forget the tombstone (store and memory).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct NoticeDelivered(pub String);

impl Handler<NoticeDelivered> for DiscussionDirectory {
    type Result = ();
    fn handle(&mut self, m: NoticeDelivered, ctx: &mut Context<Self>) {
        if self.tombstones.remove(&m.0).is_none() {
            return;
        }
        log::info!(
            "[{}] the peer of discussion {} knows it is closed",
            self.node,
            m.0
        );
        let store = self.store.clone();
        let node = self.node.clone();
        ctx.spawn(
            async move {
                let id = m.0;
                if let Err(e) = store.run(move |s| s.close_notice_delivered(&id)).await {
                    log::error!("[{node}] forgetting a close notice: {e}");
                }
            }
            .into_actor(self),
        );
    }
}

impl DiscussionDirectory {
    /// Keep a tombstone; a requester's starts dialing the peer.
    pub(super) fn keep_tombstone(&mut self, t: Tombstone, ctx: &mut Context<Self>) {
        let id = t.notice.discussion_id.clone();
        if t.role == Role::Requester {
            let dial = tell_by_dialing(
                self.node.clone(),
                t.clone(),
                self.keys.clone(),
                self.contacts.clone(),
                self.settings.handshake_timeout(),
                self.settings.limits.max_frame_bytes,
                Duration::from_secs(self.settings.limits.reconnect_max_secs),
            );
            let id = id.clone();
            // Runs until the peer confirms or the directory stops.
            ctx.spawn(
                dial.into_actor(self)
                    .map(move |(), _, ctx| ctx.notify(NoticeDelivered(id))),
            );
        }
        self.tombstones.insert(id, t);
    }

    /// A connection for a discussion without a session came to the main listener: if the
    /// discussion is closed and we kept our `Close` (a tombstone, or a close whose confirmation the
    /// peer may have lost), give it that `Close`; otherwise drop it.
    pub(super) fn tell_incoming(
        &mut self,
        id: String,
        mut conn: Conn<TcpStream>,
        from: SocketAddr,
        ctx: &mut Context<Self>,
    ) {
        let ip = from.ip();
        let held = self.tombstone_conns.get(&ip).copied().unwrap_or(0);
        let permit = if held >= TOMBSTONE_CONNECTIONS_PER_ADDRESS {
            None
        } else {
            self.tombstone_permits.clone().try_acquire_owned().ok()
        };
        let Some(permit) = permit else {
            // Keyed by address: anyone can send these hellos, from many connections.
            crate::log_limit::hostile(
                log::Level::Info,
                &self.node,
                &ip,
                format_args!("connection from {from} for a closed discussion dropped: too many"),
            );
            return;
        };
        *self.tombstone_conns.entry(ip).or_default() += 1;
        let known = self.tombstones.get(&id).map(|t| t.notice.clone());
        let (keys, store, deadline) = (
            self.keys.clone(),
            self.store.clone(),
            self.settings.handshake_timeout(),
        );
        let node = self.node.clone();
        let node_name = node.clone();
        let asked = id.clone();
        ctx.spawn(
            async move {
                let _permit = permit;
                let notice = match known {
                    Some(n) => n,
                    None => closed_notice(&node_name, &store, &keys, asked)
                        .await
                        .ok_or(net::NetError::Unexpected("unknown discussion"))?,
                };
                net::tell_closed_as_listener(&mut conn, &keys, &notice, deadline).await
            }
            .into_actor(self)
            .map(move |res, act, ctx| {
                if let Some(n) = act.tombstone_conns.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        act.tombstone_conns.remove(&ip);
                    }
                }
                match res {
                    Ok(()) => ctx.notify(NoticeDelivered(id)),
                    // The id has the checked form of an id (see `net::recv_hello`): short.
                    Err(e) => crate::log_limit::hostile(
                        log::Level::Info,
                        &node,
                        &ip,
                        format_args!(
                            "connection from {from} for closed or unknown discussion {id}: {e}"
                        ),
                    ),
                }
            }),
        );
    }
}

/// The `Close` we kept for a closed discussion, as a notice (`None`: unknown, or nothing kept).
async fn closed_notice(
    node: &str,
    store: &StoreHandle,
    keys: &KeysHandle,
    id: String,
) -> Option<Arc<CloseNotice>> {
    let (record, proof) = store
        .run(move |s| match s.close_proof(&id)? {
            Some(proof) => Ok(Some((s.discussion(&id)?, proof))),
            None => Ok(None),
        })
        .await
        .map_err(|e| log::error!("[{node}] looking up a closed discussion: {e}"))
        .ok()??;
    let peer = keys
        .parse_cert(record.peer_key.clone())
        .await
        .map_err(|e| log::error!("[{node}] discussion {}: bad peer key: {e}", record.id))
        .ok()?;
    Some(Tombstone::from_record(&record, peer, proof).notice)
}

/// Requester side: dial the peer with backoff, as the session did, until it has confirmed.
async fn tell_by_dialing(
    node: String,
    t: Tombstone,
    keys: KeysHandle,
    contacts: Addr<ContactRegistry>,
    deadline: Duration,
    max_frame: usize,
    max_backoff: Duration,
) {
    let mut backoff = RECONNECT_MIN;
    loop {
        let told = reach_peer(
            t.endpoint,
            Some(&contacts),
            t.peer_fingerprint.clone(),
            |to| {
                let (keys, notice) = (keys.clone(), t.notice.clone());
                async move {
                    let mut conn = net::dial(to, deadline, max_frame).await?;
                    match net::tell_closed_as_connector(&mut conn, &keys, &notice, deadline).await {
                        // A version-1 peer refused our hello: once more at version 1.
                        Err(e) if net::is_version_refusal(&e) => {
                            let mut conn = net::dial(to, deadline, max_frame).await?;
                            let v1 = crate::wire::MIN_PROTOCOL_VERSION;
                            net::tell_closed_as_connector_at(
                                &mut conn, &keys, &notice, v1, deadline,
                            )
                            .await
                        }
                        res => res,
                    }
                }
            },
        )
        .await;
        match told {
            Ok(()) => return,
            Err(e) => log::debug!(
                "[{node}] telling the peer that {} is closed: {e}",
                t.notice.discussion_id
            ),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max_backoff);
    }
}
