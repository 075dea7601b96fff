//! Text a peer chose (message bodies, names, refusal reasons, error texts), made safe to print on a
//! terminal. Every place that prints such text goes through here.
//!
//! A peer must not be able to drive the user's terminal: clear the screen, move the cursor to forge
//! lines that look like someone else's messages or a notice, set the window title, write the
//! clipboard (OSC 52), or reorder what is shown with bidirectional overrides. So:
//!
//! - for the terminal, every control character (C0, DEL, C1), every bidi control and the Unicode
//!   line/paragraph separators are shown escaped (`\x1b`, `\r`, `\u{202e}`); in a block of text a
//!   newline starts an indented continuation line, in a one-line field it shows as `\n`; a tab
//!   shows as spaces;
//! - for `--json`, the text stays exact but those characters are written as `\uXXXX` escapes
//!   (serde_json escapes only C0 on its own, and leaves DEL, C1 and bidi controls raw).

use std::io;

use serde_json::Value;

/// A tab shows as this many spaces.
const TAB_SPACES: usize = 4;

/// The bidirectional controls: embeddings and overrides (U+202A–U+202E), isolates (U+2066–U+2069),
/// marks (U+200E, U+200F, U+061C).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Characters never written raw: C0, DEL, C1, bidi controls, and U+2028/U+2029 (line and paragraph
/// separators, which some terminals and viewers treat as line breaks).
fn is_unsafe(c: char) -> bool {
    c.is_control() || is_bidi_control(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// The visible escape of an unsafe character.
fn escape(c: char, out: &mut String) {
    use std::fmt::Write;
    match c {
        '\r' => out.push_str("\\r"),
        '\n' => out.push_str("\\n"),
        c if (c as u32) < 0x100 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        }
    }
}

fn push_safe(c: char, out: &mut String) {
    if c == '\t' {
        out.extend(std::iter::repeat_n(' ', TAB_SPACES));
    } else if is_unsafe(c) {
        escape(c, out);
    } else {
        out.push(c);
    }
}

/// A one-line field (a name, an address, a reason in a table, an error line): nothing in it can
/// start a new line or act on the terminal.
pub fn line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_safe(c, &mut out);
    }
    out
}

/// A block of text (a message body): each newline starts a continuation line indented by `indent`
/// spaces; everything else as in [`line`].
pub fn block(s: &str, indent: usize) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\n' {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', indent));
        } else {
            push_safe(c, &mut out);
        }
    }
    out
}

/// A JSON document on one line, exact but terminal-safe: DEL, C1, bidi controls and U+2028/U+2029
/// are written as `\uXXXX` escapes (C0 already is, by serde_json).
pub fn json(v: &Value) -> String {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, SafeFormatter);
    // Serializing a `Value` into memory cannot fail.
    let _ = serde::Serialize::serialize(v, &mut ser);
    String::from_utf8(buf).unwrap_or_default()
}

/// serde_json's compact output, with the string fragments of [`json`] escaped.
struct SafeFormatter;

impl serde_json::ser::Formatter for SafeFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if is_unsafe(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                // Every unsafe character serde_json leaves in a fragment is in the BMP.
                write!(writer, "\\u{:04x}", c as u32)?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOSTILE: &str = "a\u{1b}[2J\u{1b}]0;title\u{7}\u{1b}]52;c;SGVsbG8=\u{1b}\\b\rc\u{9b}31m\
                           \u{7f}\u{85}d\u{202e}e\u{2066}f\u{200f}\u{061c}\u{2028}g\th\ni";

    fn raw_controls(s: &str) -> Vec<char> {
        s.chars()
            .filter(|&c| c != '\n' && (is_unsafe(c) || c == '\t'))
            .collect()
    }

    #[test]
    fn the_terminal_forms_keep_no_control_character() {
        let l = line(HOSTILE);
        assert!(raw_controls(&l).is_empty(), "{l:?}");
        assert!(!l.contains('\n'), "{l:?}");
        assert!(l.starts_with("a\\x1b[2J\\x1b]0;title\\x07"), "{l}");
        assert!(
            l.contains("b\\rc\\x9b31m\\x7f\\x85d\\u{202e}e\\u{2066}f"),
            "{l}"
        );
        assert!(l.contains("g    h\\ni"), "{l}");

        let b = block(HOSTILE, 3);
        assert!(raw_controls(&b).is_empty(), "{b:?}");
        assert!(b.ends_with("g    h\n   i"), "{b:?}");
        assert_eq!(line("plain, ünïcödé ✓"), "plain, ünïcödé ✓");
    }

    #[test]
    fn json_stays_exact_and_terminal_safe() {
        let v = json!({"body": HOSTILE, "name": "m\u{202e}allory"});
        let text = json(&v);
        assert!(text.chars().all(|c| !is_unsafe(c) && c != '\t'), "{text:?}");
        assert!(text.contains("\\u202e"), "{text}");
        assert!(text.contains("\\u009b"), "{text}");
        assert!(text.contains("\\u007f"), "{text}");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }
}
