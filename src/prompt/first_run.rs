//! The first run: the identity is created before anything else.

use anyhow::Result;
use dialoguer::{theme::ColorfulTheme, Input, Password};
use pgpchat_actors::offline::{self, fingerprint_groups};

use crate::ctx::Ctx;

/// Create the identity; returns the passphrase just chosen (to start the core without asking again).
pub(super) fn first_run(ctx: &Ctx, theme: &ColorfulTheme) -> Result<Option<String>> {
    println!("Welcome to pgpchat. First, your identity: a key pair that is yours alone.");
    let name: String = Input::with_theme(theme)
        .with_prompt("Your name, as others will see it")
        .default(ctx.settings.node.name.clone())
        .interact_text()?;
    let pass = Password::with_theme(theme)
        .with_prompt("Passphrase to protect your key (empty: none)")
        .with_confirmation("Repeat it", "The two entries differ")
        .allow_empty_password(true)
        .interact()?;
    if pass.is_empty() {
        println!(
            "warning: no passphrase: anyone who can read {} can read your secret key and messages",
            ctx.settings.node.data_dir.display()
        );
    }
    let key = offline::init(
        &ctx.settings.node.data_dir,
        &name,
        (!pass.is_empty()).then_some(pass.as_str()),
    )?;
    println!("Your fingerprint: {}", fingerprint_groups(&key.fingerprint));
    println!("Read it to the people you talk to, so they can verify it is you.");
    Ok((!pass.is_empty()).then_some(pass))
}
