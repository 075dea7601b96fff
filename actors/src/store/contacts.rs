//! The `contacts` table: every contact seen on the network (or in a handshake, or added by
//! address), with its certificate, last address, where it came from, its last signed announce and
//! whether it was verified; and the `blocked` table of fingerprints whose announces, requests and
//! list entries are ignored.

use rusqlite::params;

use super::rows::{ContactOrigin, ContactRecord, ProbeState};
use super::{Store, StoreError};

impl Store {
    /// Insert or update a contact. Its origin is written once, when it is inserted: an update
    /// never rewrites where a contact came from.
    pub fn upsert_contact(&self, c: &ContactRecord) -> Result<(), StoreError> {
        let (origin_fingerprint, origin_name) = c.origin.peer().unwrap_or(("", ""));
        let probe = c.probe.as_ref();
        self.conn.execute(
            "INSERT INTO contacts (fingerprint, name, cert, address, tcp_port, first_seen, last_seen,
                                   announce_time, verified, key_changed, origin,
                                   origin_fingerprint, origin_name, announce, probe_address,
                                   probe_failures, next_probe)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
             ON CONFLICT(fingerprint) DO UPDATE SET name = ?2, cert = ?3, address = ?4,
                 tcp_port = ?5, last_seen = ?7, announce_time = ?8, verified = ?9,
                 key_changed = ?10, announce = ?14, probe_address = ?15, probe_failures = ?16,
                 next_probe = ?17",
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
                c.origin.kind(),
                origin_fingerprint,
                origin_name,
                c.announce,
                probe.map(|p| &p.address),
                probe.map_or(0, |p| p.failures),
                probe.map_or(0, |p| p.next),
            ],
        )?;
        Ok(())
    }

    pub fn contacts(&self) -> Result<Vec<ContactRecord>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT fingerprint, name, cert, address, tcp_port, first_seen, last_seen,
                    announce_time, verified, key_changed, origin, origin_fingerprint, origin_name,
                    announce, probe_address, probe_failures, next_probe
             FROM contacts ORDER BY name, fingerprint",
        )?;
        let rows = st.query_map([], |r| {
            let kind: String = r.get(10)?;
            let origin =
                ContactOrigin::from_columns(&kind, r.get(11)?, r.get(12)?).ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        10,
                        rusqlite::types::Type::Text,
                        Box::new(super::UnknownValue {
                            column: "contact origin",
                            value: kind.clone(),
                        }),
                    )
                })?;
            let probe_address: Option<String> = r.get(14)?;
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
                origin,
                announce: r.get(13)?,
                probe: match probe_address {
                    Some(address) => Some(ProbeState {
                        address,
                        failures: r.get(15)?,
                        next: r.get(16)?,
                    }),
                    None => None,
                },
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
                    OR (?3 AND origin IN ('via', 'introduced')))
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

    /// Whether `fingerprint` is blocked: its announces, requests and list entries are ignored.
    pub fn is_blocked(&self, fingerprint: &str) -> Result<bool, StoreError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM blocked WHERE fingerprint = ?1)",
            [fingerprint],
            |r| r.get(0),
        )?)
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

    /// The blocked fingerprints.
    pub fn blocked(&self) -> Result<Vec<String>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT fingerprint FROM blocked ORDER BY fingerprint")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Block (`true`) or unblock a fingerprint; blocking also forgets its contact.
    pub fn set_blocked(
        &self,
        fingerprint: &str,
        blocked: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        if blocked {
            self.conn.execute(
                "INSERT OR IGNORE INTO blocked (fingerprint, since) VALUES (?1, ?2)",
                params![fingerprint, now],
            )?;
            self.delete_contact(fingerprint)?;
        } else {
            self.conn
                .execute("DELETE FROM blocked WHERE fingerprint = ?1", [fingerprint])?;
        }
        Ok(())
    }
}
