//! How the core's events show in a chat view.

use pgpchat_actors::api::{self, Event};

use crate::format::{delivery, format_message};
use crate::safe_text;

/// How an event shows in the chat view of `discussion` (None: not shown there).
pub(super) fn event_line(e: &Event, discussion: &str, peer: &str) -> Option<String> {
    match e {
        Event::Message { message }
            if message.discussion_id == discussion && message.direction == api::Direction::In =>
        {
            Some(format_message(message, Some(peer)))
        }
        Event::Delivery {
            discussion_id,
            seq,
            state,
        } if discussion_id == discussion => {
            Some(format!("          (message {} {})", seq, delivery(*state)))
        }
        Event::Connection {
            discussion_id,
            connected,
        } if discussion_id == discussion => Some(format!(
            "          ({peer} {})",
            if *connected {
                "connected"
            } else {
                "disconnected; messages wait in the outbox"
            }
        )),
        Event::DiscussionClosed {
            discussion_id,
            by_peer,
        } if discussion_id == discussion => Some(format!(
            "          (discussion closed{})",
            if *by_peer { " by the peer" } else { "" }
        )),
        Event::Request { request } => Some(format!(
            "          (request from {}: see Requests in the menu)",
            safe_text::line(&request.name)
        )),
        _ => None,
    }
}
