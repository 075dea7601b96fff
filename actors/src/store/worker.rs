//! [`StoreWorker`]: the thread that owns the node's [`Store`], so that no SQLite call ever runs on
//! an event loop, and that commits writes queued together in one transaction (group commit).
//!
//! Role: runs store jobs one at a time on its own thread (SQLite writes are serialised anyway, and
//! one connection keeps transactions simple). Two kinds of job:
//! - [`StoreHandle::run`]: a closure over `&mut Store`, alone, in whatever transactions it makes;
//! - [`StoreHandle::write`]: one of the hot path's writes ([`GroupedWrites`]: a message queued,
//!   messages received, messages marked sent). The worker takes every such write already waiting
//!   (at most [`MAX_GROUP`]) and runs them in **one** transaction, each job in its own savepoint
//!   (a job is all or nothing: one that fails or panics is rolled back whole, what it wrote before
//!   included, and leaves the others alone), with one commit and so one fsync; each caller is
//!   answered only once that commit returned, so a write reported done is on disk exactly as
//!   before, and one reported failed left nothing. Should a write's error make SQLite roll back
//!   the whole transaction (a full disk, an I/O error), every write of the group is told it failed
//!   and the ones after it do not run. A write waiting alone runs the same way (a group of one). A group with no durable write commits without the fsync ([`Store::relaxed`]).
//!
//! Peers: every actor that reads or writes the store, through a [`StoreHandle`]. Lifecycle:
//! started by the node builder once the store opened (migrated, [`Store::open_with_key`]); the
//! thread ends, closing the connection, when the last handle is dropped (the node's actors stop
//! with their System). A job that panics costs that job (its caller sees
//! [`StoreError::Unavailable`]; a grouped one's writes are undone), not the worker.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::rows::{Incoming, MessageKind, MessageRecord};
use super::sealing::STORAGE_KEY_BYTES;
use super::{Store, StoreError};

/// Jobs waiting for the worker, per node: callers wait (asynchronously) beyond it.
pub const STORE_QUEUE: usize = 1024;

/// At most this many writes share one transaction.
pub const MAX_GROUP: usize = 256;

/// What answers a grouped write's caller, given how its group's commit went.
type Reply = Box<dyn FnOnce(Result<(), Arc<rusqlite::Error>>) + Send>;

/// Runs a grouped job's writes; returns its reply and whether the job succeeded.
type RunJob = Box<dyn FnOnce(&mut GroupedWrites<'_>) -> (Reply, bool) + Send>;

enum Job {
    Alone(Box<dyn FnOnce(&mut Store) + Send>),
    Grouped { durable: bool, run: RunJob },
}

/// Whether a grouped write must be on disk when it is answered (`Durable`), or may be lost with
/// a power cut ([`Store::relaxed`]: the `sent` marks). A group commits with the fsync if one of its
/// jobs asked for it; a job that asked for `Relaxed` but makes a durable write (a message queued or
/// received) fails with [`StoreError::NotDurable`] and leaves nothing, never made relaxed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    Durable,
    Relaxed,
}

pub struct StoreWorker;

impl StoreWorker {
    /// Open the database (a bad path, or a store newer than this code, fails here with the reason)
    /// and start its worker thread.
    pub fn start(
        store_path: &Path,
        key: &[u8; STORAGE_KEY_BYTES],
    ) -> Result<StoreHandle, StoreError> {
        let store = Store::open_with_key(store_path, Some(key))?;
        let (tx, rx) = mpsc::channel(STORE_QUEUE);
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || work(store, rx))
            .map_err(|_| StoreError::Unavailable)?;
        Ok(StoreHandle(tx))
    }
}

fn work(mut store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut next: Option<Job> = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => match rx.blocking_recv() {
                Some(job) => job,
                None => return, // every handle dropped: the node stopped
            },
        };
        match job {
            Job::Alone(f) => {
                let _ = catch_unwind(AssertUnwindSafe(|| f(&mut store)));
            }
            first @ Job::Grouped { .. } => {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(job @ Job::Grouped { .. }) => group.push(job),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                run_group(&mut store, group);
            }
        }
    }
}

/// Run grouped writes in one transaction, each job in its own savepoint, then answer each with the
/// commit's outcome. A job is all or nothing: one that fails or panics is rolled back whole (what
/// it wrote before its error or panic included), and the others are kept. Should the transaction
/// not start, each job tries its own (and, without one either, runs as [`StoreHandle::run`]
/// would).
fn run_group(store: &mut Store, group: Vec<Job>) {
    let durable = group
        .iter()
        .any(|j| matches!(j, Job::Grouped { durable: true, .. }));
    if store.begin_group(durable).is_ok() {
        let mut replies = Vec::with_capacity(group.len());
        let mut broken = None;
        for job in group {
            let (reply, undone) = run_job(store, job, true);
            replies.extend(reply);
            if let Err(e) = undone {
                broken.get_or_insert(e);
            }
        }
        let outcome = store.end_group(durable, broken).map_err(Arc::new);
        for reply in replies {
            reply(outcome.clone());
        }
        return;
    }
    for job in group {
        let own =
            matches!(&job, Job::Grouped { durable, .. } if store.begin_group(*durable).is_ok());
        let sync = matches!(job, Job::Grouped { durable: true, .. });
        let (reply, undone) = run_job(store, job, own);
        let outcome = if own {
            store.end_group(sync, undone.err()).map_err(Arc::new)
        } else {
            Ok(())
        };
        if let Some(reply) = reply {
            reply(outcome);
        }
    }
}

/// Run one grouped job (inside the group transaction when `in_group`: in a savepoint of its own,
/// released if it succeeded, rolled back if it failed or panicked). Returns its reply (none if it
/// panicked: its caller sees the worker gone), and an error if a failed job's writes could not be
/// undone (the whole transaction must then be).
fn run_job(
    store: &mut Store,
    job: Job,
    in_group: bool,
) -> (Option<Reply>, Result<(), rusqlite::Error>) {
    let Job::Grouped { run, .. } = job else {
        return (None, Ok(()));
    };
    let lost_before = store.group_lost();
    let savepoint = in_group && !lost_before && store.begin_job().is_ok();
    let mut w = GroupedWrites(store);
    let (reply, keep) = match catch_unwind(AssertUnwindSafe(|| run(&mut w))) {
        Ok((reply, ok)) => (Some(reply), ok),
        Err(_) => {
            log::error!("store: a write panicked");
            (None, false)
        }
    };
    let undone = if store.group_lost() && !lost_before {
        // This job's error rolled the whole transaction back: the writes before it are gone too.
        Err(super::group_rolled_back())
    } else if savepoint {
        store.end_job(keep)
    } else {
        Ok(())
    };
    (reply, undone)
}

/// The writes that may share a transaction with others: each is one of [`Store`]'s, made inside
/// a savepoint of the worker's group transaction (see [`Store::begin_group`]).
pub struct GroupedWrites<'a>(&'a mut Store);

impl GroupedWrites<'_> {
    /// [`Store::queue_outgoing_kind`].
    pub fn queue_outgoing(
        &mut self,
        discussion_id: &str,
        kind: MessageKind,
        body: &str,
        time: u64,
    ) -> Result<MessageRecord, StoreError> {
        self.0.queue_outgoing_kind(discussion_id, kind, body, time)
    }

    /// [`Store::store_incoming_run`].
    pub fn store_incoming_run(
        &mut self,
        discussion_id: &str,
        messages: &[(MessageKind, u64, u64, String)],
    ) -> Result<(Vec<Incoming>, u64), StoreError> {
        self.0.store_incoming_run(discussion_id, messages)
    }

    /// [`Store::mark_sent_all`].
    pub fn mark_sent_all(
        &mut self,
        discussion_id: &str,
        seqs: &[u64],
    ) -> Result<Vec<u64>, StoreError> {
        self.0.mark_sent_all(discussion_id, seqs)
    }
}

/// A cheap handle to the store worker.
#[derive(Clone)]
pub struct StoreHandle(mpsc::Sender<Job>);

impl StoreHandle {
    /// Run `f` alone on the worker thread.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job = Job::Alone(Box::new(move |store: &mut Store| {
            let _ = tx.send(f(store));
        }));
        self.0
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable)?;
        rx.await.map_err(|_| StoreError::Unavailable)?
    }

    /// Run one of the hot path's writes, possibly in one transaction with others waiting; answered
    /// once that transaction committed (with `Durability::Durable`, once it is on disk).
    pub async fn write<R: Send + 'static>(
        &self,
        sync: Durability,
        f: impl FnOnce(&mut GroupedWrites<'_>) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job = Job::Grouped {
            durable: sync == Durability::Durable,
            run: Box::new(move |w: &mut GroupedWrites<'_>| {
                let result = f(w);
                let ok = result.is_ok();
                let reply = Box::new(move |commit: Result<(), Arc<rusqlite::Error>>| {
                    let _ = tx.send(match (result, commit) {
                        (Ok(r), Ok(())) => Ok(r),
                        (Err(e), _) => Err(e),
                        (Ok(_), Err(e)) => Err(StoreError::Commit(e)),
                    });
                }) as Reply;
                (reply, ok)
            }),
        };
        self.0
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable)?;
        rx.await.map_err(|_| StoreError::Unavailable)?
    }
}

#[cfg(test)]
mod tests;
