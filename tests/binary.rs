//! The real `pgpchat` binary: daemons in their own processes, driven by the scripting commands.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::common::free_udp_port;

pub const BIN: &str = env!("CARGO_BIN_EXE_pgpchat");

/// One person: a data dir, a loopback configuration, and (when started) a running core.
pub struct Person {
    pub name: String,
    pub dir: TempDir,
    pub config: PathBuf,
    pub core: Option<Child>,
    /// The identity passphrase, when the identity is protected.
    pub passphrase: Option<String>,
    /// Run every command inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// `RUST_LOG` of every command; empty: unset (the binary's own default filter).
    pub rust_log: String,
    /// Environment variables of the core only (`start`), e.g. a crash point.
    pub core_env: Vec<(String, String)>,
}

impl Person {
    /// A profile on the private loopback discovery network `port`.
    pub fn new(name: &str, port: u16) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("profile.toml");
        std::fs::write(
            &config,
            format!(
                "[node]\nname = \"{name}\"\n\n[discovery]\nbind = \"127.255.255.255\"\nport = {port}\n\
                 broadcast = \"127.255.255.255\"\nsource = \"127.0.0.1\"\ninterval_secs = 1\n\n\
                 [listener]\nbind = \"127.0.0.1\"\nport = 0\n\n[limits]\nreconnect_max_secs = 1\n"
            ),
        )
        .expect("write profile");
        Self {
            name: name.into(),
            dir,
            config,
            core: None,
            passphrase: None,
            netns: None,
            rust_log: "info,pgpchat_actors::session=debug".into(),
            core_env: Vec::new(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn cmd(&self) -> Command {
        let mut c = match &self.netns {
            None => Command::new(BIN),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BIN]);
                c
            }
        };
        c.arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(self.data_dir())
            .env_remove("PGPCHAT_PASSWORD")
            .env_remove("PGPCHAT_PASSPHRASE")
            .env_remove("PGPCHAT_PROFILE")
            .env_remove("RUST_LOG");
        if !self.rust_log.is_empty() {
            c.env("RUST_LOG", &self.rust_log);
        }
        c
    }

    /// Run a command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run pgpchat")
    }

    /// Run a command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "{} {:?} failed: {}",
            self.name,
            args,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).expect("JSON output")
    }

    pub fn init(&self) {
        match &self.passphrase {
            None => {
                self.ok(&["init", "--name", &self.name, "--no-passphrase"]);
            }
            Some(p) => {
                let f = self.dir.path().join("passphrase.txt");
                std::fs::write(&f, p).expect("passphrase file");
                self.ok(&[
                    "init",
                    "--name",
                    &self.name,
                    "--passphrase-file",
                    path_str(&f),
                ]);
            }
        }
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("core.log"))
            .expect("log");
        let mut cmd = self.cmd();
        if let Some(p) = &self.passphrase {
            cmd.env("PGPCHAT_PASSPHRASE", p);
        }
        cmd.envs(self.core_env.iter().map(|(k, v)| (k, v)));
        let child = cmd
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start daemon");
        self.core = Some(child);
        let socket = self.data_dir().join("run").join("pgpchat.sock");
        wait_for(15, "the core's socket", || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        });
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.core.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Wait (at most `secs`) until the core has ended by itself; false if it still runs.
    pub fn wait_core_exit(&mut self, secs: u64) -> bool {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            match self.core.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(_))) | None => {
                    self.core = None;
                    return true;
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        false
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("core.log")).unwrap_or_default()
    }

    pub fn socket(&self) -> PathBuf {
        self.data_dir().join("run").join("pgpchat.sock")
    }

    pub fn fingerprint(&self) -> String {
        self.json(&["whoami"])["fingerprint"]
            .as_str()
            .expect("fingerprint")
            .to_string()
    }

    /// Wait until this person's core lists `other` as a contact.
    pub fn wait_sees(&self, other: &Person) {
        let fp = other.fingerprint();
        wait_for(30, &format!("{} to see {}", self.name, other.name), || {
            self.json(&["contacts"])
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["fingerprint"] == fp.as_str()))
        });
    }

    /// The main TCP port of this core's latest start, as its log says ("node up ... on TCP N").
    pub fn tcp_port(&self) -> u16 {
        self.log()
            .lines()
            .rev()
            .find_map(|l| l.split_once(" on TCP ").map(|(_, p)| p.trim().parse()))
            .expect("the core's log says its TCP port")
            .expect("a port number")
    }

    /// Wait until this core knows `other`'s current main port (after `other` restarted: its new
    /// announce may come a moment later, the one of the same second being taken for a replay).
    pub fn wait_sees_current_port(&self, other: &Person) {
        let port = other.tcp_port();
        let fp = other.fingerprint();
        wait_for(
            30,
            &format!("{} to see {}'s new port", self.name, other.name),
            || {
                self.json(&["contacts"]).as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["fingerprint"] == fp.as_str() && c["tcp_port"] == port)
                })
            },
        );
    }

    /// Open a discussion with `other` through the scripting commands: `open` here (it waits), the
    /// request accepted there with the same secret. Returns the discussion id.
    pub fn open_with(&self, other: &Person, secret: &str) -> String {
        let mine = self.secret_file(secret);
        let open = self
            .cmd()
            .args([
                "--json",
                "open",
                &other.name,
                "--password-file",
                path_str(&mine),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("open");
        let mut open = open;
        let mut request = None;
        wait_for(20, &format!("{} to get the request", other.name), || {
            if let Ok(Some(status)) = open.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = open.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!(
                    "open ended before the request arrived ({status}): {err}\n{}'s log:\n{}\n{}'s log:\n{}",
                    self.name,
                    self.log(),
                    other.name,
                    other.log()
                );
            }
            let r = other.requests();
            request = r
                .as_array()
                .and_then(|r| r.iter().find(|r| r["name"] == self.name.as_str()))
                .and_then(|r| r["id"].as_u64());
            request.is_some()
        });
        let request = request.expect("request id");
        let theirs = other.secret_file(secret);
        let accepted = other.json(&[
            "accept",
            &request.to_string(),
            "--password-file",
            path_str(&theirs),
        ]);
        let id = accepted["discussion_id"].as_str().expect("id").to_string();
        let out = open.wait_with_output().expect("open ends");
        assert!(
            out.status.success(),
            "open failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let opened: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(opened["discussion_id"], id.as_str());
        id
    }

    /// The pending requests of `requests --json` (which also lists the refused ones).
    pub fn requests(&self) -> Value {
        self.json(&["requests"])["requests"].clone()
    }

    /// Wait until `from`'s request is listed here; its id.
    pub fn wait_request(&self, from: &Person) -> u64 {
        let mut request = 0;
        wait_for(20, &format!("{} to get the request", self.name), || {
            let r = self.requests();
            match r.as_array().and_then(|r| r.first()) {
                Some(r) => {
                    assert_eq!(r["name"], from.name.as_str());
                    request = r["id"].as_u64().expect("id");
                    true
                }
                None => false,
            }
        });
        request
    }

    pub fn secret_file(&self, secret: &str) -> PathBuf {
        let p = self.dir.path().join("secret.txt");
        std::fs::write(&p, format!("{secret}\n")).expect("secret file");
        p
    }
}

/// alice and bob on a private loopback discovery network, both cores running, alice seeing bob.
pub fn alice_and_bob_running() -> (Person, Person) {
    let port = free_udp_port();
    let mut alice = Person::new("alice", port);
    let mut bob = Person::new("bob", port);
    alice.init();
    bob.init();
    alice.start();
    bob.start();
    // Both ways: bob learns alice from her reply or her next broadcast, which may come after
    // alice lists bob.
    alice.wait_sees(&bob);
    bob.wait_sees(&alice);
    (alice, bob)
}

impl Drop for Person {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < end,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn two_daemons_chat_through_the_scripting_commands() {
    let (alice, mut bob) = alice_and_bob_running();
    // alice asks (the command blocks until bob decides); bob accepts with the same secret.
    let id = alice.open_with(&bob, "correct horse battery staple");

    let sent = alice.json(&["send", "bob", "hello bob"]);
    assert_eq!(sent["state"], "stored");
    let mut send_b = bob.cmd();
    let mut child = send_b
        .args(["send", &id, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("send");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), b"hi alice\n").expect("write");
    drop(child.stdin.take());
    assert!(child.wait().expect("send ends").success());

    for p in [&alice, &bob] {
        wait_for(20, "both messages delivered on both sides", || {
            let h = p.json(&["history", &id]);
            let h = h.as_array().cloned().unwrap_or_default();
            h.len() == 2
                && h.iter().any(|m| m["body"] == "hello bob")
                && h.iter().any(|m| m["body"] == "hi alice")
                && h.iter()
                    .filter(|m| m["direction"] == "out")
                    .all(|m| m["state"] == "delivered")
        });
    }
    let d = bob.json(&["discussions"]);
    assert_eq!(d[0]["peer_name"], "alice");
    assert_eq!(d[0]["state"], "open");

    // `stop` ends the core cleanly: it exits by itself and removes its socket.
    bob.ok(&["stop"]);
    let mut core = bob.core.take().expect("bob's core");
    wait_for(10, "bob's core to exit", || {
        core.try_wait().ok().flatten().is_some()
    });
    assert!(!bob.socket().exists());
}

#[test]
fn init_never_overwrites_and_errors_are_one_line() {
    let p = Person::new("carol", free_udp_port());
    p.init();
    let fp = p.fingerprint();
    let o = p.run(&["init", "--name", "carol", "--no-passphrase"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(p.fingerprint(), fp);
    // No core running: a clear error, not a hang.
    let o = p.run(&["contacts"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("core is not running"));
    // A secret is needed and there is no terminal: refuse rather than wait.
    let o = p.run(&["open", "bob"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("secret is needed"));
    // An identity without a passphrase works, with a warning about what it leaves unprotected.
    let q = Person::new("erin", free_udp_port());
    let o = q.run(&["init", "--name", "erin", "--no-passphrase"]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("warning: no passphrase"), "{err}");
}

#[test]
fn a_wrong_passphrase_stops_the_core_with_one_line_and_touches_nothing() {
    let mut p = Person::new("gus", free_udp_port());
    p.passphrase = Some("right".into());
    p.init();
    // The data directory's lock file (taken before the passphrase) is the one thing allowed.
    let listing = || -> Vec<_> {
        std::fs::read_dir(p.data_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n != "core.lock")
            .collect()
    };
    let before = listing();
    let o = p
        .cmd()
        .arg("daemon")
        .env("PGPCHAT_PASSPHRASE", "wrong")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("wrong passphrase"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(before, listing(), "no store, socket or key file created");
    // No terminal and no passphrase at all: a clear refusal, not a hang.
    let o = p.cmd().arg("daemon").stdin(Stdio::null()).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("secret is needed"));
}

#[test]
fn bad_configuration_names_the_key() {
    let p = Person::new("dave", free_udp_port());
    std::fs::write(&p.config, "[discovery]\nbroadcst = \"127.255.255.255\"\n").expect("write");
    let o = p.run(&["whoami"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("broadcst"));
}

/// `watch` in its own process, its output lines collected on a thread.
pub struct Watch {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    errors: std::sync::mpsc::Receiver<String>,
}

impl Watch {
    pub fn start(p: &Person, json: bool) -> Self {
        let mut cmd = p.cmd();
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .arg("watch")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("watch");
        let lines = read_lines(child.stdout.take().expect("stdout"));
        let errors = read_lines(child.stderr.take().expect("stderr"));
        // Subscribed once it says so: no event from now on is missed.
        let said = errors
            .recv_timeout(Duration::from_secs(30))
            .expect("watch starts");
        assert!(said.starts_with("watching"), "{said}");
        Self {
            child,
            lines,
            errors,
        }
    }

    /// The first line (from now) that satisfies `f`, within 30 s.
    pub fn expect(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if f(&l) => return l,
                Ok(_) => {}
                Err(_) => panic!("watch never printed {what}"),
            }
        }
    }
}

fn read_lines(from: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_streams_the_cores_events() {
    let port = free_udp_port();
    let mut alice = Person::new("alice", port);
    let mut bob = Person::new("bob", port);
    alice.init();
    bob.init();
    alice.start();
    let json = Watch::start(&alice, true);
    let human = Watch::start(&alice, false);
    bob.start();
    let event = |l: &str| serde_json::from_str::<Value>(l).expect("one JSON event per line");
    json.expect("bob's contact", |l| {
        let e = event(l);
        e["event"] == "contact_seen" && e["contact"]["name"] == "bob"
    });
    human.expect("bob's contact", |l| l.starts_with("contact bob"));

    let id = alice.open_with(&bob, "pw");
    json.expect("the discussion opening", |l| {
        let e = event(l);
        e["event"] == "discussion_opened" && e["discussion_id"] == id.as_str()
    });
    bob.ok(&["send", "alice", "hello watcher"]);
    let m = event(&json.expect("bob's message", |l| event(l)["event"] == "message"));
    assert_eq!(m["message"]["body"], "hello watcher");
    assert_eq!(m["message"]["direction"], "in");
    assert_eq!(m["message"]["discussion_id"], id.as_str());
    let line = human.expect("bob's message", |l| l.contains("hello watcher"));
    // The peer's name, not a placeholder: the discussion opened while watch ran.
    assert!(line.contains("bob: hello watcher"), "{line}");

    alice.ok(&["send", "bob", "and back"]);
    json.expect("alice's message delivered", |l| {
        let e = event(l);
        e["event"] == "delivery" && e["seq"] == 1 && e["state"] == "delivered"
    });

    // The core stops: watch ends with a clear error instead of hanging.
    let mut json = json;
    alice.ok(&["stop"]);
    let status = json.child.wait().expect("watch ends");
    assert!(!status.success(), "watch reports that the core went away");
    let err: Vec<String> = json.errors.iter().collect(); // to the end of its stderr
    assert_eq!(err.len(), 1, "one line: {err:?}");
    assert!(err[0].contains("core closed"), "{err:?}");
    alice.kill();
    bob.kill();
}

#[test]
fn verify_refuse_and_simulate_from_the_command_line() {
    let (mut alice, mut bob) = alice_and_bob_running();
    bob.wait_sees(&alice);

    // verify marks the contact (by name or fingerprint prefix); --unset takes it back.
    let v = bob.json(&["verify", "alice"]);
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(bob.json(&["contacts"])[0]["verified"], true);
    let prefix = &alice.fingerprint()[..8];
    let v = bob.json(&["verify", prefix, "--unset"]);
    assert_eq!(v["verified"], false, "{v}");
    assert!(!bob.run(&["verify", "nobody"]).status.success());

    // bob refuses: alice's waiting `open` ends with one clear line.
    let secret = alice.secret_file("pw");
    let open = alice
        .cmd()
        .args(["open", "bob", "--password-file", path_str(&secret)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("open");
    let request = bob.wait_request(&alice);
    bob.ok(&["refuse", &request.to_string()]);
    let out = open.wait_with_output().expect("open ends");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("refused"), "{err}");
    assert_eq!(bob.requests(), serde_json::json!([]));
    assert_eq!(alice.json(&["discussions"]), serde_json::json!([]));
    assert!(!bob.run(&["refuse", &request.to_string()]).status.success());

    // simulate runs its own nodes in its process (loopback, a private port) and reports.
    let r = alice.json(&["simulate", "--nodes", "2", "--messages", "5"]);
    assert_eq!(r["nodes"], 2, "{r}");
    assert_eq!(r["discussions"], 1, "{r}");
    assert_eq!(r["message"]["count"], 5, "{r}");
    assert!(
        r["messages_per_second"].as_f64().unwrap_or(0.0) > 0.0,
        "{r}"
    );
    alice.kill();
    bob.kill();
}

#[test]
fn a_reader_that_goes_away_ends_a_command_quietly() {
    let mut p = Person::new("alice", crate::common::free_udp_port());
    p.init();
    p.start();
    for args in [&["discussions"][..], &["--json", "discussions"][..]] {
        // `pgpchat discussions | head -0`: the reader is gone before anything is written.
        let mut child = p
            .cmd()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run pgpchat");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && stderr.is_empty(),
            "{args:?}: {stderr}"
        );
        // As a pipe producer ends: the shell's status for SIGPIPE.
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
    }
    // `pgpchat watch 2>&1 | head -0`: its stderr line ("watching...") meets a closed pipe; it
    // goes on watching, and ends with the core, without a panic (exit 101 before).
    let mut watch = p
        .cmd()
        .args(["--json", "watch"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pgpchat watch");
    drop(watch.stderr.take());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        watch.try_wait().expect("watch").is_none(),
        "watch ended before the core stopped"
    );
    p.ok(&["stop"]);
    let status = watch.wait().expect("watch ends with the core");
    assert!(
        status.code().is_some_and(|c| c != 101),
        "watch panicked or was killed: {status:?}"
    );
    p.kill();
}
