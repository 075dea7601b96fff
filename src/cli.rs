//! Arguments (SPEC 2). Secrets are never arguments: files, environment or a hidden prompt.
//!
//! Every argument has a help text; the global options are under their own heading; `--help` ends
//! with examples, the environment variables and the exit codes (`crate::exit`). Shell completions
//! and the man page are generated from this definition (`pgpchat completions SHELL`, `pgpchat man`).

use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand};

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

/// The end of `pgpchat --help` (and of the man page).
const AFTER_HELP: &str = "\
Examples:
  pgpchat --profile alice chat                 the interactive prompt (starts the core if needed)
  pgpchat --profile alice init --name alice    create the identity (asks for a passphrase)
  pgpchat --profile alice daemon               run the core in the foreground
  pgpchat --profile alice web                  the web page (prints the URL to open)
  pgpchat --profile alice open bob --password-file secret.txt
  pgpchat --profile bob accept 1 --password-file secret.txt
  echo 'hi' | pgpchat --profile bob send alice -
  pgpchat --profile alice history bob --limit 20 --before 41   messages 21 to 40
  pgpchat --json --profile alice watch         events, one JSON object per line

Configuration (docs/configuration.md), highest precedence first:
  --config FILE > --profile NAME > PGPCHAT_CONFIG > $XDG_CONFIG_HOME/pgpchat/config.toml > defaults.
  The profiles alice and bob (loopback only) and default are built in.

Environment:
  PGPCHAT_PASSPHRASE   the identity key's passphrase (else --passphrase-file or a hidden prompt)
  PGPCHAT_PASSWORD     the secret shared with a peer (else --password-file or a hidden prompt)
  PGPCHAT_PROFILE      the profile, as --profile
  PGPCHAT_CONFIG       a configuration file, used without --profile and --config
  PGPCHAT__SECTION__KEY=VALUE  one configuration key, e.g. PGPCHAT__DISCOVERY__PORT=47481
  RUST_LOG             log filter (default: warn; info for the core); -v and -q override it
  NO_COLOR             no colours in the prompt

Exit status:
  0 success   1 internal error   2 usage or configuration error   3 not found
  4 refused, wrong secret or passphrase, intercepted, closed, cancelled   5 the core is not running
  6 the running core speaks an incompatible API   7 a core already runs on this data directory";

/// The heading of the options every command takes.
const GLOBAL: &str = "Global options";

#[derive(Parser)]
#[command(
    name = "pgpchat",
    version = version(),
    about = "Secure peer-to-peer chat on the local network, over OpenPGP",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Profile: NAME.toml from ./config/, the user's config dir (pgpchat/), or built in
    /// (default, alice, bob).
    #[arg(long, global = true, env = "PGPCHAT_PROFILE", value_name = "NAME", help_heading = GLOBAL)]
    pub profile: Option<String>,
    /// An explicit configuration file (applied after the profile: its keys win).
    #[arg(long, global = true, value_name = "FILE", help_heading = GLOBAL)]
    pub config: Option<PathBuf>,
    /// Data directory (identity, store, IPC socket); overrides the configuration.
    #[arg(long, global = true, value_name = "DIR", help_heading = GLOBAL)]
    pub data_dir: Option<PathBuf>,
    /// Print data as JSON (one document, or JSON lines for streams).
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    /// More log lines (-v: info, -vv: debug, -vvv: trace); overrides RUST_LOG.
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet",
          help_heading = GLOBAL)]
    pub verbose: u8,
    /// Only errors in the log (no warning or info lines); overrides RUST_LOG.
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
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
        #[arg(long, value_name = "FILE", conflicts_with = "no_passphrase")]
        passphrase_file: Option<PathBuf>,
        /// Store the identity key without a passphrase.
        #[arg(long)]
        no_passphrase: bool,
    },
    /// Run the core in the foreground: discovery, listener, IPC socket, store.
    Daemon {
        /// File holding the identity passphrase (`-`: standard input); else PGPCHAT_PASSPHRASE or a prompt.
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
    /// The interactive prompt (the default); starts the core in the background if needed.
    Chat,
    /// The web page on 127.0.0.1 (`[web] port`, 47470 by default): prints a one-time login URL,
    /// then serves until Ctrl-C; starts the core in the background if needed (docs/web.md).
    Web,
    /// Own name, fingerprint and main TCP port (the running core's; else `listener.port` if fixed).
    Whoami,
    /// The running core: identity, main TCP port, versions and discovery counters (fails when no
    /// core runs: a way to wait for one).
    Status,
    /// Contacts seen on the network, added by address, or learned from others (with their origin);
    /// --from PEER first asks PEER (a contact you have a discussion with) for its contact list and
    /// merges it.
    Contacts {
        /// Whom to ask for its contact list first: a contact or a discussion.
        #[arg(long, value_name = "PEER")]
        from: Option<String>,
    },
    /// Add the node at HOST:PORT as a contact (HOST a name, an IPv4 address or [IPv6]; PORT its
    /// main TCP port, shown by its `whoami`): for people beyond the local network. With --dht,
    /// give a FINGERPRINT: its owner's opt-in record on the Mainline DHT says where to find it.
    AddContact {
        /// HOST:PORT (a name, an IPv4 address or [IPv6], and the node's main TCP port), or with
        /// --dht a full fingerprint.
        address: String,
        /// Look the fingerprint up on the Mainline DHT (needs `[dht] enabled`).
        #[arg(long)]
        dht: bool,
    },
    /// Forget a contact (name or fingerprint prefix); it comes back if it announces itself again.
    RemoveContact {
        /// The contact: its name or a fingerprint prefix (4+ hex digits).
        contact: String,
    },
    /// Block a key: its announces, discussion requests (refused, listed by `requests` as
    /// "blocked") and list entries are ignored, and its contact is forgotten. Discussions already
    /// open with it stay open and its messages there still arrive: `close` them to stop them.
    Block {
        /// The contact: its name, a fingerprint prefix (4+ hex digits), or a full fingerprint
        /// (40 or 64 hex digits; spaces allowed).
        fingerprint: String,
    },
    /// Unblock a key.
    Unblock {
        /// A full fingerprint (40 or 64 hex digits; spaces allowed) or a prefix (4+ hex digits)
        /// of a blocked one, as `blocked` lists them.
        fingerprint: String,
    },
    /// The blocked fingerprints.
    Blocked,
    /// Mark a contact verified after comparing fingerprints out of band (or --unset).
    Verify {
        /// The contact: its name or a fingerprint prefix (4+ hex digits).
        contact: String,
        /// Mark it unverified instead.
        #[arg(long)]
        unset: bool,
    },
    /// Ask CONTACT for a discussion, authenticated by a shared secret (waits for the decision).
    Open {
        /// The contact: its name or a fingerprint prefix (4+ hex digits).
        contact: String,
        /// File holding the shared secret (`-`: standard input); else PGPCHAT_PASSWORD or a prompt.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Incoming discussion requests waiting for a decision, and those refused without asking you.
    Requests,
    /// Accept a request by giving the same shared secret.
    Accept {
        /// The request's number, as `requests` lists it.
        request: u64,
        /// File holding the shared secret (`-`: standard input); else PGPCHAT_PASSWORD or a prompt.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Refuse a request.
    Refuse {
        /// The request's number, as `requests` lists it.
        request: u64,
    },
    /// Withdraw our requests to a contact that still wait for an answer (the `open` waiting on one
    /// fails, and the request disappears from the contact's requests).
    Cancel {
        /// The contact: its name or a fingerprint prefix (4+ hex digits).
        contact: String,
    },
    /// Introduce two contacts you each have an open discussion with to each other: each is asked
    /// to accept; when both do, they open a discussion between them by themselves.
    Introduce {
        /// One contact (name or fingerprint prefix).
        a: String,
        /// The other contact (name or fingerprint prefix).
        b: String,
    },
    /// Introductions made to you (who introduces whom), and their state.
    Introductions,
    /// Accept an introduction made to you (its number in `introductions`).
    AcceptIntroduction {
        /// The introduction's number, as `introductions` lists it.
        introduction: u64,
    },
    /// Decline an introduction made to you (its secret is destroyed).
    DeclineIntroduction {
        /// The introduction's number, as `introductions` lists it.
        introduction: u64,
    },
    /// Open and past discussions.
    Discussions,
    /// Send a message; returns once it is stored in the outbox.
    Send {
        /// DISCUSSION: an id, a unique id prefix (4+ characters), or a contact's name or
        /// fingerprint prefix (its most recent open discussion, else its most recent one).
        discussion: String,
        /// The message (`-`: read it from standard input).
        text: String,
    },
    /// Messages of a discussion, oldest first: the last LIMIT, or a page with --before/--after.
    ///
    /// A page with no message prints nothing on stdout (`[]` with --json) and says so on stderr
    /// ("no messages after position 5; the discussion has 5 messages"); the status is 0.
    History {
        /// DISCUSSION: an id, a unique id prefix (4+ characters), or a contact's name or
        /// fingerprint prefix (its most recent open discussion, else its most recent one).
        discussion: String,
        /// How many messages at most.
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// Only messages before this position (1 is the first message; `--json` shows each
        /// message's `position`): the last LIMIT of them. Pages back through the history.
        #[arg(long, value_name = "POSITION")]
        before: Option<u64>,
        /// Only messages after this position; without --before, the first LIMIT of them.
        #[arg(long, value_name = "POSITION")]
        after: Option<u64>,
    },
    /// Replace our encryption key of a discussion now (forward secrecy: the old key is destroyed
    /// once the peer has switched; it also happens by itself, see [rotation] in the configuration).
    Rotate {
        /// DISCUSSION: an id, a unique id prefix (4+ characters), or a contact's name or
        /// fingerprint prefix (its most recent open discussion, else its most recent one).
        discussion: String,
    },
    /// Close a discussion for good (both sides are told; history stays). Closing one that is
    /// already closed says so and succeeds.
    Close {
        /// DISCUSSION: an id, a unique id prefix (4+ characters), or a contact's name or
        /// fingerprint prefix (its most recent open discussion, else its most recent one).
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
        /// How many nodes (each opens a discussion with the next, in a ring).
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Messages each requester sends.
        #[arg(long, default_value_t = 100)]
        messages: usize,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Announce interval in seconds (default: chosen for the number of nodes, 1 to 10).
        #[arg(long)]
        interval: Option<u64>,
    },
    /// Measure two nodes in this process against the raw cost of their work, in the same run
    /// (nothing leaves the host).
    Bench {
        /// Raw crypto round trips (sign+encrypt then decrypt+verify of 200 B); the median is used.
        #[arg(long, default_value_t = 1000)]
        crypto: usize,
        /// Raw one-row SQLite commits (WAL, synchronous = FULL); the median is used.
        #[arg(long, default_value_t = 1000)]
        commits: usize,
        /// Raw key generations.
        #[arg(long, default_value_t = 100)]
        keygens: usize,
        /// Raw SPAKE2 exchanges.
        #[arg(long, default_value_t = 200)]
        spake2: usize,
        /// Discussions opened between the two nodes (P4), at most 8 (a peer admits a burst of 8
        /// unauthenticated requests from one address).
        #[arg(long, default_value_t = 8)]
        opens: usize,
        /// Messages sent one at a time, each waiting for its acknowledgement (P2).
        #[arg(long, default_value_t = 300)]
        one_at_a_time: usize,
        /// Messages of the throughput run (P1).
        #[arg(long, default_value_t = 2000)]
        messages: usize,
        /// gpg round trips (sign+encrypt then decrypt+verify, one process each) for P5; 0 skips
        /// them (so does a machine without gpg). At most 1000.
        #[arg(long, default_value_t = 20)]
        gpg: usize,
        /// Concurrent senders of the throughput run (P1), each sending as fast as `send` returns
        /// (1: one message at a time; at most 256).
        #[arg(long, default_value_t = 16)]
        senders: usize,
        /// Rotate each node's discussion encryption key after this many messages received under it
        /// (0: no rotation; compare runs with and without, interleaved).
        #[arg(long, default_value_t = 0)]
        rotate_every: u64,
        /// Give up on the node part after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Print the identity key, armored (with --secret: the passphrase-protected secret key).
    ExportKey {
        /// The secret key (still protected by its passphrase) instead of the public one.
        #[arg(long)]
        secret: bool,
    },
    /// Print a shell completion script, e.g. `pgpchat completions bash > ~/.local/share/bash-completion/completions/pgpchat`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `pgpchat man > ~/.local/share/man/man1/pgpchat.1`.
    Man,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument of every command says what it is (clap's own `--help`/`--version` aside).
    #[test]
    fn every_argument_has_a_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id != "help" && id != "version" && a.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let cmd = super::Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "pgpchat", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }
}
