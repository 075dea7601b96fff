//! The pure rules of the contact-list exchange: what a list entry must be before it is believed at
//! all, and how a checked entry merges into the contact list. No actor, no crypto: the announce
//! inside an entry is checked by [`crate::announce`] ([`parse_entry`] does its cheap checks with
//! [`Freshness::Relayed`]; the caller verifies the signature with
//! [`crate::announce::verify_parsed`] in between).

use std::net::IpAddr;

use thiserror::Error;

use crate::announce::{self, AnnounceRefused, Freshness};
use crate::store::ContactOrigin;
use crate::wire::{Announce, AnnounceBody, ListEntry};

/// Largest entry accepted or given (its relayed announce and address together).
pub const MAX_ENTRY_BYTES: usize = 2048;

/// Why a list entry was dropped.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("entry larger than {MAX_ENTRY_BYTES} bytes")]
    TooLarge,
    #[error("not an announce")]
    Malformed,
    #[error("announce format version {0}")]
    Version(u16),
    #[error("name too long or with control characters")]
    BadName,
    #[error("address is not an IP address")]
    BadAddress,
}

impl From<AnnounceRefused> for EntryError {
    fn from(e: AnnounceRefused) -> Self {
        match e {
            AnnounceRefused::Version(v) => EntryError::Version(v),
            AnnounceRefused::Name => EntryError::BadName,
            // `Stale` cannot come from a relayed parse and `BadSignature` not from a parse at all.
            AnnounceRefused::Malformed
            | AnnounceRefused::Stale
            | AnnounceRefused::BadSignature(_) => EntryError::Malformed,
        }
    }
}

/// An entry whose announce decodes and looks sane (its signature is still to be checked): the
/// announce's parts and the sharer's address hint (`None`: the sharer's own entry, reached at the
/// discussion's address).
#[derive(Debug)]
pub struct ParsedEntry {
    pub announce: Announce,
    pub body: AnnounceBody,
    pub address: Option<IpAddr>,
}

/// Size, then the announce's cheap checks ([`announce::parse`], no freshness window: a relayed
/// announce may be hours old), then the address hint.
pub fn parse_entry(entry: &ListEntry) -> Result<ParsedEntry, EntryError> {
    if entry.announce.len() + entry.address.len() > MAX_ENTRY_BYTES {
        return Err(EntryError::TooLarge);
    }
    let (announce, body) = announce::parse(&entry.announce, Freshness::Relayed)?;
    let address = match entry.address.as_str() {
        "" => None,
        a => Some(a.parse().map_err(|_| EntryError::BadAddress)?),
    };
    Ok(ParsedEntry {
        announce,
        body,
        address,
    })
}

/// How a verified entry merges, by fingerprint, into the contact list.
#[derive(Debug, PartialEq, Eq)]
pub enum Merge {
    /// A new contact, with its origin recorded once; `key_changed`: its name is known with another
    /// key (the same warning as discovery; the name keeps meaning the contact we knew).
    New { key_changed: bool },
    /// A contact we know, and the relayed announce is newer than ours: its announce, name and port
    /// are refreshed; its origin and address are ours and stay.
    Refresh,
    /// A contact we know, with an announce at least as new as this one: nothing changes.
    Stale,
}

/// `held`: the time of the announce we hold for this fingerprint, if it is a contact. A relayed
/// announce has no freshness window (it may be hours old), but is never older than what we hold.
pub fn decide(held: Option<u64>, time: u64, name_taken_by_other_key: bool) -> Merge {
    match held {
        None => Merge::New {
            key_changed: name_taken_by_other_key,
        },
        Some(held) if time > held => Merge::Refresh,
        Some(_) => Merge::Stale,
    }
}

/// The origin recorded for a contact learned from `sharer`'s list.
pub fn via(sharer_name: &str, sharer_fingerprint: &str) -> ContactOrigin {
    ContactOrigin::Via {
        fingerprint: sharer_fingerprint.to_string(),
        name: sharer_name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use crate::wire::ANNOUNCE_VERSION;

    fn entry(body: &AnnounceBody, address: &str) -> ListEntry {
        let announce = Announce {
            body: codec::encode(body).unwrap(),
            signature: vec![1],
            padding: vec![],
        };
        ListEntry {
            announce: codec::encode(&announce).unwrap(),
            address: address.into(),
        }
    }

    fn body(name: &str) -> AnnounceBody {
        AnnounceBody {
            version: ANNOUNCE_VERSION,
            name: name.into(),
            tcp_port: 4000,
            cert: vec![2],
            nonce: [0; 32],
            time: 5,
            reply: true,
        }
    }

    #[test]
    fn an_entry_is_parsed_or_dropped_with_its_reason() {
        let ok = parse_entry(&entry(&body("carol"), "10.0.0.3")).unwrap();
        assert_eq!(ok.body.name, "carol");
        assert_eq!(ok.address, Some("10.0.0.3".parse().unwrap()));
        assert_eq!(parse_entry(&entry(&body("me"), "")).unwrap().address, None);
        let mut v2 = body("x");
        v2.version = 2;
        assert_eq!(
            parse_entry(&entry(&v2, "1.2.3.4")).unwrap_err(),
            EntryError::Version(2)
        );
        assert_eq!(
            parse_entry(&entry(&body("a\u{1b}[2J"), "1.2.3.4")).unwrap_err(),
            EntryError::BadName
        );
        assert_eq!(
            parse_entry(&entry(&body(&"n".repeat(65)), "1.2.3.4")).unwrap_err(),
            EntryError::BadName
        );
        assert_eq!(
            parse_entry(&entry(&body("c"), "evil.example")).unwrap_err(),
            EntryError::BadAddress
        );
        let junk = ListEntry {
            announce: vec![9; 10],
            address: String::new(),
        };
        assert_eq!(parse_entry(&junk).unwrap_err(), EntryError::Malformed);
        let big = ListEntry {
            announce: vec![0; MAX_ENTRY_BYTES + 1],
            address: String::new(),
        };
        assert_eq!(parse_entry(&big).unwrap_err(), EntryError::TooLarge);
    }

    #[test]
    fn merging_is_by_fingerprint_and_never_goes_back_in_time() {
        assert_eq!(decide(None, 1, false), Merge::New { key_changed: false });
        assert_eq!(decide(None, 1, true), Merge::New { key_changed: true });
        // Old relayed announces are fine for a new contact, not against a newer one we hold.
        assert_eq!(decide(Some(10), 11, false), Merge::Refresh);
        assert_eq!(decide(Some(10), 10, false), Merge::Stale);
        assert_eq!(decide(Some(10), 3, true), Merge::Stale);
        assert_eq!(
            via("bob", "AB12"),
            ContactOrigin::Via {
                fingerprint: "AB12".into(),
                name: "bob".into()
            }
        );
    }
}
