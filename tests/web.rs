//! `pgpchat web` without a browser: the real binary, raw HTTP over TCP and a WebSocket client with
//! chosen headers. Each refusal has its positive control in the same test (docs/web.md).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use crate::binary::{alice_and_bob_running, path_str, wait_for, Person};
use crate::common::free_udp_port;

/// A running `pgpchat web` on a free port, stopped on drop.
pub struct WebPage {
    pub child: Child,
    pub port: u16,
    /// The login URL it printed.
    pub url: String,
    /// Each session's key (given in the login redirect's fragment), by its cookie.
    keys: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl WebPage {
    pub fn start(p: &Person) -> Self {
        let mut child = p
            .cmd()
            .env("PGPCHAT__WEB__PORT", "0")
            .arg("web")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pgpchat web");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("the URL line");
        if line.is_empty() {
            let mut err = String::new();
            let _ = child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut err);
            panic!("pgpchat web printed no URL: {err}");
        }
        // The rest of its output is not read: keep the pipe drained.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("a URL")
            .to_string();
        let port = url
            .trim_start_matches("http://127.0.0.1:")
            .split('/')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the URL");
        Self {
            child,
            port,
            url,
            keys: Default::default(),
        }
    }

    /// The path and query of the login URL.
    pub fn login_path(&self) -> String {
        self.url
            .trim_start_matches(&format!("http://127.0.0.1:{}", self.port))
            .to_string()
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Log in with the printed token; the session cookie (`name=value`).
    pub fn login(&self) -> String {
        self.login_at(&self.login_path())
    }

    /// Log in with a login path (`/login?token=…`); the session cookie, its key kept.
    pub fn login_at(&self, path: &str) -> String {
        let r = self.get(path, &[]);
        assert_eq!(r.status, 303, "login: {r:?}");
        let cookie = r.cookie().expect("a session cookie");
        let key = r
            .header("location")
            .and_then(|l| l.strip_prefix("/#key=").map(str::to_string))
            .expect("the session's key in the redirect's fragment");
        self.keys.lock().expect("keys").insert(cookie.clone(), key);
        cookie
    }

    /// The `Sec-WebSocket-Protocol` the page offers for the session of `cookie`.
    pub fn protocols(&self, cookie: &str) -> String {
        let key = self.keys.lock().expect("keys").get(cookie).cloned();
        format!(
            "pgpchat, pgpchat-key.{}",
            key.expect("a session logged in by login_at")
        )
    }

    /// `GET path` with the right Host and these extra headers.
    pub fn get(&self, path: &str, extra: &[(&str, &str)]) -> Answer {
        let host = self.host();
        let mut headers = vec![("Host", host.as_str())];
        headers.extend_from_slice(extra);
        http(self.port, "GET", path, &headers)
    }

    /// A WebSocket to `/ws` with these headers (Host, Origin, Cookie as given).
    pub fn socket(
        &self,
        headers: &[(&str, &str)],
    ) -> Result<WebSocket<TcpStream>, tungstenite::Error> {
        let mut req = format!("ws://127.0.0.1:{}/ws", self.port)
            .into_client_request()
            .expect("request");
        for (k, v) in headers {
            req.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        match tungstenite::client(req, stream) {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
            Err(tungstenite::HandshakeError::Interrupted(_)) => panic!("handshake interrupted"),
        }
    }

    /// A logged-in WebSocket of this page's own origin.
    pub fn own_socket(&self, cookie: &str) -> Rpc {
        let (host, origin, protocols) = (self.host(), self.origin(), self.protocols(cookie));
        Rpc {
            ws: self
                .socket(&[
                    ("Host", &host),
                    ("Origin", &origin),
                    ("Cookie", cookie),
                    ("Sec-WebSocket-Protocol", &protocols),
                ])
                .expect("the page's own WebSocket"),
            next: 1,
            seen: Vec::new(),
        }
    }
}

impl Drop for WebPage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    /// The value of a header (first one; case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// `name=value` of the Set-Cookie header.
    pub fn cookie(&self) -> Option<String> {
        self.header("set-cookie")
            .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
    }
}

/// One HTTP/1.1 request over a fresh TCP connection (Connection: close), read to the end.
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    http_with_body(port, method, path, headers, "")
}

/// [`http`] with a body (sent as JSON); a chunked answer is put back together.
pub fn http_with_body(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!(
        "Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes()).expect("write");
    // Read up to the end of the body its Content-Length gives (some servers keep the connection
    // open despite `Connection: close`), else to the end of the stream.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head.lines().find_map(|l| {
                l.strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            if length.is_some_and(|n| raw.len() >= end + 4 + n) {
                break;
            }
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading the answer to {method} {path}: {e}"),
        }
    }
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let mut a = Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    };
    if a.header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        a.body = dechunk(&a.body);
    }
    a
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// JSON-RPC over a WebSocket, answers matched by id, notifications kept.
pub struct Rpc {
    pub ws: WebSocket<TcpStream>,
    next: u64,
    pub seen: Vec<Value>,
}

impl Rpc {
    fn read(&mut self, until: Instant) -> Option<Value> {
        while Instant::now() < until {
            match self.ws.read() {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).expect("JSON")),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("WebSocket: {e}"),
            }
        }
        None
    }

    /// Whether the server closes this WebSocket within `secs` (lines before the close are kept).
    pub fn closes_within(&mut self, secs: u64) -> bool {
        let until = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < until {
            match self.ws.read() {
                Ok(Message::Text(t)) => self.seen.push(serde_json::from_str(&t).expect("JSON")),
                Ok(Message::Close(_)) => {}
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return true,
            }
        }
        false
    }

    /// Call a method; the whole answer object.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.ws.send(Message::text(line.to_string())).expect("send");
        let until = Instant::now() + Duration::from_secs(30);
        while let Some(v) = self.read(until) {
            if v["id"] == id {
                return v;
            }
            self.seen.push(v);
        }
        panic!("no answer to {method} within 30s");
    }

    /// Wait (up to `secs`) for a notification matching `f`.
    pub fn expect(&mut self, secs: u64, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.seen.iter().position(&f) {
            return self.seen.remove(i);
        }
        let until = Instant::now() + Duration::from_secs(secs);
        while let Some(v) = self.read(until) {
            if f(&v) {
                return v;
            }
            self.seen.push(v);
        }
        panic!("no {what} within {secs}s (seen: {:?})", self.seen);
    }
}

pub fn person_running(name: &str) -> Person {
    let mut p = Person::new(name, free_udp_port());
    p.init();
    p.start();
    p
}

#[test]
fn web_login_takes_the_printed_token_once_for_a_cookie_named_with_the_port() {
    let alice = person_running("alice");
    let page = WebPage::start(&alice);
    // No token, a wrong token: refused, and the page is not shown without a session.
    assert_eq!(page.get("/login", &[]).status, 401);
    let wrong = page.get(&format!("/login?token={}", "0".repeat(64)), &[]);
    assert_eq!(wrong.status, 401);
    assert!(wrong.cookie().is_none());
    let anonymous = page.get("/", &[]);
    assert_eq!(anonymous.status, 401);
    assert!(
        !anonymous.body.contains("app.js"),
        "the app is for sessions only"
    );
    // The right token: a cookie named with the port, HttpOnly and SameSite=Strict, and a redirect
    // away from the URL that holds the token.
    let r = page.get(&page.login_path(), &[]);
    assert_eq!(r.status, 303);
    // To the page, with the session's key in the fragment (never sent to a server).
    let location = r.header("location").expect("location");
    let key = location
        .strip_prefix("/#key=")
        .expect("the key in the fragment");
    assert!(
        key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "{location}"
    );
    let set = r.header("set-cookie").expect("set-cookie");
    assert!(set.starts_with(&format!("pgpchat-{}=", page.port)), "{set}");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = r.cookie().expect("cookie");
    page.keys
        .lock()
        .expect("keys")
        .insert(cookie.clone(), key.to_string());
    let shown = page.get("/", &[("Cookie", &cookie)]);
    assert_eq!(shown.status, 200);
    assert!(shown.body.contains("app.js"));
    let csp = shown.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(
        shown.header("access-control-allow-origin").is_none(),
        "no CORS"
    );
    // One use: the printed link is dead; the file (0600) holds the next one, which works.
    assert_eq!(page.get(&page.login_path(), &[]).status, 401);
    let file = alice.data_dir().join("run").join("web.url");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&file).expect("web.url").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let next = std::fs::read_to_string(&file).expect("web.url");
    assert_ne!(next.trim(), page.url);
    let path = next.trim().trim_start_matches(&page.origin()).to_string();
    let second = page.login_at(&path);
    assert_eq!(page.get("/", &[("Cookie", &second)]).status, 200);
    // Logout ends that session only, and closes its WebSocket.
    let mut first_socket = page.own_socket(&cookie);
    let mut second_socket = page.own_socket(&second);
    assert_eq!(
        first_socket.call("whoami", json!({}))["result"]["name"],
        "alice"
    );
    let host = page.host();
    let origin = page.origin();
    let out = http(
        page.port,
        "POST",
        "/logout",
        &[("Host", &host), ("Origin", &origin), ("Cookie", &cookie)],
    );
    assert_eq!(out.status, 303);
    assert!(out
        .header("set-cookie")
        .is_some_and(|c| c.contains("Max-Age=0")));
    assert_eq!(page.get("/", &[("Cookie", &cookie)]).status, 401);
    assert_eq!(page.get("/", &[("Cookie", &second)]).status, 200);
    assert!(
        first_socket.closes_within(10),
        "the logged-out session's WebSocket stays open"
    );
    assert_eq!(
        second_socket.call("whoami", json!({}))["result"]["name"],
        "alice"
    );
}

#[test]
fn web_refuses_a_cross_site_token_exchange() {
    let alice = person_running("alice");
    let page = WebPage::start(&alice);
    for site in ["cross-site", "same-site"] {
        let r = page.get(&page.login_path(), &[("Sec-Fetch-Site", site)]);
        assert_eq!(r.status, 403, "{site}: {r:?}");
        assert!(r.cookie().is_none());
        assert!(r.body.contains("another site"), "{}", r.body);
    }
    // The refused attempts did not use the token up: typed in the address bar, it works.
    let r = page.get(&page.login_path(), &[("Sec-Fetch-Site", "none")]);
    assert_eq!(r.status, 303, "{r:?}");
    assert!(r.cookie().is_some());
}

#[test]
fn web_answers_only_to_the_printed_host() {
    let alice = person_running("alice");
    let page = WebPage::start(&alice);
    let cookie = page.login();
    let other_port = format!("127.0.0.1:{}", page.port.wrapping_add(1));
    let rebound = format!("attacker.example:{}", page.port);
    for host in [
        rebound.as_str(),
        "127.0.0.1",
        other_port.as_str(),
        "localhost",
    ] {
        let r = http(
            page.port,
            "GET",
            "/",
            &[("Host", host), ("Cookie", &cookie)],
        );
        assert_eq!(r.status, 421, "Host {host}: {r:?}");
        assert!(!r.body.contains("app.js"));
    }
    let r = http(page.port, "GET", "/", &[("Cookie", &cookie)]);
    assert_eq!(r.status, 421, "no Host");
    let localhost = format!("localhost:{}", page.port);
    for host in [page.host(), localhost] {
        let r = http(
            page.port,
            "GET",
            "/",
            &[("Host", &host), ("Cookie", &cookie)],
        );
        assert_eq!(r.status, 200, "Host {host}: {r:?}");
    }
}

#[test]
fn web_socket_needs_a_session_and_the_pages_own_origin_and_carries_the_api() {
    let alice = person_running("alice");
    let page = WebPage::start(&alice);
    let cookie = page.login();
    let host = page.host();
    let status = |r: Result<WebSocket<TcpStream>, tungstenite::Error>| match r {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(res)) => res.status().as_u16(),
        Err(e) => panic!("{e}"),
    };
    let own = page.origin();
    let other_port = format!("http://127.0.0.1:{}", page.port.wrapping_add(1));
    let protocols = page.protocols(&cookie);
    for origin in ["http://attacker.example", other_port.as_str(), "null"] {
        let r = page.socket(&[
            ("Host", &host),
            ("Origin", origin),
            ("Cookie", &cookie),
            ("Sec-WebSocket-Protocol", &protocols),
        ]);
        assert_eq!(status(r), 403, "Origin {origin}");
    }
    assert_eq!(
        status(page.socket(&[
            ("Host", &host),
            ("Cookie", &cookie),
            ("Sec-WebSocket-Protocol", &protocols)
        ])),
        403,
        "no Origin"
    );
    assert_eq!(
        status(page.socket(&[("Host", &host), ("Origin", &own)])),
        401,
        "no cookie"
    );
    // The cookie alone (another port of this machine may have seen it: docs/web.md) is not
    // enough: the session's key must come with it, and another session's key does not do.
    assert_eq!(
        status(page.socket(&[("Host", &host), ("Origin", &own), ("Cookie", &cookie)])),
        403,
        "the cookie without the key"
    );
    let other = page.login_at(
        std::fs::read_to_string(alice.data_dir().join("run").join("web.url"))
            .expect("web.url")
            .trim()
            .trim_start_matches(&own),
    );
    for wrong in [
        "pgpchat".to_string(),
        format!("pgpchat, pgpchat-key.{}", "0".repeat(64)),
        page.protocols(&other),
    ] {
        assert_eq!(
            status(page.socket(&[
                ("Host", &host),
                ("Origin", &own),
                ("Cookie", &cookie),
                ("Sec-WebSocket-Protocol", &wrong),
            ])),
            403,
            "the key {wrong}"
        );
    }
    assert_eq!(
        status(page.socket(&[
            ("Host", &host),
            ("Origin", &own),
            ("Cookie", &cookie),
            ("Sec-WebSocket-Protocol", &protocols),
        ])),
        101
    );
    // The same API as the socket: the core's answers and its errors.
    let mut rpc = page.own_socket(&cookie);
    let me = rpc.call("whoami", json!({}));
    assert_eq!(
        me["result"]["fingerprint"],
        alice.fingerprint().as_str(),
        "{me}"
    );
    let version = rpc.call("version", json!({}));
    assert_eq!(
        version["result"]["api"],
        pgpchat_actors::api::API_VERSION.to_string()
    );
    let missing = rpc.call("history", json!({"discussion": "nobody"}));
    assert_eq!(missing["error"]["data"]["kind"], "not-found", "{missing}");
    let bad = rpc.call("close", json!({"discussion": "x", "force": 1}));
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    let unknown = rpc.call("nope", json!({}));
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");
}

#[test]
fn web_socket_delivers_a_request_live_and_follows_a_core_restart() {
    let (mut alice, bob) = alice_and_bob_running();
    let page = WebPage::start(&alice);
    let cookie = page.login();
    let mut rpc = page.own_socket(&cookie);
    assert_eq!(
        rpc.call("subscribe", json!({}))["result"]["subscribed"],
        true
    );
    // bob asks alice for a discussion: the request reaches the page as it arrives.
    let secret = bob.secret_file("apple pie");
    let mut open = bob
        .cmd()
        .args(["open", "alice", "--password-file", path_str(&secret)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("open");
    let ev = rpc.expect(30, "the request event", |v| {
        v["method"] == "event" && v["params"]["event"] == "request"
    });
    assert_eq!(ev["params"]["request"]["name"], "bob");
    let id = ev["params"]["request"]["id"].clone();
    let refused = rpc.call("refuse", json!({"request": id}));
    assert_eq!(refused["result"]["refused"], true, "{refused}");
    let _ = open.wait();
    // The core goes away: the page is told, calls fail with a clear error; a core started again
    // is found by itself, and calls work again.
    alice.kill();
    rpc.expect(10, "core gone", |v| {
        v["method"] == "core" && v["params"]["connected"] == false
    });
    let gone = rpc.call("whoami", json!({}));
    assert!(
        gone["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not running")),
        "{gone}"
    );
    alice.start();
    rpc.expect(15, "core back", |v| {
        v["method"] == "core" && v["params"]["connected"] == true
    });
    let me = rpc.call("whoami", json!({}));
    assert_eq!(me["result"]["name"], "alice", "{me}");
}

#[test]
fn web_starts_a_core_when_none_runs_and_a_taken_port_is_one_line() {
    let alice = Person::new("alice", free_udp_port());
    // No identity yet: the page needs one (the prompt's first run makes it); one line says how.
    let out = alice
        .cmd()
        .env("PGPCHAT__WEB__PORT", "0")
        .arg("web")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("init --name NAME` first"), "{err}");
    assert!(!alice.socket().exists());
    alice.init();
    // A taken port: one line, exit status 2, and no core was started for nothing.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let out = alice
        .cmd()
        .env("PGPCHAT__WEB__PORT", &port)
        .arg("web")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("already in use"), "{err}");
    assert!(!alice.socket().exists());
    // A free port: the core is started, and the page works.
    let page = WebPage::start(&alice);
    assert!(alice.socket().exists());
    let cookie = page.login();
    let mut rpc = page.own_socket(&cookie);
    assert_eq!(rpc.call("whoami", json!({}))["result"]["name"], "alice");
    // SIGTERM with a page open: it stops, its login file goes with it, and the core runs on.
    let url_file = alice.data_dir().join("run").join("web.url");
    assert!(url_file.exists());
    let mut page = page;
    let term = Command::new("kill")
        .args(["-TERM", &page.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let mut stopped = None;
    wait_for(10, "pgpchat web to stop on SIGTERM", || {
        stopped = page.child.try_wait().expect("try_wait");
        stopped.is_some()
    });
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
    assert!(!url_file.exists());
    assert!(alice.socket().exists(), "the core runs on");
    drop(page);
    alice.ok(&["stop"]);
    wait_for(10, "the core to stop", || !alice.socket().exists());
}

#[test]
fn web_withdraws_an_open_whose_page_went_away() {
    let (alice, bob) = alice_and_bob_running();
    let page = WebPage::start(&alice);
    let cookie = page.login();
    let mut rpc = page.own_socket(&cookie);
    // Bad input first: a clear error, and the socket stays usable.
    rpc.ws.send(Message::text("{not json")).expect("send");
    rpc.ws.send(Message::binary(vec![1u8, 2, 3])).expect("send");
    let errors: Vec<Value> = (0..2)
        .map(|_| rpc.expect(10, "an error line", |v| v.get("error").is_some()))
        .collect();
    assert!(
        errors.iter().any(|e| e["error"]["code"] == -32700),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e["error"]["code"] == -32600),
        "{errors:?}"
    );
    // An `open` in flight (its answer waits for bob), then the page goes away.
    let open = json!({"jsonrpc": "2.0", "id": 7, "method": "open",
                      "params": {"contact": "bob", "password": "pumpkin"}});
    rpc.ws.send(Message::text(open.to_string())).expect("send");
    bob.wait_request(&alice);
    drop(rpc);
    wait_for(20, "bob's request to be withdrawn", || {
        bob.requests().as_array().is_some_and(Vec::is_empty)
    });
    // The positive control: a page that stays keeps its request waiting.
    let mut rpc = page.own_socket(&cookie);
    rpc.ws.send(Message::text(open.to_string())).expect("send");
    bob.wait_request(&alice);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(bob.requests().as_array().map(Vec::len), Some(1));
    assert_eq!(rpc.call("whoami", json!({}))["result"]["name"], "alice");
}

/// Figures for docs/performance.md (printed; nothing is asserted about time): sequential round
/// trips of `version` through `pgpchat web`'s WebSocket and straight on the core's socket.
#[test]
fn web_round_trip_figures() {
    const N: u32 = 500;
    let alice = person_running("alice");
    let page = WebPage::start(&alice);
    let cookie = page.login();
    let mut rpc = page.own_socket(&cookie);
    let start = Instant::now();
    for _ in 0..N {
        assert!(rpc.call("version", json!({}))["result"]["api"].is_string());
    }
    let web = start.elapsed() / N;
    let mut direct = pgpchat_actors::client::Client::connect(&alice.socket()).expect("connect");
    let start = Instant::now();
    for _ in 0..N {
        direct
            .call(pgpchat_actors::api::VersionRequest {})
            .expect("version");
    }
    let socket = start.elapsed() / N;
    eprintln!("web round trip: {web:?} per request over the WebSocket, {socket:?} on the core's socket ({N} sequential `version` calls)");
}

/// Another local user (or a broken client) opens many connections and never finishes a request:
/// `pgpchat web` keeps at most `MAX_CONNECTIONS` (128) of them, closes each one whose request
/// head is not in within `HEADER_READ_TIMEOUT` (10 s), and answers the page again afterwards.
#[test]
fn web_bounds_connections_that_never_finish_a_request() {
    let alice = person_running("alice");
    let page = WebPage::start(&alice);
    let half = format!("GET / HTTP/1.1\r\nHost: {}\r\n", page.host());
    let mut held: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", page.port)).expect("connect");
            s.write_all(half.as_bytes()).expect("half a request");
            s.set_nonblocking(true).expect("nonblocking");
            s
        })
        .collect();
    // Whether the server has closed this connection (EOF or reset).
    let closed = |s: &mut TcpStream| {
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(_) => true,
        }
    };
    // Past the bound, connections are closed at once.
    wait_for(10, "the connections past the bound to be closed", || {
        held.iter_mut().map(&closed).filter(|c| !c).count() <= 128
    });
    // The rest, within the head's time limit.
    wait_for(40, "every unfinished request to be closed", || {
        held.iter_mut().all(closed)
    });
    held.clear();
    let cookie = page.login();
    assert_eq!(page.get("/", &[("Cookie", &cookie)]).status, 200);
    let mut rpc = page.own_socket(&cookie);
    assert_eq!(rpc.call("whoami", json!({}))["result"]["name"], "alice");
}
