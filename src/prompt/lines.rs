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
/// A message's text gets at least this many columns a row, however narrow the terminal (below
/// that the terminal wraps it).
const MIN_TEXT_COLUMNS: usize = 10;

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

/// One message: its text wrapped at word boundaries to the terminal's width at the time it is
/// printed, each continuation (and each of its own newlines) indented under the text.
pub(super) fn message(m: &Message, peer: &str) -> String {
    message_at(m, peer, super::width::columns())
}

/// [`message`] for a terminal of `columns`.
pub(super) fn message_at(m: &Message, peer: &str, columns: usize) -> String {
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
    // One column stays free: a row that fills the last column leaves the cursor in the
    // terminal's pending-wrap state, which some terminals turn into an empty row.
    let text_columns = columns
        .saturating_sub(BODY_INDENT + 1)
        .max(MIN_TEXT_COLUMNS);
    let mut rows: Vec<String> = m
        .body
        .split('\n')
        .flat_map(|p| wrap(&safe_text::line(p), text_columns))
        .collect();
    if out {
        let mark = mark(m.state);
        let last = rows.last().map_or(0, |r| super::width::width(r));
        let dim = style(mark).dim().to_string();
        if last + 1 + super::width::width(mark) <= text_columns {
            if let Some(r) = rows.last_mut() {
                r.push(' ');
                r.push_str(&dim);
            }
        } else {
            rows.push(dim);
        }
    }
    let body = rows.join(&format!("\n{}", " ".repeat(BODY_INDENT)));
    format!("{} {name}: {body}", style(hm(m.time)).dim())
}

/// `text` (one paragraph, terminal-safe) in rows of at most `columns` display columns, broken at
/// spaces; a word longer than a row is broken where the row ends. Spaces inside a row are kept
/// (a tab shows as several); the spaces where a row breaks are dropped.
fn wrap(text: &str, columns: usize) -> Vec<String> {
    use super::width::width;
    let mut rows = Vec::new();
    let mut row = String::new();
    let mut used = 0;
    let mut spaces = String::new();
    // Words and the runs of spaces between them, in order.
    let mut tokens = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let n = if rest.starts_with(' ') {
            rest.find(|c| c != ' ').unwrap_or(rest.len())
        } else {
            rest.find(' ').unwrap_or(rest.len())
        };
        tokens.push(&rest[..n]);
        rest = &rest[n..];
    }
    for token in tokens {
        if token.starts_with(' ') {
            spaces = token.to_string();
            continue;
        }
        let w = width(token);
        let gap = width(&spaces);
        if used + gap + w <= columns {
            row.push_str(&spaces);
            row.push_str(token);
            used += gap + w;
        } else if w <= columns {
            rows.push(std::mem::take(&mut row));
            row.push_str(token);
            used = w;
        } else {
            // Longer than a row: as much as fits here, the rest on the next rows.
            if used > 0 && used + gap < columns {
                row.push_str(&spaces);
                used += gap;
            } else if used > 0 {
                rows.push(std::mem::take(&mut row));
                used = 0;
            }
            for c in token.chars() {
                let cw = width(c.encode_utf8(&mut [0; 4]));
                if used + cw > columns {
                    rows.push(std::mem::take(&mut row));
                    used = 0;
                }
                row.push(c);
                used += cw;
            }
        }
        spaces.clear();
    }
    if used + width(&spaces) <= columns {
        row.push_str(&spaces);
    }
    rows.push(row);
    rows
}

/// The prompt's own text (not a message) for a terminal of `columns`: each line broken at
/// spaces by display width (styles are not counted), continuations indented two columns more than
/// the line. A fingerprint in groups of 4 breaks between groups. A word wider than a row is left
/// whole (the terminal wraps it).
pub(super) fn fill_at(text: &str, columns: usize) -> String {
    let columns = columns.max(super::width::MIN_COLUMNS);
    let mut out: Vec<String> = Vec::new();
    for line in text.split('\n') {
        let plain = console::strip_ansi_codes(line);
        let lead = plain.len() - plain.trim_start_matches(' ').len();
        let indent = " ".repeat((lead + 2).min(columns / 2));
        // One column stays free, as for messages (a full row leaves the cursor pending a wrap).
        let room = columns - 1;
        let mut row = String::new();
        for (i, word) in line.split(' ').enumerate() {
            let candidate = if i == 0 {
                word.to_string()
            } else {
                format!("{row} {word}")
            };
            let plain_row = console::strip_ansi_codes(&row);
            if i == 0
                || console::measure_text_width(&candidate) <= room
                || plain_row.trim().is_empty()
                || word.is_empty()
            {
                row = candidate;
            } else {
                out.push(std::mem::take(&mut row));
                row = format!("{indent}{word}");
            }
        }
        out.push(row);
    }
    out.join("\n")
}

/// `label` then `value` broken at spaces by display width, its continuation rows under the
/// value's first column: a fingerprint read aloud group by group stays in one column. When the
/// label takes more than half the row, as [`fill_at`].
pub(super) fn labelled_at(label: &str, value: &str, columns: usize) -> String {
    let columns = columns.max(super::width::MIN_COLUMNS);
    let indent = super::width::width(label);
    if indent > columns / 2 {
        return fill_at(&format!("{label}{value}"), columns);
    }
    // One column stays free, as for messages.
    let rows = wrap(value, columns - 1 - indent);
    format!("{label}{}", rows.join(&format!("\n{}", " ".repeat(indent))))
}

/// Print [`labelled_at`] at the terminal's width now.
pub(super) fn print_labelled(label: &str, value: &str) {
    println!("{}", labelled_at(label, value, super::width::columns()));
}

/// [`fill_at`] at the terminal's width now.
pub(super) fn fill(text: &str) -> String {
    fill_at(text, super::width::columns())
}

/// Print the prompt's own text, broken at words to fit the terminal.
pub(super) fn print(text: &str) {
    println!("{}", fill(text));
}

/// An error's chain on one line, terminal-safe, each cause said once: a cause whose text its
/// parent already quotes (the client's "no answer on SOCKET: ENOENT" has ENOENT as its source
/// too) is not repeated.
pub(super) fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if text.contains(&c) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&c);
    }
    crate::safe_text::line(&text)
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
    fn long_text_wraps_at_spaces_by_display_width() {
        assert_eq!(wrap("one two three", 7), ["one two", "three"]);
        assert_eq!(wrap("a    tab", 20), ["a    tab"]);
        // Too long for a row: broken where the row ends.
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        // Wide characters take two columns; none is split.
        assert_eq!(wrap("山田 太郎山田", 5), ["山田", "太郎", "山田"]);
        assert_eq!(wrap("", 5), [""]);
        console::set_colors_enabled(false);
        let m = Message {
            discussion_id: "d".into(),
            direction: api::Direction::In,
            seq: 1,
            time: 1_700_000_000,
            body: "seventeen elephants balanced".into(),
            state: DeliveryState::Received,
            position: None,
        };
        let l = message_at(&m, "bob", 40);
        let rows: Vec<&str> = l.lines().collect();
        assert_eq!(rows.len(), 2, "{l:?}");
        assert!(rows[0].ends_with("bob: seventeen elephants"), "{l:?}");
        assert_eq!(rows[1], format!("{}balanced", " ".repeat(BODY_INDENT)));
    }

    #[test]
    fn the_prompts_own_text_breaks_at_words_and_between_fingerprint_groups() {
        let header = "── bob · not verified · 9B15 6D53 A565 045D CE46 1A2B 3C4D 5E6F 7A8B 9C0D ──";
        let rows: Vec<String> = fill_at(header, 40).lines().map(String::from).collect();
        assert!(rows.len() > 1, "{rows:?}");
        for r in &rows {
            assert!(console::measure_text_width(r) < 40, "{rows:?}");
            // Every group of 4 is whole on a row.
            for w in r.split_whitespace() {
                assert!(header.split(' ').any(|h| h == w), "{w:?} cut: {rows:?}");
            }
        }
        assert!(rows[1].starts_with("  "), "{rows:?}");
        // Styles are not counted, and a short line is left as it is.
        let dim = console::style("      (not closed)")
            .dim()
            .force_styling(true)
            .to_string();
        assert_eq!(fill_at(&dim, 40), dim);
        assert_eq!(fill_at("! a b", 40), "! a b");
    }

    #[test]
    fn a_labelled_fingerprint_breaks_between_groups_under_its_first_one() {
        let fpr = "9B15 6D53 A565 045D CE46 1A2B 3C4D 5E6F 7A8B 9C0D";
        assert_eq!(
            labelled_at("  you:   ", fpr, 40),
            "  you:   9B15 6D53 A565 045D CE46 1A2B\n         3C4D 5E6F 7A8B 9C0D"
        );
        assert_eq!(labelled_at("  you:   ", fpr, 80), format!("  you:   {fpr}"));
        // A label wider than half the row: broken as the prompt's other lines.
        let long = format!("  {}  ", "n".repeat(30));
        assert_eq!(
            labelled_at(&long, fpr, 40),
            fill_at(&format!("{long}{fpr}"), 40)
        );
    }

    #[test]
    fn an_error_chain_says_each_cause_once() {
        use pgpchat_actors::client::ClientError;
        let e = anyhow::Error::new(ClientError::NotRunning {
            socket: "/tmp/s".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
        .context("starting the core");
        let t = error_text(&e);
        assert_eq!(t.matches("entity not found").count(), 1, "{t}");
        assert!(
            t.starts_with("starting the core: the core is not running"),
            "{t}"
        );
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
