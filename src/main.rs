//! `pgpchat`: the command line and the terminal front-end of the pgpchat core.
//!
//! `main` is thin: parse arguments, run, print the error chain once, exit non-zero on failure.

mod cli;
mod client;
mod commands;
mod core_process;
mod ctx;
mod format;
mod log_file;
mod prompt;
mod safe_text;
mod secrets;
mod stdout;

use std::process::ExitCode;

use clap::Parser;

/// The error and its causes joined by ": ", each said once: the library's errors show their
/// source's text and keep the source typed, so a cause the line already ends with is skipped.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for link in e.chain().map(ToString::to_string) {
        if line.is_empty() {
            line = link;
        } else if !line.ends_with(&link) {
            line.push_str(": ");
            line.push_str(&link);
        }
    }
    line
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors may quote a peer (a refusal reason, a name): one safe line.
            eprintln!("pgpchat: {}", safe_text::line(&one_line(&e)));
            if core_process::already_running(&e) {
                ExitCode::from(core_process::EXIT_ALREADY_RUNNING)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_cause_already_shown_is_not_repeated() {
        // A library error showing its typed source's text, under a context.
        let e = pgpchat_actors::codec::decode::<String>(&[0xff; 9]).unwrap_err();
        let shown = e.to_string();
        let e = anyhow::Error::new(e).context("opening the store");
        assert_eq!(e.chain().count(), 3);
        assert_eq!(one_line(&e), format!("opening the store: {shown}"));
    }
}
