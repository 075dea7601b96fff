//! The `messages` table: both directions of every discussion, text sealed at rest
//! ([`super::sealing`]). Outgoing messages form the outbox (stored → sent → delivered, numbered
//! from the discussion's `next_out_seq`); incoming ones are stored exactly once and in order
//! (`last_in_seq`). The `sent` and `delivered` marks are relaxed writes ([`Store::relaxed`]),
//! everything else is durable when it returns.

use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{
    DeliveryState, Direction, DiscussionState, HistoryPage, Incoming, MessageKind, MessageRecord,
    Outgoing,
};
use super::sealing::{open_body, raw_message, seal_body};
use super::worker::Durability;
use super::{Store, StoreError};

/// The statements over the outbox. Each reads the schema's `outbox` partial index (`INDEXED BY`:
/// SQLite, without statistics, would take the primary key's range over the whole history, and
/// refuses to prepare the statement if the index cannot serve it; each names the index's condition
/// `direction = 'out' AND state != 'delivered'`), so each reads the undelivered rows only, never
/// the discussion's history (checked by `store::tests::outbox_statements_read_the_outbox_index`).
#[cfg(test)]
pub(super) const OUTBOX_STATEMENTS: &[&str] = &[
    HAS_UNDELIVERED,
    OUTBOX_FROM,
    NEWLY_DELIVERED_TEXT,
    DROP_DELIVERED_CONTROL_BODIES,
    MARK_DELIVERED,
];

const HAS_UNDELIVERED: &str =
    "SELECT EXISTS(SELECT 1 FROM messages INDEXED BY outbox WHERE discussion_id = ?1
     AND direction = 'out' AND state != 'delivered')";

const OUTBOX_FROM: &str = "SELECT discussion_id, direction, seq, time, body, state, kind
     FROM messages INDEXED BY outbox WHERE discussion_id = ?1 AND direction = 'out'
     AND state != 'delivered' AND seq >= ?2 ORDER BY seq LIMIT ?3";

/// The chat messages an acknowledgement up to `?2` delivers (control ones change silently).
const NEWLY_DELIVERED_TEXT: &str =
    "SELECT seq FROM messages INDEXED BY outbox WHERE discussion_id = ?1
     AND direction = 'out' AND state != 'delivered' AND seq <= ?2 AND kind = 'text'
     ORDER BY seq";

/// Acknowledged control messages are not history and will not be sent again: their bodies (an
/// introduction's offer carries its secret) are dropped. Runs before [`MARK_DELIVERED`].
const DROP_DELIVERED_CONTROL_BODIES: &str = "UPDATE messages INDEXED BY outbox SET body = X''
     WHERE discussion_id = ?1 AND direction = 'out' AND state != 'delivered' AND seq <= ?2
     AND kind = 'control' AND length(body) > 0";

const MARK_DELIVERED: &str = "UPDATE messages INDEXED BY outbox SET state = 'delivered'
     WHERE discussion_id = ?1
     AND direction = 'out' AND state != 'delivered' AND seq <= ?2";

impl Store {
    /// Put an outgoing message in the outbox with the next sequence number. When this returns, the
    /// message is on disk.
    pub fn queue_outgoing(
        &mut self,
        discussion_id: &str,
        body: &str,
        time: u64,
    ) -> Result<MessageRecord, StoreError> {
        self.queue_outgoing_kind(discussion_id, MessageKind::Text, body, time)
    }

    /// [`Self::queue_outgoing`] for a row of either kind (control messages: [`super::control`]).
    /// Grouped by the worker with other writes ([`super::worker::GroupedWrites`]).
    pub(super) fn queue_outgoing_kind(
        &mut self,
        discussion_id: &str,
        kind: MessageKind,
        body: &str,
        time: u64,
    ) -> Result<MessageRecord, StoreError> {
        let seq = self.write(Durability::Durable, |tx, cipher| {
            let (seq, state): (u64, DiscussionState) = tx
                .query_row(
                    "SELECT next_out_seq, state FROM discussions WHERE id = ?1",
                    [discussion_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
                .ok_or_else(|| StoreError::NoDiscussion(discussion_id.to_string()))?;
            if state != DiscussionState::Open {
                return Err(StoreError::Closed(discussion_id.to_string()));
            }
            let sealed = seal_body(cipher, discussion_id, Direction::Out, seq, body)?;
            tx.execute(
                "INSERT INTO messages (discussion_id, direction, seq, time, body, state, unread, kind)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7)",
                params![
                    discussion_id,
                    Direction::Out,
                    seq,
                    time,
                    sealed,
                    DeliveryState::Stored,
                    kind
                ],
            )?;
            tx.execute(
                "UPDATE discussions SET next_out_seq = ?2 WHERE id = ?1",
                params![discussion_id, seq + 1],
            )?;
            Ok(seq)
        })?;
        Ok(MessageRecord {
            discussion_id: discussion_id.to_string(),
            direction: Direction::Out,
            seq,
            time,
            body: body.to_string(),
            state: DeliveryState::Stored,
        })
    }

    /// `stored` → `sent` (never moves a delivered message back).
    pub fn mark_sent(&mut self, discussion_id: &str, seq: u64) -> Result<bool, StoreError> {
        Ok(!self.mark_sent_all(discussion_id, &[seq])?.is_empty())
    }

    /// [`Self::mark_sent`] for several messages in one relaxed write; returns those that changed.
    pub fn mark_sent_all(
        &mut self,
        discussion_id: &str,
        seqs: &[u64],
    ) -> Result<Vec<u64>, StoreError> {
        self.write(Durability::Relaxed, |tx, _| {
            let mut st = tx.prepare_cached(
                "UPDATE messages SET state = 'sent'
                 WHERE discussion_id = ?1 AND direction = 'out' AND seq = ?2 AND state = 'stored'",
            )?;
            let mut changed = Vec::new();
            for &seq in seqs {
                if st.execute(params![discussion_id, seq])? > 0 {
                    changed.push(seq);
                }
            }
            Ok(changed)
        })
    }

    /// Everything up to `upto` is delivered; returns the sequence numbers of chat messages that
    /// changed (control messages change too, silently: they are never shown).
    pub fn mark_delivered(
        &mut self,
        discussion_id: &str,
        upto: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let (seqs, controls) = self.relaxed(|conn| mark_delivered_in(conn, discussion_id, upto))?;
        if controls > 0 {
            // An acknowledged control message's body was dropped: its old page images leave the
            // WAL now (best effort; `secure_delete` clears the database pages).
            let _ = self.truncate_wal();
        }
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

    /// Whether an outgoing message of the discussion is not yet delivered (no body read).
    pub fn has_undelivered(&self, discussion_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(HAS_UNDELIVERED, [discussion_id], |r| r.get(0))?)
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
        self.store_incoming_kind(discussion_id, MessageKind::Text, seq, time, body)
    }

    /// [`Self::store_incoming`] for a row of either kind: a control message is stored not unread
    /// and not yet handled ([`super::control`]).
    pub(super) fn store_incoming_kind(
        &mut self,
        discussion_id: &str,
        kind: MessageKind,
        seq: u64,
        time: u64,
        body: &str,
    ) -> Result<(Incoming, u64), StoreError> {
        let (outcomes, upto) =
            self.store_incoming_run(discussion_id, &[(kind, seq, time, body.to_string())])?;
        Ok((outcomes[0], upto))
    }

    /// Store messages that arrived together (`(kind, seq, time, body)`, in arrival order) in one
    /// write: each exactly once and in order, as [`Self::store_incoming_kind`] would one after the
    /// other. Returns each one's outcome and the highest sequence number stored (what to
    /// acknowledge). Grouped by the worker with other writes.
    pub(super) fn store_incoming_run(
        &mut self,
        discussion_id: &str,
        messages: &[(MessageKind, u64, u64, String)],
    ) -> Result<(Vec<Incoming>, u64), StoreError> {
        self.write(Durability::Durable, |tx, cipher| {
            let mut last: u64 = tx
                .query_row(
                    "SELECT last_in_seq FROM discussions WHERE id = ?1",
                    [discussion_id],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| StoreError::NoDiscussion(discussion_id.to_string()))?;
            let first = last;
            let mut outcomes = Vec::with_capacity(messages.len());
            for (kind, seq, time, body) in messages {
                let (kind, seq, time) = (*kind, *seq, *time);
                if seq <= last {
                    outcomes.push(Incoming::Duplicate);
                    continue;
                }
                if seq != last + 1 {
                    outcomes.push(Incoming::Gap { expected: last + 1 });
                    continue;
                }
                let sealed = seal_body(cipher, discussion_id, Direction::In, seq, body)?;
                let text = kind == MessageKind::Text;
                tx.prepare_cached(
                    "INSERT INTO messages (discussion_id, direction, seq, time, body, state,
                         unread, kind, handled)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    discussion_id,
                    Direction::In,
                    seq,
                    time,
                    sealed,
                    DeliveryState::Received,
                    text,
                    kind,
                    text
                ])?;
                last = seq;
                outcomes.push(Incoming::Stored);
            }
            if last != first {
                tx.execute(
                    "UPDATE discussions SET last_in_seq = ?2 WHERE id = ?1",
                    params![discussion_id, last],
                )?;
            }
            Ok((outcomes, last))
        })
    }

    /// Up to `limit` undelivered outgoing messages (chat and control) with `seq >= from`, oldest
    /// first.
    pub fn outbox_from(
        &self,
        discussion_id: &str,
        from: u64,
        limit: u64,
    ) -> Result<Vec<Outgoing>, StoreError> {
        let mut st = self.conn.prepare(OUTBOX_FROM)?;
        let rows = st.query_map(params![discussion_id, from, limit], |r| {
            Ok((r.get::<_, MessageKind>(6)?, raw_message(r)?))
        })?;
        let raw = rows.collect::<Result<Vec<_>, _>>()?;
        raw.into_iter()
            .map(|(kind, r)| {
                let record = open_body(self.cipher.as_ref(), r)?;
                Ok(Outgoing { kind, record })
            })
            .collect()
    }

    /// The last `limit` messages, oldest first.
    pub fn history(
        &self,
        discussion_id: &str,
        limit: u64,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let page = HistoryPage {
            limit,
            ..HistoryPage::default()
        };
        Ok(self
            .history_page(discussion_id, page)?
            .into_iter()
            .map(|(_, m)| m)
            .collect())
    }

    /// A page of a discussion's messages, oldest first, each with its position (1 = the first
    /// message, in the order history shows them: time, then arrival). See [`HistoryPage`].
    pub fn history_page(
        &self,
        discussion_id: &str,
        page: HistoryPage,
    ) -> Result<Vec<(u64, MessageRecord)>, StoreError> {
        self.discussion(discussion_id)?;
        // Forward from `after` when only it is given; otherwise back from `before` (or the end).
        let forward = page.after.is_some() && page.before.is_none();
        let sql = format!(
            "SELECT discussion_id, direction, seq, time, body, state, pos FROM (
                 SELECT discussion_id, direction, seq, time, body, state,
                        ROW_NUMBER() OVER (ORDER BY time, rowid) AS pos
                 FROM messages WHERE discussion_id = ?1 AND kind = 'text')
             WHERE pos > ?2 AND pos < ?3 ORDER BY pos {} LIMIT ?4",
            if forward { "ASC" } else { "DESC" }
        );
        let mut st = self.conn.prepare(&sql)?;
        // SQLite integers are i64: a bound past it means "no bound".
        let before = page
            .before
            .map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let after = page
            .after
            .map_or(0, |a| i64::try_from(a).unwrap_or(i64::MAX));
        let limit = i64::try_from(page.limit).unwrap_or(i64::MAX);
        let rows = st.query_map(params![discussion_id, after, before, limit], |r| {
            Ok((r.get::<_, u64>(6)?, raw_message(r)?))
        })?;
        let raw = rows.collect::<Result<Vec<_>, _>>()?;
        let mut v = raw
            .into_iter()
            .map(|(pos, r)| Ok((pos, open_body(self.cipher.as_ref(), r)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        if !forward {
            v.reverse();
        }
        Ok(v)
    }

    pub fn mark_read(&self, discussion_id: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE messages SET unread = 0 WHERE discussion_id = ?1 AND unread = 1",
            [discussion_id],
        )?;
        Ok(())
    }
}

fn mark_delivered_in(
    conn: &mut Connection,
    discussion_id: &str,
    upto: u64,
) -> Result<(Vec<u64>, usize), StoreError> {
    let tx = conn.transaction()?;
    let seqs = {
        let mut st = tx.prepare(NEWLY_DELIVERED_TEXT)?;
        let rows = st.query_map(params![discussion_id, upto], |r| r.get(0))?;
        rows.collect::<Result<Vec<u64>, _>>()?
    };
    let controls = tx.execute(DROP_DELIVERED_CONTROL_BODIES, params![discussion_id, upto])?;
    tx.execute(MARK_DELIVERED, params![discussion_id, upto])?;
    tx.commit()?;
    Ok((seqs, controls))
}
