//! How the core's events show while a chat view is on screen: this discussion's messages and
//! changes, and a one-line notice for what happens elsewhere (another discussion's message, a
//! request).

use std::collections::HashMap;

use console::style;
use pgpchat_actors::api::{self, Event};

use super::lines;
use crate::safe_text;

/// Columns of another discussion's message shown in its notice.
const PREVIEW_COLUMNS: usize = 40;

/// What the view on screen is, and the names of the other discussions (by id).
pub(super) struct Scope {
    pub discussion: String,
    pub peer: String,
    pub names: HashMap<String, String>,
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
            let who = scope
                .names
                .get(&message.discussion_id)
                .map_or_else(|| "someone".to_string(), |n| safe_text::line(n));
            let preview = lines::fit(&safe_text::line(&message.body), PREVIEW_COLUMNS);
            Shown::Elsewhere(format!(
                "» {who}: {}  (/switch {who})",
                preview.trim_start()
            ))
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
            scope.peer,
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
        Event::DiscussionOpened {
            discussion_id,
            peer_name,
            ..
        } => {
            scope.names.insert(discussion_id.clone(), peer_name.clone());
            Shown::Nothing
        }
        Event::Request { request } => Shown::Elsewhere(format!(
            "» request from {}: Ctrl-C, then Requests in the menu",
            safe_text::line(&request.name)
        )),
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
        let mut scope = Scope {
            discussion: "d".into(),
            peer: "bob".into(),
            names: HashMap::new(),
        };
        match show(&Event::Introduction { introduction }, &mut scope) {
            Shown::Elsewhere(t) => {
                assert!(t.starts_with("» carol introduces dave"), "{t}");
            }
            other => panic!("not announced: {other:?}"),
        }
    }
}
