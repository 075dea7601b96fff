//! Rendezvous on the BitTorrent Mainline DHT (issue 11): where to reach a discussion's peer that
//! moved, and (opt-in) where to reach a person by fingerprint. No server of our own: BEP 44 signed
//! mutable items of at most [`record::MAX_VALUE_BYTES`] bytes, through the `mainline` crate.
//!
//! - [`derive`]: the purpose-bound keys derived from a discussion's rendezvous secret (pure);
//! - [`record`]: the encrypted, authenticated rendezvous record (pure);
//! - [`identity_record`]: the opt-in record found by fingerprint, signed by the identity key (pure;
//!   signing and checking are OpenPGP work: call them on a crypto worker);
//! - [`guard`]: the one place a `mainline::Dht` is built, with the network-safety checks (never
//!   mainline's built-in public bootstrap list; loopback only when asked).
//!
//! A DHT record only says where to knock: the discussion connection's own authentication (discussion
//! keys, see `net`) is unchanged. See `docs/protocol.md` ("Rendezvous on the DHT") and
//! `docs/security.md`.

pub mod derive;
pub mod guard;
pub mod identity_record;
pub mod record;
pub mod worker;

pub use derive::{Period, RendezvousSecret, SlotKeys, PERIOD_SECS};
pub use record::{PeerRecord, RecordError};
pub use worker::{DhtStatus, DhtWorker};

use std::net::IpAddr;
use std::time::Duration;

use actix::{Actor, Addr};

use crate::at_rest;
use crate::events::{Event, EventBus};
use crate::keys::KeysHandle;
use crate::settings::Settings;
use crate::store::worker::StoreHandle;

/// Start the node's DHT worker if `[dht] enabled`: builds the client off the runtime (it binds a
/// socket and starts a thread), then tells it the main listener's port and its bind address (when
/// it is a specific one; the DHT's view of our public address is added when publishing).
pub async fn start(
    settings: &Settings,
    tcp_port: u16,
    keys: &KeysHandle,
    store: &StoreHandle,
    events: &EventBus,
) -> Result<Option<Addr<DhtWorker>>, guard::GuardError> {
    if !settings.dht.enabled {
        return Ok(None);
    }
    let config = settings.dht_config();
    let dht = tokio::task::spawn_blocking(move || guard::build(&config))
        .await
        .map_err(|e| guard::GuardError::Io(std::io::Error::other(e.to_string())))??;
    let worker = DhtWorker::new(
        dht,
        worker::WorkerConfig {
            republish_interval: Duration::from_secs(settings.dht.republish_secs),
            min_lookup_interval: Duration::from_secs(settings.dht.min_lookup_interval_secs),
        },
    )
    .start();
    let bind = settings.listener.bind;
    let addresses: Vec<IpAddr> = if bind.is_unspecified() {
        Vec::new()
    } else {
        vec![bind]
    };
    worker.do_send(worker::SetListener {
        port: tcp_port,
        addresses,
    });
    track_open_discussions(&settings.node.name, keys, store, &worker).await;
    untrack_closed_discussions(&settings.node.name, events, store.clone(), worker.clone());
    if settings.dht.publish_identity {
        publish_identity(settings, tcp_port, keys.clone(), worker.clone());
    }
    Ok(Some(worker))
}

/// The opt-in identity record: signed on a crypto worker and put at start, then every
/// `dht.republish_secs` (the DHT's view of our address may have changed meanwhile).
fn publish_identity(settings: &Settings, tcp_port: u16, keys: KeysHandle, worker: Addr<DhtWorker>) {
    let every = Duration::from_secs(settings.dht.republish_secs);
    let (bind, node) = (settings.listener.bind, settings.node.name.clone());
    actix::spawn(async move {
        while worker.connected() {
            let mut addresses = Vec::new();
            if let Ok(status) = worker.send(worker::GetDhtStatus).await {
                if let Some(public) = status.public_address {
                    addresses.push(IpAddr::V4(*public.ip()));
                }
            }
            if !bind.is_unspecified() && !addresses.contains(&bind) {
                addresses.push(bind);
            }
            if !addresses.is_empty() {
                let sealed = keys
                    .run(move |me| {
                        identity_record::seal(me, tcp_port, &addresses, record::unix_micros())
                            .map_err(|e| crate::crypto::CryptoError::Malformed(e.to_string()))
                    })
                    .await;
                match sealed {
                    Ok(item) => {
                        if let Ok(Err(e)) = worker.send(worker::PutItem(item)).await {
                            log::debug!("[{node}] dht: identity record not stored: {e}");
                        }
                    }
                    Err(e) => log::warn!("[{node}] dht: identity record not made: {e}"),
                }
            }
            tokio::time::sleep(every).await;
        }
    });
}

/// A closed discussion's record is no longer published (its secret is deleted with its key). If
/// events were missed (the bus lagged), the tracked set is reconciled with the store's open
/// discussions instead: a lost `DiscussionClosed` must not leave a record published.
fn untrack_closed_discussions(
    node: &str,
    events: &EventBus,
    store: StoreHandle,
    worker: Addr<DhtWorker>,
) {
    let mut rx = events.subscribe();
    let node = node.to_string();
    actix::spawn(async move {
        loop {
            match on_event(rx.recv().await) {
                OnEvent::Untrack(id) => worker.do_send(worker::Untrack(id)),
                OnEvent::Nothing => {}
                OnEvent::Reconcile => {
                    log::debug!("[{node}] dht: events missed: reconciling with the store");
                    match store.run(|s| s.open_rendezvous_secrets()).await {
                        Ok(rows) => worker.do_send(worker::Retain(
                            rows.into_iter().map(|(id, _, _)| id).collect(),
                        )),
                        Err(e) => log::warn!("[{node}] dht: discussions not read: {e}"),
                    }
                }
                OnEvent::Stop => break,
            }
            if !worker.connected() {
                break;
            }
        }
    });
}

/// What [`untrack_closed_discussions`] does with what the event bus gave it.
#[derive(Debug, PartialEq, Eq)]
enum OnEvent {
    Untrack(String),
    /// Events were missed (one may have been a close): keep only the store's open discussions.
    Reconcile,
    Nothing,
    Stop,
}

fn on_event(received: Result<Event, tokio::sync::broadcast::error::RecvError>) -> OnEvent {
    use tokio::sync::broadcast::error::RecvError;
    match received {
        Ok(Event::DiscussionClosed { discussion_id, .. }) => OnEvent::Untrack(discussion_id),
        Ok(_) => OnEvent::Nothing,
        Err(RecvError::Lagged(_)) => OnEvent::Reconcile,
        Err(RecvError::Closed) => OnEvent::Stop,
    }
}

/// At start: publish the records of every open discussion that has a rendezvous secret (opened
/// with it on the crypto workers). A secret that does not open is skipped with a warning.
async fn track_open_discussions(
    node: &str,
    keys: &KeysHandle,
    store: &StoreHandle,
    worker: &Addr<DhtWorker>,
) {
    let rows = match store.run(|s| s.open_rendezvous_secrets()).await {
        Ok(rows) => rows,
        Err(e) => {
            log::warn!("[{node}] dht: discussions not read: {e}");
            return;
        }
    };
    for (id, role, sealed) in rows {
        let opened = keys
            .run(move |me| at_rest::open(me, at_rest::Sealed::RendezvousSecret, &sealed))
            .await;
        match opened
            .ok()
            .and_then(|p| <[u8; 32]>::try_from(p.as_slice()).ok())
        {
            Some(bytes) => worker.do_send(worker::Track {
                discussion_id: id,
                secret: RendezvousSecret::from_bytes(bytes),
                role,
            }),
            None => log::warn!("[{node}] dht: discussion {id}: rendezvous secret does not open"),
        }
    }
}

impl From<Option<DhtStatus>> for crate::api::DhtInfo {
    fn from(s: Option<DhtStatus>) -> Self {
        match s {
            None => Self::default(),
            Some(s) => Self {
                enabled: true,
                local_address: Some(s.local_address.to_string()),
                public_address: s.public_address.map(|a| a.to_string()),
                firewalled: s.firewalled,
                tracked: s.tracked as u64,
                lookups: s.lookups,
                puts: s.puts,
                put_failures: s.put_failures,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::RecvError;

    /// Issue 11 finding 5: a lagging event bus (a `DiscussionClosed` may be among the lost events)
    /// reconciles the tracked set with the store rather than being ignored.
    #[test]
    fn missed_events_reconcile_the_published_discussions() {
        assert_eq!(on_event(Err(RecvError::Lagged(3))), OnEvent::Reconcile);
        assert_eq!(on_event(Err(RecvError::Closed)), OnEvent::Stop);
        assert_eq!(
            on_event(Ok(Event::DiscussionClosed {
                discussion_id: "d".into(),
                by_peer: true
            })),
            OnEvent::Untrack("d".into())
        );
    }
}
