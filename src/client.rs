//! The front-end's handle on the library's blocking client ([`pgpchat_actors::client::Client`]):
//! the same client, with errors that tell the user what to run (start a core, or restart an
//! incompatible one) using their own global options.

use std::ops::{Deref, DerefMut};
use std::path::Path;

use anyhow::Result;
use pgpchat_actors::api::{VersionInfo, API_VERSION};
use pgpchat_actors::client::{self, ClientError};

pub struct Client(client::Client);

/// A client error with what to run about it (`; start it with ...`). The typed error stays its
/// source, so the exit status is chosen from it; `main` says its text once (it is part of this one).
#[derive(Debug)]
pub struct Hinted {
    pub error: ClientError,
    pub text: String,
}

impl std::fmt::Display for Hinted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Hinted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl Client {
    /// Connect to the core on `socket`; `start_hint` ends the error when none answers.
    pub fn connect(socket: &Path, start_hint: String) -> Result<Self> {
        client::Client::connect(socket)
            .map(Self)
            .map_err(|e| match e {
                ClientError::NotRunning { .. } => Hinted {
                    text: format!("{e}; {start_hint}"),
                    error: e,
                }
                .into(),
                e => e.into(),
            })
    }

    /// Check that the core speaks a compatible API; if not, one line saying how to restart it
    /// (`stop_hint` is the user's `pgpchat stop` command line).
    pub fn check_version(&mut self, stop_hint: &str) -> Result<VersionInfo> {
        self.0.check_version().map_err(|e| match e {
            ClientError::Incompatible { ref core } => Hinted {
                text: format!(
                    "the running core speaks API {core} and this pgpchat needs API {API_VERSION}: \
                     stop it with {stop_hint}, then start it again"
                ),
                error: e,
            }
            .into(),
            e => e.into(),
        })
    }
}

impl Deref for Client {
    type Target = client::Client;
    fn deref(&self) -> &client::Client {
        &self.0
    }
}

impl DerefMut for Client {
    fn deref_mut(&mut self) -> &mut client::Client {
        &mut self.0
    }
}
