//! The core as a process: `pgpchat daemon` in the foreground, and starting it in the background for
//! the prompt (as gpg starts gpg-agent).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use pgpchat_actors::datadir_lock::{DataDirLock, LockError};
use pgpchat_actors::identity;
use pgpchat_actors::ipc::IpcServer;
use pgpchat_actors::node::start_node;

use crate::client::Client;
use crate::commands::Ctx;
use crate::secrets;

/// How long the prompt waits for a core it started to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Exit status of `pgpchat daemon` when another core holds the data directory's lock. The prompt's
/// autostart tells it from a failure: another prompt started the core at the same moment, so it
/// waits for that core's socket instead of giving up.
pub const EXIT_ALREADY_RUNNING: u8 = 3;

/// Whether `e` says that another core holds the data directory.
pub fn already_running(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<LockError>(), Some(LockError::Held { .. }))
}

fn unlock(
    ctx: &Ctx,
    passphrase_file: Option<PathBuf>,
) -> Result<pgpchat_actors::crypto::SecretCert> {
    let dir = &ctx.settings.node.data_dir;
    let pass = if identity::is_protected(dir)? {
        Some(secrets::obtain(
            passphrase_file.as_deref(),
            "PGPCHAT_PASSPHRASE",
            "Passphrase for your identity key",
            false,
        )?)
    } else {
        None
    };
    Ok(identity::load(dir, pass.as_deref())?)
}

pub fn run_daemon(ctx: &Ctx, passphrase_file: Option<PathBuf>) -> Result<()> {
    let dir = &ctx.settings.node.data_dir;
    // Reading the public identity touches nothing, and says "no identity" before any lock file.
    identity::public(dir)?;
    // Before the passphrase and before the store, discovery or the socket: a second core on this
    // directory stops here, with one line, having changed nothing. Held until the process ends.
    let _lock = DataDirLock::acquire(dir)?;
    let identity = unlock(ctx, passphrase_file)?;
    let settings = ctx.settings.clone();
    let socket = settings.ipc_socket();
    let system = actix::System::new();
    system.block_on(async move {
        let node = start_node(settings, identity).await?;
        let ipc = actix::Actor::start(IpcServer::bind(node.clone(), &socket)?);
        tokio::select! {
            _ = wait_for_signal() => {}
            _ = node.shutdown.notified() => {}
        }
        // Let the answer to `shutdown` reach its client.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        log::info!("[{}] shutting down", node.settings.node.name);
        // Stopping the IPC actor removes the socket.
        drop(ipc);
        actix::System::current().stop();
        Ok::<_, anyhow::Error>(())
    })?;
    let _ = std::fs::remove_file(ctx.settings.ipc_socket());
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Connect to the profile's core, starting `pgpchat daemon` in the background if none answers.
/// `passphrase` is asked for only when a core must be started and the key is protected.
pub fn ensure_core(ctx: &Ctx, ask_passphrase: impl FnOnce() -> Result<String>) -> Result<Client> {
    let socket = ctx.settings.ipc_socket();
    if let Ok(c) = Client::connect(&socket, ctx.start_hint()) {
        return Ok(c);
    }
    let dir = &ctx.settings.node.data_dir;
    let pass = if identity::is_protected(dir)? {
        let p = ask_passphrase()?;
        // Check it here, so a typo is reported now and not in a log file.
        identity::load(dir, Some(&p))?;
        Some(p)
    } else {
        None
    };
    let exe = std::env::current_exe().context("locating the pgpchat binary")?;
    let log_path = dir.join("daemon.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
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
        .stdout(log.try_clone()?)
        .stderr(log);
    {
        use std::os::unix::process::CommandExt;
        // Its own process group: Ctrl-C in the prompt does not stop the core.
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().context("starting pgpchat daemon")?;
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
            Some(status) if !other_core => bail!(
                "the core stopped at once ({status}); see {}",
                log_path.display()
            ),
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
