//! The `introductions` table (introductions we received: the other side, the secret sealed at
//! rest while it lives, the state) and `introductions_made` (introductions we made: the answers
//! we wait for). The rules are [`crate::introduction`]'s; every change of state goes through
//! [`Store::set_introduction_state`], which destroys the secret (sets it NULL; `secure_delete`
//! overwrites it, and the WAL is truncated after) whenever the new state holds none.

use rusqlite::{params, OptionalExtension, Row};

use super::{Store, StoreError};
use crate::introduction::{has_room, Answer, BadTransition, IntroState};

/// An introduction we received, as stored (without its secret).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReceivedIntroduction {
    /// Our own short number for it (what the user types).
    pub local_id: i64,
    pub introducer_fingerprint: String,
    /// The introducer's id for it (the same at both introduced sides).
    pub id: String,
    pub introducer_name: String,
    /// Our discussion with the introducer (where our answer goes).
    pub introducer_discussion: String,
    pub peer_fingerprint: String,
    pub peer_name: String,
    #[serde(skip)]
    pub peer_cert: Vec<u8>,
    /// The peer's own signed announce, as the introducer relayed it (if it had one).
    #[serde(skip)]
    pub peer_announce: Option<Vec<u8>>,
    /// The peer's address as the introducer saw it: a hint only.
    pub peer_address: String,
    pub peer_port: u16,
    /// The peer's name is known here with another key.
    pub key_changed: bool,
    pub state: IntroState,
    pub received: u64,
    pub expires: u64,
    /// The discussion it opened, once used.
    pub discussion_id: Option<String>,
}

/// A new introduction to keep, with its secret already sealed for our store.
#[derive(Debug, Clone)]
pub struct NewIntroduction {
    pub row: ReceivedIntroduction,
    pub sealed_secret: Vec<u8>,
}

/// An introduction we made.
#[derive(Debug, Clone, PartialEq)]
pub struct MadeIntroduction {
    pub id: String,
    pub a_fingerprint: String,
    pub a_discussion: String,
    pub a_answer: Answer,
    pub b_fingerprint: String,
    pub b_discussion: String,
    pub b_answer: Answer,
    pub created: u64,
    pub expires: u64,
    /// The outcome was sent to both sides.
    pub told: bool,
}

/// Why a received introduction was not kept.
#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    #[error("too many introductions waiting (from this introducer, or in all)")]
    Full,
    #[error("introduction already received")]
    Duplicate,
    #[error("{0}")]
    Store(#[from] StoreError),
}

const COLUMNS: &str =
    "local_id, introducer_fingerprint, id, introducer_name, introducer_discussion,
    peer_fingerprint, peer_name, peer_cert, peer_announce, peer_address, peer_port, key_changed,
    state, received, expires, discussion_id";

fn received(r: &Row<'_>) -> rusqlite::Result<ReceivedIntroduction> {
    let state: String = r.get(12)?;
    Ok(ReceivedIntroduction {
        local_id: r.get(0)?,
        introducer_fingerprint: r.get(1)?,
        id: r.get(2)?,
        introducer_name: r.get(3)?,
        introducer_discussion: r.get(4)?,
        peer_fingerprint: r.get(5)?,
        peer_name: r.get(6)?,
        peer_cert: r.get(7)?,
        peer_announce: r.get(8)?,
        peer_address: r.get(9)?,
        peer_port: r.get(10)?,
        key_changed: r.get(11)?,
        state: IntroState::from_column(&state).ok_or_else(|| unknown(12, "introduction state"))?,
        received: r.get(13)?,
        expires: r.get(14)?,
        discussion_id: r.get(15)?,
    })
}

fn unknown(col: usize, what: &'static str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        col,
        rusqlite::types::Type::Text,
        Box::new(super::UnknownValue {
            column: what,
            value: String::new(),
        }),
    )
}

fn made(r: &Row<'_>) -> rusqlite::Result<MadeIntroduction> {
    let answer = |i: usize| -> rusqlite::Result<Answer> {
        let s: String = r.get(i)?;
        Answer::from_column(&s).ok_or_else(|| unknown(i, "introduction answer"))
    };
    Ok(MadeIntroduction {
        id: r.get(0)?,
        a_fingerprint: r.get(1)?,
        a_discussion: r.get(2)?,
        a_answer: answer(3)?,
        b_fingerprint: r.get(4)?,
        b_discussion: r.get(5)?,
        b_answer: answer(6)?,
        created: r.get(7)?,
        expires: r.get(8)?,
        told: r.get(9)?,
    })
}

const LIVE: &str = "state IN ('pending', 'accepted', 'ready')";

impl Store {
    /// Keep a received introduction, within the bounds (per introducer and in all). Expired ones
    /// are ended first so they do not count.
    pub fn keep_introduction(&mut self, new: &NewIntroduction, now: u64) -> Result<i64, KeepError> {
        self.expire_introductions(now)?;
        self.durable()?;
        let tx = self.conn.transaction().map_err(StoreError::from)?;
        let r = &new.row;
        let count = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<usize, StoreError> {
            Ok(tx.query_row(sql, p, |row| row.get::<_, i64>(0))? as usize)
        };
        let exists = count(
            "SELECT COUNT(*) FROM introductions WHERE introducer_fingerprint = ?1 AND id = ?2",
            &[&r.introducer_fingerprint, &r.id],
        )?;
        if exists > 0 {
            return Err(KeepError::Duplicate);
        }
        let from = count(
            &format!(
                "SELECT COUNT(*) FROM introductions WHERE introducer_fingerprint = ?1 AND {LIVE}"
            ),
            &[&r.introducer_fingerprint],
        )?;
        let total = count(
            &format!("SELECT COUNT(*) FROM introductions WHERE {LIVE}"),
            &[],
        )?;
        if !has_room(from, total) {
            return Err(KeepError::Full);
        }
        tx.execute(
            "INSERT INTO introductions (introducer_fingerprint, id, introducer_name,
                 introducer_discussion, peer_fingerprint, peer_name, peer_cert, peer_announce,
                 peer_address, peer_port, key_changed, secret, state, received, expires)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            params![
                r.introducer_fingerprint,
                r.id,
                r.introducer_name,
                r.introducer_discussion,
                r.peer_fingerprint,
                r.peer_name,
                r.peer_cert,
                r.peer_announce,
                r.peer_address,
                r.peer_port,
                r.key_changed,
                new.sealed_secret,
                IntroState::Pending.as_str(),
                r.received,
                r.expires,
            ],
        )
        .map_err(StoreError::from)?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(StoreError::from)?;
        Ok(id)
    }

    /// Every introduction we received (ended ones too: they record where contacts came from),
    /// newest first.
    pub fn introductions(&self) -> Result<Vec<ReceivedIntroduction>, StoreError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM introductions ORDER BY local_id DESC"
        ))?;
        let rows = st.query_map([], received)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn introduction(&self, local_id: i64) -> Result<Option<ReceivedIntroduction>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM introductions WHERE local_id = ?1"),
                [local_id],
                received,
            )
            .optional()?)
    }

    /// The introduction `id` from `introducer`.
    pub fn introduction_by_id(
        &self,
        introducer: &str,
        id: &str,
    ) -> Result<Option<ReceivedIntroduction>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM introductions
                     WHERE introducer_fingerprint = ?1 AND id = ?2"
                ),
                [introducer, id],
                received,
            )
            .optional()?)
    }

    /// The sealed secret of a live introduction (None once destroyed).
    pub fn introduction_secret(&self, local_id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT secret FROM introductions WHERE local_id = ?1",
                [local_id],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()?
            .flatten())
    }

    /// The introduction that makes a request from `fingerprint` acceptable without asking the
    /// user at `now` (our user accepted it, within its window), with its sealed secret.
    pub fn introduction_for_request(
        &self,
        fingerprint: &str,
        now: u64,
    ) -> Result<Option<(ReceivedIntroduction, Vec<u8>)>, StoreError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {COLUMNS}, secret FROM introductions
             WHERE peer_fingerprint = ?1 AND state IN ('accepted', 'ready') AND secret IS NOT NULL
             ORDER BY local_id DESC"
        ))?;
        let mut rows = st.query([fingerprint])?;
        while let Some(r) = rows.next()? {
            let i = received(r)?;
            if i.state.accepts_request(now, i.expires) {
                return Ok(Some((i, r.get(16)?)));
            }
        }
        Ok(None)
    }

    /// Move an introduction to `to` (already checked by [`IntroState`]'s rules); when `to` holds
    /// no secret, the secret is destroyed in the same write. `discussion_id`: the discussion it
    /// opened (state `used`).
    pub fn set_introduction_state(
        &self,
        local_id: i64,
        to: IntroState,
        discussion_id: Option<&str>,
    ) -> Result<(), StoreError> {
        self.durable()?;
        if to.holds_secret() {
            self.conn.execute(
                "UPDATE introductions SET state = ?2 WHERE local_id = ?1",
                params![local_id, to.as_str()],
            )?;
        } else {
            self.conn.execute(
                "UPDATE introductions SET state = ?2, secret = NULL,
                     discussion_id = COALESCE(?3, discussion_id)
                 WHERE local_id = ?1",
                params![local_id, to.as_str(), discussion_id],
            )?;
            self.prune_ended_introductions()?;
            // Best effort: the old page images with the secret leave the WAL now, or at the next
            // destruction or start.
            let _ = self.truncate_wal();
        }
        Ok(())
    }

    /// Delete the oldest ended introductions (not `used`: those record contacts' origin) beyond
    /// [`crate::introduction::MAX_ENDED_INTRODUCTIONS_PER_INTRODUCER`] per introducer and
    /// [`crate::introduction::MAX_ENDED_INTRODUCTIONS`] in all.
    fn prune_ended_introductions(&self) -> Result<(), StoreError> {
        use crate::introduction::{
            MAX_ENDED_INTRODUCTIONS, MAX_ENDED_INTRODUCTIONS_PER_INTRODUCER,
        };
        const ENDED: &str = "state IN ('declined', 'cancelled', 'expired')";
        self.conn.execute(
            &format!(
                "DELETE FROM introductions WHERE {ENDED} AND local_id NOT IN (
                     SELECT local_id FROM introductions AS k
                     WHERE k.{ENDED} AND k.introducer_fingerprint = introductions.introducer_fingerprint
                     ORDER BY k.local_id DESC LIMIT ?1)"
            ),
            [MAX_ENDED_INTRODUCTIONS_PER_INTRODUCER as i64],
        )?;
        self.conn.execute(
            &format!(
                "DELETE FROM introductions WHERE {ENDED} AND local_id NOT IN (
                     SELECT local_id FROM introductions WHERE {ENDED}
                     ORDER BY local_id DESC LIMIT ?1)"
            ),
            [MAX_ENDED_INTRODUCTIONS as i64],
        )?;
        Ok(())
    }

    /// Apply `step` to the introduction's state and store the result.
    pub fn step_introduction(
        &self,
        local_id: i64,
        step: impl FnOnce(IntroState) -> Result<IntroState, BadTransition>,
        discussion_id: Option<&str>,
    ) -> Result<Result<ReceivedIntroduction, BadTransition>, StoreError> {
        let Some(i) = self.introduction(local_id)? else {
            return Err(StoreError::NoDiscussion(format!("introduction {local_id}")));
        };
        match step(i.state) {
            Ok(to) => {
                self.set_introduction_state(local_id, to, discussion_id)?;
                Ok(Ok(ReceivedIntroduction {
                    state: to,
                    discussion_id: discussion_id.map(str::to_string).or(i.discussion_id),
                    ..i
                }))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    /// End every live introduction whose window passed at `now` (secret destroyed); those ended.
    pub fn expire_introductions(&self, now: u64) -> Result<Vec<ReceivedIntroduction>, StoreError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM introductions WHERE {LIVE} AND expires <= ?1"
        ))?;
        let ended: Vec<ReceivedIntroduction> =
            st.query_map([now], received)?.collect::<Result<_, _>>()?;
        drop(st);
        for i in &ended {
            self.set_introduction_state(i.local_id, IntroState::Expired, None)?;
        }
        self.conn
            .execute("DELETE FROM introductions_made WHERE expires <= ?1", [now])?;
        Ok(ended)
    }

    /// Where each contact met through an introduction came from: the first used introduction
    /// for its fingerprint (recorded once, never rewritten). `(peer fingerprint, introducer
    /// fingerprint, introducer name)`.
    pub fn introduced_contacts(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT peer_fingerprint, introducer_fingerprint, introducer_name FROM introductions
             WHERE local_id IN (SELECT MIN(local_id) FROM introductions WHERE state = 'used'
                                GROUP BY peer_fingerprint)",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether any of `fingerprints` is blocked (the `blocked` table of issue 10's contacts part):
    /// an introduction of, or by, a blocked fingerprint is ignored.
    pub fn any_blocked(&self, fingerprints: &[&str]) -> Result<bool, StoreError> {
        for fp in fingerprints {
            let blocked: bool = self.conn.query_row(
                "SELECT EXISTS(SELECT 1 FROM blocked WHERE fingerprint = ?1)",
                [fp],
                |r| r.get(0),
            )?;
            if blocked {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Record an introduction we made, within [`crate::introduction::MAX_INTRODUCTIONS_MADE_PENDING`].
    pub fn keep_made_introduction(&self, m: &MadeIntroduction) -> Result<bool, StoreError> {
        self.durable()?;
        let waiting: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM introductions_made WHERE told = 0",
            [],
            |r| r.get(0),
        )?;
        if waiting as usize >= crate::introduction::MAX_INTRODUCTIONS_MADE_PENDING {
            return Ok(false);
        }
        self.conn.execute(
            "INSERT INTO introductions_made (id, a_fingerprint, a_discussion, a_answer,
                 b_fingerprint, b_discussion, b_answer, created, expires, told)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                m.id,
                m.a_fingerprint,
                m.a_discussion,
                m.a_answer.as_str(),
                m.b_fingerprint,
                m.b_discussion,
                m.b_answer.as_str(),
                m.created,
                m.expires,
                m.told
            ],
        )?;
        Ok(true)
    }

    /// Record the answer of `from` (one of the two introduced) to the introduction `id` we made;
    /// the introduction as it now is (None: unknown id, or `from` is neither side, or already
    /// told).
    pub fn answer_made_introduction(
        &self,
        id: &str,
        from: &str,
        answer: Answer,
    ) -> Result<Option<MadeIntroduction>, StoreError> {
        self.durable()?;
        let Some(m) = self
            .conn
            .query_row(
                "SELECT id, a_fingerprint, a_discussion, a_answer, b_fingerprint, b_discussion,
                        b_answer, created, expires, told
                 FROM introductions_made WHERE id = ?1",
                [id],
                made,
            )
            .optional()?
        else {
            return Ok(None);
        };
        if m.told {
            return Ok(None);
        }
        let column = if m.a_fingerprint == from && m.a_answer == Answer::Waiting {
            "a_answer"
        } else if m.b_fingerprint == from && m.b_answer == Answer::Waiting {
            "b_answer"
        } else {
            return Ok(None);
        };
        self.conn.execute(
            &format!("UPDATE introductions_made SET {column} = ?2 WHERE id = ?1"),
            params![id, answer.as_str()],
        )?;
        let mut m = m;
        if column == "a_answer" {
            m.a_answer = answer;
        } else {
            m.b_answer = answer;
        }
        Ok(Some(m))
    }

    /// The outcome of the introduction we made was sent to both sides: it is over for us.
    pub fn made_introduction_told(&self, id: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM introductions_made WHERE id = ?1", [id])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::introduction::{INTRODUCTION_ID_BYTES, MAX_PENDING_INTRODUCTIONS_PER_INTRODUCER};

    fn new(introducer: &str, id: &str, peer: &str, expires: u64) -> NewIntroduction {
        NewIntroduction {
            row: ReceivedIntroduction {
                local_id: 0,
                introducer_fingerprint: introducer.into(),
                id: id.into(),
                introducer_name: "carol".into(),
                introducer_discussion: "d".into(),
                peer_fingerprint: peer.into(),
                peer_name: "bob".into(),
                peer_cert: vec![1],
                peer_announce: None,
                peer_address: "127.0.0.1".into(),
                peer_port: 1,
                key_changed: false,
                state: IntroState::Pending,
                received: 0,
                expires,
                discussion_id: None,
            },
            sealed_secret: b"sealed secret".to_vec(),
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        (dir, s)
    }

    fn id(n: u8) -> String {
        format!("{n:02x}").repeat(INTRODUCTION_ID_BYTES)
    }

    #[test]
    fn an_accepted_introduction_matches_its_peer_until_it_ends_and_then_its_secret_is_gone() {
        let (_d, mut s) = store();
        let local = s
            .keep_introduction(&new("C", &id(1), "B", 100), 10)
            .unwrap();
        assert!(matches!(
            s.keep_introduction(&new("C", &id(1), "B", 100), 10),
            Err(KeepError::Duplicate)
        ));
        assert!(
            s.introduction_for_request("B", 10).unwrap().is_none(),
            "not accepted yet"
        );
        s.step_introduction(local, |st| st.decide(true), None)
            .unwrap()
            .unwrap();
        let (i, sealed) = s.introduction_for_request("B", 10).unwrap().unwrap();
        assert_eq!((i.local_id, sealed), (local, b"sealed secret".to_vec()));
        assert!(
            s.introduction_for_request("A", 10).unwrap().is_none(),
            "another requester"
        );
        assert!(
            s.introduction_for_request("B", 100).unwrap().is_none(),
            "window over"
        );
        let used = s
            .step_introduction(local, IntroState::used, Some("disc"))
            .unwrap()
            .unwrap();
        assert_eq!(used.state, IntroState::Used);
        assert_eq!(s.introduction_secret(local).unwrap(), None);
        assert!(s.introduction_for_request("B", 10).unwrap().is_none());
        assert_eq!(
            s.introduced_contacts().unwrap(),
            vec![("B".to_string(), "C".to_string(), "carol".to_string())]
        );
    }

    #[test]
    fn declined_and_expired_introductions_lose_their_secret() {
        let (_d, mut s) = store();
        let a = s
            .keep_introduction(&new("C", &id(1), "B", 100), 10)
            .unwrap();
        let b = s.keep_introduction(&new("C", &id(2), "D", 50), 10).unwrap();
        s.step_introduction(a, |st| st.decide(false), None)
            .unwrap()
            .unwrap();
        assert_eq!(s.introduction_secret(a).unwrap(), None);
        assert!(s
            .step_introduction(a, |st| st.decide(true), None)
            .unwrap()
            .is_err());
        let ended = s.expire_introductions(50).unwrap();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].local_id, b);
        assert_eq!(
            s.introduction(b).unwrap().unwrap().state,
            IntroState::Expired
        );
        assert_eq!(s.introduction_secret(b).unwrap(), None);
        assert!(s.introduced_contacts().unwrap().is_empty());
    }

    #[test]
    fn a_blocked_fingerprint_is_seen_among_the_parties() {
        let (_d, s) = store();
        assert!(!s.any_blocked(&["A", "B"]).unwrap());
        s.set_blocked("B", true, 0).unwrap();
        assert!(s.any_blocked(&["A", "B"]).unwrap());
        assert!(!s.any_blocked(&["A"]).unwrap());
    }

    #[test]
    fn live_introductions_are_bounded_per_introducer() {
        let (_d, mut s) = store();
        for n in 0..MAX_PENDING_INTRODUCTIONS_PER_INTRODUCER as u8 {
            s.keep_introduction(&new("C", &id(n), "B", 100), 10)
                .unwrap();
        }
        assert!(matches!(
            s.keep_introduction(&new("C", &id(99), "B", 100), 10),
            Err(KeepError::Full)
        ));
        s.keep_introduction(&new("E", &id(99), "B", 100), 10)
            .expect("another introducer has its own share");
        // Once the window passes they no longer count.
        s.keep_introduction(&new("C", &id(98), "B", 200), 100)
            .expect("expired ones make room");
    }

    #[test]
    fn the_introducer_records_each_side_once_and_only_from_the_two_sides() {
        let (_d, s) = store();
        let m = MadeIntroduction {
            id: id(1),
            a_fingerprint: "A".into(),
            a_discussion: "da".into(),
            a_answer: Answer::Waiting,
            b_fingerprint: "B".into(),
            b_discussion: "db".into(),
            b_answer: Answer::Waiting,
            created: 0,
            expires: 100,
            told: false,
        };
        assert!(s.keep_made_introduction(&m).unwrap());
        assert!(s
            .answer_made_introduction(&id(1), "X", Answer::Accepted)
            .unwrap()
            .is_none());
        let after_a = s
            .answer_made_introduction(&id(1), "A", Answer::Accepted)
            .unwrap()
            .unwrap();
        assert_eq!(
            (after_a.a_answer, after_a.b_answer),
            (Answer::Accepted, Answer::Waiting)
        );
        assert!(
            s.answer_made_introduction(&id(1), "A", Answer::Declined)
                .unwrap()
                .is_none(),
            "one answer per side"
        );
        let after_b = s
            .answer_made_introduction(&id(1), "B", Answer::Declined)
            .unwrap()
            .unwrap();
        assert_eq!(after_b.b_answer, Answer::Declined);
        s.made_introduction_told(&id(1)).unwrap();
        assert!(s
            .answer_made_introduction(&id(1), "B", Answer::Accepted)
            .unwrap()
            .is_none());
    }
}
