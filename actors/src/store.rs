//! The node's durable memory: contacts, discussions (with their keys), messages and the outbox, in
//! one SQLite database (WAL, `synchronous = FULL`: a transaction that returned is on disk, so a
//! message reported `stored` survives SIGKILL and power loss).
//!
//! This file holds [`Store`] (the connection, opening and migrating, durability switching, WAL
//! truncation) and [`StoreError`]; the rest lives in `store/`, one concern per file:
//! - [`rows`]: the row types, with states, roles and directions as enum columns;
//! - [`sealing`]: message text encrypted at rest under the storage key;
//! - [`schema`]: the tables, the schema version (`user_version`) and the migrations;
//! - `contacts`, `discussions` (with `discussion_keys`), `messages`, `close_notices`: each table's
//!   queries, as methods of [`Store`];
//! - [`worker`]: [`StoreWorker`], the sync actor through which actors reach the store, so no SQLite
//!   call ever runs on an event loop.
//!
//! [`Store`] is plain blocking code, unit-tested on its own.

use std::path::{Path, PathBuf};

use aes_gcm::Aes256Gcm;
use rusqlite::Connection;
use thiserror::Error;

mod close_notices;
mod contacts;
mod control;
mod discussions;
pub mod introductions;
mod messages;
mod rendezvous;
pub mod rows;
pub mod schema;
pub mod sealing;
mod subkeys;
pub mod worker;

pub use rows::SubkeyState;
pub use rows::{
    ContactOrigin, ContactRecord, DeliveryState, Direction, DiscussionRecord, DiscussionRef,
    DiscussionState, DiscussionSummary, HistoryPage, Incoming, MessageKind, MessageRecord,
    Outgoing, ProbeState, UnknownValue,
};
pub use schema::SCHEMA_VERSION;
pub use sealing::STORAGE_KEY_BYTES;
pub use subkeys::SubkeyRecord;
pub use worker::{Durability, GroupedWrites, StoreHandle, StoreWorker};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no discussion '{0}'")]
    NoDiscussion(String),
    #[error("discussion '{0}' is closed")]
    Closed(String),
    /// A key rotation is under way in this discussion: its new key is pending (never made twice).
    #[error("discussion '{0}' has a key rotation under way")]
    RotationPending(String),
    #[error("store worker unavailable")]
    Unavailable,
    /// A grouped write ran, but the transaction it shared with others did not commit.
    #[error("database commit: {0}")]
    Commit(#[source] std::sync::Arc<rusqlite::Error>),
    /// A durable write in a job that asked for a relaxed one ([`worker::Durability`]): refused,
    /// since its group commits without the fsync.
    #[error("a durable write was asked for as a relaxed one")]
    NotDurable,
    #[error("message text cannot be decrypted (wrong storage key, or the row was tampered with)")]
    Undecryptable,
    #[error("the store was opened without its storage key")]
    Locked,
    /// Written by a newer pgpchat: opening it could damage it, so nothing is written.
    #[error(
        "{} has schema version {found}, newer than this pgpchat understands ({supported}): \
         use the newer pgpchat that wrote it",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
}

pub struct Store {
    conn: Connection,
    cipher: Option<Aes256Gcm>,
    /// A [`Store::relaxed`] write could not put `synchronous = FULL` back: the next durable write
    /// must, before it commits.
    full_sync_lost: std::cell::Cell<bool>,
    /// Inside a transaction of the worker's group commit ([`worker`]): a write makes a savepoint
    /// in it instead of its own transaction.
    in_group: bool,
    /// The group transaction commits with `synchronous = FULL` (one of its jobs asked for it).
    group_durable: bool,
}

impl Store {
    /// Open (creating if needed) the database at `path`. Without `key` everything but message text is
    /// readable (integrity checks, tests); reading or writing text is [`StoreError::Locked`].
    pub fn open_with_key(
        path: &Path,
        key: Option<&[u8; STORAGE_KEY_BYTES]>,
    ) -> Result<Self, StoreError> {
        let mut s = Self::open(path)?;
        s.cipher = key.map(sealing::cipher);
        Ok(s)
    }

    /// Open (creating if needed) the database at `path`, without the storage key, and bring its
    /// schema to [`SCHEMA_VERSION`]. A store newer than that is [`StoreError::TooNew`], with
    /// nothing written.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // SQLite gives the -wal and -shm files the database file's mode.
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let found = schema::version(&conn)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Deleted rows are overwritten, not left in free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
        let mut s = Self {
            conn,
            cipher: None,
            full_sync_lost: std::cell::Cell::new(false),
            in_group: false,
            group_durable: false,
        };
        schema::migrate(&mut s)?;
        Ok(s)
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        schema::version(&self.conn)
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

    pub fn integrity_check(&self) -> Result<String, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
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
        self.relax()?;
        let result = f(&mut self.conn);
        self.restore_full_sync(false);
        result
    }

    /// `synchronous = NORMAL` for a relaxed write. Until [`Self::restore_full_sync`] puts `FULL`
    /// back, the store counts it lost: a write that panics in between (its job caught by the
    /// worker) cannot leave the next durable write relaxed ([`Self::durable`] restores it).
    fn relax(&self) -> Result<(), rusqlite::Error> {
        self.full_sync_lost.set(true);
        self.conn.pragma_update(None, "synchronous", "NORMAL")
    }

    /// One write, in its own transaction (`Durable`: on disk when it returns; `Relaxed`: see
    /// [`Self::relaxed`]), or in a savepoint of the worker's group transaction, which commits it
    /// with the others ([`Self::begin_group`]). `f` gets the connection and the sealing cipher.
    fn write<R>(
        &mut self,
        sync: worker::Durability,
        f: impl FnOnce(&Connection, Option<&Aes256Gcm>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        if self.in_group {
            if self.conn.is_autocommit() {
                // An earlier write's error (a full disk, an I/O error) made SQLite roll back the
                // whole group: this one must not run, and commit, outside any transaction.
                return Err(StoreError::Commit(std::sync::Arc::new(group_rolled_back())));
            }
            if sync == worker::Durability::Durable && !self.group_durable {
                // Its job asked for a relaxed write, so the group commits without the fsync
                // (SQLite cannot change that inside the transaction): refused, not made relaxed.
                return Err(StoreError::NotDurable);
            }
            let sp = self.conn.savepoint()?;
            let r = f(&sp, self.cipher.as_ref())?;
            sp.commit()?;
            return Ok(r);
        }
        match sync {
            worker::Durability::Durable => {
                self.durable()?;
                let tx = self
                    .conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let r = f(&tx, self.cipher.as_ref())?;
                tx.commit()?;
                Ok(r)
            }
            worker::Durability::Relaxed => {
                self.relax()?;
                let result = (|| {
                    let tx = self.conn.transaction()?;
                    let r = f(&tx, self.cipher.as_ref())?;
                    tx.commit()?;
                    Ok(r)
                })();
                self.restore_full_sync(false);
                result
            }
        }
    }

    /// Start the worker's group transaction: the writes made until [`Self::end_group`] commit
    /// together. Without a `durable` write in the group, it commits like [`Self::relaxed`].
    pub(crate) fn begin_group(&mut self, durable: bool) -> Result<(), StoreError> {
        if durable {
            self.durable()?;
        } else {
            self.relax()?;
        }
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            self.restore_full_sync(durable);
            return Err(e.into());
        }
        self.in_group = true;
        self.group_durable = durable;
        Ok(())
    }

    /// The group transaction is gone: SQLite rolled it back whole on an error (a full disk, an I/O
    /// error) of one of its writes.
    pub(crate) fn group_lost(&self) -> bool {
        self.in_group && self.conn.is_autocommit()
    }

    /// Inside the group transaction: start one job's writes, kept together by
    /// [`Self::end_job`] or undone together.
    pub(crate) fn begin_job(&mut self) -> Result<(), rusqlite::Error> {
        self.conn.execute_batch("SAVEPOINT job")
    }

    /// End one job's savepoint: `keep` its writes, or undo them all (the job failed or panicked:
    /// its caller is told so, so nothing of it may stay).
    pub(crate) fn end_job(&mut self, keep: bool) -> Result<(), rusqlite::Error> {
        if keep {
            self.conn.execute_batch("RELEASE job")
        } else {
            self.conn.execute_batch("ROLLBACK TO job; RELEASE job")
        }
    }

    /// Commit the group transaction (rolled back if the commit fails: then no write of the group
    /// happened). With `broken` (a failed job's writes could not be undone), roll it back instead
    /// and return that error.
    pub(crate) fn end_group(
        &mut self,
        durable: bool,
        broken: Option<rusqlite::Error>,
    ) -> Result<(), rusqlite::Error> {
        self.in_group = false;
        let result = match broken {
            None => self.conn.execute_batch("COMMIT"),
            Some(e) => Err(e),
        };
        if result.is_err() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        self.restore_full_sync(durable);
        result
    }

    /// After a relaxed write (`durable` false): `synchronous = FULL` again, or counted lost if it
    /// cannot be put back (the next durable write does it, [`Self::durable`]).
    fn restore_full_sync(&self, durable: bool) {
        if !durable {
            let restored = self.conn.pragma_update(None, "synchronous", "FULL").is_ok();
            self.full_sync_lost.set(!restored);
        }
    }

    /// Before a write that must be durable when it returns: make sure `synchronous = FULL`.
    fn durable(&self) -> Result<(), StoreError> {
        if self.full_sync_lost.get() {
            self.conn.pragma_update(None, "synchronous", "FULL")?;
            self.full_sync_lost.set(false);
        }
        Ok(())
    }
}

/// What a write of a group that SQLite rolled back is told (with the error of the write that
/// caused it, told to that write's caller).
fn group_rolled_back() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT_ROLLBACK),
        Some("rolled back with the writes committed together, one of which failed".into()),
    )
}

#[cfg(test)]
mod tests;
