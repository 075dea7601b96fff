//! The interactive prompt (`pgpchat chat`): a front-end over the IPC socket, like any other.
//!
//! One concern per file: the home menu here; the first run ([`first_run`]); contacts and their
//! verification ([`contacts`]); requests, incoming and outgoing ([`requests`]); the list of
//! discussions ([`discussions`]); the chat view ([`chat`]) and how events show in it ([`events`]).
//! Menus are dialoguer widgets.

mod chat;
mod contacts;
mod discussions;
mod events;
mod first_run;
mod requests;

use anyhow::{Context, Result};
use console::Term;
use dialoguer::{theme::ColorfulTheme, Password, Select};
use pgpchat_actors::api;
use pgpchat_actors::offline::{self, fingerprint_groups};

use crate::core_process::ensure_core;
use crate::ctx::Ctx;
use crate::safe_text;

pub fn run(ctx: &Ctx) -> Result<()> {
    let theme = ColorfulTheme::default();
    let term = Term::stdout();
    if !term.is_term() {
        anyhow::bail!("`pgpchat chat` needs a terminal; scripts use the other commands");
    }
    let dir = ctx.settings.node.data_dir.clone();
    let typed = if offline::exists(&dir) {
        None
    } else {
        first_run::first_run(ctx, &theme)?
    };
    let mut client = ensure_core(ctx, || {
        if let Some(p) = typed {
            return Ok(p);
        }
        Password::with_theme(&theme)
            .with_prompt("Passphrase for your identity key")
            .interact()
            .context("reading the passphrase")
    })?;
    client.check_version(&ctx.hint("stop"))?;
    let me = client.call(api::WhoamiRequest {})?;
    println!(
        "You are {} ({})",
        safe_text::line(&me.name),
        fingerprint_groups(&me.fingerprint)
    );
    loop {
        let n_req = client.requests()?.len();
        let unread: u64 = client
            .call(api::DiscussionsRequest {})?
            .iter()
            .map(|d| d.unread)
            .sum();
        let items = [
            "Contacts".to_string(),
            "Open a discussion".to_string(),
            format!("Requests ({n_req})"),
            format!("Discussions ({unread} unread)"),
            "Verify a contact".to_string(),
            "Refresh".to_string(),
            "Quit".to_string(),
        ];
        let Some(choice) = Select::with_theme(&theme)
            .with_prompt("pgpchat")
            .items(&items)
            .default(0)
            .interact_opt()?
        else {
            return Ok(());
        };
        let outcome = match choice {
            0 => contacts::show_contacts(&mut client),
            1 => requests::open_discussion(ctx, &mut client, &theme),
            2 => requests::handle_request(ctx, &mut client, &theme),
            3 => discussions::pick_discussion(ctx, &mut client, &theme),
            4 => contacts::verify_contact(&mut client, &theme),
            5 => Ok(()),
            _ => return Ok(()),
        };
        if let Err(e) = outcome {
            println!("! {}", safe_text::line(&format!("{e:#}")));
        }
    }
}
