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
