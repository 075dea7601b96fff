//! The `contacts` table: every contact seen on the network (or in a handshake), with its
//! certificate, last address and whether it was verified.

use rusqlite::params;

use super::rows::ContactRecord;
use super::{Store, StoreError};

impl Store {
    pub fn upsert_contact(&self, c: &ContactRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO contacts (fingerprint, name, cert, address, tcp_port, first_seen, last_seen,
                                   announce_time, verified, key_changed, origin, announce)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT(fingerprint) DO UPDATE SET name = ?2, cert = ?3, address = ?4,
                 tcp_port = ?5, last_seen = ?7, announce_time = ?8, verified = ?9,
                 key_changed = ?10, announce = COALESCE(?12, announce)",
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
                c.key_changed,
                c.origin,
                (!c.announce.is_empty()).then_some(&c.announce)
            ],
        )?;
        Ok(())
    }

    pub fn contacts(&self) -> Result<Vec<ContactRecord>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT fingerprint, name, cert, address, tcp_port, first_seen, last_seen,
                    announce_time, verified, key_changed, origin, COALESCE(announce, x'')
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
                origin: r.get(10)?,
                announce: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What a contact-list answer may carry: `(announce, address)` of up to `limit` contacts whose
    /// origin is one of `origins` (`broadcast`, `added`, `learned` = via a list or introduced), not
    /// marked never-share, not blocked, with a kept announce, other than `asker`; most recently
    /// seen first.
    pub fn shareable_contacts(
        &self,
        origins: &[&str],
        asker: &str,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, String)>, StoreError> {
        let (broadcast, added, learned) = (
            origins.contains(&"broadcast"),
            origins.contains(&"added"),
            origins.contains(&"learned"),
        );
        let mut st = self.conn.prepare(
            "SELECT announce, address FROM contacts
             WHERE announce IS NOT NULL AND never_share = 0 AND fingerprint != ?5
               AND fingerprint NOT IN (SELECT fingerprint FROM blocked)
               AND ((?1 AND origin = 'broadcast') OR (?2 AND origin = 'added')
                    OR (?3 AND (origin LIKE 'via %' OR origin LIKE 'introduced by %')))
             ORDER BY last_seen DESC LIMIT ?4",
        )?;
        let rows = st.query_map(
            params![broadcast, added, learned, limit as u64, asker],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Mark a contact never shared in lists (or shared again).
    pub fn set_never_share(&self, fingerprint: &str, never: bool) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE contacts SET never_share = ?2 WHERE fingerprint = ?1",
            params![fingerprint, never],
        )? > 0)
    }

    /// Whether `fingerprint` is blocked: its list entries are ignored. (The minimal form of the
    /// contacts part's block list, issue 10 part 1.)
    pub fn is_blocked(&self, fingerprint: &str) -> Result<bool, StoreError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM blocked WHERE fingerprint = ?1)",
            [fingerprint],
            |r| r.get(0),
        )?)
    }

    /// Block `fingerprint`.
    pub fn block(&self, fingerprint: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO blocked (fingerprint) VALUES (?1)",
            [fingerprint],
        )?;
        Ok(())
    }

    pub fn delete_contact(&self, fingerprint: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM contacts WHERE fingerprint = ?1", [fingerprint])?;
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
}
