//! Secrets (the identity passphrase, discussion secrets) come from a file, the environment or a
//! hidden prompt; never from the command line, where other users could read them in `ps`.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use anyhow::{Context, Result};

/// Read a secret from `file` (`-` is standard input; the first line, without its newline), else
/// the environment variable `env`, else a hidden prompt when there is a terminal.
pub fn obtain(file: Option<&Path>, env: &str, prompt: &str, confirm: bool) -> Result<String> {
    let secret = if let Some(f) = file {
        read_file(f)?
    } else if let Ok(v) = std::env::var(env) {
        v
    } else if std::io::stdin().is_terminal() {
        let mut p = dialoguer::Password::new().with_prompt(prompt);
        if confirm {
            p = p.with_confirmation("Repeat it", "The two entries differ");
        }
        p.interact()
            .context("reading the secret from the terminal")?
    } else {
        return Err(crate::exit::Usage(format!(
            "a secret is needed: give a file (--password-file/--passphrase-file) or set {env}"
        ))
        .into());
    };
    if secret.is_empty() {
        return Err(crate::exit::Usage("the secret is empty".into()).into());
    }
    Ok(secret)
}

pub fn read_file(f: &Path) -> Result<String> {
    let mut line = String::new();
    if f == Path::new("-") {
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the secret from standard input")?;
    } else {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        line = text.lines().next().unwrap_or("").to_string();
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
