//! The prompt as a person uses it: a real terminal (tmux), keys sent, the screen read back.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::binary::{wait_for, Person, BIN};
use crate::common::free_udp_port;

/// A private tmux server running one program in one pane.
pub(crate) struct Tmux {
    socket: String,
}

impl Tmux {
    pub(crate) fn start(command: &str) -> Self {
        Self::start_sized(command, 120, 45)
    }

    /// A pane of `cols` × `rows`.
    pub(crate) fn start_sized(command: &str, cols: u16, rows: u16) -> Self {
        let socket = format!("pgpchat-test-{}-{}", std::process::id(), rand_suffix());
        let ok = Command::new("tmux")
            // -u: UTF-8 whatever the locale of the machine running the tests.
            .args([
                "-u",
                "-L",
                &socket,
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                &cols.to_string(),
                "-y",
                &rows.to_string(),
                command,
            ])
            .status()
            .expect("tmux is installed (.ci/run installs it)")
            .success();
        assert!(ok, "tmux new-session");
        Self { socket }
    }

    pub(crate) fn keys(&self, keys: &[&str]) {
        let ok = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "t"])
            .args(keys)
            .status()
            .expect("send-keys")
            .success();
        assert!(ok, "send-keys {keys:?}");
    }

    /// Any other tmux command on this server (`resize-window`...).
    pub(crate) fn tmux(&self, args: &[&str]) {
        let ok = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .status()
            .expect("tmux")
            .success();
        assert!(ok, "tmux {args:?}");
    }

    /// Type text literally (no key names).
    pub(crate) fn type_text(&self, text: &str) {
        self.keys(&["-l", text]);
    }

    pub(crate) fn screen(&self) -> String {
        let o = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "t"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The pane with everything scrolled out of it.
    pub(crate) fn scrollback(&self) -> String {
        let o = Command::new("tmux")
            .args([
                "-L",
                &self.socket,
                "capture-pane",
                "-p",
                "-S",
                "-",
                "-t",
                "t",
            ])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub(crate) fn wait_screen(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if f(&s) {
                return s;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn wait_text(&self, text: &str) -> String {
        self.wait_screen(text, |s| s.contains(text))
    }

    /// A pane variable (`#{cursor_flag}`, `#{pane_pid}`).
    pub(crate) fn var(&self, name: &str) -> String {
        let o = Command::new("tmux")
            .args(["-L", &self.socket, "display-message", "-p", "-t", "t"])
            .arg(format!("#{{{name}}}"))
            .output()
            .expect("display-message");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Paste `text` as a terminal does when the program asked for bracketed paste.
    pub(crate) fn paste(&self, text: &str) {
        let tmux = |args: &[&str]| {
            let ok = Command::new("tmux")
                .args(["-L", &self.socket])
                .args(args)
                .status()
                .expect("tmux")
                .success();
            assert!(ok, "tmux {args:?}");
        };
        tmux(&["set-buffer", "-b", "p", text]);
        tmux(&["paste-buffer", "-p", "-d", "-b", "p", "-t", "t"]);
    }

    /// Whether the cursor is visible (a menu hides it while drawing; it must come back).
    pub(crate) fn cursor_visible(&self) -> bool {
        self.var("cursor_flag") == "1"
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

/// Stops, when dropped, the core a prompt started in the background (found by its data dir).
pub(crate) struct KillCore(pub(crate) String);

impl Drop for KillCore {
    fn drop(&mut self) {
        let _ = Command::new("pkill").args(["-f", &self.0]).status();
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 % 1_000_000)
        .unwrap_or(0)
}

#[test]
fn a_person_sets_up_opens_a_discussion_and_chats_in_the_prompt() {
    let port = free_udp_port();
    let mut bob = Person::new("bob", port);
    bob.init();
    bob.start();
    let alice = Person::new("alice", port);
    let command = format!(
        "{BIN} --config {} --data-dir {} chat",
        alice.config.display(),
        alice.data_dir().display()
    );
    let tmux = Tmux::start(&command);
    // The background core alice's prompt starts must not outlive the test.
    let _core = KillCore(alice.data_dir().display().to_string());

    // First run: name (default from the profile), passphrase twice.
    tmux.wait_text("Your name, as others will see it");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Passphrase to protect your key");
    tmux.type_text("hunter2");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Repeat it");
    tmux.type_text("hunter2");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_text("You are alice");
    assert!(s.contains("Your fingerprint:"), "{s}");
    assert!(
        !s.contains("Passphrase for your identity key"),
        "asked twice:\n{s}"
    );
    let fp = alice.fingerprint();
    assert!(
        s.contains(&pgpchat_actors::crypto::fingerprint_groups(&fp)),
        "{s}"
    );

    // Wait until alice's core has seen bob, then: Open a discussion → bob → secret.
    let bob_fp = bob.fingerprint();
    wait_for(20, "alice's core to see bob", || {
        alice
            .json(&["contacts"])
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["fingerprint"] == bob_fp.as_str()))
    });
    tmux.wait_text("Open a discussion");
    tmux.keys(&["Down", "Enter"]);
    tmux.wait_text("Talk to");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Secret shared with bob");
    tmux.type_text("purple tulip");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Waiting for bob to accept");

    // bob accepts through the scripting commands.
    let mut id = 0;
    wait_for(20, "bob's request", || {
        let r = bob.requests();
        r.as_array()
            .and_then(|r| r.first())
            .map(|r| id = r["id"].as_u64().unwrap())
            .is_some()
    });
    let secret = bob.secret_file("purple tulip");
    bob.ok(&[
        "accept",
        &id.to_string(),
        "--password-file",
        secret.to_str().unwrap(),
    ]);
    tmux.wait_text("── bob · ");

    // alice sends; the delivery state shows up.
    tmux.type_text("hello bob");
    tmux.keys(&["Enter"]);
    // Its line shows once, with its delivery mark (or a short line for it).
    tmux.wait_screen("hello bob delivered", |s| {
        s.contains("me: hello bob ✓✓") || s.contains("✓✓ delivered: 1 earlier message")
    });

    // bob replies: it appears live.
    bob.ok(&["send", "alice", "hi alice, how are you?"]);
    tmux.wait_text("bob: hi alice, how are you?");

    // A message arriving while alice types goes above her line; her typing stays intact.
    tmux.type_text("I am typ");
    tmux.wait_text("> I am typ");
    bob.ok(&["send", "alice", "second from bob"]);
    let s = tmux.wait_text("bob: second from bob");
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    let second = lines
        .iter()
        .position(|l| l.contains("bob: second from bob"))
        .unwrap();
    let typing = lines
        .iter()
        .position(|l| *l == "> I am typ")
        .unwrap_or_else(|| panic!("typing garbled:\n{s}"));
    assert!(
        second < typing,
        "the message must appear above the typed line:\n{s}"
    );
    tmux.type_text("ing");
    tmux.keys(&["Enter"]);
    tmux.wait_text("me: I am typing");

    // bob has both of alice's messages.
    wait_for(20, "bob to have alice's messages", || {
        let h = bob.json(&["history", "alice"]);
        let bodies: Vec<String> = h
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].as_str().unwrap().to_string())
            .collect();
        bodies.contains(&"hello bob".to_string()) && bodies.contains(&"I am typing".to_string())
    });

    // Back to the menu: the discussion is read; then quit.
    tmux.type_text("/back");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Discussions (0 unread)");
    let d = alice.json(&["discussions"]);
    assert_eq!(d[0]["unread"], 0);

    // Verify bob: both fingerprints shown to compare aloud, then confirmed.
    tmux.keys(&["Down", "Down", "Down", "Down", "Enter"]);
    tmux.wait_text("? Verify");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_text("read you the same fingerprint?");
    let groups = |f: &str| pgpchat_actors::crypto::fingerprint_groups(f);
    assert!(
        s.contains(&groups(&fp)) && s.contains(&groups(&bob_fp)),
        "{s}"
    );
    tmux.type_text("y");
    tmux.wait_text("bob is verified.");
    let c = alice.json(&["contacts"]);
    assert_eq!(c[0]["verified"], true);

    // The core the prompt started writes its own log (its stderr is closed), without the
    // passphrase or a message text.
    let log = std::fs::read_to_string(alice.data_dir().join("daemon.log")).expect("daemon.log");
    if std::env::var_os("RUST_LOG").is_none() {
        assert!(log.contains("node up") && log.contains("IPC on"), "{log}");
    }
    for secret in ["hunter2", "hello bob", "I am typing"] {
        assert!(!log.contains(secret), "{secret:?} in daemon.log");
    }
}

#[test]
fn a_request_arriving_while_the_menu_is_shown_is_accepted_in_the_prompt() {
    let port = free_udp_port();
    let mut alice = Person::new("alice", port);
    alice.init();
    alice.start();
    let bob = Person::new("bob", port);
    bob.init();
    let tmux = Tmux::start(&format!(
        "{BIN} --config {} --data-dir {} chat",
        bob.config.display(),
        bob.data_dir().display()
    ));
    let _core = KillCore(bob.data_dir().display().to_string());
    // bob's menu is drawn before anyone asks him anything.
    tmux.wait_text("Requests (0)");
    alice.wait_sees(&bob);
    let secret = alice.secret_file("blue moon");
    let open = alice
        .cmd()
        .args(["open", "bob", "--password-file", secret.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(20, "the request to reach bob's core", || {
        bob.requests().as_array().is_some_and(|r| !r.is_empty())
    });
    // The menu shown updates by itself (issue 12: it said 0 until a key was pressed).
    let s = tmux.wait_text("Requests (1)");
    assert!(!s.contains("Requests (0)"), "the menu drawn twice:\n{s}");
    tmux.keys(&["Down", "Down", "Enter"]);
    let s = tmux.wait_text("#1 alice");
    assert!(
        s.contains(&pgpchat_actors::crypto::fingerprint_groups(
            &alice.fingerprint()
        )),
        "{s}"
    );
    tmux.keys(&["Enter"]);
    tmux.wait_text("Accept (type the shared secret)");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Secret shared with alice");
    tmux.type_text("blue moon");
    tmux.keys(&["Enter"]);
    tmux.wait_text("── alice · ");
    // Said every time (it was sometimes missing: the view subscribed after the discussion opened).
    tmux.wait_text("(alice connected)");
    let status = open.wait_with_output().unwrap().status;
    assert!(
        status.success(),
        "alice's open succeeds once bob accepted in his prompt"
    );
    alice.ok(&["send", "bob", "thanks for accepting"]);
    tmux.wait_text("alice: thanks for accepting");

    // bob ends it at once from the prompt; alice's core is told and closes too.
    tmux.type_text("/close --force");
    tmux.keys(&["Enter"]);
    // It destroys keys: asked first.
    tmux.wait_screen("the question", |s| {
        s.contains("keys destroyed, undelivered messages lost?") && s.contains("[y/N]")
    });
    tmux.type_text("y");
    tmux.keys(&["Enter"]);
    tmux.wait_text("discussion with alice closed");
    wait_for(30, "alice's side to close", || {
        alice.json(&["discussions"])[0]["state"] == "closed"
    });
}

#[test]
fn peer_text_cannot_drive_the_terminal_in_the_prompt() {
    use crate::terminal::{HOSTILE_BODY, HOSTILE_NAME};
    let port = free_udp_port();
    let mut bob = Person::new(HOSTILE_NAME, port);
    bob.init();
    bob.start();
    let alice = Person::new("alice", port);
    alice.init();
    let tmux = Tmux::start(&format!(
        "{BIN} --config {} --data-dir {} chat",
        alice.config.display(),
        alice.data_dir().display()
    ));
    let _core = KillCore(alice.data_dir().display().to_string());
    let title = || {
        let o = Command::new("tmux")
            .args(["-L", &tmux.socket, "display-message", "-p", "-t", "t"])
            .arg("#{pane_title}")
            .output()
            .expect("display-message");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    tmux.wait_text("Requests (0)");
    let title_before = title();
    // bob asks; alice sees his name (bidi controls escaped) in the request list, and accepts.
    bob.wait_sees(&alice);
    let secret = bob.secret_file("pw");
    let open = bob
        .cmd()
        .args(["open", "alice", "--password-file", secret.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(20, "the request to reach alice's core", || {
        alice.requests().as_array().is_some_and(|r| !r.is_empty())
    });
    tmux.keys(&["Down", "Down", "Enter"]);
    tmux.wait_text("#1 bob\\u{202e}\\u{2066}gpj.exe");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Accept (type the shared secret)");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Secret shared with bob");
    tmux.type_text("pw");
    tmux.keys(&["Enter"]);
    tmux.wait_text("── bob\\u{202e}");
    assert!(open.wait_with_output().unwrap().status.success());

    // The hostile message arrives live in the chat view: shown escaped, on its own two lines; the
    // screen is not cleared (the header is still there), nothing is overwritten, no title is set.
    bob.ok(&["send", "alice", HOSTILE_BODY]);
    let s = tmux.wait_text("second line    after a tab");
    assert!(s.contains("── bob\\u{202e}"), "screen cleared:\n{s}");
    // (The first line is longer than the pane: it wraps at spaces, continuations indented; read
    // it with the wrap undone.)
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("\\x1b[2J\\x1b[Hsystem: all fine\\x1b]0;pwned\\x07"),
        "{s}"
    );
    assert!(flat.contains("\\rforged: alice\\x85\\x7f"), "{s}");
    assert!(
        !s.lines()
            .any(|l| l.starts_with("forged") || l.starts_with("system")),
        "a forged line:\n{s}"
    );
    assert_eq!(title(), title_before, "the window title was set");
    // The same after reopening the view from the menu (history).
    tmux.type_text("/back");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Discussions (0 unread)");
    tmux.keys(&["Down", "Down", "Down", "Enter"]);
    tmux.wait_text("? Discussion");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_screen("the history shown again", |s| {
        s.matches("second line    after a tab").count() == 2
    });
    assert!(s.contains("── bob\\u{202e}"), "{s}");
    assert_eq!(title(), title_before, "the window title was set");
}

#[test]
fn the_prompt_outlives_the_core_closing_its_idle_connection() {
    let alice = Person::new("alice", free_udp_port());
    // The core closes idle connections after 1 s; the prompt's menu connection is one of them.
    let mut config = std::fs::read_to_string(&alice.config).unwrap();
    config.push_str("ipc_idle_timeout_secs = 1\n");
    std::fs::write(&alice.config, config).unwrap();
    alice.init();
    let tmux = Tmux::start(&format!(
        "{BIN} --config {} --data-dir {} chat",
        alice.config.display(),
        alice.data_dir().display()
    ));
    let _core = KillCore(alice.data_dir().display().to_string());
    tmux.wait_text("Requests (0)");
    // The person reads the menu for a while; the core closes the idle connection meanwhile.
    std::thread::sleep(Duration::from_millis(2500));
    tmux.keys(&["Enter"]);
    let s = tmux.wait_text("No contacts seen yet");
    assert!(!s.contains("closed the connection"), "{s}");
    // And again, after another idle period: still the menu, still answered.
    std::thread::sleep(Duration::from_millis(2500));
    tmux.keys(&["Down", "Down", "Down", "Enter"]);
    let s = tmux.wait_text("No discussions yet");
    assert!(!s.contains("closed the connection"), "{s}");
}

/// More unread messages than the view's usual history (found by a new-user trial: only the last 20
/// were shown, and leaving the view marked all of them read). Every unread one is shown.
#[test]
fn every_unread_message_is_shown_when_a_chat_view_opens() {
    let (alice, bob) = crate::binary::alice_and_bob_running();
    let id = bob.open_with(&alice, "pw");
    for i in 0..26 {
        bob.ok(&["send", &id, &format!("unread number {i:02}")]);
    }
    wait_for(30, "26 unread at alice", || {
        alice.json(&["discussions"])[0]["unread"].as_u64() == Some(26)
    });
    let tmux = Tmux::start(&format!(
        "{BIN} --config {} --data-dir {} chat",
        alice.config.display(),
        alice.data_dir().display()
    ));
    tmux.wait_text("Discussions (26 unread)");
    tmux.keys(&["Down", "Down", "Down", "Enter"]);
    tmux.wait_text("? Discussion");
    tmux.keys(&["Enter"]);
    tmux.wait_text("unread number 25");
    let all = tmux.scrollback();
    for i in 0..26 {
        assert!(
            all.contains(&format!("unread number {i:02}")),
            "message {i} not shown:\n{all}"
        );
    }
    assert!(!all.contains("earlier messages"), "{all}");
    // Shown in the open view: read at once, not when the view is left; a message arriving
    // while it is open too.
    let unread = || alice.json(&["discussions"])[0]["unread"].as_u64();
    wait_for(20, "the shown messages to be read", || unread() == Some(0));
    bob.ok(&["send", &id, "arrives while open"]);
    tmux.wait_text("arrives while open");
    wait_for(20, "the message shown live to be read", || {
        unread() == Some(0)
    });
    tmux.type_text("/back");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Discussions (0 unread)");
}

#[test]
fn the_chat_view_says_when_live_updates_stop() {
    let port = free_udp_port();
    let mut alice = Person::new("alice", port);
    let mut bob = Person::new("bob", port);
    for p in [&mut alice, &mut bob] {
        p.init();
        p.start();
    }
    alice.wait_sees(&bob);
    let id = alice.open_with(&bob, "purple tulip");
    let command = format!(
        "{BIN} --config {} --data-dir {} chat",
        alice.config.display(),
        alice.data_dir().display()
    );
    let tmux = Tmux::start(&command);
    tmux.wait_text("Open a discussion");
    tmux.keys(&["Down", "Down", "Down", "Enter"]);
    std::thread::sleep(Duration::from_secs(1));
    tmux.keys(&["Enter"]);
    tmux.wait_text("── bob · ");
    bob.ok(&["send", &id, "before the restart"]);
    tmux.wait_text("bob: before the restart");

    // The core goes away: the view says so (it used to spin silently and show nothing more).
    alice.ok(&["stop"]);
    tmux.wait_text("the core stopped: /restart starts it again");
    alice.kill();
    bob.kill();
}

/// "Ask a contact for its contacts" and "Introduce two contacts" travel over an open discussion:
/// they offer only contacts with one, and say so when there is none (found by a new-user trial:
/// every contact was offered, and picking one without a discussion failed with "no discussion
/// matches '8D1A...'").
#[test]
fn list_and_introduction_pickers_offer_only_contacts_with_an_open_discussion() {
    let (alice, bob) = crate::binary::alice_and_bob_running();
    let tmux = Tmux::start(&format!(
        "{BIN} --config {} --data-dir {} chat",
        alice.config.display(),
        alice.data_dir().display()
    ));
    let menu_item = |downs: usize| {
        // The menu comes back after each action's output.
        std::thread::sleep(Duration::from_millis(500));
        tmux.wait_text("Requests (");
        for _ in 0..downs {
            tmux.keys(&["Down"]);
        }
        tmux.keys(&["Enter"]);
    };
    // Bob is a contact, but without a discussion: not offered.
    menu_item(6);
    let s = tmux.wait_text("No contact with an open discussion");
    assert!(!s.contains("no discussion matches"), "{s}");
    menu_item(8);
    tmux.wait_text("No contact with an open discussion");

    // With a discussion, bob is offered and the list comes from him.
    bob.open_with(&alice, "pw");
    menu_item(6);
    tmux.wait_text("Whose contact list");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_text("already known");
    assert!(s.contains("from bob"), "{s}");
    // Introducing: bob first, then nobody else to introduce him to.
    menu_item(8);
    tmux.wait_text("? Introduce");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_text("No other contact with an open discussion");
    assert!(!s.contains("themselves"), "{s}");
}
