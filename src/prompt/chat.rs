//! The chat view: history, then a line editor; a second IPC connection subscribed to events runs
//! on its own thread and prints arriving messages *above* the line being typed (clear the line,
//! print, redraw the prompt and the typed text), under one lock on stdout, so incoming messages
//! never garble what the user is typing.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use console::{Key, Term};
use pgpchat_actors::api::{self, Notification};

use crate::client::Client;
use crate::ctx::Ctx;
use crate::format::format_message;
use crate::safe_text;

/// Messages of history shown when a chat view opens.
const HISTORY_SHOWN: u64 = 20;
/// At most this many unread messages are printed when a chat view opens (older ones: `history`).
const MAX_UNREAD_SHOWN: u64 = 2_000;

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
pub(super) fn chat_view(
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
                if let Some(line) = super::events::event_line(&e, &id, &peer) {
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
