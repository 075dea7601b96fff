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

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
            // Errors may quote a peer (a refusal reason, a name): one safe line.
            eprintln!("pgpchat: {}", safe_text::line(&chain.join(": ")));
            if core_process::already_running(&e) {
                ExitCode::from(core_process::EXIT_ALREADY_RUNNING)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
