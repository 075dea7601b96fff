//! The terminal between views. While the prompt changes views (a menu gives way to a chat view,
//! a request waits for the peer, a chat view closes) no widget reads the keyboard: the terminal
//! is in its own cooked mode, echoes what is typed (`^[[A` for an arrow) and keeps it for the next
//! widget, which then acts on keys meant for the view before it. So the echo stays off for the
//! whole prompt (each widget draws what it reads itself), and the keys typed meanwhile are
//! dropped (`tcflush(TCIFLUSH)`) when a view begins.

use std::sync::Mutex;

use rustix::termios::{self, LocalModes, OptionalActions, QueueSelector, Termios};

/// The terminal's settings before the prompt changed them, put back when it ends.
static ORIGINAL: Mutex<Option<Termios>> = Mutex::new(None);

/// Turn the echo off for the rest of the prompt (until [`restore`]). Nothing when stdin is not a
/// terminal.
pub(super) fn quiet() {
    let stdin = std::io::stdin();
    let Ok(mut t) = termios::tcgetattr(&stdin) else {
        return;
    };
    if let Ok(mut original) = ORIGINAL.lock() {
        original.get_or_insert_with(|| t.clone());
    }
    t.local_modes.remove(LocalModes::ECHO | LocalModes::ECHONL);
    let _ = termios::tcsetattr(&stdin, OptionalActions::Now, &t);
}

/// Drop the keys typed and not read yet: a view begins, they were meant for none of its widgets.
pub(super) fn drop_typeahead() {
    let _ = termios::tcflush(std::io::stdin(), QueueSelector::IFlush);
}

/// Keys one by one (not a line at a time) until the guard is dropped, so [`key_waiting`] sees a
/// key as soon as it is typed: the home menu waits for a key *or* the core stopping.
pub(super) struct KeyByKey(Option<Termios>);

impl KeyByKey {
    pub(super) fn on() -> Self {
        let stdin = std::io::stdin();
        let Ok(before) = termios::tcgetattr(&stdin) else {
            return Self(None);
        };
        let mut t = before.clone();
        t.local_modes.remove(LocalModes::ICANON);
        t.special_codes[termios::SpecialCodeIndex::VMIN] = 1;
        t.special_codes[termios::SpecialCodeIndex::VTIME] = 0;
        let _ = termios::tcsetattr(&stdin, OptionalActions::Now, &t);
        Self(Some(before))
    }
}

impl Drop for KeyByKey {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &t);
        }
    }
}

/// Whether a key can be read now, waiting at most `wait` for one.
pub(super) fn key_waiting(wait: std::time::Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: i64::from(wait.subsec_nanos()),
    };
    // Interrupted by a signal (Ctrl-C, which the caller reads from its flag): no key.
    poll(&mut fds, Some(&timeout)).is_ok_and(|n| n > 0)
}

/// The terminal's settings as they were before [`quiet`].
pub(super) fn restore() {
    let original = ORIGINAL.lock().ok().and_then(|mut o| o.take());
    if let Some(t) = original {
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &t);
    }
}

/// What a terminal program leaves behind if it ends in the middle of a widget, undone: bracketed
/// paste off (the line editor turns it on while it reads), the cursor shown (a menu hides it).
const MODES_OFF: &[u8] = b"\x1b[?2004l\x1b[?25h";

/// The terminal as the prompt found it, whatever it was doing: its settings (echo, line mode:
/// a widget in raw mode is left behind too) and its modes ([`MODES_OFF`]). For the prompt's end
/// by a signal, from another thread: written straight to the file descriptor, never through
/// `stdout()`'s lock, which the prompt's own thread may hold.
pub(super) fn give_back() {
    restore();
    let stdout = std::io::stdout();
    if termios::isatty(&stdout) {
        let _ = rustix::io::write(&stdout, MODES_OFF);
    }
}
