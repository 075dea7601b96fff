//! What the chat view printed, kept so it can be drawn again when the terminal is resized.
//!
//! A resize reflows what is on screen, and the line editor (rustyline) redraws the line being
//! typed from where it *thinks* it starts: at the old width, so a fragment of the old line stays
//! above (narrower) or the last conversation row is erased (wider). Nothing in rustyline can be
//! told otherwise; so once the size has settled the view clears the screen and draws again the
//! end of the conversation (messages wrapped at the new width) and the editor repaints the typed
//! line under it.

use std::collections::VecDeque;
use std::sync::Mutex;

use pgpchat_actors::api::Message;

use super::lines;

/// Entries kept for a redraw: more than any screen shows (older ones are in the scrollback).
pub(super) const TRANSCRIPT_ENTRIES: usize = 500;

/// One thing printed in the chat view.
enum Entry {
    /// A line (or several) printed as it is.
    Text(String),
    /// A message: wrapped again at the width it is drawn at.
    Message { message: Message, peer: String },
}

impl Entry {
    fn render(&self, columns: usize) -> String {
        match self {
            Entry::Text(t) => t.clone(),
            Entry::Message { message, peer } => lines::message_at(message, peer, columns),
        }
    }
}

/// The current chat view's entries (one view at a time).
static TRANSCRIPT: Mutex<VecDeque<Entry>> = Mutex::new(VecDeque::new());

fn push(e: Entry) {
    if let Ok(mut t) = TRANSCRIPT.lock() {
        if t.len() >= TRANSCRIPT_ENTRIES {
            t.pop_front();
        }
        t.push_back(e);
    }
}

/// A new chat view: nothing of the previous one is drawn again.
pub(super) fn clear() {
    if let Ok(mut t) = TRANSCRIPT.lock() {
        t.clear();
    }
}

/// Print `text` in the chat view (the view's own thread), and keep it.
pub(super) fn say(text: String) {
    println!("{text}");
    push(Entry::Text(text));
}

/// Print a message in the chat view (the view's own thread), and keep it.
pub(super) fn say_message(m: &Message, peer: &str) {
    println!("{}", lines::message(m, peer));
    push(Entry::Message {
        message: m.clone(),
        peer: peer.to_string(),
    });
}

/// Keep `text`, printed by the live thread; returns it.
pub(super) fn text(text: String) -> String {
    push(Entry::Text(text.clone()));
    text
}

/// Keep a message printed by the live thread; returns its line at the current width.
pub(super) fn message(m: &Message, peer: &str) -> String {
    push(Entry::Message {
        message: m.clone(),
        peer: peer.to_string(),
    });
    lines::message(m, peer)
}

/// The screen drawn again for `columns` × `rows`: cleared, then the end of the conversation that
/// fits above `reserved` rows (the line being typed), ending with a newline.
pub(super) fn redraw(columns: usize, rows: usize, reserved: usize) -> String {
    let columns = columns.max(1);
    let room = rows.saturating_sub(reserved).max(1);
    let mut shown: Vec<String> = Vec::new();
    let mut used = 0;
    if let Ok(t) = TRANSCRIPT.lock() {
        for e in t.iter().rev() {
            let r = e.render(columns);
            let n: usize = r
                .split('\n')
                .map(|l| console::measure_text_width(l).max(1).div_ceil(columns))
                .sum();
            if used + n > room {
                break;
            }
            used += n;
            shown.push(r);
        }
    }
    shown.reverse();
    // Home and erase the screen; what was on it is in the scrollback already.
    let mut out = String::from("\x1b[H\x1b[2J");
    for r in shown {
        out.push_str(&r);
        out.push('\n');
    }
    out
}
