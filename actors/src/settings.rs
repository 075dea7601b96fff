//! Node settings: every key of `docs/configuration.md`, with its default, and the layered loading
//! (built-in defaults < configuration files < environment `PGPCHAT__SECTION__KEY` < command line;
//! which files, and the strict checks, in `settings/load.rs`).
//!
//! Tests build [`Settings`] directly (the environment is process-wide; see `Settings::load`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

mod load;

pub use load::{profile_dirs_in, CONFIG_ENV};

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("profile '{0}' not found (looked for {0}.toml in: {1})")]
    ProfileNotFound(String, String),
    #[error("configuration: {0}")]
    Invalid(String),
    /// A file that is not TOML.
    #[error("{origin}: {message}")]
    Syntax { origin: String, message: String },
    /// A key no section has (`origin` is the file or variable that holds it).
    #[error("{origin}: unknown key '{key}' ({known})")]
    UnknownKey {
        origin: String,
        key: String,
        known: String,
    },
    /// A value of the wrong type or out of its type's range.
    #[error("{origin}: {key}: expected {expected}, found {found}")]
    BadValue {
        origin: String,
        key: String,
        expected: String,
        found: String,
    },
    /// A value that breaks one of [`Settings::validate`]'s rules, with where it came from.
    #[error("{origin}: {key} {why}")]
    OutOfRange {
        origin: String,
        key: String,
        why: String,
    },
    /// A rule of [`Settings::validate`], before the loader says where the value came from.
    #[error("configuration: {key} {why}")]
    Rule { key: String, why: String },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub node: NodeSettings,
    pub discovery: DiscoverySettings,
    pub listener: ListenerSettings,
    pub ipc: IpcSettings,
    pub limits: Limits,
    pub log: LogSettings,
    pub prompt: PromptSettings,
    pub web: WebSettings,
    pub sharing: SharingSettings,
    pub dht: DhtSettings,
    pub rotation: RotationSettings,
}

/// Forward secrecy (issue 14, `docs/security.md`, "Forward secrecy"): each side replaces its own
/// discussion encryption subkey after `messages` messages received under it or `hours` hours,
/// whichever comes first, and destroys the old one once the peer has switched. Rotation needs the
/// peer online (and at protocol version 4): while it is away, the current key stays, and the window
/// of messages a stolen key opens grows with the outage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RotationSettings {
    /// Rotate after this many messages (chat and control) received under the current subkey; 0:
    /// never by count.
    pub messages: u64,
    /// Rotate after this many hours under the current subkey; 0: never by time.
    pub hours: u64,
    /// A replaced subkey is kept for the frames numbered before the switch at most this many hours
    /// after the peer acknowledged the new one, then destroyed whatever is missing (at least 1).
    pub drain_max_hours: u64,
}

impl Default for RotationSettings {
    fn default() -> Self {
        Self {
            messages: 100,
            hours: 24,
            drain_max_hours: 24,
        }
    }
}

/// Which contacts this node gives a peer that asks for its contact list (`pgpchat contacts --from`,
/// `docs/protocol.md`, "Contact-list exchange"). The node itself is always in its answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharingSettings {
    /// The contacts shared, by where they came from: any of `broadcast` (heard on the local
    /// network), `added` (added by address), `learned` (from another's list or an introduction).
    /// Empty (the default, conservative: a list reveals part of its owner's social graph): only
    /// the node itself. A contact marked "never share" is never shared.
    pub share: Vec<ShareFrom>,
}

/// A kind of contact origin that [`SharingSettings::share`] may allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShareFrom {
    Broadcast,
    Added,
    Learned,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSettings {
    /// Label of this node in logs, and the name `init` proposes. Empty: the profile name.
    pub name: String,
    /// Where the identity key, the store and the IPC socket live. Empty: the user's data dir,
    /// `pgpchat/<profile>`.
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoverySettings {
    /// Address the shared discovery socket binds to (it receives broadcasts).
    pub bind: IpAddr,
    /// UDP port shared by all nodes of a network.
    pub port: u16,
    /// Where announces are sent.
    pub broadcast: IpAddr,
    /// Address of the node's own sending socket: its announces come from there and replies go back
    /// there, so several nodes on one host each get their own replies.
    pub source: IpAddr,
    /// Seconds between announces.
    pub interval_secs: u64,
    /// Whether to announce at all (a node that only listens still answers nothing).
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerSettings {
    /// Address of the main TCP listener and of the per-discussion listeners.
    pub bind: IpAddr,
    /// Port of the main TCP listener; 0 picks a free one (it is announced).
    pub port: u16,
    /// The highest peer-to-peer protocol version this node speaks (`docs/protocol.md`,
    /// "Versions"): by default this build's highest. 1 makes the node behave as builds before
    /// version negotiation (compatibility tests and trials; nothing else needs it).
    pub max_protocol_version: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpcSettings {
    /// Path of the front-ends' Unix socket. Empty: `<data_dir>/run/pgpchat.sock`.
    pub socket: PathBuf,
}

/// Rendezvous on the BitTorrent Mainline DHT (issue 11; `dht` module). Off unless the user turns it
/// on: a DHT node sees this node's address and when it is online.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DhtSettings {
    /// Whether to join the DHT at all (publish records, resolve moved peers).
    pub enabled: bool,
    /// `host:port` of the DHT nodes to join through, separated by commas. Required when enabled:
    /// there is no implicit list (docs/configuration.md gives the public one to copy).
    pub bootstrap: String,
    /// Address of the DHT's UDP socket (IPv4 only: the `mainline` crate speaks IPv4).
    pub bind: Ipv4Addr,
    /// UDP port of the DHT socket; 0 picks a free one.
    pub port: u16,
    /// Seconds between two publications of a record when nothing changed (60 to 3600: DHT nodes
    /// forget items after about two hours).
    pub republish_secs: u64,
    /// Smallest number of seconds between the end of one lookup of a discussion's peer and the next.
    pub min_lookup_interval_secs: u64,
    /// Also publish the identity record found by fingerprint (`add-contact --dht`): tells anyone
    /// who knows the fingerprint when this node is online and where.
    pub publish_identity: bool,
    /// Refuse any bootstrap node that is not a loopback address and bind 127.0.0.1 (tests and
    /// trials on one machine).
    pub loopback_only: bool,
    /// Receiver: dial a requester found on the DHT when it has not dialed us
    /// (`session::RECEIVER_DHT_DIAL_AFTER`). Off only to prove, in tests, that the requester's own
    /// DHT path works.
    pub receiver_dials: bool,
}

impl DhtSettings {
    /// The entries of `bootstrap`.
    pub fn bootstrap_nodes(&self) -> Vec<String> {
        self.bootstrap
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(String::from)
            .collect()
    }
}

impl Default for DhtSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            bootstrap: String::new(),
            bind: Ipv4Addr::UNSPECIFIED,
            port: 0,
            republish_secs: 3600,
            min_lookup_interval_secs: 30,
            publish_identity: false,
            loopback_only: false,
            receiver_dials: true,
        }
    }
}

/// The core's log file, rotated by size (lines about hostile input are limited by
/// [`crate::log_limit`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// Size at which `<data_dir>/daemon.log` is rotated (renamed `daemon.log.1`, ...), in bytes.
    pub max_file_bytes: u64,
    /// Rotated files kept besides `daemon.log`; the log never takes more than
    /// `(rotated_files + 1) * max_file_bytes` on disk.
    pub rotated_files: usize,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            max_file_bytes: 4 * 1024 * 1024,
            rotated_files: 3,
        }
    }
}

/// The interactive prompt (`pgpchat chat`); the core ignores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptSettings {
    /// Ring the terminal bell when a message arrives outside the chat view on screen (or while the
    /// home menu is shown), or a request.
    pub bell: bool,
}

impl Default for PromptSettings {
    fn default() -> Self {
        Self { bell: true }
    }
}

/// The web front-end (`pgpchat web`, `docs/web.md`); the core ignores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSettings {
    /// TCP port of the page on 127.0.0.1 (never another address); 0 picks a free one (printed).
    pub port: u16,
}

/// `web.port` by default; the loopback profiles alice and bob use the next two, so both pages can
/// run on one machine.
pub const DEFAULT_WEB_PORT: u16 = 47470;

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            port: DEFAULT_WEB_PORT,
        }
    }
}

/// Every bound of the node. Each protects memory or fairness against a hostile or broken peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most entries in a contact list, given or taken: a longer list received is refused whole.
    pub max_list_entries: usize,
    /// How long `contacts --from` waits for the peer's list.
    pub list_request_timeout_secs: u64,
    /// Largest TCP frame, either direction.
    pub max_frame_bytes: usize,
    /// Largest chat message body (UTF-8 bytes).
    pub max_message_bytes: usize,
    /// Largest discovery datagram accepted.
    pub max_datagram_bytes: usize,
    /// Contacts kept in memory; when full, the least recently seen one goes, never a verified one
    /// nor one with a discussion (they count toward this bound too).
    pub max_contacts: usize,
    /// Incoming requests waiting for the user's decision.
    pub max_pending_requests: usize,
    /// Of those, from one requester's key.
    pub max_pending_requests_per_key: usize,
    /// Of those, from one source address.
    pub max_pending_requests_per_address: usize,
    /// TCP connections in the handshake phase at once (main listener).
    pub max_pending_connections: usize,
    /// Of those, from one source address.
    pub max_connections_per_address: usize,
    /// Seconds a new connection may take to send its first frame (the hello) and, on the main
    /// listener, its first sealed one (the request): what a silent connection costs.
    pub first_frame_timeout_secs: u64,
    /// Seconds a connection may take to complete each handshake step (except the user's decision).
    pub handshake_timeout_secs: u64,
    /// Seconds an incoming request waits for the user's decision.
    pub request_timeout_secs: u64,
    /// Failed handshake attempts allowed per contact and per address within the window.
    pub max_failed_attempts: usize,
    /// Failed handshake attempts allowed from everyone together within the window; past it, only
    /// contacts that are verified or have (had) a discussion with us may still ask.
    pub max_failed_attempts_total: usize,
    /// The window of `max_failed_attempts` and `max_failed_attempts_total`, in seconds.
    pub failed_attempts_window_secs: u64,
    /// Messages queued for one discussion connection before the peer counts as too slow.
    pub session_queue: usize,
    /// Ceiling of the reconnection backoff (it starts at 250 ms and doubles), in seconds.
    pub reconnect_max_secs: u64,
    /// Longest IPC request line.
    pub ipc_max_line_bytes: usize,
    /// Front-ends connected at once.
    pub ipc_max_clients: usize,
    /// Events buffered per front-end before a slow one is disconnected.
    pub ipc_event_queue: usize,
    /// Seconds an IPC connection with no subscription and nothing in flight may stay silent
    /// before the core closes it (a client that stops reading its events is also given this long
    /// to read its `lagged` notice). When all `ipc_max_clients` are taken, the longest-idle such
    /// connection is closed at once for a newcomer.
    pub ipc_idle_timeout_secs: u64,
    /// Worker threads for OpenPGP operations.
    pub crypto_threads: usize,
    /// Seconds an introduction we received lives (its one-time secret with it): after that, or
    /// once used or declined, the secret is destroyed. Also how long we wait for the answers to
    /// an introduction we made.
    pub introduction_window_secs: u64,
}

impl Default for DiscoverySettings {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 47470,
            broadcast: IpAddr::V4(Ipv4Addr::BROADCAST),
            source: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            interval_secs: 10,
            enabled: true,
        }
    }
}

impl Default for ListenerSettings {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
            max_protocol_version: crate::wire::PROTOCOL_VERSION,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_list_entries: 64,
            list_request_timeout_secs: 20,
            max_frame_bytes: 256 * 1024,
            max_message_bytes: 64 * 1024,
            max_datagram_bytes: 4096,
            max_contacts: 1024,
            max_pending_requests: 32,
            max_pending_requests_per_key: 2,
            max_pending_requests_per_address: 4,
            max_pending_connections: 64,
            max_connections_per_address: 8,
            first_frame_timeout_secs: 5,
            handshake_timeout_secs: 30,
            request_timeout_secs: 600,
            max_failed_attempts: 3,
            max_failed_attempts_total: 10,
            failed_attempts_window_secs: 600,
            session_queue: 1024,
            reconnect_max_secs: 30,
            ipc_max_line_bytes: 1024 * 1024,
            ipc_max_clients: 32,
            ipc_event_queue: 1024,
            ipc_idle_timeout_secs: 60,
            crypto_threads: 2,
            introduction_window_secs: 48 * 3600,
        }
    }
}

impl Settings {
    /// Load the layers, lowest first: built-in defaults; the configuration files (`--profile NAME`
    /// then `--config FILE`; with neither, `PGPCHAT_CONFIG` or else
    /// `$XDG_CONFIG_HOME/pgpchat/config.toml`); the environment `PGPCHAT__SECTION__KEY`; the
    /// command line. `env` is the environment to read (the binary passes the process environment),
    /// `overrides` are command-line `(key, value)`. Every value is checked strictly (see
    /// [`load`]); an error names where the value came from, the key and what was expected.
    pub fn load(
        profile: Option<&str>,
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[(&str, String)],
    ) -> Result<Self, SettingsError> {
        load::load(profile, file, env, overrides)
    }

    /// Values that deserialize but make no sense.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |key: &str, why: &str| {
            Err(SettingsError::Rule {
                key: key.into(),
                why: why.into(),
            })
        };
        let l = &self.limits;
        if self.discovery.port == 0 {
            return bad(
                "discovery.port",
                "must be a fixed port shared by the network (1-65535)",
            );
        }
        if self.rotation.drain_max_hours == 0 {
            return bad("rotation.drain_max_hours", "must be at least 1");
        }
        if self.discovery.interval_secs == 0 {
            return bad("discovery.interval_secs", "must be at least 1");
        }
        let versions = crate::wire::MIN_PROTOCOL_VERSION..=crate::wire::PROTOCOL_VERSION;
        if !versions.contains(&self.listener.max_protocol_version) {
            return bad(
                "listener.max_protocol_version",
                &format!(
                    "must be between {} and {}",
                    versions.start(),
                    versions.end()
                ),
            );
        }
        if l.max_frame_bytes < 4096 || l.max_frame_bytes > 64 * 1024 * 1024 {
            return bad(
                "limits.max_frame_bytes",
                "must be between 4096 and 67108864",
            );
        }
        if l.max_message_bytes == 0 || l.max_message_bytes + 2048 > l.max_frame_bytes {
            return bad(
                "limits.max_message_bytes",
                "must be at least 1 and leave 2048 bytes of room under limits.max_frame_bytes",
            );
        }
        if l.max_list_entries
            .saturating_mul(crate::exchange::MAX_ENTRY_BYTES)
            + 4096
            > l.max_frame_bytes
        {
            return bad(
                "limits.max_list_entries",
                "a whole list must fit in limits.max_frame_bytes (2048 bytes an entry)",
            );
        }
        if l.max_datagram_bytes < 1024 || l.max_datagram_bytes > 65507 {
            return bad(
                "limits.max_datagram_bytes",
                "must be between 1024 and 65507",
            );
        }
        for (key, v) in [
            ("limits.max_list_entries", l.max_list_entries),
            (
                "limits.list_request_timeout_secs",
                l.list_request_timeout_secs as usize,
            ),
            ("limits.max_contacts", l.max_contacts),
            ("limits.max_pending_requests", l.max_pending_requests),
            (
                "limits.max_pending_requests_per_key",
                l.max_pending_requests_per_key,
            ),
            (
                "limits.max_pending_requests_per_address",
                l.max_pending_requests_per_address,
            ),
            ("limits.max_pending_connections", l.max_pending_connections),
            (
                "limits.max_connections_per_address",
                l.max_connections_per_address,
            ),
            ("limits.max_failed_attempts", l.max_failed_attempts),
            (
                "limits.max_failed_attempts_total",
                l.max_failed_attempts_total,
            ),
            ("limits.session_queue", l.session_queue),
            ("limits.ipc_max_clients", l.ipc_max_clients),
            ("limits.ipc_event_queue", l.ipc_event_queue),
            ("limits.crypto_threads", l.crypto_threads),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1");
            }
        }
        if l.ipc_max_line_bytes < 1024 {
            return bad("limits.ipc_max_line_bytes", "must be at least 1024");
        }
        if l.reconnect_max_secs == 0 {
            return bad("limits.reconnect_max_secs", "must be at least 1");
        }
        if l.introduction_window_secs == 0 {
            return bad("limits.introduction_window_secs", "must be at least 1");
        }
        for (key, v) in [
            ("limits.handshake_timeout_secs", l.handshake_timeout_secs),
            ("limits.request_timeout_secs", l.request_timeout_secs),
            (
                "limits.first_frame_timeout_secs",
                l.first_frame_timeout_secs,
            ),
            ("limits.ipc_idle_timeout_secs", l.ipc_idle_timeout_secs),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1");
            }
        }
        let d = &self.dht;
        if d.enabled && d.bootstrap_nodes().is_empty() {
            return bad(
                "dht.bootstrap",
                "must list at least one host:port when dht.enabled is true",
            );
        }
        if !(60..=3600).contains(&d.republish_secs) {
            return bad("dht.republish_secs", "must be between 60 and 3600");
        }
        if d.min_lookup_interval_secs == 0 {
            return bad("dht.min_lookup_interval_secs", "must be at least 1");
        }
        let g = &self.log;
        if g.max_file_bytes < 64 * 1024 {
            return bad("log.max_file_bytes", "must be at least 65536");
        }
        if g.rotated_files > 100 {
            return bad("log.rotated_files", "must be at most 100");
        }
        Ok(())
    }

    /// The IPC socket path: the configured one, or `<data_dir>/run/pgpchat.sock`.
    pub fn ipc_socket(&self) -> PathBuf {
        if self.ipc.socket.as_os_str().is_empty() {
            self.node.data_dir.join("run").join("pgpchat.sock")
        } else {
            self.ipc.socket.clone()
        }
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.handshake_timeout_secs)
    }

    /// Settings for a node in a test or simulation: loopback everywhere, ports chosen by the OS,
    /// discovery on `discovery_port` broadcast to 127.255.255.255.
    pub fn loopback(name: &str, data_dir: &Path, discovery_port: u16) -> Self {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut s = Settings::default();
        s.node.name = name.into();
        s.node.data_dir = data_dir.to_path_buf();
        s.discovery.port = discovery_port;
        s.discovery.bind = IpAddr::V4(Ipv4Addr::new(127, 255, 255, 255));
        s.discovery.broadcast = IpAddr::V4(Ipv4Addr::new(127, 255, 255, 255));
        s.discovery.source = lo;
        s.discovery.interval_secs = 1;
        s.listener.bind = lo;
        // Whoever turns the DHT on in a test must bootstrap from a local testnet.
        s.dht.loopback_only = true;
        s.dht.bind = Ipv4Addr::LOCALHOST;
        s
    }

    /// The DHT client's construction (checked again by `dht::guard`).
    pub fn dht_config(&self) -> crate::dht::guard::DhtConfig {
        crate::dht::guard::DhtConfig {
            bootstrap: self.dht.bootstrap_nodes(),
            bind: self.dht.bind,
            port: self.dht.port,
            loopback_only: self.dht.loopback_only,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_file(toml: &str, env: Vec<(String, String)>) -> Result<Settings, SettingsError> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, toml).unwrap();
        let over = [("node.data_dir", dir.path().display().to_string())];
        Settings::load(None, Some(&f), env, &over)
    }

    #[test]
    fn the_dht_is_off_by_default_and_in_every_shipped_profile() {
        assert!(!Settings::default().dht.enabled);
        for profile in ["default", "alice", "bob"] {
            let dir = tempfile::tempdir().unwrap();
            let over = [("node.data_dir", dir.path().display().to_string())];
            let s = Settings::load(Some(profile), None, Vec::new(), &over).unwrap();
            assert!(!s.dht.enabled, "{profile}");
            assert!(s.dht.bootstrap.is_empty(), "{profile}");
        }
        assert!(
            Settings::loopback("t", Path::new("/tmp/x"), 1)
                .dht
                .loopback_only
        );
    }

    #[test]
    fn the_dht_needs_explicit_bootstrap_nodes_when_enabled() {
        let err = load_file("[dht]\nenabled = true\n", vec![]).unwrap_err();
        assert!(err.to_string().contains("dht.bootstrap"), "{err}");
        let ok = load_file(
            "[dht]\nenabled = true\nbootstrap = \"127.0.0.1:6881, 127.0.0.1:6882\"\nloopback_only = true\n",
            vec![],
        )
        .unwrap();
        assert_eq!(
            ok.dht_config().bootstrap,
            vec!["127.0.0.1:6881".to_string(), "127.0.0.1:6882".to_string()]
        );
        let err = load_file("[dht]\nenabled = true\nbootstrap = \" , \"\n", vec![]).unwrap_err();
        assert!(err.to_string().contains("dht.bootstrap"), "{err}");
        let err = load_file("[dht]\nrepublish_secs = 7200\n", vec![]).unwrap_err();
        assert!(err.to_string().contains("dht.republish_secs"), "{err}");
    }

    #[test]
    fn layers_apply_in_order() {
        let s = load_file(
            "[discovery]\nport = 5000\ninterval_secs = 3\n",
            vec![("PGPCHAT__DISCOVERY__PORT".into(), "6000".into())],
        )
        .unwrap();
        assert_eq!(s.discovery.port, 6000);
        assert_eq!(s.discovery.interval_secs, 3);
        assert_eq!(s.limits, Limits::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = load_file("[discovery]\nportt = 5000\n", vec![]).unwrap_err();
        assert!(e.to_string().contains("portt"), "{e}");
        let e = load_file("[discovery]\nport = \"many\"\n", vec![]).unwrap_err();
        assert!(e.to_string().contains("port"), "{e}");
        let e = load_file("[limits]\nmax_contacts = 0\n", vec![]).unwrap_err();
        assert!(e.to_string().contains("limits.max_contacts"), "{e}");
        let e = load_file("[nope]\n", vec![]).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    /// Issue 12, defect 7: as strict as `docs/configuration.md` says, and every error names the
    /// file, the key and what was expected, in words (no serde jargon).
    #[test]
    fn values_of_the_wrong_type_are_refused_with_file_key_and_expectation() {
        for (toml, key, expected) in [
            (
                "[discovery]\nport = \"47480\"\n",
                "discovery.port",
                "a whole number",
            ),
            (
                "[discovery]\nenabled = \"yes\"\n",
                "discovery.enabled",
                "true or false",
            ),
            ("[node]\nname = 42\n", "node.name", "text in double quotes"),
            (
                "[discovery]\nport = 70000\n",
                "discovery.port",
                "from 0 to 65535",
            ),
            (
                "[listener]\nbind = \"localhost\"\n",
                "listener.bind",
                "an IP address",
            ),
            (
                "[limits]\nmax_contacts = -1\n",
                "limits.max_contacts",
                "at least 1",
            ),
            (
                "[log]\nrotated_files = -1\n",
                "log.rotated_files",
                "0 or more",
            ),
            (
                "[limits]\nmax_contacts = 0\n",
                "limits.max_contacts",
                "at least 1",
            ),
            // A negative number is told the real range, not "0 or more".
            (
                "[discovery]\ninterval_secs = -5\n",
                "discovery.interval_secs",
                "a whole number that must be at least 1",
            ),
            // A name set empty is refused (unset, it is the profile's name).
            ("[node]\nname = \"\"\n", "node.name", "a name of 1 to 64"),
            ("[node]\nname = \"  \"\n", "node.name", "a name of 1 to 64"),
        ] {
            let e = load_file(toml, vec![]).unwrap_err().to_string();
            assert!(e.contains("p.toml: "), "the file: {e}");
            assert!(e.contains(key), "the key {key}: {e}");
            assert!(e.contains(expected), "{expected}: {e}");
            for jargon in ["u16", "u64", "usize", "invalid type", "invalid value"] {
                assert!(!e.contains(jargon), "serde jargon '{jargon}': {e}");
            }
        }
        let e = load_file("[discovery]\nportt = 5000\n", vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.toml: unknown key 'discovery.portt'"), "{e}");
        let e = load_file("[discovery\n", vec![]).unwrap_err().to_string();
        assert!(e.contains("p.toml: line 1"), "{e}");
        let e = load_file(
            "",
            vec![("PGPCHAT__DISCOVERY__ENABLED".into(), "yes".into())],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("PGPCHAT__DISCOVERY__ENABLED") && e.contains("true or false"),
            "{e}"
        );
        let e = load_file("", vec![("PGPCHAT__NODE__NAMEE".into(), "x".into())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("PGPCHAT__NODE__NAMEE"), "{e}");
    }

    /// `--config` > `--profile` > `PGPCHAT_CONFIG` > `$XDG_CONFIG_HOME/pgpchat/config.toml` >
    /// built-in defaults; the shipped profiles are found from any directory.
    #[test]
    fn configuration_files_are_found_in_the_documented_order() {
        let dir = tempfile::tempdir().unwrap();
        let xdg = dir.path().join("xdg");
        std::fs::create_dir_all(xdg.join("pgpchat")).unwrap();
        std::fs::write(xdg.join("pgpchat/config.toml"), "[node]\nname = \"xdg\"\n").unwrap();
        std::fs::write(
            xdg.join("pgpchat/carol.toml"),
            "[node]\nname = \"carol-profile\"\n",
        )
        .unwrap();
        let env_file = dir.path().join("env.toml");
        std::fs::write(&env_file, "[node]\nname = \"from-env\"\n").unwrap();
        let explicit = dir.path().join("explicit.toml");
        std::fs::write(&explicit, "[node]\nname = \"explicit\"\n").unwrap();
        let over = [("node.data_dir", dir.path().display().to_string())];
        let xdg_env = ("XDG_CONFIG_HOME".to_string(), xdg.display().to_string());
        let cfg_env = (CONFIG_ENV.to_string(), env_file.display().to_string());
        let name = |profile: Option<&str>, file: Option<&Path>, env: Vec<(String, String)>| {
            Settings::load(profile, file, env, &over).unwrap().node.name
        };
        assert_eq!(name(None, None, vec![]), "default");
        assert_eq!(name(None, None, vec![xdg_env.clone()]), "xdg");
        assert_eq!(
            name(None, None, vec![xdg_env.clone(), cfg_env.clone()]),
            "from-env"
        );
        let all = vec![xdg_env.clone(), cfg_env.clone()];
        assert_eq!(name(Some("carol"), None, all.clone()), "carol-profile");
        assert_eq!(
            name(Some("carol"), Some(&explicit), all.clone()),
            "explicit"
        );
        assert_eq!(name(None, Some(&explicit), all.clone()), "explicit");
        // Built in: alice works without any file (the unit tests run in actors/, no ./config/).
        let s = Settings::load(Some("alice"), None, all, &over).unwrap();
        assert_eq!(s.discovery.broadcast.to_string(), "127.255.255.255");
        assert_eq!(s.node.name, "alice");
        let e = Settings::load(
            None,
            None,
            vec![(CONFIG_ENV.to_string(), "/nonexistent/x.toml".into())],
            &over,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/nonexistent/x.toml") && e.contains(CONFIG_ENV),
            "{e}"
        );
    }

    #[test]
    fn sharing_and_versions_are_read_and_checked() {
        assert!(
            Settings::default().sharing.share.is_empty(),
            "shares none by default"
        );
        let s = load_file("[sharing]\nshare = [\"broadcast\", \"added\"]\n", vec![]).unwrap();
        assert_eq!(s.sharing.share, [ShareFrom::Broadcast, ShareFrom::Added]);
        let e = load_file("[sharing]\nshare = [\"everyone\"]\n", vec![]).unwrap_err();
        assert!(e.to_string().contains("everyone"), "{e}");
        let e = load_file("[listener]\nmax_protocol_version = 5\n", vec![]).unwrap_err();
        assert!(
            e.to_string().contains("listener.max_protocol_version"),
            "{e}"
        );
        let e = load_file("[limits]\nmax_list_entries = 1000\n", vec![]).unwrap_err();
        assert!(e.to_string().contains("limits.max_list_entries"), "{e}");
    }

    #[test]
    fn shipped_profiles_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        for p in ["default", "alice", "bob"] {
            let f = root.join(format!("{p}.toml"));
            let s = Settings::load(
                None,
                Some(&f),
                vec![],
                &[("node.data_dir", "/tmp/x".into())],
            )
            .unwrap_or_else(|e| panic!("{p}: {e}"));
            if p != "default" {
                assert_eq!(s.discovery.broadcast.to_string(), "127.255.255.255");
                assert_eq!(s.node.name, p);
            }
        }
    }
}
