//! Forward secrecy (issue 14): each side rotates its discussion encryption subkey, the peer
//! switches to the new one, the old secret is destroyed and leaves no copy in any file, and every
//! message is delivered exactly once, in order, across rotations. Several complete nodes in one
//! process over loopback, real SQLite and OpenPGP.

use pgpchat_actors::events::Event;
use pgpchat_actors::node::NodeHandle;
use pgpchat_actors::store::SubkeyState;

use crate::common::*;

/// Our live subkeys of discussion `id` on `n`: (key id, state).
async fn subkeys(n: &NodeHandle, id: &str) -> Vec<(String, SubkeyState)> {
    let id = id.to_string();
    n.store
        .run(move |s| s.own_subkeys(&id))
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.key_id, k.state))
        .collect()
}

/// The raw secret parameters of `n`'s subkey `key_id` in discussion `id`, read from its store.
async fn subkey_secret(n: &NodeHandle, id: &str, key_id: &str) -> Vec<u8> {
    let i = id.to_string();
    let sealed = n
        .store
        .run(move |s| s.discussion(&i))
        .await
        .unwrap()
        .own_key_sealed;
    let key = n.keys.unseal_discussion_key(sealed).await.unwrap();
    key.subkey_material_for_audit(key_id)
        .expect("the subkey is held")
}

async fn wait_active(n: &NodeHandle, id: &str, key_id: &str) {
    wait_until(30, "the new subkey alone and active", || {
        let (n, id, key_id) = (n.clone(), id.to_string(), key_id.to_string());
        async move { (subkeys(&n, &id).await == [(key_id, SubkeyState::Active)]).then_some(()) }
    })
    .await
}

/// Wait until `n` has received `count` messages in `id`, and return their texts in order.
async fn received(n: &NodeHandle, id: &str, count: usize) -> Vec<String> {
    wait_until(60, "every message received", || {
        let (n, id) = (n.clone(), id.to_string());
        async move {
            let h = n.history(&id, 1000).await.ok()?;
            let texts: Vec<String> = h
                .into_iter()
                .filter(|m| m.direction == pgpchat_actors::store::Direction::In)
                .map(|m| m.body)
                .collect();
            (texts.len() >= count).then_some(texts)
        }
    })
    .await
}

#[actix_rt::test]
async fn a_rotation_switches_the_peer_and_destroys_the_old_subkey_in_every_file() {
    let n = spawn_nodes(&["alice", "bob"]).await;
    let (a, b) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    let (opened, _) = open_discussion(a, b, "tulip", "tulip").await;
    let id = opened.expect("alice and bob talk");
    let first = subkeys(a, &id).await;
    assert_eq!(first.len(), 1, "one subkey at first: {first:?}");
    let (old, _) = first[0].clone();
    let old_secret = subkey_secret(a, &id, &old).await;
    a.send(&id, "before").await.unwrap();
    b.send(&id, "reply before").await.unwrap();
    received(a, &id, 1).await;

    let mut events = a.subscribe();
    let new = a.rotate(&id).await.unwrap();
    assert_ne!(new, old);
    // Asked again while pending: the same key, never a second one.
    // (Unless bob acknowledged it already: then a new rotation starts, which is fine too.)
    if subkeys(a, &id).await.len() == 2 {
        if let Ok(again) = a.rotate(&id).await {
            assert!(again == new || subkeys(a, &id).await.len() <= 2);
        }
    }
    wait_active(a, &id, &new).await;
    let rotated = wait_until(10, "the key_rotated event", || {
        let got = events.try_recv().ok();
        async move {
            match got {
                Some(Event::KeyRotated { key_id, .. }) => Some(key_id),
                _ => None,
            }
        }
    })
    .await;
    assert_eq!(rotated, new);
    // `discussions` shows the current key and when it replaced the last one.
    let listed = a.discussions().await.unwrap();
    let d = listed.iter().find(|d| d.id == id).unwrap();
    assert_eq!(d.key_id.as_deref(), Some(new.as_str()));
    assert!(d.last_rotation.is_some_and(|t| t > 0));
    // Bob encrypts to the new subkey: alice, without the old one, still reads him.
    let i = id.clone();
    let bob_view = b.store.run(move |s| s.peer_subkey(&i)).await.unwrap();
    assert_eq!(bob_view, new);
    b.send(&id, "reply after").await.unwrap();
    assert_eq!(
        received(a, &id, 2).await,
        ["reply before", "reply after"],
        "exactly once, in order"
    );
    // The old secret is in no file of alice's data directory.
    for f in files_under(&a.dir) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !contains(&bytes, &old_secret),
            "the destroyed subkey is still in {}",
            f.display()
        );
    }
}

#[actix_rt::test]
async fn the_message_count_rotates_repeatedly_and_every_message_arrives_once_in_order() {
    let n = spawn_nodes_with(&["alice", "bob"], |name, s| {
        if name == "alice" {
            s.rotation.messages = 3;
        }
    })
    .await;
    let (a, b) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    let (opened, _) = open_discussion(a, b, "tulip", "tulip").await;
    let id = opened.expect("alice and bob talk");
    let tap = pgpchat_actors::session::RotationTap::default();
    a.directory
        .send(pgpchat_actors::discussions::Lookup(id.clone()))
        .await
        .unwrap()
        .unwrap()
        .send(pgpchat_actors::session::TapForTests(tap.clone()))
        .await
        .unwrap();
    // A fast burst first (a rotation starts with messages in flight; it completes after them:
    // bob's acknowledgement follows what he had queued), then bursts of 4 (over the count of 3),
    // each of which must start and complete one more rotation.
    const N: usize = 20;
    for i in 0..N {
        b.send(&id, &format!("m{i}")).await.unwrap();
        if i >= 7 && i % 4 == 3 {
            let rotations = (i - 7) / 4 + 1;
            received(a, &id, i + 1).await;
            wait_until(30, "one more rotation, completed", || {
                let (a, id, tap) = (a.node.clone(), id.clone(), tap.clone());
                async move {
                    let made = tap.subkeys.lock().unwrap().len();
                    (made >= rotations && subkeys(&a, &id).await.len() == 1).then_some(())
                }
            })
            .await;
        }
    }
    let texts = received(a, &id, N).await;
    let expected: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected, "exactly once, in order");
    let made = tap.subkeys.lock().unwrap().len();
    assert!(made >= 4, "rotated by count after each burst: {made}");
    // Only the current subkey (and at most one pending) is left.
    let live = wait_until(30, "rotations settled", || {
        let (a, id) = (a.node.clone(), id.clone());
        async move {
            let k = subkeys(&a, &id).await;
            (!k.iter().any(|(_, s)| *s == SubkeyState::Draining)).then_some(k)
        }
    })
    .await;
    assert!(live.len() <= 2, "{live:?}");
}

#[actix_rt::test]
async fn a_peer_below_version_4_is_never_sent_a_rotation() {
    let n = spawn_nodes_with(&["alice", "bob"], |name, s| {
        if name == "bob" {
            s.listener.max_protocol_version = 3;
        }
        s.rotation.messages = 1;
    })
    .await;
    let (a, b) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    let (opened, _) = open_discussion(a, b, "tulip", "tulip").await;
    let id = opened.expect("alice and bob talk");
    let e = a.rotate(&id).await.unwrap_err();
    assert!(e.to_string().contains("without key rotation"), "{e}");
    // Messages still flow (and their count triggers nothing).
    for i in 0..3 {
        b.send(&id, &format!("m{i}")).await.unwrap();
    }
    received(a, &id, 3).await;
    assert_eq!(subkeys(a, &id).await.len(), 1);
    let outbox = {
        let i = id.clone();
        a.store
            .run(move |s| s.outbox_from(&i, 0, 100))
            .await
            .unwrap()
    };
    assert!(
        outbox
            .iter()
            .all(|m| m.kind != pgpchat_actors::store::MessageKind::Control),
        "no control message queued for a version-3 peer"
    );
}

/// A frame encrypted to a subkey its receiver has destroyed cannot be read, so its sequence number
/// is unknown there: the receiver answers with a signed `Unreadable` (which subkey, the last message
/// it stored) and the sender encrypts everything after that again to the current subkey, on the
/// same connection: every message arrives once, in order, without a reconnection. Without the
/// answer the frames stay missing (a gap) until the connection is replaced.
#[actix_rt::test]
async fn frames_under_a_destroyed_subkey_are_sent_again_without_a_reconnection() {
    let n = spawn_nodes(&["alice", "bob"]).await;
    let (a, b) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    let (opened, _) = open_discussion(a, b, "tulip", "tulip").await;
    let id = opened.expect("alice and bob talk");
    // Bob's view of alice's certificate before she rotates.
    let i = id.clone();
    let old_cert = b
        .store
        .run(move |s| s.discussion(&i))
        .await
        .unwrap()
        .peer_key;
    let old_cert = pgpchat_actors::crypto::PublicCert::from_bytes(&old_cert).unwrap();
    b.send(&id, "m0").await.unwrap();
    received(a, &id, 1).await;
    let new = a.rotate(&id).await.unwrap();
    wait_active(a, &id, &new).await;

    let mut bob_events = b.subscribe();
    let session = b
        .directory
        .send(pgpchat_actors::discussions::Lookup(id.clone()))
        .await
        .unwrap()
        .unwrap();
    session
        .send(pgpchat_actors::session::EncryptToForTests {
            cert: old_cert,
            frames: 2,
        })
        .await
        .unwrap();
    for i in 1..6 {
        b.send(&id, &format!("m{i}")).await.unwrap();
    }
    let texts = received(a, &id, 6).await;
    let expected: Vec<String> = (0..6).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected, "exactly once, in order");
    wait_until(20, "every message delivered", || {
        let (b, id) = (b.node.clone(), id.clone());
        async move {
            let h = b.history(&id, 100).await.ok()?;
            h.iter()
                .all(|m| m.state == pgpchat_actors::store::DeliveryState::Delivered)
                .then_some(())
        }
    })
    .await;
    while let Ok(e) = bob_events.try_recv() {
        assert!(
            !matches!(
                e,
                Event::Connection {
                    connected: false,
                    ..
                }
            ),
            "no reconnection was needed"
        );
    }
}

/// The property of issue 14, end to end: every chat frame bob sent alice is recorded as it went on
/// the wire; alice rotates three times, each subkey she makes recorded with its secret and its
/// sealed form when it is made (test hooks). Then, holding both data directories and what opens
/// them (the identity keys): no rotated-out secret, raw or sealed, is in any file; the only
/// discussion key that unseals holds none of them; the frames under destroyed subkeys do not
/// decrypt with it, the frames under the current one do (the test's own control); and gpg reads a
/// current frame with that key exported.
#[actix_rt::test]
async fn frames_under_destroyed_subkeys_stay_unreadable_to_whoever_takes_both_data_directories() {
    let n = spawn_nodes_with(&["alice", "bob"], |_, s| {
        s.rotation.messages = 0;
        s.rotation.hours = 0;
    })
    .await;
    let (a, b) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    let (opened, _) = open_discussion(a, b, "tulip", "tulip").await;
    let id = opened.expect("alice and bob talk");
    let lookup = |node: &NodeHandle| {
        let (node, id) = (node.clone(), id.clone());
        async move {
            node.directory
                .send(pgpchat_actors::discussions::Lookup(id))
                .await
                .unwrap()
                .unwrap()
        }
    };
    let (tap_a, tap_b) = (
        pgpchat_actors::session::RotationTap::default(),
        pgpchat_actors::session::RotationTap::default(),
    );
    lookup(a)
        .await
        .send(pgpchat_actors::session::TapForTests(tap_a.clone()))
        .await
        .unwrap();
    lookup(b)
        .await
        .send(pgpchat_actors::session::TapForTests(tap_b.clone()))
        .await
        .unwrap();
    // Alice's first subkey, made with the discussion: its secret and sealed form from her store.
    let i = id.clone();
    let first_sealed = a
        .store
        .run(move |s| s.discussion(&i))
        .await
        .unwrap()
        .own_key_sealed;
    let (first, _) = subkeys(a, &id).await[0].clone();
    let mut rotated_out = vec![(
        first.clone(),
        subkey_secret(a, &id, &first).await,
        first_sealed,
    )];

    let mut sent = 0;
    for round in 0..4 {
        for j in 0..3 {
            b.send(&id, &format!("round {round} message {j}"))
                .await
                .unwrap();
            sent += 1;
        }
        received(a, &id, sent).await;
        if round < 3 {
            let new = a.rotate(&id).await.unwrap();
            wait_active(a, &id, &new).await;
        }
    }
    let current = subkeys(a, &id).await;
    assert_eq!(current.len(), 1);
    let current = current[0].0.clone();
    for (key_id, material, sealed) in tap_a.subkeys.lock().unwrap().iter() {
        assert!(!material.is_empty());
        if *key_id != current {
            rotated_out.push((key_id.clone(), material.clone(), sealed.clone()));
        }
    }
    assert_eq!(rotated_out.len(), 3, "three subkeys rotated out");
    // Every blob sealed while a rotated-out subkey lived held it; the current subkey's first blob
    // also held the one before it.
    let sealed_then: Vec<Vec<u8>> = tap_a
        .subkeys
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, s)| s.clone())
        .collect();

    // 1. No file of either data directory holds any of them, raw or sealed.
    for dir in [&a.dir, &b.dir] {
        for f in files_under(dir) {
            let bytes = std::fs::read(&f).unwrap();
            for (key_id, material, sealed) in &rotated_out {
                assert!(
                    !contains(&bytes, material),
                    "{key_id} raw in {}",
                    f.display()
                );
                assert!(
                    !contains(&bytes, sealed),
                    "{key_id} sealed in {}",
                    f.display()
                );
            }
            for sealed in &sealed_then {
                assert!(
                    !contains(&bytes, sealed),
                    "an old sealed key in {}",
                    f.display()
                );
            }
        }
    }
    // 2. What unseals with the identities: each side's discussion key, holding none of them.
    let mut alice_now = None;
    for node in [a, b] {
        let i = id.clone();
        let sealed = node
            .store
            .run(move |s| s.discussion(&i))
            .await
            .unwrap()
            .own_key_sealed;
        let key = node.keys.unseal_discussion_key(sealed).await.unwrap();
        for part in key.secret_material_for_audit() {
            for (key_id, material, _) in &rotated_out {
                assert_ne!(&part, material, "{key_id} still in a discussion key");
            }
        }
        if node.keys.fingerprint() == a.keys.fingerprint() {
            assert_eq!(key.encryption_subkey_ids(), std::slice::from_ref(&current));
            alice_now = Some(key);
        }
    }
    let alice_now = alice_now.unwrap();
    // 3. The frames on the wire: under a destroyed subkey, unreadable; under the current one,
    // readable (so the first check can fail).
    let i = id.clone();
    let bob_cert = a
        .store
        .run(move |s| s.discussion(&i))
        .await
        .unwrap()
        .peer_key;
    let bob_cert = pgpchat_actors::crypto::PublicCert::from_bytes(&bob_cert).unwrap();
    let frames = tap_b.frames.lock().unwrap().clone();
    let (mut old, mut new) = (std::collections::HashSet::new(), Vec::new());
    for (seq, frame) in &frames {
        let to = pgpchat_actors::crypto::recipient_key_ids(frame).unwrap();
        let opened = alice_now.decrypt_and_verify(frame, &bob_cert);
        if to == [current.clone()] {
            assert!(opened.is_ok(), "frame {seq} under the current subkey reads");
            new.push(frame.clone());
        } else {
            assert!(opened.is_err(), "frame {seq} under destroyed {to:?} reads");
            old.insert(to[0].clone());
        }
    }
    assert_eq!(
        old.len(),
        3,
        "frames under each rotated-out subkey: {old:?}"
    );
    assert!(!new.is_empty());
    // 4. gpg reads a current frame with alice's current discussion key, exported by the test.
    let home = crate::interop::gnupghome();
    let secret = alice_now.to_protected_armored(None).unwrap();
    let o = crate::interop::gpg(home.path(), &["--import"], Some(secret.as_bytes()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let public = bob_cert.to_armored().unwrap();
    let o = crate::interop::gpg(home.path(), &["--import"], Some(public.as_bytes()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = crate::interop::gpg(
        home.path(),
        &["--status-fd", "2", "--decrypt"],
        Some(&new[0]),
    );
    let status = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "gpg --decrypt failed: {status}");
    assert!(status.contains("[GNUPG:] GOODSIG"), "{status}");
    assert!(o.stdout.windows(5).any(|w| w == b"round"));
    // And gpg cannot read an old one either.
    let (_, first_frame) = &frames[0];
    let o = crate::interop::gpg(home.path(), &["--decrypt"], Some(first_frame));
    assert!(
        !o.status.success(),
        "gpg read a frame under a destroyed subkey"
    );
}

/// Rotation under crashes, with the real binary: alice rotates while both send; a core (alice's,
/// bob's, or both, in turn) is killed with SIGKILL a varying moment after `rotate` answered, so
/// that over the rounds the kill falls at each step (pending stored, announced, acknowledged, old
/// subkey destroyed) and with messages in flight under the old subkey; both restart. Every round
/// the rotation completes (a new key id, no pending nor draining state left), the replaced subkey
/// is in no file of alice's data directory, and in the end every message is delivered exactly
/// once, in order, both ways.
#[test]
fn a_rotation_survives_sigkill_at_every_step_and_loses_no_message() {
    use crate::binary::{wait_for, Person};
    use pgpchat_actors::at_rest::{self, Sealed};
    use pgpchat_actors::store::Store;

    let (mut a, mut b) = crate::binary::alice_and_bob_running();
    let id = a.open_with(&b, "a secret for the crashes");
    let key_id = |p: &Person| -> String {
        p.json(&["discussions"])
            .as_array()
            .and_then(|all| all.iter().find(|d| d["id"] == id.as_str()).cloned())
            .and_then(|d| d["key_id"].as_str().map(String::from))
            .unwrap_or_default()
    };
    // The raw secret of alice's subkey `kid`, read from her store (her core stopped).
    let secret_of = |p: &Person, kid: &str| -> Vec<u8> {
        let dir = p.data_dir();
        let sealed = Store::open(&dir.join("store.db"))
            .unwrap()
            .discussion(&id)
            .unwrap()
            .own_key_sealed;
        let identity = pgpchat_actors::identity::load(&dir, None).unwrap();
        let plain = at_rest::open(&identity, Sealed::DiscussionKey, &sealed).unwrap();
        let key = pgpchat_actors::crypto::SecretCert::unlock(&plain, None).unwrap();
        key.subkey_material_for_audit(kid).unwrap()
    };
    let states = |p: &Person| -> Vec<String> {
        let dir = p.data_dir();
        let s = Store::open(&dir.join("store.db")).unwrap();
        s.own_subkeys(&id)
            .unwrap()
            .into_iter()
            .map(|k| k.state.as_str().to_string())
            .collect()
    };
    let (mut from_a, mut from_b) = (0, 0);
    let delays_ms = [0u64, 5, 20, 60, 150, 400];
    for (round, delay) in delays_ms.iter().enumerate() {
        let old = key_id(&a);
        assert_eq!(old.len(), 16, "alice's current key is listed");
        a.kill();
        let old_secret = secret_of(&a, &old);
        a.start();
        // Messages both ways around the rotation: some go under the old subkey.
        for _ in 0..3 {
            a.ok(&["send", &id, &format!("a{from_a:03}")]);
            b.ok(&["send", &id, &format!("b{from_b:03}")]);
            from_a += 1;
            from_b += 1;
        }
        a.ok(&["rotate", &id]);
        b.ok(&["send", &id, &format!("b{from_b:03}")]);
        from_b += 1;
        std::thread::sleep(std::time::Duration::from_millis(*delay));
        match round % 3 {
            0 => a.kill(),
            1 => b.kill(),
            _ => {
                a.kill();
                b.kill();
            }
        }
        eprintln!("round {round}: killed {} ms after rotate", delay);
        a.start();
        b.start();
        wait_for(60, "the rotation completed after the restart", || {
            let now = key_id(&a);
            !now.is_empty() && now != old
        });
        // Settled: only the active state left, and the old secret in no file. A kill between the
        // acknowledgement and the destruction leaves it draining: the next start finishes it.
        let mut settled = false;
        for _ in 0..5 {
            a.kill();
            if states(&a) == ["active"] {
                let found: Vec<_> = crate::common::files_under(&a.data_dir())
                    .into_iter()
                    .filter(|f| {
                        std::fs::read(f)
                            .map(|b| crate::common::contains(&b, &old_secret))
                            .unwrap_or(false)
                    })
                    .collect();
                assert!(
                    found.is_empty(),
                    "round {round}: the old subkey in {found:?}"
                );
                settled = true;
            }
            a.start();
            if settled {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        assert!(settled, "round {round}: the old subkey was never destroyed");
    }
    // Every message, exactly once and in order, both ways.
    let texts = |p: &Person, dir: &str| -> Vec<String> {
        p.json(&["history", &id, "--limit", "1000"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["direction"] == dir)
            .map(|m| m["body"].as_str().unwrap().to_string())
            .collect()
    };
    wait_for(60, "every message delivered both ways", || {
        texts(&a, "in").len() == from_b && texts(&b, "in").len() == from_a
    });
    let expect = |prefix: &str, n: usize| -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i:03}")).collect()
    };
    assert_eq!(texts(&a, "in"), expect("b", from_b));
    assert_eq!(texts(&b, "in"), expect("a", from_a));
    assert_eq!(texts(&a, "out"), expect("a", from_a));
    assert_eq!(texts(&b, "out"), expect("b", from_b));
    // The human `discussions` shows the current key and its last rotation.
    let listing = a.ok(&["discussions"]);
    assert!(
        listing.contains("KEY") && listing.contains("ROTATED"),
        "{listing}"
    );
    assert!(listing.contains(&key_id(&a)), "{listing}");
    assert!(listing.contains(" ago"), "{listing}");
}

/// `alice`'s current key id of discussion `id`, from `discussions --json`.
fn listed_key(p: &crate::binary::Person, id: &str) -> String {
    p.json(&["discussions"])
        .as_array()
        .and_then(|all| all.iter().find(|d| d["id"] == id).cloned())
        .and_then(|d| d["key_id"].as_str().map(String::from))
        .unwrap_or_default()
}

/// Our subkey states of discussion `id` in `p`'s store (its core stopped), oldest first.
fn stored_states(p: &crate::binary::Person, id: &str) -> Vec<(String, String)> {
    pgpchat_actors::store::Store::open(&p.data_dir().join("store.db"))
        .unwrap()
        .own_subkeys(id)
        .unwrap()
        .into_iter()
        .map(|k| (k.key_id, k.state.as_str().to_string()))
        .collect()
}

fn append_config(p: &crate::binary::Person, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&p.config)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// The time trigger: a key active for longer than `rotation.hours` is replaced (checked at start
/// and every minute), here a key made "two hours ago" (its state row's time moved back while the
/// core was stopped) with `hours = 1`.
#[test]
fn a_key_older_than_rotation_hours_is_rotated() {
    use crate::binary::wait_for;
    let (mut a, b) = crate::binary::alice_and_bob_running();
    let id = a.open_with(&b, "a secret for the clock");
    let old = listed_key(&a, &id);
    assert_eq!(old.len(), 16);
    a.kill();
    let db = rusqlite::Connection::open(a.data_dir().join("store.db")).unwrap();
    db.execute(
        "UPDATE discussion_subkeys SET changed = changed - 7200 WHERE discussion_id = ?1",
        [&id],
    )
    .unwrap();
    drop(db);
    append_config(&a, "\n[rotation]\nhours = 1\n");
    a.start();
    wait_for(60, "the old key replaced", || {
        let now = listed_key(&a, &id);
        !now.is_empty() && now != old
    });
    a.ok(&["send", &id, "after the rotation"]);
    wait_for(30, "bob reads alice under the new key", || {
        b.json(&["history", &id])
            .to_string()
            .contains("after the rotation")
    });
}

/// A draining key whose missing messages never come is destroyed `rotation.drain_max_hours` after
/// the switch anyway: alice's rotation is made to look acknowledged long ago by a bob still
/// missing messages (its rows set so while her core was stopped); at start the draining key is
/// destroyed, and the discussion goes on (bob, back, switches to the new key).
#[test]
fn a_draining_key_is_destroyed_after_drain_max_hours_whatever_is_missing() {
    use crate::binary::wait_for;
    let (mut a, mut b) = crate::binary::alice_and_bob_running();
    let id = a.open_with(&b, "a secret for the drain");
    let old = listed_key(&a, &id);
    b.kill(); // the announcement waits in alice's outbox
    let new = a.json(&["rotate", &id])["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    a.kill();
    assert_eq!(
        stored_states(&a, &id),
        [
            (old.clone(), "active".into()),
            (new.clone(), "pending".into())
        ]
    );
    let db = rusqlite::Connection::open(a.data_dir().join("store.db")).unwrap();
    db.execute_batch(&format!(
        "UPDATE discussion_subkeys SET state = 'active', from_seq = 1000, changed = changed - 7200
             WHERE discussion_id = '{id}' AND key_id = '{new}';
         UPDATE discussion_subkeys SET state = 'draining', from_seq = 1000, changed = changed - 7200
             WHERE discussion_id = '{id}' AND key_id = '{old}';"
    ))
    .unwrap();
    drop(db);
    append_config(&a, "\n[rotation]\ndrain_max_hours = 1\n");
    a.start();
    wait_for(30, "the draining key destroyed at start", || {
        a.json(&["discussions"]).to_string().contains(&new)
            && a.log().contains("subkey destroyed 1 h after the switch")
            && a.log().contains("1 old subkey(s) destroyed")
    });
    a.kill();
    assert_eq!(stored_states(&a, &id), [(new.clone(), "active".into())]);
    a.start();
    b.start();
    b.ok(&["send", &id, "bob is back"]);
    wait_for(60, "alice reads bob under her new key", || {
        a.json(&["history", &id])
            .to_string()
            .contains("bob is back")
    });
}

/// The discussion key `n`'s session of `id` holds now, as a weak reference only.
async fn own_key_weak(
    n: &NodeHandle,
    id: &str,
) -> std::sync::Weak<pgpchat_actors::crypto::SecretCert> {
    let session = n
        .directory
        .send(pgpchat_actors::discussions::Lookup(id.to_string()))
        .await
        .unwrap()
        .unwrap();
    let key = session
        .send(pgpchat_actors::session::OwnKeyForTests)
        .await
        .unwrap();
    std::sync::Arc::downgrade(&key)
}

/// Destroyed means gone from memory too: once a rotation destroyed the old subkey, no task of
/// either session still holds the discussion key that had it (its secrets are zeroized when the
/// last holder drops it). The receiver's discussion listener kept the key it started with for the
/// session's whole life (fails before: the first key of bob, the receiver, stayed alive).
#[actix_rt::test]
async fn a_key_replaced_by_a_rotation_is_dropped_by_every_holder() {
    let n = spawn_nodes(&["alice", "bob"]).await;
    let (a, b) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    let (opened, _) = open_discussion(a, b, "tulip", "tulip").await;
    let id = opened.expect("alice and bob talk");
    a.send(&id, "hello").await.unwrap();
    received(b, &id, 1).await;
    for (who, n) in [("alice", a), ("bob", b)] {
        let before = own_key_weak(n, &id).await;
        let new = n.rotate(&id).await.unwrap();
        wait_active(n, &id, &new).await;
        // Messages both ways under the new keys (connections, encryptions, acknowledgements).
        a.send(&id, &format!("after {who} a")).await.unwrap();
        b.send(&id, &format!("after {who} b")).await.unwrap();
        // Deadline-based: in-flight work may hold it a moment; nothing may hold it for good.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while before.strong_count() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(
            before.strong_count(),
            0,
            "{who}'s discussion key from before the rotation is still held after its subkey \
             was destroyed"
        );
    }
    // A reconnection: the listener authenticates with the current key.
    let session = b
        .directory
        .send(pgpchat_actors::discussions::Lookup(id.clone()))
        .await
        .unwrap()
        .unwrap();
    session
        .send(pgpchat_actors::session::Reconnect)
        .await
        .unwrap();
    a.send(&id, "after reconnection").await.unwrap();
    let texts = received(b, &id, 4).await;
    assert_eq!(
        texts,
        [
            "hello",
            "after alice a",
            "after bob a",
            "after reconnection"
        ],
        "exactly once, in order"
    );
}

/// A peer's signed `Frame::Unreadable` is the peer's word for where to send again from: one naming
/// the largest sequence number (`u64::MAX`) and a subkey we do not encrypt to overflowed `last_seq
/// + 1` (a panic of bob's session in a debug build, a resend of the whole outbox in a release
/// one). Now nothing is sent again past the end, and the session goes on (fails before: bob's
/// session panicked, his message never came).
#[actix_rt::test]
async fn an_unreadable_frame_naming_the_last_sequence_number_changes_nothing() {
    use pgpchat_actors::net::{self, Crypto as _};
    use pgpchat_actors::wire::{unreadable_data, Frame};
    let n = spawn_nodes(&["bob"]).await;
    let b = &n[0];
    let (id, sk, port, keys) = crate::delivery::handshake_as_test_peer(b).await;
    let t = std::time::Duration::from_secs(10);
    let mut conn = crate::delivery::dial(port).await;
    net::authenticate_as_connector(&mut conn, &keys, &sk, t)
        .await
        .unwrap();
    for (key_id, last_seq) in [
        ("0000000000000000", u64::MAX),
        (sk.own.public().current_subkey().unwrap().as_str(), u64::MAX),
    ] {
        let signature = keys
            .sign_with(sk.own.clone(), unreadable_data(&id, key_id, last_seq))
            .await
            .unwrap();
        net::send(
            &mut conn,
            Frame::Unreadable {
                key_id: key_id.to_string(),
                last_seq,
                signature,
            },
            t,
        )
        .await
        .unwrap();
    }
    // Bob's session reads frames in order: it acknowledges our chat only after it handled both.
    let p = pgpchat_actors::wire::ChatPayload {
        discussion_id: id.clone(),
        seq: 1,
        time: pgpchat_actors::events::now_secs(),
        recipient: sk.peer.fingerprint().to_string(),
        body: "after".into(),
    };
    let chat = pgpchat_actors::net::chat::encrypt_chat(&sk.own, &sk.peer, &p).unwrap();
    net::send(&mut conn, Frame::Chat(chat), t).await.unwrap();
    let mut acked = false;
    while !acked {
        match net::recv(&mut conn, t).await {
            Ok(Frame::Ack { upto: 1, .. }) => acked = true,
            Ok(Frame::Ack { .. }) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => panic!("bob's session ended instead of acknowledging: {e}"),
        }
    }
    b.send(&id, "still here").await.unwrap();
    match net::recv(&mut conn, t).await.unwrap() {
        Frame::Chat(bytes) => {
            let p = pgpchat_actors::net::chat::decrypt_chat(&sk.own, &sk.peer, &bytes).unwrap();
            assert_eq!((p.seq, p.body.as_str()), (1, "still here"));
        }
        other => panic!("expected bob's message, got {other:?}"),
    }
    assert_eq!(received(b, &id, 1).await, ["after"]);
}

/// `Frame::Unreadable` costs us a re-encryption of the outbox each: a peer may send at most
/// `MAX_UNREADABLE_PER_CONNECTION` on one connection, the next one costs it the connection. The
/// test peer names subkeys at random: the first four change nothing (bob still acknowledges its
/// chat), the fifth ends the connection (fails before: the connection stayed, bob re-encrypting
/// for every frame).
#[actix_rt::test]
async fn unreadable_frames_past_the_bound_cost_the_connection() {
    use pgpchat_actors::net::{self, Crypto as _};
    use pgpchat_actors::wire::{unreadable_data, Frame};
    const BOUND: u64 = 4; // session::rotation::MAX_UNREADABLE_PER_CONNECTION
    let n = spawn_nodes(&["bob"]).await;
    let b = &n[0];
    let (id, sk, port, keys) = crate::delivery::handshake_as_test_peer(b).await;
    let t = std::time::Duration::from_secs(10);
    let mut conn = crate::delivery::dial(port).await;
    net::authenticate_as_connector(&mut conn, &keys, &sk, t)
        .await
        .unwrap();
    let unreadable = |k: u64| {
        let (keys, sk, id) = (keys.clone(), sk.clone(), id.clone());
        async move {
            let key_id = format!("{k:016X}");
            let signature = keys
                .sign_with(sk.own.clone(), unreadable_data(&id, &key_id, 0))
                .await
                .unwrap();
            Frame::Unreadable {
                key_id,
                last_seq: 0,
                signature,
            }
        }
    };
    for k in 1..=BOUND {
        net::send(&mut conn, unreadable(k).await, t).await.unwrap();
    }
    // The bound is not reached: bob still reads and acknowledges (the positive control).
    let p = pgpchat_actors::wire::ChatPayload {
        discussion_id: id.clone(),
        seq: 1,
        time: pgpchat_actors::events::now_secs(),
        recipient: sk.peer.fingerprint().to_string(),
        body: "within the bound".into(),
    };
    let chat = pgpchat_actors::net::chat::encrypt_chat(&sk.own, &sk.peer, &p).unwrap();
    net::send(&mut conn, Frame::Chat(chat), t).await.unwrap();
    loop {
        match net::recv(&mut conn, t).await {
            Ok(Frame::Ack { upto: 1, .. }) => break,
            Ok(Frame::Ack { .. }) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => panic!("bob dropped the connection within the bound: {e}"),
        }
    }
    net::send(&mut conn, unreadable(BOUND + 1).await, t)
        .await
        .unwrap();
    // A chat after it: read (and acknowledged) only if the connection survived.
    let p = pgpchat_actors::wire::ChatPayload {
        seq: 2,
        body: "past the bound".into(),
        ..p
    };
    let chat = pgpchat_actors::net::chat::encrypt_chat(&sk.own, &sk.peer, &p).unwrap();
    let _ = net::send(&mut conn, Frame::Chat(chat), t).await;
    loop {
        match net::recv(&mut conn, t).await {
            Ok(Frame::Ack { upto: 2, .. }) => panic!("the connection survived the bound"),
            Ok(Frame::Ack { .. }) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(net::NetError::Closed | net::NetError::Codec(_)) => break,
            Err(e) => panic!("expected the connection closed, got {e}"),
        }
    }
    assert_eq!(received(b, &id, 1).await, ["within the bound"]);
}

/// A step the peer could not store is done again, not dropped: bob's store refuses to record
/// alice's new subkey (a trigger, put in while his core was stopped, stands for a full disk);
/// the announcement stays unhandled, and once the store works again (bob restarted) he
/// acknowledges it, and alice's key becomes active. Fails before: the announcement was marked
/// handled with nothing stored and no acknowledgement, alice's key pending for good.
#[test]
fn an_announcement_the_peer_could_not_store_is_handled_again_at_its_next_start() {
    use crate::binary::wait_for;
    let (a, mut b) = crate::binary::alice_and_bob_running();
    let id = a.open_with(&b, "a secret for the failing disk");
    let old = listed_key(&a, &id);
    b.kill();
    let db = rusqlite::Connection::open(b.data_dir().join("store.db")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse_peer_rotation BEFORE UPDATE OF peer_subkey ON discussions
         BEGIN SELECT RAISE(ABORT, 'injected write failure'); END;",
    )
    .unwrap();
    drop(db);
    b.start();
    let new = a.json(&["rotate", &id])["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new, old);
    wait_for(60, "bob fails to store alice's new subkey", || {
        b.log().contains("injected write failure")
    });
    a.ok(&["send", &id, "while bob's disk fails"]);
    wait_for(60, "bob reads alice meanwhile", || {
        b.json(&["history", &id])
            .to_string()
            .contains("while bob's disk fails")
    });
    assert_eq!(listed_key(&a, &id), old, "not acknowledged");
    b.kill();
    let db = rusqlite::Connection::open(b.data_dir().join("store.db")).unwrap();
    db.execute_batch("DROP TRIGGER refuse_peer_rotation;")
        .unwrap();
    drop(db);
    b.start();
    wait_for(60, "alice's new subkey acknowledged and active", || {
        listed_key(&a, &id) == new
    });
    a.ok(&["send", &id, "under the new key"]);
    wait_for(60, "bob reads alice under her new key", || {
        b.json(&["history", &id])
            .to_string()
            .contains("under the new key")
    });
}

/// A SIGKILL at each step of a rotation, exactly there (the core's crash point,
/// `session::CRASH_AT_ENV`): alice's new subkey and its announcement stored; bob's record of it
/// and his acknowledgement stored; alice's switch stored (new active, old draining); the old
/// subkey destroyed (before the WAL truncation). After the restart the rotation completes, the
/// old subkey ends up destroyed, and every message sent around it, both ways, arrives exactly
/// once and in order.
#[test]
fn a_rotation_killed_at_each_of_its_steps_completes_after_the_restart() {
    use crate::binary::{wait_for, Person};
    use pgpchat_actors::session::CRASH_AT_ENV;
    for (step, alice_crashes) in [
        ("pending-stored", true),
        ("peer-stored", false),
        ("acknowledged", true),
        ("destroyed", true),
    ] {
        let (mut a, mut b) = crate::binary::alice_and_bob_running();
        let id = a.open_with(&b, "a secret for the crash points");
        let old = listed_key(&a, &id);
        let (mut sent_a, mut sent_b) = (Vec::new(), Vec::new());
        let send = |p: &Person, who: &str, out: &mut Vec<String>| {
            let text = format!("{who}{:03}", out.len());
            p.ok(&["send", &id, &text]);
            out.push(text);
        };
        for _ in 0..3 {
            send(&a, "a", &mut sent_a);
            send(&b, "b", &mut sent_b);
        }
        // The one who crashes runs with the crash point set.
        let crasher = if alice_crashes { &mut a } else { &mut b };
        crasher.kill();
        crasher.core_env = vec![(CRASH_AT_ENV.into(), step.into())];
        crasher.start();
        // Right after a start the session may be finishing an earlier step ("try again"); the
        // crash itself may cut the answer short.
        for _ in 0..100 {
            let r = a.run(&["rotate", &id]);
            if r.status.success() || !String::from_utf8_lossy(&r.stderr).contains("try again") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let crasher = if alice_crashes { &mut a } else { &mut b };
        assert!(
            crasher.wait_core_exit(60),
            "{step}: the core never reached its crash point\n{}",
            crasher.log()
        );
        assert!(
            crasher.log().contains(&format!("crash point {step}")),
            "{step}"
        );
        crasher.core_env.clear();
        crasher.start();
        for _ in 0..3 {
            send(&a, "a", &mut sent_a);
            send(&b, "b", &mut sent_b);
        }
        wait_for(60, "the rotation completed after the restart", || {
            let now = listed_key(&a, &id);
            !now.is_empty() && now != old
        });
        let bodies = |p: &Person, dir: &str| -> Vec<String> {
            let mut v: Vec<(u64, String)> = p
                .json(&["history", &id, "--limit", "1000"])
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["direction"] == dir)
                .map(|m| {
                    (
                        m["seq"].as_u64().unwrap(),
                        m["body"].as_str().unwrap().into(),
                    )
                })
                .collect();
            v.sort();
            v.into_iter().map(|(_, t)| t).collect()
        };
        wait_for(60, "every message both ways", || {
            bodies(&b, "in") == sent_a && bodies(&a, "in") == sent_b
        });
        // Settled: the old subkey destroyed (a kill between switch and destruction leaves it
        // draining; the restarted core finishes it).
        let store = rusqlite::Connection::open_with_flags(
            a.data_dir().join("store.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        wait_for(60, "alice's old subkey destroyed", || {
            store
                .query_row(
                    "SELECT group_concat(state) FROM discussion_subkeys WHERE discussion_id = ?1",
                    [&id],
                    |r| r.get::<_, Option<String>>(0),
                )
                .ok()
                .flatten()
                .as_deref()
                == Some("active")
        });
        drop(store);
        a.kill();
        b.kill();
    }
}
