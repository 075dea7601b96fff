//! Node settings: every key of `docs/configuration.md`, with its default, and the layered loading
//! (built-in defaults < profile TOML < environment `PGPCHAT__SECTION__KEY` < command line).
//!
//! Tests build [`Settings`] directly (the environment is process-wide; see `Settings::load`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("profile '{0}' not found (looked for {0}.toml in: {1})")]
    ProfileNotFound(String, String),
    #[error("configuration: {0}")]
    Invalid(String),
    /// The config crate's own error (a file that does not parse, a value of the wrong type).
    #[error("configuration: {0}")]
    Config(#[from] config::ConfigError),
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
    pub sharing: SharingSettings,
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

/// Where to look for `NAME.toml` profiles: `./config/`, then the user's config dir.
pub fn profile_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("config")];
    if let Some(p) = directories::ProjectDirs::from("", "", "pgpchat") {
        dirs.push(p.config_dir().to_path_buf());
    }
    dirs
}

impl Settings {
    /// Load the layers. `profile` names a TOML profile, `file` is an explicit configuration file
    /// (both may be given; the file comes after the profile), `env` is the environment to read
    /// (the binary passes the process environment), `overrides` are command-line `(key, value)`.
    pub fn load(
        profile: Option<&str>,
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[(&str, String)],
    ) -> Result<Self, SettingsError> {
        use config::{Config, File, FileFormat};
        let defaults = Config::try_from(&Settings::default()).map_err(SettingsError::Config)?;
        let mut b = Config::builder().add_source(defaults);
        if let Some(name) = profile {
            if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                return Err(SettingsError::Invalid(format!(
                    "profile name '{name}' must be a plain name"
                )));
            }
            let dirs = profile_dirs();
            let path = dirs
                .iter()
                .map(|d| d.join(format!("{name}.toml")))
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    SettingsError::ProfileNotFound(
                        name.into(),
                        dirs.iter()
                            .map(|d| d.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
                })?;
            b = b.add_source(File::from(path).format(FileFormat::Toml));
        }
        if let Some(f) = file {
            if !f.is_file() {
                return Err(SettingsError::Invalid(format!(
                    "configuration file {} not found",
                    f.display()
                )));
            }
            b = b.add_source(File::from(f).format(FileFormat::Toml));
        }
        let env_map: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("PGPCHAT__"))
            .collect();
        b = b.add_source(
            config::Environment::with_prefix("PGPCHAT")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env_map)),
        );
        for (k, v) in overrides {
            b = b
                .set_override(*k, v.clone())
                .map_err(SettingsError::Config)?;
        }
        let mut s: Settings = b
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(SettingsError::Config)?;
        if s.node.name.is_empty() {
            s.node.name = profile.unwrap_or("default").to_string();
        }
        if s.node.data_dir.as_os_str().is_empty() {
            let base = directories::ProjectDirs::from("", "", "pgpchat")
                .map(|p| p.data_dir().to_path_buf())
                .ok_or_else(|| {
                    SettingsError::Invalid(
                        "no home directory: set node.data_dir or --data-dir".into(),
                    )
                })?;
            s.node.data_dir = base.join(profile.unwrap_or("default"));
        }
        s.validate()?;
        Ok(s)
    }

    /// Values that deserialize but make no sense.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |key: &str, why: &str| Err(SettingsError::Invalid(format!("{key}: {why}")));
        let l = &self.limits;
        if self.discovery.port == 0 {
            return bad(
                "discovery.port",
                "must be a fixed port shared by the network (1-65535)",
            );
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
        if l.handshake_timeout_secs == 0
            || l.request_timeout_secs == 0
            || l.first_frame_timeout_secs == 0
            || l.ipc_idle_timeout_secs == 0
        {
            return bad("limits.*_timeout_secs", "must be at least 1");
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
        s
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
        let e = load_file("[listener]\nmax_protocol_version = 3\n", vec![]).unwrap_err();
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
