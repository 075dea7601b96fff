//! The first run: the identity is created before anything else. Its lines break at words (the
//! fingerprint between its groups of 4) at any width.

use anyhow::Result;
use dialoguer::{theme::ColorfulTheme, Input};
use pgpchat_actors::offline::{self, fingerprint_groups};

use super::lines::print;
use crate::ctx::Ctx;

/// Said when Ctrl-C ends the first run: nothing was created.
const CANCELLED: &str = "cancelled: no identity was created";

/// A first run ended by Ctrl-C is a cancelled action (exit status 4, as a cancelled request), on
/// a line of its own; other errors are kept.
pub(super) fn cancelled(e: anyhow::Error) -> anyhow::Error {
    if !super::interrupt::is_interrupt(&e) {
        return e;
    }
    super::interrupt::restore_terminal();
    // The question's line is ended: what the shell prints next starts on a line of its own (a
    // hidden entry has ended its line already).
    if !e.chain().any(|c| c.to_string() == super::hidden::READING) {
        println!();
    }
    crate::exit::Reworded {
        code: crate::exit::REFUSED,
        text: CANCELLED.into(),
    }
    .into()
}

/// Create the identity; returns the passphrase just chosen (to start the core without asking again).
pub(super) fn first_run(ctx: &Ctx, theme: &ColorfulTheme) -> Result<Option<String>> {
    print("Welcome to pgpchat. First, your identity: a key pair that is yours alone.");
    let name: String = Input::with_theme(theme)
        .with_prompt(super::width::question(
            "Your name, as others will see it",
            super::width::INPUT_EXTRA + super::width::width(&ctx.settings.node.name),
        ))
        .default(ctx.settings.node.name.clone())
        .interact_text()?;
    // An empty passphrase is not asked twice (there is nothing to mistype).
    let pass = loop {
        let pass = super::hidden::read(theme, "Passphrase to protect your key (empty: none)")?;
        if pass.is_empty() || super::hidden::read(theme, "Repeat it")? == pass {
            break pass;
        }
        print("! The two entries differ");
    };
    if pass.is_empty() {
        print(&format!(
            "warning: no passphrase: anyone who can read {} can read your secret key and messages",
            ctx.settings.node.data_dir.display()
        ));
    }
    let key = offline::init(
        &ctx.settings.node.data_dir,
        &name,
        (!pass.is_empty()).then_some(pass.as_str()),
    )?;
    super::lines::print_labelled("Your fingerprint: ", &fingerprint_groups(&key.fingerprint));
    print("Read it to the people you talk to, so they can verify it is you.");
    Ok((!pass.is_empty()).then_some(pass))
}
