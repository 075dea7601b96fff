//! Contacts learned from a peer's list (issue 10, part 2): verified entries merged by fingerprint
//! into the registry by the rules of [`crate::exchange::merge`]. A new contact records its origin
//! (`via NAME FINGERPRINT`) once; a known one keeps its origin and address and only takes a newer
//! announce; a name known with another key raises the key-changed warning, as discovery does,
//! and the name keeps meaning the contact we verified or talk to.

use std::net::IpAddr;

use super::*;
use crate::exchange::merge::{decide, Merge};

/// One verified entry of a list.
#[derive(Debug, Clone)]
pub struct Learned {
    pub fingerprint: String,
    pub name: String,
    pub cert: Vec<u8>,
    /// The sharer's hint.
    pub address: IpAddr,
    pub tcp_port: u16,
    /// The time inside the announce.
    pub time: u64,
    /// The announce, relayed unchanged.
    pub announce: Vec<u8>,
}

/// Merge verified entries of one list; `origin` is recorded on the new contacts.
#[derive(Message)]
#[rtype(result = "Merged")]
pub struct LearnContacts {
    pub entries: Vec<Learned>,
    pub origin: ContactOrigin,
}

/// What a merge did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Merged {
    /// Names of the new contacts.
    pub learned: Vec<String>,
    /// Entries for contacts we already had (refreshed or not).
    pub known: u64,
    /// Names of new contacts whose name was known with another key.
    pub key_changed: Vec<String>,
    /// Entries not merged because the table is full of kept contacts.
    pub no_room: u64,
}

impl Handler<LearnContacts> for ContactRegistry {
    type Result = MessageResult<LearnContacts>;

    fn handle(&mut self, m: LearnContacts, ctx: &mut Context<Self>) -> Self::Result {
        let mut merged = Merged::default();
        let now = now_secs();
        for e in m.entries {
            let held = self.contacts.get(&e.fingerprint).map(|c| c.announce_time);
            let other = self.other_with_name(&e.name, &e.fingerprint);
            match decide(held, e.time, other.is_some()) {
                Merge::Stale => merged.known += 1,
                Merge::Refresh => {
                    merged.known += 1;
                    let Some(c) = self.contacts.get_mut(&e.fingerprint) else {
                        continue;
                    };
                    let renamed = c.name != e.name;
                    c.name = e.name.clone();
                    c.tcp_port = e.tcp_port;
                    c.announce_time = e.time;
                    c.announce = e.announce;
                    // Renamed onto a name another key holds: flagged, and the flag is what is
                    // written to disk too (it survives a restart).
                    let onto = other.filter(|_| renamed);
                    if onto.is_some() {
                        c.key_changed = true;
                    }
                    let c = c.clone();
                    if let Some(old) = onto {
                        self.flag_key_changed(&e.name, &e.fingerprint, old, &e.address);
                    }
                    self.persist(ctx, c);
                }
                Merge::New { key_changed } => {
                    if !self.make_room(ctx) {
                        merged.no_room += 1;
                        continue;
                    }
                    let c = ContactRecord {
                        fingerprint: e.fingerprint.clone(),
                        name: e.name.clone(),
                        cert: e.cert,
                        address: e.address.to_string(),
                        tcp_port: e.tcp_port,
                        first_seen: now,
                        last_seen: now,
                        announce_time: e.time,
                        verified: false,
                        key_changed,
                        origin: m.origin.clone(),
                        announce: e.announce,
                        probe: None,
                    };
                    if other.is_some() {
                        merged.key_changed.push(e.name.clone());
                    }
                    merged.learned.push(e.name);
                    self.insert_new(ctx, c, other, &e.address);
                }
            }
        }
        MessageResult(merged)
    }
}
