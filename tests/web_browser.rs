//! `pgpchat web` in a real browser: Debian's Chromium, headless, driven over WebDriver by its
//! own chromedriver (`/usr/bin/chromium`, never a downloaded browser). alice uses the page, bob the
//! command line. Screenshots go to `target/web-screenshots/` (CI keeps them as artifacts).
//!
//! Without Chromium and its driver the test fails with one line saying what to install
//! (`scripts/prerequisites.sh` installs them as root).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::binary::{alice_and_bob_running, path_str, wait_for, Person};
use crate::web::{http_with_body, WebPage};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// A phone's CSS width (and height).
const PHONE: (u32, u32) = (390, 780);

/// chromedriver on a free port and one headless Chromium session; both end on drop.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Browser {
    fn start() -> Self {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the browser tests need Debian's Chromium and its driver \
                 (apt-get install chromium chromium-driver; scripts/prerequisites.sh installs \
                 {package} when run as root)"
            );
        }
        let port = free_tcp_port();
        let mut driver = Command::new(CHROMEDRIVER);
        // Its own process group, with the browsers it starts: all of it ends on drop, even after a
        // failed test (a panic half-way must not leave a browser running).
        std::os::unix::process::CommandExt::process_group(&mut driver, 0);
        let driver = driver
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut b = Self {
            driver,
            port,
            session: String::new(),
            _profile: profile,
        };
        wait_for(20, "chromedriver to answer", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-dev-shm-usage", "--window-size=1200,800",
                    format!("--user-data-dir={}", b._profile.path().display()),
                ],
            },
        }}});
        let v = b.raw("POST", "/session", &caps);
        b.session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        b
    }

    fn raw(&self, method: &str, path: &str, body: &Value) -> Value {
        let host = format!("127.0.0.1:{}", self.port);
        let body = if method == "GET" || method == "DELETE" {
            String::new()
        } else {
            body.to_string()
        };
        let a = http_with_body(self.port, method, path, &[("Host", &host)], &body);
        let v: Value = serde_json::from_str(&a.body)
            .unwrap_or_else(|_| panic!("WebDriver {method} {path}: {a:?}"));
        v
    }

    /// A session command; its `value` (a WebDriver error is a panic).
    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let v = self.raw(method, &format!("/session/{}{path}", self.session), &body);
        let value = v["value"].clone();
        assert!(
            value.get("error").is_none(),
            "WebDriver {method} {path}: {value}"
        );
        value
    }

    /// A command that may fail; its `value` either way.
    fn try_cmd(&self, method: &str, path: &str) -> Value {
        self.raw(
            method,
            &format!("/session/{}{path}", self.session),
            &json!({}),
        )["value"]
            .clone()
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }));
    }

    fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    /// Wait for `css` to be shown, then click it as a person would.
    fn click(&self, css: &str) {
        self.wait_js(
            15,
            &format!("{css} to be shown"),
            &format!(
                "const e = document.querySelector({}); return !!e && e.offsetParent !== null && !e.disabled;",
                json!(css)
            ),
        );
        // The page redraws its lists as events arrive: an element found just before a redraw is
        // stale, and is looked up again.
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let e = self.find(css);
            let v = self.raw(
                "POST",
                &format!("/session/{}/element/{e}/click", self.session),
                &json!({}),
            )["value"]
                .clone();
            match v.get("error").and_then(Value::as_str) {
                None => return,
                Some("stale element reference") if Instant::now() < end => {}
                Some(_) => panic!("WebDriver click on {css}: {v}"),
            }
        }
    }

    /// Type `text` into `css` (keys, as a person types them).
    fn type_in(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            json!({ "text": text }),
        );
    }

    /// Wait until `script` returns true.
    fn wait_js(&self, secs: u64, what: &str, script: &str) {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            if self.js(script) == json!(true) {
                return;
            }
            assert!(
                Instant::now() < end,
                "timed out after {secs}s waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        );
    }

    /// Save a screenshot under `target/web-screenshots/`.
    fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let v = self.cmd("GET", "/screenshot", json!({}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64"))
            .expect("a PNG");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/web-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Whether a JavaScript dialog (alert, confirm) is open.
    fn dialog_open(&self) -> bool {
        self.try_cmd("GET", "/alert/text").get("error").is_none()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Nothing here may panic (a panic while a failed test unwinds aborts the test binary).
        if !self.session.is_empty() {
            let _ = quit_session(self.port, &self.session);
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `DELETE /session/ID` (the browser quits), without panicking.
fn quit_session(port: u16, session: &str) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut answer = [0u8; 512];
    let _ = s.read(&mut answer)?;
    Ok(())
}

/// bob's messages with alice, as bob's command line sees them.
fn bob_history(bob: &Person) -> Vec<Value> {
    bob.json(&["history", "alice"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn browser_alice_on_the_page_chats_with_bob_on_the_command_line() {
    let (mut alice, bob) = alice_and_bob_running();
    let page = WebPage::start(&alice);
    let browser = Browser::start();
    browser.go(&page.url);
    browser.wait_js(
        20,
        "the page to show alice",
        "return document.getElementById('me').textContent.includes('alice');",
    );
    assert_eq!(
        browser.js("return location.search;"),
        json!(""),
        "the token left the address bar"
    );

    // A request from bob arrives live, with its count in the tab's title.
    let secret = bob.secret_file("correct horse");
    let open = bob
        .cmd()
        .args([
            "--json",
            "open",
            "alice",
            "--password-file",
            path_str(&secret),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("open");
    browser.wait_js(
        30,
        "bob's request on the page",
        "return document.getElementById('count-requests').textContent === '1' \
         && document.title === '(1) pgpchat';",
    );
    browser.click("#tab-requests");
    browser.click(".request[data-name='bob'] .accept");
    assert_eq!(
        browser.js("return document.getElementById('secret').type + ' ' + document.getElementById('secret').autocomplete;"),
        json!("password off")
    );
    browser.type_in("#secret", "correct horse");
    browser.click("#secret-go");
    let out = open.wait_with_output().expect("open ends");
    assert!(
        out.status.success(),
        "bob's open: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    browser.wait_js(
        20,
        "the chat view with bob",
        "return !document.getElementById('chat').hidden \
         && document.getElementById('chat-peer').textContent === 'bob';",
    );

    // alice writes on the page: bob has it, and the page marks it delivered.
    browser.type_in("#composer", "hello bob, from the page");
    browser.click("#send");
    wait_for(30, "bob to get alice's message", || {
        bob_history(&bob)
            .iter()
            .any(|m| m["body"] == "hello bob, from the page" && m["direction"] == "in")
    });
    browser.wait_js(
        30,
        "the delivered mark",
        "const m = document.querySelector('#messages .msg.out'); return !!m && m.dataset.state === 'delivered';",
    );

    // bob writes on the command line: the page shows it as it arrives; markup is text.
    bob.ok(&["send", "alice", "hi alice, from the command line"]);
    let evil = "<img src=x onerror=alert(1)>";
    bob.ok(&["send", "alice", evil]);
    browser.wait_js(
        30,
        "bob's messages on the page",
        &format!(
            "const b = [...document.querySelectorAll('#messages .msg.in .body')].map(e => e.textContent); \
             return b.includes('hi alice, from the command line') && b.includes({});",
            json!(evil)
        ),
    );
    assert_eq!(
        browser.js("return document.querySelectorAll('img').length;"),
        json!(0),
        "a peer's markup must not become an element"
    );
    assert!(!browser.dialog_open(), "no dialog may open");
    assert_eq!(
        browser.js("return [...document.querySelectorAll('#messages .msg .body')].every(e => e.getAttribute('dir') === 'auto');"),
        json!(true)
    );
    browser.screenshot("desktop-chat");

    // Issue 15: the header shows our key of the discussion; "Rotate key" says the new one is
    // pending, then shows it once bob has switched (`key_rotated`): the key the core reports.
    let alice_key = || -> String {
        let list = alice.json(&["discussions"]);
        list[0]["key_id"].as_str().expect("a key id").to_string()
    };
    let old = alice_key();
    browser.wait_js(
        10,
        "the key in the header",
        &format!(
            "const k = document.getElementById('chat-key');              return k.dataset.key === {0} && k.textContent.includes({0})              && k.textContent.includes('never rotated');",
            json!(old)
        ),
    );
    browser.click("#rotate");
    browser.wait_js(
        30,
        "the new key shown active",
        &format!(
            "const k = document.getElementById('chat-key');              return k.dataset.key !== '' && k.dataset.key !== {} && k.dataset.pending === ''              && k.textContent.includes('rotated ') && !k.textContent.includes('never');",
            json!(old)
        ),
    );
    let shown = browser.js("return document.getElementById('chat-key').dataset.key;");
    wait_for(30, "discussions --json to report the key shown", || {
        json!(alice_key()) == shown
    });
    assert!(!browser.dialog_open(), "Rotate key asks nothing");
    browser.screenshot("desktop-rotated");

    // At phone width nothing scrolls sideways, in the chat and in the lists.
    browser.resize(PHONE.0, PHONE.1);
    browser.wait_js(
        10,
        "a phone-sized window",
        &format!("return window.innerWidth <= {};", PHONE.0 + 20),
    );
    let fits = "return document.documentElement.scrollWidth <= window.innerWidth \
                && document.body.scrollWidth <= window.innerWidth;";
    assert_eq!(
        browser.js(fits),
        json!(true),
        "the chat scrolls sideways at phone width"
    );
    browser.screenshot("phone-chat");
    browser.click("#back");
    browser.click("#tab-contacts");
    assert_eq!(
        browser.js(fits),
        json!(true),
        "the contacts scroll sideways at phone width"
    );
    browser.screenshot("phone-contacts");
    browser.click("#tab-status");
    browser.wait_js(
        10,
        "the status",
        "return document.getElementById('status').textContent.includes('Fingerprint');",
    );
    assert_eq!(
        browser.js(fits),
        json!(true),
        "the status scrolls sideways at phone width"
    );
    browser.screenshot("phone-status");

    // A message that arrives while no discussion is on screen is counted, in the title too.
    browser.resize(1200, 800);
    browser.go(&format!("{}/", page.origin()));
    browser.wait_js(
        20,
        "the page again",
        "return document.getElementById('me').textContent.includes('alice');",
    );
    bob.ok(&["send", "alice", "are you there?"]);
    browser.wait_js(
        30,
        "an unread count",
        "return document.getElementById('count-chats').textContent === '1' && document.title === '(1) pgpchat';",
    );
    browser.click(".discussion[data-peer='bob']");
    browser.wait_js(
        20,
        "the count to clear",
        "return document.title === 'pgpchat' && document.getElementById('count-chats').textContent === '';",
    );
    browser.screenshot("desktop-list");

    // The core stops: the page says so; once a core runs again the page reads everything again by
    // itself and live messages flow (one sent meanwhile included).
    alice.kill();
    browser.wait_js(
        15,
        "the page to say the core is gone",
        "const b = document.getElementById('banner'); return !b.hidden && b.textContent.includes('core is not running');",
    );
    browser.screenshot("desktop-core-gone");
    bob.ok(&["send", "alice", "while you were away"]);
    alice.start();
    browser.wait_js(
        60,
        "the page to come back with bob's message",
        "return document.getElementById('banner').hidden && [...document.querySelectorAll('#messages .msg.in .body')].some(e => e.textContent === 'while you were away');",
    );

    // Logging out ends the session: the page asks for the link again.
    browser.click("#logout");
    browser.wait_js(
        20,
        "the login page",
        "return document.body.textContent.includes('Open the link');",
    );
}

#[test]
fn browser_alice_sees_contacts_live_verifies_opens_pages_back_and_closes() {
    let port = crate::common::free_udp_port();
    let mut alice = Person::new("alice", port);
    let mut bob = Person::new("bob", port);
    let mut carol = Person::new("carol", port);
    for p in [&mut alice, &mut bob] {
        p.init();
        p.start();
    }
    alice.wait_sees(&bob);
    bob.wait_sees(&alice);
    let page = WebPage::start(&alice);
    let browser = Browser::start();
    browser.go(&page.url);
    browser.wait_js(
        20,
        "the page",
        "return document.getElementById('me').textContent.includes('alice');",
    );
    browser.click("#tab-contacts");
    browser.wait_js(
        10,
        "bob in the contacts",
        "return !!document.querySelector(\".contact[data-name='bob']\");",
    );

    // A contact that appears on the network shows up by itself.
    carol.init();
    carol.start();
    browser.wait_js(
        30,
        "carol to appear live",
        "return !!document.querySelector(\".contact[data-name='carol']\");",
    );

    // carol asks for a discussion; alice refuses it on the page, and carol is told.
    carol.wait_sees(&alice);
    let secret = carol.secret_file("no thanks");
    let open = carol
        .cmd()
        .args(["open", "alice", "--password-file", path_str(&secret)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("open");
    browser.click("#tab-requests");
    browser.click(".request[data-name='carol'] .refuse");
    let refused = open.wait_with_output().expect("open ends");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("refused"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    browser.wait_js(
        10,
        "no request left",
        "return document.querySelectorAll('.request').length === 0;",
    );
    browser.click("#tab-contacts");

    // dave is on another discovery network: added by address from the page.
    let mut dave = Person::new("dave", crate::common::free_udp_port());
    dave.init();
    dave.start();
    browser.type_in("#add-address", &format!("127.0.0.1:{}", dave.tcp_port()));
    browser.click("#add-form button");
    browser.wait_js(
        30,
        "dave added by address",
        "const d = document.querySelector(\".contact[data-name='dave']\"); return !!d && d.textContent.includes('added by address');",
    );

    // Verify bob: the dialog shows his fingerprint in groups; confirming marks him verified.
    let bob_fp = bob.fingerprint();
    browser.click(".contact[data-name='bob'] .verify");
    let grouped: Vec<String> = bob_fp
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    browser.wait_js(
        10,
        "the fingerprint to compare",
        &format!(
            "return document.getElementById('confirm-body').textContent.includes({});",
            json!(grouped.join(" "))
        ),
    );
    browser.screenshot("desktop-verify");
    browser.click("#confirm-yes");
    browser.wait_js(
        10,
        "bob verified on the page",
        "return document.querySelector(\".contact[data-name='bob'] .badge\").textContent === 'verified';",
    );
    let contacts = alice.json(&["contacts"]);
    let bob_row = contacts
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "bob"))
        .expect("bob");
    assert_eq!(bob_row["verified"], true);

    // Open a discussion from the page with a secret; bob accepts on the command line.
    browser.click(".contact[data-name='bob'] .open");
    browser.type_in("#secret", "blue whale");
    browser.click("#secret-go");
    let request = bob.wait_request(&alice);
    let secret = bob.secret_file("blue whale");
    bob.ok(&[
        "accept",
        &request.to_string(),
        "--password-file",
        path_str(&secret),
    ]);
    browser.wait_js(
        30,
        "the chat view with bob",
        "return !document.getElementById('chat').hidden \
         && document.getElementById('chat-peer').textContent === 'bob' \
         && document.getElementById('chat-fp').textContent.startsWith('verified');",
    );

    // More messages than one page: the earlier ones come back page by page.
    const SENT: usize = 60;
    for i in 1..=SENT {
        bob.ok(&["send", "alice", &format!("message {i}")]);
    }
    let shown = "return document.querySelectorAll('#messages .msg.in').length;";
    browser.wait_js(
        60,
        "bob's messages live",
        &format!("return document.querySelectorAll('#messages .msg.in').length === {SENT};"),
    );
    browser.click("#tab-chats");
    browser.click(".discussion[data-peer='bob']");
    browser.wait_js(
        20,
        "the last page only",
        "return document.querySelectorAll('#messages .msg.in').length === 50 \
         && !document.getElementById('earlier').hidden;",
    );
    browser.click("#earlier");
    browser.wait_js(
        20,
        "the earlier messages",
        &format!(
            "return document.querySelectorAll('#messages .msg.in').length === {SENT} \
             && document.querySelector('#messages .msg.in .body').textContent === 'message 1' \
             && document.getElementById('earlier').hidden;"
        ),
    );
    assert_eq!(browser.js(shown), json!(SENT));
    browser.screenshot("desktop-earlier");

    // Close it: the page asks first, then the discussion is closed on both sides.
    browser.click("#close");
    browser.click("#confirm-yes");
    browser.wait_js(
        20,
        "the closed state",
        "return /clos/.test(document.getElementById('chat-state').textContent) \
         && document.getElementById('composer').disabled;",
    );
    wait_for(30, "bob to see the discussion closed", || {
        bob.json(&["discussions"]).as_array().is_some_and(|d| {
            d.iter()
                .any(|d| d["peer_name"] == "alice" && d["state"] == "closed")
        })
    });
}

#[test]
fn browser_alice_accepts_an_introduction_and_the_discussion_opens_by_itself() {
    let port = crate::common::free_udp_port();
    let mut people: Vec<Person> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| Person::new(n, port))
        .collect();
    for p in &mut people {
        p.init();
        p.start();
    }
    let [alice, bob, carol] = &people[..] else {
        unreachable!()
    };
    carol.wait_sees(alice);
    carol.wait_sees(bob);
    carol.open_with(alice, "first secret");
    carol.open_with(bob, "second secret");
    let page = WebPage::start(alice);
    let browser = Browser::start();
    browser.go(&page.url);
    browser.wait_js(
        20,
        "the page",
        "return document.getElementById('me').textContent.includes('alice');",
    );
    // carol introduces alice and bob: it reaches the page live.
    carol.ok(&["introduce", "alice", "bob"]);
    browser.wait_js(
        30,
        "the introduction on the page",
        "return document.getElementById('count-intros').textContent === '1';",
    );
    browser.click("#tab-intros");
    browser.wait_js(
        10,
        "who introduces whom",
        "const i = document.querySelector('.intro'); return !!i && i.textContent.includes('carol introduces bob');",
    );
    browser.screenshot("desktop-introduction");
    browser.click(".intro .actions button");
    let bobs = bob.json(&["introductions"]);
    let n = bobs
        .as_array()
        .and_then(|l| l.first())
        .and_then(|i| i["id"].as_u64())
        .expect("bob's introduction");
    bob.ok(&["accept-introduction", &n.to_string()]);
    // Both accepted: the discussion opens by itself and shows in the list.
    browser.click("#tab-chats");
    browser.wait_js(
        60,
        "the discussion with bob",
        "return !!document.querySelector(\".discussion[data-peer='bob']\");",
    );
    bob.ok(&["send", "alice", "met through carol"]);
    browser.click(".discussion[data-peer='bob']");
    browser.wait_js(
        30,
        "bob's message",
        "return [...document.querySelectorAll('#messages .msg.in .body')].some(e => e.textContent === 'met through carol');",
    );

    // Ask carol for her contact list from her chat (she shares only herself by default).
    browser.click(".discussion[data-peer='carol']");
    // Her chat on screen first: the button asks whoever's chat is shown.
    browser.wait_js(
        30,
        "carol's chat",
        "return document.getElementById('chat-peer').textContent === 'carol' && !document.getElementById('chat').hidden;",
    );
    browser.click("#contacts-from");
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let banner = browser.js(
            "const b = document.getElementById('banner'); return b.hidden ? '' : b.textContent;",
        );
        let text = banner.as_str().unwrap_or_default().to_string();
        if text.contains("new contacts from carol") {
            break;
        }
        assert!(
            Instant::now() < end,
            "no outcome of asking carol for her contacts; the banner says {text:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // alice introduces bob and carol from the page: both are asked.
    browser.click("#tab-contacts");
    browser.click("#introduce-box summary");
    let select = |id: &str, name: &str| {
        browser.js(&format!(
            "const s = document.getElementById({});              s.value = [...s.options].find(o => o.textContent.startsWith({})).value; return s.value;",
            json!(id),
            json!(format!("{name} ("))
        ))
    };
    select("intro-a", "bob");
    select("intro-b", "carol");
    browser.click("#introduce-form button");
    for p in [bob, carol] {
        wait_for(30, &format!("{} to be introduced by alice", p.name), || {
            p.json(&["introductions"]).as_array().is_some_and(|l| {
                l.iter()
                    .any(|i| i["introducer"]["name"] == "alice" && i["state"] == "pending")
            })
        });
    }
}

/// Another server on another port of 127.0.0.1 (another local user's, any local dev server) that
/// the user visits: the browser sends it this page's cookie (cookies do not keep ports apart, and
/// 127.0.0.1 is one site for SameSite), but the cookie alone must not open the page's WebSocket.
#[test]
fn browser_a_cookie_seen_by_another_port_of_this_machine_opens_nothing() {
    use std::io::{BufRead, BufReader, Write};
    let alice = crate::web::person_running("alice");
    let page = WebPage::start(&alice);
    let browser = Browser::start();
    browser.go(&page.url);
    browser.wait_js(
        20,
        "the page to show alice",
        "return document.getElementById('me').textContent.includes('alice');",
    );

    // The other server: it records the headers of the first request it gets.
    let other = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let other_port = other.local_addr().expect("addr").port();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        if let Ok((s, _)) = other.accept() {
            let mut r = BufReader::new(s.try_clone().expect("clone"));
            let mut head = String::new();
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n" {
                head.push_str(&line);
                line.clear();
            }
            let mut s = s;
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 9\r\nConnection: close\r\n\r\nelsewhere",
            );
            let _ = tx.send(head);
        }
    });
    browser.go(&format!("http://127.0.0.1:{other_port}/"));
    let head = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the other server's request");
    let cookie = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("cookie")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    // The browser did hand it over: this is the threat, not a fault of the page.
    assert!(
        cookie.contains(&format!("pgpchat-{}=", page.port)),
        "the browser sent the page's cookie to another port: {head}"
    );

    // With it, and the page's own Host and Origin (a program sets any header), the WebSocket
    // stays shut.
    let (host, origin) = (page.host(), page.origin());
    let r = page.socket(&[("Host", &host), ("Origin", &origin), ("Cookie", &cookie)]);
    match r {
        Err(tungstenite::Error::Http(res)) => {
            assert!(res.status() == 401 || res.status() == 403, "{res:?}")
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(mut ws) => {
            let _ = ws.send(tungstenite::Message::text(
                json!({"jsonrpc": "2.0", "id": 1, "method": "whoami", "params": {}}).to_string(),
            ));
            panic!("another port's copy of the cookie opened alice's WebSocket");
        }
    }

    // The page itself goes on working (its own WebSocket opens and answers).
    browser.go(&format!("{}/", page.origin()));
    browser.wait_js(
        20,
        "the page to show alice again",
        "return document.getElementById('me').textContent.includes('alice') \
         && document.getElementById('conn').className.includes('connected');",
    );
}

/// Text with no `<bdi>` around it that holds a bidi control (U+202A–U+202E, U+2066–U+2069,
/// U+200E, U+200F, U+061C): a peer's name with one, put in a sentence, turns the rest of the
/// sentence around (or, with U+2069, escapes an isolate).
const BIDI_OUTSIDE_BDI: &str = "const re = /[\\u202a-\\u202e\\u2066-\\u2069\\u200e\\u200f\\u061c]/; \
     const bad = []; \
     const w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT); \
     for (let n = w.nextNode(); n; n = w.nextNode()) { \
       if (re.test(n.data) && !n.parentElement.closest('bdi')) bad.push(n.parentElement.tagName + ': ' + JSON.stringify(n.data)); \
     } \
     return bad;";

/// A peer's name with bidi controls, in every sentence of the page that names it (a dialog's
/// title, the list to introduce from): isolated, its controls shown escaped as the command line
/// does, never raw in the sentence.
#[test]
fn browser_a_peers_name_with_bidi_controls_never_turns_a_sentence_around() {
    let port = crate::common::free_udp_port();
    let mut alice = Person::new("alice", port);
    // Shown raw, "Verify bob" and the override: the rest reads from right to left.
    let mut bob = Person::new("bob\u{202e}?kcolB\u{2069}x", port);
    for p in [&mut alice, &mut bob] {
        p.init();
        p.start();
    }
    alice.wait_sees(&bob);
    let page = WebPage::start(&alice);
    let browser = Browser::start();
    browser.go(&page.url);
    browser.wait_js(
        20,
        "the page",
        "return document.getElementById('me').textContent.includes('alice');",
    );
    browser.click("#tab-contacts");
    browser.wait_js(
        20,
        "bob in the contacts",
        "return document.querySelectorAll('.contact').length === 1;",
    );
    browser.click(".contact .verify");
    browser.wait_js(
        10,
        "the verify dialog",
        "return document.getElementById('confirm-dialog').open;",
    );
    let title = browser.js("return document.getElementById('confirm-title').textContent;");
    let title = title.as_str().expect("a title");
    assert!(
        title.contains("bob\\u{202e}?kcolB\\u{2069}x"),
        "the name, its controls escaped: {title:?}"
    );
    browser.screenshot("bidi-name-verify");
    assert_eq!(browser.js(BIDI_OUTSIDE_BDI), json!([]));
}
