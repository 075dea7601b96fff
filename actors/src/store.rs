//! The node's durable memory: contacts, discussions (with their keys), messages and the outbox, in
//! one SQLite database (WAL, `synchronous = FULL`: a transaction that returned is on disk, so a
//! message reported `stored` survives SIGKILL and power loss).
//!
//! Message text is encrypted at rest: AES-256-GCM under the node's storage key (itself sealed for the
//! node only, see [`crate::at_rest`], so it is as safe as the passphrase), a random nonce per row, and
//! the row's discussion, direction and sequence number as associated data, so rows cannot be swapped
//! or moved.
//!
//! Each discussion's sealed secret key lives in its own table, `discussion_keys`, written once when
//! the discussion is created and deleted when it is closed: never in the `discussions` row, which is
//! rewritten on every message (each rewrite would leave a page image of it in the WAL). A destruction
//! deletes the row (`secure_delete` zeroes its bytes) and then checkpoints the WAL with `TRUNCATE`, so
//! no copy is left in `store.db`, `store.db-wal` or `store.db-shm`; one cut short by a crash is
//! finished at the next start ([`Store::finish_destructions`]). Stores from before issue 8 (the key in
//! a `discussions` column) are migrated when opened ([`Store::open`]).
//!
//! [`Store`] is plain blocking code, unit-tested on its own. Actors reach it through
//! [`StoreWorker`], a sync actor on its own thread, so no SQLite call ever runs on an event loop.

use std::path::Path;

use actix::prelude::*;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no discussion '{0}'")]
    NoDiscussion(String),
    #[error("discussion '{0}' is closed")]
    Closed(String),
    #[error("store worker unavailable")]
    Unavailable,
    #[error("message text cannot be decrypted (wrong storage key, or the row was tampered with)")]
    Undecryptable,
    #[error("the store was opened without its storage key")]
    Locked,
}

/// Length of the storage key.
pub const STORAGE_KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;

/// A contact seen on the network (or in a handshake).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactRecord {
    pub fingerprint: String,
    pub name: String,
    #[serde(skip)]
    pub cert: Vec<u8>,
    pub address: String,
    pub tcp_port: u16,
    pub first_seen: u64,
    pub last_seen: u64,
    /// Time inside the newest announce accepted (older announces are replays).
    #[serde(skip)]
    pub announce_time: u64,
    pub verified: bool,
    /// Another key already announced this name: this contact is not the one you knew.
    pub key_changed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscussionState {
    Open,
    /// We closed it; the peer has not confirmed yet (it is told on the next connection).
    Closing,
    Closed,
}

impl DiscussionState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closing => "closing",
            Self::Closed => "closed",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "open" => Self::Open,
            "closing" => Self::Closing,
            _ => Self::Closed,
        }
    }
}

/// A discussion with everything needed to resume it after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscussionRecord {
    pub id: String,
    pub peer_fingerprint: String,
    pub peer_name: String,
    /// "requester" or "receiver".
    pub role: String,
    pub state: DiscussionState,
    pub created: u64,
    /// Our discussion secret key, sealed for this node only ([`crate::at_rest`], useless without
    /// the passphrase); empty once destroyed. Kept in the `discussion_keys` table, not in the
    /// `discussions` row.
    pub own_key_sealed: Vec<u8>,
    /// The peer's public discussion key (binary OpenPGP).
    pub peer_key: Vec<u8>,
    /// Requester: where the receiver's discussion listener is. Receiver: unused.
    pub peer_address: String,
    pub peer_port: u16,
    /// Receiver: the port of our discussion listener (reused after a restart when free).
    pub listen_port: u16,
}

impl DiscussionRecord {
    pub fn role(&self) -> crate::wire::Role {
        use crate::wire::Role;
        if self.role == Role::Requester.as_str() {
            Role::Requester
        } else {
            Role::Receiver
        }
    }
}

/// A discussion's id and peer.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscussionRef {
    pub id: String,
    pub peer_name: String,
    pub peer_fingerprint: String,
}

/// One line of `discussions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiscussionSummary {
    pub id: String,
    pub peer_fingerprint: String,
    pub peer_name: String,
    pub role: String,
    pub state: DiscussionState,
    pub created: u64,
    pub unread: u64,
    pub messages: u64,
    pub last_activity: u64,
    /// Closed here with `close --force`; the peer has not confirmed yet (it is told when reachable).
    pub peer_not_told: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

/// Delivery state. Outgoing: stored → sent → delivered. Incoming: received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Stored,
    Sent,
    Delivered,
    Received,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Received => "received",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "sent" => Self::Sent,
            "delivered" => Self::Delivered,
            "received" => Self::Received,
            _ => Self::Stored,
        }
    }
}

#[derive(Clone, PartialEq, Serialize)]
pub struct MessageRecord {
    pub discussion_id: String,
    pub direction: Direction,
    pub seq: u64,
    pub time: u64,
    pub body: String,
    pub state: DeliveryState,
}

/// The text never shows: events are logged with `{:?}`.
impl std::fmt::Debug for MessageRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageRecord")
            .field("discussion_id", &self.discussion_id)
            .field("direction", &self.direction)
            .field("seq", &self.seq)
            .field("time", &self.time)
            .field("body", &crate::redact::Hidden::of(&self.body))
            .field("state", &self.state)
            .finish()
    }
}

/// What became of an incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// New, stored now.
    Stored,
    /// Already stored (a re-send after a lost ack).
    Duplicate,
    /// A sequence number beyond the next expected one: not stored, the sender re-sends.
    Gap { expected: u64 },
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS contacts (
    fingerprint TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    cert BLOB NOT NULL,
    address TEXT NOT NULL,
    tcp_port INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    announce_time INTEGER NOT NULL,
    verified INTEGER NOT NULL DEFAULT 0,
    key_changed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS discussions (
    id TEXT PRIMARY KEY,
    peer_fingerprint TEXT NOT NULL,
    peer_name TEXT NOT NULL,
    role TEXT NOT NULL,
    state TEXT NOT NULL,
    created INTEGER NOT NULL,
    peer_key BLOB NOT NULL,
    peer_address TEXT NOT NULL,
    peer_port INTEGER NOT NULL,
    listen_port INTEGER NOT NULL,
    next_out_seq INTEGER NOT NULL DEFAULT 1,
    last_in_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    discussion_id TEXT NOT NULL REFERENCES discussions(id),
    direction TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time INTEGER NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL,
    unread INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (discussion_id, direction, seq)
);
CREATE TABLE IF NOT EXISTS discussion_keys (
    discussion_id TEXT PRIMARY KEY REFERENCES discussions(id),
    sealed BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS close_notices (
    discussion_id TEXT PRIMARY KEY REFERENCES discussions(id),
    proof BLOB NOT NULL,
    told INTEGER NOT NULL DEFAULT 0
);
";

pub struct Store {
    conn: Connection,
    cipher: Option<Aes256Gcm>,
    /// A [`Store::relaxed`] write could not put `synchronous = FULL` back: the next durable write
    /// must, before it commits.
    full_sync_lost: std::cell::Cell<bool>,
}

fn body_aad(discussion_id: &str, direction: &str, seq: u64) -> Vec<u8> {
    let mut v = b"pgpchat-body-v1\0".to_vec();
    v.extend_from_slice(discussion_id.as_bytes());
    v.push(0);
    v.extend_from_slice(direction.as_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v
}

/// A message row before its text is decrypted.
struct RawMessage {
    discussion_id: String,
    direction: String,
    seq: u64,
    time: u64,
    body: Vec<u8>,
    state: String,
}

impl Store {
    /// Open (creating if needed) the database at `path`. Without `key` everything but message text is
    /// readable (integrity checks, tests); reading or writing text is [`StoreError::Locked`].
    pub fn open_with_key(
        path: &Path,
        key: Option<&[u8; STORAGE_KEY_BYTES]>,
    ) -> Result<Self, StoreError> {
        let mut s = Self::open(path)?;
        s.cipher = key.map(|k| Aes256Gcm::new(k.into()));
        Ok(s)
    }

    fn seal_body(
        cipher: Option<&Aes256Gcm>,
        discussion_id: &str,
        direction: &str,
        seq: u64,
        body: &str,
    ) -> Result<Vec<u8>, StoreError> {
        let cipher = cipher.ok_or(StoreError::Locked)?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: body.as_bytes(),
                    aad: &body_aad(discussion_id, direction, seq),
                },
            )
            .map_err(|_| StoreError::Undecryptable)?;
        let mut v = nonce.to_vec();
        v.extend_from_slice(&ct);
        Ok(v)
    }

    fn open_body(&self, r: RawMessage) -> Result<MessageRecord, StoreError> {
        let cipher = self.cipher.as_ref().ok_or(StoreError::Locked)?;
        if r.body.len() < NONCE_BYTES {
            return Err(StoreError::Undecryptable);
        }
        let (nonce, ct) = r.body.split_at(NONCE_BYTES);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: &body_aad(&r.discussion_id, &r.direction, r.seq),
                },
            )
            .map_err(|_| StoreError::Undecryptable)?;
        Ok(MessageRecord {
            discussion_id: r.discussion_id,
            direction: if r.direction == "in" {
                Direction::In
            } else {
                Direction::Out
            },
            seq: r.seq,
            time: r.time,
            body: String::from_utf8(plain).map_err(|_| StoreError::Undecryptable)?,
            state: DeliveryState::parse(&r.state),
        })
    }

    /// Open (creating if needed) the database at `path`, without the storage key.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // SQLite gives the -wal and -shm files the database file's mode.
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Deleted rows are overwritten, not left in free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.execute_batch(SCHEMA)?;
        let s = Self {
            conn,
            cipher: None,
            full_sync_lost: std::cell::Cell::new(false),
        };
        s.migrate_discussion_keys()?;
        Ok(s)
    }

    /// Stores from before issue 8 kept each sealed discussion key in a `discussions` column: move
    /// the keys of discussions not closed to `discussion_keys` (still in the old sealed format, which
    /// the node converts next: [`Self::legacy_discussion_keys`]), drop the column, and compact.
    fn migrate_discussion_keys(&self) -> Result<(), StoreError> {
        let legacy: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('discussions') WHERE name = 'own_key_sealed'",
            [],
            |r| r.get(0),
        )?;
        if legacy == 0 {
            return Ok(());
        }
        let tx = self.conn.unchecked_transaction()?;
        tx.execute_batch(
            "INSERT OR IGNORE INTO discussion_keys (discussion_id, sealed)
                 SELECT id, own_key_sealed FROM discussions
                 WHERE state != 'closed' AND length(own_key_sealed) > 0;
             ALTER TABLE discussions DROP COLUMN own_key_sealed;",
        )?;
        tx.commit()?;
        log::info!("store: discussion keys moved to their own table");
        self.compact()
    }

    /// Discussion keys still in the sealed format from before issue 8 (an OpenPGP message).
    pub fn legacy_discussion_keys(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT discussion_id, sealed FROM discussion_keys ORDER BY discussion_id")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        let all: Vec<(String, Vec<u8>)> = rows.collect::<Result<_, _>>()?;
        Ok(all
            .into_iter()
            .filter(|(_, sealed)| crate::at_rest::is_legacy(sealed))
            .collect())
    }

    /// Replace a discussion's sealed key by the same key sealed anew (format conversion only).
    pub fn replace_discussion_key(&self, id: &str, sealed: &[u8]) -> Result<(), StoreError> {
        self.durable()?;
        self.conn.execute(
            "UPDATE discussion_keys SET sealed = ?2 WHERE discussion_id = ?1",
            params![id, sealed],
        )?;
        Ok(())
    }

    /// Rebuild the database without free pages (`VACUUM`), then empty the WAL: after a conversion,
    /// no copy of an old blob is left anywhere in the store's files.
    pub fn compact(&self) -> Result<(), StoreError> {
        self.conn.execute_batch("VACUUM")?;
        self.truncate_wal()
    }

    /// Copy the WAL into the database and truncate it to zero bytes, so that page images written
    /// before (a destroyed key among them) are gone from `store.db-wal`. A checkpoint that cannot
    /// complete (another connection reading) is an error; the next start tries again.
    pub fn truncate_wal(&self) -> Result<(), StoreError> {
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy != 0 {
            return Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                Some("WAL checkpoint blocked by a reader".into()),
            )));
        }
        Ok(())
    }

    /// At start: finish any destruction cut short (the discussion marked closed but its key, or
    /// copies of it in the WAL, still there after a crash), by deleting the keys of closed
    /// discussions and truncating the WAL. A WAL that cannot be truncated now (someone else reading
    /// the database) does not stop the node: a warning, and the next close or start tries again.
    pub fn finish_destructions(&self) -> Result<(), StoreError> {
        self.durable()?;
        self.conn.execute(
            "DELETE FROM discussion_keys WHERE discussion_id IN
                 (SELECT id FROM discussions WHERE state = 'closed')",
            [],
        )?;
        if let Err(e) = self.truncate_wal() {
            log::warn!("store: WAL not truncated at start: {e}");
        }
        Ok(())
    }

    pub fn integrity_check(&self) -> Result<String, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    // ---- contacts

    pub fn upsert_contact(&self, c: &ContactRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO contacts (fingerprint, name, cert, address, tcp_port, first_seen, last_seen,
                                   announce_time, verified, key_changed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT(fingerprint) DO UPDATE SET name = ?2, cert = ?3, address = ?4,
                 tcp_port = ?5, last_seen = ?7, announce_time = ?8, verified = ?9,
                 key_changed = ?10",
            params![
                c.fingerprint,
                c.name,
                c.cert,
                c.address,
                c.tcp_port,
                c.first_seen,
                c.last_seen,
                c.announce_time,
                c.verified,
                c.key_changed
            ],
        )?;
        Ok(())
    }

    pub fn contacts(&self) -> Result<Vec<ContactRecord>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT fingerprint, name, cert, address, tcp_port, first_seen, last_seen,
                    announce_time, verified, key_changed
             FROM contacts ORDER BY name, fingerprint",
        )?;
        let rows = st.query_map([], |r| {
            Ok(ContactRecord {
                fingerprint: r.get(0)?,
                name: r.get(1)?,
                cert: r.get(2)?,
                address: r.get(3)?,
                tcp_port: r.get(4)?,
                first_seen: r.get(5)?,
                last_seen: r.get(6)?,
                announce_time: r.get(7)?,
                verified: r.get(8)?,
                key_changed: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn delete_contact(&self, fingerprint: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM contacts WHERE fingerprint = ?1", [fingerprint])?;
        Ok(())
    }

    // ---- discussions

    /// A new discussion, and its sealed key in `discussion_keys` (written this once), in one
    /// transaction.
    pub fn insert_discussion(&self, d: &DiscussionRecord) -> Result<(), StoreError> {
        self.durable()?;
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO discussions (id, peer_fingerprint, peer_name, role, state, created,
                 peer_key, peer_address, peer_port, listen_port)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                d.id,
                d.peer_fingerprint,
                d.peer_name,
                d.role,
                d.state.as_str(),
                d.created,
                d.peer_key,
                d.peer_address,
                d.peer_port,
                d.listen_port
            ],
        )?;
        if !d.own_key_sealed.is_empty() {
            tx.execute(
                "INSERT INTO discussion_keys (discussion_id, sealed) VALUES (?1, ?2)",
                params![d.id, d.own_key_sealed],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Whether `fingerprint` is a contact we verified, or has (or had) a discussion with us: such
    /// a peer is not locked out by failed attempts made by others (`docs/security.md`, threat 2).
    pub fn is_trusted_peer(&self, fingerprint: &str) -> Result<bool, StoreError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM discussions WHERE peer_fingerprint = ?1)
                 OR EXISTS(SELECT 1 FROM contacts WHERE fingerprint = ?1 AND verified = 1)",
            [fingerprint],
            |r| r.get(0),
        )?)
    }

    pub fn discussion(&self, id: &str) -> Result<DiscussionRecord, StoreError> {
        self.conn
            .query_row(
                "SELECT d.id, d.peer_fingerprint, d.peer_name, d.role, d.state, d.created,
                        COALESCE(k.sealed, x''), d.peer_key, d.peer_address, d.peer_port,
                        d.listen_port
                 FROM discussions d LEFT JOIN discussion_keys k ON k.discussion_id = d.id
                 WHERE d.id = ?1",
                [id],
                |r| {
                    Ok(DiscussionRecord {
                        id: r.get(0)?,
                        peer_fingerprint: r.get(1)?,
                        peer_name: r.get(2)?,
                        role: r.get(3)?,
                        state: DiscussionState::parse(&r.get::<_, String>(4)?),
                        created: r.get(5)?,
                        own_key_sealed: r.get(6)?,
                        peer_key: r.get(7)?,
                        peer_address: r.get(8)?,
                        peer_port: r.get(9)?,
                        listen_port: r.get(10)?,
                    })
                },
            )
            .optional()?
            .ok_or_else(|| StoreError::NoDiscussion(id.to_string()))
    }

    /// Ids of the discussions to resume at start (open, or closing and not yet confirmed).
    pub fn open_discussion_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT id FROM discussions WHERE state IN ('open', 'closing') ORDER BY created",
        )?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Who each discussion is with, newest first: what resolving a name or prefix needs, without
    /// the per-message aggregates of [`Self::discussions`].
    pub fn discussion_refs(&self) -> Result<Vec<DiscussionRef>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT id, peer_name, peer_fingerprint FROM discussions ORDER BY created DESC, rowid DESC",
        )?;
        let rows = st.query_map([], |r| {
            Ok(DiscussionRef {
                id: r.get(0)?,
                peer_name: r.get(1)?,
                peer_fingerprint: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn discussions(&self) -> Result<Vec<DiscussionSummary>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT d.id, d.peer_fingerprint, d.peer_name, d.role, d.state, d.created,
                    COALESCE(SUM(m.unread), 0), COUNT(m.seq), COALESCE(MAX(m.time), d.created),
                    EXISTS (SELECT 1 FROM close_notices c WHERE c.discussion_id = d.id AND c.told = 0)
             FROM discussions d LEFT JOIN messages m ON m.discussion_id = d.id
             GROUP BY d.id ORDER BY COALESCE(MAX(m.time), d.created) DESC, d.created DESC",
        )?;
        let rows = st.query_map([], |r| {
            Ok(DiscussionSummary {
                id: r.get(0)?,
                peer_fingerprint: r.get(1)?,
                peer_name: r.get(2)?,
                role: r.get(3)?,
                state: DiscussionState::parse(&r.get::<_, String>(4)?),
                created: r.get(5)?,
                unread: r.get(6)?,
                messages: r.get(7)?,
                last_activity: r.get(8)?,
                peer_not_told: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn set_discussion_state(&self, id: &str, state: DiscussionState) -> Result<(), StoreError> {
        self.durable()?;
        self.conn.execute(
            "UPDATE discussions SET state = ?2 WHERE id = ?1",
            params![id, state.as_str()],
        )?;
        Ok(())
    }

    /// Close for good, in one transaction: state `closed`, our discussion key deleted, and the
    /// `Close` signed with it before it went (`proof`) kept. `told`: the peer has confirmed; if
    /// not (a forced close), the proof is a notice still to give it ([`Self::close_notices`]).
    /// Either way the proof answers a later connection for this discussion. Then the WAL is
    /// truncated, which takes the key's last copies with it (a crash before that: the next start
    /// finishes, [`Self::finish_destructions`]).
    pub fn close_discussion(
        &mut self,
        id: &str,
        proof: Option<&[u8]>,
        told: bool,
    ) -> Result<(), StoreError> {
        self.durable()?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE discussions SET state = 'closed' WHERE id = ?1",
            [id],
        )?;
        tx.execute("DELETE FROM discussion_keys WHERE discussion_id = ?1", [id])?;
        if let Some(proof) = proof {
            tx.execute(
                "INSERT OR REPLACE INTO close_notices (discussion_id, proof, told)
                 VALUES (?1, ?2, ?3)",
                params![id, proof, told],
            )?;
        }
        tx.commit()?;
        // The close stands even if the WAL cannot be truncated now: the next start does it.
        if let Err(e) = self.truncate_wal() {
            log::warn!("store: discussion {id} closed, WAL not yet truncated: {e}");
        }
        Ok(())
    }

    /// The signed `Close` kept for a closed discussion, if any.
    pub fn close_proof(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT proof FROM close_notices WHERE discussion_id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Discussions closed without the peer that the peer has not confirmed yet, with their proofs.
    pub fn close_notices(&self) -> Result<Vec<(DiscussionRecord, Vec<u8>)>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT discussion_id, proof FROM close_notices WHERE told = 0 ORDER BY rowid",
        )?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(id, proof)| Ok((self.discussion(&id)?, proof)))
            .collect()
    }

    /// The peer confirmed a forced close: nothing is left to tell it.
    pub fn close_notice_delivered(&self, id: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE close_notices SET told = 1 WHERE discussion_id = ?1",
            [id],
        )?;
        Ok(())
    }

    pub fn set_peer_endpoint(&self, id: &str, address: &str, port: u16) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE discussions SET peer_address = ?2, peer_port = ?3 WHERE id = ?1",
            params![id, address, port],
        )?;
        Ok(())
    }

    pub fn set_listen_port(&self, id: &str, port: u16) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE discussions SET listen_port = ?2 WHERE id = ?1",
            params![id, port],
        )?;
        Ok(())
    }

    // ---- messages

    /// Put an outgoing message in the outbox with the next sequence number. When this returns, the
    /// message is on disk.
    pub fn queue_outgoing(
        &mut self,
        discussion_id: &str,
        body: &str,
        time: u64,
    ) -> Result<MessageRecord, StoreError> {
        self.durable()?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (seq, state): (u64, String) = tx
            .query_row(
                "SELECT next_out_seq, state FROM discussions WHERE id = ?1",
                [discussion_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| StoreError::NoDiscussion(discussion_id.to_string()))?;
        if DiscussionState::parse(&state) != DiscussionState::Open {
            return Err(StoreError::Closed(discussion_id.to_string()));
        }
        let sealed = Self::seal_body(self.cipher.as_ref(), discussion_id, "out", seq, body)?;
        tx.execute(
            "INSERT INTO messages (discussion_id, direction, seq, time, body, state, unread)
             VALUES (?1, 'out', ?2, ?3, ?4, 'stored', 0)",
            params![discussion_id, seq, time, sealed],
        )?;
        tx.execute(
            "UPDATE discussions SET next_out_seq = ?2 WHERE id = ?1",
            params![discussion_id, seq + 1],
        )?;
        tx.commit()?;
        Ok(MessageRecord {
            discussion_id: discussion_id.to_string(),
            direction: Direction::Out,
            seq,
            time,
            body: body.to_string(),
            state: DeliveryState::Stored,
        })
    }

    /// Run a write whose loss a crash may cause without harm, with `synchronous = NORMAL`: its
    /// commit is not fsynced by itself. In WAL mode it is still atomic and ordered: it becomes
    /// durable with the next `FULL` commit, survives a killed process (it is in the OS's cache),
    /// and only a power cut before the next fsync can roll it back. Used for the `sent` and
    /// `delivered` marks: if one is lost, the message is sent again on the next connection and
    /// the receiver, which drops duplicates, acknowledges it again.
    fn relaxed<R>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let result = f(&mut self.conn);
        if self
            .conn
            .pragma_update(None, "synchronous", "FULL")
            .is_err()
        {
            self.full_sync_lost.set(true);
        }
        result
    }

    /// Before a write that must be durable when it returns: make sure `synchronous = FULL`.
    fn durable(&self) -> Result<(), StoreError> {
        if self.full_sync_lost.get() {
            self.conn.pragma_update(None, "synchronous", "FULL")?;
            self.full_sync_lost.set(false);
        }
        Ok(())
    }

    /// `stored` → `sent` (never moves a delivered message back).
    pub fn mark_sent(&mut self, discussion_id: &str, seq: u64) -> Result<bool, StoreError> {
        self.relaxed(|conn| {
            Ok(conn.execute(
                "UPDATE messages SET state = 'sent'
                 WHERE discussion_id = ?1 AND direction = 'out' AND seq = ?2 AND state = 'stored'",
                params![discussion_id, seq],
            )? > 0)
        })
    }

    /// Everything up to `upto` is delivered; returns the sequence numbers that changed.
    pub fn mark_delivered(
        &mut self,
        discussion_id: &str,
        upto: u64,
    ) -> Result<Vec<u64>, StoreError> {
        self.relaxed(|conn| Self::mark_delivered_in(conn, discussion_id, upto))
    }

    fn mark_delivered_in(
        conn: &mut Connection,
        discussion_id: &str,
        upto: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let tx = conn.transaction()?;
        let seqs = {
            let mut st = tx.prepare(
                "SELECT seq FROM messages WHERE discussion_id = ?1 AND direction = 'out'
                 AND seq <= ?2 AND state != 'delivered' ORDER BY seq",
            )?;
            let rows = st.query_map(params![discussion_id, upto], |r| r.get(0))?;
            rows.collect::<Result<Vec<u64>, _>>()?
        };
        tx.execute(
            "UPDATE messages SET state = 'delivered' WHERE discussion_id = ?1 AND direction = 'out'
             AND seq <= ?2 AND state != 'delivered'",
            params![discussion_id, upto],
        )?;
        tx.commit()?;
        Ok(seqs)
    }

    /// Highest outgoing sequence number assigned so far (0: none).
    pub fn last_out_seq(&self, discussion_id: &str) -> Result<u64, StoreError> {
        let next: u64 = self.conn.query_row(
            "SELECT next_out_seq FROM discussions WHERE id = ?1",
            [discussion_id],
            |r| r.get(0),
        )?;
        Ok(next - 1)
    }

    /// Store an incoming message exactly once and in order. Returns what happened, and the highest
    /// sequence number stored (what to acknowledge).
    pub fn store_incoming(
        &mut self,
        discussion_id: &str,
        seq: u64,
        time: u64,
        body: &str,
    ) -> Result<(Incoming, u64), StoreError> {
        self.durable()?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let last: u64 = tx
            .query_row(
                "SELECT last_in_seq FROM discussions WHERE id = ?1",
                [discussion_id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::NoDiscussion(discussion_id.to_string()))?;
        if seq <= last {
            return Ok((Incoming::Duplicate, last));
        }
        if seq != last + 1 {
            return Ok((Incoming::Gap { expected: last + 1 }, last));
        }
        let sealed = Self::seal_body(self.cipher.as_ref(), discussion_id, "in", seq, body)?;
        tx.execute(
            "INSERT INTO messages (discussion_id, direction, seq, time, body, state, unread)
             VALUES (?1, 'in', ?2, ?3, ?4, 'received', 1)",
            params![discussion_id, seq, time, sealed],
        )?;
        tx.execute(
            "UPDATE discussions SET last_in_seq = ?2 WHERE id = ?1",
            params![discussion_id, seq],
        )?;
        tx.commit()?;
        Ok((Incoming::Stored, seq))
    }

    /// Up to `limit` undelivered outgoing messages with `seq >= from`, oldest first.
    pub fn outbox_from(
        &self,
        discussion_id: &str,
        from: u64,
        limit: u64,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT discussion_id, direction, seq, time, body, state FROM messages
             WHERE discussion_id = ?1 AND direction = 'out' AND state != 'delivered' AND seq >= ?2
             ORDER BY seq LIMIT ?3",
        )?;
        let rows = st.query_map(params![discussion_id, from, limit], raw_message)?;
        let raw = rows.collect::<Result<Vec<_>, _>>()?;
        raw.into_iter().map(|r| self.open_body(r)).collect()
    }

    /// The last `limit` messages, oldest first. Reading marks incoming ones read.
    pub fn history(
        &self,
        discussion_id: &str,
        limit: u64,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        self.discussion(discussion_id)?;
        let mut v = self.messages(
            "SELECT discussion_id, direction, seq, time, body, state FROM messages
             WHERE discussion_id = ?1 ORDER BY time DESC, rowid DESC LIMIT ?2",
            discussion_id,
            limit,
        )?;
        v.reverse();
        Ok(v)
    }

    pub fn mark_read(&self, discussion_id: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE messages SET unread = 0 WHERE discussion_id = ?1 AND unread = 1",
            [discussion_id],
        )?;
        Ok(())
    }

    fn messages(&self, sql: &str, id: &str, limit: u64) -> Result<Vec<MessageRecord>, StoreError> {
        let mut st = self.conn.prepare(sql)?;
        let rows = st.query_map(params![id, limit], raw_message)?;
        let raw = rows.collect::<Result<Vec<_>, _>>()?;
        raw.into_iter().map(|r| self.open_body(r)).collect()
    }
}

fn raw_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawMessage> {
    Ok(RawMessage {
        discussion_id: r.get(0)?,
        direction: r.get(1)?,
        seq: r.get(2)?,
        time: r.get(3)?,
        body: r.get(4)?,
        state: r.get(5)?,
    })
}

/// Runs [`Store`] operations on a dedicated thread (a `SyncArbiter` of one: SQLite writes are
/// serialised anyway, and one connection keeps transactions simple).
pub struct StoreWorker {
    store: Option<Store>,
}

impl StoreWorker {
    /// Open the database (a bad path fails here, with the reason) and start its worker thread.
    pub fn start(
        store_path: &Path,
        key: &[u8; STORAGE_KEY_BYTES],
    ) -> Result<StoreHandle, StoreError> {
        let cell = std::sync::Mutex::new(Some(Store::open_with_key(store_path, Some(key))?));
        // One thread: the factory runs once and takes the connection opened above.
        let addr = SyncArbiter::start(1, move || StoreWorker {
            store: cell.lock().ok().and_then(|mut c| c.take()),
        });
        Ok(StoreHandle(addr))
    }
}

impl Actor for StoreWorker {
    type Context = SyncContext<Self>;
}

/// A unit of work for the store worker.
pub type StoreJob<R> = Box<dyn FnOnce(&mut Store) -> Result<R, StoreError> + Send>;

/// Run a closure against the store on the worker thread.
pub struct Exec<R: Send + 'static>(pub StoreJob<R>);

impl<R: Send + 'static> Message for Exec<R> {
    type Result = Result<R, StoreError>;
}

impl<R: Send + 'static> Handler<Exec<R>> for StoreWorker {
    type Result = Result<R, StoreError>;
    fn handle(&mut self, msg: Exec<R>, _: &mut SyncContext<Self>) -> Self::Result {
        match &mut self.store {
            Some(store) => (msg.0)(store),
            None => Err(StoreError::Unavailable),
        }
    }
}

/// A cheap handle to the store worker.
#[derive(Clone)]
pub struct StoreHandle(pub Addr<StoreWorker>);

impl StoreHandle {
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.0
            .send(Exec(Box::new(f)))
            .await
            .map_err(|_| StoreError::Unavailable)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discussion(id: &str) -> DiscussionRecord {
        DiscussionRecord {
            id: id.into(),
            peer_fingerprint: "F".into(),
            peer_name: "bob".into(),
            role: "requester".into(),
            state: DiscussionState::Open,
            created: 1,
            own_key_sealed: vec![1],
            peer_key: vec![2],
            peer_address: "127.0.0.1".into(),
            peer_port: 5,
            listen_port: 0,
        }
    }

    fn files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let b = std::fs::read(p).unwrap();
                b.windows(needle.len()).any(|w| w == needle)
            })
            .map(|p| p.display().to_string())
            .collect()
    }

    #[test]
    fn a_destroyed_key_leaves_no_copy_in_any_file_of_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open_with_key(&dir.path().join("s.db"), Some(&[7; 32])).unwrap();
        let key: Vec<u8> = (0..200u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        let mut d = discussion("d");
        d.own_key_sealed = key.clone();
        s.insert_discussion(&d).unwrap();
        s.insert_discussion(&discussion("e")).unwrap();
        // Per-message rewrites of the discussion's row must not copy the key around.
        for i in 0..50 {
            s.queue_outgoing("d", "text", i).unwrap();
            s.store_incoming("d", i + 1, i, "reply").unwrap();
        }
        assert!(
            !files_contain(dir.path(), &key).is_empty(),
            "the key is stored"
        );
        s.close_discussion("d", Some(b"proof"), true).unwrap();
        assert_eq!(files_contain(dir.path(), &key), Vec::<String>::new());
        assert!(s.discussion("d").unwrap().own_key_sealed.is_empty());
        assert_eq!(s.discussion("e").unwrap().own_key_sealed, vec![1]);
    }

    #[test]
    fn a_store_from_before_issue_8_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE discussions (id TEXT PRIMARY KEY, peer_fingerprint TEXT NOT NULL,
                     peer_name TEXT NOT NULL, role TEXT NOT NULL, state TEXT NOT NULL,
                     created INTEGER NOT NULL, own_key_sealed BLOB NOT NULL,
                     peer_key BLOB NOT NULL, peer_address TEXT NOT NULL,
                     peer_port INTEGER NOT NULL, listen_port INTEGER NOT NULL,
                     next_out_seq INTEGER NOT NULL DEFAULT 1,
                     last_in_seq INTEGER NOT NULL DEFAULT 0);
                 INSERT INTO discussions VALUES
                     ('o', 'F', 'bob', 'requester', 'open', 1, x'c1aa', x'02', '', 0, 0, 1, 0),
                     ('c', 'F', 'bob', 'requester', 'closed', 1, x'', x'02', '', 0, 0, 1, 0);",
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.discussion("o").unwrap().own_key_sealed, vec![0xc1, 0xaa]);
        assert!(s.discussion("c").unwrap().own_key_sealed.is_empty());
        assert_eq!(
            s.legacy_discussion_keys().unwrap(),
            vec![("o".to_string(), vec![0xc1, 0xaa])]
        );
        let still: i64 = s
            .conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('discussions') WHERE name = 'own_key_sealed'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(still, 0, "the old column is gone");
        drop(s);
        // Opening again changes nothing.
        let s = Store::open(&path).unwrap();
        assert_eq!(s.discussion("o").unwrap().own_key_sealed, vec![0xc1, 0xaa]);
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn outbox_delivery_and_exactly_once_incoming() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open_with_key(&dir.path().join("s.db"), Some(&[7; 32])).unwrap();
        s.insert_discussion(&discussion("d")).unwrap();
        assert_eq!(s.queue_outgoing("d", "one", 10).unwrap().seq, 1);
        assert_eq!(s.queue_outgoing("d", "two", 11).unwrap().seq, 2);
        assert!(s.mark_sent("d", 1).unwrap());
        assert_eq!(s.outbox_from("d", 0, 100).unwrap().len(), 2);
        assert_eq!(s.mark_delivered("d", 1).unwrap(), vec![1]);
        assert_eq!(s.mark_delivered("d", 1).unwrap(), Vec::<u64>::new());
        assert!(!s.mark_sent("d", 1).unwrap(), "delivered never goes back");
        assert_eq!(s.outbox_from("d", 0, 100).unwrap()[0].body, "two");

        assert_eq!(
            s.store_incoming("d", 1, 5, "hi").unwrap(),
            (Incoming::Stored, 1)
        );
        assert_eq!(
            s.store_incoming("d", 1, 5, "hi").unwrap(),
            (Incoming::Duplicate, 1)
        );
        assert_eq!(
            s.store_incoming("d", 3, 5, "x").unwrap(),
            (Incoming::Gap { expected: 2 }, 1)
        );
        let h = s.history("d", 10).unwrap();
        assert_eq!(h.len(), 3);
        let sums = s.discussions().unwrap();
        assert_eq!((sums[0].unread, sums[0].messages), (1, 3));
        s.mark_read("d").unwrap();
        assert_eq!(s.discussions().unwrap()[0].unread, 0);
        assert!(matches!(
            s.queue_outgoing("nope", "x", 1),
            Err(StoreError::NoDiscussion(_))
        ));
        s.set_discussion_state("d", DiscussionState::Closed)
            .unwrap();
        assert!(matches!(
            s.queue_outgoing("d", "x", 1),
            Err(StoreError::Closed(_))
        ));
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn a_forced_close_keeps_its_notice_across_a_reopen_until_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        {
            let mut s = Store::open(&p).unwrap();
            s.insert_discussion(&discussion("d")).unwrap();
            s.insert_discussion(&discussion("e")).unwrap();
            s.close_discussion("d", Some(b"signed close"), false)
                .unwrap();
        }
        let s = Store::open(&p).unwrap();
        let d = s.discussion("d").unwrap();
        assert_eq!(d.state, DiscussionState::Closed);
        assert!(d.own_key_sealed.is_empty(), "key destroyed with the close");
        assert_eq!(s.discussion("e").unwrap().own_key_sealed, vec![1]);
        assert_eq!(s.open_discussion_ids().unwrap(), vec!["e".to_string()]);
        let notices = s.close_notices().unwrap();
        assert_eq!(notices.len(), 1);
        assert_eq!(
            (notices[0].0.id.as_str(), notices[0].1.as_slice()),
            ("d", &b"signed close"[..])
        );
        s.close_notice_delivered("d").unwrap();
        assert!(s.close_notices().unwrap().is_empty());
        assert_eq!(
            s.close_proof("d").unwrap().as_deref(),
            Some(&b"signed close"[..]),
            "kept to answer a late reconnection"
        );
        assert_eq!(s.close_proof("e").unwrap(), None);
    }

    #[test]
    fn delivery_marks_are_relaxed_and_everything_else_stays_fully_synchronous() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open_with_key(&dir.path().join("s.db"), Some(&[7; 32])).unwrap();
        let sync = |s: &Store| -> i64 {
            s.conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(sync(&s), 2, "FULL");
        s.insert_discussion(&discussion("d")).unwrap();
        s.queue_outgoing("d", "one", 1).unwrap();
        assert!(s.mark_sent("d", 1).unwrap());
        assert_eq!(sync(&s), 2, "FULL again after a relaxed write");
        assert_eq!(s.mark_delivered("d", 1).unwrap(), vec![1]);
        assert_eq!(sync(&s), 2);
        let inside = s
            .relaxed(|c| Ok(c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?))
            .unwrap();
        assert_eq!(inside, 1, "NORMAL inside a relaxed write");
        // A relaxed write that fails still puts FULL back.
        assert!(s.mark_delivered("nowhere", 1).unwrap().is_empty());
        assert!(s.relaxed(|_| Err::<(), _>(StoreError::Locked)).is_err());
        assert_eq!(sync(&s), 2);
        assert_eq!(
            s.history("d", 10).unwrap()[0].state,
            DeliveryState::Delivered
        );
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        {
            let mut s = Store::open_with_key(&p, Some(&[7; 32])).unwrap();
            s.insert_discussion(&discussion("d")).unwrap();
            s.queue_outgoing("d", "kept", 1).unwrap();
        }
        let s = Store::open_with_key(&p, Some(&[7; 32])).unwrap();
        assert_eq!(s.history("d", 10).unwrap()[0].body, "kept");
        assert_eq!(s.open_discussion_ids().unwrap(), vec!["d".to_string()]);
        // Without the key, or with another one, the text stays unreadable.
        assert!(matches!(
            Store::open(&p).unwrap().history("d", 10),
            Err(StoreError::Locked)
        ));
        let wrong = Store::open_with_key(&p, Some(&[8; 32])).unwrap();
        assert!(matches!(
            wrong.history("d", 10),
            Err(StoreError::Undecryptable)
        ));
        let raw = std::fs::read(&p).unwrap();
        assert!(!raw.windows(4).any(|w| w == b"kept"));
    }

    #[test]
    fn a_moved_row_does_not_decrypt() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open_with_key(&dir.path().join("s.db"), Some(&[7; 32])).unwrap();
        s.insert_discussion(&discussion("d")).unwrap();
        s.queue_outgoing("d", "first", 1).unwrap();
        s.queue_outgoing("d", "second", 2).unwrap();
        s.conn
            .execute("UPDATE messages SET body = (SELECT body FROM messages WHERE seq = 2) WHERE seq = 1", [])
            .unwrap();
        assert!(matches!(s.history("d", 10), Err(StoreError::Undecryptable)));
    }
}
