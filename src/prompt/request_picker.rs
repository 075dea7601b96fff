//! The Requests picker, kept current while it is shown: a request that arrives appears, one
//! withdrawn by its sender, expired or answered elsewhere goes (it used to stay pickable until the
//! person left the picker and came back). Built as the home menu is ([`super::home`]): a key
//! reader (this thread) and a watcher (a subscribed connection on its own thread) draw it under
//! one lock; the watcher reads the requests again on each request event, and every [`REFRESH`]
//! without one, and redraws the picker in place when they changed, the selection staying on the
//! request it was on. Keys as in the other menus: Up/Down (k/j, Tab), Enter, Esc or q back to the
//! menu, Ctrl-C too. When the core stops, the picker gives way to the menu, which says so.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use console::{style, Key, Term};
use pgpchat_actors::api::{Event, Notification, PendingRequest};
use pgpchat_actors::offline::fingerprint_groups;

use crate::ctx::Ctx;
use crate::safe_text;

/// How often the key reader and the watcher look at their flags.
const TICK: Duration = Duration::from_millis(200);
/// How often the watcher reads the requests again without an event about them.
const REFRESH: Duration = Duration::from_secs(1);
/// The picker's question.
const PROMPT: &str = "Request";
/// Shown while no request waits.
const NONE_WAITING: &str = "(none waiting: new ones appear here)";

/// A request as the picker shows it (peer text made safe).
fn entry(r: &PendingRequest) -> String {
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
}

struct Picker {
    term: Term,
    list: Vec<PendingRequest>,
    selected: usize,
    /// Lines drawn last time (to redraw in place); 0 once the picker is replaced.
    drawn: usize,
}

impl Picker {
    fn draw(&mut self) {
        let _ = self.term.clear_last_lines(self.drawn);
        let mut lines = vec![format!(
            "{} {} {}",
            style("?").yellow().bold(),
            style(PROMPT).bold(),
            style("›").dim()
        )];
        if self.list.is_empty() {
            let max = super::width::columns().saturating_sub(super::width::ENTRY_EXTRA);
            lines.push(format!(
                "  {}",
                style(super::width::cut(NONE_WAITING, max)).dim()
            ));
        }
        let items: Vec<String> = self.list.iter().map(entry).collect();
        for (i, item) in super::width::entries(&items).into_iter().enumerate() {
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

    /// A new list: the selection stays on the request it was on, else at its place.
    fn update(&mut self, list: Vec<PendingRequest>) {
        let was = self.list.get(self.selected).map(|r| r.id);
        self.selected = was
            .and_then(|id| list.iter().position(|r| r.id == id))
            .unwrap_or(self.selected)
            .min(list.len().saturating_sub(1));
        self.list = list;
        self.draw();
    }

    /// Take the picker off the screen.
    fn clear(&mut self) {
        let _ = self.term.clear_last_lines(self.drawn);
        self.drawn = 0;
    }
}

/// Show the requests until one is chosen (it is returned), or the person goes back (None; also
/// when the core stopped: the menu says so). Ctrl-C ends it with an `Interrupted` error.
pub(super) fn pick(ctx: &Ctx, list: Vec<PendingRequest>) -> Result<Option<PendingRequest>> {
    let term = Term::stdout();
    let picker = Arc::new(Mutex::new(Picker {
        term: term.clone(),
        list,
        selected: 0,
        drawn: 0,
    }));
    let _ = term.hide_cursor();
    // Keys typed before the picker was drawn were meant for the menu before it.
    super::tty::drop_typeahead();
    lock(&picker)?.draw();
    let gone = Arc::new(AtomicBool::new(false));
    let watcher = Watcher::start(ctx, picker.clone(), gone.clone());
    let keys = super::tty::KeyByKey::on();
    let result = loop {
        if gone.load(Ordering::SeqCst) {
            lock(&picker)?.clear();
            break Ok(None);
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
        let mut p = lock(&picker)?;
        let n = p.list.len().max(1);
        match key {
            Key::ArrowDown | Key::Tab | Key::Char('j') => p.selected = (p.selected + 1) % n,
            Key::ArrowUp | Key::BackTab | Key::Char('k') => p.selected = (p.selected + n - 1) % n,
            Key::Enter | Key::Char(' ') => {
                let Some(r) = p.list.get(p.selected).cloned() else {
                    continue;
                };
                p.clear();
                break Ok(Some(r));
            }
            Key::Escape | Key::Char('q') => {
                p.clear();
                break Ok(None);
            }
            _ => continue,
        }
        p.draw();
    };
    if let Some(w) = watcher {
        w.stop();
    }
    drop(keys);
    let _ = term.show_cursor();
    if let Ok(Some(r)) = &result {
        // The choice on a line of its own, whole, broken at words (as the other pickers do).
        super::lines::print(&format!(
            "{} {} {} {}",
            style("✔").green(),
            style(PROMPT).bold(),
            style("·").dim(),
            style(entry(r)).green()
        ));
    }
    result
}

/// The thread that keeps the picker's list current while it is shown.
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Watcher {
    /// None when the core does not answer (the picker then shows the list it was given).
    /// `gone` is set when the core stops.
    fn start(ctx: &Ctx, picker: Arc<Mutex<Picker>>, gone: Arc<AtomicBool>) -> Option<Self> {
        let mut events = ctx.client().ok()?;
        events.call(pgpchat_actors::api::SubscribeRequest {}).ok()?;
        let mut reader = ctx.client().ok()?;
        let bell = ctx.settings.prompt.bell;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            // Read once as soon as the subscription is on: a request that came between the
            // caller's reading and it has no event here.
            let mut last_read: Option<Instant> = None;
            let mut subscribed = true;
            while !stopping.load(Ordering::Relaxed) {
                let due = last_read.is_none_or(|t| t.elapsed() >= REFRESH);
                if !due && !subscribed {
                    std::thread::sleep(TICK);
                    continue;
                }
                if !due {
                    match events.next_event(Some(TICK)) {
                        Ok(Some(Notification::Event(
                            Event::Request { .. } | Event::RequestClosed { .. },
                        ))) => {}
                        Ok(_) => continue,
                        // The subscription ended: the core stopped (the reading now says so),
                        // or it dropped a subscriber that fell behind (the list is read each
                        // second from now on).
                        Err(_) => subscribed = false,
                    }
                }
                last_read = Some(Instant::now());
                let Ok(list) = reader.requests() else {
                    gone.store(true, Ordering::SeqCst);
                    return;
                };
                let Ok(mut p) = picker.lock() else { return };
                // Not after the key reader has taken the picker off the screen.
                if p.drawn == 0 || stopping.load(Ordering::Relaxed) {
                    return;
                }
                if list != p.list {
                    let arrived = list.iter().any(|r| !p.list.iter().any(|o| o.id == r.id));
                    if arrived && bell {
                        let _ = p.term.write_all(b"\x07");
                    }
                    p.update(list);
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

fn lock(p: &Mutex<Picker>) -> Result<MutexGuard<'_, Picker>> {
    p.lock().map_err(|_| anyhow!("picker lock poisoned"))
}
