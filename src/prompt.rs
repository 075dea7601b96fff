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
use pgpchat_actors::crypto::fingerprint_groups;
use pgpchat_actors::events::now_secs;
use pgpchat_actors::identity;
use serde_json::{json, Value};

use crate::client::Client;
use crate::commands::{format_message, Ctx};
use crate::core_process::ensure_core;
use crate::format;
use crate::safe_text;

/// Messages of history shown when a chat view opens.
const HISTORY_SHOWN: u64 = 20;

pub fn run(ctx: &Ctx) -> Result<()> {
    let theme = ColorfulTheme::default();
    let term = Term::stdout();
    if !term.is_term() {
        anyhow::bail!("`pgpchat chat` needs a terminal; scripts use the other commands");
    }
    let dir = ctx.settings.node.data_dir.clone();
    let typed = if identity::exists(&dir) {
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
    let me = client.call("whoami", json!({}))?;
    println!(
        "You are {} ({})",
        safe_text::line(me["name"].as_str().unwrap_or("")),
        fingerprint_groups(me["fingerprint"].as_str().unwrap_or(""))
    );
    loop {
        let requests = client.call("requests", json!({}))?;
        let discussions = client.call("discussions", json!({}))?;
        let n_req = requests.as_array().map_or(0, Vec::len);
        let unread: u64 = discussions.as_array().map_or(0, |d| {
            d.iter().map(|d| d["unread"].as_u64().unwrap_or(0)).sum()
        });
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
            0 => show_contacts(&mut client),
            1 => open_discussion(ctx, &mut client, &theme),
            2 => handle_request(ctx, &mut client, &theme),
            3 => pick_discussion(ctx, &mut client, &theme),
            4 => verify_contact(&mut client, &theme),
            5 => Ok(()),
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
    let key = identity::init(
        &ctx.settings.node.data_dir,
        &name,
        (!pass.is_empty()).then_some(pass.as_str()),
    )?;
    println!(
        "Your fingerprint: {}",
        fingerprint_groups(key.fingerprint())
    );
    println!("Read it to the people you talk to, so they can verify it is you.");
    Ok((!pass.is_empty()).then_some(pass))
}

fn contact_line(c: &Value, now: u64) -> String {
    let mut marks = String::new();
    if c["verified"].as_bool() == Some(true) {
        marks.push_str(" [verified]");
    }
    if c["key_changed"].as_bool() == Some(true) {
        marks.push_str(" [KEY CHANGED]");
    }
    format!(
        "{:<16} {}  seen {}{}",
        safe_text::line(c["name"].as_str().unwrap_or("")),
        format::short_fpr(c["fingerprint"].as_str().unwrap_or("")),
        format::ago(c["last_seen"].as_u64().unwrap_or(0), now),
        marks
    )
}

fn show_contacts(client: &mut Client) -> Result<()> {
    let contacts = client.call("contacts", json!({}))?;
    let list = contacts.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("No contacts seen yet. Others appear here when their core runs on this network.");
    }
    let now = now_secs();
    for c in list {
        println!("  {}", contact_line(&c, now));
    }
    Ok(())
}

fn choose_contact(
    client: &mut Client,
    theme: &ColorfulTheme,
    prompt: &str,
) -> Result<Option<Value>> {
    let contacts = client.call("contacts", json!({}))?;
    let list = contacts.as_array().cloned().unwrap_or_default();
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
    let name = safe_text::line(c["name"].as_str().unwrap_or(""));
    let fpr = c["fingerprint"].as_str().unwrap_or("").to_string();
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
    let v = client.call("open", json!({"contact": fpr, "password": secret}))?;
    let id = v["discussion_id"].as_str().unwrap_or("").to_string();
    chat_view(ctx, client, &id, &name)
}

fn handle_request(ctx: &Ctx, client: &mut Client, theme: &ColorfulTheme) -> Result<()> {
    // Fetched now, not when the menu was drawn: a request may have arrived since.
    let requests = client.call("requests", json!({}))?;
    let list = requests.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("No requests waiting.");
        return Ok(());
    }
    let items: Vec<String> = list
        .iter()
        .map(|r| {
            format!(
                "#{} {} {}{}",
                r["id"],
                safe_text::line(r["name"].as_str().unwrap_or("")),
                fingerprint_groups(r["fingerprint"].as_str().unwrap_or("")),
                if r["key_changed"].as_bool() == Some(true) {
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
    let name = safe_text::line(r["name"].as_str().unwrap_or(""));
    let id = r["id"].as_u64().unwrap_or(0);
    let action = Select::with_theme(theme)
        .with_prompt(format!("{name} asks for a discussion"))
        .items(&["Accept (type the shared secret)", "Refuse"])
        .default(0)
        .interact_opt()?;
    match action {
        Some(0) => {
            let secret = Password::with_theme(theme)
                .with_prompt(format!("Secret shared with {name}"))
                .interact()?;
            let v = client.call("accept", json!({"request": id, "password": secret}))?;
            let did = v["discussion_id"].as_str().unwrap_or("").to_string();
            chat_view(ctx, client, &did, &name)
        }
        Some(_) => {
            client.call("refuse", json!({ "request": id }))?;
            println!("Refused.");
            Ok(())
        }
        None => Ok(()),
    }
}

fn pick_discussion(ctx: &Ctx, client: &mut Client, theme: &ColorfulTheme) -> Result<()> {
    let discussions = client.call("discussions", json!({}))?;
    let list = discussions.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("No discussions yet.");
        return Ok(());
    }
    let items: Vec<String> = list
        .iter()
        .map(|d| {
            format!(
                "{:<16} {:<6} {} unread  ({}){}",
                safe_text::line(d["peer_name"].as_str().unwrap_or("")),
                d["state"].as_str().unwrap_or(""),
                d["unread"],
                &d["id"].as_str().unwrap_or("")[..8.min(d["id"].as_str().unwrap_or("").len())],
                if d["peer_not_told"] == true {
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
    chat_view(
        ctx,
        client,
        d["id"].as_str().unwrap_or(""),
        &safe_text::line(d["peer_name"].as_str().unwrap_or("")),
    )
}

fn verify_contact(client: &mut Client, theme: &ColorfulTheme) -> Result<()> {
    let Some(c) = choose_contact(client, theme, "Verify")? else {
        return Ok(());
    };
    let me = client.call("whoami", json!({}))?;
    let name = &safe_text::line(c["name"].as_str().unwrap_or(""));
    println!("Compare aloud, out of band:");
    println!(
        "  you:   {}",
        fingerprint_groups(me["fingerprint"].as_str().unwrap_or(""))
    );
    println!(
        "  {name:<6} {}",
        fingerprint_groups(c["fingerprint"].as_str().unwrap_or(""))
    );
    if Confirm::with_theme(theme)
        .with_prompt(format!("Does {name} read you the same fingerprint?"))
        .default(false)
        .interact()?
    {
        client.call(
            "verify",
            json!({"contact": c["fingerprint"], "verified": true}),
        )?;
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

fn chat_view(ctx: &Ctx, client: &mut Client, discussion: &str, peer: &str) -> Result<()> {
    let term = Term::stdout();
    println!("--- {peer} ({discussion}) --- /back returns to the menu, /close ends the discussion");
    let history = client.call(
        "history",
        json!({"discussion": discussion, "limit": HISTORY_SHOWN}),
    )?;
    for m in history.as_array().cloned().unwrap_or_default() {
        println!("{}", format_message(&m, Some(peer)));
    }
    let screen = Arc::new(Mutex::new(Screen {
        term: term.clone(),
        input: String::new(),
        prompt: "> ".into(),
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let mut events = ctx.client()?;
    events.call("subscribe", json!({}))?;
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
                    Ok(Some(e)) if e["method"] != "lagged" => e,
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
                if let Some(line) = event_line(&e["params"], &id, &peer) {
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
        let _ = client.call("mark_read", json!({ "discussion": discussion }));
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
                        let v = client
                            .call("close", json!({ "discussion": discussion, "force": force }))?;
                        s.above(&if v["state"] == "closed" {
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
                        let r =
                            client.call("send", json!({"discussion": discussion, "text": text}));
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
fn event_line(p: &Value, discussion: &str, peer: &str) -> Option<String> {
    let mine = |k: &Value| k.as_str() == Some(discussion);
    match p["event"].as_str()? {
        "message" if mine(&p["message"]["discussion_id"]) && p["message"]["direction"] == "in" => {
            Some(format_message(&p["message"], Some(peer)))
        }
        "delivery" if mine(&p["discussion_id"]) => Some(format!(
            "          (message {} {})",
            p["seq"],
            p["state"].as_str().unwrap_or("")
        )),
        "connection" if mine(&p["discussion_id"]) => Some(format!(
            "          ({peer} {})",
            if p["connected"].as_bool() == Some(true) {
                "connected"
            } else {
                "disconnected; messages wait in the outbox"
            }
        )),
        "discussion_closed" if mine(&p["discussion_id"]) => Some(format!(
            "          (discussion closed{})",
            if p["by_peer"].as_bool() == Some(true) {
                " by the peer"
            } else {
                ""
            }
        )),
        "request" => Some(format!(
            "          (request from {}: see Requests in the menu)",
            safe_text::line(p["request"]["name"].as_str().unwrap_or(""))
        )),
        _ => None,
    }
}
