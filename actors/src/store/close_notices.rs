//! The `close_notices` table: for each closed discussion, the `Close` signed with its key before
//! the key was destroyed (the proof), and whether the peer has confirmed it. A forced close leaves
//! a notice still to give the peer when it is back; every proof answers a late reconnection.
//! Rows are written by [`Store::close_discussion`], in the close's transaction.

use rusqlite::OptionalExtension;

use super::rows::DiscussionRecord;
use super::{Store, StoreError};

impl Store {
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
}
