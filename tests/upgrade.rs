//! Data directories made by older versions (committed fixtures made by the binary of their time)
//! open with this one.
//!
//! Before issue 8 (`tests/fixtures/pre-issue8`): converted on the first start, `storage.key` and
//! the discussion keys at rest to the [`at_rest`] format, the discussion keys to their own table,
//! no copy of an old blob left in any file. History stays readable and the discussion usable, and
//! a second start finds nothing more to do.
//!
//! Before issue 9 (`tests/fixtures/pre-issue9`, no schema version): migrated to
//! [`SCHEMA_VERSION`], every contact, discussion and message as it was. A store newer than this
//! code is refused, changing nothing.

use std::path::{Path, PathBuf};

use pgpchat_actors::at_rest;
use pgpchat_actors::store::SCHEMA_VERSION;
use serde_json::{json, Value};

use crate::binary::{wait_for, Person};
use crate::common::free_udp_port;

/// A committed fixture: `tests/fixtures/pre-issue8`, `tests/fixtures/pre-issue9`.
fn fixture_of(set: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(set)
}

fn fixture() -> PathBuf {
    fixture_of("pre-issue8")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A person whose data directory is a copy of the fixture's `name`.
fn from_fixture(name: &str, port: u16) -> Person {
    from_fixture_of("pre-issue8", name, port)
}

/// A person whose data directory is a copy of `name` in the fixture `set`.
fn from_fixture_of(set: &str, name: &str, port: u16) -> Person {
    let mut p = Person::new(name, port);
    copy_dir(&fixture_of(set).join(name), &p.data_dir());
    let pass = std::fs::read_to_string(fixture_of(set).join(format!("{name}.passphrase"))).unwrap();
    p.passphrase = Some(pass);
    p
}

/// The schema version recorded in a data directory's store (read without migrating it).
fn schema_version(dir: &Path) -> u32 {
    rusqlite::Connection::open(dir.join("store.db"))
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
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

/// The fixture's people and discussions (see `tests/fixtures/pre-issue9/README.md`).
const ALICE_FP: &str = "53A3CF7AFC6DEACD4FCB86AA3EFA5E157CB1C8E7";
const BOB_FP: &str = "9E9CAF43F9B9435D739E63602AC9F3AF57AD101C";
const CAROL_FP: &str = "7B0AC9C63C303895B37335388D7BA6922D5F50EB";
/// alice → bob, closed.
const CLOSED: &str = "a4fbbc6336241e576a75263a781fbb5f";
/// carol → alice, open.
const OPEN: &str = "d0d9b1421140be716a67a2d7419c3f43";

/// `[fingerprint, name, verified, key_changed]` of each contact, sorted.
fn contacts(p: &Person) -> Vec<Value> {
    let mut v: Vec<Value> = p
        .json(&["contacts"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| json!([c["fingerprint"], c["name"], c["verified"], c["key_changed"]]))
        .collect();
    v.sort_by_key(|c| c.to_string());
    v
}

/// Each discussion without its times, by id.
fn discussions(p: &Person) -> Vec<Value> {
    let mut v: Vec<Value> = p
        .json(&["discussions"])
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let mut d = d.clone();
            let o = d.as_object_mut().unwrap();
            assert!(o.remove("created").unwrap().as_u64().unwrap() > 0);
            assert!(o.remove("last_activity").unwrap().as_u64().unwrap() > 0);
            // Issue 14: an open discussion shows its current encryption key (recorded at start
            // for one from before), a closed one none.
            let key_id = o.remove("key_id");
            if o["state"] == "closed" {
                assert_eq!(key_id, None);
            } else {
                assert_eq!(key_id.unwrap().as_str().unwrap().len(), 16);
            }
            d
        })
        .collect();
    v.sort_by_key(|d| d["id"].to_string());
    v
}

/// `[direction, seq, state, body]` of each message, in the order `history` gives.
fn messages(p: &Person, id: &str) -> Vec<Value> {
    history(p, id)
        .iter()
        .map(|m| {
            assert_eq!(m["discussion_id"], id);
            assert!(m["time"].as_u64().unwrap() > 0);
            json!([m["direction"], m["seq"], m["state"], m["body"]])
        })
        .collect()
}

fn discussion(id: &str, peer: (&str, &str), role: &str, state: &str, n: u64, unread: u64) -> Value {
    json!({
        "id": id, "peer_fingerprint": peer.0, "peer_name": peer.1, "role": role, "state": state,
        "messages": n, "unread": unread, "peer_not_told": false,
    })
}

#[test]
fn a_data_directory_from_before_issue_9_is_migrated() {
    let port = free_udp_port();
    let mut people: Vec<Person> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| from_fixture_of("pre-issue9", n, port))
        .collect();
    for p in &mut people {
        let scratch = tempfile::tempdir().unwrap();
        copy_dir(&p.data_dir(), scratch.path());
        assert_eq!(
            schema_version(scratch.path()),
            0,
            "no version before issue 9"
        );
        p.start();
    }
    let [a, b, c] = &mut people[..] else {
        unreachable!()
    };
    // Read before anything else: discussions (unread counts), then contacts, then histories.
    assert_eq!(
        discussions(a),
        vec![
            discussion(CLOSED, (BOB_FP, "bob"), "requester", "closed", 3, 0),
            discussion(OPEN, (CAROL_FP, "carol"), "receiver", "open", 2, 0),
        ]
    );
    assert_eq!(
        discussions(b),
        vec![discussion(
            CLOSED,
            (ALICE_FP, "alice"),
            "receiver",
            "closed",
            3,
            2
        )]
    );
    assert_eq!(
        discussions(c),
        vec![discussion(
            OPEN,
            (ALICE_FP, "alice"),
            "requester",
            "open",
            2,
            1
        )]
    );
    assert_eq!(
        contacts(a),
        vec![
            json!([CAROL_FP, "carol", false, false]),
            json!([BOB_FP, "bob", false, false]),
        ]
    );
    assert_eq!(
        contacts(b),
        vec![
            json!([ALICE_FP, "alice", true, false]),
            json!([CAROL_FP, "carol", false, false]),
        ]
    );
    assert_eq!(
        contacts(c),
        vec![
            json!([ALICE_FP, "alice", false, false]),
            json!([BOB_FP, "bob", false, false]),
        ]
    );
    assert_eq!(
        messages(a, CLOSED),
        vec![
            json!(["out", 1, "delivered", "hello bob, from before issue 9"]),
            json!(["out", 2, "delivered", "third message, then we close"]),
            json!(["in", 1, "received", "hi alice, also from before"]),
        ]
    );
    let mut got = messages(b, CLOSED);
    got.sort_by_key(|m| m.to_string());
    assert_eq!(
        got,
        vec![
            json!(["in", 1, "received", "hello bob, from before issue 9"]),
            json!(["in", 2, "received", "third message, then we close"]),
            json!(["out", 1, "delivered", "hi alice, also from before"]),
        ]
    );
    for (p, mine, theirs) in [
        (&*a, "hello carol", "carol here, this one stays open"),
        (&*c, "carol here, this one stays open", "hello carol"),
    ] {
        let mut got = messages(p, OPEN);
        got.sort_by_key(|m| m.to_string());
        assert_eq!(
            got,
            vec![
                json!(["in", 1, "received", theirs]),
                json!(["out", 1, "delivered", mine]),
            ],
            "{}",
            p.name
        );
    }

    // The open discussion still works (its keys open), the closed one stays closed.
    c.ok(&["send", OPEN, "after the migration"]);
    wait_for(60, "the new message delivered", || {
        history(a, OPEN).len() == 3
            && history(c, OPEN)
                .iter()
                .all(|m| m["direction"] == "in" || m["state"] == "delivered")
    });
    assert!(!a.run(&["send", CLOSED, "too late"]).status.success());

    for p in [a, b, c] {
        p.kill();
        assert_eq!(schema_version(&p.data_dir()), SCHEMA_VERSION, "{}", p.name);
    }
}

#[test]
fn a_core_refuses_a_store_newer_than_it_understands() {
    let mut p = Person::new("alice", free_udp_port());
    p.init();
    p.start();
    p.ok(&["stop"]);
    wait_for(15, "the core stopped", || {
        p.core.as_mut().unwrap().try_wait().unwrap().is_some()
    });
    let newer = SCHEMA_VERSION + 1;
    rusqlite::Connection::open(p.data_dir().join("store.db"))
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();
    // What the core keeps (not its lock file, nor the -shm index SQLite rebuilds when reading).
    let files = |p: &Person| -> Vec<(&str, Option<Vec<u8>>)> {
        ["identity.pgp", "storage.key", "store.db", "store.db-wal"]
            .into_iter()
            .map(|f| (f, std::fs::read(p.data_dir().join(f)).ok()))
            .collect()
    };
    let before = files(&p);

    p.rust_log = String::new();
    // Spawned, not run: a core that accepted the store would keep running (then killed, failing).
    let mut core = p
        .cmd()
        .arg("daemon")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while core.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = core.kill();
            let _ = core.wait();
            panic!("the core started on a store newer than it understands");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = core.wait_with_output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    let want = format!(
        "has schema version {newer}, newer than this pgpchat understands ({SCHEMA_VERSION}): use \
         the newer pgpchat that wrote it"
    );
    assert_eq!(lines[0].matches(&want).count(), 1, "said once: {err}");
    assert!(lines[0].contains("store.db"), "{err}");
    for ((f, was), (_, now)) in before.iter().zip(files(&p)) {
        assert!(*was == now, "{f} changed");
    }
    assert_eq!(schema_version(&p.data_dir()), newer);
}
