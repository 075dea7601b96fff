//! What the user does to the contact table beyond verifying (remove a contact, block or unblock a
//! fingerprint), and the re-probing schedule of contacts added by address ([`super::probing`]).

use actix::prelude::*;

use super::{find, probing, ContactError, ContactRegistry};
use crate::events::now_secs;

/// Forget a contact (name or fingerprint prefix). It comes back if it announces itself again.
#[derive(Message)]
#[rtype(result = "Result<crate::store::ContactRecord, ContactError>")]
pub struct RemoveContact(pub String);

impl Handler<RemoveContact> for ContactRegistry {
    type Result = Result<crate::store::ContactRecord, ContactError>;
    fn handle(&mut self, m: RemoveContact, ctx: &mut Context<Self>) -> Self::Result {
        let found = find(self.contacts.values(), &m.0)?;
        self.contacts.remove(&found.fingerprint);
        self.heard_by_broadcast.remove(&found.fingerprint);
        let store = self.store.clone();
        let fp = found.fingerprint.clone();
        let node = self.node.clone();
        ctx.spawn(
            async move {
                if let Err(e) = store.run(move |s| s.delete_contact(&fp)).await {
                    log::warn!("[{node}] cannot remove contact: {e}");
                }
            }
            .into_actor(self),
        );
        Ok(found)
    }
}

/// A fingerprint as the user typed it, normalised (spaces removed, upper case), if it is one: 40
/// hexadecimal digits (OpenPGP v4) or 64 (v6).
pub fn parse_fingerprint(s: &str) -> Result<String, ContactError> {
    let hex: String = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_uppercase();
    if matches!(hex.len(), 40 | 64) && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(ContactError::NotAFingerprint(
            s.trim().chars().take(80).collect(),
        ))
    }
}

impl ContactRegistry {
    /// What `block`/`unblock` act on: a full fingerprint as typed; else, to block, a contact by
    /// name or fingerprint prefix (as every other command resolves it); to unblock, a prefix of a
    /// blocked fingerprint (a blocked key's contact is forgotten). Ambiguous or unknown: an error.
    fn resolve_block_target(&self, query: &str, blocking: bool) -> Result<String, ContactError> {
        if let Ok(fp) = parse_fingerprint(query) {
            return Ok(fp);
        }
        if blocking {
            return find(self.contacts.values(), query).map(|c| c.fingerprint);
        }
        let q = query.trim();
        let hex = q.replace(' ', "").to_uppercase();
        if hex.len() < 4 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ContactError::NotAFingerprint(q.chars().take(80).collect()));
        }
        let mut matches: Vec<&String> = self
            .blocked
            .iter()
            .filter(|f| f.starts_with(&hex))
            .collect();
        matches.sort();
        match matches.as_slice() {
            [] => Err(ContactError::NotFound(q.to_string())),
            [one] => Ok((*one).clone()),
            many => Err(ContactError::Ambiguous(
                q.to_string(),
                format!(
                    "{} blocked fingerprints match; use a longer prefix",
                    many.len()
                ),
            )),
        }
    }
}

/// The blocked fingerprints, sorted.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct ListBlocked;

impl Handler<ListBlocked> for ContactRegistry {
    type Result = Vec<String>;
    fn handle(&mut self, _: ListBlocked, _: &mut Context<Self>) -> Vec<String> {
        let mut all: Vec<String> = self.blocked.iter().cloned().collect();
        all.sort();
        all
    }
}

/// Block (`blocked: true`) or unblock a fingerprint. Blocking forgets its contact; its announces,
/// discussion requests and contact-list entries are ignored until it is unblocked. Answers the
/// normalised fingerprint once the change is stored.
#[derive(Message)]
#[rtype(result = "Result<String, ContactError>")]
pub struct Block {
    pub fingerprint: String,
    pub blocked: bool,
}

impl Handler<Block> for ContactRegistry {
    type Result = ResponseActFuture<Self, Result<String, ContactError>>;
    fn handle(&mut self, m: Block, _: &mut Context<Self>) -> Self::Result {
        let fp = match self.resolve_block_target(&m.fingerprint, m.blocked) {
            Ok(fp) => fp,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        if m.blocked {
            self.blocked.insert(fp.clone());
            self.contacts.remove(&fp);
            self.heard_by_broadcast.remove(&fp);
        } else {
            self.blocked.remove(&fp);
        }
        log::info!(
            "[{}] {} {fp}",
            self.node,
            if m.blocked { "blocked" } else { "unblocked" }
        );
        let store = self.store.clone();
        let f = fp.clone();
        Box::pin(
            async move {
                store
                    .run(move |s| s.set_blocked(&f, m.blocked, now_secs()))
                    .await
            }
            .into_actor(self)
            .map(move |res, act, _| {
                if let Err(e) = res {
                    log::warn!("[{}] cannot store the block of {fp}: {e}", act.node);
                }
                Ok(fp)
            }),
        )
    }
}

/// Whether a fingerprint is blocked: the entry points that take a peer's word (discovery, the
/// handshake's requests, contact lists, introductions) ignore a blocked one.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsBlocked(pub String);

impl Handler<IsBlocked> for ContactRegistry {
    type Result = bool;
    fn handle(&mut self, m: IsBlocked, _: &mut Context<Self>) -> bool {
        self.blocked.contains(&m.0)
    }
}

/// The contacts added by address that are due for a probe now: `(fingerprint, HOST:PORT)`.
#[derive(Message)]
#[rtype(result = "Vec<(String, String)>")]
pub struct DueProbes;

impl Handler<DueProbes> for ContactRegistry {
    type Result = MessageResult<DueProbes>;
    fn handle(&mut self, _: DueProbes, _: &mut Context<Self>) -> Self::Result {
        MessageResult(probing::due(
            self.contacts.values(),
            &self.heard_by_broadcast,
            now_secs(),
            self.interval_secs,
        ))
    }
}

/// A probe of a contact added by address ended: answered or not (its backoff).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Probed {
    pub fingerprint: String,
    pub answered: bool,
}

impl Handler<Probed> for ContactRegistry {
    type Result = ();
    fn handle(&mut self, m: Probed, ctx: &mut Context<Self>) {
        let interval = self.interval_secs;
        let Some(c) = self.contacts.get_mut(&m.fingerprint) else {
            return;
        };
        let Some(p) = &c.probe else {
            return;
        };
        c.probe = Some(probing::after_probe(p, m.answered, now_secs(), interval));
        let c = c.clone();
        self.persist(ctx, c);
    }
}

/// How many contacts carry an address to probe (bounded by [`probing::MAX_PROBED_ADDRESSES`]).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ProbedCount;

impl Handler<ProbedCount> for ContactRegistry {
    type Result = usize;
    fn handle(&mut self, _: ProbedCount, _: &mut Context<Self>) -> usize {
        self.contacts.values().filter(|c| c.probe.is_some()).count()
    }
}
