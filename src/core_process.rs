//! The core as a process: `pgpchat daemon` in the foreground, and starting it in the background for
//! the prompt (as gpg starts gpg-agent).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use pgpchat_actors::daemon;
use pgpchat_actors::offline;

use crate::client::Client;
use crate::ctx::Ctx;
use crate::secrets;

/// How long the prompt waits for a core it started to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Exit status of `pgpchat daemon` when another core holds the data directory's lock. The prompt's
/// autostart tells it from a failure: another prompt started the core at the same moment, so it
/// waits for that core's socket instead of giving up.
pub const EXIT_ALREADY_RUNNING: u8 = crate::exit::ALREADY_RUNNING;

/// `pgpchat daemon`: run the core in the foreground until a signal or a front-end stops it.
pub fn run_daemon(ctx: &Ctx, passphrase_file: Option<PathBuf>) -> Result<()> {
    // A background core has no stderr: a panic or the reason it stops must reach its log file
    // (stderr gets them from the default hook and from `main`).
    let node = ctx.settings.node.name.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        crate::log_file::to_file_only(&format!("{} ERROR [{node}] {info}", now()));
        default_hook(info);
    }));
    let result = serve(ctx, passphrase_file);
    if let Err(e) = &result {
        crate::log_file::to_file_only(&format!(
            "{} ERROR [{}] the core stops: {e:#}",
            now(),
            ctx.settings.node.name
        ));
    }
    result
}

fn now() -> String {
    crate::format::time(crate::format::now_secs())
}

fn serve(ctx: &Ctx, passphrase_file: Option<PathBuf>) -> Result<()> {
    // The library keeps the order: identity present, then the lock (a second core on this
    // directory stops here, with one line, having changed nothing), then the passphrase.
    let claimed = daemon::claim(ctx.settings.clone())?;
    let pass = if claimed.needs_passphrase()? {
        Some(secrets::obtain(
            passphrase_file.as_deref(),
            "PGPCHAT_PASSPHRASE",
            "Passphrase for your identity key",
            false,
        )?)
    } else {
        None
    };
    let core = claimed.unlock(pass.as_deref())?;
    // Only now: a core that cannot start (no identity, wrong passphrase) touches nothing.
    crate::log_file::attach_core_log_file(&ctx.settings);
    core.run(daemon::termination_signal())?;
    Ok(())
}

/// Connect to the profile's core, starting `pgpchat daemon` in the background if none answers.
/// `passphrase` is asked for only when a core must be started and the key is protected.
pub fn ensure_core(ctx: &Ctx, ask_passphrase: impl FnOnce() -> Result<String>) -> Result<Client> {
    let socket = ctx.settings.ipc_socket();
    if let Ok(c) = Client::connect(&socket, ctx.start_hint()) {
        return Ok(c);
    }
    let dir = &ctx.settings.node.data_dir;
    let pass = if offline::is_protected(dir)? {
        let p = ask_passphrase()?;
        // Check it here, so a typo is reported now and not in a log file.
        offline::check_passphrase(dir, &p)?;
        Some(p)
    } else {
        None
    };
    let exe = std::env::current_exe().context("locating the pgpchat binary")?;
    // The core writes (and rotates) this file itself; nothing else of it is kept, so nothing grows
    // without bound behind its back.
    let log_path = dir.join(crate::log_file::LOG_FILE_NAME);
    let mut cmd = Command::new(exe);
    if let Some(p) = &ctx.profile {
        cmd.arg("--profile").arg(p);
    }
    if let Some(c) = &ctx.config {
        cmd.arg("--config").arg(c);
    }
    cmd.arg("--data-dir").arg(dir);
    cmd.arg("daemon").arg("--passphrase-file").arg("-");
    cmd.env_remove("PGPCHAT_PASSPHRASE");
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    {
        use std::os::unix::process::CommandExt;
        // Its own process group: Ctrl-C in the prompt does not stop the core.
        cmd.process_group(0);
    }
    let mut child = spawn_unmasked(&mut cmd).context("starting pgpchat daemon")?;
    let mut stderr = child.stderr.take().map(drain_stderr);
    if let Some(mut stdin) = child.stdin.take() {
        // A core that found the directory locked may have exited before reading it (EPIPE): its
        // exit status, checked below, says what happened.
        let _ = writeln!(stdin, "{}", pass.as_deref().unwrap_or(""));
    }
    let start = Instant::now();
    let mut other_core = false;
    loop {
        if let Ok(c) = Client::connect(&socket, ctx.start_hint()) {
            return Ok(c);
        }
        match child.try_wait()? {
            // Another prompt started a core on this directory at the same moment: wait for it.
            Some(status) if status.code() == Some(i32::from(EXIT_ALREADY_RUNNING)) => {
                other_core = true;
            }
            Some(status) if !other_core => {
                // A core that stops before it opens its log says why on stderr, in one line.
                let said = stderr
                    .take()
                    .and_then(|t| t.join().ok())
                    .and_then(|tail| {
                        tail.lines()
                            .rev()
                            .find(|l| !l.trim().is_empty())
                            .map(str::to_string)
                    })
                    .unwrap_or_default();
                bail!(
                    "the core stopped at once ({status}){}{}; see {}",
                    if said.is_empty() { "" } else { ": " },
                    said.trim_start_matches("pgpchat: "),
                    log_path.display()
                );
            }
            _ => {}
        }
        if start.elapsed() > START_TIMEOUT {
            return Err(anyhow!(
                "the core did not answer within {}s; see {}",
                START_TIMEOUT.as_secs(),
                log_path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Start `cmd` with no signal blocked. A child inherits the signal mask of the thread that starts
/// it, and the prompt's threads block the signals that end it (`prompt/interrupt.rs`): a core
/// started with SIGTERM blocked would not stop on it. So it is started from a thread of its own,
/// whose mask is cleared first.
fn spawn_unmasked(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sys::signal::SigSet::empty()
                .thread_set_mask()
                .map_err(std::io::Error::from)?;
            cmd.spawn()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(std::io::Error::other(
                "the thread starting the core panicked",
            ))
        })
    })
}

/// The last bytes the core writes to stderr before it stops (a core that runs on discards the rest;
/// its log lines are in its file). The thread ends with the core, or with the prompt.
fn drain_stderr(mut err: std::process::ChildStderr) -> std::thread::JoinHandle<String> {
    /// Enough for the one line a core says when it cannot start.
    const TAIL_BYTES: usize = 2048;
    std::thread::spawn(move || {
        use std::io::Read;
        let mut tail = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = err.read(&mut buf) {
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > TAIL_BYTES {
                tail.drain(..tail.len() - TAIL_BYTES);
            }
        }
        String::from_utf8_lossy(&tail).into_owned()
    })
}
