//! One function per command. Settings are resolved once, here, from the global options.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use pgpchat_actors::crypto::fingerprint_groups;
use pgpchat_actors::events::now_secs;
use pgpchat_actors::identity;
use pgpchat_actors::settings::Settings;
use serde_json::{json, Value};

use crate::cli::{Cli, Command};
use crate::client::Client;
use crate::format;
use crate::log_file;
use crate::safe_text;
use crate::secrets;

// The commands' output goes through `crate::stdout`: a closed stdout ends the command quietly.
// (Defined before any use, these shadow the standard macros in this file.)
macro_rules! println {
    ($($arg:tt)*) => {
        crate::stdout::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
macro_rules! print {
    ($($arg:tt)*) => {
        crate::stdout::write(format_args!($($arg)*))
    };
}

pub struct Ctx {
    pub settings: Settings,
    pub json: bool,
    pub profile: Option<String>,
    pub config: Option<PathBuf>,
    /// `--data-dir` as the user gave it (None: from the profile or the default).
    pub data_dir: Option<PathBuf>,
}

impl Ctx {
    pub fn client(&self) -> Result<Client> {
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
    pub fn call(&self, method: &str, params: Value) -> Result<Value> {
        self.client()?.call(method, params)
    }

    /// Print `v`: as terminal-safe JSON with `--json`, else with `human` (which must pass every
    /// peer-chosen string through `safe_text`).
    fn print(&self, v: &Value, human: impl FnOnce(&Value)) {
        if self.json {
            println!("{}", safe_text::json(v));
        } else {
            human(v);
        }
    }
}

fn load_settings(cli: &Cli) -> Result<Settings> {
    let mut over = Vec::new();
    if let Some(d) = &cli.data_dir {
        over.push(("node.data_dir", d.display().to_string()));
    }
    Ok(Settings::load(
        cli.profile.as_deref(),
        cli.config.as_deref(),
        std::env::vars(),
        &over,
    )?)
}

/// rpgp's own lines are capped at `error` whatever `RUST_LOG` says: at `debug` it prints parsed key
/// packets in hex (secret key material included), and its warnings about re-encoded key packets
/// while unlocking are expected, not news. `pgp::` and not `pgp`: filters match by prefix, and `pgp`
/// would also silence `pgpchat` and `pgpchat_actors` (every info line of the core was lost that way).
const RPGP_CAP: &str = "pgp::=error";

/// The log filter: `RUST_LOG` (or `default`), then the rpgp cap, which wins over any `pgp::`
/// directive of the user's (the last of equal directives applies). A `/regex` suffix stays last.
fn log_filter(rust_log: Option<String>, default: &str) -> String {
    let spec = rust_log
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| default.to_string());
    let (directives, regex) = match spec.split_once('/') {
        Some((d, r)) => (d.to_string(), Some(r.to_string())),
        None => (spec, None),
    };
    let mut out = if directives.trim().is_empty() {
        RPGP_CAP.to_string()
    } else {
        format!("{directives},{RPGP_CAP}")
    };
    if let Some(r) = regex {
        out.push('/');
        out.push_str(&r);
    }
    out
}

/// Log lines: to stderr, and for the core also to its own rotated file (`log_file`, attached once
/// the identity is unlocked).
fn init_logging(default: &str, node: &str, core: bool) {
    let node = node.to_string();
    let filter = log_filter(std::env::var("RUST_LOG").ok(), default);
    let mut b = env_logger::Builder::new();
    b.parse_filters(&filter);
    if core {
        b.target(env_logger::Target::Pipe(Box::new(log_file::CoreLogSink)));
    }
    let _ = b
        .format(move |buf, r| {
            use std::io::Write;
            // Log lines may quote a peer (names, reasons) and go to a terminal when the core runs
            // in the foreground.
            let msg = safe_text::line(&r.args().to_string());
            // Actor lines carry "[node]" already; others get it here.
            if msg.starts_with('[') {
                writeln!(buf, "{} {:5} {}", format::time(now_secs()), r.level(), msg)
            } else {
                writeln!(
                    buf,
                    "{} {:5} [{node}] {}",
                    format::time(now_secs()),
                    r.level(),
                    msg
                )
            }
        })
        .try_init();
}

/// Send the core's log lines to `<data_dir>/daemon.log` from now on (stderr only if it cannot be
/// opened).
pub fn attach_core_log_file(settings: &Settings) {
    let path = settings.node.data_dir.join(log_file::LOG_FILE_NAME);
    match log_file::RotatingFile::open(
        &path,
        settings.log.max_file_bytes,
        settings.log.rotated_files,
    ) {
        Ok(f) => log_file::attach(f),
        Err(e) => log::warn!(
            "cannot open {}: {e}; logging to stderr only",
            path.display()
        ),
    }
}

pub fn run(cli: Cli) -> Result<()> {
    let settings = load_settings(&cli)?;
    let is_daemon = matches!(cli.command, Some(Command::Daemon { .. }));
    init_logging(
        if is_daemon { "info" } else { "warn" },
        &settings.node.name,
        is_daemon,
    );
    let ctx = Ctx {
        settings,
        json: cli.json,
        profile: cli.profile.clone(),
        config: cli.config.clone(),
        data_dir: cli.data_dir.clone(),
    };
    run_command(&ctx, cli.command.unwrap_or(Command::Chat)).map_err(|e| with_hint(&ctx, e))
}

/// Errors of the library that call for a command get it here, with the user's global options.
fn with_hint(ctx: &Ctx, e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<identity::IdentityError>() {
        Some(identity::IdentityError::Missing(_)) => {
            anyhow::anyhow!("{e}: run {} first", ctx.hint("init --name NAME"))
        }
        _ => e,
    }
}

/// Quote a word for a POSIX shell when it needs it.
fn shell_quote(w: &str) -> String {
    let plain = !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:=@%+,".contains(&b));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

fn run_command(ctx: &Ctx, command: Command) -> Result<()> {
    match command {
        Command::Init {
            name,
            passphrase_file,
            no_passphrase,
        } => init(ctx, name, passphrase_file, no_passphrase),
        Command::Daemon { passphrase_file } => {
            crate::core_process::run_daemon(ctx, passphrase_file)
        }
        Command::Chat => crate::prompt::run(ctx),
        Command::Whoami => whoami(ctx),
        Command::Contacts => contacts(ctx),
        Command::Verify { contact, unset } => {
            let v = ctx.call("verify", json!({"contact": contact, "verified": !unset}))?;
            ctx.print(&v, |v| {
                println!(
                    "{} {} is now {}",
                    safe_text::line(v["name"].as_str().unwrap_or("")),
                    v["fingerprint"].as_str().unwrap_or(""),
                    if unset { "unverified" } else { "verified" }
                )
            });
            Ok(())
        }
        Command::Open {
            contact,
            password_file,
        } => {
            let pw = shared_secret(password_file)?;
            opened(
                ctx,
                ctx.call("open", json!({"contact": contact, "password": pw}))?,
            )
        }
        Command::Requests => requests(ctx),
        Command::Accept {
            request,
            password_file,
        } => {
            let pw = shared_secret(password_file)?;
            opened(
                ctx,
                ctx.call("accept", json!({"request": request, "password": pw}))?,
            )
        }
        Command::Refuse { request } => {
            let v = ctx.call("refuse", json!({ "request": request }))?;
            ctx.print(&v, |_| println!("request {request} refused"));
            Ok(())
        }
        Command::Discussions => discussions(ctx),
        Command::Send { discussion, text } => {
            let text = if text == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("reading the message from standard input")?;
                s.trim_end_matches('\n').to_string()
            } else {
                text
            };
            let v = ctx.call("send", json!({"discussion": discussion, "text": text}))?;
            ctx.print(&v, |v| {
                println!("message {} {}", v["seq"], v["state"].as_str().unwrap_or(""))
            });
            Ok(())
        }
        Command::History { discussion, limit } => history(ctx, &discussion, limit),
        Command::Close { discussion, force } => {
            let v = ctx.call("close", json!({ "discussion": discussion, "force": force }))?;
            ctx.print(&v, |v| {
                let id = v["discussion_id"].as_str().unwrap_or("");
                if v["state"] == "closing" {
                    println!(
                        "discussion {id} closing: the peer confirms when it is reachable \
                         (--force closes now)"
                    )
                } else {
                    println!("discussion {id} closed")
                }
            });
            Ok(())
        }
        Command::Watch => watch(ctx),
        Command::Simulate {
            nodes,
            messages,
            timeout,
        } => simulate(ctx, nodes, messages, timeout),
        Command::Stop => {
            let socket = ctx.settings.ipc_socket();
            let v = ctx.call("shutdown", json!({}))?;
            // Wait until the socket is gone, so a following start does not race the old core.
            for _ in 0..100 {
                if !socket.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            ctx.print(&v, |_| println!("core stopped"));
            Ok(())
        }
        Command::ExportKey { secret } => export_key(ctx, secret),
    }
}

/// The secret shared out of band: from the file, `PGPCHAT_PASSWORD`, or a hidden prompt.
fn shared_secret(file: Option<PathBuf>) -> Result<String> {
    secrets::obtain(file.as_deref(), "PGPCHAT_PASSWORD", "Shared secret", false)
}

/// Print the answer of `open` / `accept`.
fn opened(ctx: &Ctx, v: Value) -> Result<()> {
    ctx.print(&v, |v| {
        println!(
            "discussion {} open",
            v["discussion_id"].as_str().unwrap_or("")
        )
    });
    Ok(())
}

fn init(ctx: &Ctx, name: Option<String>, pass_file: Option<PathBuf>, no_pass: bool) -> Result<()> {
    let dir = &ctx.settings.node.data_dir;
    if identity::exists(dir) {
        bail!(
            "an identity already exists in {}; refusing to overwrite it",
            dir.display()
        );
    }
    let name = name.unwrap_or_else(|| ctx.settings.node.name.clone());
    let pass = if no_pass {
        None
    } else {
        Some(secrets::obtain(
            pass_file.as_deref(),
            "PGPCHAT_PASSPHRASE",
            "Passphrase for your identity key",
            true,
        )?)
    };
    let key = identity::init(dir, &name, pass.as_deref())?;
    if no_pass {
        eprintln!(
            "warning: no passphrase: anyone who can read {} can read your secret key and messages",
            dir.display()
        );
    }
    let v = json!({"name": name, "fingerprint": key.fingerprint(), "data_dir": dir});
    ctx.print(&v, |_| {
        println!("identity created for {name}");
        println!("fingerprint {}", fingerprint_groups(key.fingerprint()));
    });
    Ok(())
}

fn simulate(ctx: &Ctx, nodes: usize, messages: usize, timeout: u64) -> Result<()> {
    use pgpchat_actors::simulate::{run, SimulateOptions};
    let opts = SimulateOptions {
        nodes,
        messages,
        deadline: std::time::Duration::from_secs(timeout),
    };
    let report = actix::System::new().block_on(run(opts))?;
    let v = serde_json::to_value(&report)?;
    ctx.print(&v, |_| {
        println!(
            "nodes {}  discussions {}  messages {}",
            report.nodes, report.discussions, report.messages
        );
        println!("discovery (all see all)  {:>9.1} ms", report.discovery_ms);
        println!(
            "handshake  p50 {:>8.1} ms  p99 {:>8.1} ms  ({} runs)",
            report.handshake.p50_ms, report.handshake.p99_ms, report.handshake.count
        );
        println!(
            "message    p50 {:>8.1} ms  p99 {:>8.1} ms  ({} messages)",
            report.message.p50_ms, report.message.p99_ms, report.message.count
        );
        println!("throughput {:>9.0} messages/s", report.messages_per_second);
        println!("peak memory {:>8} KiB", report.peak_memory_kib);
    });
    Ok(())
}

fn whoami(ctx: &Ctx) -> Result<()> {
    // Works without a running core: the public part of the identity needs no passphrase.
    let cert = identity::public(&ctx.settings.node.data_dir)?;
    let v = json!({"name": cert.user_id(), "fingerprint": cert.fingerprint(),
                   "data_dir": ctx.settings.node.data_dir});
    ctx.print(&v, |_| {
        println!("{}", cert.user_id());
        println!("{}", fingerprint_groups(cert.fingerprint()));
    });
    Ok(())
}

fn export_key(ctx: &Ctx, secret: bool) -> Result<()> {
    let dir = &ctx.settings.node.data_dir;
    let text = if secret {
        identity::secret_armored(dir)?
    } else {
        identity::public(dir)?.to_armored()?
    };
    if ctx.json {
        println!("{}", json!({ "armored": text }));
    } else {
        print!("{text}");
    }
    Ok(())
}

fn contacts(ctx: &Ctx) -> Result<()> {
    let v = ctx.call("contacts", json!({}))?;
    ctx.print(&v, |v| {
        let list = v.as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            println!("no contacts seen yet");
            return;
        }
        let now = now_secs();
        println!(
            "{:<20} {:<16} {:<22} {:<10} flags",
            "NAME", "FINGERPRINT", "ADDRESS", "SEEN"
        );
        for c in list {
            let mut flags = Vec::new();
            if c["verified"].as_bool() == Some(true) {
                flags.push("verified");
            }
            if c["key_changed"].as_bool() == Some(true) {
                flags.push("KEY-CHANGED");
            }
            println!(
                "{:<20} {:<16} {:<22} {:<10} {}",
                safe_text::line(c["name"].as_str().unwrap_or("")),
                format::short_fpr(c["fingerprint"].as_str().unwrap_or("")),
                format!("{}:{}", c["address"].as_str().unwrap_or(""), c["tcp_port"]),
                format::ago(c["last_seen"].as_u64().unwrap_or(0), now),
                flags.join(",")
            );
        }
    });
    Ok(())
}

fn requests(ctx: &Ctx) -> Result<()> {
    let v = ctx.call("requests", json!({}))?;
    let refused = if ctx.json {
        Value::Null
    } else {
        ctx.call("requests", json!({"refused": true}))?
    };
    ctx.print(&v, |v| {
        let list = v.as_array().cloned().unwrap_or_default();
        let refused = refused.as_array().cloned().unwrap_or_default();
        if !refused.is_empty() {
            println!("refused without asking you (most recent last):");
            for r in refused {
                println!(
                    "      {} {} from {}: {}",
                    r["name"].as_str().unwrap_or(""),
                    fingerprint_groups(r["fingerprint"].as_str().unwrap_or("")),
                    r["address"].as_str().unwrap_or(""),
                    r["reason"].as_str().unwrap_or("")
                );
            }
        }
        if list.is_empty() {
            println!("no pending requests");
        }
        for r in list {
            println!(
                "{:>4}  {} {} from {}{}",
                r["id"].as_u64().unwrap_or(0),
                safe_text::line(r["name"].as_str().unwrap_or("")),
                fingerprint_groups(r["fingerprint"].as_str().unwrap_or("")),
                r["address"].as_str().unwrap_or(""),
                if r["key_changed"].as_bool() == Some(true) {
                    "  (WARNING: this name was known with another key)"
                } else {
                    ""
                }
            );
        }
    });
    Ok(())
}

fn discussions(ctx: &Ctx) -> Result<()> {
    let v = ctx.call("discussions", json!({}))?;
    ctx.print(&v, |v| {
        let list = v.as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            println!("no discussions");
            return;
        }
        println!(
            "{:<32} {:<20} {:<7} {:>6} {:>8}",
            "ID", "PEER", "STATE", "UNREAD", "MESSAGES"
        );
        for d in list {
            println!(
                "{:<32} {:<20} {:<7} {:>6} {:>8}{}",
                d["id"].as_str().unwrap_or(""),
                safe_text::line(d["peer_name"].as_str().unwrap_or("")),
                d["state"].as_str().unwrap_or(""),
                d["unread"].as_u64().unwrap_or(0),
                d["messages"].as_u64().unwrap_or(0),
                if d["peer_not_told"] == true {
                    "  (peer told when reachable)"
                } else {
                    ""
                }
            );
        }
    });
    Ok(())
}

fn history(ctx: &Ctx, discussion: &str, limit: u64) -> Result<()> {
    let mut client = ctx.client()?;
    let v = client.call("history", json!({"discussion": discussion, "limit": limit}))?;
    if ctx.json {
        println!("{}", safe_text::json(&v));
        return Ok(());
    }
    let messages = v.as_array().cloned().unwrap_or_default();
    // Name the peer: find its discussion among the list.
    let id = messages.first().map(|m| m["discussion_id"].clone());
    let peer = match id {
        Some(id) => client
            .call("discussions", json!({}))?
            .as_array()
            .and_then(|d| d.iter().find(|d| d["id"] == id).cloned())
            .and_then(|d| d["peer_name"].as_str().map(str::to_string)),
        None => None,
    };
    for m in messages {
        println!("{}", format_message(&m, peer.as_deref()));
    }
    Ok(())
}

/// One message: `2026-11-24 18:00:00      bob: hello  [delivered]`. The body's own lines continue
/// indented under its first; control characters in the body or the name show escaped.
pub fn format_message(m: &Value, peer: Option<&str>) -> String {
    let out = m["direction"].as_str() == Some("out");
    let who = if out {
        "me".to_string()
    } else {
        safe_text::line(peer.unwrap_or("them"))
    };
    let state = if out {
        format!("  [{}]", m["state"].as_str().unwrap_or(""))
    } else {
        String::new()
    };
    let head = format!(
        "{} {:>8}: ",
        format::time(m["time"].as_u64().unwrap_or(0)),
        who
    );
    let body = safe_text::block(m["body"].as_str().unwrap_or(""), head.chars().count());
    format!("{head}{body}{state}")
}

fn watch(ctx: &Ctx) -> Result<()> {
    let mut c = ctx.client()?;
    c.call("subscribe", json!({}))?;
    // On stderr: stdout carries only events. Also tells a script that the subscription is live.
    eprintln!("watching {}'s core", ctx.settings.node.name);
    loop {
        let Some(e) = c.next_event(None)? else {
            continue;
        };
        if e["method"] == "lagged" {
            bail!("fell too far behind the core's events; restart watch and re-read history");
        }
        let p = &e["params"];
        if ctx.json {
            println!("{}", safe_text::json(p));
        } else {
            println!("{}", describe_event(p));
        }
        crate::stdout::flush()?;
    }
}

/// A one-line human description of an event.
pub fn describe_event(p: &Value) -> String {
    // Every string of an event may come from a peer.
    let s = |k: &str| safe_text::line(p[k].as_str().unwrap_or(""));
    let sub = |o: &str, k: &str| safe_text::line(p[o][k].as_str().unwrap_or(""));
    match p["event"].as_str().unwrap_or("") {
        "contact_seen" => format!(
            "contact {} {} at {}",
            sub("contact", "name"),
            format::short_fpr(&sub("contact", "fingerprint")),
            sub("contact", "address")
        ),
        "key_changed" => format!(
            "WARNING: '{}' is now announced by another key {} (was {})",
            s("name"),
            s("new_fingerprint"),
            s("old_fingerprint")
        ),
        "request" => format!(
            "request {} from {} {}",
            p["request"]["id"],
            sub("request", "name"),
            fingerprint_groups(&sub("request", "fingerprint"))
        ),
        "request_closed" => format!("request {} {}", p["request_id"], s("reason")),
        "request_refused" => format!(
            "request from {} {} at {} refused without asking you: {}",
            s("name"),
            fingerprint_groups(&s("fingerprint")),
            s("address"),
            s("reason")
        ),
        "discussion_opened" => format!(
            "discussion {} with {} open",
            s("discussion_id"),
            s("peer_name")
        ),
        "handshake_failed" => format!(
            "handshake with {} failed: {}",
            format::short_fpr(&s("peer_fingerprint")),
            s("reason")
        ),
        "message" => format!(
            "[{}] {}",
            sub("message", "discussion_id"),
            format_message(&p["message"], None)
        ),
        "delivery" => format!(
            "[{}] message {} {}",
            s("discussion_id"),
            p["seq"],
            s("state")
        ),
        "connection" => format!(
            "[{}] {}",
            s("discussion_id"),
            if p["connected"].as_bool() == Some(true) {
                "connected"
            } else {
                "disconnected"
            }
        ),
        "discussion_closed" => format!(
            "discussion {} closed{}",
            s("discussion_id"),
            if p["by_peer"].as_bool() == Some(true) {
                " by the peer"
            } else {
                ""
            }
        ),
        other => format!("{}: {}", safe_text::line(other), safe_text::json(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    fn enabled(filter: &str, target: &str, level: log::Level) -> bool {
        let logger = env_logger::Builder::new().parse_filters(filter).build();
        log::Log::enabled(
            &logger,
            &log::Metadata::builder().target(target).level(level).build(),
        )
    }

    #[test]
    fn the_default_filter_keeps_the_cores_info_lines_and_caps_rpgp() {
        use log::Level::{Debug, Error, Info, Warn};
        let f = log_filter(None, "info");
        assert!(enabled(&f, "pgpchat_actors::node", Info), "{f}");
        assert!(enabled(&f, "pgpchat::core_process", Info), "{f}");
        assert!(!enabled(&f, "pgp::composed::key", Warn), "{f}");
        assert!(enabled(&f, "pgp::composed::key", Error), "{f}");
        // Whatever RUST_LOG says, rpgp never logs below error (it prints key packets at debug).
        for user in ["trace", "pgp=trace", "pgp::=debug,info", "trace/chat"] {
            let f = log_filter(Some(user.into()), "info");
            assert!(!enabled(&f, "pgp::packet::secret_key_parser", Debug), "{f}");
            assert!(enabled(&f, "pgpchat_actors::events", Info), "{f}");
        }
        assert_eq!(
            log_filter(Some("trace/chat".into()), "info"),
            "trace,pgp::=error/chat"
        );
    }
}
