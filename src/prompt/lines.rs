//! Compact chat lines: `16:25      bob: hello`, `16:26       me: hi ✓✓`. The time is local (the
//! user's time zone), a date line comes first when the day changes, the name is padded and cut by
//! display width (CJK and emoji take two columns), the delivery state is a mark at the end.
//! Colours (console's `style`) are off when `NO_COLOR` is set or the output is not a terminal.

use chrono::{DateTime, Local, NaiveDate, TimeZone};
use console::style;
use pgpchat_actors::api::{self, DeliveryState, Message};
use unicode_width::UnicodeWidthChar;

use crate::safe_text;

/// Columns of the name before `: ` (names are right-aligned, cut with `…`).
pub(super) const NAME_WIDTH: usize = 10;
/// Columns before the body: `HH:MM `, the name, `: `.
const BODY_INDENT: usize = 6 + NAME_WIDTH + 2;

fn local(secs: u64) -> Option<DateTime<Local>> {
    Local.timestamp_opt(i64::try_from(secs).ok()?, 0).single()
}

/// `16:25`, in the user's time zone.
pub(super) fn hm(secs: u64) -> String {
    local(secs).map_or_else(|| "--:--".into(), |t| t.format("%H:%M").to_string())
}

/// `s` (already terminal-safe) padded on the left, or cut with `…`, to exactly `width` columns.
pub(super) fn fit(s: &str, width: usize) -> String {
    let total: usize = s.chars().map(|c| c.width().unwrap_or(0)).sum();
    if total <= width {
        return format!("{}{s}", " ".repeat(width - total));
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    // A wide character that did not fit leaves one column: pad it.
    out.push('…');
    out.push_str(&" ".repeat(width - used - 1));
    out
}

/// The mark of an outgoing message's delivery state: `·` kept here, `✓` sent, `✓✓` delivered.
pub(super) fn mark(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Stored => "·",
        DeliveryState::Sent => "✓",
        DeliveryState::Delivered => "✓✓",
        DeliveryState::Received => "",
    }
}

/// Remembers the day of the last line printed, to print a date line when it changes.
#[derive(Default, Clone)]
pub(super) struct Days(Option<NaiveDate>);

impl Days {
    /// `── Friday 27 November 2026 ──` when `secs` is on another day than the last line.
    pub(super) fn line_for(&mut self, secs: u64) -> Option<String> {
        let day = local(secs)?.date_naive();
        if self.0 == Some(day) {
            return None;
        }
        self.0 = Some(day);
        Some(
            style(format!("── {} ──", day.format("%A %-d %B %Y")))
                .dim()
                .to_string(),
        )
    }
}

/// One message on one line (its own newlines continue indented under the body).
pub(super) fn message(m: &Message, peer: &str) -> String {
    let out = m.direction == api::Direction::Out;
    let name = fit(
        &if out {
            "me".into()
        } else {
            safe_text::line(peer)
        },
        NAME_WIDTH,
    );
    let name = if out {
        style(name).green()
    } else {
        style(name).cyan()
    };
    let body = safe_text::block(&m.body, BODY_INDENT);
    let mark = if out {
        format!(" {}", style(mark(m.state)).dim())
    } else {
        String::new()
    };
    format!("{} {name}: {body}{mark}", style(hm(m.time)).dim())
}

/// A notice in the conversation (not a message): indented, dim.
pub(super) fn notice(text: &str) -> String {
    format!("{}{}", " ".repeat(6), style(text).dim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_fitted_by_display_width() {
        assert_eq!(fit("bob", 6), "   bob");
        assert_eq!(fit("bartholomew", 6), "barth…");
        // CJK: two columns each; a cut never leaves a half character.
        assert_eq!(fit("山田太郎", 6), "山田… ");
        assert_eq!(fit("山田", 4), "山田");
        // Emoji are wide too.
        assert_eq!(fit("😀😀😀😀", 5), "😀😀…");
    }

    #[test]
    fn messages_are_one_compact_line() {
        console::set_colors_enabled(false);
        let m = Message {
            discussion_id: "d".into(),
            direction: api::Direction::Out,
            seq: 1,
            time: 1_700_000_000,
            body: "hello\nthere".into(),
            state: DeliveryState::Delivered,
            position: None,
        };
        let l = message(&m, "bob");
        assert!(
            l.ends_with("        me: hello\n                  there ✓✓"),
            "{l:?}"
        );
        assert_eq!(l[..5].chars().nth(2), Some(':'));
        let mut days = Days::default();
        assert!(days.line_for(1_700_000_000).is_some());
        assert!(days.line_for(1_700_000_060).is_none());
    }
}
