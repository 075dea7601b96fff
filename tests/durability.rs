//! Never lose a message: the real binary's cores killed with SIGKILL at random moments.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgpchat_actors::api;
use pgpchat_actors::client::{Client, ClientError};
use pgpchat_actors::store::Store;
use serde_json::Value;

use crate::binary::{alice_and_bob_running, wait_for, Person};

/// The library's typed client, as every front-end uses it.
type Rpc = Client;

/// Send message `m{i}` to discussion `id`.
fn send(rpc: &mut Rpc, id: &str, i: u64) -> Result<api::Message, ClientError> {
    rpc.call(api::SendRequest {
        discussion: id.to_string(),
        text: format!("m{i:03}"),
    })
}

/// xorshift: reproducible "random moments"; the seed is printed so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn new() -> Self {
        let seed = std::env::var("PGPCHAT_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
                    | 1
            });
        eprintln!("random seed {seed} (set PGPCHAT_TEST_SEED to replay)");
        Self(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// alice and bob, both running, with an open discussion. Returns its id.
fn pair() -> (Person, Person, String) {
    let (a, b) = alice_and_bob_running();
    let id = a.open_with(&b, "pw");
    (a, b, id)
}

fn history(p: &Person, id: &str) -> Vec<Value> {
    p.json(&["history", id, "--limit", "100000"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn bodies(h: &[Value], dir: &str) -> Vec<String> {
    h.iter()
        .filter(|m| m["direction"] == dir)
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect()
}

fn assert_integrity(data_dir: PathBuf) {
    let s = Store::open(&data_dir.join("store.db")).expect("open store");
    assert_eq!(s.integrity_check().expect("integrity_check"), "ok");
}

#[test]
fn five_hundred_messages_survive_three_receiver_kills() {
    let (mut a, mut b, id) = pair();
    let mut rng = Rng::new();
    let mut kills: Vec<u64> = (0..3).map(|_| 50 + rng.below(400)).collect();
    kills.sort_unstable();
    let mut rpc = Rpc::connect(&a.socket()).unwrap();
    let mut down_until = None;
    let mut last_seq = 0;
    for i in 0..500u64 {
        let m = send(&mut rpc, &id, i).expect("send");
        // Increasing, not i + 1: control messages share the sequence (bob rotates his key after
        // 100 messages, and alice's acknowledgement takes a number).
        assert!(m.seq > last_seq, "{} after {last_seq}", m.seq);
        last_seq = m.seq;
        if kills.first() == Some(&i) {
            kills.remove(0);
            b.kill();
            down_until = Some(i + 5 + rng.below(30));
        }
        if down_until == Some(i) {
            b.start();
            down_until = None;
        }
    }
    if down_until.is_some() {
        b.start();
    }
    wait_for(
        120,
        "bob to hold all 500 and alice to see them delivered",
        || {
            let hb = history(&b, &id);
            let ha = history(&a, &id);
            hb.len() == 500 && ha.iter().all(|m| m["state"] == "delivered")
        },
    );
    let got = bodies(&history(&b, &id), "in");
    let want: Vec<String> = (0..500).map(|i| format!("m{i:03}")).collect();
    assert_eq!(got, want, "exactly once, in order");
    a.kill();
    b.kill();
    assert_integrity(a.data_dir());
    assert_integrity(b.data_dir());
}

#[test]
fn every_message_reported_stored_is_delivered_when_the_sender_is_killed() {
    let (mut a, mut b, id) = pair();
    let mut rng = Rng::new();
    let reported = Arc::new(Mutex::new(Vec::<u64>::new()));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (socket, id, reported, done) = (a.socket(), id.clone(), reported.clone(), done.clone());
        std::thread::spawn(move || {
            let mut rpc: Option<Rpc> = None;
            let mut i = 0u64;
            while i < 300 {
                let Some(r) = rpc.as_mut() else {
                    rpc = Rpc::connect(&socket).ok();
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                match send(r, &id, i) {
                    Ok(_) => reported.lock().unwrap().push(i),
                    Err(_) => rpc = None, // killed mid-request: this one is not reported
                }
                i += 1;
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(150 + rng.below(500)));
        a.kill();
        std::thread::sleep(Duration::from_millis(rng.below(200)));
        a.start();
    }
    sender.join().unwrap();
    assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    let reported = reported.lock().unwrap().clone();
    assert!(
        reported.len() >= 290,
        "most sends went through ({})",
        reported.len()
    );
    let end = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let ha = history(&a, &id);
        let hb = history(&b, &id);
        if ha.iter().all(|m| m["state"] == "delivered") && bodies(&hb, "in").len() >= reported.len()
        {
            break;
        }
        if std::time::Instant::now() > end {
            let pending: Vec<_> = ha
                .iter()
                .filter(|m| m["state"] != "delivered")
                .map(|m| (m["seq"].clone(), m["state"].clone()))
                .collect();
            panic!(
                "not all delivered: alice has {} ({} pending: {:?}), bob has {}\nalice log:\n{}\nbob log:\n{}",
                ha.len(),
                pending.len(),
                &pending[..pending.len().min(5)],
                hb.len(),
                a.log(),
                b.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let got: Vec<u64> = bodies(&history(&b, &id), "in")
        .iter()
        .map(|s| s[1..].parse().unwrap())
        .collect();
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates: {got:?}"
    );
    for r in &reported {
        assert!(
            got.contains(r),
            "m{r:03} was reported stored but never arrived"
        );
    }
    a.kill();
    b.kill();
    assert_integrity(a.data_dir());
    assert_integrity(b.data_dir());
}

#[test]
fn an_offline_receiver_gets_everything_when_it_comes_back_and_close_waits_for_it() {
    let (mut a, mut b, id) = pair();
    b.kill();
    for i in 0..20 {
        let m = a.json(&["send", &id, &format!("while you were out {i}")]);
        assert_eq!(m["state"], "stored");
    }
    std::thread::sleep(Duration::from_secs(2));
    let h = history(&a, &id);
    assert!(
        h.iter().all(|m| m["state"] != "delivered"),
        "nothing can be delivered yet"
    );
    b.start();
    wait_for(60, "bob receives all 20", || {
        bodies(&history(&b, &id), "in").len() == 20
    });
    let got = bodies(&history(&b, &id), "in");
    assert_eq!(
        got,
        (0..20)
            .map(|i| format!("while you were out {i}"))
            .collect::<Vec<_>>()
    );
    wait_for(30, "all delivered", || {
        history(&a, &id).iter().all(|m| m["state"] == "delivered")
    });
    let unread = b.json(&["discussions"])[0]["unread"].as_u64().unwrap();
    assert_eq!(unread, 0, "history read them");

    // Closing while bob is offline: alice refuses new messages at once, bob learns it when back.
    b.kill();
    let c = a.json(&["close", &id]);
    assert_eq!(c["state"], "closing");
    assert!(!a.run(&["send", &id, "too late"]).status.success());
    b.start();
    let closed = || {
        a.json(&["discussions"])[0]["state"] == "closed"
            && b.json(&["discussions"])[0]["state"] == "closed"
    };
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while !closed() {
        assert!(
            std::time::Instant::now() < end,
            "not closed: alice {} bob {}\nalice log:\n{}\nbob log:\n{}",
            a.json(&["discussions"]),
            b.json(&["discussions"]),
            a.log(),
            b.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(history(&b, &id).len(), 20, "history stays readable");
    a.kill();
    b.kill();
    for d in [a.data_dir(), b.data_dir()] {
        let s = Store::open(&d.join("store.db")).unwrap();
        assert!(
            s.discussion(&id).unwrap().own_key_sealed.is_empty(),
            "the discussion key is destroyed"
        );
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }
}

fn state_of(p: &Person, id: &str) -> String {
    p.json(&["discussions"])
        .as_array()
        .and_then(|all| all.iter().find(|d| d["id"] == id).cloned())
        .map(|d| d["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn own_key_destroyed(p: &Person, id: &str) -> bool {
    let s = Store::open(&p.data_dir().join("store.db")).expect("open store");
    s.discussion(id)
        .expect("discussion")
        .own_key_sealed
        .is_empty()
}

fn close_notices(p: &Person) -> usize {
    let s = Store::open(&p.data_dir().join("store.db")).expect("open store");
    s.close_notices().expect("close notices").len()
}

#[test]
fn a_forced_close_destroys_keys_at_once_and_the_peer_learns_it_when_back() {
    let (mut a, mut b, first) = pair();
    a.ok(&["send", &first, "before the end"]);
    wait_for(30, "delivered", || {
        history(&a, &first)
            .iter()
            .all(|m| m["state"] == "delivered")
    });

    // The requester closes while the receiver is away: closed now, key gone now.
    b.kill();
    let c = a.json(&["close", "--force", &first]);
    assert_eq!(c["state"], "closed");
    assert_eq!(state_of(&a, &first), "closed");
    assert!(
        own_key_destroyed(&a, &first),
        "alice's key destroyed at once"
    );
    assert!(!a.run(&["send", &first, "too late"]).status.success());
    // Closing twice is no failure (issue 12): it says so and changes nothing.
    let again = a.run(&["close", "--force", &first]);
    assert!(again.status.success(), "closing twice succeeds");
    assert!(String::from_utf8_lossy(&again.stdout).contains("already closed"));
    assert_eq!(close_notices(&a), 1, "alice still has to tell bob");
    let listed = a.json(&["discussions"]);
    assert_eq!(listed[0]["peer_not_told"], true, "{listed}");
    b.start();
    wait_for(60, "bob learns the discussion is closed", || {
        state_of(&b, &first) == "closed"
    });
    wait_for(30, "alice knows bob was told", || close_notices(&a) == 0);
    assert_eq!(a.json(&["discussions"])[0]["peer_not_told"], false);
    assert_eq!(bodies(&history(&b, &first), "in"), ["before the end"]);

    // The receiver closes while the requester is away, and restarts before it is back: the notice
    // survives the restart, and the requester, whose dial to the old discussion port fails, gets
    // it through bob's main listener.
    a.wait_sees_current_port(&b);
    let second = a.open_with(&b, "pw2");
    a.kill();
    let c = b.json(&["close", "--force", &second]);
    assert_eq!(c["state"], "closed");
    assert!(own_key_destroyed(&b, &second));
    b.kill();
    b.start();
    a.start();
    wait_for(60, "alice learns the discussion is closed", || {
        state_of(&a, &second) == "closed"
    });
    wait_for(30, "bob knows alice was told", || close_notices(&b) == 0);
    a.kill();
    b.kill();
    for (p, id) in [(&a, &first), (&b, &first), (&a, &second), (&b, &second)] {
        assert!(
            own_key_destroyed(p, id),
            "every discussion key is destroyed"
        );
    }
    assert_integrity(a.data_dir());
    assert_integrity(b.data_dir());
}

#[test]
fn a_peer_whose_discussion_port_was_taken_is_found_through_its_main_listener() {
    let (mut a, mut b, id) = pair();
    let listen_port = |p: &Person| {
        Store::open(&p.data_dir().join("store.db"))
            .unwrap()
            .discussion(&id)
            .unwrap()
            .listen_port
    };
    let peer_port = |p: &Person| {
        Store::open(&p.data_dir().join("store.db"))
            .unwrap()
            .discussion(&id)
            .unwrap()
            .peer_port
    };
    b.kill();
    let old = listen_port(&b);
    // Someone else takes the port meanwhile, and hangs up on whoever connects.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", old)).expect("take the port");
    squatter.set_nonblocking(true).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let guard = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = squatter.accept();
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    b.start();
    wait_for(20, "bob's core to move to a free port", || {
        listen_port(&b) != old
    });
    let new = listen_port(&b);
    a.json(&["send", &id, "found you"]);
    wait_for(60, "delivery through bob's new ports", || {
        history(&a, &id).iter().all(|m| m["state"] == "delivered")
            && bodies(&history(&b, &id), "in") == ["found you"]
    });
    assert_eq!(
        peer_port(&a),
        new,
        "alice learned bob's new discussion port"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    guard.join().unwrap();
    a.kill();
    b.kill();
}

/// Group commit (issue 13): sends that arrive together are committed in one transaction, and each
/// is answered only once that transaction is on disk. Eight clients send at once; the moment the
/// last answer is in, the core is killed: every message reported stored is in its store after the
/// restart, numbered once each, and reaches the peer in order.
#[test]
fn a_core_killed_right_after_a_burst_of_concurrent_sends_keeps_every_one() {
    const CLIENTS: u64 = 8;
    const EACH: u64 = 40;
    let (mut a, mut b, id) = pair();
    let barrier = Arc::new(std::sync::Barrier::new(CLIENTS as usize));
    let senders: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (socket, id, barrier) = (a.socket(), id.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut rpc = Rpc::connect(&socket).expect("connect");
                barrier.wait();
                (0..EACH)
                    .map(|k| send(&mut rpc, &id, c * EACH + k).expect("send").seq)
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = senders
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    a.kill();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=CLIENTS * EACH).collect::<Vec<_>>(),
        "each send got its own number"
    );
    let stored = Store::open(&a.data_dir().join("store.db")).expect("open store");
    assert_eq!(stored.integrity_check().unwrap(), "ok");
    assert_eq!(
        stored.last_out_seq(&id).unwrap(),
        CLIENTS * EACH,
        "every reported message is on disk"
    );
    drop(stored);
    a.start();
    let by_seq = |p: &Person, dir: &str| -> Vec<(u64, String)> {
        let mut v: Vec<(u64, String)> = history(p, &id)
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
        v
    };
    let sent = by_seq(&a, "out");
    assert_eq!(sent.len() as u64, CLIENTS * EACH);
    wait_for(120, "bob to get every message", || {
        by_seq(&b, "in").len() as u64 >= CLIENTS * EACH
    });
    let got = by_seq(&b, "in");
    assert_eq!(got, sent, "each message once, under the sender's number");
    let mut texts: Vec<&String> = got.iter().map(|(_, t)| t).collect();
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len() as u64, CLIENTS * EACH, "no text twice");
    a.kill();
    b.kill();
    assert_integrity(a.data_dir());
    assert_integrity(b.data_dir());
}
