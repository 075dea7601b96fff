//! Hidden entries (a shared secret, the identity's passphrase) read key by key in raw mode, so
//! Ctrl-C cancels at once: a line read by the terminal's own editing cannot be interrupted, and a
//! Ctrl-C pressed there used to be carried over to whatever came next.

use std::io::{self, ErrorKind, Write};

use anyhow::{Context, Result};
use console::{Key, Term};
use dialoguer::theme::{ColorfulTheme, Theme};

/// The context of a hidden entry's error (its line is ended already).
pub(super) const READING: &str = "reading a hidden entry";

/// Ask for a hidden entry; nothing typed is echoed. Ctrl-C ends it with an `Interrupted` error
/// (see [`super::interrupt::is_interrupt`]), Escape too.
pub(super) fn read(theme: &ColorfulTheme, prompt: &str) -> Result<String> {
    let term = Term::stderr();
    // Fits in the width: the line is cleared and written again when the entry ends.
    let prompt = &super::width::question(prompt, super::width::CONFIRM_EXTRA);
    let mut shown = String::new();
    theme
        .format_password_prompt(&mut shown, prompt)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    term.write_str(&shown).context("showing the prompt")?;
    let mut entry = String::new();
    let r = loop {
        match term.read_key_raw() {
            Ok(Key::Enter) => break Ok(()),
            Ok(Key::CtrlC | Key::Escape) => break Err(io::Error::from(ErrorKind::Interrupted)),
            Ok(Key::Backspace) => {
                entry.pop();
            }
            Ok(Key::Char(c)) if !c.is_control() => entry.push(c),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    // The entry's line ends like any other: what was asked stays, never the length of the answer.
    let _ = term.clear_line();
    let mut done = String::new();
    if r.is_err() {
        // Cancelled is not a success: no ✔ before it.
        use console::style;
        done = format!(
            "{} {} {} cancelled",
            style("✘").red(),
            style(prompt).bold(),
            style("·").dim()
        );
    } else {
        let _ = theme.format_input_prompt_selection(
            &mut done,
            prompt,
            if entry.is_empty() {
                "(empty)"
            } else {
                "(hidden)"
            },
        );
    }
    let _ = term.write_line(&done);
    let _ = io::stderr().flush();
    r.context(READING)?;
    Ok(entry)
}
