//! Fitting the prompt's text to the terminal's width, by display width (CJK and emoji take two
//! columns). dialoguer redraws a widget by clearing as many *lines* as it wrote, not as many rows
//! as they took: a prompt or an entry wider than the pane wraps, and its first rows stay on screen
//! as a stale copy. So every widget's text is made to fit: entries are cut with `…`, and a
//! question too long for the width is printed once in full above a cut copy of it.

use console::Term;
use unicode_width::UnicodeWidthChar;

/// Below this many columns the prompt does not shrink its text further (it wraps instead).
pub(super) const MIN_COLUMNS: usize = 20;
/// Columns a picker takes besides an entry: `❯ ` before it, and one left free so the cursor
/// never sits past the last column (where terminals wrap).
pub(super) const ENTRY_EXTRA: usize = 3;
/// Columns a picker's prompt line takes besides its text: `? ` and ` ›`, one free.
pub(super) const SELECT_EXTRA: usize = 5;
/// Columns a line entry's prompt takes besides its text: `? `, ` › `, and room for a short answer
/// (an address is at most 21 columns).
pub(super) const INPUT_EXTRA: usize = 27;
/// Columns a yes/no question takes besides its text: `? `, ` (y/n) › yes`, one free.
pub(super) const CONFIRM_EXTRA: usize = 15;

/// The terminal's width now (80 when it cannot be read), at least [`MIN_COLUMNS`].
pub(super) fn columns() -> usize {
    let term = Term::stdout();
    let cols = if term.is_term() {
        usize::from(term.size().1)
    } else {
        80
    };
    cols.max(MIN_COLUMNS)
}

/// The display width of `s` (terminal-safe text: no escapes, no control characters).
pub(super) fn width(s: &str) -> usize {
    s.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// `s` cut to at most `max` columns, ending with `…` when cut (a wide character that does not fit
/// is left out whole).
pub(super) fn cut(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > max {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// A picker's entries, each cut to the width.
pub(super) fn entries(items: &[String]) -> Vec<String> {
    let max = columns().saturating_sub(ENTRY_EXTRA);
    items.iter().map(|i| cut(i, max)).collect()
}

/// Columns between tab stops in the line editor.
const TAB_STOP: usize = 8;

/// The rows the line editor (rustyline) takes for `text` (its prompt and the line) on a terminal
/// of `columns`, counted as it counts them: a newline starts a row, a wide character that does
/// not fit at the end of a row starts the next one, and a text that ends exactly at the last
/// column has the cursor moved to a row of its own under it (the editor writes a newline there,
/// rather than leave the terminal pending a wrap), which is one row more.
pub(super) fn editor_rows(text: &str, columns: usize) -> usize {
    let columns = columns.max(1);
    let (mut row, mut col) = (0, 0);
    for c in text.chars() {
        if c == '\n' {
            row += 1;
            col = 0;
            continue;
        }
        let w = if c == '\t' {
            TAB_STOP - col % TAB_STOP
        } else {
            c.width().unwrap_or(0)
        };
        col += w;
        if col > columns {
            row += 1;
            col = w;
        }
    }
    if col == columns {
        row += 1;
    }
    row + 1
}

/// A widget's prompt that fits with `extra` columns of the widget's own: as it is when it fits,
/// else printed in full on a line of its own, broken at words (printed once, never redrawn), and
/// cut for the widget.
pub(super) fn question(text: &str, extra: usize) -> String {
    let max = columns().saturating_sub(extra);
    if width(text) <= max {
        return text.to_string();
    }
    super::lines::print(text);
    cut(text, max)
}

/// A picker fitted to the width (its question with [`question`], its entries cut): the chosen
/// entry is confirmed on a line of ours, whole and broken at words, rather than by dialoguer,
/// whose confirmation (question and cut entry on one line) the terminal wraps mid-word.
pub(super) fn pick(
    theme: &dialoguer::theme::ColorfulTheme,
    prompt: &str,
    items: &[String],
) -> dialoguer::Result<Option<usize>> {
    let pick = dialoguer::Select::with_theme(theme)
        .with_prompt(question(prompt, SELECT_EXTRA))
        .items(entries(items))
        .default(0)
        .report(false)
        .interact_opt()?;
    if let Some(i) = pick {
        use console::style;
        super::lines::print(&format!(
            "{} {} {} {}",
            style("✔").green(),
            style(prompt).bold(),
            style("·").dim(),
            style(&items[i]).green()
        ));
    }
    Ok(pick)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_by_display_width() {
        assert_eq!(cut("bob", 5), "bob");
        assert_eq!(cut("bartholomew", 6), "barth…");
        // A wide character is left out whole, never half of it.
        assert_eq!(cut("山田太郎", 6), "山田…");
        assert_eq!(width(&cut("😀😀😀😀", 5)), 5);
        assert_eq!(width("山田 bob"), 8);
    }

    #[test]
    fn the_editors_rows_count_the_one_a_full_row_adds() {
        assert_eq!(editor_rows("> hi", 40), 1);
        assert_eq!(editor_rows(&format!("> {}", "x".repeat(37)), 40), 1);
        // Exactly full: the cursor goes to the row under it.
        assert_eq!(editor_rows(&format!("> {}", "x".repeat(38)), 40), 2);
        assert_eq!(editor_rows(&format!("> {}", "x".repeat(39)), 40), 2);
        assert_eq!(editor_rows(&format!("> {}", "x".repeat(78)), 40), 3);
        assert_eq!(editor_rows(&format!("> {}", "x".repeat(78)), 80), 2);
        // A wide character that does not fit in the last column starts the next row.
        assert_eq!(editor_rows(&format!("> x{}", "山".repeat(19)), 40), 2);
        assert_eq!(editor_rows(&format!("> {}", "山".repeat(19)), 40), 2);
        // A pasted newline starts a row; a full row before it adds none.
        assert_eq!(editor_rows("> a\nb", 40), 2);
        assert_eq!(editor_rows(&format!("> {}\nb", "x".repeat(38)), 40), 2);
    }
}
