//! Tests of the store as a whole (open, reopen, sealing, destruction, durability switching).

use super::*;
use rusqlite::Connection;

/// A store in a temporary directory, with a storage key.
pub(super) fn open_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_with_key(&dir.path().join("s.db"), Some(&[7; 32])).unwrap();
    (dir, s)
}

pub(super) fn discussion(id: &str) -> DiscussionRecord {
    DiscussionRecord {
        id: id.into(),
        peer_fingerprint: "F".into(),
        peer_name: "bob".into(),
        role: crate::wire::Role::Requester,
        state: DiscussionState::Open,
        created: 1,
        own_key_sealed: vec![1],
        peer_key: vec![2],
        peer_address: "127.0.0.1".into(),
        peer_port: 5,
        listen_port: 0,
        peer_version: 1,
    }
}

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let b = std::fs::read(p).unwrap();
            b.windows(needle.len()).any(|w| w == needle)
        })
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn a_destroyed_key_leaves_no_copy_in_any_file_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open_with_key(&dir.path().join("s.db"), Some(&[7; 32])).unwrap();
    let key: Vec<u8> = (0..200u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
    let mut d = discussion("d");
    d.own_key_sealed = key.clone();
    s.insert_discussion(&d).unwrap();
    s.insert_discussion(&discussion("e")).unwrap();
    // Per-message rewrites of the discussion's row must not copy the key around.
    for i in 0..50 {
        s.queue_outgoing("d", "text", i).unwrap();
        s.store_incoming("d", i + 1, i, "reply").unwrap();
    }
    assert!(
        !files_contain(dir.path(), &key).is_empty(),
        "the key is stored"
    );
    s.close_discussion("d", Some(b"proof"), true).unwrap();
    assert_eq!(files_contain(dir.path(), &key), Vec::<String>::new());
    assert!(s.discussion("d").unwrap().own_key_sealed.is_empty());
    assert_eq!(s.discussion("e").unwrap().own_key_sealed, vec![1]);
}

#[test]
fn a_store_from_before_issue_8_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE discussions (id TEXT PRIMARY KEY, peer_fingerprint TEXT NOT NULL,
                 peer_name TEXT NOT NULL, role TEXT NOT NULL, state TEXT NOT NULL,
                 created INTEGER NOT NULL, own_key_sealed BLOB NOT NULL,
                 peer_key BLOB NOT NULL, peer_address TEXT NOT NULL,
                 peer_port INTEGER NOT NULL, listen_port INTEGER NOT NULL,
                 next_out_seq INTEGER NOT NULL DEFAULT 1,
                 last_in_seq INTEGER NOT NULL DEFAULT 0);
             INSERT INTO discussions VALUES
                 ('o', 'F', 'bob', 'requester', 'open', 1, x'c1aa', x'02', '', 0, 0, 1, 0),
                 ('c', 'F', 'bob', 'requester', 'closed', 1, x'', x'02', '', 0, 0, 1, 0);",
        )
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.discussion("o").unwrap().own_key_sealed, vec![0xc1, 0xaa]);
    assert!(s.discussion("c").unwrap().own_key_sealed.is_empty());
    assert_eq!(
        s.legacy_discussion_keys().unwrap(),
        vec![("o".to_string(), vec![0xc1, 0xaa])]
    );
    let still: i64 = s
        .conn
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('discussions') WHERE name = 'own_key_sealed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(still, 0, "the old column is gone");
    drop(s);
    // Opening again changes nothing.
    let s = Store::open(&path).unwrap();
    assert_eq!(s.discussion("o").unwrap().own_key_sealed, vec![0xc1, 0xaa]);
    assert_eq!(s.integrity_check().unwrap(), "ok");
}

#[test]
fn outbox_delivery_and_exactly_once_incoming() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open_with_key(&dir.path().join("s.db"), Some(&[7; 32])).unwrap();
    s.insert_discussion(&discussion("d")).unwrap();
    assert_eq!(s.queue_outgoing("d", "one", 10).unwrap().seq, 1);
    assert_eq!(s.queue_outgoing("d", "two", 11).unwrap().seq, 2);
    assert!(s.mark_sent("d", 1).unwrap());
    assert_eq!(s.outbox_from("d", 0, 100).unwrap().len(), 2);
    assert_eq!(s.mark_delivered("d", 1).unwrap(), vec![1]);
    assert_eq!(s.mark_delivered("d", 1).unwrap(), Vec::<u64>::new());
    assert!(!s.mark_sent("d", 1).unwrap(), "delivered never goes back");
    assert_eq!(s.outbox_from("d", 0, 100).unwrap()[0].record.body, "two");

    assert_eq!(
        s.store_incoming("d", 1, 5, "hi").unwrap(),
        (Incoming::Stored, 1)
    );
    assert_eq!(
        s.store_incoming("d", 1, 5, "hi").unwrap(),
        (Incoming::Duplicate, 1)
    );
    assert_eq!(
        s.store_incoming("d", 3, 5, "x").unwrap(),
        (Incoming::Gap { expected: 2 }, 1)
    );
    let h = s.history("d", 10).unwrap();
    assert_eq!(h.len(), 3);
    let sums = s.discussions().unwrap();
    assert_eq!((sums[0].unread, sums[0].messages), (1, 3));
    s.mark_read("d").unwrap();
    assert_eq!(s.discussions().unwrap()[0].unread, 0);
    assert!(matches!(
        s.queue_outgoing("nope", "x", 1),
        Err(StoreError::NoDiscussion(_))
    ));
    s.set_discussion_state("d", DiscussionState::Closed)
        .unwrap();
    assert!(matches!(
        s.queue_outgoing("d", "x", 1),
        Err(StoreError::Closed(_))
    ));
    assert_eq!(s.integrity_check().unwrap(), "ok");
}

#[test]
fn a_forced_close_keeps_its_notice_across_a_reopen_until_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.db");
    {
        let mut s = Store::open(&p).unwrap();
        s.insert_discussion(&discussion("d")).unwrap();
        s.insert_discussion(&discussion("e")).unwrap();
        s.close_discussion("d", Some(b"signed close"), false)
            .unwrap();
    }
    let s = Store::open(&p).unwrap();
    let d = s.discussion("d").unwrap();
    assert_eq!(d.state, DiscussionState::Closed);
    assert!(d.own_key_sealed.is_empty(), "key destroyed with the close");
    assert_eq!(s.discussion("e").unwrap().own_key_sealed, vec![1]);
    assert_eq!(s.open_discussion_ids().unwrap(), vec!["e".to_string()]);
    let notices = s.close_notices().unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!(
        (notices[0].0.id.as_str(), notices[0].1.as_slice()),
        ("d", &b"signed close"[..])
    );
    s.close_notice_delivered("d").unwrap();
    assert!(s.close_notices().unwrap().is_empty());
    assert_eq!(
        s.close_proof("d").unwrap().as_deref(),
        Some(&b"signed close"[..]),
        "kept to answer a late reconnection"
    );
    assert_eq!(s.close_proof("e").unwrap(), None);
}

#[test]
fn delivery_marks_are_relaxed_and_everything_else_stays_fully_synchronous() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open_with_key(&dir.path().join("s.db"), Some(&[7; 32])).unwrap();
    let sync = |s: &Store| -> i64 {
        s.conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(sync(&s), 2, "FULL");
    s.insert_discussion(&discussion("d")).unwrap();
    s.queue_outgoing("d", "one", 1).unwrap();
    assert!(s.mark_sent("d", 1).unwrap());
    assert_eq!(sync(&s), 2, "FULL again after a relaxed write");
    assert_eq!(s.mark_delivered("d", 1).unwrap(), vec![1]);
    assert_eq!(sync(&s), 2);
    let inside = s
        .relaxed(|c| Ok(c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?))
        .unwrap();
    assert_eq!(inside, 1, "NORMAL inside a relaxed write");
    // A relaxed write that fails still puts FULL back.
    assert!(s.mark_delivered("nowhere", 1).unwrap().is_empty());
    assert!(s.relaxed(|_| Err::<(), _>(StoreError::Locked)).is_err());
    assert_eq!(sync(&s), 2);
    assert_eq!(
        s.history("d", 10).unwrap()[0].state,
        DeliveryState::Delivered
    );
}

#[test]
fn survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.db");
    {
        let mut s = Store::open_with_key(&p, Some(&[7; 32])).unwrap();
        s.insert_discussion(&discussion("d")).unwrap();
        s.queue_outgoing("d", "kept", 1).unwrap();
    }
    let s = Store::open_with_key(&p, Some(&[7; 32])).unwrap();
    assert_eq!(s.history("d", 10).unwrap()[0].body, "kept");
    assert_eq!(s.open_discussion_ids().unwrap(), vec!["d".to_string()]);
    // Without the key, or with another one, the text stays unreadable.
    assert!(matches!(
        Store::open(&p).unwrap().history("d", 10),
        Err(StoreError::Locked)
    ));
    let wrong = Store::open_with_key(&p, Some(&[8; 32])).unwrap();
    assert!(matches!(
        wrong.history("d", 10),
        Err(StoreError::Undecryptable)
    ));
    let raw = std::fs::read(&p).unwrap();
    assert!(!raw.windows(4).any(|w| w == b"kept"));
}

#[test]
fn a_moved_row_does_not_decrypt() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open_with_key(&dir.path().join("s.db"), Some(&[7; 32])).unwrap();
    s.insert_discussion(&discussion("d")).unwrap();
    s.queue_outgoing("d", "first", 1).unwrap();
    s.queue_outgoing("d", "second", 2).unwrap();
    s.conn
        .execute(
            "UPDATE messages SET body = (SELECT body FROM messages WHERE seq = 2) WHERE seq = 1",
            [],
        )
        .unwrap();
    assert!(matches!(s.history("d", 10), Err(StoreError::Undecryptable)));
}

#[test]
fn a_new_store_records_the_current_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s.db")).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn a_store_newer_than_this_code_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    drop(Store::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    match Store::open(&path) {
        Err(StoreError::TooNew {
            found, supported, ..
        }) => assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION)),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_store_of_issue_8_without_a_version_is_migrated_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let mut s = Store::open_with_key(&path, Some(&[7; 32])).unwrap();
        s.insert_discussion(&discussion("d")).unwrap();
        s.queue_outgoing("d", "kept", 1).unwrap();
        s.conn.pragma_update(None, "user_version", 0).unwrap();
    }
    let s = Store::open_with_key(&path, Some(&[7; 32])).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(s.discussion("d").unwrap(), discussion("d"));
    assert_eq!(s.history("d", 10).unwrap()[0].body, "kept");
}

/// `history` pages by position (issue 12): back from `before`, forward from `after`, each message
/// with its place in the discussion; another discussion's messages do not count.
#[test]
fn history_pages_by_position() {
    use super::HistoryPage;
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open_with_key(&dir.path().join("s.db"), Some(&[7; 32])).unwrap();
    s.insert_discussion(&discussion("d")).unwrap();
    s.insert_discussion(&discussion("e")).unwrap();
    for i in 1..=10u64 {
        s.queue_outgoing("d", &format!("m{i}"), 100 + i).unwrap();
        s.queue_outgoing("e", "other", 100 + i).unwrap();
    }
    let page = |limit, before, after| {
        s.history_page(
            "d",
            HistoryPage {
                limit,
                before,
                after,
            },
        )
        .unwrap()
        .into_iter()
        .map(|(p, m)| {
            assert_eq!(m.body, format!("m{p}"));
            p
        })
        .collect::<Vec<_>>()
    };
    assert_eq!(page(3, None, None), [8, 9, 10]);
    assert_eq!(page(3, Some(8), None), [5, 6, 7]);
    assert_eq!(page(3, Some(3), None), [1, 2]);
    assert_eq!(page(3, None, Some(2)), [3, 4, 5], "forward from after");
    assert_eq!(page(10, Some(6), Some(2)), [3, 4, 5]);
    assert_eq!(page(3, Some(1), None), Vec::<u64>::new());
    assert_eq!(page(3, None, Some(u64::MAX)), Vec::<u64>::new());
}

#[test]
fn a_contacts_origin_is_written_once_and_its_announce_and_probe_state_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let via = ContactOrigin::Via {
        fingerprint: "B0B".into(),
        name: "bob".into(),
    };
    let mut c = ContactRecord {
        fingerprint: "CA7".into(),
        name: "cat".into(),
        cert: vec![1],
        address: "10.0.0.3".into(),
        tcp_port: 4000,
        first_seen: 1,
        last_seen: 1,
        announce_time: 1,
        verified: false,
        key_changed: false,
        origin: via.clone(),
        announce: vec![9, 9],
        probe: Some(ProbeState {
            address: "cat.example:4000".into(),
            failures: 2,
            next: 77,
        }),
    };
    {
        let s = Store::open(&path).unwrap();
        s.upsert_contact(&c).unwrap();
        // A later write carrying another origin does not rewrite it.
        c.origin = ContactOrigin::Added;
        c.last_seen = 2;
        s.upsert_contact(&c).unwrap();
        s.set_blocked("DEAD", true, 5).unwrap();
    }
    let s = Store::open(&path).unwrap();
    let back = s.contacts().unwrap();
    c.origin = via;
    assert_eq!(back, vec![c]);
    assert_eq!(s.blocked().unwrap(), ["DEAD"]);
    s.set_blocked("DEAD", false, 6).unwrap();
    assert!(s.blocked().unwrap().is_empty());
}

#[test]
fn a_rendezvous_secret_is_kept_once_and_destroyed_with_the_discussion_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open_with_key(&dir.path().join("s.db"), Some(&[7; 32])).unwrap();
    s.insert_discussion(&discussion("d")).unwrap();
    s.insert_discussion(&discussion("e")).unwrap();
    let sealed: Vec<u8> = (0..120u8).map(|i| i.wrapping_mul(53) ^ 0xa5).collect();
    assert!(s.set_rendezvous_secret("d", &sealed).unwrap());
    // Never rotated away: a second one changes nothing.
    assert!(!s.set_rendezvous_secret("d", b"other").unwrap());
    assert!(s.set_rendezvous_secret("e", b"e's").unwrap());
    // Unknown discussion: nothing stored.
    assert!(!s.set_rendezvous_secret("x", b"x").unwrap());
    assert_eq!(s.rendezvous_secret("d").unwrap(), Some(sealed.clone()));
    assert_eq!(s.open_rendezvous_secrets().unwrap().len(), 2);
    assert!(!files_contain(dir.path(), &sealed).is_empty());
    s.close_discussion("d", Some(b"proof"), true).unwrap();
    assert_eq!(s.rendezvous_secret("d").unwrap(), None);
    assert_eq!(files_contain(dir.path(), &sealed), Vec::<String>::new());
    let open = s.open_rendezvous_secrets().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].0, "e");
    // A closed discussion never gets one again.
    assert!(!s.set_rendezvous_secret("d", &sealed).unwrap());
}

#[test]
fn outbox_statements_read_the_outbox_index() {
    let (_d, s) = open_store();
    for sql in super::messages::OUTBOX_STATEMENTS {
        let mut st = s
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let values: [&dyn rusqlite::ToSql; 3] = [&"d", &1, &1];
        let params = &values[..st.parameter_count()];
        let plan: Vec<String> = st
            .query_map(params, |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|p| p.contains("INDEX outbox")),
            "{sql}\nplan: {plan:?}"
        );
        assert!(
            !plan.iter().any(|p| p.starts_with("SCAN messages")),
            "{sql}\nplan: {plan:?}"
        );
    }
}

#[test]
fn an_acknowledgement_reads_the_outbox_not_the_history() {
    let (_d, mut s) = open_store();
    s.insert_discussion(&discussion("d")).unwrap();
    for i in 0..2000 {
        s.queue_outgoing("d", "text", i).unwrap();
    }
    s.mark_delivered("d", 1990).unwrap();
    // The rows SQLite visits to mark the last ten: the outbox's, not the 1 990 delivered ones.
    let mut st = s
        .conn
        .prepare(super::messages::OUTBOX_STATEMENTS[2])
        .unwrap();
    let seqs: Vec<u64> = st
        .query_map(rusqlite::params!["d", 2000], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(seqs, (1991..=2000).collect::<Vec<_>>());
    let steps = st.get_status(rusqlite::StatementStatus::VmStep);
    assert!(steps < 500, "{steps} virtual machine steps for 10 rows");
    drop(st);
    assert_eq!(s.mark_delivered("d", 2000).unwrap().len(), 10);
}
