//! The pgpchat core: everything a node does, as a library. The `pgpchat` binary (front-ends and
//! commands) and the tests build on [`node::start_node`] and [`node::NodeHandle`].
//!
//! Layers, from bytes up (each file is one layer; protocol logic is plain code, actors are thin):
//!
//! - [`codec`]: bytes ↔ values, the one place that uses bincode; length-delimited TCP frames.
//! - [`wire`]: the peer-to-peer protocol's values (announces, frames, handshake steps, chat payloads).
//! - [`crypto`]: OpenPGP over rpgp (keys, sealing, signing, policy). Blocking: call it on a worker.
//! - [`at_rest`]: what the node seals for itself on disk, apart from anything a peer can send.
//! - [`handshake`]: SPAKE2 + key confirmation + replay cache + failure limiter, without sockets.
//! - [`admission`]: connection slots and crypto time for peers that have proved nothing yet.
//! - [`net`]: the protocol layer, generic over the byte stream and over [`net::Crypto`] (no actor
//!   address): framed connections, sealed handshake frames, discussion-key authentication and the
//!   signed `Close`, the chat payload codec, both handshake drivers ([`net::requester`],
//!   [`net::responder`]); unit-tested over in-memory pipes.
//! - [`settings`], [`identity`], [`datadir_lock`], [`store`], [`events`]: configuration, the
//!   identity key file, one core per data directory, the SQLite store (with its worker thread), the
//!   event bus.
//!
//! The actors of one node (see `docs/architecture.md` for who sends what to whom):
//!
//! - [`keys::KeyManager`]: crypto workers holding the unlocked identity;
//! - [`store::StoreWorker`]: the database thread;
//! - [`discovery::Discovery`]: UDP announces; [`contacts::ContactRegistry`]: who is around;
//! - [`listener::Listener`]: the main TCP port and both sides of the handshake;
//! - [`discussions::DiscussionDirectory`] and one [`session::DiscussionSession`] per discussion;
//!   the directory also keeps closed discussions' signed `Close`s to tell peers
//!   ([`discussions::Tombstone`]);
//! - [`ipc::IpcServer`]: the front-ends' JSON-RPC socket, speaking the typed [`api`].
//!
//! [`api`] is the core's API (requests, results, events, error kinds, version, OpenRPC), shared
//! with every front-end; [`client`] is its one client (blocking and async).
//!
//! [`node`] wires them (no global registry: several nodes run in one process), [`simulate`] runs
//! many nodes for measurements, and [`bench`] measures two nodes against the raw cost of their work.
//!
//! What a front-end (the `pgpchat` binary) uses, and nothing else: [`settings`]; [`daemon`], which
//! runs a whole core (actix System, node, IPC server) on the caller's thread and runs `simulate`
//! and `bench`;
//! [`offline`], the identity without a running core (init, whoami, export-key, passphrase check);
//! and the IPC client and types.

pub mod admission;
pub mod announce;
pub mod api;
pub mod at_rest;
pub mod bench;
pub mod client;
pub mod codec;
pub mod contacts;
pub mod control;
pub mod crypto;
pub mod daemon;
pub mod datadir_lock;
pub mod dht;
pub mod discovery;
pub mod discussions;
pub mod events;
pub mod exchange;
pub mod handshake;
pub mod identity;
pub mod introduction;
pub mod introductions;
pub mod ipc;
pub mod keys;
pub mod listener;
pub mod log_limit;
pub mod net;
pub mod node;
pub mod offline;
pub mod prober;
pub mod redact;
pub mod session;
pub mod settings;
pub mod simulate;
pub mod store;
pub mod wire;
