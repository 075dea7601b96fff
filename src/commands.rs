//! One function per command. Settings are resolved once, here, from the global options.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use pgpchat_actors::api::{self, Event, Message, Notification};
use pgpchat_actors::crypto::fingerprint_groups;
use pgpchat_actors::events::now_secs;
use pgpchat_actors::identity;
use pgpchat_actors::settings::Settings;
use serde::Serialize;
use serde_json::json;

use crate::cli::{Cli, Command};
use crate::client::Client;
use crate::format;
use crate::log_file;
use crate::safe_text;
use crate::secrets;

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
    fn print<T: Serialize>(&self, v: &T, human: impl FnOnce(&T)) -> Result<()> {
        if self.json {
            println!("{}", safe_text::json(&serde_json::to_value(v)?));
        } else {
            human(v);
        }
        Ok(())
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
            let c = ctx.call(api::VerifyRequest {
                contact,
                verified: Some(!unset),
            })?;
            ctx.print(&c, |c| {
                println!(
                    "{} {} is now {}",
                    safe_text::line(&c.name),
                    c.fingerprint,
                    if unset { "unverified" } else { "verified" }
                )
            })
        }
        Command::Open {
            contact,
            password_file,
        } => {
            let pw = shared_secret(password_file)?;
            opened(
                ctx,
                ctx.call(api::OpenRequest {
                    contact,
                    password: pw,
                })?,
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
                ctx.call(api::AcceptRequest {
                    request,
                    password: pw,
                })?,
            )
        }
        Command::Refuse { request } => {
            let v = ctx.call(api::RefuseRequest { request })?;
            ctx.print(&v, |_| println!("request {request} refused"))
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
            let m = ctx.call(api::SendRequest { discussion, text })?;
            ctx.print(&m, |m| println!("message {} {}", m.seq, delivery(m.state)))
        }
        Command::History { discussion, limit } => history(ctx, &discussion, limit),
        Command::Close { discussion, force } => {
            let v = ctx.call(api::CloseRequest {
                discussion,
                force: Some(force),
            })?;
            ctx.print(&v, |v| {
                let id = &v.discussion_id;
                if v.state == api::DiscussionState::Closing {
                    println!(
                        "discussion {id} closing: the peer confirms when it is reachable \
                         (--force closes now)"
                    )
                } else {
                    println!("discussion {id} closed")
                }
            })
        }
        Command::Watch => watch(ctx),
        Command::Simulate {
            nodes,
            messages,
            timeout,
        } => simulate(ctx, nodes, messages, timeout),
        Command::Stop => {
            let socket = ctx.settings.ipc_socket();
            // Any core, even one of another API version: this is how the user restarts it.
            let v = ctx.client_unchecked()?.call(api::ShutdownRequest {})?;
            // Wait until the socket is gone, so a following start does not race the old core.
            for _ in 0..100 {
                if !socket.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            ctx.print(&v, |_| println!("core stopped"))
        }
        Command::ExportKey { secret } => export_key(ctx, secret),
    }
}

/// The secret shared out of band: from the file, `PGPCHAT_PASSWORD`, or a hidden prompt.
fn shared_secret(file: Option<PathBuf>) -> Result<String> {
    secrets::obtain(file.as_deref(), "PGPCHAT_PASSWORD", "Shared secret", false)
}

/// Print the answer of `open` / `accept`.
fn opened(ctx: &Ctx, v: api::Opened) -> Result<()> {
    ctx.print(&v, |v| println!("discussion {} open", v.discussion_id))
}

/// A delivery state as the core names it.
pub fn delivery(s: api::DeliveryState) -> &'static str {
    match s {
        api::DeliveryState::Stored => "stored",
        api::DeliveryState::Sent => "sent",
        api::DeliveryState::Delivered => "delivered",
        api::DeliveryState::Received => "received",
    }
}

/// A discussion state as the core names it.
pub fn state(s: api::DiscussionState) -> &'static str {
    match s {
        api::DiscussionState::Open => "open",
        api::DiscussionState::Closing => "closing",
        api::DiscussionState::Closed => "closed",
    }
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
    })
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
    })
}

fn whoami(ctx: &Ctx) -> Result<()> {
    // Works without a running core: the public part of the identity needs no passphrase.
    let cert = identity::public(&ctx.settings.node.data_dir)?;
    let v = json!({"name": cert.user_id(), "fingerprint": cert.fingerprint(),
                   "data_dir": ctx.settings.node.data_dir});
    ctx.print(&v, |_| {
        println!("{}", cert.user_id());
        println!("{}", fingerprint_groups(cert.fingerprint()));
    })
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
    let list = ctx.call(api::ContactsRequest {})?;
    ctx.print(&list, |list| {
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
            if c.verified {
                flags.push("verified");
            }
            if c.key_changed {
                flags.push("KEY-CHANGED");
            }
            println!(
                "{:<20} {:<16} {:<22} {:<10} {}",
                safe_text::line(&c.name),
                format::short_fpr(&c.fingerprint),
                format!("{}:{}", c.address, c.tcp_port),
                format::ago(c.last_seen, now),
                flags.join(",")
            );
        }
    })
}

fn requests(ctx: &Ctx) -> Result<()> {
    let mut client = ctx.client()?;
    let list = client.requests()?;
    let refused = if ctx.json {
        Vec::new()
    } else {
        client.refused_requests()?
    };
    ctx.print(&list, |list| {
        if !refused.is_empty() {
            println!("refused without asking you (most recent last):");
            for r in &refused {
                println!(
                    "      {} {} from {}: {}",
                    safe_text::line(&r.name),
                    fingerprint_groups(&r.fingerprint),
                    r.address,
                    safe_text::line(&r.reason)
                );
            }
        }
        if list.is_empty() {
            println!("no pending requests");
        }
        for r in list {
            println!(
                "{:>4}  {} {} from {}{}",
                r.id,
                safe_text::line(&r.name),
                fingerprint_groups(&r.fingerprint),
                r.address,
                if r.key_changed {
                    "  (WARNING: this name was known with another key)"
                } else {
                    ""
                }
            );
        }
    })
}

fn discussions(ctx: &Ctx) -> Result<()> {
    let list = ctx.call(api::DiscussionsRequest {})?;
    ctx.print(&list, |list| {
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
                d.id,
                safe_text::line(&d.peer_name),
                state(d.state),
                d.unread,
                d.messages,
                if d.peer_not_told {
                    "  (peer told when reachable)"
                } else {
                    ""
                }
            );
        }
    })
}

fn history(ctx: &Ctx, discussion: &str, limit: u64) -> Result<()> {
    let mut client = ctx.client()?;
    let messages = client.call(api::HistoryRequest {
        discussion: discussion.to_string(),
        limit: Some(limit),
    })?;
    if ctx.json {
        println!("{}", safe_text::json(&serde_json::to_value(&messages)?));
        return Ok(());
    }
    // Name the peer: find its discussion among the list.
    let peer = match messages.first() {
        Some(m) => client
            .call(api::DiscussionsRequest {})?
            .into_iter()
            .find(|d| d.id == m.discussion_id)
            .map(|d| d.peer_name),
        None => None,
    };
    for m in &messages {
        println!("{}", format_message(m, peer.as_deref()));
    }
    Ok(())
}

/// One message: `2026-11-24 18:00:00      bob: hello  [delivered]`. The body's own lines continue
/// indented under its first; control characters in the body or the name show escaped.
pub fn format_message(m: &Message, peer: Option<&str>) -> String {
    let out = m.direction == api::Direction::Out;
    let who = if out {
        "me".to_string()
    } else {
        safe_text::line(peer.unwrap_or("them"))
    };
    let state = if out {
        format!("  [{}]", delivery(m.state))
    } else {
        String::new()
    };
    let head = format!("{} {:>8}: ", format::time(m.time), who);
    let body = safe_text::block(&m.body, head.chars().count());
    format!("{head}{body}{state}")
}

fn watch(ctx: &Ctx) -> Result<()> {
    let mut c = ctx.client()?;
    c.call(api::SubscribeRequest {})?;
    // On stderr: stdout carries only events. Also tells a script that the subscription is live.
    eprintln!("watching {}'s core", ctx.settings.node.name);
    loop {
        let Some(n) = c.next_event(None)? else {
            continue;
        };
        let e = match n {
            Notification::Event(e) => e,
            Notification::Lagged {} => {
                bail!("fell too far behind the core's events; restart watch and re-read history")
            }
            Notification::Closing { .. } => bail!("the core closed the connection"),
        };
        if ctx.json {
            // An event of a newer core has nothing this client could print faithfully.
            if e != Event::Unknown {
                println!("{}", safe_text::json(&serde_json::to_value(&e)?));
            }
        } else {
            println!("{}", describe_event(&e));
        }
        use std::io::Write;
        std::io::stdout().flush()?;
    }
}

/// A one-line human description of an event.
pub fn describe_event(e: &Event) -> String {
    // Every string of an event may come from a peer.
    let s = |t: &str| safe_text::line(t);
    match e {
        Event::ContactSeen { contact } => format!(
            "contact {} {} at {}",
            s(&contact.name),
            format::short_fpr(&s(&contact.fingerprint)),
            s(&contact.address)
        ),
        Event::KeyChanged {
            name,
            old_fingerprint,
            new_fingerprint,
        } => format!(
            "WARNING: '{}' is now announced by another key {} (was {})",
            s(name),
            s(new_fingerprint),
            s(old_fingerprint)
        ),
        Event::Request { request } => format!(
            "request {} from {} {}",
            request.id,
            s(&request.name),
            fingerprint_groups(&s(&request.fingerprint))
        ),
        Event::RequestClosed { request_id, reason } => {
            format!("request {} {}", request_id, s(reason))
        }
        Event::RequestRefused {
            name,
            fingerprint,
            address,
            reason,
        } => format!(
            "request from {} {} at {} refused without asking you: {}",
            s(name),
            fingerprint_groups(&s(fingerprint)),
            s(address),
            s(reason)
        ),
        Event::DiscussionOpened {
            discussion_id,
            peer_name,
            ..
        } => format!("discussion {} with {} open", s(discussion_id), s(peer_name)),
        Event::HandshakeFailed {
            peer_fingerprint,
            reason,
        } => format!(
            "handshake with {} failed: {}",
            format::short_fpr(&s(peer_fingerprint)),
            s(reason)
        ),
        Event::Message { message } => format!(
            "[{}] {}",
            s(&message.discussion_id),
            format_message(message, None)
        ),
        Event::Delivery {
            discussion_id,
            seq,
            state,
        } => format!(
            "[{}] message {} {}",
            s(discussion_id),
            seq,
            delivery(*state)
        ),
        Event::Connection {
            discussion_id,
            connected,
        } => format!(
            "[{}] {}",
            s(discussion_id),
            if *connected {
                "connected"
            } else {
                "disconnected"
            }
        ),
        Event::DiscussionClosed {
            discussion_id,
            by_peer,
        } => format!(
            "discussion {} closed{}",
            s(discussion_id),
            if *by_peer { " by the peer" } else { "" }
        ),
        Event::Unknown => "an event this pgpchat does not know (a newer core)".to_string(),
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
