//! "Destroyed" means gone from every file (issue 8, item 2): once a close completes, a discussion's
//! secret key, sealed or raw, is in no file of either data directory (`store.db`, its WAL and shm,
//! anything else), also when a core was killed in the middle of closing and started again.

use std::path::Path;
use std::time::Duration;

use pgpchat_actors::at_rest::{self, Sealed};
use pgpchat_actors::crypto::SecretCert;
use pgpchat_actors::identity;
use pgpchat_actors::store::Store;
use serde_json::Value;

use crate::binary::{wait_for, Person};
use crate::common::{contains, files_under, free_udp_port};

/// alice and bob with passphrase-protected identities, both cores running, alice seeing bob.
fn people() -> (Person, Person) {
    let port = free_udp_port();
    let mut a = Person::new("alice", port);
    let mut b = Person::new("bob", port);
    a.passphrase = Some("alice's passphrase for the audit".into());
    b.passphrase = Some("bob's passphrase for the audit".into());
    a.init();
    b.init();
    a.start();
    b.start();
    a.wait_sees(&b);
    (a, b)
}

fn history(p: &Person, id: &str) -> Vec<Value> {
    p.json(&["history", id, "--limit", "1000"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Messages both ways, all delivered: every one rewrote the discussion's row on both sides.
fn chat(a: &Person, b: &Person, id: &str, rounds: usize) {
    for i in 0..rounds {
        a.ok(&["send", id, &format!("from alice {i}")]);
        b.ok(&["send", id, &format!("from bob {i}")]);
    }
    for p in [a, b] {
        wait_for(60, "every message delivered", || {
            let h = history(p, id);
            h.len() == 2 * rounds
                && h.iter()
                    .filter(|m| m["direction"] == "out")
                    .all(|m| m["state"] == "delivered")
        });
    }
}

fn state_of(p: &Person, id: &str) -> String {
    p.json(&["discussions"])
        .as_array()
        .and_then(|all| all.iter().find(|d| d["id"] == id).cloned())
        .map(|d| d["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// What someone holding the data directory and the passphrase would search for: `p`'s sealed key
/// for discussion `id` as stored (whole, and its unique first bytes), and its raw secret parts.
fn key_bytes(p: &Person, id: &str) -> Vec<(String, Vec<u8>)> {
    let dir = p.data_dir();
    let sealed = Store::open(&dir.join("store.db"))
        .unwrap()
        .discussion(id)
        .unwrap()
        .own_key_sealed;
    assert!(!sealed.is_empty(), "{}'s key is there while open", p.name);
    let identity = identity::load(&dir, p.passphrase.as_deref()).unwrap();
    let plain = if at_rest::is_legacy(&sealed) {
        at_rest::open_legacy(&identity, &sealed).unwrap()
    } else {
        at_rest::open(&identity, Sealed::DiscussionKey, &sealed).unwrap()
    };
    let key = SecretCert::unlock(&plain, None).unwrap();
    let mut out = vec![
        (format!("{}'s sealed key", p.name), sealed.clone()),
        (
            format!("{}'s sealed key (first bytes after the magic)", p.name),
            sealed[at_rest::MAGIC.len()..at_rest::MAGIC.len() + 40].to_vec(),
        ),
    ];
    for (i, m) in key.secret_material_for_audit().into_iter().enumerate() {
        out.push((format!("{}'s raw discussion key, part {i}", p.name), m));
    }
    out
}

/// Every place in `dir`'s files where one of `needles` is.
fn copies(dir: &Path, needles: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut found = Vec::new();
    for f in files_under(dir) {
        let Ok(bytes) = std::fs::read(&f) else {
            continue; // the socket
        };
        for (what, needle) in needles {
            if contains(&bytes, needle) {
                found.push(format!("{what} in {}", f.display()));
            }
        }
    }
    found
}

fn assert_no_copy(p: &Person, needles: &[(String, Vec<u8>)], when: &str) {
    let found = copies(&p.data_dir(), needles);
    assert!(found.is_empty(), "{when}: {found:#?}");
}

#[test]
fn a_closed_discussion_leaves_no_copy_of_its_key_in_any_file() {
    let (mut a, mut b) = people();
    let id = a.open_with(&b, "a secret for the audit");
    chat(&a, &b, &id, 10);
    let mut needles = key_bytes(&a, &id);
    needles.extend(key_bytes(&b, &id));
    assert!(
        !copies(&a.data_dir(), &needles).is_empty(),
        "the search finds the key while the discussion is open"
    );
    a.ok(&["close", &id]);
    wait_for(60, "closed on both sides", || {
        state_of(&a, &id) == "closed" && state_of(&b, &id) == "closed"
    });
    // The cores still running, then killed as a thief would find them.
    for p in [&a, &b] {
        assert_no_copy(p, &needles, "after the close, cores running");
    }
    a.kill();
    b.kill();
    for p in [&a, &b] {
        assert_no_copy(p, &needles, "after the close, cores killed");
    }
}

#[test]
fn a_close_cut_short_by_sigkill_is_finished_at_the_next_start() {
    let (mut a, mut b) = people();

    // 1. The cores killed at a moment in the middle of closing (a different one each run), then
    //    started again: the close completes, and nothing of the key is left.
    let id = a.open_with(&b, "first secret");
    chat(&a, &b, &id, 5);
    let mut needles = key_bytes(&a, &id);
    needles.extend(key_bytes(&b, &id));
    let delay = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 300)
        .unwrap_or(0);
    eprintln!("killing both cores {delay} ms into the close");
    let mut close = a
        .cmd()
        .args(["close", &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(delay.into()));
    a.kill();
    b.kill();
    let _ = close.wait();
    a.start();
    b.start();
    if state_of(&a, &id) == "open" {
        a.ok(&["close", &id]); // the kill came before alice's core took the close
    }
    wait_for(60, "closed on both sides after the restart", || {
        state_of(&a, &id) == "closed" && state_of(&b, &id) == "closed"
    });
    for p in [&a, &b] {
        assert_no_copy(p, &needles, "after a close cut short and a restart");
    }

    // 2. The exact moment between the close's commit and its WAL checkpoint: the close transaction
    //    committed by a connection that never checkpoints (as a core killed right after it leaves
    //    the files), the key's old page images still in the WAL. The next start finishes.
    let second = a.open_with(&b, "second secret");
    chat(&a, &b, &second, 3);
    let needles = key_bytes(&a, &second);
    a.kill();
    b.kill();
    {
        let db = rusqlite::Connection::open(a.data_dir().join("store.db")).unwrap();
        db.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .unwrap();
        db.pragma_update(None, "secure_delete", "ON").unwrap();
        db.execute_batch(&format!(
            "BEGIN;
             UPDATE discussions SET state = 'closed' WHERE id = '{second}';
             DELETE FROM discussion_keys WHERE discussion_id = '{second}';
             COMMIT;"
        ))
        .unwrap();
    }
    assert!(
        !copies(&a.data_dir(), &needles).is_empty(),
        "the interrupted close left copies in the WAL"
    );
    a.start();
    assert_eq!(state_of(&a, &second), "closed");
    assert_no_copy(
        &a,
        &needles,
        "after an interrupted destruction and a restart",
    );
    a.kill();
    assert_no_copy(
        &a,
        &needles,
        "after an interrupted destruction, a restart and a kill",
    );
}
