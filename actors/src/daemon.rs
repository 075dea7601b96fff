//! The core as a running program: [`run`] owns the actix System, the node and the IPC server until a
//! shutdown future completes or a front-end asks the core to stop (mini-redis's
//! `server::run(listener, shutdown)`). `pgpchat daemon` calls it through [`claim`], which keeps the
//! start-up order a core must follow; tests call [`run`] directly, on a thread, with their own
//! shutdown. [`simulate`] runs the in-process measurement ([`crate::simulate`]) the same way, and
//! [`bench`] the benchmark ([`crate::bench`]), so the binary never builds an actix System itself.
//!
//! Start-up order (see `docs/security.md`, "One core per data directory"):
//! 1. [`claim`]: the identity file exists (reading its public part touches nothing), then the data
//!    directory's lock, before the passphrase is asked for: a second core stops here, having
//!    changed nothing;
//! 2. [`Claimed::unlock`]: the passphrase, if the key has one;
//! 3. the caller attaches its log file (only now: a core that cannot start leaves no file);
//! 4. [`Unlocked::run`]: store, discovery, listener, IPC socket; the lock is held until it returns.

use std::future::Future;
use std::time::Duration;

use thiserror::Error;

pub use crate::bench::{BenchError, BenchOptions, BenchReport, Stage as BenchStage};
use crate::crypto::SecretCert;
use crate::datadir_lock::{DataDirLock, LockError};
use crate::identity::{self, IdentityError};
use crate::ipc::IpcServer;
use crate::node::{start_node, NodeError};
use crate::settings::Settings;
pub use crate::simulate::{Report, SimulateError, SimulateOptions};

/// How long the core lingers after a front-end's `shutdown`, so the answer reaches its client
/// before the socket closes.
const SHUTDOWN_ANSWER_GRACE: Duration = Duration::from_millis(100);

/// Why a core could not start (or stopped). Each variant shows its cause's own message: the
/// binary prints the chain once.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// No identity, an unreadable one, or a wrong passphrase.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Another core holds the data directory, or its lock file cannot be opened.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The node or its IPC socket failed to start.
    #[error(transparent)]
    Node(#[from] NodeError),
}

impl DaemonError {
    /// Whether another core already runs on this data directory (the binary exits with its own
    /// status for it, which the prompt's autostart tells from a failure).
    pub fn is_already_running(&self) -> bool {
        matches!(self, DaemonError::Lock(LockError::Held { .. }))
    }

    /// The identity error behind this one, if any (the binary adds the `init` command to run).
    pub fn identity(&self) -> Option<&IdentityError> {
        match self {
            DaemonError::Identity(e) => Some(e),
            _ => None,
        }
    }
}

/// A data directory claimed for one core: it has an identity and this process holds its lock.
#[derive(Debug)]
pub struct Claimed {
    settings: Settings,
    lock: DataDirLock,
}

/// Step 1: check that the identity exists, then take the data directory's lock. Asks for nothing.
pub fn claim(settings: Settings) -> Result<Claimed, DaemonError> {
    let dir = &settings.node.data_dir;
    // Reading the public identity touches nothing, and says "no identity" before any lock file.
    identity::public(dir)?;
    let lock = DataDirLock::acquire(dir)?;
    Ok(Claimed { settings, lock })
}

impl Claimed {
    /// Whether [`Claimed::unlock`] needs a passphrase.
    pub fn needs_passphrase(&self) -> Result<bool, DaemonError> {
        Ok(identity::is_protected(&self.settings.node.data_dir)?)
    }

    /// Step 2: unlock the identity (the lock stays held).
    pub fn unlock(self, passphrase: Option<&str>) -> Result<Unlocked, DaemonError> {
        let identity = identity::load(&self.settings.node.data_dir, passphrase)?;
        Ok(Unlocked {
            settings: self.settings,
            identity,
            _lock: self.lock,
        })
    }
}

/// A claimed data directory with its identity unlocked: ready to run.
pub struct Unlocked {
    settings: Settings,
    identity: SecretCert,
    _lock: DataDirLock,
}

impl Unlocked {
    /// Step 4: [`run`] the core, holding the data directory's lock until it returns.
    pub fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
        run(self.settings, self.identity, shutdown)
    }
}

/// Run a core on this thread until `shutdown` completes or a front-end calls `shutdown`: start the
/// node in a new actix System, serve the IPC socket, then stop everything and remove the socket.
/// Takes no lock: the caller claims the data directory (see [`claim`]).
pub fn run(
    settings: Settings,
    identity: SecretCert,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let socket = settings.ipc_socket();
    let system = actix::System::new();
    let result = system.block_on(async move {
        let node = start_node(settings, identity).await?;
        let ipc = actix::Actor::start(IpcServer::bind(node.clone(), &socket)?);
        tokio::select! {
            _ = shutdown => {}
            _ = node.shutdown.notified() => {}
        }
        // Let the answer to `shutdown` reach its client.
        tokio::time::sleep(SHUTDOWN_ANSWER_GRACE).await;
        log::info!("[{}] shutting down", node.settings.node.name);
        // Stopping the IPC actor removes the socket.
        drop(ipc);
        actix::System::current().stop();
        Ok::<_, DaemonError>(socket)
    });
    let socket = result?;
    let _ = std::fs::remove_file(socket);
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM: the shutdown future of a core run from a terminal or a service
/// manager. Poll it only inside [`run`] (it needs the runtime).
pub async fn termination_signal() {
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

/// Run [`crate::simulate::run`] on this thread, in its own actix System.
pub fn simulate(opts: SimulateOptions) -> Result<Report, SimulateError> {
    actix::System::new().block_on(crate::simulate::run(opts))
}

/// Run [`crate::bench::run`] on this thread: the raw baselines, then the node figures in their own
/// actix System. `progress(stage, done, of)` is called on this thread.
pub fn bench(
    opts: BenchOptions,
    progress: &(dyn Fn(BenchStage, usize, usize) + Sync),
) -> Result<BenchReport, BenchError> {
    crate::bench::run(opts, progress)
}
