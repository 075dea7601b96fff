//! What every command and the prompt share: the resolved settings, the output mode, and the global
//! options as the user gave them (to repeat them in hints).

use std::path::PathBuf;

use anyhow::Result;
use pgpchat_actors::api;
use pgpchat_actors::settings::Settings;
use serde::Serialize;

use crate::client::Client;
use crate::safe_text;

pub struct Ctx {
    pub settings: Settings,
    pub json: bool,
    pub profile: Option<String>,
    pub config: Option<PathBuf>,
    /// `--data-dir` as the user gave it (None: from the profile or the default).
    pub data_dir: Option<PathBuf>,
}

impl Ctx {
    /// A client of the running core, whose API version is checked.
    pub fn client(&self) -> Result<Client> {
        let mut c = self.client_unchecked()?;
        c.check_version(&self.hint("stop"))?;
        Ok(c)
    }

    /// A client of the running core, whatever its API version (`stop` must stop any core).
    pub fn client_unchecked(&self) -> Result<Client> {
        Client::connect(&self.settings.ipc_socket(), self.start_hint())
    }

    /// A command line to suggest in a hint: `pgpchat`, the global options the user gave
    /// (`--profile`, `--config`, `--data-dir`), then `args`. Run literally it acts on the same core
    /// and configuration; a bare `pgpchat daemon` would start the built-in defaults, which
    /// broadcast on the real network.
    pub fn hint(&self, args: &str) -> String {
        let mut words = vec!["pgpchat".to_string()];
        if let Some(p) = &self.profile {
            words.push("--profile".into());
            words.push(shell_quote(p));
        }
        if let Some(c) = &self.config {
            words.push("--config".into());
            words.push(shell_quote(&c.to_string_lossy()));
        }
        if let Some(d) = &self.data_dir {
            words.push("--data-dir".into());
            words.push(shell_quote(&d.to_string_lossy()));
        }
        words.push(args.into());
        format!("`{}`", words.join(" "))
    }

    /// What to say when no core answers.
    pub fn start_hint(&self) -> String {
        format!(
            "start it with {} or {}",
            self.hint("daemon"),
            self.hint("chat")
        )
    }

    /// Call a method of the running core.
    pub fn call<M: api::Method>(&self, request: M) -> Result<M::Result> {
        Ok(self.client()?.call(request)?)
    }

    /// Print `v`: as terminal-safe JSON with `--json` (keys in order, as the core wrote them),
    /// else with `human` (which must pass every peer-chosen string through `safe_text`).
    pub fn print<T: Serialize>(&self, v: &T, human: impl FnOnce(&T)) -> Result<()> {
        if self.json {
            // Through `crate::stdout`: a closed stdout ends the command quietly.
            crate::stdout::write(format_args!(
                "{}\n",
                safe_text::json(&serde_json::to_value(v)?)
            ));
        } else {
            human(v);
        }
        Ok(())
    }
}

/// Quote a word for a POSIX shell when it needs it.
pub fn shell_quote(w: &str) -> String {
    let plain = !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:=@%+,".contains(&b));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}
