//! Control messages in the `messages` table (`kind = 'control'`): they share a discussion's sequence
//! numbers, outbox and acknowledgements with chat (so their order with chat holds), sealed at rest
//! like chat text (the row's body is the hex of `bincode(Control)`), and are never shown in
//! history nor counted (those queries read `kind = 'text'` only). An incoming one is stored
//! `handled = 0` and marked handled once processed: what a crash interrupted is processed again at
//! start ([`Store::unhandled_controls`]). Also each discussion's `peer_version` (the downgrade
//! defence).

use rusqlite::params;

use super::rows::{Incoming, MessageKind};
use super::sealing::{open_body, raw_message};
use super::{Store, StoreError};

impl Store {
    /// Queue an outgoing control message (`bytes` = `bincode(Control)`) with the next sequence
    /// number; on disk when this returns. Returns its sequence number.
    pub fn queue_control(
        &mut self,
        discussion_id: &str,
        bytes: &[u8],
        time: u64,
    ) -> Result<u64, StoreError> {
        let body = hex::encode(bytes);
        Ok(self
            .queue_outgoing_kind(discussion_id, MessageKind::Control, &body, time)?
            .seq)
    }

    /// Store an incoming control message exactly once and in order, like
    /// [`Store::store_incoming`], not yet handled.
    pub fn store_incoming_control(
        &mut self,
        discussion_id: &str,
        seq: u64,
        time: u64,
        bytes: &[u8],
    ) -> Result<(Incoming, u64), StoreError> {
        let body = hex::encode(bytes);
        self.store_incoming_kind(discussion_id, MessageKind::Control, seq, time, &body)
    }

    /// The incoming control message `seq` was processed: its body is dropped (a control message
    /// is not history, and an introduction's offer carries a secret that must not outlive the
    /// introduction); the row stays, for the sequence. `secure_delete` is on; the WAL is
    /// truncated (best effort, as for the introduction's secret column).
    pub fn mark_control_handled(&self, discussion_id: &str, seq: u64) -> Result<(), StoreError> {
        let dropped = self.conn.execute(
            "UPDATE messages SET handled = 1, body = X'' WHERE discussion_id = ?1
             AND direction = 'in' AND seq = ?2 AND kind = 'control' AND length(body) > 0",
            params![discussion_id, seq],
        )?;
        // Only a body just dropped has page images to clear from the WAL (a message handled
        // again after a restart, or twice, costs no checkpoint).
        if dropped > 0 {
            let _ = self.truncate_wal();
        }
        Ok(())
    }

    /// Incoming control messages stored but not processed (a crash in between), oldest first:
    /// `(seq, bincode(Control))`.
    pub fn unhandled_controls(
        &self,
        discussion_id: &str,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT discussion_id, direction, seq, time, body, state FROM messages
             WHERE discussion_id = ?1 AND direction = 'in' AND kind = 'control' AND handled = 0
             ORDER BY seq",
        )?;
        let rows = st.query_map([discussion_id], raw_message)?;
        let raw = rows.collect::<Result<Vec<_>, _>>()?;
        raw.into_iter()
            .map(|r| {
                let m = open_body(self.cipher.as_ref(), r)?;
                let bytes = hex::decode(&m.body).map_err(|_| StoreError::Undecryptable)?;
                Ok((m.seq, bytes))
            })
            .collect()
    }

    /// The highest protocol version the discussion's peer has authenticated at (1 for a discussion
    /// from before versions were negotiated).
    pub fn peer_version(&self, discussion_id: &str) -> Result<u16, StoreError> {
        Ok(self.conn.query_row(
            "SELECT peer_version FROM discussions WHERE id = ?1",
            [discussion_id],
            |r| r.get(0),
        )?)
    }

    /// The peer authenticated at `version`: raise the discussion's floor, never lower it.
    pub fn raise_peer_version(&self, discussion_id: &str, version: u16) -> Result<(), StoreError> {
        self.durable()?;
        self.conn.execute(
            "UPDATE discussions SET peer_version = MAX(peer_version, ?2) WHERE id = ?1",
            params![discussion_id, version],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::tests::{discussion, open_store};
    use crate::store::Incoming;

    #[test]
    fn control_messages_share_the_sequence_but_are_never_shown_nor_counted() {
        let (_dir, mut s) = open_store();
        s.insert_discussion(&discussion("d")).unwrap();
        assert_eq!(s.queue_outgoing("d", "one", 10).unwrap().seq, 1);
        assert_eq!(s.queue_control("d", &[1, 2], 11).unwrap(), 2);
        let out = s.outbox_from("d", 0, 10).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].kind, crate::store::MessageKind::Control);
        assert_eq!(
            s.store_incoming_control("d", 1, 12, &[9]).unwrap(),
            (Incoming::Stored, 1)
        );
        assert_eq!(
            s.store_incoming("d", 2, 13, "hi").unwrap(),
            (Incoming::Stored, 2)
        );
        let history = s.history("d", 10).unwrap();
        assert_eq!(history.len(), 2, "the text in and out only");
        let summary = &s.discussions().unwrap()[0];
        assert_eq!((summary.messages, summary.unread), (2, 1));
        // Delivered control messages raise no delivery event.
        assert_eq!(s.mark_delivered("d", 2).unwrap(), vec![1]);
        assert_eq!(s.unhandled_controls("d").unwrap(), vec![(1, vec![9])]);
        s.mark_control_handled("d", 1).unwrap();
        assert!(s.unhandled_controls("d").unwrap().is_empty());
    }

    #[test]
    fn the_peer_version_only_rises() {
        let (_dir, s) = open_store();
        s.insert_discussion(&discussion("d")).unwrap();
        assert_eq!(s.peer_version("d").unwrap(), 1);
        s.raise_peer_version("d", 2).unwrap();
        s.raise_peer_version("d", 1).unwrap();
        assert_eq!(s.peer_version("d").unwrap(), 2);
    }
}
