//! One function per command. Settings are resolved once, here, from the global options.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use pgpchat_actors::api::{self, Event, Notification};
use pgpchat_actors::client::ClientError;
use pgpchat_actors::daemon::{self, BenchOptions, DaemonError, SimulateOptions};
use pgpchat_actors::offline::{self, fingerprint_groups, IdentityError};
use pgpchat_actors::settings::Settings;
use serde_json::json;

use crate::cli::{Cli, Command};
use crate::ctx::Ctx;
use crate::format::{self, delivery, describe_event, format_message, now_secs, state};
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

/// The level `-v`/`-q` ask for, which wins over `RUST_LOG` (None: neither was given).
fn verbosity(verbose: u8, quiet: bool) -> Option<&'static str> {
    match (quiet, verbose) {
        (true, _) => Some("error"),
        (false, 0) => None,
        (false, 1) => Some("info"),
        (false, 2) => Some("debug"),
        (false, _) => Some("trace"),
    }
}

/// Log lines: to stderr, and for the core also to its own rotated file (`log_file`, attached once
/// the identity is unlocked). `level` (from `-v`/`-q`) replaces `RUST_LOG`.
fn init_logging(default: &str, node: &str, core: bool, level: Option<&str>) {
    let node = node.to_string();
    let rust_log = match level {
        Some(l) => Some(l.to_string()),
        None => std::env::var("RUST_LOG").ok(),
    };
    let filter = log_filter(rust_log, default);
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

pub fn run(cli: Cli) -> Result<()> {
    // Generated from the definition alone: a broken configuration does not stop them.
    match &cli.command {
        Some(Command::Completions { shell }) => return completions(*shell),
        Some(Command::Man) => return man_page(),
        _ => {}
    }
    let settings = load_settings(&cli)?;
    let is_daemon = matches!(cli.command, Some(Command::Daemon { .. }));
    init_logging(
        if is_daemon { "info" } else { "warn" },
        &settings.node.name,
        is_daemon,
        verbosity(cli.verbose, cli.quiet),
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
    let identity = e.downcast_ref::<IdentityError>().or_else(|| {
        e.downcast_ref::<DaemonError>()
            .and_then(DaemonError::identity)
    });
    match identity {
        Some(IdentityError::Missing(_)) => crate::exit::Reworded::of(
            &e,
            format!("{e}: run {} first", ctx.hint("init --name NAME")),
        ),
        _ => e,
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
        Command::Web => crate::web::run(ctx),
        Command::Whoami => whoami(ctx),
        Command::Status => status(ctx),
        Command::Contacts { from: None } => contacts(ctx),
        Command::Contacts { from: Some(peer) } => contacts_from(ctx, peer),
        Command::AddContact { address, dht } => {
            let c = ctx.call(api::AddContactRequest {
                address,
                dht: dht.then_some(true),
            })?;
            ctx.print(&c, |c| {
                println!(
                    "{} {} added ({}:{}); verify its fingerprint before trusting it",
                    safe_text::line(&c.name),
                    c.fingerprint,
                    c.address,
                    c.tcp_port
                )
            })
        }
        Command::RemoveContact { contact } => {
            let c = ctx.call(api::RemoveContactRequest { contact })?;
            ctx.print(&c, |c| {
                println!("{} {} removed", safe_text::line(&c.name), c.fingerprint)
            })
        }
        Command::Block { fingerprint } => block(ctx, fingerprint, true),
        Command::Unblock { fingerprint } => block(ctx, fingerprint, false),
        Command::Blocked => {
            let list = ctx.call(api::BlockedRequest {})?;
            ctx.print(&list, |list| {
                if list.is_empty() {
                    println!("no key is blocked");
                }
                for fp in list {
                    println!("{fp}");
                }
            })
        }
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
        Command::Cancel { contact } => {
            let v = ctx.call(api::CancelRequest {
                contact: contact.clone(),
            })?;
            ctx.print(&v, |v| match v.cancelled {
                0 => println!(
                    "no request to {} was waiting (already answered, or none made)",
                    safe_text::line(&contact)
                ),
                n => println!("{n} request(s) to {} withdrawn", safe_text::line(&contact)),
            })
        }
        Command::Introduce { a, b } => {
            let v = ctx.call(api::IntroduceRequest { a, b })?;
            ctx.print(&v, |v| {
                println!(
                    "introduction {} sent: each side is asked to accept",
                    v.introduction
                )
            })
        }
        Command::Introductions => introductions(ctx),
        Command::AcceptIntroduction { introduction } => {
            let v = ctx.call(api::AcceptIntroductionRequest { introduction })?;
            ctx.print(&v, |i| {
                println!(
                    "introduction {}: {}",
                    i.id,
                    format::introduction_state(i.state)
                )
            })
        }
        Command::DeclineIntroduction { introduction } => {
            let v = ctx.call(api::DeclineIntroductionRequest { introduction })?;
            ctx.print(&v, |i| println!("introduction {} declined", i.id))
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
        Command::History {
            discussion,
            limit,
            before,
            after,
        } => history(
            ctx,
            api::HistoryRequest {
                discussion,
                limit: Some(limit),
                before,
                after,
            },
        ),
        Command::Rotate { discussion } => {
            let v = ctx.call(api::RotateRequest { discussion })?;
            ctx.print(&v, |v| {
                println!(
                    "discussion {}: new encryption key {} announced (in use once the peer switches)",
                    safe_text::line(&v.discussion_id),
                    safe_text::line(&v.key_id)
                )
            })
        }
        Command::Close { discussion, force } => {
            let answer = ctx.call(api::CloseRequest {
                discussion: discussion.clone(),
                force: Some(force),
            });
            // Already closed: what the user wanted is true, so it is no failure.
            if let Some(e) = answer
                .as_ref()
                .err()
                .and_then(|e| e.downcast_ref::<ClientError>())
            {
                if e.kind() == Some(api::ErrorKind::Closed) {
                    let v = json!({"discussion": discussion, "state": "closed", "already": true});
                    return ctx.print(&v, |_| {
                        println!(
                            "discussion {} is already closed",
                            safe_text::line(&discussion)
                        )
                    });
                }
            }
            let v = answer?;
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
            interval,
        } => simulate(ctx, nodes, messages, timeout, interval),
        Command::Bench {
            crypto,
            commits,
            keygens,
            spake2,
            opens,
            one_at_a_time,
            messages,
            gpg,
            senders,
            rotate_every,
            timeout,
        } => bench(
            ctx,
            BenchOptions {
                crypto,
                commits,
                keygens,
                spake2,
                opens,
                one_at_a_time,
                messages,
                gpg,
                senders,
                rotate_every,
                deadline: std::time::Duration::from_secs(timeout),
            },
        ),
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
        Command::Completions { shell } => completions(shell),
        Command::Man => man_page(),
    }
}

/// `pgpchat completions SHELL`: the completion script, generated from the CLI definition.
fn completions(shell: clap_complete::Shell) -> Result<()> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "pgpchat", &mut out);
    crate::stdout::write(format_args!("{}", String::from_utf8_lossy(&out)));
    Ok(())
}

/// `pgpchat man`: the man page (roff), generated from the CLI definition ([`crate::man`]).
fn man_page() -> Result<()> {
    use clap::CommandFactory;
    let page = crate::man::render(Cli::command()).context("rendering the man page")?;
    crate::stdout::write(format_args!("{page}"));
    Ok(())
}

/// The secret shared out of band: from the file, `PGPCHAT_PASSWORD`, or a hidden prompt.
fn shared_secret(file: Option<PathBuf>) -> Result<String> {
    secrets::obtain(file.as_deref(), "PGPCHAT_PASSWORD", "Shared secret", false)
}

/// Print the answer of `open` / `accept`.
fn opened(ctx: &Ctx, v: api::Opened) -> Result<()> {
    ctx.print(&v, |v| println!("discussion {} open", v.discussion_id))
}

fn init(ctx: &Ctx, name: Option<String>, pass_file: Option<PathBuf>, no_pass: bool) -> Result<()> {
    let dir = &ctx.settings.node.data_dir;
    if offline::exists(dir) {
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
    let key = offline::init(dir, &name, pass.as_deref())?;
    if no_pass {
        let _ = writeln!(
            std::io::stderr(),
            "warning: no passphrase: anyone who can read {} can read your secret key and messages",
            dir.display()
        );
    }
    let v = json!({"name": name, "fingerprint": key.fingerprint, "data_dir": dir});
    ctx.print(&v, |_| {
        println!("identity created for {name}");
        println!("fingerprint {}", fingerprint_groups(&key.fingerprint));
    })
}

fn simulate(
    ctx: &Ctx,
    nodes: usize,
    messages: usize,
    timeout: u64,
    interval: Option<u64>,
) -> Result<()> {
    let opts = SimulateOptions {
        nodes,
        messages,
        deadline: std::time::Duration::from_secs(timeout),
        interval_secs: interval,
    };
    let report = daemon::simulate(opts)?;
    let v = serde_json::to_value(&report)?;
    ctx.print(&v, |_| {
        println!(
            "nodes {}  discussions {}  messages {}",
            report.nodes, report.discussions, report.messages
        );
        println!(
            "discovery (all see all)  {:>9.1} ms  ({:.2} announce intervals of {} s)",
            report.discovery_ms, report.discovery_intervals, report.announce_interval_secs
        );
        println!(
            "idle       {:>8.1} % of one core  {:>6} KiB resident per node",
            report.idle_cpu_percent, report.resident_per_node_kib
        );
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

/// A run longer than this shows its progress on stderr.
const BENCH_QUIET_SECS: u64 = 2;

/// `pgpchat bench`: each node figure in absolute terms and as a ratio to its raw floor.
fn bench(ctx: &Ctx, opts: BenchOptions) -> Result<()> {
    use std::io::{IsTerminal, Write};
    let started = std::time::Instant::now();
    let shown = std::sync::atomic::AtomicBool::new(false);
    // One stderr line rewritten in place, on a terminal only, once the run is not short.
    let tty = std::io::stderr().is_terminal();
    let progress = |stage: daemon::BenchStage, done: usize, of: usize| {
        if tty && started.elapsed().as_secs() >= BENCH_QUIET_SECS {
            shown.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = write!(std::io::stderr(), "\r\x1b[K{}: {done}/{of}", stage.label());
        }
    };
    let report = daemon::bench(opts, &progress);
    if shown.load(std::sync::atomic::Ordering::Relaxed) {
        let _ = write!(std::io::stderr(), "\r\x1b[K");
    }
    let r = report?;
    ctx.print(&r, |r| {
        let raw = &r.raw;
        println!("raw baselines (medians, this run)");
        println!(
            "  crypto round trip (200 B)  {:>8.3} ms  ({:.0}/s on one core)",
            raw.crypto_round_trip.p50_ms, raw.crypto_round_trips_per_second
        );
        println!(
            "  SQLite commit (FULL)       {:>8.3} ms",
            raw.sqlite_commit.p50_ms
        );
        println!(
            "  key generation             {:>8.3} ms",
            raw.key_generation.p50_ms
        );
        println!(
            "  SPAKE2 exchange            {:>8.3} ms",
            raw.spake2_exchange.p50_ms
        );
        let p1 = &r.p1_throughput;
        println!(
            "P1 throughput     {:>8.0} messages/s   {:.2} x one core's crypto rate ({} senders, {} key rotations)",
            p1.messages_per_second, p1.ratio_to_one_core_crypto, r.options.senders, p1.rotations
        );
        let p2 = &r.p2_one_at_a_time;
        println!(
            "P2 send->stored   p50 {:>7.3} ms          {:.2} x one commit",
            p2.stored.p50_ms, p2.stored_p50_ratio_to_commit
        );
        println!(
            "P2 send->delivered p50 {:>6.3} ms p99 {:.3} ms   {:.2} / {:.2} x floor {:.3} ms",
            p2.delivered.p50_ms,
            p2.delivered.p99_ms,
            p2.delivered_p50_ratio_to_floor,
            p2.delivered_p99_ratio_to_floor,
            raw.message_floor_ms
        );
        println!(
            "P4 open           p50 {:>7.3} ms          {:.2} x floor {:.3} ms",
            r.p4_open.open.p50_ms, r.p4_open.p50_ratio_to_floor, raw.open_floor_ms
        );
        match &r.p5_gpg {
            Some(g) => println!(
                "P5 vs gpg         {:>8.3} ms per gpg round trip   {:.0} x the node's {:.3} ms per message",
                g.gpg_round_trip.p50_ms, g.times_faster_than_gpg, g.node_ms_per_message
            ),
            None => println!("P5 vs gpg         not measured (gpg not installed, or --gpg 0)"),
        }
        println!("({:.1} s)", r.seconds);
    })
}

fn whoami(ctx: &Ctx) -> Result<()> {
    // Works without a running core: the public part of the identity needs no passphrase. The main
    // TCP port (what people beyond the LAN give to `add-contact`) is the running core's; without
    // one, only a fixed `listener.port` is known in advance.
    let me = offline::whoami(&ctx.settings.node.data_dir)?;
    let running = ctx
        .client()
        .ok()
        .and_then(|mut c| c.call(api::WhoamiRequest {}).ok());
    let fixed = ctx.settings.listener.port;
    let tcp_port = match &running {
        Some(w) => Some(w.tcp_port),
        None if fixed != 0 => Some(fixed),
        None => None,
    };
    let v = json!({"name": me.name, "fingerprint": me.fingerprint,
                   "data_dir": ctx.settings.node.data_dir,
                   "tcp_port": tcp_port, "core_running": running.is_some()});
    ctx.print(&v, |_| {
        println!("{}", me.name);
        println!("{}", fingerprint_groups(&me.fingerprint));
        match (&running, tcp_port) {
            (Some(_), Some(p)) => println!("TCP port {p} (main listener, for add-contact)"),
            (None, Some(p)) => println!("TCP port {p} (listener.port; the core is not running)"),
            _ => println!(
                "TCP port: chosen by the running core when it starts (none is running; \
                 set listener.port to fix it)"
            ),
        }
    })
}

fn status(ctx: &Ctx) -> Result<()> {
    let s = ctx.call(api::StatusRequest {})?;
    ctx.print(&s, |s| {
        println!("{} ({})", safe_text::line(&s.whoami.name), s.whoami.node);
        println!("{}", fingerprint_groups(&s.whoami.fingerprint));
        println!(
            "TCP port {} (main listener, for add-contact)",
            s.whoami.tcp_port
        );
        println!("core {}  API {}", s.version.core, s.version.api);
        let d = &s.discovery;
        println!(
            "discovery: {} received, {} accepted, {} announces sent, {} replies sent",
            d.received, d.accepted, d.announces_sent, d.replies_sent
        );
        let h = &s.dht;
        if h.enabled {
            // "firewalled" is about the DHT's own UDP port, never the chat's TCP port.
            println!(
                "DHT: on, UDP {}, seen as {}{}; {} discussions published, {} lookups, {} puts ({} failed)",
                h.local_address.as_deref().unwrap_or("?"),
                h.public_address.as_deref().unwrap_or("(not yet)"),
                if h.firewalled {
                    " (its UDP port looks firewalled)"
                } else {
                    ""
                },
                h.tracked,
                h.lookups,
                h.puts,
                h.put_failures
            );
        } else {
            println!("DHT: off ([dht] enabled = false)");
        }
    })
}

fn export_key(ctx: &Ctx, secret: bool) -> Result<()> {
    let dir = &ctx.settings.node.data_dir;
    let text = if secret {
        offline::export_secret(dir)?
    } else {
        offline::export_public(dir)?
    };
    if ctx.json {
        println!("{}", json!({ "armored": text }));
    } else {
        print!("{text}");
    }
    Ok(())
}

fn block(ctx: &Ctx, fingerprint: String, blocked: bool) -> Result<()> {
    let a = ctx.call(api::BlockRequest {
        fingerprint,
        blocked: Some(blocked),
    })?;
    ctx.print(&a, |a| {
        println!(
            "{} {}",
            a.fingerprint,
            if a.blocked { "blocked" } else { "unblocked" }
        )
    })
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
            "{:<20} {:<16} {:<22} {:<10} {:<20} flags",
            "NAME", "FINGERPRINT", "ADDRESS", "SEEN", "ORIGIN"
        );
        for c in list {
            let origin = safe_text::line(&c.origin.to_string());
            let mut flags = Vec::new();
            if c.verified {
                flags.push("verified".to_string());
            }
            if c.key_changed {
                flags.push("KEY-CHANGED".to_string());
            }
            if let Some(by) = &c.introduced_by {
                flags.push(format!("introduced by {}", safe_text::line(&by.name)));
            }
            println!(
                "{:<20} {:<16} {:<22} {:<10} {:<20} {}",
                safe_text::line(&c.name),
                format::short_fpr(&c.fingerprint),
                format!("{}:{}", c.address, c.tcp_port),
                format::ago(c.last_seen, now),
                origin,
                flags.join(",")
            );
        }
    })
}

/// Ask `peer` for its contact list, say what merging it did.
fn contacts_from(ctx: &Ctx, peer: String) -> Result<()> {
    let merged = ctx.call(api::ContactsFromRequest { peer })?;
    ctx.print(&merged, |m| println!("{}", format::list_merged(m)))
}

fn introductions(ctx: &Ctx) -> Result<()> {
    let list = ctx.call(api::IntroductionsRequest {})?;
    ctx.print(&list, |list| {
        if list.is_empty() {
            println!("no introductions");
        }
        for i in list {
            println!(
                "{:>4}  {} introduces {} {}: {}{}",
                i.id,
                safe_text::line(&i.introducer.name),
                safe_text::line(&i.peer_name),
                fingerprint_groups(&i.peer_fingerprint),
                format::introduction_state(i.state),
                if i.key_changed {
                    "  (WARNING: this name is known with another key)"
                } else {
                    ""
                }
            );
        }
    })
}

fn requests(ctx: &Ctx) -> Result<()> {
    let mut client = ctx.client()?;
    let list = client.requests()?;
    let refused = client.refused_requests()?;
    if ctx.json {
        let v = json!({"requests": list, "refused": refused});
        return ctx.print(&v, |_| {});
    }
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
            "{:<32} {:<20} {:<7} {:>6} {:>8}  {:<16} {:<9}",
            "ID", "PEER", "STATE", "UNREAD", "MESSAGES", "KEY", "ROTATED"
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for d in list {
            println!(
                "{:<32} {:<20} {:<7} {:>6} {:>8}  {:<16} {:<9}{}",
                d.id,
                safe_text::line(&d.peer_name),
                state(d.state),
                d.unread,
                d.messages,
                safe_text::line(d.key_id.as_deref().unwrap_or("-")),
                d.last_rotation
                    .map_or_else(|| "never".to_string(), |t| crate::format::ago(t, now)),
                if d.peer_not_told {
                    "  (peer told when reachable)"
                } else {
                    ""
                }
            );
        }
    })
}

fn history(ctx: &Ctx, request: api::HistoryRequest) -> Result<()> {
    let mut client = ctx.client()?;
    let discussion = request.discussion.clone();
    let (after, before) = (request.after, request.before);
    let messages = client.call(request)?;
    if ctx.json {
        println!("{}", safe_text::json(&serde_json::to_value(&messages)?));
        return Ok(());
    }
    if messages.is_empty() {
        // An empty result is a success (status 0, as `requests` with none waiting), but not a
        // silent one: stdout stays empty for scripts, stderr says why. The discussion's last
        // message gives its count (its position).
        let last = client.call(api::HistoryRequest {
            discussion: discussion.clone(),
            limit: Some(1),
            ..api::HistoryRequest::default()
        })?;
        let count = last.first().and_then(|m| m.position).unwrap_or(0);
        let _ = writeln!(std::io::stderr(), "{}", empty_range(after, before, count));
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
    // On stderr, so stdout stays the messages: how to page back.
    if let Some(first) = messages.first().and_then(|m| m.position).filter(|p| *p > 1) {
        let _ = writeln!(
            std::io::stderr(),
            "(earlier messages: {})",
            ctx.hint(&format!(
                "history {} --before {first}",
                crate::ctx::shell_quote(&discussion)
            ))
        );
    }
    Ok(())
}

/// What `history` says on stderr when the range asked for holds no message; `count`: the
/// discussion's messages.
fn empty_range(after: Option<u64>, before: Option<u64>, count: u64) -> String {
    let has = match count {
        0 => "the discussion has no messages yet".to_string(),
        1 => "the discussion has 1 message".to_string(),
        n => format!("the discussion has {n} messages"),
    };
    match (after, before) {
        (Some(a), Some(b)) => format!("no messages between positions {a} and {b}; {has}"),
        (Some(a), None) => format!("no messages after position {a}; {has}"),
        (None, Some(b)) => format!("no messages before position {b}; {has}"),
        (None, None) => has,
    }
}

fn watch(ctx: &Ctx) -> Result<()> {
    let mut c = ctx.client()?;
    // Messages name their peer: the discussions known now, and those that open while watching.
    let mut peers: std::collections::HashMap<String, String> = c
        .call(api::DiscussionsRequest {})?
        .into_iter()
        .map(|d| (d.id, d.peer_name))
        .collect();
    c.call(api::SubscribeRequest {})?;
    // On stderr: stdout carries only events. Also tells a script that the subscription is live.
    // Not `eprintln!`: a closed stderr must not panic (only stdout's reader ends the command).
    let _ = writeln!(
        std::io::stderr(),
        "watching {}'s core",
        ctx.settings.node.name
    );
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
        } else if let Event::Message { message } = &e {
            let peer = peers.get(&message.discussion_id).map(String::as_str);
            println!(
                "[{}] {}",
                safe_text::line(&message.discussion_id),
                crate::format::format_message(message, peer)
            );
        } else {
            if let Event::DiscussionOpened {
                discussion_id,
                peer_name,
                ..
            } = &e
            {
                peers.insert(discussion_id.clone(), peer_name.clone());
            }
            println!("{}", describe_event(&e));
        }
        crate::stdout::flush()?;
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
