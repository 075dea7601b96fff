//! The `contacts` table: every contact seen on the network (or in a handshake), with its
//! certificate, last address and whether it was verified.

use rusqlite::params;

use super::rows::ContactRecord;
use super::{Store, StoreError};

impl Store {
    pub fn upsert_contact(&self, c: &ContactRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO contacts (fingerprint, name, cert, address, tcp_port, first_seen, last_seen,
                                   announce_time, verified, key_changed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT(fingerprint) DO UPDATE SET name = ?2, cert = ?3, address = ?4,
                 tcp_port = ?5, last_seen = ?7, announce_time = ?8, verified = ?9,
                 key_changed = ?10",
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
                c.key_changed
            ],
        )?;
        Ok(())
    }

    pub fn contacts(&self) -> Result<Vec<ContactRecord>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT fingerprint, name, cert, address, tcp_port, first_seen, last_seen,
                    announce_time, verified, key_changed
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
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
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
