//! The IPC socket: JSON-RPC behaviour, bad input, other users, and front-ends that stop reading.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use actix::Actor;
use pgpchat_actors::ipc::IpcServer;
use serde_json::{json, Value};

use crate::binary::BIN;
use crate::common::*;

fn start_ipc(n: &TestNode) -> PathBuf {
    let path = n.settings.ipc_socket();
    IpcServer::bind(n.node.clone(), &path).expect("ipc").start();
    path
}

/// A raw line client, run on a blocking thread (the System's thread must stay free).
async fn exchange(path: &Path, lines: Vec<String>) -> Vec<Value> {
    let path = path.to_path_buf();
    let n = lines.len();
    tokio::task::spawn_blocking(move || {
        let mut s = UnixStream::connect(&path).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        for l in &lines {
            s.write_all(l.as_bytes()).unwrap();
            s.write_all(b"\n").unwrap();
        }
        let mut r = BufReader::new(s);
        (0..n)
            .map(|_| {
                let mut line = String::new();
                r.read_line(&mut line).expect("answer");
                serde_json::from_str(&line).expect("json answer")
            })
            .collect()
    })
    .await
    .expect("client thread")
}

/// The core still answers its owner on `path`.
async fn assert_served(path: &Path, name: &str) {
    let answers = exchange(
        path,
        vec![json!({"jsonrpc":"2.0","id":1,"method":"whoami"}).to_string()],
    )
    .await;
    assert_eq!(answers[0]["result"]["name"], name);
}

#[actix_rt::test]
async fn json_rpc_answers_and_bad_requests_get_clear_errors() {
    let n = spawn_nodes(&["alice"]).await;
    let path = start_ipc(&n[0]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);

    let answers = exchange(
        &path,
        vec![
            "this is not json".into(),
            json!({"jsonrpc": "1.0", "id": 2, "method": "whoami"}).to_string(),
            json!({"jsonrpc": "2.0", "id": 3, "method": "frobnicate"}).to_string(),
            json!({"jsonrpc": "2.0", "id": 4, "method": "send", "params": {"discussion": 5}}).to_string(),
            json!({"jsonrpc": "2.0", "id": 5, "method": "history", "params": {"discussion": "nobody"}}).to_string(),
            json!({"jsonrpc": "2.0", "id": 6, "method": "accept", "params": {"request": 42, "password": "x"}}).to_string(),
            json!({"jsonrpc": "2.0", "id": 7, "method": "whoami"}).to_string(),
            json!({"jsonrpc": "2.0", "id": 8, "method": "close", "params": {"discussion": "x", "force": "yes"}}).to_string(),
        ],
    )
    .await;
    let by_id = |id: i64| {
        answers
            .iter()
            .find(|a| a["id"] == json!(id))
            .unwrap_or_else(|| panic!("no answer {id}: {answers:?}"))
    };
    let parse = answers
        .iter()
        .find(|a| a["id"].is_null())
        .expect("parse error answer");
    assert_eq!(parse["error"]["code"], -32700);
    assert_eq!(by_id(2)["error"]["code"], -32600);
    assert_eq!(by_id(3)["error"]["code"], -32601);
    assert_eq!(by_id(4)["error"]["code"], -32602);
    assert!(by_id(4)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("discussion"));
    assert_eq!(by_id(5)["error"]["code"], 1);
    assert_eq!(by_id(6)["error"]["code"], 1);
    assert_eq!(by_id(7)["result"]["fingerprint"], n[0].keys.fingerprint());
    assert_eq!(by_id(8)["error"]["code"], -32602);
    assert!(by_id(8)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("'force' must be a boolean"));
}

#[actix_rt::test]
async fn an_oversize_or_empty_message_is_refused_and_nothing_is_stored() {
    let n = spawn_nodes(&["alice", "bob"]).await;
    let (a, b) = (&n[0], &n[1]);
    wait_sees(a, b).await;
    let (opened, _) = open_discussion(a, b, "pw", "pw").await;
    let id = opened.unwrap();
    let path = start_ipc(&n[0]);
    let big = "x".repeat(a.settings.limits.max_message_bytes + 1);
    let answers = exchange(
        &path,
        vec![
            json!({"jsonrpc":"2.0","id":1,"method":"send","params":{"discussion": id, "text": big}}).to_string(),
            json!({"jsonrpc":"2.0","id":2,"method":"send","params":{"discussion": id, "text": ""}}).to_string(),
        ],
    )
    .await;
    for a in &answers {
        assert_eq!(a["error"]["code"], -32602, "{a}");
    }
    assert!(
        a.history(&id, 10).await.unwrap().is_empty(),
        "nothing stored"
    );
    a.send(&id, "fits").await.unwrap();
    assert_eq!(
        a.history(&id, 10).await.unwrap()[0].seq,
        1,
        "no sequence number was used up"
    );
}

#[actix_rt::test]
async fn an_overlong_line_closes_only_that_client() {
    let n = spawn_nodes(&["alice"]).await;
    let path = start_ipc(&n[0]);
    // Well over the limit: the core answers and closes as soon as the limit is passed, so the
    // rest of the write may meet a closed socket (EPIPE); the answer must still be readable.
    let long = "x".repeat(n[0].settings.limits.ipc_max_line_bytes * 4);
    let p = path.clone();
    let answer: Value = tokio::task::spawn_blocking(move || {
        let mut s = UnixStream::connect(&p).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        match s
            .write_all(long.as_bytes())
            .and_then(|_| s.write_all(b"\n"))
        {
            Ok(()) => {}
            // Linux reports EPIPE, or ECONNRESET when the core closed with our bytes unread.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => panic!("unexpected write error: {e}"),
        }
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).expect("answer");
        let mut rest = String::new();
        match r.read_line(&mut rest) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("the core should have closed that client, got {other:?}"),
        }
        serde_json::from_str(&line).expect("json answer")
    })
    .await
    .expect("client thread");
    assert_eq!(answer["error"]["code"], -32600);
    assert_served(&path, "alice").await;
}

#[actix_rt::test]
async fn another_user_cannot_use_the_socket() {
    if !Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
    {
        eprintln!("SKIPPED: switching to another user needs root");
        return;
    }
    let n = spawn_nodes(&["alice"]).await;
    let path = start_ipc(&n[0]);
    let as_nobody = |path: PathBuf| async move {
        tokio::task::spawn_blocking(move || {
            // `contacts` goes through the socket; --data-dir points at the node's directory.
            let data_dir = path.parent().unwrap().parent().unwrap().to_path_buf();
            Command::new("setpriv")
                .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
                .arg(BIN)
                .arg("--data-dir")
                .arg(&data_dir)
                .arg("contacts")
                .env("HOME", "/tmp")
                .output()
                .expect("setpriv")
        })
        .await
        .unwrap()
    };
    // 1. The directory (0700) keeps other users out.
    let o = as_nobody(path.clone()).await;
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{o:?}"
    );
    // 2. Even with every permission opened up, the core checks the peer's uid and hangs up.
    let mut p = path.as_path();
    while let Some(parent) = p.parent() {
        if parent == Path::new("/tmp") || parent == Path::new("/") {
            break;
        }
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
        p = parent;
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = as_nobody(path.clone()).await;
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("closed the connection"),
        "{o:?}"
    );
    // The owner is still served.
    assert_served(&path, "alice").await;
}

#[actix_rt::test]
async fn a_front_end_that_stops_reading_does_not_stop_messages() {
    init_logs();
    let port = free_udp_port();
    let mut nodes = Vec::new();
    for name in ["alice", "bob"] {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = settings(name, tmp.path(), port);
        s.limits.ipc_event_queue = 8;
        let id = pgpchat_actors::crypto::SecretCert::generate(name).unwrap();
        let node = pgpchat_actors::node::start_node(s, id).await.unwrap();
        nodes.push((node, tmp));
    }
    let (a, b) = (&nodes[0].0, &nodes[1].0);
    wait_sees(a, b).await;
    let (opened, _) = open_discussion(a, b, "pw", "pw").await;
    let id = opened.unwrap();

    // bob's front-end subscribes, then never reads again.
    let path = b.settings.ipc_socket();
    IpcServer::bind(b.clone(), &path).unwrap().start();
    let stalled = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = UnixStream::connect(&path).unwrap();
            s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subscribe\"}\n")
                .unwrap();
            s
        })
        .await
        .unwrap()
    };
    for i in 0..200 {
        a.send(&id, &format!("message {i} {}", "padding ".repeat(100)))
            .await
            .unwrap();
    }
    let h = wait_until(60, "bob stores all 200", || {
        let b = b.clone();
        let id = id.clone();
        async move {
            let h = b.history(&id, 1000).await.ok()?;
            (h.len() == 200).then_some(h)
        }
    })
    .await;
    assert!(h
        .iter()
        .enumerate()
        .all(|(i, m)| m.body.starts_with(&format!("message {i} "))));
    // The stalled client was disconnected: reading it to the end terminates, and the last line,
    // after whole event lines, is the `lagged` notice (it must not wait in the queue that was full).
    let mut r = stalled;
    let drained = tokio::task::spawn_blocking(move || {
        r.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut buf).map(|_| buf)
    })
    .await
    .unwrap()
    .expect("the core disconnected the client that did not read");
    let text = String::from_utf8(drained).expect("whole UTF-8 lines");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("whole JSON lines"))
        .collect();
    assert_eq!(
        lines.last().map(|l| l["method"].clone()),
        Some(json!("lagged")),
        "the last line is the lagged notice"
    );
    // And other front-ends are still served.
    let answers = exchange(
        &path,
        vec![json!({"jsonrpc":"2.0","id":1,"method":"discussions"}).to_string()],
    )
    .await;
    assert_eq!(answers[0]["result"][0]["messages"], 200);
}

/// Read a connection to its end (the core closes it), within 20 s; its lines.
fn read_all(mut s: UnixStream) -> Vec<Value> {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut buf).expect("the core closes the connection");
    String::from_utf8_lossy(&buf)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

#[actix_rt::test]
async fn idle_clients_never_lock_out_commands_and_subscribers_are_never_cut() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings("alice", tmp.path(), free_udp_port());
    s.limits.ipc_idle_timeout_secs = 2;
    let id = pgpchat_actors::crypto::SecretCert::generate("alice").unwrap();
    let node = pgpchat_actors::node::start_node(s, id).await.unwrap();
    let max = node.settings.limits.ipc_max_clients;
    let path = node.settings.ipc_socket();
    IpcServer::bind(node.clone(), &path).unwrap().start();

    let p = path.clone();
    let (subscriber, idle) = tokio::task::spawn_blocking(move || {
        // A front-end that subscribes (watch, the prompt's chat view), then stays silent.
        let mut sub = UnixStream::connect(&p).unwrap();
        sub.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subscribe\"}\n")
            .unwrap();
        let mut r = BufReader::new(sub.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.contains("subscribed"), "{line}");
        // More idle connections than there are slots.
        let idle: Vec<UnixStream> = (0..max + 8)
            .map(|_| UnixStream::connect(&p).unwrap())
            .collect();
        (sub, idle)
    })
    .await
    .unwrap();
    // A command still gets through at once: the longest-idle connection made room.
    assert_served(&path, "alice").await;

    // Every idle connection is closed (for a newcomer, or after the idle timeout), after the
    // notice that tells a client it may reconnect and send its request again.
    let closed =
        tokio::task::spawn_blocking(move || idle.into_iter().map(read_all).collect::<Vec<_>>())
            .await
            .unwrap();
    for lines in &closed {
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["method"], "closing", "{lines:?}");
    }

    // The subscriber, silent for longer than the idle timeout, is still served on its connection,
    // and a line that is not UTF-8 gets a parse error without ending the connection.
    let answers = tokio::task::spawn_blocking(move || {
        let mut s = subscriber;
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":\"\xff\xfe\"}\n")
            .unwrap();
        s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"whoami\"}\n")
            .unwrap();
        let mut r = BufReader::new(s);
        let mut answers = Vec::new();
        while answers.len() < 2 {
            let mut line = String::new();
            r.read_line(&mut line).expect("answer");
            let v: Value = serde_json::from_str(&line).expect("json");
            if v["method"] != "event" {
                answers.push(v);
            }
        }
        answers
    })
    .await
    .unwrap();
    assert_eq!(answers[0]["error"]["code"], -32700, "{answers:?}");
    assert_eq!(answers[1]["result"]["name"], "alice", "{answers:?}");
}

/// The `socat` examples of `docs/ipc.md`, run as written against a real core (the binary): each
/// answers without error, an example followed by a `# {...}` line answers with the same shape
/// (the same result keys, or the same error code and kind), and the subscribed connection sees the
/// message sent by the next example. Only `sleep 3600` is shortened.
#[test]
fn the_documented_socat_examples_work_against_a_real_core() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/ipc.md"))
        .expect("docs/ipc.md");
    let lines: Vec<&str> = doc.lines().collect();
    let examples: Vec<(String, Option<Value>)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("| socat - UNIX-CONNECT:$S"))
        .map(|(i, l)| {
            let shown = lines
                .get(i + 1)
                .and_then(|n| n.strip_prefix("# "))
                .map(|n| serde_json::from_str(n).expect("documented answer is JSON"));
            (l.replace("sleep 3600", "sleep 3"), shown)
        })
        .collect();
    assert!(examples.len() >= 6, "{examples:?}");
    let (a, b) = crate::binary::alice_and_bob_running();
    a.open_with(&b, "pw");
    let run = |cmd: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("S", a.socket())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sh (is socat installed?)")
    };
    let answers = |o: std::process::Output| -> Vec<Value> {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    };
    let mut subscribed = None;
    for (cmd, shown) in &examples {
        if cmd.contains("subscribe") {
            subscribed = Some(run(cmd));
            // Let the subscription start before the next example sends.
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        let got = answers(run(cmd).wait_with_output().expect("socat"));
        assert_eq!(got.len(), 1, "{cmd}: {got:?}");
        let got = &got[0];
        match shown {
            Some(shown) if shown.get("error").is_some() => {
                assert_eq!(got["error"]["code"], shown["error"]["code"], "{cmd}: {got}");
                assert_eq!(got["error"]["data"], shown["error"]["data"], "{cmd}: {got}");
            }
            Some(shown) => {
                let keys = |v: &Value| -> Vec<String> {
                    v.as_object()
                        .map_or(vec![], |o| o.keys().cloned().collect())
                };
                assert_eq!(keys(&got["result"]), keys(&shown["result"]), "{cmd}: {got}");
            }
            None => assert!(got.get("result").is_some(), "{cmd}: {got}"),
        }
        if cmd.contains("\"whoami\"") {
            assert_eq!(got["result"]["fingerprint"], a.fingerprint().as_str());
        }
        if cmd.contains("\"send\"") {
            assert_eq!(got["result"]["body"], "hi", "{got}");
        }
        if cmd.contains("\"history\"") && cmd.contains("\"bob\"") {
            assert_eq!(got["result"][0]["body"], "hi", "{got}");
        }
    }
    let events = answers(
        subscribed
            .expect("a subscribe example")
            .wait_with_output()
            .expect("socat"),
    );
    assert_eq!(events[0]["result"]["subscribed"], true, "{events:?}");
    assert!(
        events.iter().any(|e| e["method"] == "event"
            && e["params"]["event"] == "message"
            && e["params"]["message"]["body"] == "hi"),
        "{events:?}"
    );
}

/// `version` and `rpc.discover` answer, through the library's typed async client; the document is
/// the one in `docs/openrpc.json`; an error carries its kind.
#[actix_rt::test]
async fn version_discover_and_error_kinds_through_the_async_client() {
    use pgpchat_actors::api::{self, ErrorKind};
    use pgpchat_actors::client::AsyncClient;
    let n = spawn_nodes(&["alice"]).await;
    let path = start_ipc(&n[0]);
    let (client, _events) = AsyncClient::connect(&path).await.expect("connect");
    let v = client.check_version().await.expect("version");
    assert_eq!(v, api::VersionInfo::current());
    let status = client.call(api::StatusRequest {}).await.expect("status");
    assert_eq!(status.version, v);
    let doc = client
        .call(api::DiscoverRequest {})
        .await
        .expect("discover");
    assert_eq!(doc, api::openrpc::document());
    let names: Vec<&str> = doc["methods"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    for m in [
        "whoami",
        "send",
        "history",
        "close",
        "version",
        "rpc.discover",
    ] {
        assert!(names.contains(&m), "{names:?}");
    }
    // Several requests in flight at once on one connection, answered by id.
    let (a, b) = tokio::join!(
        client.call(api::WhoamiRequest {}),
        client.call(api::HistoryRequest {
            discussion: "nobody".into(),
            ..api::HistoryRequest::default()
        })
    );
    assert_eq!(a.expect("whoami").fingerprint, n[0].keys.fingerprint());
    let e = b.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::NotFound), "{e}");
}

/// A core of another API major version (here a fake one on the profile's socket) is refused by
/// every command with one line saying how to restart it; `stop` still reaches it; `--version`
/// names the API version.
#[test]
fn the_cli_refuses_an_incompatible_core_with_one_line_saying_how_to_restart_it() {
    use std::os::unix::net::UnixListener;
    let p = crate::binary::Person::new("alice", free_udp_port());
    let socket = p.socket();
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let listener = UnixListener::bind(&socket).unwrap();
    let fake = std::thread::spawn(move || {
        let mut methods = Vec::new();
        for _ in 0..2 {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let req: Value = serde_json::from_str(&line).unwrap();
            let result = match req["method"].as_str() {
                Some("version") => json!({"api": "2.0", "core": "9.0.0"}),
                _ => json!({"stopping": true}),
            };
            methods.push(req["method"].as_str().unwrap_or("").to_string());
            writeln!(
                w,
                "{}",
                json!({"jsonrpc":"2.0","id":req["id"],"result":result})
            )
            .unwrap();
        }
        methods
    });
    let o = p.run(&["contacts"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("API 2.0") && err.contains("stop"), "{err}");
    assert!(err.contains("then start it again"), "{err}");
    let o = p.run(&["stop"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("core stopped"),
        "{o:?}"
    );
    assert_eq!(fake.join().unwrap(), ["version", "shutdown"]);
    let v = p.ok(&["--version"]);
    assert!(
        v.contains(&format!("core API {}", pgpchat_actors::api::API_VERSION)),
        "{v}"
    );
}

/// Whether the core closed `s` (a write fails), without reading from it.
fn closed_by_core(s: &mut UnixStream) -> bool {
    // One byte: written whole or not at all.
    match s.write(b"\n") {
        Ok(n) => n == 0,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[actix_rt::test]
async fn clients_that_write_but_never_read_are_closed() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings("alice", tmp.path(), free_udp_port());
    s.limits.ipc_idle_timeout_secs = 2;
    s.limits.ipc_event_queue = 8;
    let id = pgpchat_actors::crypto::SecretCert::generate("alice").unwrap();
    let node = pgpchat_actors::node::start_node(s, id).await.unwrap();
    let max = node.settings.limits.ipc_max_clients;
    let path = node.settings.ipc_socket();
    IpcServer::bind(node.clone(), &path).unwrap().start();

    let p = path.clone();
    let mut clients = tokio::task::spawn_blocking(move || {
        // More clients than the table holds, each writing bad lines (each answered with an error)
        // until the core stops reading it, and never reading an answer.
        let junk = b"x\n".repeat(50_000);
        (0..max + 8)
            .map(|_| {
                let mut c = UnixStream::connect(&p).unwrap();
                c.set_nonblocking(true).unwrap();
                let (mut sent, mut stuck) = (0, 0);
                while sent < junk.len() && stuck < 20 {
                    match c.write(&junk[sent..]) {
                        Ok(n) => {
                            sent += n;
                            stuck = 0;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            stuck += 1;
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => break,
                    }
                }
                c
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    // Commands still get through.
    assert_served(&path, "alice").await;
    // Every such client is closed (queue full, evicted or idle): none keeps a connection open.
    wait_until(
        20,
        "the core to close every client that does not read",
        || {
            clients.retain_mut(|c| !closed_by_core(c));
            let left = clients.len();
            async move { (left == 0).then_some(()) }
        },
    )
    .await;
}

/// A front-end that asked for a discussion and went away (`pgpchat open` killed, issue 12 defect
/// 2): the core withdraws the request, and it disappears from the peer's `requests`; the
/// discussion does not open later behind the user's back.
#[test]
fn an_open_whose_connection_closes_is_withdrawn_from_the_peer() {
    use crate::binary::{alice_and_bob_running, path_str, wait_for};
    let (alice, bob) = alice_and_bob_running();
    let secret = alice.secret_file("pw");
    let mut open = alice
        .cmd()
        .args(["open", "bob", "--password-file", path_str(&secret)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    bob.wait_request(&alice);
    open.kill().unwrap();
    open.wait().unwrap();
    wait_for(20, "the request to disappear from bob's requests", || {
        bob.requests().as_array().unwrap().is_empty()
    });
    assert!(alice.json(&["discussions"]).as_array().unwrap().is_empty());
}

/// `pgpchat cancel CONTACT` withdraws a waiting `open` made by another command: that `open` fails
/// with the refused class (status 4), and the request disappears from the peer's `requests`.
#[test]
fn cancel_from_the_command_line_withdraws_a_waiting_open() {
    use crate::binary::{alice_and_bob_running, path_str, wait_for};
    let (alice, bob) = alice_and_bob_running();
    let secret = alice.secret_file("pw");
    let open = alice
        .cmd()
        .args(["open", "bob", "--password-file", path_str(&secret)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    bob.wait_request(&alice);
    let out = alice.cmd().args(["cancel", "bob"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1 request(s) to bob withdrawn\n"
    );
    let done = open.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(4), "{done:?}");
    wait_for(20, "the request to disappear from bob's requests", || {
        bob.requests().as_array().unwrap().is_empty()
    });
    let out = alice.cmd().args(["cancel", "bob"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("no request to bob was waiting"),
        "{out:?}"
    );
}
