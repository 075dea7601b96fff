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

use crate::settings::Settings;

/// Start the node's DHT worker if `[dht] enabled`: builds the client off the runtime (it binds a
/// socket and starts a thread), then tells it the main listener's port and its bind address (when
/// it is a specific one; the DHT's view of our public address is added when publishing).
pub async fn start(
    settings: &Settings,
    tcp_port: u16,
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
    Ok(Some(worker))
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
