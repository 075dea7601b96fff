//! Beyond one broadcast domain (issue 10's "Done means"): two Ethernet segments, each a bridge in
//! its own hub namespace, joined by a router namespace that forwards IP but not broadcast. A and B
//! (ann, ben) share segment 1; C (cat) is alone on segment 2. Every namespace and link is made and
//! removed by the test, inside namespaces (the default namespace never sees either end of a link);
//! discovery broadcasts to each segment's own broadcast address only. Skipped without root or `ip`.
//!
//! The scenario is a list of steps over one [`TwoSegments`]: broadcast does not cross the router;
//! B adds C by address and they chat; with B's sharing policy set explicitly in his configuration
//! (`[sharing] share = ["broadcast", "added"]`), A opens a discussion with B, asks B for its list
//! and learns C "via ben"; B introduces A to C, both accept, and A and C chat across the router in
//! a discussion nobody accepted a request for; then every node restarts and
//! [`TwoSegments::origins_survive_a_restart`] checks each contact's origin. One test, so the
//! namespaces and the three cores are set up once (the suite runs on 2 cores in CI).

use std::process::Command;

use serde_json::Value;

use crate::binary::{wait_for, Person};
use crate::netns::{ip, Namespaces};

/// Every node's fixed main TCP port (each host is its own namespace: no clash).
const TCP_PORT: u16 = 47471;
const DISCOVERY_PORT: u16 = 47470;

/// Link namespace `ns` (interface `dev`, address `addr/24`) to the bridge of `hub` (port `port`).
fn plug(ns: &str, dev: &str, addr: &str, hub: &str, port: &str) -> Result<(), String> {
    // Created inside `ns`, its peer moved straight into the hub.
    ip(&[
        "-n", ns, "link", "add", dev, "type", "veth", "peer", "name", port, "netns", hub,
    ])?;
    ip(&["-n", hub, "link", "set", port, "master", "br0"])?;
    ip(&["-n", hub, "link", "set", port, "up"])?;
    ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
    ip(&["-n", ns, "link", "set", dev, "up"])
}

/// The two segments and the router: host namespaces for ann, ben (segment 1) and cat (segment 2).
fn build(tag: &str, net: u8) -> Result<(Namespaces, [String; 3]), String> {
    let mut ns = Namespaces { names: vec![] };
    let hubs = [
        ns.add(format!("pgr-{tag}-hub1"))?,
        ns.add(format!("pgr-{tag}-hub2"))?,
    ];
    for hub in &hubs {
        ip(&["-n", hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", hub, "link", "set", "br0", "up"])?;
    }
    let router = ns.add(format!("pgr-{tag}-rt"))?;
    plug(&router, "seg1", &format!("10.{net}.1.254"), &hubs[0], "rt")?;
    plug(&router, "seg2", &format!("10.{net}.2.254"), &hubs[1], "rt")?;
    let forward = Command::new("ip")
        .args([
            "netns",
            "exec",
            &router,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])
        .status()
        .map_err(|e| format!("sysctl: {e}"))?;
    if !forward.success() {
        return Err("cannot enable forwarding in the router namespace".into());
    }
    let mut hosts = Vec::new();
    for (i, (segment, host)) in [(1u8, 1u8), (1, 2), (2, 3)].into_iter().enumerate() {
        let h = ns.add(format!("pgr-{tag}-h{i}"))?;
        let hub = &hubs[usize::from(segment) - 1];
        plug(
            &h,
            "eth0",
            &format!("10.{net}.{segment}.{host}"),
            hub,
            &format!("p{i}"),
        )?;
        ip(&[
            "-n",
            &h,
            "route",
            "add",
            "default",
            "via",
            &format!("10.{net}.{segment}.254"),
        ])?;
        hosts.push(h);
    }
    Ok((ns, hosts.try_into().expect("three hosts")))
}

/// The running fixture: ann and ben on segment 1, cat on segment 2.
struct TwoSegments {
    people: Vec<Person>,
    /// Each person's address (listener and discovery source).
    addresses: Vec<String>,
    _ns: Namespaces,
    tag: String,
}

impl TwoSegments {
    const ANN: usize = 0;
    const BEN: usize = 1;
    const CAT: usize = 2;

    /// Build the namespaces and start the three cores; `Err` when namespaces cannot be made here.
    fn start() -> Result<Self, String> {
        let tag = format!("{}", std::process::id() % 100_000);
        let net = (std::process::id() % 200) as u8 + 20;
        let (ns, hosts) = build(&tag, net)?;
        let mut people = Vec::new();
        let mut addresses = Vec::new();
        for (i, (name, segment, host)) in [("ann", 1, 1), ("ben", 1, 2), ("cat", 2, 3)]
            .into_iter()
            .enumerate()
        {
            let mut p = Person::new(name, DISCOVERY_PORT);
            let addr = format!("10.{net}.{segment}.{host}");
            // ben shares what he heard by broadcast and what he added by address (the default
            // shares nothing): set explicitly, as a user would.
            let sharing = if name == "ben" {
                "\n[sharing]\nshare = [\"broadcast\", \"added\"]\n"
            } else {
                ""
            };
            std::fs::write(
                &p.config,
                format!(
                    "[node]\nname = \"{name}\"\n\n[discovery]\nbind = \"0.0.0.0\"\nport = {DISCOVERY_PORT}\n\
                     broadcast = \"10.{net}.{segment}.255\"\nsource = \"{addr}\"\ninterval_secs = 1\n\n\
                     [listener]\nbind = \"{addr}\"\nport = {TCP_PORT}\n\n[limits]\nreconnect_max_secs = 1\n{sharing}"
                ),
            )
            .unwrap();
            p.netns = Some(hosts[i].clone());
            p.init();
            p.start();
            people.push(p);
            addresses.push(addr);
        }
        Ok(Self {
            people,
            addresses,
            _ns: ns,
            tag,
        })
    }

    fn contacts(&self, who: usize) -> Vec<Value> {
        self.people[who]
            .json(&["contacts"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `who`'s contact with `whom`'s fingerprint, if any.
    fn contact(&self, who: usize, whom: usize) -> Option<Value> {
        let fp = self.people[whom].fingerprint();
        self.contacts(who)
            .into_iter()
            .find(|c| c["fingerprint"] == fp.as_str())
    }

    /// Step: ann and ben hear each other by broadcast; cat, beyond the router, is heard by neither
    /// (checked once cat has broadcast several announces on its own segment), nor hears them.
    fn broadcast_does_not_cross_the_router(&self) {
        wait_for(30, "ann and ben to see each other", || {
            self.contact(Self::ANN, Self::BEN).is_some()
                && self.contact(Self::BEN, Self::ANN).is_some()
        });
        for who in [Self::ANN, Self::BEN] {
            let c = self.contact(who, 1 - who).unwrap();
            assert_eq!(c["origin"]["kind"], "broadcast", "{c}");
        }
        // The core's counters, over its socket (`status` has no command of its own).
        let announced = |p: &Person| {
            let mut c = pgpchat_actors::client::blocking::Client::connect(&p.socket()).ok()?;
            c.call(pgpchat_actors::api::StatusRequest {})
                .ok()
                .map(|s| s.discovery.announces_sent)
        };
        wait_for(30, "every node to announce itself 3 times", || {
            self.people.iter().all(|p| announced(p).unwrap_or(0) >= 3)
        });
        for (who, whom) in [
            (Self::ANN, Self::CAT),
            (Self::BEN, Self::CAT),
            (Self::CAT, Self::ANN),
            (Self::CAT, Self::BEN),
        ] {
            assert!(
                self.contact(who, whom).is_none(),
                "{} heard {} across the router",
                self.people[who].name,
                self.people[whom].name
            );
        }
    }

    /// Step: ben adds cat by address (its fixed main port), opens a discussion, and they chat.
    fn ben_adds_cat_by_address_and_they_chat(&self) {
        let (ben, cat) = (&self.people[Self::BEN], &self.people[Self::CAT]);
        let added = ben.json(&[
            "add-contact",
            &format!("{}:{TCP_PORT}", self.addresses[Self::CAT]),
        ]);
        assert_eq!(added["name"], "cat", "{added}");
        assert_eq!(added["origin"]["kind"], "added", "{added}");
        let id = ben.open_with(cat, "beyond the router");
        chat(ben, cat, &id);
    }

    /// Step: ann opens a discussion with ben (same segment) and asks him for his contact list:
    /// cat, whom ben added by address and shares, becomes ann's contact "via ben", at the address
    /// ben reaches him (a hint), with cat's own name and port from his signed announce.
    fn ann_learns_cat_from_bens_list(&self) {
        let (ann, ben) = (&self.people[Self::ANN], &self.people[Self::BEN]);
        let id = ann.open_with(ben, "same segment");
        chat(ann, ben, &id);
        let merged = ann.json(&["contacts", "--from", "ben"]);
        assert_eq!(merged["learned"], serde_json::json!(["cat"]), "{merged}");
        assert_eq!(merged["dropped"], 0, "{merged}");
        assert_eq!(merged["key_changed"], serde_json::json!([]), "{merged}");
        let cat = self
            .contact(Self::ANN, Self::CAT)
            .expect("cat is ann's contact");
        assert_eq!(cat["name"], "cat", "{cat}");
        assert_eq!(cat["address"], self.addresses[Self::CAT].as_str(), "{cat}");
        assert_eq!(cat["tcp_port"], TCP_PORT, "{cat}");
        self.assert_origin(Self::ANN, Self::CAT, "via", Some(Self::BEN));
        assert_eq!(cat["verified"], false, "{cat}");
        // ben's user is told someone asked for his list.
        let asked = format!("ann {} asked for our contact list: ", ann.fingerprint());
        wait_for(10, "ben's log to say ann asked for his list", || {
            ben.log()
                .lines()
                .any(|l| l.contains(&asked) && l.ends_with("contacts shared"))
        });
    }

    /// Step: ben introduces ann to cat; each sees the offer (who introduces whom) and accepts;
    /// the side with the lower fingerprint dials, the other accepts without asking its user,
    /// and ann and cat chat end to end across the router.
    fn ben_introduces_ann_to_cat_and_they_chat(&self) {
        let (ann, ben, cat) = (
            &self.people[Self::ANN],
            &self.people[Self::BEN],
            &self.people[Self::CAT],
        );
        let made = ben.json(&["introduce", "ann", "cat"]);
        assert!(made["introduction"].is_string(), "{made}");
        for (me, other) in [(Self::ANN, Self::CAT), (Self::CAT, Self::ANN)] {
            let p = &self.people[me];
            let other_fp = self.people[other].fingerprint();
            let mut number = None;
            wait_for(
                30,
                &format!("{} to be offered the introduction", p.name),
                || {
                    let list = p.json(&["introductions"]);
                    number = list.as_array().and_then(|l| {
                        l.iter()
                            .find(|i| i["state"] == "pending")
                            .map(|i| (i["id"].as_u64().expect("number"), i.clone()))
                    });
                    number.is_some()
                },
            );
            let (n, offer) = number.unwrap();
            assert_eq!(offer["introducer"]["name"], "ben", "{offer}");
            assert_eq!(
                offer["peer_name"],
                self.people[other].name.as_str(),
                "{offer}"
            );
            assert_eq!(offer["peer_fingerprint"], other_fp.as_str(), "{offer}");
            assert_eq!(offer["key_changed"], false, "{offer}");
            let accepted = p.json(&["accept-introduction", &n.to_string()]);
            assert_eq!(accepted["id"], n, "{accepted}");
        }
        // The discussion opens by itself: the same id on both sides, no request ever listed.
        let fp = |who: usize| self.people[who].fingerprint();
        let mut id = String::new();
        wait_for(60, "ann and cat's discussion to open", || {
            let find = |me: usize, peer: usize| {
                self.people[me]
                    .json(&["discussions"])
                    .as_array()
                    .and_then(|l| {
                        l.iter()
                            .find(|d| {
                                d["peer_fingerprint"] == fp(peer).as_str() && d["state"] == "open"
                            })
                            .and_then(|d| d["id"].as_str().map(String::from))
                    })
            };
            match (find(Self::ANN, Self::CAT), find(Self::CAT, Self::ANN)) {
                (Some(a), Some(c)) if a == c => {
                    id = a;
                    true
                }
                _ => false,
            }
        });
        for p in [ann, cat] {
            assert_eq!(p.requests(), serde_json::json!([]), "{} was asked", p.name);
            let list = p.json(&["introductions"]);
            let i = &list.as_array().expect("introductions")[0];
            assert_eq!(i["state"], "used", "{i}");
            assert_eq!(i["discussion_id"], id.as_str(), "{i}");
        }
        chat(ann, cat, &id);
    }

    /// Assert `who`'s contact `whom` has origin `kind`, through `through` (via, introduced).
    fn assert_origin(&self, who: usize, whom: usize, kind: &str, through: Option<usize>) {
        let c = self.contact(who, whom).unwrap_or_else(|| {
            panic!(
                "{} does not know {}",
                self.people[who].name, self.people[whom].name
            )
        });
        assert_eq!(c["origin"]["kind"], kind, "{c}");
        if let Some(t) = through {
            let (name, fp) = (&self.people[t].name, self.people[t].fingerprint());
            assert_eq!(c["origin"]["name"], name.as_str(), "{c}");
            assert_eq!(c["origin"]["fingerprint"], fp.as_str(), "{c}");
        }
    }

    /// Step: restart every node; each contact keeps its origin: `(who, whom, kind, through)`.
    fn origins_survive_a_restart(&mut self, expected: &[(usize, usize, &str, Option<usize>)]) {
        for p in &mut self.people {
            p.kill();
        }
        for p in &mut self.people {
            p.start();
        }
        for &(who, whom, kind, through) in expected {
            self.assert_origin(who, whom, kind, through);
        }
    }
}

/// `a` and `b` send each other a message in discussion `id`; both arrive and are acknowledged.
fn chat(a: &Person, b: &Person, id: &str) {
    let (to_b, to_a) = (
        format!("hello {} from {}", b.name, a.name),
        format!("hello {} from {}", a.name, b.name),
    );
    a.ok(&["send", id, &to_b]);
    b.ok(&["send", id, &to_a]);
    for (p, body) in [(b, &to_b), (a, &to_a)] {
        wait_for(30, &format!("messages both ways in {id}"), || {
            let h = p.json(&["history", id]);
            let h = h.as_array().unwrap();
            h.len() == 2
                && h.iter().any(|m| m["body"] == body.as_str())
                && h.iter()
                    .all(|m| m["direction"] == "in" || m["state"] == "delivered")
        });
    }
}

impl Drop for TwoSegments {
    fn drop(&mut self) {
        for p in &mut self.people {
            p.kill();
        }
    }
}

#[test]
fn beyond_the_router_a_contact_is_added_learned_and_introduced_and_keeps_its_origin() {
    let mut fixture = match TwoSegments::start() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("SKIPPED: cannot create network namespaces here ({e}); run as root to test two segments");
            return;
        }
    };
    let tag = fixture.tag.clone();
    fixture.broadcast_does_not_cross_the_router();
    fixture.ben_adds_cat_by_address_and_they_chat();
    fixture.ann_learns_cat_from_bens_list();
    fixture.ben_introduces_ann_to_cat_and_they_chat();
    let (ann, ben, cat) = (TwoSegments::ANN, TwoSegments::BEN, TwoSegments::CAT);
    // Origins are recorded once, never rewritten: ann already knew cat "via ben" when ben
    // introduced them, so cat stays "via ben" there; cat first learned of ann through the
    // introduction. Both record who introduced them (`introduced_by`).
    let expected = [
        (ben, cat, "added", None),
        (ben, ann, "broadcast", None),
        (ann, ben, "broadcast", None),
        (ann, cat, "via", Some(ben)),
        (cat, ann, "introduced", Some(ben)),
    ];
    for &(who, whom, kind, through) in &expected {
        fixture.assert_origin(who, whom, kind, through);
    }
    fixture.origins_survive_a_restart(&expected);
    for (who, whom) in [(ann, cat), (cat, ann)] {
        let c = fixture.contact(who, whom).expect("contact");
        assert_eq!(c["introduced_by"]["name"], "ben", "{c}");
        assert_eq!(c["verified"], false, "{c}");
    }
    drop(fixture);
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains(&format!("pgr-{tag}-")),
        "namespaces removed"
    );
}
