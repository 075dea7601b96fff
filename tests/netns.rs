//! Three hosts on a real (virtual) Ethernet segment: network namespaces made and removed by the test,
//! a bridge in a hub namespace, one veth pair per host. Discovery uses real broadcast on that segment
//! (10.77.<n>.255), never on this machine's interfaces: every link is created inside a namespace.

use std::process::Command;

use crate::binary::{wait_for, Person};

/// The namespaces a test made, deleted (last made first) when it ends, even by a panic.
pub(crate) struct Namespaces {
    pub(crate) names: Vec<String>,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in self.names.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

impl Namespaces {
    /// Make namespace `name` (deleted with the others), its loopback up.
    pub(crate) fn add(&mut self, name: String) -> Result<String, String> {
        ip(&["netns", "add", &name])?;
        self.names.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(name)
    }
}

/// Run `ip ARGS`; its stderr as the error.
pub(crate) fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// Build hub + `hosts` namespaces; host i gets 10.77.<net>.<i+1>/24 on eth0.
fn build(tag: &str, net: u8, hosts: usize) -> Result<Namespaces, String> {
    let hub = format!("pgc-{tag}-hub");
    let mut ns = Namespaces { names: vec![] };
    ip(&["netns", "add", &hub])?;
    ns.names.push(hub.clone());
    ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &hub, "link", "set", "br0", "up"])?;
    for i in 0..hosts {
        let h = format!("pgc-{tag}-h{i}");
        ip(&["netns", "add", &h])?;
        ns.names.push(h.clone());
        let port = format!("p{i}");
        // Created inside the host namespace, its peer moved straight into the hub: the default
        // namespace never sees either end.
        ip(&[
            "-n", &h, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &hub,
        ])?;
        ip(&["-n", &hub, "link", "set", &port, "master", "br0"])?;
        ip(&["-n", &hub, "link", "set", &port, "up"])?;
        ip(&[
            "-n",
            &h,
            "addr",
            "add",
            &format!("10.77.{net}.{}/24", i + 1),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &h, "link", "set", "eth0", "up"])?;
        ip(&["-n", &h, "link", "set", "lo", "up"])?;
    }
    Ok(ns)
}

#[test]
fn three_hosts_discover_each_other_by_broadcast_and_chat() {
    let tag = format!("{}", std::process::id() % 100_000);
    let net = (std::process::id() % 200) as u8 + 20;
    let ns = match build(&tag, net, 3) {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("SKIPPED: cannot create network namespaces here ({e}); run as root to test real broadcast");
            return;
        }
    };
    let names = ["ann", "ben", "cat"];
    let mut people: Vec<Person> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut p = Person::new(name, 47470);
        let addr = format!("10.77.{net}.{}", i + 1);
        std::fs::write(
            &p.config,
            format!(
                "[node]\nname = \"{name}\"\n\n[discovery]\nbind = \"0.0.0.0\"\nport = 47470\n\
                 broadcast = \"10.77.{net}.255\"\nsource = \"{addr}\"\ninterval_secs = 1\n\n\
                 [listener]\nbind = \"{addr}\"\nport = 0\n\n[limits]\nreconnect_max_secs = 1\n"
            ),
        )
        .unwrap();
        p.netns = Some(ns.names[i + 1].clone());
        p.init();
        p.start();
        people.push(p);
    }
    for p in &people {
        wait_for(30, "each host to see the two others", || {
            p.json(&["contacts"])
                .as_array()
                .is_some_and(|c| c.len() == 2)
        });
        let c = p.json(&["contacts"]);
        for c in c.as_array().unwrap() {
            assert!(
                c["address"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("10.77.{net}.")),
                "{c}"
            );
        }
    }
    // ann opens a discussion with ben and one with cat, over the segment.
    for (peer, i) in [("ben", 1usize), ("cat", 2usize)] {
        let id = people[0].open_with(&people[i], &format!("secret for {peer}"));
        people[0].ok(&["send", &id, &format!("hello {peer}")]);
        people[i].ok(&["send", &id, "hello ann"]);
    }
    for (i, peer) in [(1usize, "ben"), (2usize, "cat")] {
        wait_for(20, "messages both ways", || {
            let h = people[i].json(&["history", "ann"]);
            let h = h.as_array().unwrap();
            h.len() == 2
                && h.iter()
                    .any(|m| m["body"] == format!("hello {peer}").as_str())
                && h.iter()
                    .all(|m| m["direction"] == "in" || m["state"] == "delivered")
        });
    }
    for p in &mut people {
        p.kill();
    }
    drop(ns);
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains(&format!("pgc-{tag}-")),
        "namespaces removed"
    );
}
