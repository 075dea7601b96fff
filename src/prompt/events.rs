//! How the core's events show while a chat view is on screen: this discussion's messages and
//! changes, and a one-line notice for what happens elsewhere (another discussion's message, a
//! request). A request announced here is followed up with one line when it ends (accepted,
//! refused, cancelled by the requester, expired, failed).

use std::collections::HashMap;

use console::style;
use pgpchat_actors::api::{self, Event};

use super::lines;
use crate::safe_text;

/// Columns of another discussion's message shown in its notice.
const PREVIEW_COLUMNS: usize = 40;

/// Requests announced in the view and not ended yet, followed up with one line when they end:
/// at most this many (a flood of requests is announced, not all followed up).
const MAX_FOLLOWED_REQUESTS: usize = 64;

/// Every discussion's peer, by the discussion's id: (name, fingerprint).
pub(super) type Peers = HashMap<String, (String, String)>;

/// How notices name the discussion `id`: by its peer (terminal-safe), and, when that peer has
/// several discussions with us, by its short id too (`bob (1a2b3c4d)`, as the picker and `/list`
/// show it), so they can be told apart.
pub(super) fn label(peers: &Peers, id: &str) -> String {
    let Some((name, _)) = peers.get(id) else {
        return "someone".into();
    };
    let name = safe_text::line(name);
    if several(peers, id) {
        format!("{name} ({})", short_id(id))
    } else {
        name
    }
}

/// Whether the peer of discussion `id` has other discussions with us.
fn several(peers: &Peers, id: &str) -> bool {
    peers.get(id).is_some_and(|(_, fingerprint)| {
        peers.values().filter(|(_, f)| f == fingerprint).count() > 1
    })
}

/// The first [`super::chat::SHORT_ID`] hex digits of a discussion's id.
pub(super) fn short_id(id: &str) -> &str {
    id.get(..super::chat::SHORT_ID).unwrap_or(id)
}

/// What the view on screen is, and the peers of every discussion (by id).
pub(super) struct Scope {
    pub discussion: String,
    /// The peer's name (terminal-safe), for its messages' lines.
    pub peer: String,
    pub peers: Peers,
    /// Requests announced here and not ended: id → (name shown, fingerprint).
    pub requests: HashMap<u64, (String, String)>,
    /// Requests accepted while the view was shown, whose handshake may still fail: fingerprint →
    /// name shown.
    pub accepted: HashMap<String, String>,
}

impl Scope {
    pub(super) fn new(discussion: &str, peers: Peers) -> Self {
        Self {
            discussion: discussion.to_string(),
            peer: peers
                .get(discussion)
                .map_or_else(String::new, |(name, _)| safe_text::line(name)),
            peers,
            requests: HashMap::new(),
            accepted: HashMap::new(),
        }
    }
}

/// How a request announced in the view ended, from the core's reason (`request_closed`).
fn request_end(reason: &str, name: &str) -> String {
    match reason {
        "accepted" => "accepted".into(),
        "refused" => "refused".into(),
        "withdrawn by the requester" => format!("cancelled by {name}"),
        "no decision in time" => "expired (no decision in time)".into(),
        other => format!("ended ({})", safe_text::line(other)),
    }
}

/// An event as the view shows it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Shown {
    /// A line of this conversation.
    Line(String),
    /// The peer's message in this discussion.
    Theirs(api::Message),
    /// Our own message: printed when its delivery state is known, or a moment later.
    Own(api::Message),
    /// One of our messages is delivered (several are told on one line).
    Delivered(u64),
    /// Something elsewhere: a notice, with the bell if it is on.
    Elsewhere(String),
    Nothing,
}

pub(super) fn show(e: &Event, scope: &mut Scope) -> Shown {
    let here = |id: &str| id == scope.discussion;
    match e {
        Event::Message { message } if here(&message.discussion_id) => {
            if message.direction == api::Direction::Out {
                Shown::Own(message.clone())
            } else {
                Shown::Theirs(message.clone())
            }
        }
        Event::Message { message } if message.direction == api::Direction::In => {
            let id = &message.discussion_id;
            let who = label(&scope.peers, id);
            // `/switch` takes the name, or the short id when the name does not say which.
            let to = match scope.peers.get(id) {
                Some((name, _)) if !several(&scope.peers, id) => safe_text::line(name),
                _ => short_id(id).to_string(),
            };
            let preview = lines::fit(&safe_text::line(&message.body), PREVIEW_COLUMNS);
            Shown::Elsewhere(format!("» {who}: {}  (/switch {to})", preview.trim_start()))
        }
        Event::Delivery {
            discussion_id,
            seq,
            state: api::DeliveryState::Delivered,
        } if here(discussion_id) => Shown::Delivered(*seq),
        Event::Connection {
            discussion_id,
            connected,
        } if here(discussion_id) => Shown::Line(lines::notice(&format!(
            "({} {})",
            label(&scope.peers, discussion_id),
            if *connected {
                "connected"
            } else {
                "disconnected; messages wait in the outbox"
            }
        ))),
        Event::DiscussionClosed {
            discussion_id,
            by_peer,
        } if here(discussion_id) => Shown::Line(lines::notice(&format!(
            "(discussion closed{})",
            if *by_peer { " by the peer" } else { "" }
        ))),
        // Our new key is active: the peer has it (`/rotate`, or a rotation by itself).
        Event::KeyRotated {
            discussion_id,
            key_id,
        } if here(discussion_id) => Shown::Line(lines::notice(&format!(
            "(your key is now {}; the old one is being destroyed)",
            safe_text::line(key_id)
        ))),
        Event::DiscussionOpened {
            discussion_id,
            peer_name,
            peer_fingerprint,
        } => {
            // A second discussion with this view's peer: its notices name it by its id from now.
            scope.peers.insert(
                discussion_id.clone(),
                (peer_name.clone(), peer_fingerprint.clone()),
            );
            // An accepted request's handshake succeeded: nothing more to follow.
            scope.accepted.remove(peer_fingerprint);
            Shown::Nothing
        }
        Event::Request { request } => {
            let name = safe_text::line(&request.name);
            if scope.requests.len() < MAX_FOLLOWED_REQUESTS {
                scope
                    .requests
                    .insert(request.id, (name.clone(), request.fingerprint.clone()));
            }
            Shown::Elsewhere(format!(
                "» request from {name}: Ctrl-C, then Requests in the menu"
            ))
        }
        // The request announced here ended: one short line says how.
        Event::RequestClosed { request_id, reason } => match scope.requests.remove(request_id) {
            Some((name, fingerprint)) => {
                if reason == "accepted" && scope.accepted.len() < MAX_FOLLOWED_REQUESTS {
                    scope.accepted.insert(fingerprint, name.clone());
                }
                Shown::Elsewhere(format!(
                    "» request from {name}: {}",
                    request_end(reason, &name)
                ))
            }
            None => Shown::Nothing,
        },
        // An accepted request's handshake failed (wrong secret, interception).
        Event::HandshakeFailed {
            peer_fingerprint,
            reason,
        } => match scope.accepted.remove(peer_fingerprint) {
            Some(name) => Shown::Elsewhere(format!(
                "» request from {name}: failed ({})",
                safe_text::line(reason)
            )),
            None => Shown::Nothing,
        },
        Event::Introduction { introduction } => Shown::Elsewhere(format!(
            "» {} introduces {}: Ctrl-C, then Introductions in the menu",
            safe_text::line(&introduction.introducer.name),
            safe_text::line(&introduction.peer_name)
        )),
        _ => Shown::Nothing,
    }
}

/// The line for messages delivered after they were printed: how many (their sequence numbers are
/// shown nowhere, so they would mean nothing).
pub(super) fn delivered_line(count: usize) -> String {
    lines::notice(&format!(
        "✓✓ delivered: {count} earlier message{}",
        if count == 1 { "" } else { "s" }
    ))
}

/// A notice about something elsewhere, standing out from the conversation.
pub(super) fn elsewhere_line(text: &str, bell: bool) -> String {
    format!(
        "{}{}",
        style(text).yellow(),
        if bell { "\u{7}" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgpchat_actors::api::{Introducer, Introduction, IntroductionState};

    /// One discussion, "d", with bob.
    fn bob() -> Peers {
        HashMap::from([("d".to_string(), ("bob".to_string(), "B0".repeat(20)))])
    }

    fn message(discussion: &str) -> Event {
        Event::Message {
            message: api::Message {
                discussion_id: discussion.into(),
                direction: api::Direction::In,
                seq: 1,
                time: 0,
                body: "hi".into(),
                state: api::DeliveryState::Received,
                position: None,
            },
        }
    }

    /// With one discussion per peer, notices name the peer; once the peer has a second one,
    /// every notice names each by its short id too, and `/switch` is given the id.
    #[test]
    fn notices_name_a_discussion_by_its_short_id_when_its_peer_has_several() {
        let this = "1a2b3c4d".repeat(4);
        let other = "9f8e7d6c".repeat(4);
        let peers = HashMap::from([
            (this.clone(), ("bob".to_string(), "B0".repeat(20))),
            ("e".repeat(32), ("carol".to_string(), "C0".repeat(20))),
        ]);
        let mut scope = Scope::new(&this, peers);
        assert_eq!(scope.peer, "bob");
        let connected = Event::Connection {
            discussion_id: this.clone(),
            connected: true,
        };
        console::set_colors_enabled(false);
        assert_eq!(
            show(&connected, &mut scope),
            Shown::Line(lines::notice("(bob connected)"))
        );
        assert_eq!(
            show(&message(&"e".repeat(32)), &mut scope),
            Shown::Elsewhere("» carol: hi  (/switch carol)".into())
        );
        // bob opens a second discussion.
        let opened = Event::DiscussionOpened {
            discussion_id: other.clone(),
            peer_name: "bob".into(),
            peer_fingerprint: "B0".repeat(20),
        };
        assert_eq!(show(&opened, &mut scope), Shown::Nothing);
        assert_eq!(
            show(&connected, &mut scope),
            Shown::Line(lines::notice("(bob (1a2b3c4d) connected)"))
        );
        assert_eq!(
            show(&message(&other), &mut scope),
            Shown::Elsewhere("» bob (9f8e7d6c): hi  (/switch 9f8e7d6c)".into())
        );
    }

    /// An accepted request whose handshake then fails is followed up twice: accepted, failed.
    #[test]
    fn an_accepted_request_that_fails_is_said_to_have_failed() {
        let mut scope = Scope::new("d", bob());
        let request = api::PendingRequest {
            id: 7,
            name: "alice".into(),
            fingerprint: "AB".repeat(20),
            address: "127.0.0.1".into(),
            received: 0,
            key_changed: false,
        };
        assert!(matches!(
            show(&Event::Request { request }, &mut scope),
            Shown::Elsewhere(_)
        ));
        let closed = Event::RequestClosed {
            request_id: 7,
            reason: "accepted".into(),
        };
        assert_eq!(
            show(&closed, &mut scope),
            Shown::Elsewhere("» request from alice: accepted".into())
        );
        // Said once: the same end again is nothing.
        assert_eq!(show(&closed, &mut scope), Shown::Nothing);
        let failed = Event::HandshakeFailed {
            peer_fingerprint: "AB".repeat(20),
            reason: "wrong secret".into(),
        };
        assert_eq!(
            show(&failed, &mut scope),
            Shown::Elsewhere("» request from alice: failed (wrong secret)".into())
        );
        assert_eq!(show(&failed, &mut scope), Shown::Nothing);
    }

    /// Our key of this discussion rotated: one notice here; another discussion's rotation is not
    /// this view's business. The key id from the core is shown terminal-safe.
    #[test]
    fn a_key_rotation_is_one_notice_in_its_own_discussion_only() {
        console::set_colors_enabled(false);
        let mut scope = Scope::new("d", bob());
        let rotated = |id: &str, key: &str| Event::KeyRotated {
            discussion_id: id.into(),
            key_id: key.into(),
        };
        assert_eq!(
            show(&rotated("d", "0123456789ABCDEF"), &mut scope),
            Shown::Line(lines::notice(
                "(your key is now 0123456789ABCDEF; the old one is being destroyed)"
            ))
        );
        assert_eq!(
            show(&rotated("e", "0123456789ABCDEF"), &mut scope),
            Shown::Nothing
        );
        match show(&rotated("d", "AB\u{1b}[2J"), &mut scope) {
            Shown::Line(l) => assert!(!l.contains('\u{1b}'), "{l:?}"),
            other => panic!("{other:?}"),
        }
    }

    /// An introduction gets its `»` line in the chat view, as a request does.
    #[test]
    fn an_introduction_is_announced_in_the_chat_view() {
        let introduction = Introduction {
            id: 1,
            introducer: Introducer {
                fingerprint: "AB".repeat(20),
                name: "carol".into(),
            },
            peer_name: "dave".into(),
            peer_fingerprint: "CD".repeat(20),
            peer_address: "127.0.0.1".into(),
            peer_port: 47480,
            key_changed: false,
            state: IntroductionState::Pending,
            received: 0,
            expires: 0,
            discussion_id: None,
        };
        let mut scope = Scope::new("d", bob());
        match show(&Event::Introduction { introduction }, &mut scope) {
            Shown::Elsewhere(t) => {
                assert!(t.starts_with("» carol introduces dave"), "{t}");
            }
            other => panic!("not announced: {other:?}"),
        }
    }
}
