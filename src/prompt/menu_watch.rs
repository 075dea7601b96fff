//! While a menu is shown: the terminal bell when a message or a request arrives (`[prompt] bell`).
//! The menu widget cannot be redrawn from outside; its counts are fetched each time it is drawn,
//! and the bell says that they changed.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use pgpchat_actors::api::{self, Event, Notification};

use crate::ctx::Ctx;

/// How often the watcher looks at its stop flag.
const TICK: Duration = Duration::from_millis(200);

pub(super) struct MenuWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl MenuWatch {
    /// None when the bell is off or the core does not answer (the menu says so itself).
    pub(super) fn start(ctx: &Ctx) -> Option<Self> {
        if !ctx.settings.prompt.bell {
            return None;
        }
        let mut events = ctx.client().ok()?;
        events.call(api::SubscribeRequest {}).ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match events.next_event(Some(TICK)) {
                    Ok(Some(Notification::Event(e))) if arrival(&e) => {
                        let mut out = std::io::stdout();
                        let _ = out.write_all(b"\x07");
                        let _ = out.flush();
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        Some(Self { stop, thread })
    }

    pub(super) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// A request, or a message from a peer.
fn arrival(e: &Event) -> bool {
    match e {
        Event::Request { .. } => true,
        Event::Message { message } => message.direction == api::Direction::In,
        _ => false,
    }
}
