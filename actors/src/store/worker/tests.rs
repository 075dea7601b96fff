//! Tests of the store worker's group commit: what a grouped write's caller is told is what the
//! store holds, whether the write shares a transaction with others or runs alone.

use std::time::{Duration, Instant};

use super::*;
use crate::store::tests::discussion;
use crate::store::{DeliveryState, StoreError};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn start() -> (tempfile::TempDir, StoreHandle) {
    let dir = tempfile::tempdir().unwrap();
    let h = StoreWorker::start(&dir.path().join("s.db"), &[7; 32]).unwrap();
    (dir, h)
}

/// Occupy the worker with a job until the returned sender is dropped (or sent to), so that the
/// writes queued meanwhile wait together and form one group.
async fn hold(h: &StoreHandle) -> std::sync::mpsc::Sender<()> {
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let (started, running) = oneshot::channel();
    let h2 = h.clone();
    tokio::spawn(async move {
        h2.run(move |_| {
            let _ = started.send(());
            let _ = wait.recv();
            Ok(())
        })
        .await
    });
    running.await.unwrap();
    release
}

/// Wait (deadline-based) until `n` jobs wait in the worker's queue.
async fn queued(h: &StoreHandle, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while STORE_QUEUE - h.0.capacity() < n {
        assert!(Instant::now() < deadline, "{n} jobs never queued");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn queue(
    h: &StoreHandle,
    body: &'static str,
) -> tokio::task::JoinHandle<Result<MessageRecord, StoreError>> {
    let h = h.clone();
    tokio::spawn(async move {
        h.write(Durability::Durable, move |w| {
            w.queue_outgoing("d", MessageKind::Text, body, 1)
        })
        .await
    })
}

/// A job that writes, then panics: told `Unavailable`, so nothing it wrote may stay.
fn queue_then_panic(
    h: &StoreHandle,
    body: &'static str,
) -> tokio::task::JoinHandle<Result<MessageRecord, StoreError>> {
    let h = h.clone();
    tokio::spawn(async move {
        h.write(Durability::Durable, move |w| {
            w.queue_outgoing("d", MessageKind::Text, body, 1)?;
            panic!("a job that fails after its write (expected by this test)")
        })
        .await
    })
}

/// A job of two writes whose second fails: told the error, so its first write may not stay.
fn queue_then_fail(
    h: &StoreHandle,
    body: &'static str,
) -> tokio::task::JoinHandle<Result<MessageRecord, StoreError>> {
    let h = h.clone();
    tokio::spawn(async move {
        h.write(Durability::Durable, move |w| {
            w.queue_outgoing("d", MessageKind::Text, body, 1)?;
            w.queue_outgoing("nowhere", MessageKind::Text, body, 1)
        })
        .await
    })
}

async fn outbox(h: &StoreHandle) -> Vec<(u64, String)> {
    h.run(|s| s.outbox_from("d", 0, 100))
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.record.seq, o.record.body))
        .collect()
}

async fn with_discussion(h: &StoreHandle) {
    h.run(|s| s.insert_discussion(&discussion("d")))
        .await
        .unwrap();
}

#[test]
fn a_grouped_write_that_panics_or_fails_leaves_nothing_and_the_others_are_kept() {
    runtime().block_on(async {
        let (_dir, h) = start();
        with_discussion(&h).await;
        let release = hold(&h).await;
        let first = queue(&h, "first");
        queued(&h, 1).await;
        let panics = queue_then_panic(&h, "panicked");
        queued(&h, 2).await;
        let fails = queue_then_fail(&h, "failed");
        queued(&h, 3).await;
        let last = queue(&h, "last");
        queued(&h, 4).await;
        drop(release);
        assert_eq!(first.await.unwrap().unwrap().seq, 1);
        assert!(matches!(
            panics.await.unwrap(),
            Err(StoreError::Unavailable)
        ));
        assert!(matches!(
            fails.await.unwrap(),
            Err(StoreError::NoDiscussion(_))
        ));
        assert_eq!(
            last.await.unwrap().unwrap().seq,
            2,
            "numbered after the kept one"
        );
        assert_eq!(
            outbox(&h).await,
            vec![(1, "first".to_string()), (2, "last".to_string())],
            "the store holds what the callers were told, nothing of the failed jobs"
        );
    });
}

#[test]
fn a_write_alone_that_panics_or_fails_leaves_nothing() {
    runtime().block_on(async {
        let (_dir, h) = start();
        with_discussion(&h).await;
        assert!(matches!(
            queue_then_panic(&h, "panicked").await.unwrap(),
            Err(StoreError::Unavailable)
        ));
        assert!(matches!(
            queue_then_fail(&h, "failed").await.unwrap(),
            Err(StoreError::NoDiscussion(_))
        ));
        assert_eq!(outbox(&h).await, vec![], "nothing of the failed jobs");
        let kept = queue(&h, "kept").await.unwrap().unwrap();
        assert_eq!((kept.seq, kept.state), (1, DeliveryState::Stored));
    });
}

/// The durability a write needs is the store method's, not its caller's: a message queued by a
/// job that asked for a relaxed write, in a group of relaxed writes only (which commits without
/// the fsync), is refused with its reason and leaves nothing, instead of being answered "stored"
/// before it is on disk; the relaxed write next to it is kept.
#[test]
fn a_durable_write_asked_for_as_relaxed_is_refused_not_made_relaxed() {
    runtime().block_on(async {
        let (_dir, h) = start();
        with_discussion(&h).await;
        h.write(Durability::Durable, move |w| {
            w.queue_outgoing("d", MessageKind::Text, "one", 1)
        })
        .await
        .unwrap();
        let relaxed = |h: &StoreHandle, body: Option<&'static str>| {
            let h = h.clone();
            tokio::spawn(async move {
                h.write(Durability::Relaxed, move |w| match body {
                    Some(body) => Ok(vec![w.queue_outgoing("d", MessageKind::Text, body, 1)?.seq]),
                    None => w.mark_sent_all("d", &[1]),
                })
                .await
            })
        };
        let release = hold(&h).await;
        let marks = relaxed(&h, None);
        queued(&h, 1).await;
        let grouped = relaxed(&h, Some("two"));
        queued(&h, 2).await;
        drop(release);
        assert_eq!(marks.await.unwrap().unwrap(), vec![1]);
        assert!(matches!(
            grouped.await.unwrap(),
            Err(StoreError::NotDurable)
        ));
        assert!(matches!(
            relaxed(&h, Some("alone")).await.unwrap(),
            Err(StoreError::NotDurable)
        ));
        assert_eq!(outbox(&h).await, vec![(1, "one".to_string())]);
        let sync: i64 = h
            .run(|s| Ok(s.conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(sync, 2, "FULL after the relaxed groups");
    });
}

/// A full disk makes SQLite roll back the whole transaction, not just the failing statement: the
/// writes of the group before it are undone, and the ones after it must not run outside any
/// transaction (each committed on its own while its caller is told the group failed). Every
/// caller is told it failed, and the store holds none of them.
#[test]
fn a_full_disk_in_a_group_fails_every_write_of_it_and_leaves_none() {
    runtime().block_on(async {
        let (_dir, h) = start();
        with_discussion(&h).await;
        let room = |extra: i64| {
            h.run(move |s| {
                let n: i64 = s.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                s.conn
                    .query_row(&format!("PRAGMA max_page_count = {}", n + extra), [], |_| {
                        Ok(())
                    })?;
                Ok(())
            })
        };
        room(8).await.unwrap();
        let sized = |h: &StoreHandle, n: usize| {
            let h = h.clone();
            tokio::spawn(async move {
                h.write(Durability::Durable, move |w| {
                    w.queue_outgoing("d", MessageKind::Text, &"x".repeat(n), 1)
                })
                .await
            })
        };
        let release = hold(&h).await;
        let before = sized(&h, 8000);
        queued(&h, 1).await;
        let too_big = sized(&h, 60000);
        queued(&h, 2).await;
        let after = sized(&h, 8000);
        queued(&h, 3).await;
        drop(release);
        let (before, too_big, after) = (
            before.await.unwrap(),
            too_big.await.unwrap(),
            after.await.unwrap(),
        );
        assert!(
            matches!(&too_big, Err(StoreError::Sqlite(e)) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)),
            "{too_big:?}"
        );
        assert!(matches!(before, Err(StoreError::Commit(_))), "{before:?}");
        assert!(matches!(after, Err(StoreError::Commit(_))), "{after:?}");
        let left: Vec<(u64, usize)> = outbox(&h).await.iter().map(|(s, b)| (*s, b.len())).collect();
        assert_eq!(left, vec![], "nothing the callers were told failed");
        room(1000).await.unwrap();
        let next = sized(&h, 10).await.unwrap().unwrap();
        assert_eq!(next.seq, 1, "the numbering went on from what is stored");
    });
}

/// A job that panics inside a relaxed write (`synchronous = NORMAL` for its commit) must not
/// leave the store relaxed: the next durable write is fully synchronous again.
#[test]
fn a_job_that_panics_inside_a_relaxed_write_leaves_the_store_fully_synchronous() {
    runtime().block_on(async {
        let (_dir, h) = start();
        with_discussion(&h).await;
        let panicked = h
            .run(|s| {
                s.relaxed(|_| -> Result<(), StoreError> {
                    panic!("a relaxed write that panics (expected by this test)")
                })
            })
            .await;
        assert!(matches!(panicked, Err(StoreError::Unavailable)));
        let sync = h
            .run(|s| {
                s.queue_outgoing("d", "durable", 1)?;
                Ok(s.conn
                    .query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?)
            })
            .await
            .unwrap();
        assert_eq!(sync, 2, "FULL for the message queued after it");
    });
}

/// Jobs run in the order they were queued, groups or not: a `run` job queued behind more writes
/// than one group takes sees exactly the writes queued before it, none of those after it (it is
/// neither starved by later writes nor run before earlier ones).
#[test]
fn a_run_job_queued_behind_writes_runs_after_them_and_before_later_ones() {
    runtime().block_on(async {
        let (_dir, h) = start();
        with_discussion(&h).await;
        let before = MAX_GROUP + 44;
        let release = hold(&h).await;
        let mut writes = Vec::new();
        for i in 0..before {
            writes.push(queue(&h, "before"));
            queued(&h, i + 1).await;
        }
        let read = {
            let h = h.clone();
            tokio::spawn(async move { h.run(|s| s.last_out_seq("d")).await })
        };
        queued(&h, before + 1).await;
        for i in 0..10 {
            writes.push(queue(&h, "after"));
            queued(&h, before + 2 + i).await;
        }
        drop(release);
        assert_eq!(read.await.unwrap().unwrap(), before as u64);
        for (i, w) in writes.into_iter().enumerate() {
            assert_eq!(
                w.await.unwrap().unwrap().seq,
                i as u64 + 1,
                "in queue order"
            );
        }
    });
}

/// The worker ends when its last handle is dropped, and not before the jobs already queued are
/// answered: a write queued just before the last handle went is stored and answered; then the
/// thread ends and closes the database (SQLite removes the WAL file on the last close).
#[test]
fn the_worker_answers_what_was_queued_then_ends_with_its_last_handle() {
    runtime().block_on(async {
        let (dir, h) = start();
        with_discussion(&h).await;
        let release = hold(&h).await;
        let last = queue(&h, "last words");
        queued(&h, 1).await;
        drop(h);
        drop(release);
        assert_eq!(last.await.unwrap().unwrap().seq, 1);
        let wal = dir.path().join("s.db-wal");
        let deadline = Instant::now() + Duration::from_secs(20);
        while wal.exists() {
            assert!(Instant::now() < deadline, "the store thread never ended");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let s = Store::open_with_key(&dir.path().join("s.db"), Some(&[7; 32])).unwrap();
        let bodies: Vec<String> = s
            .outbox_from("d", 0, 10)
            .unwrap()
            .into_iter()
            .map(|o| o.record.body)
            .collect();
        assert_eq!(bodies, ["last words"]);
    });
}
