//! The raw baselines of `pgpchat bench`: what the node's work costs when nothing but that work runs,
//! on the caller's thread. Each is timed one operation at a time and summarised by its median, so a
//! scheduling hiccup moves it little. Blocking: call it before starting the nodes (or on a worker).

use std::time::Instant;

use rusqlite::Connection;

use super::{BenchError, Quantiles};
use crate::crypto::SecretCert;
use crate::handshake::{Requester, Responder};

/// Size of the plaintext of the raw crypto round trip (the pinned 200 B).
pub const RAW_MESSAGE_BYTES: usize = 200;

/// Time `op` `count` times, one call at a time.
fn timed(
    count: usize,
    mut op: impl FnMut() -> Result<(), BenchError>,
    mut tick: impl FnMut(usize),
) -> Result<Quantiles, BenchError> {
    let mut v = Vec::with_capacity(count);
    for i in 0..count {
        let t = Instant::now();
        op()?;
        v.push(t.elapsed());
        tick(i + 1);
    }
    Ok(Quantiles::of(v))
}

/// Sign+encrypt 200 B from `a` to `b`, then decrypt+verify it as `b` (unlocked v4 keys, one thread).
pub fn crypto_round_trip(count: usize, tick: impl FnMut(usize)) -> Result<Quantiles, BenchError> {
    let a = SecretCert::generate("bench a")?;
    let b = SecretCert::generate("bench b")?;
    let plaintext = vec![b'x'; RAW_MESSAGE_BYTES];
    timed(
        count,
        || {
            let sealed = a.sign_and_encrypt(b.public(), &plaintext)?;
            let opened = b.decrypt_and_verify(&sealed, a.public())?;
            debug_assert_eq!(opened, plaintext);
            Ok(())
        },
        tick,
    )
}

/// A one-row SQLite commit in WAL mode with `synchronous = FULL` (the store's own settings), in a
/// fresh database in `dir` (on the same file system as the nodes' stores), its log warmed up.
pub fn sqlite_commit(
    dir: &std::path::Path,
    count: usize,
    tick: impl FnMut(usize),
) -> Result<Quantiles, BenchError> {
    let conn = Connection::open(dir.join("bench-commit.sqlite"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")?;
    let row = vec![0u8; RAW_MESSAGE_BYTES];
    let mut insert = conn.prepare("INSERT INTO t (v) VALUES (?1)")?;
    // Warm up as a running node's store is: its write-ahead log already has its size, so a commit
    // overwrites frames instead of growing the file (growing costs a metadata journal commit per
    // fsync, several times the steady cost, and would make every ratio to it look good).
    for _ in 0..count {
        insert.execute([&row])?;
    }
    conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))?;
    timed(
        count,
        || {
            // Outside an explicit transaction each statement is its own transaction: one commit.
            insert.execute([&row])?;
            Ok(())
        },
        tick,
    )
}

/// One identity key (or discussion key) generation.
pub fn key_generation(count: usize, tick: impl FnMut(usize)) -> Result<Quantiles, BenchError> {
    timed(
        count,
        || {
            SecretCert::generate("bench key")?;
            Ok(())
        },
        tick,
    )
}

/// The whole SPAKE2 exchange of a handshake, both sides on this thread: request, accept (with
/// key confirmation), confirm. The keys are made once, outside the timing.
pub fn spake2_exchange(count: usize, tick: impl FnMut(usize)) -> Result<Quantiles, BenchError> {
    let (a, b) = (
        SecretCert::generate("bench a")?,
        SecretCert::generate("bench b")?,
    );
    let (ka, kb) = (
        SecretCert::generate("discussion")?,
        SecretCert::generate("discussion")?,
    );
    let secret = b"a secret shared out of band";
    timed(
        count,
        || {
            let (requester, request) =
                Requester::start(&a, "a", b.fingerprint(), ka.public(), secret, 0);
            let (responder, accept) =
                Responder::accept(&request, b.fingerprint(), kb.public(), secret)?;
            let (confirm, _) = requester.on_accept(&accept)?;
            responder.on_confirm(&confirm)?;
            Ok(())
        },
        tick,
    )
}
