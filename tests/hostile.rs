//! Floods whose harm is not the load but what they push out: contacts from the table, lines into
//! the log.

use std::time::Duration;

use pgpchat_actors::crypto::SecretCert;
use pgpchat_actors::events::now_secs;
use pgpchat_actors::keys::KeyManager;
use pgpchat_actors::node::{start_node, NodeHandle};

use crate::common::*;

async fn node_with(
    name: &str,
    port: u16,
    tune: impl Fn(&mut pgpchat_actors::settings::Settings),
) -> (NodeHandle, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings(name, tmp.path(), port);
    tune(&mut s);
    let node = start_node(s, SecretCert::generate(name).unwrap())
        .await
        .unwrap();
    (node, tmp)
}

/// A fresh identity announces itself once as `name`; its fingerprint.
async fn announce_new(name: &str, port: u16) -> String {
    let k = KeyManager::start(SecretCert::generate(name).unwrap(), 1);
    broadcast(&signed_announce(&k, name, 1, now_secs()).await, port);
    k.fingerprint().to_string()
}

#[actix_rt::test]
async fn an_announce_flood_cannot_evict_a_contact_with_a_discussion() {
    const MAX_CONTACTS: usize = 8;
    init_logs();
    let port = free_udp_port();
    // Neither core announces by itself: bob is heard only when the test says so, so he is
    // "offline" (not seen any more) while the flood runs, though his discussion is open.
    let quiet = |s: &mut pgpchat_actors::settings::Settings| {
        s.discovery.enabled = false;
        s.limits.max_contacts = MAX_CONTACTS;
    };
    let (a, _ta) = node_with("alice", port, quiet).await;
    let (b, _tb) = node_with("bob", port, quiet).await;
    let bob_fp = b.keys.fingerprint().to_string();
    let bob_says_hello = || {
        let b = b.clone();
        async move {
            broadcast(
                &signed_announce(&b.keys, "bob", b.tcp_port, now_secs()).await,
                port,
            )
        }
    };
    bob_says_hello().await;
    wait_contact(&a, &bob_fp).await;
    let (opened, accepted) = open_discussion(&a, &b, "a shared secret", "a shared secret").await;
    opened.unwrap();
    accepted.unwrap();

    // Three tables' worth of fresh, validly signed identities, all seen after bob (last_seen is in
    // seconds, hence the pause).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for i in 0..3 * MAX_CONTACTS {
        let fp = announce_new(&format!("flood{i}"), port).await;
        wait_contact(&a, &fp).await;
    }
    let contacts = a.contacts().await.unwrap();
    assert!(
        contacts.len() <= MAX_CONTACTS,
        "bounded: {}",
        contacts.len()
    );
    let bob = contacts
        .iter()
        .find(|c| c.fingerprint == bob_fp)
        .expect("bob, with whom a discussion is open, is still a contact");
    assert!(!bob.key_changed);

    // An impostor takes bob's name: flagged, and "bob" still means the real bob.
    let impostor = announce_new("bob", port).await;
    assert!(
        wait_contact(&a, &impostor).await.key_changed,
        "the impostor is flagged"
    );
    assert_eq!(a.find_contact("bob").await.unwrap().fingerprint, bob_fp);
    // The real bob comes back: not a key change.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    bob_says_hello().await;
    wait_until(10, "bob seen again", || {
        let (a, fp) = (a.clone(), bob_fp.clone());
        async move {
            a.contacts()
                .await
                .ok()?
                .into_iter()
                .find(|c| c.fingerprint == fp && c.last_seen > bob.last_seen)
        }
    })
    .await;
    let bob = wait_contact(&a, &bob_fp).await;
    assert!(!bob.key_changed, "the real bob is not flagged");
    // A request is flagged "this name was known with another key" when it comes from the
    // impostor, never from the real bob (a new-user trial saw the genuine contact flagged).
    let other_key = |fingerprint: &str| {
        a.contacts.send(pgpchat_actors::contacts::NameHasOtherKey {
            name: "bob".into(),
            fingerprint: fingerprint.into(),
        })
    };
    assert!(!other_key(&bob_fp).await.unwrap(), "the real bob's request");
    assert!(
        other_key(&impostor).await.unwrap(),
        "the impostor's request"
    );
    assert!(a.contacts().await.unwrap().len() <= MAX_CONTACTS);
}

#[actix_rt::test]
async fn a_name_taken_by_another_key_is_flagged_on_rename_and_in_any_case() {
    init_logs();
    let port = free_udp_port();
    let (a, _ta) = node_with("alice", port, |s| s.discovery.enabled = false).await;
    let bob = KeyManager::start(SecretCert::generate("bob").unwrap(), 1);
    let bob_fp = bob.fingerprint().to_string();
    broadcast(&signed_announce(&bob, "bob", 1, now_secs()).await, port);
    wait_contact(&a, &bob_fp).await;
    a.set_verified("bob", true).await.unwrap();

    // A fresh key that first looks harmless, then renames itself onto the verified name.
    let renamer = KeyManager::start(SecretCert::generate("bobby").unwrap(), 1);
    let renamer_fp = renamer.fingerprint().to_string();
    let t = now_secs();
    broadcast(&signed_announce(&renamer, "bobby", 1, t).await, port);
    assert!(!wait_contact(&a, &renamer_fp).await.key_changed);
    broadcast(&signed_announce(&renamer, "bob", 1, t + 1).await, port);
    wait_until(10, "the rename onto bob's name to be flagged", || {
        let (a, fp) = (a.clone(), renamer_fp.clone());
        async move {
            let c = a
                .contacts()
                .await
                .ok()?
                .into_iter()
                .find(|c| c.fingerprint == fp)?;
            (c.name == "bob" && c.key_changed).then_some(())
        }
    })
    .await;

    // A fresh key announcing the name in another case (which `find` matches) is flagged too.
    let shouter = announce_new("BOB", port).await;
    assert!(wait_contact(&a, &shouter).await.key_changed);
    // The verified contact is not, and "bob" still means it.
    let real = wait_contact(&a, &bob_fp).await;
    assert!(!real.key_changed);
    assert_eq!(a.find_contact("bob").await.unwrap().fingerprint, bob_fp);
}
