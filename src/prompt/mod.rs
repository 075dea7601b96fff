//! The interactive prompt (`pgpchat chat`): a front-end over the IPC socket, like any other.
//!
//! One concern per file: the home menu here; the first run ([`first_run`]); contacts and their
//! verification ([`contacts`]); requests, incoming and outgoing ([`requests`]), the incoming ones
//! picked from a list kept current ([`request_picker`]); the list of
//! discussions ([`discussions`]); the chat view ([`chat`]) and how events show in it ([`events`]),
//! drawn again after a resize ([`transcript`]). Menus are dialoguer widgets, their text fitted to
//! the width ([`width`]); between views the echo is off and type-ahead is dropped ([`tty`]).

mod chat;
mod contacts;
mod discussions;
mod events;
mod first_run;
mod hidden;
mod home;
mod interrupt;
mod introductions;
mod lines;
mod live;
mod request_picker;
mod requests;
mod slash;
mod transcript;
mod tty;
mod width;

use anyhow::{Context, Result};
use console::Term;
use dialoguer::{theme::ColorfulTheme, Confirm};
use pgpchat_actors::api;
use pgpchat_actors::offline::{self, fingerprint_groups};

use crate::client::Client;
use crate::core_process::ensure_core;
use crate::ctx::Ctx;
use crate::safe_text;

/// Tries at the passphrase before the prompt gives up (as gpg does).
const PASSPHRASE_TRIES: usize = 3;

pub fn run(ctx: &Ctx) -> Result<()> {
    let term = Term::stdout();
    if !term.is_term() || !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        // A usage error (exit status 2): nothing was tried.
        return Err(crate::exit::Usage(
            "`pgpchat chat` needs a terminal (its input and output); scripts use the other \
             commands (`pgpchat --help`)"
                .into(),
        )
        .into());
    }
    interrupt::install()?;
    tty::quiet();
    // Whatever ends the prompt (Quit, Ctrl-C, an error, a panic), the shell gets its cursor and
    // its echo back; a signal that ends it does the same on its own thread ([`interrupt`]).
    let given_back = GiveBack;
    let r = home(ctx);
    drop(given_back);
    match r {
        Err(e) if interrupt::is_interrupt(&e) => Ok(()),
        r => r,
    }
}

/// Gives the terminal back as the prompt found it when dropped (also while a panic unwinds).
struct GiveBack;

impl Drop for GiveBack {
    fn drop(&mut self) {
        interrupt::restore_terminal();
        tty::restore();
    }
}

/// The binary's last error as a terminal on stderr shows it: broken at words to its width, as the
/// prompt's own lines (it is printed under them as the prompt ends); as it is when stderr is not
/// a terminal (a script reads one line).
pub fn fit_to_stderr(text: &str) -> String {
    let term = Term::stderr();
    if !term.is_term() {
        return text.to_string();
    }
    lines::fill_at(text, usize::from(term.size().1))
}

fn home(ctx: &Ctx) -> Result<()> {
    let theme = ColorfulTheme::default();
    let dir = ctx.settings.node.data_dir.clone();
    let typed = if offline::exists(&dir) {
        None
    } else {
        first_run::first_run(ctx, &theme).map_err(first_run::cancelled)?
    };
    let mut client = connect(ctx, typed)?;
    let me = client.call(api::WhoamiRequest {})?;
    lines::print(&format!(
        "You are {} ({})",
        safe_text::line(&me.name),
        fingerprint_groups(&me.fingerprint)
    ));
    // The last error said, so the same one is not said again by the menu's own call (an action
    // that failed because the core stopped is followed by the menu failing for the same reason).
    let mut said: Option<String> = None;
    // The menu said "the core stopped" as it happened: the reason is not said again.
    let mut stopped_said = false;
    loop {
        let counts = match home::counts(&mut client) {
            Ok(c) => c,
            Err(e) => {
                // The core stopped (or was stopped) under the menu: offer to start it again.
                let text = lines::error_text(&e);
                if said.as_deref() != Some(text.as_str()) && !stopped_said {
                    lines::print(&format!("! {text}"));
                }
                said = None;
                stopped_said = false;
                // Ctrl-C here is a no: said on a line of its own, nothing glued to the shell's.
                let again = match Confirm::with_theme(&theme)
                    .with_prompt(width::question(
                        "Start the core again?",
                        width::CONFIRM_EXTRA,
                    ))
                    .default(true)
                    .interact()
                {
                    Ok(yes) => yes,
                    Err(dialoguer::Error::IO(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                        interrupt::restore_terminal();
                        println!();
                        false
                    }
                    Err(e) => return Err(e.into()),
                };
                if !again {
                    println!("The core was not started again.");
                    return Ok(());
                }
                client = start_core(ctx)?;
                continue;
            }
        };
        said = None;
        stopped_said = false;
        // A Ctrl-C pressed while nothing listened is not for this menu.
        interrupt::take();
        let choice = match home::choose(ctx, counts)? {
            home::Choice::Entry(i) => i,
            home::Choice::Quit => return Ok(()),
            // Said already: the next turn asks whether to start it again.
            home::Choice::CoreStopped => {
                stopped_said = true;
                continue;
            }
        };
        let outcome = match choice {
            0 => contacts::show_contacts(&mut client),
            1 => requests::open_discussion(ctx, &mut client, &theme),
            2 => requests::handle_request(ctx, &mut client, &theme),
            3 => discussions::pick_discussion(ctx, &mut client, &theme),
            4 => contacts::verify_contact(&mut client, &theme),
            5 => contacts::add_contact(&mut client, &theme),
            6 => contacts::ask_for_contacts(&mut client, &theme),
            7 => introductions::handle_introduction(&mut client, &theme),
            8 => introductions::introduce(&mut client, &theme),
            9 => Ok(()),
            _ => return Ok(()),
        };
        match outcome {
            // Ctrl-C in a submenu: back here, the cursor shown again.
            Err(e) if interrupt::is_interrupt(&e) => {
                interrupt::restore_terminal();
                println!();
            }
            Err(e) => {
                let text = lines::error_text(&e);
                lines::print(&format!("! {text}"));
                said = Some(text);
            }
            Ok(()) => {}
        }
    }
}

/// Connect to the core, starting it if none runs (with the passphrase just chosen at the first
/// run, or asked for).
fn connect(ctx: &Ctx, typed: Option<String>) -> Result<Client> {
    let mut client = ensure_core(ctx, || match typed {
        Some(p) => Ok(p),
        None => ask_passphrase(ctx),
    })?;
    client.check_version(&ctx.hint("stop"))?;
    Ok(client)
}

/// Start the core again (it stopped under the prompt); the passphrase is asked for if needed.
pub(super) fn start_core(ctx: &Ctx) -> Result<Client> {
    connect(ctx, None)
}

/// The identity's passphrase, checked here: a typo gets another try, up to [`PASSPHRASE_TRIES`].
fn ask_passphrase(ctx: &Ctx) -> Result<String> {
    let theme = ColorfulTheme::default();
    let dir = &ctx.settings.node.data_dir;
    let mut last = None;
    for _ in 0..PASSPHRASE_TRIES {
        let p = hidden::read(&theme, "Passphrase for your identity key")
            .context("reading the passphrase")?;
        match offline::check_passphrase(dir, &p) {
            Ok(()) => return Ok(p),
            Err(e) => {
                lines::print(&format!("! {}", safe_text::line(&e.to_string())));
                last = Some(e);
            }
        }
    }
    // Refused, like `daemon --passphrase-file` with a wrong one (exit status 4).
    Err(crate::exit::Reworded {
        code: crate::exit::REFUSED,
        text: format!(
            "{PASSPHRASE_TRIES} wrong passphrases{}",
            last.map_or(String::new(), |e| format!(" (last: {e})"))
        ),
    }
    .into())
}
