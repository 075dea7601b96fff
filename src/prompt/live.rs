//! The chat view's live updates: a second IPC connection, subscribed to events, on its own thread.
//! It prints through the line editor's external printer, so arriving lines go *above* the line
//! being typed and the typing stays intact.
//!
//! Our own message is printed when the core announces it, with its delivery mark if it is
//! delivered within [`OWN_MESSAGE_WAIT`]; later deliveries are told together on one short line
//! after [`DELIVERED_QUIET`] without another one (never a line per state per message).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pgpchat_actors::api::{self, DeliveryState, Message, Notification};
use rustyline::ExternalPrinter;

use super::events::{self, Scope, Shown};
use super::lines;
use super::transcript;
use crate::client::Client;

/// How long our own message waits for its delivery before it is printed with the mark it has.
const OWN_MESSAGE_WAIT: Duration = Duration::from_millis(400);
/// Deliveries are told once none came for this long.
const DELIVERED_QUIET: Duration = Duration::from_millis(300);
/// How often the thread looks at its stop flag and its timers.
const TICK: Duration = Duration::from_millis(100);
/// A resize is acted on once the size has not changed for this long: the editor has handled its
/// own SIGWINCH by then (the redraw must come after it), and a window dragged wider is drawn once.
const RESIZE_SETTLE: Duration = Duration::from_millis(150);
/// Rows left under the redrawn conversation for the line being typed.
const INPUT_ROWS: usize = 3;
/// At most this many of our messages wait for their mark, and this many deliveries for their
/// line (more are printed at once): bounded whatever the core sends.
const MAX_WAITING: usize = 64;

/// Said when the core ends the subscription: nothing new will appear until it is restarted.
pub(super) const CORE_STOPPED: &str =
    "── the core stopped: /restart starts it again (what you type is kept) ──";

/// How the thread ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ended {
    /// The view asked it to stop: everything that arrived was shown.
    Stopped,
    /// The core went away (or dropped us): what came after was not shown.
    CoreGone,
}

pub(super) struct Live {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Ended>>,
}

impl Live {
    pub(super) fn start<P: ExternalPrinter + Send + 'static>(
        mut events: Client,
        mut marker: Client,
        printer: P,
        mut scope: Scope,
        mut days: lines::Days,
        bell: bool,
        core_gone: Arc<AtomicBool>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let printer = std::cell::RefCell::new(printer);
            let out = |line: String| {
                let _ = printer
                    .borrow_mut()
                    .print(format!("{}\n", transcript::text(lines::fill(&line))));
            };
            // A message, after a date line when it is on another day than the last one shown.
            let mut dated = |m: &Message, peer: &str| {
                // The date line is kept before the message, as it is printed: a redraw shows
                // the same lines in the same order.
                let date = days.line_for(m.time).map(transcript::text);
                let line = transcript::message(m, peer);
                let _ = printer.borrow_mut().print(match date {
                    Some(d) => format!("{d}\n{line}\n"),
                    None => format!("{line}\n"),
                });
            };
            let term = console::Term::stdout();
            let mut size = term.size();
            let mut resized: Option<((u16, u16), Instant)> = None;
            let mut own: Vec<(Message, Instant)> = Vec::new();
            let mut delivered: BTreeSet<u64> = BTreeSet::new();
            let mut last_delivery = Instant::now();
            let ended = loop {
                if stopping.load(Ordering::Relaxed) {
                    break Ended::Stopped;
                }
                let event = match events.next_event(Some(TICK)) {
                    Ok(Some(Notification::Event(e))) => Some(e),
                    Ok(None) => None,
                    // The core closed the subscription (stopped, restarted, or we fell behind):
                    // say so plainly and stop, rather than spin on the error and show nothing.
                    _ => break Ended::CoreGone,
                };
                match event.map(|e| events::show(&e, &mut scope)) {
                    Some(Shown::Line(l)) => {
                        flush_own(&mut own, &mut dated);
                        out(l);
                    }
                    Some(Shown::Theirs(m)) => {
                        flush_own(&mut own, &mut dated);
                        dated(&m, &scope.peer);
                        // Shown in an open view: read (on a connection of its own, the
                        // subscription's carries only events).
                        let _ = marker.call(api::MarkReadRequest {
                            discussion: scope.discussion.clone(),
                        });
                    }
                    Some(Shown::Own(m)) => {
                        if own.len() >= MAX_WAITING {
                            flush_own(&mut own, &mut dated);
                        }
                        own.push((m, Instant::now()));
                    }
                    Some(Shown::Delivered(seq)) => {
                        if let Some(i) = own.iter().position(|(m, _)| m.seq == seq) {
                            // Printed now with its mark; those before it first, in order.
                            own[i].0.state = DeliveryState::Delivered;
                            let rest = own.split_off(i + 1);
                            flush_own(&mut own, &mut dated);
                            own = rest;
                        } else if delivered.len() < MAX_WAITING {
                            delivered.insert(seq);
                            last_delivery = Instant::now();
                        }
                    }
                    Some(Shown::Elsewhere(text)) => {
                        // Kept without the bell: a redraw does not ring it again.
                        transcript::text(lines::fill(&events::elsewhere_line(&text, false)));
                        let _ = printer.borrow_mut().print(format!(
                            "{}\n",
                            lines::fill(&events::elsewhere_line(&text, bell))
                        ));
                    }
                    Some(Shown::Nothing) | None => {}
                }
                if own
                    .first()
                    .is_some_and(|(_, t)| t.elapsed() >= OWN_MESSAGE_WAIT)
                {
                    flush_own(&mut own, &mut dated);
                }
                if !delivered.is_empty()
                    && (last_delivery.elapsed() >= DELIVERED_QUIET
                        || delivered.len() >= MAX_WAITING)
                {
                    let n = std::mem::take(&mut delivered).len();
                    out(events::delivered_line(n));
                }
                // The terminal was resized: once the size settles, draw the view again.
                let now = term.size();
                if now != size {
                    match resized {
                        Some((s, t)) if s == now && t.elapsed() >= RESIZE_SETTLE => {
                            size = now;
                            resized = None;
                            let redraw = transcript::redraw(
                                usize::from(now.1),
                                usize::from(now.0),
                                INPUT_ROWS,
                            );
                            let _ = printer.borrow_mut().print(redraw);
                        }
                        Some((s, _)) if s == now => {}
                        _ => resized = Some((now, Instant::now())),
                    }
                }
            };
            flush_own(&mut own, &mut dated);
            if ended == Ended::CoreGone {
                core_gone.store(true, Ordering::SeqCst);
                out(lines::notice(CORE_STOPPED));
            }
            ended
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop the thread; how it ended.
    pub(super) fn stop(mut self) -> Ended {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or(Ended::CoreGone)
    }
}

impl Drop for Live {
    /// A view left by an error stops its thread too (it would print into the menu).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn flush_own(own: &mut Vec<(Message, Instant)>, dated: &mut impl FnMut(&Message, &str)) {
    for (m, _) in own.drain(..) {
        dated(&m, "");
    }
}
