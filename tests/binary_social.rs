//! The real `pgpchat` binary for issue 10's commands that reach other nodes: `contacts --from
//! PEER` (the contact-list exchange) and `introduce` / `introductions` / `accept-introduction` /
//! `decline-introduction`, each in human and `--json` output, and the exit status of their errors
//! (src/exit.rs). Loopback only: daemons in their own processes on a private discovery port.

use std::process::Output;

use serde_json::{json, Value};

use crate::binary::{wait_for, Person};
use crate::common::free_udp_port;

/// The exit status of a bad request, such as deciding an introduction that ended (src/exit.rs).
const USAGE: i32 = 2;
/// The exit status of "no such contact, discussion, request or introduction" (src/exit.rs).
const NOT_FOUND: i32 = 3;
/// The exit status of "refused by the peer or the core" (src/exit.rs).
const REFUSED: i32 = 4;

fn start(name: &str, port: u16, extra: &str) -> Person {
    let mut p = Person::new(name, port);
    if !extra.is_empty() {
        let mut config = std::fs::read_to_string(&p.config).expect("profile");
        config.push_str(extra);
        std::fs::write(&p.config, config).expect("profile");
    }
    p.init();
    p.start();
    p
}

/// A failed command: its exit status, nothing on stdout, one line on stderr; that line.
fn failed(o: &Output, status: i32) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(status), "{err}");
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    err
}

/// `who`'s contact named `name` in `contacts --json`.
fn contact(who: &Person, name: &str) -> Option<Value> {
    who.json(&["contacts"])
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
}

#[test]
fn contacts_from_a_peer_merges_its_list_from_the_command_line() {
    // carol is on another discovery network: alice never hears her; bob adds her by address and
    // shares the contacts he added (set explicitly: the default shares none).
    let port = free_udp_port();
    let alice = start("alice", port, "");
    let bob = start("bob", port, "\n[sharing]\nshare = [\"added\"]\n");
    let carol = start("carol", free_udp_port(), "");
    alice.wait_sees(&bob);
    bob.wait_sees(&alice);
    let added = bob.json(&["add-contact", &format!("127.0.0.1:{}", carol.tcp_port())]);
    assert_eq!(added["name"], "carol", "{added}");
    assert!(contact(&alice, "carol").is_none());

    // Asking a peer one has no discussion with: not found, nothing merged.
    let o = alice.run(&["contacts", "--from", "bob"]);
    failed(&o, NOT_FOUND);

    alice.open_with(&bob, "list secret");
    let merged = alice.json(&["contacts", "--from", "bob"]);
    assert_eq!(merged["learned"], json!(["carol"]), "{merged}");
    assert_eq!(merged["key_changed"], json!([]), "{merged}");
    assert_eq!(merged["dropped"], 0, "{merged}");
    let c = contact(&alice, "carol").expect("carol learned");
    assert_eq!(c["origin"]["kind"], "via", "{c}");
    assert_eq!(c["origin"]["name"], "bob", "{c}");
    assert_eq!(
        c["origin"]["fingerprint"],
        bob.fingerprint().as_str(),
        "{c}"
    );
    assert_eq!(c["tcp_port"], carol.tcp_port(), "{c}");
    let table = alice.ok(&["contacts"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("carol "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("via bob"), "{row}");

    // bob answers one list per peer per 30 s: asked again at once, he refuses.
    let o = alice.run(&["contacts", "--from", "bob"]);
    let err = failed(&o, REFUSED);
    assert!(err.contains("refused"), "{err}");

    // The human output, from carol asking bob (who opened a discussion with her): bob shares
    // himself and carol, whose own entry is ignored.
    bob.open_with(&carol, "carol secret");
    // A request does not make its sender a contact: carol learns bob from his own list, and the
    // origin rule records it as such ("via bob").
    assert!(contact(&carol, "bob").is_none());
    let line = carol.ok(&["contacts", "--from", "bob"]);
    assert_eq!(
        line,
        "from bob: 1 new contact(s): bob (shown as \"via bob\"); 0 already known\n"
    );
    let b = contact(&carol, "bob").expect("bob learned");
    assert_eq!(b["origin"]["kind"], "via", "{b}");
    assert_eq!(b["origin"]["name"], "bob", "{b}");
}

#[test]
fn introductions_from_the_command_line() {
    let port = free_udp_port();
    let alice = start("alice", port, "");
    let bob = start("bob", port, "");
    let carol = start("carol", port, "");
    for (p, q) in [(&alice, &bob), (&carol, &bob)] {
        p.wait_sees(q);
        q.wait_sees(p);
    }
    // Introducing someone one has no discussion with: refused before anything is sent.
    let err = failed(&bob.run(&["introduce", "alice", "carol"]), NOT_FOUND);
    assert!(err.contains("no open discussion with alice"), "{err}");
    // Unknown contacts: not found.
    failed(&bob.run(&["introduce", "alice", "nobody"]), NOT_FOUND);
    bob.open_with(&alice, "alice secret");
    bob.open_with(&carol, "carol secret");

    // No introductions yet.
    assert_eq!(alice.ok(&["introductions"]), "no introductions\n");
    assert_eq!(alice.json(&["introductions"]), json!([]));
    // Unknown introduction numbers: not found (exit 3), one line, in both output modes.
    for args in [
        &["accept-introduction", "99"][..],
        &["--json", "accept-introduction", "99"],
        &["decline-introduction", "99"],
        &["--json", "decline-introduction", "99"],
    ] {
        failed(&alice.run(args), NOT_FOUND);
    }

    // 1. Both accept: the discussion opens by itself.
    let made = bob.json(&["introduce", "alice", "carol"]);
    let id = made["introduction"].as_str().expect("id").to_string();
    assert_eq!(id.len(), 32, "{made}");
    let offer = |p: &Person, state: &str| {
        let mut found = Value::Null;
        // 60 s: a first dial that fails is retried after INTRODUCTION_DIAL_RETRY_SECS (30).
        wait_for(
            60,
            &format!("{}'s introduction to be {state}", p.name),
            || {
                found = p
                    .json(&["introductions"])
                    .as_array()
                    .and_then(|l| l.iter().find(|i| i["state"] == state).cloned())
                    .unwrap_or(Value::Null);
                !found.is_null()
            },
        );
        found
    };
    let a = offer(&alice, "pending");
    assert_eq!(a["introducer"]["name"], "bob", "{a}");
    assert_eq!(a["peer_name"], "carol", "{a}");
    assert_eq!(a["peer_fingerprint"], carol.fingerprint().as_str(), "{a}");
    let n = a["id"].as_u64().expect("number").to_string();
    let listed = alice.ok(&["introductions"]);
    assert!(
        listed.contains(&format!("{n}  bob introduces carol "))
            && listed.contains("waiting for your decision"),
        "{listed}"
    );
    let accepted = alice.ok(&["accept-introduction", &n]);
    assert_eq!(
        accepted,
        format!("introduction {n}: accepted, waiting for the other side\n")
    );
    let c = offer(&carol, "pending");
    assert_eq!(c["peer_name"], "alice", "{c}");
    let m = c["id"].as_u64().expect("number").to_string();
    let accepted = carol.json(&["accept-introduction", &m]);
    assert_eq!(accepted["id"], c["id"], "{accepted}");
    assert!(
        accepted["state"] == "accepted" || accepted["state"] == "ready",
        "{accepted}"
    );
    let used = offer(&alice, "used");
    let discussion = used["discussion_id"]
        .as_str()
        .expect("discussion")
        .to_string();
    wait_for(60, "carol's side to be used too", || {
        carol.json(&["introductions"])[0]["discussion_id"] == discussion.as_str()
    });
    assert!(alice
        .ok(&["introductions"])
        .contains("used: the discussion is open"));
    for p in [&alice, &carol] {
        assert_eq!(p.requests(), json!([]), "{} was asked", p.name);
    }
    alice.ok(&["send", &discussion, "hello carol"]);
    wait_for(20, "carol to read alice", || {
        carol.json(&["history", &discussion])[0]["body"] == "hello carol"
    });
    // A used introduction cannot be decided again: invalid-params (exit 2), said in words.
    let err = failed(&alice.run(&["accept-introduction", &n]), USAGE);
    assert!(
        err.contains("was already used (its discussion is open): nothing to decide"),
        "{err}"
    );

    // 2. alice declines (human output): the introducer passes it on at once, and carol's offer
    // ends "declined by the other side".
    let human = bob.ok(&["introduce", "alice", "carol"]);
    assert!(
        human.starts_with("introduction ")
            && human.ends_with(" sent: each side is asked to accept\n"),
        "{human}"
    );
    let pending = |p: &Person| {
        let mut n = 0;
        wait_for(20, &format!("{}'s pending offer", p.name), || {
            let l = p.json(&["introductions"]);
            match l
                .as_array()
                .and_then(|l| l.iter().find(|i| i["state"] == "pending"))
            {
                Some(i) => {
                    n = i["id"].as_u64().expect("number");
                    true
                }
                None => false,
            }
        });
        n.to_string()
    };
    let n = pending(&alice);
    assert_eq!(
        alice.ok(&["decline-introduction", &n]),
        format!("introduction {n} declined\n")
    );
    assert!(alice.ok(&["introductions"]).contains("declined"));
    offer(&carol, "cancelled");
    assert!(carol
        .ok(&["introductions"])
        .contains("declined by the other side"));
    // Declined: it cannot be accepted afterwards.
    let err = failed(&alice.run(&["accept-introduction", &n]), USAGE);
    assert!(
        err.contains("was already declined: nothing to decide"),
        "{err}"
    );

    // 3. carol declines (--json): alice's offer ends cancelled.
    bob.json(&["introduce", "alice", "carol"]);
    let m = pending(&carol);
    let declined = carol.json(&["decline-introduction", &m]);
    assert_eq!(declined["id"].to_string(), m, "{declined}");
    assert_eq!(declined["state"], "declined", "{declined}");
    offer(&alice, "cancelled");
    // Neither opened a second discussion.
    let discussions = alice.json(&["discussions"]);
    assert_eq!(
        discussions
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["peer_name"] == "carol")
            .count(),
        1,
        "{discussions}"
    );
}
