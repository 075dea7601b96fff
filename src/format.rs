//! Human-readable output: times, fingerprints, a message, an event. Every string that may come from
//! a peer goes through `safe_text`.

use pgpchat_actors::api::{self, Event, Message};
use pgpchat_actors::offline::fingerprint_groups;

use crate::safe_text;

/// Seconds since the epoch, now (0 if the clock is before 1970).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) from seconds since the epoch.
pub fn time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// "12s ago", "5m ago", ...
pub fn ago(secs: u64, now: u64) -> String {
    let d = now.saturating_sub(secs);
    match d {
        0..=59 => format!("{d}s ago"),
        60..=3599 => format!("{}m ago", d / 60),
        3600..=86_399 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86_400),
    }
}

/// The first 16 characters of a fingerprint (by characters: never splits one).
pub fn short_fpr(f: &str) -> &str {
    let end = f.char_indices().nth(16).map_or(f.len(), |(i, _)| i);
    &f[..end]
}

/// One message: `2026-11-24 18:00:00      bob: hello  [delivered]`. The body's own lines continue
/// indented under its first; control characters in the body or the name show escaped.
pub fn format_message(m: &Message, peer: Option<&str>) -> String {
    let out = m.direction == api::Direction::Out;
    let who = if out {
        "me".to_string()
    } else {
        safe_text::line(peer.unwrap_or("them"))
    };
    let state = if out {
        format!("  [{}]", delivery(m.state))
    } else {
        String::new()
    };
    let head = format!("{} {:>8}: ", time(m.time), who);
    let body = safe_text::block(&m.body, head.chars().count());
    format!("{head}{body}{state}")
}

/// What merging a peer's contact list did, in one line (names come from peers: escaped).
pub fn list_merged(m: &pgpchat_actors::api::ListMerged) -> String {
    let names = |v: &[String]| {
        v.iter()
            .map(|n| safe_text::line(n))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Where the list came from, then each new contact's name (both chosen by peers: escaped).
    let from = match &m.origin {
        Some(api::ContactOrigin::Via { name, .. }) => format!("from {}: ", safe_text::line(name)),
        _ => String::new(),
    };
    let mut line = format!(
        "{from}{} new contact(s){}; {} already known",
        m.learned.len(),
        match (&m.learned[..], &m.origin) {
            ([], _) => String::new(),
            (_, Some(o)) => format!(
                ": {} (shown as \"{}\")",
                names(&m.learned),
                safe_text::line(&o.to_string())
            ),
            (_, None) => format!(": {}", names(&m.learned)),
        },
        m.known
    );
    if !m.key_changed.is_empty() {
        line.push_str(&format!(
            "; WARNING: known name(s) with another key: {} (the name still means the key you knew)",
            names(&m.key_changed)
        ));
    }
    if m.dropped > 0 {
        line.push_str(&format!("; {} entries dropped (bad signature)", m.dropped));
    }
    if m.blocked > 0 {
        line.push_str(&format!("; {} blocked ignored", m.blocked));
    }
    if m.no_room > 0 {
        line.push_str(&format!("; {} not added (contact table full)", m.no_room));
    }
    line
}

/// A one-line human description of an event.
pub fn describe_event(e: &Event) -> String {
    // Every string of an event may come from a peer.
    let s = |t: &str| safe_text::line(t);
    match e {
        Event::ContactSeen { contact } => format!(
            "contact {} {} at {}",
            s(&contact.name),
            short_fpr(&s(&contact.fingerprint)),
            s(&contact.address)
        ),
        Event::KeyChanged {
            name,
            old_fingerprint,
            new_fingerprint,
        } => format!(
            "WARNING: '{}' is now announced by another key {} (was {})",
            s(name),
            s(new_fingerprint),
            s(old_fingerprint)
        ),
        Event::Request { request } => format!(
            "request {} from {} {}",
            request.id,
            s(&request.name),
            fingerprint_groups(&s(&request.fingerprint))
        ),
        Event::RequestClosed { request_id, reason } => {
            format!("request {} {}", request_id, s(reason))
        }
        Event::ListRequested {
            peer_name,
            peer_fingerprint,
            shared,
            refused,
        } => {
            let answer = if *refused {
                "refused (asked too often)".to_string()
            } else {
                format!("{shared} contacts shared (setting sharing.share)")
            };
            format!(
                "{} {} asked for your contact list: {answer}",
                s(peer_name),
                short_fpr(&s(peer_fingerprint))
            )
        }
        Event::RequestRefused {
            name,
            fingerprint,
            address,
            reason,
        } => format!(
            "request from {} {} at {} refused without asking you: {}",
            s(name),
            fingerprint_groups(&s(fingerprint)),
            s(address),
            s(reason)
        ),
        Event::DiscussionOpened {
            discussion_id,
            peer_name,
            ..
        } => format!("discussion {} with {} open", s(discussion_id), s(peer_name)),
        Event::HandshakeFailed {
            peer_fingerprint,
            reason,
        } => format!(
            "handshake with {} failed: {}",
            short_fpr(&s(peer_fingerprint)),
            s(reason)
        ),
        Event::Message { message } => format!(
            "[{}] {}",
            s(&message.discussion_id),
            format_message(message, None)
        ),
        Event::Delivery {
            discussion_id,
            seq,
            state,
        } => format!(
            "[{}] message {} {}",
            s(discussion_id),
            seq,
            delivery(*state)
        ),
        Event::Connection {
            discussion_id,
            connected,
        } => format!(
            "[{}] {}",
            s(discussion_id),
            if *connected {
                "connected"
            } else {
                "disconnected"
            }
        ),
        Event::Introduction { introduction: i } => format!(
            "introduction {}: {} introduces {} {}{} (accept-introduction {} / decline-introduction {})",
            i.id,
            s(&i.introducer.name),
            s(&i.peer_name),
            fingerprint_groups(&s(&i.peer_fingerprint)),
            if i.key_changed {
                " — WARNING: this name is known here with another key"
            } else {
                ""
            },
            i.id,
            i.id
        ),
        Event::IntroductionEnded {
            introduction,
            state,
        } => format!("introduction {introduction} {}", introduction_state(*state)),
        Event::DiscussionClosed {
            discussion_id,
            by_peer,
        } => format!(
            "discussion {} closed{}",
            s(discussion_id),
            if *by_peer { " by the peer" } else { "" }
        ),
        Event::KeyRotated {
            discussion_id,
            key_id,
        } => format!(
            "discussion {}: new encryption key {} in use, the old one destroyed",
            s(discussion_id),
            s(key_id)
        ),
        Event::Unknown => "an event this pgpchat does not know (a newer core)".to_string(),
    }
}

/// A delivery state as the core names it.
pub fn delivery(s: api::DeliveryState) -> &'static str {
    match s {
        api::DeliveryState::Stored => "stored",
        api::DeliveryState::Sent => "sent",
        api::DeliveryState::Delivered => "delivered",
        api::DeliveryState::Received => "received",
    }
}

/// A discussion state as the core names it.
pub fn state(s: api::DiscussionState) -> &'static str {
    match s {
        api::DiscussionState::Open => "open",
        api::DiscussionState::Closing => "closing",
        api::DiscussionState::Closed => "closed",
    }
}

/// An introduction's state in words.
pub fn introduction_state(s: pgpchat_actors::api::IntroductionState) -> &'static str {
    use pgpchat_actors::api::IntroductionState as S;
    match s {
        S::Pending => "waiting for your decision",
        S::Accepted => "accepted, waiting for the other side",
        S::Ready => "accepted by both, opening",
        S::Used => "used: the discussion is open",
        S::Declined => "declined",
        S::Cancelled => "declined by the other side",
        S::Expired => "expired",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_time() {
        assert_eq!(super::time(0), "1970-01-01 00:00:00");
        assert_eq!(super::time(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(super::ago(100, 160), "1m ago");
    }

    /// `contacts --from PEER` says whom it asked, names the new contacts (escaped) and the origin
    /// recorded for them.
    #[test]
    fn a_merged_list_names_the_new_contacts_and_where_they_came_from() {
        use pgpchat_actors::api::{ContactOrigin, ListMerged};
        let mut m = ListMerged {
            learned: vec!["carol".into(), "ev\u{1b}il".into()],
            known: 1,
            key_changed: vec![],
            no_room: 0,
            dropped: 0,
            blocked: 0,
            origin: Some(ContactOrigin::Via {
                fingerprint: "AB".into(),
                name: "bob".into(),
            }),
        };
        assert_eq!(
            super::list_merged(&m),
            "from bob: 2 new contact(s): carol, ev\\x1bil (shown as \"via bob\"); 1 already known"
        );
        m.learned.clear();
        assert_eq!(
            super::list_merged(&m),
            "from bob: 0 new contact(s); 1 already known"
        );
    }
}
