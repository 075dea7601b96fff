//! `pgpchat`: the command line and the terminal front-end of the pgpchat core.
//!
//! `main` is thin: parse arguments, run, print the error chain once, exit with the status of the
//! error's class (`exit`).

mod cli;
mod client;
mod commands;
mod core_process;
mod ctx;
mod exit;
mod format;
mod log_file;
mod man;
mod prompt;
mod safe_text;
mod secrets;
mod stdout;
mod web;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors may quote a peer (a refusal reason, a name): one safe line.
            // Not `eprintln!`: a closed stderr must not turn an error into a panic.
            // On a terminal, broken at words to its width (one line for a script).
            let _ = writeln!(
                std::io::stderr(),
                "{}",
                prompt::fit_to_stderr(&format!("pgpchat: {}", safe_text::line(&one_line(&e))))
            );
            ExitCode::from(exit::code(&e))
        }
    }
}

/// The error chain on one line, each cause once: a library error whose text already holds its
/// source's (`"...: {0}"`, or a hint after it) does not get it repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if line.contains(&cause) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&cause);
    }
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_cause_is_said_once() {
        use std::fmt;
        #[derive(Debug)]
        struct Inner;
        impl fmt::Display for Inner {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrong passphrase")
            }
        }
        impl std::error::Error for Inner {}
        #[derive(Debug)]
        struct Outer(Inner);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "identity key: {}", self.0)
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = anyhow::Error::new(Outer(Inner)).context("starting the core");
        assert_eq!(
            super::one_line(&e),
            "starting the core: identity key: wrong passphrase"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::one_line(&plain), "outer: inner");
    }
}
