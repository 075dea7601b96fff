//! Data directories made before issue 8 (committed fixture `tests/fixtures/pre-issue8`, made by the
//! binary of that time) are converted on the first start of this version: `storage.key` and the
//! discussion keys at rest to the [`at_rest`] format, the discussion keys to their own table, no
//! copy of an old blob left in any file. History stays readable and the discussion usable, and a
//! second start finds nothing more to do.

use std::path::{Path, PathBuf};

use pgpchat_actors::at_rest;
use serde_json::Value;

use crate::binary::{wait_for, Person};
use crate::common::free_udp_port;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pre-issue8")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A person whose data directory is a copy of the fixture's `name`.
fn from_fixture(name: &str, port: u16) -> Person {
    let mut p = Person::new(name, port);
    copy_dir(&fixture().join(name), &p.data_dir());
    let pass = std::fs::read_to_string(fixture().join(format!("{name}.passphrase"))).unwrap();
    p.passphrase = Some(pass);
    p
}

/// The sealed blobs of the old format in the fixture's `name`: its storage.key and its discussion
/// keys (read from a scratch copy, since opening a database may checkpoint it).
fn old_blobs(name: &str) -> Vec<(String, Vec<u8>)> {
    let scratch = tempfile::tempdir().unwrap();
    copy_dir(&fixture().join(name), scratch.path());
    let mut out = vec![(
        format!("{name}'s old storage.key"),
        std::fs::read(scratch.path().join("storage.key")).unwrap(),
    )];
    let db = rusqlite::Connection::open(scratch.path().join("store.db")).unwrap();
    let mut st = db
        .prepare("SELECT own_key_sealed FROM discussions WHERE length(own_key_sealed) > 0")
        .unwrap();
    let keys: Vec<Vec<u8>> = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!keys.is_empty(), "the fixture has a discussion key at rest");
    for k in keys {
        assert!(at_rest::is_legacy(&k));
        out.push((format!("{name}'s old sealed discussion key"), k));
    }
    out
}

fn history(p: &Person, id: &str) -> Vec<Value> {
    p.json(&["history", id])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn bodies(p: &Person, id: &str) -> Vec<String> {
    history(p, id)
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect()
}

fn assert_no_old_blob(p: &Person, blobs: &[(String, Vec<u8>)]) {
    for e in std::fs::read_dir(p.data_dir()).unwrap().flatten() {
        let Ok(bytes) = std::fs::read(e.path()) else {
            continue;
        };
        for (what, blob) in blobs {
            assert!(
                !bytes.windows(blob.len()).any(|w| w == &blob[..]),
                "{what} still in {}",
                e.path().display()
            );
        }
    }
}

#[test]
fn a_data_directory_from_before_issue_8_is_converted() {
    const ID: &str = "7c3ec54269818ca7abcb947b688d6b12";
    const BEFORE: [&str; 3] = [
        "hello bob, from before the conversion",
        "hi alice, also from before",
        "third message",
    ];
    let port = free_udp_port();
    let mut a = from_fixture("alice", port);
    let mut b = from_fixture("bob", port);
    let old = [old_blobs("alice"), old_blobs("bob")];
    a.start();
    b.start();

    for (p, old) in [(&a, &old[0]), (&b, &old[1])] {
        let sk = std::fs::read(p.data_dir().join("storage.key")).unwrap();
        assert!(
            sk.starts_with(at_rest::MAGIC),
            "{}'s storage.key converted",
            p.name
        );
        let mut got = bodies(p, ID);
        got.sort();
        let mut want = BEFORE.map(String::from).to_vec();
        want.sort();
        assert_eq!(got, want, "{}'s history is readable", p.name);
        assert_no_old_blob(p, old);
    }
    assert!(a.log().contains("discussion keys converted"), "{}", a.log());

    // The discussion still works: its keys open, and a message goes through both ways.
    a.ok(&["send", ID, "after the conversion"]);
    b.ok(&["send", ID, "received, after the conversion"]);
    for p in [&a, &b] {
        wait_for(60, "the new messages delivered", || {
            let h = history(p, ID);
            h.len() == 5
                && h.iter()
                    .filter(|m| m["direction"] == "out")
                    .all(|m| m["state"] == "delivered")
        });
    }

    // A second start (after a SIGKILL) has nothing left to convert and reads everything.
    a.kill();
    let log_len = a.log().len();
    a.start();
    assert!(!a.log()[log_len..].contains("converted"), "{}", a.log());
    assert_eq!(history(&a, ID).len(), 5);
    a.ok(&["send", ID, "after the second start"]);
    wait_for(60, "delivered after the second start", || {
        history(&b, ID).len() == 6
    });
    a.kill();
    b.kill();
    assert_no_old_blob(&a, &old[0]);
    assert_no_old_blob(&b, &old[1]);
}
