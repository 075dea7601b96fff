//! Ctrl-C in the prompt: a flag that sends the person back to the menu, never the end of the
//! process with the terminal left behind (dialoguer hides the cursor while a menu is drawn).
//!
//! dialoguer reads keys in raw mode and, on Ctrl-C, raises SIGINT itself: with this handler the
//! signal only sets the flag, and the widget answers an `Interrupted` error. The chat view's line
//! editor reads Ctrl-C as a key. While the prompt waits for the core (a request waiting for the
//! peer), the terminal's own Ctrl-C sets the flag, which the wait polls.
//!
//! The signals that end a program (SIGTERM, SIGHUP: the terminal closed, SIGQUIT) would end the
//! prompt with the terminal as the prompt set it: no echo, perhaps raw mode and a hidden cursor.
//! A thread waits for them, gives the terminal back ([`super::tty::give_back`]), then lets the
//! signal end the process as it would have (the shell sees it: status 143 for SIGTERM, 129 for
//! SIGHUP). They are blocked in every other thread: delivered to the prompt's own thread, one
//! would interrupt its key read, whose widget then puts back *its* terminal settings (echo off)
//! just after the terminal was given back (seen under load).

use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::Signals;

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The signals that end the prompt, after the terminal is given back.
const ENDING: [std::ffi::c_int; 3] = [SIGTERM, SIGHUP, SIGQUIT];

/// Catch SIGINT for the rest of the process, and the signals that end it ([`ENDING`]). Called
/// by the prompt's thread before it starts any other: the threads it starts later inherit its
/// mask, in which [`ENDING`] are blocked. A program started from them would inherit it too: the
/// core is started from a thread whose mask is cleared first (`core_process::spawn_unmasked`).
pub(super) fn install() -> Result<()> {
    let flag = FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)));
    signal_hook::flag::register(SIGINT, flag.clone()).context("catching Ctrl-C")?;
    let mut ending = Signals::new(ENDING).context("catching SIGTERM and SIGHUP")?;
    // Started before the mask is set: the one thread they are delivered to.
    std::thread::Builder::new()
        .name("ending-signals".into())
        .spawn(move || {
            if let Some(signal) = ending.forever().next() {
                super::tty::give_back();
                // The signal's own action now (the end of the process), as if never caught.
                let _ = signal_hook::low_level::emulate_default_handler(signal);
            }
        })
        .context("starting the signal thread")?;
    let mut blocked = SigSet::empty();
    for signal in ENDING {
        blocked.add(Signal::try_from(signal).context("a signal number")?);
    }
    blocked
        .thread_block()
        .context("blocking SIGTERM and SIGHUP in the prompt's thread")?;
    Ok(())
}

/// Whether Ctrl-C was pressed since the last call (and forget it).
pub(super) fn take() -> bool {
    FLAG.get().is_some_and(|f| f.swap(false, Ordering::SeqCst))
}

/// Whether `e` is a widget (or a wait) ended by Ctrl-C.
pub(super) fn is_interrupt(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let io = c.downcast_ref::<std::io::Error>().or_else(|| {
            c.downcast_ref::<dialoguer::Error>()
                .map(|dialoguer::Error::IO(io)| io)
        });
        io.is_some_and(|io| io.kind() == ErrorKind::Interrupted)
    })
}

/// The terminal as a shell expects it: the cursor visible.
pub(super) fn restore_terminal() {
    let _ = console::Term::stdout().show_cursor();
}
