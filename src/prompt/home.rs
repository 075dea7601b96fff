//! The home menu, with counts that update while it is shown: a key reader (this thread) and a
//! watcher (a subscribed connection on its own thread) draw it under one lock. When a request or a
//! message arrives the watcher re-reads the counts, redraws the menu in place, and rings the bell
//! (`[prompt] bell`). Keys as in the other menus: Up/Down (k/j, Tab), Enter, Esc or q to quit.
//! When the core stops while the menu is shown, the watcher sees it and the menu gives way at
//! once to "the core stopped" and the question to start it again: the key reader waits for a key
//! or that, key by key ([`super::tty::KeyByKey`]), never blocked in a read.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use console::{style, Key, Term};
use pgpchat_actors::api::{self, Event, Notification};

use crate::client::Client;
use crate::ctx::Ctx;

/// How often the watcher looks at its stop flag.
const TICK: Duration = Duration::from_millis(200);
/// How often the watcher reads the counts again without an event: messages read elsewhere
/// (another front-end, `pgpchat history`) change the unread count with no event for it.
const REFRESH: Duration = Duration::from_secs(1);

/// What the menu counts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    pub requests: usize,
    pub unread: u64,
    /// Introductions waiting for our decision.
    pub introductions: usize,
}

/// The counts, as the core says now.
pub(super) fn counts(client: &mut Client) -> Result<Counts> {
    let requests = client.requests()?.len();
    let unread = client
        .call(api::DiscussionsRequest {})?
        .iter()
        .map(|d| d.unread)
        .sum();
    let introductions = client
        .call(api::IntroductionsRequest {})?
        .iter()
        .filter(|i| i.state == api::IntroductionState::Pending)
        .count();
    Ok(Counts {
        requests,
        unread,
        introductions,
    })
}

/// The menu's entries; the caller matches on the index.
fn items(c: Counts) -> [String; 11] {
    [
        "Contacts".to_string(),
        "Open a discussion".to_string(),
        format!("Requests ({})", c.requests),
        format!("Discussions ({} unread)", c.unread),
        "Verify a contact".to_string(),
        "Add a contact by address".to_string(),
        "Ask a contact for its contacts".to_string(),
        format!("Introductions ({})", c.introductions),
        "Introduce two contacts".to_string(),
        "Refresh".to_string(),
        "Quit".to_string(),
    ]
}

struct Menu {
    term: Term,
    counts: Counts,
    selected: usize,
    /// Lines drawn last time (to redraw in place).
    drawn: usize,
}

impl Menu {
    fn draw(&mut self) {
        let _ = self.term.clear_last_lines(self.drawn);
        let mut lines = vec![format!("{} pgpchat ›", style("?").yellow().bold())];
        for (i, item) in items(self.counts).iter().enumerate() {
            lines.push(if i == self.selected {
                format!("{} {}", style("❯").green(), style(item).cyan())
            } else {
                format!("  {item}")
            });
        }
        let _ = self.term.write_str(&lines.join("\n"));
        let _ = self.term.write_line("");
        let _ = self.term.flush();
        self.drawn = lines.len();
    }

    /// Replace the menu with the line of what was chosen.
    fn chosen(&mut self) {
        let _ = self.term.clear_last_lines(self.drawn);
        let item = items(self.counts)[self.selected].clone();
        // Broken at words: "✔ pgpchat · " and a long entry are wider than a narrow pane.
        let _ = self.term.write_line(&super::lines::fill(&format!(
            "{} pgpchat · {}",
            style("✔").green(),
            style(item).green()
        )));
        self.drawn = 0;
    }
}

/// How the menu ended.
pub(super) enum Choice {
    /// The entry at this index.
    Entry(usize),
    Quit,
    /// The core stopped while the menu was shown (said already).
    CoreStopped,
}

/// Said at once when the core stops under the menu.
const CORE_STOPPED: &str = "! the core stopped";

/// Show the menu until an entry is chosen, the person quits, or the core stops.
pub(super) fn choose(ctx: &Ctx, counts: Counts) -> Result<Choice> {
    let term = Term::stdout();
    let menu = Arc::new(Mutex::new(Menu {
        term: term.clone(),
        counts,
        selected: 0,
        drawn: 0,
    }));
    let _ = term.hide_cursor();
    // Keys typed before the menu was drawn were meant for the view before it.
    super::tty::drop_typeahead();
    lock(&menu)?.draw();
    let gone = Arc::new(AtomicBool::new(false));
    let watcher = Watcher::start(ctx, menu.clone(), gone.clone());
    let _keys = super::tty::KeyByKey::on();
    let result = loop {
        // A key, or the core stopping (the watcher saw it): not a key pressed first.
        if gone.load(Ordering::SeqCst) {
            let mut m = lock(&menu)?;
            let _ = m.term.clear_last_lines(m.drawn);
            m.drawn = 0;
            let _ = m.term.write_line(CORE_STOPPED);
            break Ok(Choice::CoreStopped);
        }
        // Outside a key read the terminal turns Ctrl-C into SIGINT (its flag): as the key.
        if super::interrupt::take() {
            break Err(std::io::Error::from(std::io::ErrorKind::Interrupted).into());
        }
        if !super::tty::key_waiting(TICK) {
            continue;
        }
        let key = match term.read_key() {
            Ok(k) => k,
            Err(e) => break Err(e.into()),
        };
        let mut m = lock(&menu)?;
        let n = items(m.counts).len();
        match key {
            Key::ArrowDown | Key::Tab | Key::Char('j') => m.selected = (m.selected + 1) % n,
            Key::ArrowUp | Key::BackTab | Key::Char('k') => m.selected = (m.selected + n - 1) % n,
            Key::Enter | Key::Char(' ') => {
                m.chosen();
                break Ok(Choice::Entry(m.selected));
            }
            Key::Escape | Key::Char('q') => {
                let _ = m.term.clear_last_lines(m.drawn);
                m.drawn = 0;
                break Ok(Choice::Quit);
            }
            _ => continue,
        }
        m.draw();
    };
    if let Some(w) = watcher {
        w.stop();
    }
    let _ = term.show_cursor();
    result
}

/// The thread that keeps the menu's counts current while it is shown.
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Watcher {
    /// None when the core does not answer (the menu then shows the counts it was given).
    /// `gone` is set when the core stops (its subscription or a reading fails).
    fn start(ctx: &Ctx, menu: Arc<Mutex<Menu>>, gone: Arc<AtomicBool>) -> Option<Self> {
        let mut events = ctx.client().ok()?;
        events.call(api::SubscribeRequest {}).ok()?;
        let mut reader = ctx.client().ok()?;
        let bell = ctx.settings.prompt.bell;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            // Read once now that the subscription is on: what changed between the caller's
            // counts and it (a message marked read as a chat view closed) has no event here.
            let mut last_read: Option<Instant> = None;
            while !stopping.load(Ordering::Relaxed) {
                let due = last_read.is_none_or(|t| t.elapsed() >= REFRESH);
                // When a reading is due, the events wait for the next turn.
                let arrival = if due {
                    false
                } else {
                    match events.next_event(Some(TICK)) {
                        Ok(Some(Notification::Event(e))) => match &e {
                            Event::Request { .. } => true,
                            Event::Message { message } => message.direction == api::Direction::In,
                            _ => false,
                        },
                        Ok(_) => continue,
                        // The subscription ended: the core stopped, unless it still answers (it
                        // dropped a subscriber that fell behind: the counts stay as they are).
                        Err(_) => {
                            if counts(&mut reader).is_err() {
                                gone.store(true, Ordering::SeqCst);
                            }
                            return;
                        }
                    }
                };
                last_read = Some(Instant::now());
                let Ok(c) = counts(&mut reader) else {
                    gone.store(true, Ordering::SeqCst);
                    return;
                };
                let Ok(mut m) = menu.lock() else { return };
                // Not after the key reader has replaced the menu with the chosen line.
                if m.drawn == 0 || stopping.load(Ordering::Relaxed) {
                    return;
                }
                if arrival && bell {
                    let _ = m.term.write_all(b"\x07");
                }
                if c != m.counts {
                    m.counts = c;
                    m.draw();
                }
            }
        });
        Some(Self { stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn lock(m: &Mutex<Menu>) -> Result<std::sync::MutexGuard<'_, Menu>> {
    m.lock().map_err(|_| anyhow!("menu lock poisoned"))
}
