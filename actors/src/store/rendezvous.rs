//! The `rendezvous_secrets` table (issue 11): each discussion's DHT rendezvous secret, sealed for
//! this node (`at_rest::Sealed::RendezvousSecret`), written once and deleted when the discussion is
//! closed, in the same transaction as its key (`close_discussion`, `finish_destructions`).

use rusqlite::{params, OptionalExtension};

use super::rows::DiscussionState;
use super::{Store, StoreError};

impl Store {
    /// Keep a discussion's sealed rendezvous secret (never rotated away: a later call for the same
    /// discussion changes nothing). Refused for a discussion that is not open.
    pub fn set_rendezvous_secret(&self, id: &str, sealed: &[u8]) -> Result<bool, StoreError> {
        self.durable()?;
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO rendezvous_secrets (discussion_id, sealed)
             SELECT id, ?2 FROM discussions WHERE id = ?1 AND state = ?3",
            params![id, sealed, DiscussionState::Open],
        )?;
        Ok(n == 1)
    }

    /// Keep the secret the requester sent over the control channel (issue 11, discussions opened
    /// without one), in place of any this node had: the requester's is the discussion's. Refused
    /// for a discussion that is not open.
    pub fn replace_rendezvous_secret(&self, id: &str, sealed: &[u8]) -> Result<bool, StoreError> {
        self.durable()?;
        let n = self.conn.execute(
            "INSERT OR REPLACE INTO rendezvous_secrets (discussion_id, sealed)
             SELECT id, ?2 FROM discussions WHERE id = ?1 AND state = ?3",
            params![id, sealed, DiscussionState::Open],
        )?;
        Ok(n == 1)
    }

    /// Forget a discussion's rendezvous secret (as in a store from before issue 11: the control
    /// channel brings one again at the next connection). Whether there was one.
    pub fn forget_rendezvous_secret(&self, id: &str) -> Result<bool, StoreError> {
        self.durable()?;
        let n = self.conn.execute(
            "DELETE FROM rendezvous_secrets WHERE discussion_id = ?1",
            [id],
        )?;
        Ok(n == 1)
    }

    /// A discussion's sealed rendezvous secret, if it has one.
    pub fn rendezvous_secret(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT sealed FROM rendezvous_secrets WHERE discussion_id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Every open discussion with a rendezvous secret: (id, our role, sealed secret).
    pub fn open_rendezvous_secrets(
        &self,
    ) -> Result<Vec<(String, crate::wire::Role, Vec<u8>)>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT d.id, d.role, r.sealed FROM discussions d
             JOIN rendezvous_secrets r ON r.discussion_id = d.id
             WHERE d.state = ?1",
        )?;
        let rows = st.query_map([DiscussionState::Open], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
