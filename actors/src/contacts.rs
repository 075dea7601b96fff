//! Contact registry actor: who has been seen on the network, keyed by identity fingerprint.
//!
//! Messages: [`AnnounceSeen`] (from discovery, the prober or a contact list, after the announce's
//! signature checked out), [`ListContacts`], [`FindContact`], [`SetVerified`], and in
//! [`manage`]: [`RemoveContact`], [`Block`], [`IsBlocked`], the re-probing schedule ([`DueProbes`],
//! [`Probed`]). Persists through the store worker and emits
//! `contact_seen` / `key_changed` events. Lifecycle: started by the node with the contacts loaded from
//! the store; lives as long as the node.
//!
//! A name is only a hint. A known name announced by another key becomes a *separate* contact marked
//! `key_changed`: it never inherits the old contact's verification or discussions. Names are
//! compared as `find` matches them (trimmed, ASCII case-insensitive), and a known key that renames
//! itself onto another key's name is flagged the same way (the flag stays).
//!
//! Each contact records where it came from ([`ContactOrigin`]) once, from the message that brought
//! it; a later message about the same fingerprint never rewrites it. A blocked fingerprint's
//! announces are ignored, whoever brings them.
//!
//! The table is bounded (`limits.max_contacts`) and evicts the least recently seen contact when full,
//! but never a *kept* one: verified, with a discussion (open, closing or closed; [`KeepContact`]),
//! added by the user by address, or introduced.
//! Otherwise a flood of validly signed announces (fresh keys cost nothing) could evict an offline
//! real contact, after which an impostor with its name would look clean and the real one, back,
//! would look like a key change. A name shared by several contacts refers to the kept one.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use actix::prelude::*;
use thiserror::Error;

use crate::announce::VerifiedAnnounce;
use crate::events::{now_secs, Event, EventBus};
use crate::store::{ContactOrigin, ContactRecord, ProbeState, StoreHandle};

mod manage;
pub mod probing;

pub use manage::{
    parse_fingerprint, Block, DueProbes, IsBlocked, ListBlocked, Probed, ProbedCount, RemoveContact,
};

mod learn;
pub use learn::{LearnContacts, Learned, Merged};

/// An unchanged contact is written to disk at most this often (announces come every few seconds).
const PERSIST_EVERY_SECS: u64 = 60;

#[derive(Debug, Error, PartialEq)]
pub enum ContactError {
    #[error("no contact matches '{0}'")]
    NotFound(String),
    #[error("'{0}' is ambiguous: {1}")]
    Ambiguous(String, String),
    #[error("'{0}' is not a fingerprint (40 or 64 hexadecimal digits), a contact's name or a fingerprint prefix (4+ hex digits)")]
    NotAFingerprint(String),
}

pub struct ContactRegistry {
    node: String,
    contacts: HashMap<String, ContactRecord>,
    /// Fingerprints of the peers we have (or had) a discussion with: one per discussion at most.
    with_discussion: HashSet<String>,
    max_contacts: usize,
    store: StoreHandle,
    events: EventBus,
    /// Fingerprints whose announces (and requests, and list entries) are ignored.
    blocked: HashSet<String>,
    /// When each contact was last heard by broadcast (contacts in the table only): a contact added
    /// by address is re-probed only when broadcast does not reach it.
    heard_by_broadcast: HashMap<String, u64>,
    /// The announce interval: the pace of re-probing.
    interval_secs: u64,
}

impl ContactRegistry {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: &str,
        loaded: Vec<ContactRecord>,
        with_discussion: HashSet<String>,
        blocked: Vec<String>,
        max_contacts: usize,
        interval_secs: u64,
        store: StoreHandle,
        events: EventBus,
    ) -> Self {
        Self {
            node: node.to_string(),
            contacts: loaded
                .into_iter()
                .map(|c| (c.fingerprint.clone(), c))
                .collect(),
            with_discussion,
            max_contacts,
            store,
            events,
            blocked: blocked.into_iter().collect(),
            heard_by_broadcast: HashMap::new(),
            interval_secs,
        }
    }

    fn persist(&self, ctx: &mut Context<Self>, c: ContactRecord) {
        let store = self.store.clone();
        let node = self.node.clone();
        ctx.spawn(
            async move {
                if let Err(e) = store.run(move |s| s.upsert_contact(&c)).await {
                    log::warn!("[{node}] cannot store contact: {e}");
                }
            }
            .into_actor(self),
        );
    }

    /// Verified, with a discussion, added by the user or introduced: never evicted (a flood of
    /// announces must not push out a contact the user asked for), and the owner of its name.
    fn is_kept(&self, c: &ContactRecord) -> bool {
        c.verified
            || self.with_discussion.contains(&c.fingerprint)
            || c.probe.is_some()
            || matches!(
                c.origin,
                ContactOrigin::Added | ContactOrigin::Introduced { .. }
            )
    }

    /// The one kept contact called `name` (case-insensitive), if exactly one is.
    fn keeper_of_name(&self, name: &str) -> Option<&ContactRecord> {
        let mut kept = self
            .contacts
            .values()
            .filter(|c| c.name.eq_ignore_ascii_case(name.trim()) && self.is_kept(c));
        match (kept.next(), kept.next()) {
            (Some(c), None) => Some(c),
            _ => None,
        }
    }

    /// Another key's contact that `name` would be taken for (as `find` matches names: trimmed,
    /// case-insensitive), the kept one first: a name announced by a second key is flagged.
    fn other_with_name(&self, name: &str, fingerprint: &str) -> Option<String> {
        let same = |c: &&ContactRecord| {
            c.fingerprint != fingerprint && c.name.trim().eq_ignore_ascii_case(name.trim())
        };
        let others: Vec<&ContactRecord> = self.contacts.values().filter(same).collect();
        others
            .iter()
            .find(|c| self.is_kept(c))
            .or(others.first())
            .map(|c| c.fingerprint.clone())
    }

    /// `fingerprint` announced `name`, which another key's contact `old` has: flag it, tell the
    /// user. Fresh keys cost nothing: the line is limited per address like other hostile input.
    fn flag_key_changed(&self, name: &str, fingerprint: &str, old: String, address: &IpAddr) {
        crate::log_limit::hostile(
            log::Level::Warn,
            &self.node,
            address,
            format_args!("name '{name}' now announced by key {fingerprint} (known as {old})"),
        );
        self.events.emit(Event::KeyChanged {
            name: name.to_string(),
            old_fingerprint: old,
            new_fingerprint: fingerprint.to_string(),
        });
    }

    /// Whether one more contact fits, evicting the least recently seen one that is not kept if the
    /// table is full.
    fn make_room(&mut self, ctx: &mut Context<Self>) -> bool {
        if self.contacts.len() >= self.max_contacts {
            self.evict_one(ctx);
        }
        self.contacts.len() < self.max_contacts
    }

    /// Add the new contact `c`, seen at `address`: the key-changed warning if its name is another
    /// key's contact (`previous`), the `contact_seen` event, the table and the disk. The same
    /// steps whoever brought it (discovery, a probe, a list, an introduction).
    fn insert_new(
        &mut self,
        ctx: &mut Context<Self>,
        c: ContactRecord,
        previous: Option<String>,
        address: &IpAddr,
    ) {
        if let Some(old) = previous {
            self.flag_key_changed(&c.name, &c.fingerprint, old, address);
        }
        self.events.emit(Event::ContactSeen { contact: c.clone() });
        self.contacts.insert(c.fingerprint.clone(), c.clone());
        self.persist(ctx, c);
    }

    /// Make room for one more: forget the least recently seen contact that is not kept.
    fn evict_one(&mut self, ctx: &mut Context<Self>) {
        let victim = self
            .contacts
            .values()
            .filter(|c| !self.is_kept(c))
            .min_by_key(|c| c.last_seen)
            .map(|c| c.fingerprint.clone());
        if let Some(fp) = victim {
            self.contacts.remove(&fp);
            self.heard_by_broadcast.remove(&fp);
            let store = self.store.clone();
            ctx.spawn(
                async move {
                    let _ = store.run(move |s| s.delete_contact(&fp)).await;
                }
                .into_actor(self),
            );
        }
    }
}

impl Actor for ContactRegistry {
    type Context = Context<Self>;
}

/// A verified announce showed this identity at this address. Build it with
/// [`AnnounceSeen::new`] from a [`VerifiedAnnounce`] ([`crate::announce::verify`]).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct AnnounceSeen {
    pub fingerprint: String,
    pub cert: Vec<u8>,
    pub name: String,
    pub address: IpAddr,
    pub tcp_port: u16,
    /// The time inside the announce; an announce not newer than the last one is a replay.
    pub time: u64,
    /// What brought it: the origin of a new contact (an existing one keeps its own).
    pub origin: ContactOrigin,
    /// The announce as signed, unpadded (kept to relay it).
    pub announce: Vec<u8>,
    /// `HOST:PORT` the user added it by: the contact is re-probed from now on.
    pub probe_address: Option<String>,
}

impl AnnounceSeen {
    /// `announce`, seen at `address`, brought by `origin`.
    pub fn new(announce: VerifiedAnnounce, address: IpAddr, origin: ContactOrigin) -> Self {
        Self {
            fingerprint: announce.fingerprint,
            cert: announce.cert,
            name: announce.name,
            address,
            tcp_port: announce.tcp_port,
            time: announce.time,
            origin,
            announce: announce.signed,
            probe_address: None,
        }
    }
}

impl Handler<AnnounceSeen> for ContactRegistry {
    /// Whether the announce was accepted (false: replayed or stale).
    type Result = bool;

    fn handle(&mut self, a: AnnounceSeen, ctx: &mut Context<Self>) -> bool {
        if self.blocked.contains(&a.fingerprint) {
            return false;
        }
        let now = now_secs();
        let address = a.address.to_string();
        if a.origin == ContactOrigin::Broadcast && self.contacts.contains_key(&a.fingerprint) {
            self.heard_by_broadcast.insert(a.fingerprint.clone(), now);
        }
        let interval = self.interval_secs;
        if let (Some(c), Some(added)) = (self.contacts.get_mut(&a.fingerprint), &a.probe_address) {
            // The user added a contact we know: re-probed (and kept) from now on, its origin kept.
            if c.probe.as_ref().is_none_or(|p| &p.address != added) {
                c.probe = Some(ProbeState {
                    address: added.clone(),
                    failures: 0,
                    next: now + interval,
                });
                let c = c.clone();
                self.persist(ctx, c);
            }
        }
        // A known key renaming itself onto another key's name is as suspect as a new key with it.
        let renamed_onto = match self.contacts.get(&a.fingerprint) {
            Some(c) if c.name != a.name && a.time > c.announce_time => {
                self.other_with_name(&a.name, &a.fingerprint)
            }
            _ => None,
        };
        if let Some(c) = self.contacts.get_mut(&a.fingerprint) {
            if a.time <= c.announce_time {
                return false;
            }
            let changed = c.address != address || c.tcp_port != a.tcp_port || c.name != a.name;
            if renamed_onto.is_some() {
                c.key_changed = true;
            }
            let stale = now.saturating_sub(c.last_seen) >= PERSIST_EVERY_SECS;
            let first_announce = c.announce.is_empty();
            c.announce = a.announce;
            c.address = address;
            c.tcp_port = a.tcp_port;
            c.name = a.name;
            c.last_seen = now;
            c.announce_time = a.time;
            let c = c.clone();
            if let Some(old) = renamed_onto {
                self.flag_key_changed(&c.name, &c.fingerprint, old, &a.address);
            }
            if changed {
                self.events.emit(Event::ContactSeen { contact: c.clone() });
            }
            if changed || stale || first_announce {
                self.persist(ctx, c);
            }
            return true;
        }
        if !self.make_room(ctx) {
            crate::log_limit::hostile(
                log::Level::Warn,
                &self.node,
                &a.address,
                format_args!(
                    "contact table full of verified contacts and contacts with a discussion; \
                     {} not added",
                    a.fingerprint
                ),
            );
            return false;
        }
        let previous = self.other_with_name(&a.name, &a.fingerprint);
        let c = ContactRecord {
            fingerprint: a.fingerprint.clone(),
            name: a.name.clone(),
            cert: a.cert,
            address,
            tcp_port: a.tcp_port,
            first_seen: now,
            last_seen: now,
            announce_time: a.time,
            verified: false,
            key_changed: previous.is_some(),
            origin: a.origin.clone(),
            announce: a.announce,
            probe: a.probe_address.map(|address| ProbeState {
                address,
                failures: 0,
                next: now + interval,
            }),
        };
        crate::log_limit::hostile(
            log::Level::Info,
            &self.node,
            &a.address,
            format_args!("new contact {} {}", c.name, c.fingerprint),
        );
        if a.origin == ContactOrigin::Broadcast {
            self.heard_by_broadcast.insert(a.fingerprint.clone(), now);
        }
        self.insert_new(ctx, c, previous, &a.address);
        true
    }
}

#[derive(Message)]
#[rtype(result = "Vec<ContactRecord>")]
pub struct ListContacts;

impl Handler<ListContacts> for ContactRegistry {
    type Result = MessageResult<ListContacts>;
    fn handle(&mut self, _: ListContacts, _: &mut Context<Self>) -> Self::Result {
        let mut v: Vec<_> = self.contacts.values().cloned().collect();
        v.sort_by(|a, b| (&a.name, &a.fingerprint).cmp(&(&b.name, &b.fingerprint)));
        MessageResult(v)
    }
}

/// Whether `name` is known with a key other than `fingerprint` (a request from a new key that
/// claims a known name is flagged to the user).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct NameHasOtherKey {
    pub name: String,
    pub fingerprint: String,
}

impl Handler<NameHasOtherKey> for ContactRegistry {
    type Result = bool;
    fn handle(&mut self, q: NameHasOtherKey, _: &mut Context<Self>) -> bool {
        // The contact we verified or talk to owns its name: newcomers taking it are flagged, it
        // is not (else every request of a genuine contact would carry the warning).
        if self
            .keeper_of_name(&q.name)
            .is_some_and(|c| c.fingerprint == q.fingerprint)
        {
            return false;
        }
        self.other_with_name(&q.name, &q.fingerprint).is_some()
    }
}

/// Resolve a name (exact, case-insensitive) or a fingerprint prefix (4+ hex digits).
#[derive(Message)]
#[rtype(result = "Result<ContactRecord, ContactError>")]
pub struct FindContact(pub String);

impl Handler<FindContact> for ContactRegistry {
    type Result = Result<ContactRecord, ContactError>;
    fn handle(&mut self, q: FindContact, _: &mut Context<Self>) -> Self::Result {
        let found = find(self.contacts.values(), &q.0);
        if let Err(ContactError::Ambiguous(..)) = &found {
            // A name taken by newcomers still means the contact we verified or talk to.
            if let Some(c) = self.keeper_of_name(&q.0) {
                return Ok(c.clone());
            }
        }
        found
    }
}

/// A discussion with this peer was created: its contact is kept from now on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct KeepContact {
    pub fingerprint: String,
}

impl Handler<KeepContact> for ContactRegistry {
    type Result = ();
    fn handle(&mut self, m: KeepContact, _: &mut Context<Self>) {
        self.with_discussion.insert(m.fingerprint);
    }
}

/// Shared by contacts and discussions: name or fingerprint prefix.
pub fn find<'a>(
    all: impl Iterator<Item = &'a ContactRecord>,
    query: &str,
) -> Result<ContactRecord, ContactError> {
    let q = query.trim();
    let hex = q.replace(' ', "").to_uppercase();
    let is_fpr = hex.len() >= 4 && hex.chars().all(|c| c.is_ascii_hexdigit());
    let matches: Vec<&ContactRecord> = all
        .filter(|c| c.name.eq_ignore_ascii_case(q) || (is_fpr && c.fingerprint.starts_with(&hex)))
        .collect();
    match matches.as_slice() {
        [] => Err(ContactError::NotFound(q.to_string())),
        [one] => Ok((*one).clone()),
        many => Err(ContactError::Ambiguous(
            q.to_string(),
            format!(
                "{} contacts match ({}); use a longer fingerprint prefix",
                many.len(),
                many.iter()
                    .map(|c| format!(
                        "{} {}",
                        c.name,
                        &c.fingerprint[..16.min(c.fingerprint.len())]
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

#[derive(Message)]
#[rtype(result = "Result<ContactRecord, ContactError>")]
pub struct SetVerified {
    pub query: String,
    pub verified: bool,
}

impl Handler<SetVerified> for ContactRegistry {
    type Result = Result<ContactRecord, ContactError>;
    fn handle(&mut self, m: SetVerified, ctx: &mut Context<Self>) -> Self::Result {
        let fp = find(self.contacts.values(), &m.query)?.fingerprint;
        let c = self
            .contacts
            .get_mut(&fp)
            .ok_or_else(|| ContactError::NotFound(m.query.clone()))?;
        c.verified = m.verified;
        if m.verified {
            c.key_changed = false;
        }
        let c = c.clone();
        self.persist(ctx, c.clone());
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, fp: &str) -> ContactRecord {
        ContactRecord {
            fingerprint: fp.into(),
            name: name.into(),
            cert: vec![],
            address: "127.0.0.1".into(),
            tcp_port: 1,
            first_seen: 0,
            last_seen: 0,
            announce_time: 0,
            verified: false,
            key_changed: false,
            origin: ContactOrigin::Broadcast,
            announce: vec![],
            probe: None,
        }
    }

    #[test]
    fn find_by_name_or_prefix() {
        let all = [
            c("bob", "ABCD1111"),
            c("Bob", "ABCD2222"),
            c("carol", "EEEE0000"),
        ];
        assert_eq!(find(all.iter(), "carol").unwrap().fingerprint, "EEEE0000");
        assert_eq!(find(all.iter(), "abcd 2").unwrap().fingerprint, "ABCD2222");
        assert!(matches!(
            find(all.iter(), "bob"),
            Err(ContactError::Ambiguous(..))
        ));
        assert!(matches!(
            find(all.iter(), "dave"),
            Err(ContactError::NotFound(_))
        ));
        assert!(matches!(
            find(all.iter(), "ab"),
            Err(ContactError::NotFound(_))
        ));
    }
}
