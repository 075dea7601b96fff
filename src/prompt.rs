//! The interactive prompt (`pgpchat chat`): a front-end over the IPC socket, like any other.
//!
//! Menus are dialoguer widgets. The chat view is a small line editor: a second IPC connection
//! subscribed to events runs on its own thread and prints arriving messages *above* the line being
//! typed (clear the line, print, redraw the prompt and the typed text), under one lock on stdout, so
//! incoming messages never garble what the user is typing.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use console::{Key, Term};
use dialoguer::{theme::ColorfulTheme, Confirm, Input, Password, Select};
use pgpchat_actors::api::{self, Contact, Event, Notification};
use pgpchat_actors::offline::{self, fingerprint_groups};

use crate::client::Client;
use crate::core_process::ensure_core;
use crate::ctx::Ctx;
use crate::format::{self, delivery, format_message, now_secs, state};
use crate::safe_text;

/// Messages of history shown when a chat view opens.
const HISTORY_SHOWN: u64 = 20;
/// At most this many unread messages are printed when a chat view opens (older ones: `history`).
const MAX_UNREAD_SHOWN: u64 = 2_000;

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
        first_run(ctx, &theme)?
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
        let n_intro = client
            .call(api::IntroductionsRequest {})?
            .iter()
            .filter(|i| i.state == api::IntroductionState::Pending)
            .count();
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
            "Ask a contact for its contacts".to_string(),
            format!("Introductions ({n_intro})"),
            "Introduce two contacts".to_string(),
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
            0 => show_contacts(&mut client),
            1 => open_discussion(ctx, &mut client, &theme),
            2 => handle_request(ctx, &mut client, &theme),
            3 => pick_discussion(ctx, &mut client, &theme),
            4 => verify_contact(&mut client, &theme),
            5 => ask_for_contacts(&mut client, &theme),
            6 => handle_introduction(&mut client, &theme),
            7 => introduce(&mut client, &theme),
            8 => Ok(()),
            _ => return Ok(()),
        };
        if let Err(e) = outcome {
            println!("! {}", safe_text::line(&format!("{e:#}")));
        }
    }
}

/// Create the identity; returns the passphrase just chosen (to start the core without asking again).
fn first_run(ctx: &Ctx, theme: &ColorfulTheme) -> Result<Option<String>> {
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
    let key = offline::init(
        &ctx.settings.node.data_dir,
        &name,
        (!pass.is_empty()).then_some(pass.as_str()),
    )?;
    println!("Your fingerprint: {}", fingerprint_groups(&key.fingerprint));
    println!("Read it to the people you talk to, so they can verify it is you.");
    Ok((!pass.is_empty()).then_some(pass))
}

fn contact_line(c: &Contact, now: u64) -> String {
    let mut marks = String::new();
    if c.verified {
        marks.push_str(" [verified]");
    }
    if c.key_changed {
        marks.push_str(" [KEY CHANGED]");
    }
    if let Some(by) = &c.introduced_by {
        marks.push_str(&format!(" [introduced by {}]", safe_text::line(&by.name)));
    }
    format!(
        "{:<16} {}  seen {}{}",
        safe_text::line(&c.name),
        format::short_fpr(&c.fingerprint),
        format::ago(c.last_seen, now),
        marks
    )
}

/// Pick a contact (one we have a discussion with: the list travels over it) and merge its list.
fn ask_for_contacts(client: &mut Client, theme: &ColorfulTheme) -> Result<()> {
    let Some(c) = choose_contact(client, theme, "Whose contact list")? else {
        return Ok(());
    };
    println!(
        "Asking {} (it sees that you asked)...",
        safe_text::line(&c.name)
    );
    let merged = client.call(api::ContactsFromRequest {
        peer: c.fingerprint,
    })?;
    println!("{}", format::list_merged(&merged));
    Ok(())
}

fn show_contacts(client: &mut Client) -> Result<()> {
    let list = client.call(api::ContactsRequest {})?;
    if list.is_empty() {
        println!("No contacts seen yet. Others appear here when their core runs on this network.");
    }
    let now = now_secs();
    for c in &list {
        println!("  {}", contact_line(c, now));
    }
    Ok(())
}

fn choose_contact(
    client: &mut Client,
    theme: &ColorfulTheme,
    prompt: &str,
) -> Result<Option<Contact>> {
    let list = client.call(api::ContactsRequest {})?;
    if list.is_empty() {
        println!("No contacts seen yet.");
        return Ok(None);
    }
    let now = now_secs();
    let items: Vec<String> = list.iter().map(|c| contact_line(c, now)).collect();
    let pick = Select::with_theme(theme)
        .with_prompt(prompt)
        .items(&items)
        .default(0)
        .interact_opt()?;
    Ok(pick.map(|i| list[i].clone()))
}

fn open_discussion(ctx: &Ctx, client: &mut Client, theme: &ColorfulTheme) -> Result<()> {
    let Some(c) = choose_contact(client, theme, "Talk to")? else {
        return Ok(());
    };
    let name = safe_text::line(&c.name);
    let fpr = c.fingerprint.clone();
    let secret = Password::with_theme(theme)
        .with_prompt(format!("Secret shared with {name}"))
        .interact()?;
    let wait = ctx.settings.limits.request_timeout_secs;
    println!(
        "Waiting for {name} to accept (up to {})...",
        if wait >= 120 {
            format!("{} min", wait / 60)
        } else {
            format!("{wait} s")
        }
    );
    let v = client.call(api::OpenRequest {
        contact: fpr,
        password: secret,
    })?;
    // A new discussion: nothing unread beyond what the view shows anyway.
    chat_view(ctx, client, &v.discussion_id, &name, 0)
}

/// Introductions made to us: accept or decline one waiting for our decision.
fn handle_introduction(client: &mut Client, theme: &ColorfulTheme) -> Result<()> {
    let list: Vec<api::Introduction> = client
        .call(api::IntroductionsRequest {})?
        .into_iter()
        .filter(|i| i.state == api::IntroductionState::Pending)
        .collect();
    if list.is_empty() {
        println!("No introductions waiting.");
        return Ok(());
    }
    let items: Vec<String> = list
        .iter()
        .map(|i| {
            format!(
                "#{} {} introduces {} {}{}",
                i.id,
                safe_text::line(&i.introducer.name),
                safe_text::line(&i.peer_name),
                fingerprint_groups(&i.peer_fingerprint),
                if i.key_changed {
                    "  WARNING: name known with another key"
                } else {
                    ""
                }
            )
        })
        .collect();
    let Some(pick) = Select::with_theme(theme)
        .with_prompt("Introduction")
        .items(&items)
        .default(0)
        .interact_opt()?
    else {
        return Ok(());
    };
    let id = list[pick].id as u64;
    let action = Select::with_theme(theme)
        .with_prompt("Meet them? (they will show as introduced, not verified)")
        .items(["Accept", "Decline"])
        .default(0)
        .interact_opt()?;
    let i = match action {
        Some(0) => client.call(api::AcceptIntroductionRequest { introduction: id })?,
        Some(_) => client.call(api::DeclineIntroductionRequest { introduction: id })?,
        None => return Ok(()),
    };
    println!(
        "introduction {}: {}",
        i.id,
        format::introduction_state(i.state)
    );
    Ok(())
}

/// Introduce two contacts we each have an open discussion with.
fn introduce(client: &mut Client, theme: &ColorfulTheme) -> Result<()> {
    let Some(a) = choose_contact(client, theme, "Introduce")? else {
        return Ok(());
    };
    let Some(b) = choose_contact(client, theme, "to")? else {
        return Ok(());
    };
    let v = client.call(api::IntroduceRequest {
        a: a.fingerprint,
        b: b.fingerprint,
    })?;
    println!(
        "introduction {} sent: each side is asked to accept",
        v.introduction
    );
    Ok(())
}

fn handle_request(ctx: &Ctx, client: &mut Client, theme: &ColorfulTheme) -> Result<()> {
    // Fetched now, not when the menu was drawn: a request may have arrived since.
    let list = client.requests()?;
    if list.is_empty() {
        println!("No requests waiting.");
        return Ok(());
    }
    let items: Vec<String> = list
        .iter()
        .map(|r| {
            format!(
                "#{} {} {}{}",
                r.id,
                safe_text::line(&r.name),
                fingerprint_groups(&r.fingerprint),
                if r.key_changed {
                    "  WARNING: name known with another key"
                } else {
                    ""
                }
            )
        })
        .collect();
    let Some(i) = Select::with_theme(theme)
        .with_prompt("Request")
        .items(&items)
        .default(0)
        .interact_opt()?
    else {
        return Ok(());
    };
    let r = &list[i];
    let name = safe_text::line(&r.name);
    let id = r.id;
    let action = Select::with_theme(theme)
        .with_prompt(format!("{name} asks for a discussion"))
        .items(["Accept (type the shared secret)", "Refuse"])
        .default(0)
        .interact_opt()?;
    match action {
        Some(0) => {
            let secret = Password::with_theme(theme)
                .with_prompt(format!("Secret shared with {name}"))
                .interact()?;
            let v = client.call(api::AcceptRequest {
                request: id,
                password: secret,
            })?;
            chat_view(ctx, client, &v.discussion_id, &name, 0)
        }
        Some(_) => {
            client.call(api::RefuseRequest { request: id })?;
            println!("Refused.");
            Ok(())
        }
        None => Ok(()),
    }
}

fn pick_discussion(ctx: &Ctx, client: &mut Client, theme: &ColorfulTheme) -> Result<()> {
    let list = client.call(api::DiscussionsRequest {})?;
    if list.is_empty() {
        println!("No discussions yet.");
        return Ok(());
    }
    let items: Vec<String> = list
        .iter()
        .map(|d| {
            format!(
                "{:<16} {:<6} {} unread  ({}){}",
                safe_text::line(&d.peer_name),
                state(d.state),
                d.unread,
                d.id.get(..8).unwrap_or(&d.id),
                if d.peer_not_told {
                    "  peer told when reachable"
                } else {
                    ""
                }
            )
        })
        .collect();
    let Some(i) = Select::with_theme(theme)
        .with_prompt("Discussion")
        .items(&items)
        .default(0)
        .interact_opt()?
    else {
        return Ok(());
    };
    let d = &list[i];
    chat_view(ctx, client, &d.id, &safe_text::line(&d.peer_name), d.unread)
}

fn verify_contact(client: &mut Client, theme: &ColorfulTheme) -> Result<()> {
    let Some(c) = choose_contact(client, theme, "Verify")? else {
        return Ok(());
    };
    let me = client.call(api::WhoamiRequest {})?;
    let name = &safe_text::line(&c.name);
    println!("Compare aloud, out of band:");
    println!("  you:   {}", fingerprint_groups(&me.fingerprint));
    println!("  {name:<6} {}", fingerprint_groups(&c.fingerprint));
    if Confirm::with_theme(theme)
        .with_prompt(format!("Does {name} read you the same fingerprint?"))
        .default(false)
        .interact()?
    {
        client.call(api::VerifyRequest {
            contact: c.fingerprint.clone(),
            verified: Some(true),
        })?;
        println!("{name} is verified.");
    }
    Ok(())
}

/// The line being typed, shared between the key reader and the event printer.
struct Screen {
    term: Term,
    input: String,
    prompt: String,
}

impl Screen {
    /// Print `line` above the input line, then redraw the input.
    fn above(&mut self, line: &str) {
        let _ = self.term.clear_line();
        let _ = self.term.write_line(line);
        self.redraw();
    }

    fn redraw(&mut self) {
        let _ = self.term.clear_line();
        let _ = write!(self.term, "{}{}", self.prompt, self.input);
        let _ = self.term.flush();
    }
}

/// `unread`: the discussion's unread count as the caller listed it; every one is shown.
fn chat_view(
    ctx: &Ctx,
    client: &mut Client,
    discussion: &str,
    peer: &str,
    unread: u64,
) -> Result<()> {
    let term = Term::stdout();
    println!("--- {peer} ({discussion}) --- /back returns to the menu, /close ends the discussion");
    // Every unread message is shown (leaving the view marks them read), and at least the last
    // `HISTORY_SHOWN`; one more is asked for to know whether older ones stay out of view.
    let shown = unread.clamp(HISTORY_SHOWN, MAX_UNREAD_SHOWN);
    let mut history = client.call(api::HistoryRequest {
        discussion: discussion.to_string(),
        limit: Some(shown + 1),
    })?;
    if history.len() as u64 > shown {
        history.remove(0);
        println!(
            "          (earlier messages: {})",
            ctx.hint(&format!("history {discussion}"))
        );
    }
    for m in &history {
        println!("{}", format_message(m, Some(peer)));
    }
    let screen = Arc::new(Mutex::new(Screen {
        term: term.clone(),
        input: String::new(),
        prompt: "> ".into(),
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let mut events = ctx.client()?;
    events.call(api::SubscribeRequest {})?;
    let printer = {
        let (screen, stop, id, peer) = (
            screen.clone(),
            stop.clone(),
            discussion.to_string(),
            peer.to_string(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let e = match events.next_event(Some(Duration::from_millis(200))) {
                    Ok(Some(Notification::Event(e))) => e,
                    Ok(None) => continue,
                    // The core closed the subscription (stopped, restarted, or we fell behind):
                    // say so plainly and stop, rather than spin on the error and show nothing.
                    _ => {
                        if let Ok(mut s) = screen.lock() {
                            s.above(LIVE_UPDATES_STOPPED);
                        }
                        return false;
                    }
                };
                if let Some(line) = event_line(&e, &id, &peer) {
                    if let Ok(mut s) = screen.lock() {
                        s.above(&line);
                    }
                }
            }
            true
        })
    };
    if let Ok(mut s) = screen.lock() {
        s.redraw();
    }
    let result = edit_loop(client, &term, &screen, discussion, peer);
    stop.store(true, Ordering::Relaxed);
    // Everything arrived while the view was open has been seen, unless live updates stopped: then
    // what came after was not shown, and stays unread.
    if printer.join().unwrap_or(false) {
        let _ = client.call(api::MarkReadRequest {
            discussion: discussion.to_string(),
        });
    }
    println!();
    result
}

/// Shown in the chat view when the core ends its event subscription: nothing new will appear.
const LIVE_UPDATES_STOPPED: &str =
    "-- live updates stopped (the core stopped or restarted); leave and reopen this chat to see new messages --";

fn edit_loop(
    client: &mut Client,
    term: &Term,
    screen: &Arc<Mutex<Screen>>,
    discussion: &str,
    peer: &str,
) -> Result<()> {
    loop {
        let key = term.read_key()?;
        let mut s = screen
            .lock()
            .map_err(|_| anyhow::anyhow!("screen lock poisoned"))?;
        match key {
            Key::Char(c) if !c.is_control() => {
                s.input.push(c);
                s.redraw();
            }
            Key::Backspace => {
                s.input.pop();
                s.redraw();
            }
            Key::Escape | Key::CtrlC => return Ok(()),
            Key::Enter => {
                let line = std::mem::take(&mut s.input);
                let text = line.trim();
                match text {
                    "" => s.redraw(),
                    "/back" | "/quit" => return Ok(()),
                    "/help" => s.above(
                        "/back: menu   /close: end this discussion for both sides   \
                         /close --force: end it now, keys destroyed, the peer is told when back",
                    ),
                    "/close" | "/close --force" => {
                        let force = text.ends_with("--force");
                        let v = client.call(api::CloseRequest {
                            discussion: discussion.to_string(),
                            force: Some(force),
                        })?;
                        s.above(&if v.state == api::DiscussionState::Closed {
                            format!("discussion with {peer} closed")
                        } else {
                            format!(
                                "discussion with {peer} closing: {peer} is told now or when back"
                            )
                        });
                        return Ok(());
                    }
                    _ => {
                        // Release the screen while the core stores the message.
                        drop(s);
                        let r = client.call(api::SendRequest {
                            discussion: discussion.to_string(),
                            text: text.to_string(),
                        });
                        let mut s = screen
                            .lock()
                            .map_err(|_| anyhow::anyhow!("screen lock poisoned"))?;
                        match r {
                            Ok(m) => {
                                let line = format_message(&m, Some(peer));
                                s.above(&line)
                            }
                            Err(e) => s.above(&format!(
                                "! not sent: {}",
                                safe_text::line(&format!("{e:#}"))
                            )),
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// How an event shows in the chat view of `discussion` (None: not shown there).
fn event_line(e: &Event, discussion: &str, peer: &str) -> Option<String> {
    match e {
        Event::Message { message }
            if message.discussion_id == discussion && message.direction == api::Direction::In =>
        {
            Some(format_message(message, Some(peer)))
        }
        Event::Delivery {
            discussion_id,
            seq,
            state,
        } if discussion_id == discussion => {
            Some(format!("          (message {} {})", seq, delivery(*state)))
        }
        Event::Connection {
            discussion_id,
            connected,
        } if discussion_id == discussion => Some(format!(
            "          ({peer} {})",
            if *connected {
                "connected"
            } else {
                "disconnected; messages wait in the outbox"
            }
        )),
        Event::DiscussionClosed {
            discussion_id,
            by_peer,
        } if discussion_id == discussion => Some(format!(
            "          (discussion closed{})",
            if *by_peer { " by the peer" } else { "" }
        )),
        Event::Request { request } => Some(format!(
            "          (request from {}: see Requests in the menu)",
            safe_text::line(&request.name)
        )),
        _ => None,
    }
}
