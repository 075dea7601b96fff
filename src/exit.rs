//! Exit statuses: one per class of failure, so a script can tell "not found" from "refused" from
//! "no core" without reading English. Chosen from the typed errors of the library (the API's error
//! kinds, the client's and the daemon's errors), never from their text. Listed in `pgpchat --help`
//! and README.md.

use pgpchat_actors::api::ErrorKind;
use pgpchat_actors::client::ClientError;
use pgpchat_actors::daemon::DaemonError;
use pgpchat_actors::offline::IdentityError;
use pgpchat_actors::settings::SettingsError;

/// Everything else: an internal error, a failure of the peer or the network, an I/O error.
pub const INTERNAL: u8 = 1;
/// A bad command line (clap exits with 2 too), bad configuration, a missing secret.
pub const USAGE: u8 = 2;
/// No such contact, discussion, request or identity.
pub const NOT_FOUND: u8 = 3;
/// Refused by the peer or by the core: a wrong secret or passphrase, someone intercepting, too many
/// attempts, a busy peer, a closed discussion.
pub const REFUSED: u8 = 4;
/// No core answers on the socket.
pub const NOT_RUNNING: u8 = 5;
/// The running core speaks an API this binary does not.
pub const INCOMPATIBLE: u8 = 6;
/// `daemon`: another core holds the data directory (the prompt's autostart tells this from a
/// failure: another prompt started the core at the same moment, so it waits for that core).
pub const ALREADY_RUNNING: u8 = 7;

/// A usage error the binary found itself (a secret needed and no way to read it, ...).
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// An error reworded for the user (a hint added) that keeps the exit status of the original.
#[derive(Debug)]
pub struct Reworded {
    pub code: u8,
    pub text: String,
}

impl Reworded {
    /// `text` in place of `e`'s message, with `e`'s exit status.
    pub fn of(e: &anyhow::Error, text: String) -> anyhow::Error {
        Reworded {
            code: code(e),
            text,
        }
        .into()
    }
}

impl std::fmt::Display for Reworded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Reworded {}

/// The exit status for `e`: the first cause in its chain that says which class it is.
pub fn code(e: &anyhow::Error) -> u8 {
    e.chain().find_map(classify).unwrap_or(INTERNAL)
}

fn classify(cause: &(dyn std::error::Error + 'static)) -> Option<u8> {
    if let Some(e) = cause.downcast_ref::<Reworded>() {
        return Some(e.code);
    }
    if let Some(e) = cause.downcast_ref::<ClientError>() {
        return Some(client(e));
    }
    if let Some(e) = cause.downcast_ref::<DaemonError>() {
        if e.is_already_running() {
            return Some(ALREADY_RUNNING);
        }
        return e.identity().and_then(identity);
    }
    if let Some(e) = cause.downcast_ref::<IdentityError>() {
        return identity(e);
    }
    if cause.is::<SettingsError>() || cause.is::<Usage>() {
        return Some(USAGE);
    }
    None
}

fn client(e: &ClientError) -> u8 {
    match e {
        ClientError::NotRunning { .. } => NOT_RUNNING,
        ClientError::Incompatible { .. } => INCOMPATIBLE,
        ClientError::Rpc(r) => kind(r.kind()),
        _ => INTERNAL,
    }
}

/// The exit status of an API error kind.
pub fn kind(k: ErrorKind) -> u8 {
    match k {
        ErrorKind::NotFound => NOT_FOUND,
        ErrorKind::InvalidParams
        | ErrorKind::InvalidRequest
        | ErrorKind::ParseError
        | ErrorKind::MethodNotFound => USAGE,
        ErrorKind::Refused
        | ErrorKind::WrongSecretOrIntercepted
        | ErrorKind::TooManyAttempts
        | ErrorKind::Busy
        | ErrorKind::NotConfirmed
        | ErrorKind::Closed
        | ErrorKind::Cancelled => REFUSED,
        ErrorKind::Internal
        | ErrorKind::TooManyInFlight
        | ErrorKind::Unreachable
        | ErrorKind::Timeout
        | ErrorKind::Protocol
        | ErrorKind::Failed
        | ErrorKind::Other => INTERNAL,
    }
}

fn identity(e: &IdentityError) -> Option<u8> {
    match e {
        IdentityError::Missing(_) => Some(NOT_FOUND),
        IdentityError::Exists(_) => Some(REFUSED),
        IdentityError::BadName => Some(USAGE),
        e if e.is_wrong_passphrase() => Some(REFUSED),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_class() {
        assert_eq!(kind(ErrorKind::NotFound), NOT_FOUND);
        assert_eq!(kind(ErrorKind::WrongSecretOrIntercepted), REFUSED);
        assert_eq!(kind(ErrorKind::InvalidParams), USAGE);
        assert_eq!(kind(ErrorKind::Unreachable), INTERNAL);
        let e = anyhow::Error::new(ClientError::Rpc(pgpchat_actors::api::RpcError::new(
            ErrorKind::Closed,
            "discussion 'x' is closed",
        )))
        .context("sending");
        assert_eq!(code(&e), REFUSED);
        assert_eq!(code(&anyhow::anyhow!("something else")), INTERNAL);
    }
}
