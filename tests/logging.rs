//! The core's log: what it says by default, what it never says, and how large it may grow.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::binary::{wait_for, Person};
use crate::common::{contains, free_udp_port};

/// Every log file under `dir` (the foreground core's redirected stderr `core.log`, the core's own
/// `daemon.log` and its rotated files).
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.file_name().unwrap().to_string_lossy().contains(".log") {
                out.push(p);
            }
        }
    }
    out
}

/// Run a command that must succeed; its stderr is kept in `all` (it is output too).
fn run(p: &Person, args: &[&str], all: &mut Vec<u8>) -> String {
    let o = p.run(args);
    all.extend_from_slice(&o.stderr);
    assert!(
        o.status.success(),
        "{} {args:?}: {}",
        p.name,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stop(p: &mut Person, all: &mut Vec<u8>) {
    run(p, &["stop"], all);
    let mut core = p.core.take().expect("core");
    wait_for(10, "the core to exit", || {
        core.try_wait().ok().flatten().is_some()
    });
}

#[test]
fn a_whole_chat_at_trace_level_logs_no_text_no_secret_and_no_passphrase() {
    const SECRET: &str = "Quetzal-Marmalade-5521";
    const TEXTS: [&str; 2] = [
        "Meet me by the old lighthouse 3317",
        "Bring the cobalt lantern 8842",
    ];
    let port = free_udp_port();
    let mut a = Person::new("alice", port);
    let mut b = Person::new("bob", port);
    a.passphrase = Some("alice's unlikely passphrase 6620".into());
    b.passphrase = Some("bob's unlikely passphrase 9013".into());
    let mut all = Vec::new();
    for p in [&mut a, &mut b] {
        p.rust_log = "trace".into();
        // Small log files, so a chat at trace level rotates them.
        let mut cfg = std::fs::read_to_string(&p.config).unwrap();
        cfg.push_str("\n[log]\nmax_file_bytes = 65536\nrotated_files = 2\n");
        std::fs::write(&p.config, cfg).unwrap();
        p.init();
        p.start();
    }
    a.wait_sees(&b);

    // alice opens, bob accepts with the same secret; every command's stderr is output too.
    let secret_a = a.secret_file(SECRET);
    let open = a
        .cmd()
        .args(["--json", "open", "bob", "--password-file"])
        .arg(&secret_a)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let request = b.wait_request(&a).to_string();
    let secret_b = b.secret_file(SECRET);
    let accepted = run(
        &b,
        &[
            "--json",
            "accept",
            &request,
            "--password-file",
            secret_b.to_str().unwrap(),
        ],
        &mut all,
    );
    let id = serde_json::from_str::<serde_json::Value>(&accepted).unwrap()["discussion_id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = open.wait_with_output().unwrap();
    all.extend_from_slice(&out.stderr);
    assert!(out.status.success());

    run(&a, &["send", &id, TEXTS[0]], &mut all);
    run(&b, &["send", &id, TEXTS[1]], &mut all);
    for p in [&a, &b] {
        wait_for(20, "both messages delivered", || {
            let h = run(p, &["--json", "history", &id], &mut all);
            let h: serde_json::Value = serde_json::from_str(&h).unwrap();
            let h = h.as_array().unwrap();
            h.len() == 2
                && h.iter()
                    .filter(|m| m["direction"] == "out")
                    .all(|m| m["state"] == "delivered")
        });
    }
    stop(&mut a, &mut all);
    stop(&mut b, &mut all);

    let mut logs = all;
    for p in [&a, &b] {
        let files = log_files(p.dir.path());
        let own = p.data_dir().join("daemon.log");
        assert!(files.contains(&own), "the core writes {}", own.display());
        // Within the configured bound: at most daemon.log, .1 and .2, each within 64 KiB.
        assert!(!p.data_dir().join("daemon.log.3").exists());
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            if f.starts_with(p.data_dir()) {
                assert!(
                    bytes.len() <= 65536,
                    "{} is {} bytes",
                    f.display(),
                    bytes.len()
                );
            }
            logs.extend_from_slice(&bytes);
        }
    }
    // The test sees what it should: events, messages among them, were logged (without their text).
    let text = String::from_utf8_lossy(&logs);
    assert!(text.contains("MessageRecord"), "message events are logged");
    let mut needles = vec![("the shared secret", SECRET.to_string())];
    for t in TEXTS {
        needles.push(("a message text", t.to_string()));
    }
    for p in [&a, &b] {
        needles.push(("a passphrase", p.passphrase.clone().unwrap()));
    }
    for (what, n) in needles {
        assert!(
            !contains(&logs, n.as_bytes()),
            "{what} ({n:?}) is in the output"
        );
    }
}

#[test]
fn the_core_logs_its_info_lines_by_default() {
    let port = free_udp_port();
    let mut a = Person::new("alice", port);
    let mut b = Person::new("bob", port);
    for p in [&mut a, &mut b] {
        // No RUST_LOG: the binary's own default filter.
        p.rust_log = String::new();
        p.init();
        p.start();
    }
    a.wait_sees(&b);
    let id = a.open_with(&b, "correct horse battery staple");
    let mut all = Vec::new();
    stop(&mut a, &mut all);
    stop(&mut b, &mut all);
    for (p, opened) in [(&a, "opened"), (&b, "opened by alice")] {
        // Written by the core itself (its stderr went to core.log).
        let log = std::fs::read_to_string(p.data_dir().join("daemon.log")).unwrap_or_default();
        for line in [
            "node up",
            "discovery on port",
            "IPC on",
            &format!("discussion {id}"),
            opened,
            "shutting down",
        ] {
            assert!(
                log.contains(line),
                "{}'s daemon.log lacks {line:?}:\n{log}",
                p.name
            );
        }
    }
}

#[test]
fn a_flood_of_junk_connections_costs_a_bounded_number_of_log_lines() {
    use std::io::{Read, Write};
    const JUNK: usize = 300;
    let mut p = Person::new("bob", free_udp_port());
    p.rust_log = String::new();
    p.init();
    p.start();
    let port = p.tcp_port();
    let before = p.log().len();
    for _ in 0..JUNK {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        // An HTTP request: its first four bytes make a length prefix far over the frame limit.
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        // The core closes it; wait for that, so every connection is judged (and logged) in turn.
        let _ = s.read(&mut [0u8; 64]);
    }
    let mut all = Vec::new();
    stop(&mut p, &mut all);
    let log = p.log();
    let grown = &log[before..];
    let junk_lines = grown.lines().filter(|l| l.contains("127.0.0.1:")).count();
    assert!(
        (1..=2).contains(&junk_lines),
        "{junk_lines} lines about {JUNK} junk connections:\n{grown}"
    );
    assert!(grown.len() < 2048, "{} bytes of log:\n{grown}", grown.len());
}

/// A framed `Hello` asking for discussion `id`.
fn discussion_hello(id: String) -> Vec<u8> {
    use pgpchat_actors::wire::{Frame, Purpose, PROTOCOL_VERSION};
    let hello = pgpchat_actors::codec::encode(&Frame::Hello {
        version: PROTOCOL_VERSION,
        purpose: Purpose::Discussion {
            discussion_id: id,
            nonce: [3; 32],
        },
    })
    .unwrap();
    let mut framed = (hello.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&hello);
    framed
}

#[test]
fn hellos_for_unknown_or_malformed_discussion_ids_cost_a_bounded_log() {
    use std::io::{Read, Write};
    const BIG: usize = 20;
    const UNKNOWN: usize = 60;
    let mut p = Person::new("bob", free_udp_port());
    p.rust_log = String::new();
    p.init();
    p.start();
    let port = p.tcp_port();
    let before = p.log().len();
    let mut conns = Vec::new();
    // Ids of 100 000 characters, each different: each used to be quoted whole, and kept as a
    // source of the log limiter.
    for i in 0..BIG {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = s.write_all(&discussion_hello(format!("{i}{}", "Z".repeat(100_000))));
        conns.push(s);
    }
    // Ids of the right form that the node does not have, all at once: more than the connections
    // told about closed discussions at a time.
    for i in 0..UNKNOWN {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = s.write_all(&discussion_hello(format!("{i:032x}")));
        conns.push(s);
    }
    for mut s in conns {
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let _ = s.read(&mut [0u8; 64]);
    }
    let mut all = Vec::new();
    stop(&mut p, &mut all);
    let log = p.log();
    let grown = &log[before..];
    assert!(!grown.contains("ZZZZ"), "a peer's id is quoted:\n{grown}");
    let lines = grown.lines().filter(|l| l.contains("discussion")).count();
    assert!(
        lines <= 2,
        "{lines} lines about {} hellos:\n{grown}",
        BIG + UNKNOWN
    );
    assert!(grown.len() < 2048, "{} bytes of log:\n{grown}", grown.len());
}
