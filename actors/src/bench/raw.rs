//! The raw baselines of `pgpchat bench`: what the node's work costs when nothing but that work runs,
//! on the caller's thread. Each is timed one operation at a time and summarised by its median, so a
//! scheduling hiccup moves it little. Blocking: call it before starting the nodes (or on a worker).

use std::time::Instant;

use rusqlite::Connection;

use super::{BenchError, Quantiles};
use crate::crypto::SecretCert;
use crate::handshake::{Requester, Responder};

/// Size of the plaintext of the raw crypto round trip (the issue's pinned 200 B).
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

/// `gpg` as a user would run it once per message: a process that signs and encrypts 200 B to the
/// peer, then one that decrypts and verifies it (a throwaway `GNUPGHOME` under `dir` with two keys
/// made by this code, unprotected; its agent stopped at the end). `None` when `count` is 0 or `gpg`
/// is not installed.
pub fn gpg_round_trip(
    dir: &std::path::Path,
    count: usize,
    tick: impl FnMut(usize),
) -> Result<Option<Quantiles>, BenchError> {
    use std::process::{Command, Stdio};
    if count == 0
        || Command::new("gpg")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_or(true, |s| !s.success())
    {
        return Ok(None);
    }
    let home = dir.join("gnupg");
    std::fs::create_dir_all(&home)?;
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let gpg = |what: &'static str, args: &[&str], input: &[u8]| -> Result<Vec<u8>, BenchError> {
        let mut child = Command::new("gpg")
            .arg("--homedir")
            .arg(&home)
            .args([
                "--batch",
                "--no-tty",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(["--trust-model", "always"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        std::io::Write::write_all(child.stdin.as_mut().expect("piped stdin"), input)?;
        drop(child.stdin.take());
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(BenchError::Gpg {
                what,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(out.stdout)
    };
    let a = SecretCert::generate("bench gpg a")?;
    let b = SecretCert::generate("bench gpg b")?;
    for k in [&a, &b] {
        gpg(
            "--import",
            &["--import"],
            k.to_protected_armored(None)?.as_bytes(),
        )?;
    }
    let (from, to) = (a.fingerprint().to_string(), b.fingerprint().to_string());
    let plaintext = vec![b'x'; RAW_MESSAGE_BYTES];
    let result = timed(
        count,
        || {
            let sealed = gpg(
                "--sign --encrypt",
                &["-u", &from, "-r", &to, "--sign", "--encrypt"],
                &plaintext,
            )?;
            let opened = gpg("--decrypt", &["--decrypt"], &sealed)?;
            debug_assert_eq!(opened, plaintext);
            Ok(())
        },
        tick,
    );
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(&home)
        .args(["--kill", "gpg-agent"])
        .status();
    result.map(Some)
}
