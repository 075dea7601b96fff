//! The worker against a local DHT test network on 127.0.0.1 only (`Testnet::builder(n)` binds
//! loopback; every client is built through `guard::build` with `loopback_only`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::*;
use crate::crypto::SecretCert;
use crate::dht::guard::{self, DhtConfig};
use crate::dht::identity_record;

/// Enough nodes that a put is stored at several (pkarr wants 10 on the real network).
const TESTNET_NODES: usize = 12;
const DEADLINE: Duration = Duration::from_secs(60);
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn client(testnet: &mainline::Testnet) -> mainline::Dht {
    guard::build(&DhtConfig {
        bootstrap: testnet.bootstrap.clone(),
        bind: Ipv4Addr::LOCALHOST,
        port: 0,
        loopback_only: true,
    })
    .expect("loopback DHT client")
}

fn worker(dht: mainline::Dht, min_lookup: Duration) -> (Addr<DhtWorker>, Arc<Counters>) {
    let w = DhtWorker::new(
        dht,
        WorkerConfig {
            republish_interval: Duration::from_secs(3600),
            min_lookup_interval: min_lookup,
        },
    );
    let counters = w.counters();
    (w.start(), counters)
}

async fn wait_puts(counters: &Counters, n: u64) {
    let end = Instant::now() + DEADLINE;
    while counters.puts.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < end, "no put stored before the deadline");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resolve until a record with `port` is found (the DHT may still hold the older one for a moment).
async fn resolve_port(w: &Addr<DhtWorker>, id: &str, port: u16) -> PeerRecord {
    let end = Instant::now() + DEADLINE;
    loop {
        match w.send(Resolve(id.into())).await.expect("worker") {
            Ok(Some(r)) if r.port == port => return r,
            Ok(_) | Err(DhtError::RateLimited(_)) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < end, "record with port {port} not found");
        actix_rt::time::sleep(Duration::from_millis(350)).await;
    }
}

#[test]
fn a_peer_publishes_and_the_other_finds_it_then_follows_its_move() {
    let testnet = mainline::Testnet::builder(TESTNET_NODES)
        .build()
        .expect("local testnet on 127.0.0.1");
    assert!(testnet.bootstrap.iter().all(|b| b
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback())));
    let (alice_dht, bob_dht) = (client(&testnet), client(&testnet));
    actix_rt::System::new().block_on(async move {
        let secret = RendezvousSecret::from_bytes([9; 32]);
        let (alice, alice_counters) = worker(alice_dht, Duration::from_secs(2));
        let (bob, bob_counters) = worker(bob_dht, Duration::from_secs(2));
        let id = "d1".to_string();
        for (w, role) in [(&alice, Role::Requester), (&bob, Role::Receiver)] {
            w.send(Track {
                discussion_id: id.clone(),
                secret: secret.clone(),
                role,
            })
            .await
            .expect("worker")
            .expect("tracked");
        }
        bob.send(SetListener {
            port: 40_001,
            addresses: vec![LOOPBACK],
        })
        .await
        .expect("worker");
        wait_puts(&bob_counters, 1).await;
        let found = resolve_port(&alice, &id, 40_001).await;
        assert!(found.addresses.contains(&LOOPBACK));

        // Bob moves: his record is republished at once, and alice follows.
        bob.send(SetListener {
            port: 40_002,
            addresses: vec![LOOPBACK],
        })
        .await
        .expect("worker");
        wait_puts(&bob_counters, 2).await;
        resolve_port(&alice, &id, 40_002).await;

        // Bounded rate: a second lookup right away is refused without touching the DHT.
        let before = alice_counters.lookups.load(Ordering::Relaxed);
        assert_eq!(
            alice.send(Resolve(id.clone())).await.expect("worker"),
            Err(DhtError::RateLimited(Duration::from_secs(2)))
        );
        assert_eq!(alice_counters.lookups.load(Ordering::Relaxed), before);

        // Alice never published (no listener yet): bob finds nothing for her.
        assert_eq!(
            bob.send(Resolve(id.clone())).await.expect("worker"),
            Ok(None)
        );
        // Another discussion (another secret) between the same two: nothing there either.
        alice
            .send(Track {
                discussion_id: "d2".into(),
                secret: RendezvousSecret::from_bytes([10; 32]),
                role: Role::Requester,
            })
            .await
            .expect("worker")
            .expect("tracked");
        assert_eq!(
            alice.send(Resolve("d2".into())).await.expect("worker"),
            Ok(None)
        );
        assert_eq!(
            alice.send(Resolve("unknown".into())).await.expect("worker"),
            Err(DhtError::Unknown)
        );
        // Untracked: no longer resolvable.
        alice.send(Untrack(id.clone())).await.expect("worker");
        assert_eq!(
            alice.send(Resolve(id)).await.expect("worker"),
            Err(DhtError::Unknown)
        );

        let status = bob.send(GetDhtStatus).await.expect("worker");
        assert!(status.local_address.ip().is_loopback());
        assert_eq!(status.tracked, 1);
        assert!(status.puts >= 2);
    });
}

#[test]
fn the_identity_record_is_found_by_fingerprint_when_published_and_absent_when_not() {
    let testnet = mainline::Testnet::builder(TESTNET_NODES)
        .build()
        .expect("local testnet on 127.0.0.1");
    let (a_dht, b_dht) = (client(&testnet), client(&testnet));
    let carol = SecretCert::generate("carol").expect("key");
    let dave = SecretCert::generate("dave").expect("key");
    let item = identity_record::seal(&carol, 40_003, &[LOOPBACK], unix_micros()).expect("seal");
    actix_rt::System::new().block_on(async move {
        let (publisher, _) = worker(a_dht, Duration::ZERO);
        let (finder, _) = worker(b_dht, Duration::ZERO);
        publisher
            .send(PutItem(item))
            .await
            .expect("worker")
            .expect("stored");
        let key = identity_record::public_key(carol.fingerprint()).expect("key");
        let end = Instant::now() + DEADLINE;
        let found = loop {
            let items = finder
                .send(GetItem(key))
                .await
                .expect("worker")
                .expect("budget");
            if let Some(found) = items.into_iter().next() {
                break found;
            }
            assert!(Instant::now() < end, "identity record not found");
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        };
        let (record, cert) =
            identity_record::open(carol.fingerprint(), &found, unix_micros()).expect("valid");
        assert_eq!(record.port, 40_003);
        assert_eq!(cert.fingerprint(), carol.fingerprint());
        // Dave never published: nothing under his key.
        let dave_key = identity_record::public_key(dave.fingerprint()).expect("key");
        assert!(finder
            .send(GetItem(dave_key))
            .await
            .expect("worker")
            .expect("budget")
            .is_empty());
    });
}

/// Issue 11 finding 1: a change of the address the DHT sees for us republishes every record, with
/// no restart and no change of listener.
#[test]
fn a_change_of_public_address_republishes_the_record() {
    let testnet = mainline::Testnet::builder(TESTNET_NODES)
        .build()
        .expect("local testnet on 127.0.0.1");
    let (alice_dht, bob_dht) = (client(&testnet), client(&testnet));
    actix_rt::System::new().block_on(async move {
        let secret = RendezvousSecret::from_bytes([11; 32]);
        let public = Arc::new(Mutex::new(Some(Ipv4Addr::new(127, 0, 0, 2))));
        let (alice, _) = worker(alice_dht, Duration::ZERO);
        let bob = DhtWorker::new(
            bob_dht,
            WorkerConfig {
                republish_interval: Duration::from_secs(3600),
                min_lookup_interval: Duration::ZERO,
            },
        )
        .with_address_source(AddressSource::Fixed(public.clone()));
        let bob_counters = bob.counters();
        let bob = bob.start();
        let id = "moved".to_string();
        for (w, role) in [(&alice, Role::Requester), (&bob, Role::Receiver)] {
            w.send(Track {
                discussion_id: id.clone(),
                secret: secret.clone(),
                role,
            })
            .await
            .expect("worker")
            .expect("tracked");
        }
        bob.send(SetListener {
            port: 40_011,
            addresses: vec![LOOPBACK],
        })
        .await
        .expect("worker");
        bob.send(Tick).await.expect("worker");
        let end = Instant::now() + DEADLINE;
        loop {
            let r = resolve_port(&alice, &id, 40_011).await;
            if r.addresses.first() == Some(&IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))) {
                assert!(r.addresses.contains(&LOOPBACK), "listener address kept");
                break;
            }
            assert!(Instant::now() < end, "public address never published");
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
        let puts = bob_counters.puts.load(Ordering::Relaxed);

        // The DHT now sees bob elsewhere; same listener, no restart.
        *public.lock().expect("lock") = Some(Ipv4Addr::new(127, 0, 0, 3));
        bob.send(Tick).await.expect("worker");
        wait_puts(&bob_counters, puts + 1).await;
        let end = Instant::now() + DEADLINE;
        loop {
            let r = resolve_port(&alice, &id, 40_011).await;
            if r.addresses.first() == Some(&IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))) {
                break;
            }
            assert!(Instant::now() < end, "new public address never published");
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// Issue 11 finding 6: while the DHT calls us firewalled, the address it reports (a vote of the
/// nodes that answered) is published only once it held for `PUBLIC_ADDRESS_STABLE_CHECKS` checks.
#[test]
fn an_unconfirmed_public_address_is_adopted_only_when_stable() {
    let (a, b) = (
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
    );
    let mut p = PublicAddress::default();
    assert!(
        !p.observe(Some(a), true),
        "one firewalled answer is not enough"
    );
    assert_eq!(p.adopted, None);
    assert!(!p.observe(Some(b), true), "a different answer starts over");
    assert!(p.observe(Some(b), true), "stable across checks: adopted");
    assert_eq!(p.adopted, Some(b));
    assert!(!p.observe(None, true), "no view: keep the last good one");
    assert_eq!(p.adopted, Some(b));
    assert!(!p.observe(Some(a), true));
    assert_eq!(p.adopted, Some(b), "one vote does not move it");
    assert!(
        p.observe(Some(a), false),
        "confirmed (not firewalled): at once"
    );
    assert_eq!(p.adopted, Some(a));
    assert!(!p.observe(Some(a), false), "no change, no republish");
}

/// Issue 11 finding 2: a node-wide budget of lookups, whatever the discussion: a burst of
/// `LOOKUP_BURST` traversals, then one per `LOOKUP_REFILL`; `MAX_LOOKUPS_IN_FLIGHT` at once.
#[test]
fn lookups_have_a_node_wide_budget() {
    let t0 = Instant::now();
    let mut b = LookupBudget::new(t0);
    // In flight: the cap holds even with tokens left.
    for _ in 0..MAX_LOOKUPS_IN_FLIGHT {
        assert!(b.try_start(1, t0));
    }
    assert!(!b.try_start(1, t0), "in-flight cap");
    for _ in 0..MAX_LOOKUPS_IN_FLIGHT {
        b.finish();
    }
    // The rest of the burst, then refused until refilled.
    let left = LOOKUP_BURST as usize - MAX_LOOKUPS_IN_FLIGHT;
    for _ in 0..left {
        assert!(b.try_start(1, t0));
        b.finish();
    }
    assert!(!b.try_start(1, t0), "burst spent");
    assert!(!b.try_start(1, t0 + LOOKUP_REFILL / 2));
    assert!(b.try_start(1, t0 + LOOKUP_REFILL), "one token earned");
    b.finish();
    assert!(!b.try_start(1, t0 + LOOKUP_REFILL));
    // A resolve costs two: one token is not enough, two are.
    assert!(!b.try_start(2, t0 + LOOKUP_REFILL * 2));
    assert!(b.try_start(2, t0 + LOOKUP_REFILL * 3));
    b.finish();
    // Long idle: back to a full burst, no more.
    let later = t0 + LOOKUP_REFILL * 1000;
    for _ in 0..LOOKUP_BURST {
        assert!(b.try_start(1, later));
        b.finish();
    }
    assert!(!b.try_start(1, later));
}

/// Issue 11 finding 2: many discussions resolving at once hit the node-wide budget (`Busy`), and
/// tracking a discussion again does not reset its own limit.
#[test]
fn many_discussions_cannot_resolve_at_once_and_retracking_keeps_the_limit() {
    let testnet = mainline::Testnet::builder(TESTNET_NODES)
        .build()
        .expect("local testnet on 127.0.0.1");
    let dht = client(&testnet);
    actix_rt::System::new().block_on(async move {
        let (w, counters) = worker(dht, Duration::from_secs(3600));
        let n = LOOKUP_BURST as usize; // each resolve costs 2: half of them fit
        for i in 0..n {
            w.send(Track {
                discussion_id: format!("d{i}"),
                secret: RendezvousSecret::from_bytes([i as u8; 32]),
                role: Role::Requester,
            })
            .await
            .expect("worker")
            .expect("tracked");
        }
        let all = futures::future::join_all((0..n).map(|i| w.send(Resolve(format!("d{i}"))))).await;
        let busy = all
            .iter()
            .filter(|r| matches!(r, Ok(Err(DhtError::Busy))))
            .count();
        assert!(busy >= n / 2, "only {busy} of {n} refused");
        assert!(counters.lookups.load(Ordering::Relaxed) <= LOOKUP_BURST as u64);
        // Reconciled with the store's open discussions (finding 5): the others are dropped.
        w.send(Retain(["d0".to_string(), "d1".to_string()].into()))
            .await
            .expect("worker");
        assert_eq!(w.send(GetDhtStatus).await.expect("worker").tracked, 2);
        // d0 was looked up: tracked again (a new secret), still rate limited.
        w.send(Track {
            discussion_id: "d0".into(),
            secret: RendezvousSecret::from_bytes([200; 32]),
            role: Role::Requester,
        })
        .await
        .expect("worker")
        .expect("tracked");
        assert_eq!(
            w.send(Resolve("d0".into())).await.expect("worker"),
            Err(DhtError::RateLimited(Duration::from_secs(3600)))
        );
    });
}
