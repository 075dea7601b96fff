//! The `discussions` table (one row per discussion: peer, role, state, endpoints, sequence
//! counters) and `discussion_keys` (each discussion's sealed secret key).
//!
//! The key lives in its own table, written once when the discussion is created and deleted when it
//! is closed: never in the `discussions` row, which is rewritten on every message (each rewrite
//! would leave a page image of it in the WAL). A destruction deletes the row (`secure_delete`
//! zeroes its bytes) and then checkpoints the WAL with `TRUNCATE`, so no copy is left in
//! `store.db`, `store.db-wal` or `store.db-shm`; one cut short by a crash is finished at the next
//! start ([`Store::finish_destructions`]).

use rusqlite::{params, OptionalExtension};

use super::rows::{DiscussionRecord, DiscussionRef, DiscussionState, DiscussionSummary};
use super::{Store, StoreError};

impl Store {
    /// A new discussion, and its sealed key in `discussion_keys` (written this once), in one
    /// transaction.
    pub fn insert_discussion(&self, d: &DiscussionRecord) -> Result<(), StoreError> {
        self.durable()?;
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO discussions (id, peer_fingerprint, peer_name, role, state, created,
                 peer_key, peer_address, peer_port, listen_port, peer_version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                d.id,
                d.peer_fingerprint,
                d.peer_name,
                d.role,
                d.state,
                d.created,
                d.peer_key,
                d.peer_address,
                d.peer_port,
                d.listen_port,
                d.peer_version
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

    pub fn discussion(&self, id: &str) -> Result<DiscussionRecord, StoreError> {
        self.conn
            .query_row(
                "SELECT d.id, d.peer_fingerprint, d.peer_name, d.role, d.state, d.created,
                        COALESCE(k.sealed, x''), d.peer_key, d.peer_address, d.peer_port,
                        d.listen_port, d.peer_version
                 FROM discussions d LEFT JOIN discussion_keys k ON k.discussion_id = d.id
                 WHERE d.id = ?1",
                [id],
                |r| {
                    Ok(DiscussionRecord {
                        id: r.get(0)?,
                        peer_fingerprint: r.get(1)?,
                        peer_name: r.get(2)?,
                        role: r.get(3)?,
                        state: r.get(4)?,
                        created: r.get(5)?,
                        own_key_sealed: r.get(6)?,
                        peer_key: r.get(7)?,
                        peer_address: r.get(8)?,
                        peer_port: r.get(9)?,
                        listen_port: r.get(10)?,
                        peer_version: r.get(11)?,
                    })
                },
            )
            .optional()?
            .ok_or_else(|| StoreError::NoDiscussion(id.to_string()))
    }

    /// Ids of the discussions to resume at start (open, or closing and not yet confirmed).
    pub fn open_discussion_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT id FROM discussions WHERE state IN (?1, ?2) ORDER BY created")?;
        let rows = st.query_map(
            params![DiscussionState::Open, DiscussionState::Closing],
            |r| r.get(0),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Who each discussion is with, newest first: what resolving a name or prefix needs, without
    /// the per-message aggregates of [`Self::discussions`].
    pub fn discussion_refs(&self) -> Result<Vec<DiscussionRef>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT id, peer_name, peer_fingerprint, state FROM discussions
             ORDER BY created DESC, rowid DESC",
        )?;
        let rows = st.query_map([], |r| {
            Ok(DiscussionRef {
                id: r.get(0)?,
                peer_name: r.get(1)?,
                peer_fingerprint: r.get(2)?,
                state: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every discussion with its message counts, most recently active first.
    pub fn discussions(&self) -> Result<Vec<DiscussionSummary>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT d.id, d.peer_fingerprint, d.peer_name, d.role, d.state, d.created,
                    COALESCE(SUM(m.unread), 0), COUNT(m.seq), COALESCE(MAX(m.time), d.created),
                    EXISTS (SELECT 1 FROM close_notices c WHERE c.discussion_id = d.id AND c.told = 0),
                    k.key_id, CASE WHEN k.from_seq > 0 THEN k.changed END
             FROM discussions d
             LEFT JOIN discussion_subkeys k ON k.discussion_id = d.id AND k.state = 'active' LEFT JOIN messages m ON m.discussion_id = d.id AND m.kind = 'text'
             GROUP BY d.id ORDER BY COALESCE(MAX(m.time), d.created) DESC, d.created DESC",
        )?;
        let rows = st.query_map([], |r| {
            Ok(DiscussionSummary {
                id: r.get(0)?,
                peer_fingerprint: r.get(1)?,
                peer_name: r.get(2)?,
                role: r.get(3)?,
                state: r.get(4)?,
                created: r.get(5)?,
                unread: r.get(6)?,
                messages: r.get(7)?,
                last_activity: r.get(8)?,
                peer_not_told: r.get(9)?,
                key_id: r.get(10)?,
                last_rotation: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn set_discussion_state(&self, id: &str, state: DiscussionState) -> Result<(), StoreError> {
        self.durable()?;
        self.conn.execute(
            "UPDATE discussions SET state = ?2 WHERE id = ?1",
            params![id, state],
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
            "UPDATE discussions SET state = ?2 WHERE id = ?1",
            params![id, DiscussionState::Closed],
        )?;
        tx.execute("DELETE FROM discussion_keys WHERE discussion_id = ?1", [id])?;
        // Every subkey (pending and draining too) was inside that sealed key; their states go.
        tx.execute(
            "DELETE FROM discussion_subkeys WHERE discussion_id = ?1",
            [id],
        )?;
        tx.execute(
            "DELETE FROM rendezvous_secrets WHERE discussion_id = ?1",
            [id],
        )?;
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

    /// At start: finish any destruction cut short (the discussion marked closed but its key, or
    /// copies of it in the WAL, still there after a crash), by deleting the keys of closed
    /// discussions and truncating the WAL. A WAL that cannot be truncated now (someone else reading
    /// the database) does not stop the node: a warning, and the next close or start tries again.
    pub fn finish_destructions(&self) -> Result<(), StoreError> {
        self.durable()?;
        self.conn.execute(
            "DELETE FROM discussion_keys WHERE discussion_id IN
                 (SELECT id FROM discussions WHERE state = ?1)",
            [DiscussionState::Closed],
        )?;
        self.conn.execute(
            "DELETE FROM rendezvous_secrets WHERE discussion_id IN
                 (SELECT id FROM discussions WHERE state = ?1)",
            [DiscussionState::Closed],
        )?;
        self.conn.execute(
            "DELETE FROM discussion_subkeys WHERE discussion_id IN
                 (SELECT id FROM discussions WHERE state = ?1)",
            [DiscussionState::Closed],
        )?;
        if let Err(e) = self.truncate_wal() {
            log::warn!("store: WAL not truncated at start: {e}");
        }
        Ok(())
    }

    /// Discussion keys still in the sealed format from before issue 8 (an OpenPGP message).
    pub fn legacy_discussion_keys(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        // Run at every start: only blobs not already in today's format are read.
        let mut st = self.conn.prepare(
            "SELECT discussion_id, sealed FROM discussion_keys
             WHERE substr(sealed, 1, ?1) != ?2 ORDER BY discussion_id",
        )?;
        let magic = crate::at_rest::MAGIC.as_slice();
        let rows = st.query_map(rusqlite::params![magic.len(), magic], |r| {
            Ok((r.get(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
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
}
