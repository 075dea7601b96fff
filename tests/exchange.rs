//! Contact-list exchange over the control channel (issue 10, part 2; `docs/protocol.md`,
//! "Contact-list exchange"; `docs/security.md`, "A malicious sharer"): several nodes in one process
//! over loopback. A sharer's contacts that the asker cannot hear are written into the sharer's
//! store with their own signed announces, as discovery would have kept them.

use pgpchat_actors::codec;
use pgpchat_actors::events::Event;
use pgpchat_actors::node::NodeHandle;
use pgpchat_actors::settings::ShareFrom;
use pgpchat_actors::store::{ContactOrigin, ContactRecord};
use pgpchat_actors::wire::{Announce, AnnounceBody};

use crate::common::*;

/// Bob shares the contacts it heard by broadcast (the default shares none).
fn bob_shares(name: &str, s: &mut pgpchat_actors::settings::Settings) {
    if name == "bob" {
        s.sharing.share = vec![ShareFrom::Broadcast];
    }
}

/// A contact of `node` that nobody else hears: a fresh identity called `name`, with a signed
/// announce (unpadded, as kept), written into `node`'s store. `tamper` may change the announce
/// after it is signed. Returns its fingerprint.
async fn contact_of(node: &NodeHandle, name: &str, tamper: impl Fn(&mut Announce)) -> String {
    let peer = RawPeer::new(name);
    let bytes = signed_announce(&peer.keys, name, 4242, now()).await;
    let mut announce: Announce = codec::decode(&bytes).unwrap();
    announce.padding.clear();
    tamper(&mut announce);
    let c = ContactRecord {
        fingerprint: peer.keys.fingerprint().to_string(),
        name: name.into(),
        cert: peer.keys.public().to_bytes(),
        address: "127.0.0.1".into(),
        tcp_port: 4242,
        first_seen: now(),
        last_seen: now(),
        announce_time: now(),
        verified: false,
        key_changed: false,
        origin: ContactOrigin::Broadcast,
        probe: None,
        announce: codec::encode(&announce).unwrap(),
    };
    node.store.run(move |s| s.upsert_contact(&c)).await.unwrap();
    peer.keys.fingerprint().to_string()
}

fn now() -> u64 {
    pgpchat_actors::events::now_secs()
}

/// Alice and bob with a discussion, bob sharing by broadcast; `adjust` as in `spawn_nodes_with`.
async fn pair(adjust: impl Fn(&str, &mut pgpchat_actors::settings::Settings)) -> Vec<TestNode> {
    let n = spawn_nodes_with(&["alice", "bob"], |name, s| {
        bob_shares(name, s);
        adjust(name, s);
    })
    .await;
    wait_sees(&n[0], &n[1]).await;
    let (opened, _) = open_discussion(&n[0], &n[1], "pw", "pw").await;
    opened.unwrap();
    n
}

async fn contact_named(node: &NodeHandle, name: &str) -> Option<ContactRecord> {
    node.contacts()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == name)
}

#[actix_rt::test]
async fn a_list_is_exchanged_end_to_end_and_its_contacts_come_via_the_sharer() {
    let n = pair(|_, _| {}).await;
    let (a, b) = (&n[0], &n[1]);
    let carol = contact_of(b, "carol", |_| {}).await;
    let mut bob_events = b.subscribe();
    let got = a.contacts_from("bob").await.unwrap();
    assert_eq!(got.merged.learned, ["carol"]);
    assert_eq!(got.merged.known, 1, "bob itself, known by broadcast");
    assert_eq!((got.dropped, got.blocked), (0, 0));
    let c = contact_named(a, "carol").await.expect("carol learned");
    assert_eq!(c.fingerprint, carol);
    let bob_fp = b.keys.fingerprint().to_string();
    assert_eq!(
        c.origin,
        ContactOrigin::Via {
            fingerprint: bob_fp.clone(),
            name: "bob".into()
        }
    );
    assert_eq!(c.tcp_port, 4242);
    // Bob's own contact keeps where it came from.
    assert_eq!(
        contact_named(a, "bob").await.unwrap().origin,
        ContactOrigin::Broadcast
    );
    // The origin is on disk (what a restart reads).
    let stored = a.store.run(|s| s.contacts()).await.unwrap();
    let stored = stored.iter().find(|c| c.fingerprint == carol).unwrap();
    assert_eq!(stored.origin, c.origin);
    // Bob's user saw the request.
    let seen = wait_until(10, "bob told of the request", || {
        let got = bob_events.try_recv();
        async move {
            match got {
                Ok(Event::ListRequested {
                    peer_name,
                    shared,
                    refused,
                    ..
                }) => Some((peer_name, shared, refused)),
                _ => None,
            }
        }
    })
    .await;
    assert_eq!(seen, ("alice".to_string(), 1, false));
    // Asked again later, the same contact merges by fingerprint: nothing new, origin unchanged.
}

#[actix_rt::test]
async fn an_oversize_or_too_frequent_list_is_refused() {
    let n = pair(|name, s| {
        if name == "alice" {
            s.limits.max_list_entries = 2;
        }
    })
    .await;
    let (a, b) = (&n[0], &n[1]);
    contact_of(b, "carol", |_| {}).await;
    contact_of(b, "dave", |_| {}).await;
    // Bob, carol and dave: one more than alice takes.
    let oversize = a.contacts_from("bob").await;
    assert!(
        oversize
            .as_ref()
            .is_err_and(|e| e.to_string().contains("more than the 2 accepted")),
        "{oversize:?}"
    );
    assert!(contact_named(a, "carol").await.is_none(), "nothing merged");
    // Bob answers one list a peer asks for per interval.
    let again = a.contacts_from("bob").await;
    assert!(
        again
            .as_ref()
            .is_err_and(|e| e.to_string().contains("asked too often")),
        "{again:?}"
    );
}

#[actix_rt::test]
async fn an_entry_whose_signed_announce_does_not_verify_is_dropped() {
    let n = pair(|_, _| {}).await;
    let (a, b) = (&n[0], &n[1]);
    contact_of(b, "carol", |_| {}).await;
    // Bob renames dave in the announce dave signed: the signature no longer holds.
    contact_of(b, "dave", |announce| {
        let mut body: AnnounceBody = codec::decode(&announce.body).unwrap();
        body.name = "trusted bank".into();
        announce.body = codec::encode(&body).unwrap();
    })
    .await;
    let got = a.contacts_from("bob").await.unwrap();
    assert_eq!(got.merged.learned, ["carol"]);
    assert_eq!(got.dropped, 1);
    assert!(contact_named(a, "trusted bank").await.is_none());
    assert!(contact_named(a, "dave").await.is_none());
}

#[actix_rt::test]
async fn a_blocked_fingerprints_entries_are_ignored() {
    let n = pair(|_, _| {}).await;
    let (a, b) = (&n[0], &n[1]);
    let carol = contact_of(b, "carol", |_| {}).await;
    a.block(&carol, true).await.unwrap();
    let got = a.contacts_from("bob").await.unwrap();
    assert!(got.merged.learned.is_empty());
    assert_eq!(got.blocked, 1);
    assert!(a
        .contacts()
        .await
        .unwrap()
        .iter()
        .all(|c| c.fingerprint != carol));
}

#[actix_rt::test]
async fn a_known_name_with_another_key_raises_key_changed_and_open_still_reaches_the_old_key() {
    let n = spawn_nodes_with(&["alice", "bob", "carol"], bob_shares).await;
    let (a, b, carol) = (&n[0], &n[1], &n[2].node);
    wait_sees(a, b).await;
    wait_sees(a, carol).await;
    let (opened, _) = open_discussion(a, b, "pw", "pw").await;
    opened.unwrap();
    // Alice talks with the real carol: that key owns the name.
    let (opened, _) = open_discussion(a, carol, "c1", "c1").await;
    opened.unwrap();
    let impostor = contact_of(b, "carol", |_| {}).await;
    let mut events = a.subscribe();
    let got = a.contacts_from("bob").await.unwrap();
    assert_eq!(got.merged.learned, ["carol"]);
    assert_eq!(got.merged.key_changed, ["carol"]);
    let learned = a
        .contacts()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.fingerprint == impostor)
        .unwrap();
    assert!(learned.key_changed);
    let real = carol.keys.fingerprint().to_string();
    let warned = wait_until(10, "the key-changed warning", || {
        let got = events.try_recv();
        async move {
            match got {
                Ok(Event::KeyChanged {
                    name,
                    old_fingerprint,
                    new_fingerprint,
                }) => Some((name, old_fingerprint, new_fingerprint)),
                _ => None,
            }
        }
    })
    .await;
    assert_eq!(warned, ("carol".to_string(), real.clone(), impostor));
    // `open carol` still means the key alice talks with.
    let a2 = a.node.clone();
    let opening = actix_rt::spawn(async move { a2.open("carol", "c2").await });
    let a_fp = a.keys.fingerprint().to_string();
    let req = wait_until(20, "the request at the real carol", || {
        let (carol, a_fp) = (carol.clone(), a_fp.clone());
        async move {
            carol
                .requests()
                .await
                .ok()
                .and_then(|r| r.into_iter().find(|r| r.fingerprint == a_fp))
        }
    })
    .await;
    carol.accept(req.id, "c2").await.unwrap();
    opening.await.unwrap().unwrap();
}
