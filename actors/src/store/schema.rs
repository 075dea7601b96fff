//! The store's schema and its versions. The version is SQLite's `PRAGMA user_version` (0 in every
//! store made before issue 9, which recorded none); [`SCHEMA_VERSION`] is the one this code writes
//! and reads.
//!
//! Opening a store ([`super::Store::open`]) reads the version first: a store newer than
//! [`SCHEMA_VERSION`] (written by a newer pgpchat) is refused with [`StoreError::TooNew`] before
//! anything is written; an older one is brought forward by the [`MIGRATIONS`] after its version,
//! each in one transaction that also records its new version, so a crash leaves a store at one
//! version or the next, never between. To change the schema: append a migration (`ALTER TABLE`…)
//! and raise [`SCHEMA_VERSION`]; never edit one that has shipped.

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::rows::DiscussionState;
use super::{Store, StoreError};

/// The schema version this code writes and understands.
pub const SCHEMA_VERSION: u32 = 7;

/// One step forward: from version `to - 1` to `to`.
struct Migration {
    to: u32,
    /// Runs inside the step's transaction; returns whether the database must be compacted after
    /// the commit (`VACUUM` cannot run in a transaction), when the step removed data that must
    /// not stay in free pages or the WAL.
    apply: fn(&Transaction<'_>) -> Result<bool, StoreError>,
}

/// Every step, in order.
const MIGRATIONS: &[Migration] = &[
    Migration {
        to: 1,
        apply: v1_baseline,
    },
    Migration {
        to: 2,
        apply: v2_contacts_by_address,
    },
    Migration {
        to: 3,
        apply: v3_protocol_versions_and_control_channel,
    },
    Migration {
        to: 4,
        apply: v4_introductions,
    },
    Migration {
        to: 5,
        apply: v5_dht_rendezvous,
    },
    Migration {
        to: 6,
        apply: v6_outbox_index,
    },
    Migration {
        to: 7,
        apply: v7_rotating_subkeys,
    },
];

/// The tables as of issue 8. `IF NOT EXISTS`: a version-0 store may hold all of them (issue 8),
/// some of them (before issue 8: no `discussion_keys` nor `close_notices`), or none (a new store).
const V1_TABLES: &str = "
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

/// Version 1, the first recorded: the tables of issue 8, and the conversion of a store from before
/// issue 8, which kept each sealed discussion key in a `discussions` column: the keys of
/// discussions not closed move to `discussion_keys` (still in the old sealed format, which the node
/// converts next: [`Store::legacy_discussion_keys`]), the column is dropped, and the database is
/// compacted after the commit so no copy of a dropped key stays behind.
fn v1_baseline(tx: &Transaction<'_>) -> Result<bool, StoreError> {
    tx.execute_batch(V1_TABLES)?;
    let legacy: i64 = tx.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('discussions') WHERE name = 'own_key_sealed'",
        [],
        |r| r.get(0),
    )?;
    if legacy == 0 {
        return Ok(false);
    }
    tx.execute(
        "INSERT OR IGNORE INTO discussion_keys (discussion_id, sealed)
             SELECT id, own_key_sealed FROM discussions
             WHERE state != ?1 AND length(own_key_sealed) > 0",
        [DiscussionState::Closed],
    )?;
    tx.execute_batch("ALTER TABLE discussions DROP COLUMN own_key_sealed;")?;
    log::info!("store: discussion keys moved to their own table");
    Ok(true)
}

/// Issue 10, contacts by address: where each contact came from (every contact stored so far was
/// heard by broadcast), its last signed announce (relayed unchanged by contact lists), its probe
/// state (set for contacts the user added by address), and the blocked fingerprints.
/// Columns that already exist are left as they are (a store whose recorded version was reset).
fn v2_contacts_by_address(tx: &Transaction<'_>) -> Result<bool, StoreError> {
    const COLUMNS: &[(&str, &str)] = &[
        ("origin", "TEXT NOT NULL DEFAULT 'broadcast'"),
        ("origin_fingerprint", "TEXT NOT NULL DEFAULT ''"),
        ("origin_name", "TEXT NOT NULL DEFAULT ''"),
        ("announce", "BLOB NOT NULL DEFAULT x''"),
        ("probe_address", "TEXT"),
        ("probe_failures", "INTEGER NOT NULL DEFAULT 0"),
        ("next_probe", "INTEGER NOT NULL DEFAULT 0"),
    ];
    for (name, decl) in COLUMNS {
        add_column(tx, "contacts", name, decl)?;
    }
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS blocked (
             fingerprint TEXT PRIMARY KEY,
             since INTEGER NOT NULL
         );",
    )?;
    Ok(false)
}

/// Version 3 (issue 10, protocol versions, control channel, contact-list exchange):
/// - `messages.kind` (`text` | `control`): control messages share a discussion's sequence numbers
///   and outbox with chat, and are never shown, counted or unread; `messages.handled`: whether an
///   incoming control message was processed (0 until then: processed again at start after a crash);
/// - `discussions.peer_version`: the highest protocol version the peer has authenticated at (the
///   downgrade defence: never less from then on);
/// - `contacts.never_share`: the user's "never give this contact to anyone asking for my list".
fn v3_protocol_versions_and_control_channel(tx: &Transaction<'_>) -> Result<bool, StoreError> {
    for (table, column, declaration) in [
        ("messages", "kind", "TEXT NOT NULL DEFAULT 'text'"),
        ("messages", "handled", "INTEGER NOT NULL DEFAULT 1"),
        ("discussions", "peer_version", "INTEGER NOT NULL DEFAULT 1"),
        ("contacts", "never_share", "INTEGER NOT NULL DEFAULT 0"),
    ] {
        add_column(tx, table, column, declaration)?;
    }
    Ok(false)
}

/// `ALTER TABLE table ADD COLUMN column declaration`, unless the column is there already (a store
/// whose recorded version was lost, as version 0 stores of issue 8 were, runs a step again).
fn add_column(
    tx: &Transaction<'_>,
    table: &str,
    column: &str,
    declaration: &str,
) -> Result<(), StoreError> {
    let present: i64 = tx.query_row(
        "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get(0),
    )?;
    if present == 0 {
        tx.execute_batch(&format!(
            "ALTER TABLE {table} ADD COLUMN {column} {declaration};"
        ))?;
    }
    Ok(())
}

/// Version 3 (issue 10, introductions): the introductions we received (with their secret, sealed
/// at rest, NULL once destroyed) and those we made (the answers we wait for). A contact met
/// through an introduction reads its origin ("introduced by X") from its used introduction.
fn v4_introductions(tx: &Transaction<'_>) -> Result<bool, StoreError> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS introductions (
            local_id INTEGER PRIMARY KEY AUTOINCREMENT,
            introducer_fingerprint TEXT NOT NULL,
            id TEXT NOT NULL,
            introducer_name TEXT NOT NULL,
            introducer_discussion TEXT NOT NULL,
            peer_fingerprint TEXT NOT NULL,
            peer_name TEXT NOT NULL,
            peer_cert BLOB NOT NULL,
            peer_announce BLOB,
            peer_address TEXT NOT NULL,
            peer_port INTEGER NOT NULL,
            key_changed INTEGER NOT NULL DEFAULT 0,
            secret BLOB,
            state TEXT NOT NULL,
            received INTEGER NOT NULL,
            expires INTEGER NOT NULL,
            discussion_id TEXT,
            UNIQUE (introducer_fingerprint, id)
        );
        CREATE TABLE IF NOT EXISTS introductions_made (
            id TEXT PRIMARY KEY,
            a_fingerprint TEXT NOT NULL,
            a_discussion TEXT NOT NULL,
            a_answer TEXT NOT NULL,
            b_fingerprint TEXT NOT NULL,
            b_discussion TEXT NOT NULL,
            b_answer TEXT NOT NULL,
            created INTEGER NOT NULL,
            expires INTEGER NOT NULL,
            told INTEGER NOT NULL DEFAULT 0
        );",
    )?;
    Ok(false)
}

/// Version 5 (issue 11, dht): each discussion's rendezvous secret, sealed
/// (`at_rest::Sealed::RendezvousSecret`), in its own table written once and deleted with the
/// discussion's key (like `discussion_keys`).
fn v5_dht_rendezvous(tx: &Transaction<'_>) -> Result<bool, StoreError> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS rendezvous_secrets (
             discussion_id TEXT PRIMARY KEY REFERENCES discussions(id),
             sealed BLOB NOT NULL
         );",
    )?;
    Ok(false)
}

/// Version 6 (issue 13): an index of the outbox, the outgoing messages not yet delivered. Marking
/// an acknowledgement, reading the outbox and asking whether it is empty read only these rows (a
/// handful), not every message the discussion ever sent: without it each acknowledgement scanned the
/// discussion's whole outgoing history ([`OUTBOX_INDEX`]).
fn v6_outbox_index(tx: &Transaction<'_>) -> Result<bool, StoreError> {
    tx.execute_batch(OUTBOX_INDEX)?;
    Ok(false)
}

/// The partial index of version 6. Queries that want it say `direction = 'out' AND state !=
/// 'delivered'` (the index's condition, word for word: SQLite uses a partial index only when the
/// query implies its `WHERE`).
pub(super) const OUTBOX_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS outbox ON messages (discussion_id, seq)
     WHERE direction = 'out' AND state != 'delivered';";

/// Version 7 (issue 14, forward secrecy): the state of each of our discussion's encryption
/// subkeys (`discussion_subkeys`, public facts only: the secrets stay in the sealed key of
/// `discussion_keys`), and the peer's current subkey (`discussions.peer_subkey`, `''`: the one of
/// the certificate it opened the discussion with). Existing discussions get their row at start.
fn v7_rotating_subkeys(tx: &Transaction<'_>) -> Result<bool, StoreError> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS discussion_subkeys (
             discussion_id TEXT NOT NULL REFERENCES discussions(id),
             key_id TEXT NOT NULL,
             state TEXT NOT NULL,
             created INTEGER NOT NULL,
             changed INTEGER NOT NULL,
             from_seq INTEGER NOT NULL DEFAULT 0,
             PRIMARY KEY (discussion_id, key_id)
         );",
    )?;
    add_column(tx, "discussions", "peer_subkey", "TEXT NOT NULL DEFAULT ''")?;
    Ok(false)
}

/// The version recorded in the database (0: none recorded, or a new file).
pub(super) fn version(conn: &Connection) -> Result<u32, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Bring the store from its version to [`SCHEMA_VERSION`], one step per transaction.
pub(super) fn migrate(store: &mut Store) -> Result<(), StoreError> {
    let mut compact = false;
    for m in MIGRATIONS {
        let tx = store
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Read again inside the write lock: what an earlier step (or opener) already did is skipped.
        if version(&tx)? >= m.to {
            continue;
        }
        compact |= (m.apply)(&tx)?;
        tx.pragma_update(None, "user_version", m.to)?;
        tx.commit()?;
        log::debug!("store: schema at version {}", m.to);
    }
    if compact {
        store.compact()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steps_are_in_order_and_reach_the_current_version() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.to as usize, i + 1);
        }
        assert_eq!(MIGRATIONS.last().unwrap().to, SCHEMA_VERSION);
    }
}
