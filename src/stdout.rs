//! Standard output for the one-shot commands: a reader that went away (`pgpchat discussions |
//! head -2`) ends the command quietly, as it ends any pipe producer, instead of `println!`'s panic
//! and backtrace.

use std::fmt;
use std::io::{self, Write};

/// The exit status of a pipe producer whose reader went away: the shell's code for SIGPIPE.
pub const EXIT_READER_GONE: i32 = 128 + 13;

/// Write `args` to stdout; if the reader has gone, exit quietly.
pub fn write(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        failed(&e);
    }
}

/// Flush stdout; if the reader has gone, exit quietly.
pub fn flush() -> io::Result<()> {
    match io::stdout().flush() {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => failed(&e),
        r => r,
    }
}

fn failed(e: &io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(EXIT_READER_GONE);
    }
    // Any other failure to write the output is an error, said once, as `println!` would.
    let _ = writeln!(io::stderr(), "pgpchat: writing to stdout: {e}");
    std::process::exit(1);
}
