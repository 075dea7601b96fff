//! The `discussion_subkeys` table (issue 14, forward secrecy): the state of each of our
//! discussion's encryption subkeys not yet destroyed, and the peer's current one
//! (`discussions.peer_subkey`, with its certificate in `discussions.peer_key`).
//!
//! The secrets themselves are never here: they are inside the discussion's sealed key
//! (`discussion_keys`, [`super::discussions`]), which holds the primary key and every live
//! subkey and is rewritten only when a rotation starts and when a subkey is destroyed (never per
//! message). A rewrite that drops a subkey is followed by a `TRUNCATE` checkpoint of the WAL
//! (`secure_delete` is on), so the destroyed secret has no copy left in `store.db`,
//! `store.db-wal` or `store.db-shm`; a checkpoint a crash cut short is done at the next start
//! ([`Store::finish_destructions`]).
//!
//! States (`docs/protocol.md`, "Key rotation"): `pending` (made, stored with the outbox entry that
//! announces it, in one transaction: never made twice), `active` (the peer acknowledged it: it
//! encrypts to it from the acknowledgement's sequence number on, `from_seq`), `draining` (the key
//! it replaced, kept until every message numbered before that is stored, or at most
//! `rotation.drain_max_hours`), then destroyed (the row deleted).

use rusqlite::{params, OptionalExtension};

use super::rows::{DiscussionState, MessageKind, SubkeyState};
use super::{Store, StoreError};

/// One of our live encryption subkeys (public facts only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubkeyRecord {
    pub key_id: String,
    pub state: SubkeyState,
    /// When it was made (our clock, seconds).
    pub created: u64,
    /// Its last state change.
    pub changed: u64,
    /// Active: the peer's first sequence number encrypted to it (0: since the discussion began).
    /// Draining: the peer's first sequence number encrypted to its successor.
    pub from_seq: u64,
}

impl Store {
    /// Our live encryption subkeys of discussion `id`, oldest first.
    pub fn own_subkeys(&self, id: &str) -> Result<Vec<SubkeyRecord>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT key_id, state, created, changed, from_seq FROM discussion_subkeys
             WHERE discussion_id = ?1 ORDER BY created, rowid",
        )?;
        let rows = st.query_map([id], |r| {
            Ok(SubkeyRecord {
                key_id: r.get(0)?,
                state: r.get(1)?,
                created: r.get(2)?,
                changed: r.get(3)?,
                from_seq: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Record the discussion key's first subkey as active, if the discussion has no subkey rows
    /// yet (a new discussion, or one from before issue 14). Whether a row was written.
    pub fn record_first_subkey(
        &self,
        id: &str,
        key_id: &str,
        now: u64,
    ) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "INSERT INTO discussion_subkeys (discussion_id, key_id, state, created, changed, from_seq)
             SELECT ?1, ?2, ?3, ?4, ?4, 0
             WHERE NOT EXISTS (SELECT 1 FROM discussion_subkeys WHERE discussion_id = ?1)",
            params![id, key_id, SubkeyState::Active, now],
        )?;
        Ok(n == 1)
    }

    /// Open (or closing) discussions with a key but no subkey state (from before issue 14).
    pub fn discussions_without_subkeys(&self) -> Result<Vec<String>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT d.id FROM discussions d JOIN discussion_keys k ON k.discussion_id = d.id
             WHERE d.state IN (?1, ?2)
               AND NOT EXISTS (SELECT 1 FROM discussion_subkeys s WHERE s.discussion_id = d.id)",
        )?;
        let rows = st.query_map(
            params![DiscussionState::Open, DiscussionState::Closing],
            |r| r.get(0),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Start a rotation, in one transaction: the discussion's sealed key replaced by `sealed`
    /// (the same key with the new subkey `key_id`), the subkey recorded `pending`, and `control`
    /// (`bincode(Control)`, the announcement) queued in the outbox. Returns its sequence number.
    /// Refused while a subkey is pending (a rotation is never started twice) or the discussion is
    /// not open.
    pub fn begin_rotation(
        &mut self,
        id: &str,
        key_id: &str,
        sealed: &[u8],
        control: &[u8],
        now: u64,
    ) -> Result<u64, StoreError> {
        self.in_one_transaction(|s| {
            if s.pending_subkey(id)?.is_some() {
                return Err(StoreError::RotationPending(id.to_string()));
            }
            let state: DiscussionState = s
                .conn
                .query_row("SELECT state FROM discussions WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?
                .ok_or_else(|| StoreError::NoDiscussion(id.to_string()))?;
            if state != DiscussionState::Open {
                return Err(StoreError::Closed(id.to_string()));
            }
            s.conn.execute(
                "UPDATE discussion_keys SET sealed = ?2 WHERE discussion_id = ?1",
                params![id, sealed],
            )?;
            s.conn.execute(
                "INSERT INTO discussion_subkeys
                     (discussion_id, key_id, state, created, changed, from_seq)
                 VALUES (?1, ?2, ?3, ?4, ?4, 0)",
                params![id, key_id, SubkeyState::Pending, now],
            )?;
            let body = hex::encode(control);
            Ok(s.queue_outgoing_kind(id, MessageKind::Control, &body, now)?
                .seq)
        })
    }

    /// The pending subkey of discussion `id`, if a rotation is under way.
    pub fn pending_subkey(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT key_id FROM discussion_subkeys WHERE discussion_id = ?1 AND state = ?2",
                params![id, SubkeyState::Pending],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The peer acknowledged subkey `key_id` from its sequence number `from_seq` on: it becomes
    /// active, the key it replaces draining (until every message numbered before `from_seq` is
    /// stored). Returns whether anything changed (an acknowledgement handled again changes nothing).
    pub fn acknowledge_rotation(
        &mut self,
        id: &str,
        key_id: &str,
        from_seq: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.in_one_transaction(|s| {
            let n = s.conn.execute(
                "UPDATE discussion_subkeys SET state = ?3, changed = ?4, from_seq = ?5
                 WHERE discussion_id = ?1 AND key_id = ?2 AND state = ?6",
                params![
                    id,
                    key_id,
                    SubkeyState::Active,
                    now,
                    from_seq,
                    SubkeyState::Pending
                ],
            )?;
            if n == 0 {
                return Ok(false);
            }
            s.conn.execute(
                "UPDATE discussion_subkeys SET state = ?3, changed = ?4, from_seq = ?5
                 WHERE discussion_id = ?1 AND key_id != ?2 AND state = ?6",
                params![
                    id,
                    key_id,
                    SubkeyState::Draining,
                    now,
                    from_seq,
                    SubkeyState::Active
                ],
            )?;
            Ok(true)
        })
    }

    /// Destroy subkey `key_id`: its row deleted and the sealed key replaced by `sealed` (the same
    /// key without it), in one transaction; then the WAL truncated (best effort: the next start
    /// finishes it). Whether the subkey was there.
    pub fn destroy_subkey(
        &mut self,
        id: &str,
        key_id: &str,
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        let found = self.in_one_transaction(|s| {
            let n = s.conn.execute(
                "DELETE FROM discussion_subkeys WHERE discussion_id = ?1 AND key_id = ?2",
                params![id, key_id],
            )?;
            if n == 1 {
                s.conn.execute(
                    "UPDATE discussion_keys SET sealed = ?2 WHERE discussion_id = ?1",
                    params![id, sealed],
                )?;
            }
            Ok(n == 1)
        })?;
        if let Err(e) = self.truncate_wal() {
            log::warn!("store: subkey of {id} destroyed, WAL not yet truncated: {e}");
        }
        Ok(found)
    }

    /// The peer's current encryption subkey (`''`: the one of the certificate it opened the
    /// discussion with).
    pub fn peer_subkey(&self, id: &str) -> Result<String, StoreError> {
        Ok(self.conn.query_row(
            "SELECT peer_subkey FROM discussions WHERE id = ?1",
            [id],
            |r| r.get(0),
        )?)
    }

    /// The peer announced subkey `key_id` (`cert`: its checked announcement, which replaces its
    /// discussion certificate): kept, and `ack` (`bincode(Control)`) queued, in one transaction,
    /// so that the sequence number of the acknowledgement, returned, is the first one encrypted
    /// to the new subkey.
    pub fn accept_peer_rotation(
        &mut self,
        id: &str,
        cert: &[u8],
        key_id: &str,
        ack: &[u8],
        now: u64,
    ) -> Result<u64, StoreError> {
        self.in_one_transaction(|s| {
            s.conn.execute(
                "UPDATE discussions SET peer_key = ?2, peer_subkey = ?3 WHERE id = ?1",
                params![id, cert, key_id],
            )?;
            let body = hex::encode(ack);
            Ok(s.queue_outgoing_kind(id, MessageKind::Control, &body, now)?
                .seq)
        })
    }

    /// The highest incoming sequence number stored for discussion `id`.
    pub fn last_in_seq(&self, id: &str) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT last_in_seq FROM discussions WHERE id = ?1",
            [id],
            |r| r.get(0),
        )?)
    }

    /// Run `f`'s writes in one durable transaction (a savepoint inside the worker's group): writes
    /// it makes through [`Self::write`] become savepoints of it.
    fn in_one_transaction<R>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let (begin, commit, rollback) = if self.in_group {
            (
                "SAVEPOINT one",
                "RELEASE one",
                "ROLLBACK TO one; RELEASE one",
            )
        } else {
            self.durable()?;
            ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
        };
        self.conn.execute_batch(begin)?;
        let outer = std::mem::replace(&mut self.in_group, true);
        // Alone, this is a durable transaction (`FULL`, made so above): its writes are durable
        // ones. Inside a group, the group's own durability stands (a relaxed group refuses them).
        let outer_durable = self.group_durable;
        if !outer {
            self.group_durable = true;
        }
        let result = f(self);
        self.in_group = outer;
        self.group_durable = outer_durable;
        match result {
            Ok(r) => match self.conn.execute_batch(commit) {
                Ok(()) => Ok(r),
                Err(e) => {
                    let _ = self.conn.execute_batch(rollback);
                    Err(e.into())
                }
            },
            Err(e) => {
                let _ = self.conn.execute_batch(rollback);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{discussion, open_store};

    #[test]
    fn a_rotation_goes_pending_active_draining_destroyed_and_is_never_started_twice() {
        let (_dir, mut s) = open_store();
        s.insert_discussion(&discussion("d")).unwrap();
        assert!(s.record_first_subkey("d", "AAAA", 10).unwrap());
        assert!(!s.record_first_subkey("d", "AAAA", 10).unwrap());
        let seq = s
            .begin_rotation("d", "BBBB", b"sealed2", b"ann", 20)
            .unwrap();
        assert_eq!(s.outbox_from("d", 0, 10).unwrap()[0].record.seq, seq);
        assert!(matches!(
            s.begin_rotation("d", "CCCC", b"sealed3", b"ann", 21),
            Err(StoreError::RotationPending(_))
        ));
        assert_eq!(
            s.outbox_from("d", 0, 10).unwrap().len(),
            1,
            "nothing queued"
        );
        assert_eq!(s.pending_subkey("d").unwrap().as_deref(), Some("BBBB"));
        assert!(s.acknowledge_rotation("d", "BBBB", 7, 30).unwrap());
        assert!(!s.acknowledge_rotation("d", "BBBB", 7, 31).unwrap());
        let keys = s.own_subkeys("d").unwrap();
        assert_eq!(
            keys.iter()
                .map(|k| (k.key_id.as_str(), k.state, k.from_seq))
                .collect::<Vec<_>>(),
            [
                ("AAAA", SubkeyState::Draining, 7),
                ("BBBB", SubkeyState::Active, 7)
            ]
        );
        assert!(s.destroy_subkey("d", "AAAA", b"sealed4").unwrap());
        assert!(!s.destroy_subkey("d", "AAAA", b"sealed5").unwrap());
        assert_eq!(s.discussion("d").unwrap().own_key_sealed, b"sealed4");
        assert_eq!(s.own_subkeys("d").unwrap().len(), 1);
    }

    #[test]
    fn a_failed_step_leaves_nothing_behind() {
        let (_dir, mut s) = open_store();
        s.insert_discussion(&discussion("d")).unwrap();
        s.set_discussion_state("d", DiscussionState::Closing)
            .unwrap();
        assert!(s
            .begin_rotation("d", "BBBB", b"sealed2", b"ann", 20)
            .is_err());
        assert!(s.own_subkeys("d").unwrap().is_empty());
        assert_eq!(s.discussion("d").unwrap().own_key_sealed, vec![1]);
        // The peer's rotation and its acknowledgement go together.
        s.set_discussion_state("d", DiscussionState::Open).unwrap();
        let seq = s
            .accept_peer_rotation("d", b"cert", "EEEE", b"ack", 5)
            .unwrap();
        assert_eq!(s.peer_subkey("d").unwrap(), "EEEE");
        assert_eq!(s.discussion("d").unwrap().peer_key, b"cert");
        assert_eq!(s.outbox_from("d", 0, 10).unwrap()[0].record.seq, seq);
    }
}
