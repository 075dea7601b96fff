//! Arguments (SPEC 2). Secrets are never arguments: files, environment or a hidden prompt.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// `pgpchat --version`: the program's version and the core API version it speaks.
fn version() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        format!(
            "{} (core API {})",
            env!("CARGO_PKG_VERSION"),
            pgpchat_actors::api::API_VERSION
        )
    })
}

#[derive(Parser)]
#[command(
    name = "pgpchat",
    version = version(),
    about = "Secure peer-to-peer chat on the local network, over OpenPGP"
)]
pub struct Cli {
    /// Profile: reads NAME.toml from ./config/ or the user's config dir (pgpchat/).
    #[arg(long, global = true, env = "PGPCHAT_PROFILE")]
    pub profile: Option<String>,
    /// An explicit configuration file (applied after the profile).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (identity, store, IPC socket); overrides the configuration.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Print data as JSON (one document, or JSON lines for streams).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create the identity (Ed25519 signing key + X25519 encryption subkey); prints the fingerprint.
    Init {
        /// Display name announced to others (default: the profile's node name).
        #[arg(long)]
        name: Option<String>,
        /// File holding the passphrase that protects the identity key (`-`: standard input).
        #[arg(long, conflicts_with = "no_passphrase")]
        passphrase_file: Option<PathBuf>,
        /// Store the identity key without a passphrase.
        #[arg(long)]
        no_passphrase: bool,
    },
    /// Run the core in the foreground: discovery, listener, IPC socket, store.
    Daemon {
        /// File holding the identity passphrase (`-`: standard input); else PGPCHAT_PASSPHRASE or a prompt.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// The interactive prompt (the default); starts the core in the background if needed.
    Chat,
    /// Own name and fingerprint.
    Whoami,
    /// Contacts seen on the network (and where each came from); --from PEER first asks PEER (a
    /// contact you have a discussion with) for its contact list and merges it.
    Contacts {
        #[arg(long, value_name = "PEER")]
        from: Option<String>,
    },
    /// Mark a contact verified after comparing fingerprints out of band (or --unset).
    Verify {
        contact: String,
        #[arg(long)]
        unset: bool,
    },
    /// Ask CONTACT (name or fingerprint prefix) for a discussion, authenticated by a shared secret.
    Open {
        contact: String,
        /// File holding the shared secret (`-`: standard input); else PGPCHAT_PASSWORD or a prompt.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Incoming discussion requests waiting for a decision.
    Requests,
    /// Accept a request by giving the same shared secret.
    Accept {
        request: u64,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Refuse a request.
    Refuse { request: u64 },
    /// Introduce two contacts you each have an open discussion with to each other: each is asked
    /// to accept; when both do, they open a discussion between them by themselves.
    Introduce { a: String, b: String },
    /// Introductions made to you (who introduces whom), and their state.
    Introductions,
    /// Accept an introduction made to you (its number in `introductions`).
    AcceptIntroduction { introduction: u64 },
    /// Decline an introduction made to you (its secret is destroyed).
    DeclineIntroduction { introduction: u64 },
    /// Open and past discussions.
    Discussions,
    /// Send a message (TEXT `-` reads standard input); returns once it is stored in the outbox.
    Send { discussion: String, text: String },
    /// Messages of a discussion, oldest first.
    History {
        discussion: String,
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Close a discussion for good (both sides are told; history stays).
    Close {
        discussion: String,
        /// Close now, without waiting for the peer to confirm: keys are destroyed at once,
        /// undelivered messages stay undelivered, and the peer is told when it is next reachable.
        #[arg(long)]
        force: bool,
    },
    /// Stream the core's events.
    Watch,
    /// Stop the running core (it finishes what it is doing and removes its socket).
    Stop,
    /// Run N complete nodes in this process on loopback and report timings (nothing leaves the host).
    Simulate {
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Messages each requester sends.
        #[arg(long, default_value_t = 100)]
        messages: usize,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Print the identity key, armored (with --secret: the passphrase-protected secret key).
    ExportKey {
        #[arg(long)]
        secret: bool,
    },
}
