//! The prompt's last defects from a new-user trial (issue 12): a real terminal (tmux), keys sent,
//! the screen read back. Every wait is on what the screen shows, and text left over from an
//! earlier view is counted before acting, never matched.

use std::process::Command;
use std::time::Duration;

use crate::binary::{alice_and_bob_running, wait_for, Person, BIN};
use crate::chat_view::{chat_command, open_first_discussion, wait_menu};
use crate::common::free_udp_port;
use crate::prompt::{KillCore, Tmux};

/// Wait (at most `secs`) until `p`'s history of discussion `id` holds a message whose text is `body`.
fn wait_has_line(p: &Person, id: &str, body: &str, secs: u64, what: &str) {
    wait_for(secs, what, || {
        p.json(&["history", id])
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["body"] == body)
    });
}

/// Columns before a chat line's text: `HH:MM `, the name (10 columns), `: `.
const BODY_INDENT: usize = 18;

/// The screen's lines from the one containing `first` to the one containing `last`.
fn block<'a>(screen: &'a str, first: &str, last: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = screen.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.contains(first))
        .unwrap_or_else(|| panic!("no {first:?}:\n{screen}"));
    let end = start
        + lines[start..]
            .iter()
            .position(|l| l.contains(last))
            .unwrap_or_else(|| panic!("no {last:?} after {first:?}:\n{screen}"));
    lines[start..=end].to_vec()
}

/// A message's lines: wrapped at word boundaries, each continuation indented under the text, and
/// every word whole on one line.
fn assert_wrapped(lines: &[&str], text: &str, screen: &str) {
    assert!(lines.len() > 1, "not wrapped:\n{screen}");
    for l in &lines[1..] {
        let indent = l.len() - l.trim_start().len();
        assert_eq!(indent, BODY_INDENT, "continuation not indented:\n{screen}");
    }
    for w in text.split(' ') {
        assert!(
            lines
                .iter()
                .any(|l| l.split_whitespace().any(|t| t == w || t.starts_with(w))),
            "{w:?} cut across lines:\n{screen}"
        );
    }
}

/// Defect 3: long chat lines at 40 columns wrap at word boundaries by display width (CJK and
/// emoji take two columns), continuation lines indented under the text; the width is the one at
/// print time (after a resize to 80 columns the same length fits on one line).
#[test]
fn long_chat_lines_wrap_at_words_with_a_hanging_indent_at_the_current_width() {
    let (alice, bob) = alice_and_bob_running();
    let id = bob.open_with(&alice, "pw");
    let tmux = Tmux::start_sized(&chat_command(&alice), 40, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    open_first_discussion(&tmux, "bob");

    let theirs =
        "seventeen elephants carefully balanced on narrow tightropes above Copenhagen harbour END1";
    bob.ok(&["send", &id, theirs]);
    let s = tmux.wait_text("END1");
    assert_wrapped(&block(&s, "bob: seventeen", "END1"), theirs, &s);

    let wide = "emoji 😀😀😀😀😀😀 then 山田太郎 山田太郎 山田太郎 山田太郎 END2";
    bob.ok(&["send", &id, wide]);
    let s = tmux.wait_text("END2");
    assert_wrapped(&block(&s, "bob: emoji", "END2"), wide, &s);

    // Our own line too.
    let ours = "a reply that is certainly longer than forty columns END3";
    tmux.type_text(ours);
    tmux.keys(&["Enter"]);
    let s = tmux.wait_screen("our wrapped line", |s| {
        s.contains("me: a reply") && s.contains("END3")
    });
    assert_wrapped(&block(&s, "me: a reply", "END3"), ours, &s);

    // Wider now: a line that wrapped at 40 columns fits on one.
    resize(&tmux, 80);
    bob.ok(&[
        "send",
        &id,
        "this one fits in eighty columns on a line END4",
    ]);
    let s = tmux.wait_text("END4");
    assert!(
        s.lines()
            .any(|l| l.contains("bob: this one fits") && l.contains("END4")),
        "wrapped at the old width:\n{s}"
    );
}

/// A TCP port nothing listens on now.
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn resize(tmux: &Tmux, cols: u16) {
    tmux.tmux(&["resize-window", "-t", "t", "-x", &cols.to_string()]);
}

/// Defect 2: at 40 columns a picker whose entries (a contact with its fingerprint) are wider than
/// the pane does not wrap: moving in it and leaving it leave no stale copy of its prompt line.
#[test]
fn pickers_fit_in_40_columns_and_leave_no_stale_prompt_line() {
    let (alice, _bob) = alice_and_bob_running();
    let tmux = Tmux::start_sized(&chat_command(&alice), 40, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    tmux.wait_text("Open a discussion");
    tmux.keys(&["Down", "Enter"]);
    let s = tmux.wait_text("Talk to");
    // One contact, one row: its entry (name, fingerprint, when seen) is cut, not wrapped.
    let rows: Vec<&str> = s.lines().collect();
    let at = rows.iter().rposition(|l| l.contains("Talk to")).unwrap();
    assert!(rows[at + 1].contains("bob"), "{s}");
    assert!(
        rows.get(at + 2).is_none_or(|l| l.trim().is_empty()),
        "the entry wrapped:\n{s}"
    );
    for _ in 0..3 {
        tmux.keys(&["Down"]);
        tmux.keys(&["Up"]);
    }
    // Leave it with Esc: the menu comes back.
    let menus = tmux.scrollback().matches("Requests (").count();
    tmux.keys(&["Escape"]);
    let s = tmux.wait_screen("the menu again", |_| {
        tmux.scrollback().matches("Requests (").count() > menus
    });
    let all = tmux.scrollback();
    assert!(
        all.matches("Talk to").count() <= 1,
        "a stale copy of the picker's prompt:\n{all}"
    );
    // No entry wrapped onto a line of its own: every fingerprint shown is whole on its line.
    assert!(!s.contains("Talk to ›\n?"), "{s}");
}

/// Defect 5: the core stops under the menu: the error is said once before the question to start
/// it again; Ctrl-C at that question ends the prompt cleanly (there is no menu to go back to
/// without a core): exit status 0, the cursor visible, nothing printed twice.
#[test]
fn when_the_core_stops_under_the_menu_the_error_is_said_once_and_ctrl_c_ends_cleanly() {
    let alice = Person::new("alice", free_udp_port());
    alice.init();
    let tmux = Tmux::start_sized(
        &format!(
            "sh -c 'trap : INT; {}; echo PROMPT-ENDED $?; sleep 600'",
            chat_command(&alice)
        ),
        40,
        30,
    );
    let _core = KillCore(alice.data_dir().display().to_string());
    tmux.wait_text("Requests (0)");
    alice.ok(&["stop"]);
    wait_for(20, "the core to stop", || {
        !alice.socket().exists() || alice.run(&["status"]).status.code() == Some(5)
    });
    // Said at once, with no key pressed, then the question.
    // (The question's wording aside: its yes/no.)
    let s = tmux.wait_text("(y/n)");
    let errors: Vec<&str> = s.lines().filter(|l| l.starts_with("! ")).collect();
    assert_eq!(errors.len(), 1, "said more than once:\n{s}");
    // It fits in 40 columns (a wrapped question left a stale copy when redrawn).
    assert!(s.contains("? Start the core again? (y/n)"), "{s}");
    tmux.keys(&["C-c"]);
    let s = tmux.wait_text("PROMPT-ENDED");
    assert!(s.contains("PROMPT-ENDED 0"), "{s}");
    assert!(tmux.cursor_visible(), "cursor hidden:\n{s}");
    assert_eq!(
        s.lines().filter(|l| l.starts_with("! ")).count(),
        1,
        "said again:\n{s}"
    );
}

/// Defect 6: the menu's unread count is the current one each time it is drawn and while it is
/// shown: messages read elsewhere (here by `history`, which marks them read) bring it down
/// without a key pressed; coming back from a chat view shows 0.
#[test]
fn the_menus_unread_count_stays_current() {
    let (alice, bob) = alice_and_bob_running();
    let id = bob.open_with(&alice, "pw");
    bob.ok(&["send", &id, "one"]);
    bob.ok(&["send", &id, "two"]);
    wait_for(30, "2 unread at alice", || {
        alice.json(&["discussions"])[0]["unread"] == 2
    });
    let tmux = Tmux::start_sized(&chat_command(&alice), 40, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    tmux.wait_text("Discussions (2 unread)");
    alice.ok(&["history", &id]);
    tmux.wait_text("Discussions (0 unread)");

    bob.ok(&["send", &id, "three"]);
    tmux.wait_text("Discussions (1 unread)");
    open_first_discussion(&tmux, "bob");
    tmux.wait_text("bob: three");
    let menus = tmux.scrollback().matches("Requests (").count();
    tmux.type_text("/back");
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the menu again", |_| {
        tmux.scrollback().matches("Requests (").count() > menus
    });
    // The line read live in the view is marked read by the core as the view ends; the menu shows
    // the current count without a key pressed (at once, or at its next refresh under load).
    tmux.wait_screen("the menu with no unread message", |s| {
        s.lines()
            .rev()
            .find(|l| l.contains("Discussions ("))
            .is_some_and(|l| l.contains("Discussions (0 unread)"))
    });
}

/// Defect 8: the side that asked sees "(bob connected)" once when the peer accepts; defect 4:
/// keys typed while it waits (between views) are neither echoed nor read by the chat view.
#[test]
fn the_requester_sees_connected_once_and_keys_typed_while_waiting_are_dropped() {
    let port = free_udp_port();
    let mut bob = Person::new("bob", port);
    bob.init();
    bob.start();
    let alice = Person::new("alice", port);
    alice.init();
    let tmux = Tmux::start_sized(&chat_command(&alice), 40, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    tmux.wait_text("Requests (0)");
    alice.wait_sees(&bob);
    tmux.keys(&["Down", "Enter"]);
    tmux.wait_text("Talk to");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Secret shared with bob");
    tmux.type_text("purple tulip");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Ctrl-C cancels the request");
    let id = bob.wait_request(&alice);
    // Typed while waiting: not echoed, not carried into the chat view.
    tmux.type_text("stray");
    tmux.keys(&["Up"]);
    tmux.type_text("x");
    std::thread::sleep(Duration::from_millis(300));
    let s = tmux.screen();
    assert!(!s.contains("stray") && !s.contains("^[["), "echoed:\n{s}");
    let secret = bob.secret_file("purple tulip");
    bob.ok(&[
        "accept",
        &id.to_string(),
        "--password-file",
        secret.to_str().unwrap(),
    ]);
    tmux.wait_text("── bob · ");
    tmux.wait_text("(bob connected)");
    // The input line is empty: nothing typed before the view opened came into it.
    let s = tmux.wait_screen("the empty input line", |s| {
        s.lines().rfind(|l| !l.trim().is_empty()) == Some(">")
    });
    assert!(!s.contains("stray"), "{s}");
    std::thread::sleep(Duration::from_millis(500));
    let s = tmux.screen();
    assert_eq!(s.matches("(bob connected)").count(), 1, "{s}");
}

/// A configuration file found without `--config` (the issue's precedence): with
/// `PGPCHAT_CONFIG`, and separately with `$XDG_CONFIG_HOME/pgpchat/config.toml`, the prompt
/// autostarts a core that uses that file (its node name, its port, its data directory).
#[test]
fn a_prompt_autostarted_core_follows_the_config_precedence() {
    for via_env in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let data = t.join("data-from-file");
        let port = free_tcp_port();
        let node = if via_env { "from-env" } else { "from-xdg" };
        let config = format!(
            "[node]\nname = \"{node}\"\ndata_dir = \"{}\"\n\n[discovery]\nbind = \"127.255.255.255\"\n\
             port = {}\nbroadcast = \"127.255.255.255\"\nsource = \"127.0.0.1\"\n\n\
             [listener]\nbind = \"127.0.0.1\"\nport = {port}\n",
            data.display(),
            free_udp_port()
        );
        let xdg = t.join("xdg");
        std::fs::create_dir_all(xdg.join("pgpchat")).unwrap();
        let file = if via_env {
            t.join("env.toml")
        } else {
            xdg.join("pgpchat/config.toml")
        };
        std::fs::write(&file, config).unwrap();
        // The environment every command of this person gets: HOME in the temporary directory, so
        // ~/.config is never the machine's.
        let mut env = format!("HOME={} XDG_CONFIG_HOME={}", t.display(), xdg.display());
        if via_env {
            env.push_str(&format!(" PGPCHAT_CONFIG={}", file.display()));
        }
        let run = |args: &[&str]| {
            let mut c = Command::new("sh");
            c.arg("-c").arg(format!(
                "env -u PGPCHAT_PROFILE -u RUST_LOG {env} {BIN} {}",
                args.join(" ")
            ));
            c.output().unwrap()
        };
        let o = run(&["init", "--no-passphrase"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let tmux = Tmux::start_sized(&format!("env -u PGPCHAT_PROFILE {env} {BIN}"), 80, 30);
        let _core = KillCore(data.display().to_string());
        tmux.wait_text("Requests (0)");
        let o = run(&["--json", "status"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(s["whoami"]["node"], node, "{s}");
        assert_eq!(s["whoami"]["tcp_port"], port, "{s}");
        assert_eq!(s["whoami"]["data_dir"], data.display().to_string(), "{s}");
        assert!(data.join("daemon.log").exists());
        drop(tmux);
        let _ = run(&["stop"]);
    }
}

/// Defect 1: the terminal is resized (80 → 40 → 80 columns) while a line is being typed in the
/// chat view: the typed line is shown once, whole, with no fragment of its old rows, and the
/// conversation above it is intact.
#[test]
fn a_resize_while_typing_leaves_the_typed_line_once_and_no_fragment() {
    let (alice, bob) = alice_and_bob_running();
    let id = bob.open_with(&alice, "pw");
    bob.ok(&["send", &id, "before the resize"]);
    let tmux = Tmux::start_sized(&chat_command(&alice), 80, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    open_first_discussion(&tmux, "bob");
    tmux.wait_text("bob: before the resize");
    let typed = "a line typed at eighty columns that wraps at forty ZZ";
    tmux.type_text(typed);
    tmux.wait_text("wraps at forty ZZ");
    for cols in [40, 80, 40] {
        resize(&tmux, cols);
        tmux.wait_screen("the pane at its new width", |s| {
            s.lines().all(|l| l.chars().count() <= usize::from(cols))
                && s.replace('\n', "").contains("wraps at forty ZZ")
        });
        // The editor redraws on SIGWINCH: what is on screen once it had the time to.
        std::thread::sleep(Duration::from_millis(500));
        let s = tmux.screen();
        let joined: String = s.lines().collect();
        assert_eq!(
            joined.matches("a line typed").count(),
            1,
            "typed line shown twice or a fragment at {cols} columns:\n{s}"
        );
        assert_eq!(joined.matches("ZZ").count(), 1, "at {cols} columns:\n{s}");
        assert!(
            s.contains("bob: before the resize"),
            "an earlier line damaged at {cols} columns:\n{s}"
        );
        // Only the input rows after the conversation: no row holds a piece of the old line.
        let rows: Vec<&str> = s.lines().collect();
        let last_msg = rows
            .iter()
            .rposition(|l| l.contains("before the resize"))
            .unwrap();
        let rest: Vec<&str> = rows[last_msg + 1..]
            .iter()
            .copied()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert!(
            rest[0].starts_with("> a line typed"),
            "at {cols} columns:\n{s}"
        );
        assert_eq!(
            rest.concat().replace("> ", ""),
            typed,
            "at {cols} columns:\n{s}"
        );
    }
    tmux.keys(&["Enter"]);
    wait_has_line(&bob, &id, typed, 30, "bob to get the typed line");
}

/// Finding 1 (second trial): a resize draws the view again with exactly what was shown, in the
/// same order: the date line printed before a live message stays before it.
#[test]
fn a_resize_redraws_the_date_line_before_the_message_it_dates() {
    let (alice, bob) = alice_and_bob_running();
    let id = bob.open_with(&alice, "pw");
    let tmux = Tmux::start_sized(&chat_command(&alice), 80, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    open_first_discussion(&tmux, "bob");
    // No history: the first message arrives live, after a date line.
    bob.ok(&["send", &id, "first live message"]);
    tmux.wait_text("bob: first live message");
    resize(&tmux, 60);
    // Drawn again: the screen starts with the header (what was above it is gone).
    let s = tmux.wait_screen("the view drawn again", |s| {
        s.lines().next().is_some_and(|l| l.starts_with("── bob · "))
            && !s.contains("unread)")
            && s.contains("bob: first live message")
    });
    let rows: Vec<&str> = s.lines().collect();
    let date = rows
        .iter()
        .position(|l| l.starts_with("── ") && !l.contains("bob"))
        .unwrap_or_else(|| panic!("no date line:\n{s}"));
    let message = rows
        .iter()
        .position(|l| l.contains("bob: first live message"))
        .unwrap();
    assert!(date < message, "the date line after its message:\n{s}");
}

/// Finding 2 (second trial): at 40 columns the prompt's own lines break at words, the header's
/// fingerprint between its groups of 4: no word is cut by the terminal.
#[test]
fn at_40_columns_the_header_and_help_break_at_words() {
    let (alice, _bob) = alice_and_bob_running();
    let tmux = Tmux::start_sized(&chat_command(&alice), 40, 40);
    let _core = KillCore(alice.data_dir().display().to_string());
    _bob.open_with(&alice, "pw");
    open_first_discussion(&tmux, "bob");
    let s = tmux.screen();
    // The line confirming the choice: whole words, the short id whole.
    let chosen = block(&s, "✔ Discussion", "── bob · ");
    for w in chosen[..chosen.len() - 1].join(" ").split_whitespace() {
        let id = w.len() == 10 && w.starts_with('(') && w.ends_with(')');
        assert!(
            id || ["✔", "Discussion", "·", "bob", "open", "0", "unread"].contains(&w),
            "{w:?} cut in the confirmation:\n{s}"
        );
    }
    let header = block(&s, "── bob · ", "/help");
    let header = &header[..header.len() - 1];
    assert!(header.len() > 1, "{s}");
    for w in header.join(" ").split_whitespace() {
        let group = w.len() == 4 && w.chars().all(|c| c.is_ascii_hexdigit());
        assert!(
            group || ["──", "·", "bob", "not", "verified"].contains(&w),
            "{w:?} cut in the header:\n{s}"
        );
    }
    tmux.type_text("/help");
    tmux.keys(&["Enter"]);
    let keys = "Keys: Left/Right, Home/End, Ctrl-U/Ctrl-W erase, Up/Down earlier lines, Tab completes, Ctrl-C menu";
    let s = tmux.wait_text("menu");
    let rows = block(&s, "Keys:", "menu");
    for w in keys.split(' ') {
        assert!(
            rows.iter().any(|l| l.split_whitespace().any(|t| t == w)),
            "{w:?} cut in /help:\n{s}"
        );
    }
}

/// Finding 3 (second trial): a closed discussion says so in its header and on entering; a line
/// typed there is refused naming the peer, not the discussion's 32-hex id.
#[test]
fn a_closed_discussion_says_it_is_closed_and_refuses_lines_naming_the_peer() {
    let (alice, bob) = alice_and_bob_running();
    let id = bob.open_with(&alice, "pw");
    alice.ok(&["close", "--force", &id]);
    let tmux = Tmux::start_sized(&chat_command(&alice), 80, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    open_first_discussion(&tmux, "bob");
    let s = tmux.screen();
    assert!(s.contains("── bob · closed · "), "{s}");
    assert!(s.contains("is closed: read only"), "{s}");
    tmux.type_text("hello there");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_text("not sent:");
    assert!(
        s.contains("! not sent: the discussion with bob is closed"),
        "{s}"
    );
    assert!(!s.contains(&id), "the id shown:\n{s}");
}

/// Finding 4 (second trial): two discussions with one peer can be told apart: at 40 columns the
/// picker shows each one's short id whole, and `/list` marks the current one and shows the ids.
#[test]
fn two_discussions_with_one_peer_show_their_short_ids_and_list_marks_the_current_one() {
    let (alice, bob) = alice_and_bob_running();
    let first = bob.open_with(&alice, "pw");
    let second = bob.open_with(&alice, "pw");
    let tmux = Tmux::start_sized(&chat_command(&alice), 40, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    wait_menu(&tmux);
    tmux.keys(&["Down", "Down", "Down", "Enter"]);
    let s = tmux.wait_text("? Discussion");
    for id in [&first, &second] {
        assert!(s.contains(&format!("({})", &id[..8])), "{id} cut:\n{s}");
    }
    let picked = s
        .lines()
        .find(|l| l.starts_with('❯'))
        .unwrap_or_else(|| panic!("no entry chosen:\n{s}"));
    let current = if picked.contains(&first[..8]) {
        &first
    } else {
        &second
    };
    open_first_discussion_here(&tmux);
    tmux.type_text("/list");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_screen("the list", |s| {
        s.matches(" /").count() >= 2 && s.contains("/2")
    });
    let rows: Vec<&str> = s
        .lines()
        .filter(|l| l.contains(" /1 ") || l.contains(" /2 "))
        .collect();
    assert_eq!(rows.len(), 2, "{s}");
    for r in &rows {
        let is_current = r.contains(&current[..8]);
        assert_eq!(r.starts_with('*'), is_current, "current not marked:\n{s}");
        assert!(
            r.contains(&first[..8]) || r.contains(&second[..8]),
            "no id:\n{s}"
        );
    }
}

/// Enter in the discussion picker shown now (bob's, one of several: its header names it by its
/// short id, `── bob (1a2b3c4d) · `); waits for the chat view's input line.
fn open_first_discussion_here(tmux: &Tmux) {
    let before = tmux.scrollback().matches("── bob (").count();
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the chat view's input line", |_| {
        let all = tmux.scrollback();
        all.matches("── bob (").count() > before
            && all
                .rsplit("── bob (")
                .next()
                .is_some_and(|after| after.lines().any(|l| l == ">" || l.starts_with("> ")))
    });
}

/// Finding 5 (second trial): `pgpchat chat` without a terminal is a usage error (exit status 2)
/// that says what it needs.
#[test]
fn chat_without_a_terminal_is_a_usage_error() {
    let alice = Person::new("alice", free_udp_port());
    let o = alice.run(&["chat"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("needs a terminal"), "{err}");
}

/// Finding 5 (second trial): three wrong passphrases end the prompt refused (exit status 4, as
/// `daemon --passphrase-file` with a wrong one).
#[test]
fn three_wrong_passphrases_end_the_prompt_with_status_4() {
    let mut alice = Person::new("alice", free_udp_port());
    alice.passphrase = Some("right one".into());
    alice.init();
    let tmux = Tmux::start_sized(
        &format!(
            "sh -c 'trap : INT; {}; echo PROMPT-ENDED $?; sleep 600'",
            chat_command(&alice)
        ),
        80,
        30,
    );
    let _core = KillCore(alice.data_dir().display().to_string());
    for n in 1..=3 {
        tmux.wait_screen("the passphrase question", |s| {
            s.matches("Passphrase for your identity key").count() == n
        });
        tmux.type_text("wrong one");
        tmux.keys(&["Enter"]);
    }
    let s = tmux.wait_text("PROMPT-ENDED");
    assert!(s.contains("PROMPT-ENDED 4"), "{s}");
}

/// Finding 5 (second trial): Ctrl-C at the first run's name question ends its line (the shell's
/// output starts on a line of its own) and the prompt ends as a cancelled action (status 4);
/// at the passphrase question the cancelled entry shows no success mark.
#[test]
fn ctrl_c_at_the_first_run_ends_the_line_with_status_4_and_no_success_mark() {
    let alice = Person::new("alice", free_udp_port());
    let tmux = Tmux::start_sized(
        &format!(
            "sh -c 'trap : INT; {c}; echo PROMPT-ENDED $?; {c}; echo PROMPT-ENDED $?; sleep 600'",
            c = chat_command(&alice)
        ),
        80,
        30,
    );
    let _core = KillCore(alice.data_dir().display().to_string());
    tmux.wait_text("Your name, as others will see it");
    tmux.keys(&["C-c"]);
    let s = tmux.wait_text("PROMPT-ENDED");
    assert!(
        s.lines().any(|l| l.starts_with("PROMPT-ENDED 4")),
        "not on a line of its own, or not 4:\n{s}"
    );
    assert!(s.contains("cancelled: no identity was created"), "{s}");
    // The second run: Ctrl-C at the passphrase.
    tmux.wait_screen("the second first run", |s| {
        s.matches("Your name, as others will see it").count() == 2
    });
    tmux.keys(&["Enter"]);
    tmux.wait_text("Passphrase to protect your key");
    tmux.keys(&["C-c"]);
    let s = tmux.wait_screen("the second end", |s| s.matches("PROMPT-ENDED").count() == 2);
    let line = s
        .lines()
        .find(|l| l.contains("Passphrase to protect your key"))
        .unwrap();
    assert!(line.contains("cancelled") && !line.contains('✔'), "{s}");
    assert!(
        s.lines()
            .filter(|l| l.starts_with("PROMPT-ENDED 4"))
            .count()
            == 2,
        "{s}"
    );
}

/// Finding 6 (second trial): a /restart that fails (here the core's listening port is taken)
/// says why once, in the chat view, which stays; the next /restart brings the core back there.
#[test]
fn a_failed_restart_is_said_once_and_the_chat_view_stays() {
    let (alice, bob) = alice_and_bob_running();
    let id = bob.open_with(&alice, "pw");
    let tmux = Tmux::start_sized(&chat_command(&alice), 80, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    open_first_discussion(&tmux, "bob");
    alice.ok(&["stop"]);
    tmux.wait_text("the core stopped");
    wait_for(20, "the core to stop", || {
        alice.run(&["status"]).status.code() == Some(5)
    });
    // The port the core must listen on is taken: it cannot start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let profile = std::fs::read_to_string(&alice.config).unwrap();
    let busy = profile.replace(
        "[listener]\nbind = \"127.0.0.1\"\nport = 0",
        &format!("[listener]\nbind = \"127.0.0.1\"\nport = {port}"),
    );
    assert_ne!(busy, profile);
    std::fs::write(&alice.config, &busy).unwrap();
    let menus = tmux.scrollback().matches("Requests (").count();
    tmux.type_text("/restart");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_text("the core did not start");
    let said: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let err = &said[said.find("the core did not start").unwrap()..];
    let err = &err[..err.find(" >").unwrap_or(err.len())];
    let mut causes: Vec<&str> = err.split(": ").collect();
    let n = causes.len();
    causes.sort_unstable();
    causes.dedup();
    assert_eq!(causes.len(), n, "a cause said twice:\n{s}");
    // Still in the chat view: its input line, no menu.
    tmux.wait_screen("the input line", |s| {
        s.lines().last().is_some_and(|l| l.starts_with('>')) || s.trim_end().ends_with('>')
    });
    std::fs::write(&alice.config, &profile).unwrap();
    drop(taken);
    tmux.type_text("/restart");
    tmux.keys(&["Enter"]);
    tmux.wait_text("the core is running again");
    assert_eq!(
        tmux.scrollback().matches("Requests (").count(),
        menus,
        "back at the menu"
    );
    tmux.type_text("back in the view");
    tmux.keys(&["Enter"]);
    wait_has_line(&bob, &id, "back in the view", 60, "bob to get the line");
}

/// Finding 7 (second trial): the core stops while the home menu is shown: the menu says so at
/// once, with no key pressed, and asks whether to start it again; yes brings the menu back.
#[test]
fn the_home_menu_says_at_once_that_the_core_stopped_and_offers_to_restart_it() {
    let alice = Person::new("alice", free_udp_port());
    alice.init();
    let tmux = Tmux::start_sized(&chat_command(&alice), 80, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    tmux.wait_text("Requests (0)");
    alice.ok(&["stop"]);
    let s = tmux.wait_text("(y/n)");
    assert!(s.contains("the core stopped"), "{s}");
    assert!(!s.contains("Requests (0)"), "the menu still shown:\n{s}");
    tmux.keys(&["y"]);
    tmux.wait_text("Requests (0)");
    wait_for(20, "the core to answer", || {
        alice.run(&["status"]).status.success()
    });
}

/// Finding 8 (second trial): the chat view says once when the peer goes away and when it is
/// back; after our own /restart it says the peer is connected again.
#[test]
fn the_chat_view_says_when_the_peer_disconnects_and_connects_again() {
    let (alice, mut bob) = alice_and_bob_running();
    let id = alice.open_with(&bob, "pw");
    let tmux = Tmux::start_sized(&chat_command(&alice), 100, 40);
    let _core = KillCore(alice.data_dir().display().to_string());
    open_first_discussion(&tmux, "bob");
    bob.ok(&["stop"]);
    bob.kill();
    let s = tmux.wait_text("(bob disconnected");
    // Two lines wait in the outbox; delivered when bob is back, told on one short line that
    // counts them (their sequence numbers are shown nowhere).
    for l in ["waiting one", "waiting two"] {
        tmux.type_text(l);
        tmux.keys(&["Enter"]);
        tmux.wait_text(&format!("me: {l}"));
    }
    bob.start();
    let s2 = tmux.wait_screen("bob back", |s| {
        s.rsplit("(bob disconnected")
            .next()
            .is_some_and(|a| a.contains("(bob connected)"))
    });
    let s3 = tmux.wait_text("✓✓ delivered:");
    assert!(s3.contains("✓✓ delivered: 2 earlier messages"), "{s3}");
    assert_eq!(
        s2.matches("(bob disconnected").count(),
        1,
        "said more than once:\n{s}"
    );
    // Our own core restarted: bob is said to be connected again.
    alice.ok(&["stop"]);
    tmux.wait_text("the core stopped");
    wait_for(20, "the core to stop", || {
        alice.run(&["status"]).status.code() == Some(5)
    });
    let before = tmux.scrollback().matches("(bob connected)").count();
    tmux.type_text("/restart");
    tmux.keys(&["Enter"]);
    tmux.wait_text("the core is running again");
    tmux.wait_screen("bob connected after the restart", |_| {
        tmux.scrollback().matches("(bob connected)").count() > before
    });
    let _ = id;
}

/// Finding 9 (second trial): a command given an argument it does not take says so (not "unknown
/// command /more (did you mean /more?)"); a slash and a space is text, sent as typed.
#[test]
fn a_command_with_an_extra_argument_says_so_and_slash_space_is_text() {
    let (alice, bob) = alice_and_bob_running();
    let id = bob.open_with(&alice, "pw");
    let tmux = Tmux::start_sized(&chat_command(&alice), 80, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    open_first_discussion(&tmux, "bob");
    tmux.type_text("/more extra");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_text("takes no argument");
    assert!(s.contains("! /more takes no argument"), "{s}");
    assert!(!s.contains("did you mean"), "{s}");
    tmux.type_text("/ hello");
    tmux.keys(&["Enter"]);
    wait_has_line(&bob, &id, "/ hello", 30, "bob to get '/ hello'");
}

/// Finding 10 (second trial): a request announced in the chat view is followed up with one line
/// when it ends: cancelled by the requester, refused (here from another front-end).
#[test]
fn a_request_announced_in_the_chat_view_is_followed_up_when_it_ends() {
    let (alice, bob) = alice_and_bob_running();
    bob.open_with(&alice, "pw");
    let tmux = Tmux::start_sized(&chat_command(&alice), 100, 40);
    let _core = KillCore(alice.data_dir().display().to_string());
    open_first_discussion(&tmux, "bob");
    let secret = bob.secret_file("other");
    let open = || {
        bob.cmd()
            .args([
                "open",
                "alice",
                "--password-file",
                crate::binary::path_str(&secret),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // Cancelled by bob.
    let mut first = open();
    tmux.wait_text("» request from bob: Ctrl-C");
    alice.wait_request(&bob);
    bob.ok(&["cancel", "alice"]);
    let s = tmux.wait_text("» request from bob: cancelled by bob");
    let _ = first.wait();
    // Refused by alice, from the command line.
    let mut second = open();
    tmux.wait_screen("a second request", |s| {
        s.matches("» request from bob: Ctrl-C").count() == 2
    });
    let id = alice.wait_request(&bob);
    alice.ok(&["refuse", &id.to_string()]);
    tmux.wait_text("» request from bob: refused");
    let _ = second.wait();
    assert_eq!(s.matches("cancelled by bob").count(), 1, "{s}");
}

/// Finding 11 (second trial): the man page, rendered as a reader sees it (`man -l`, else groff,
/// else its roff source): no section titled EXTRA, the examples keep their columns, no link to a
/// per-command page that nothing installs, and `history`'s options (`--before`) are there.
#[test]
fn the_man_page_has_every_commands_options_and_keeps_the_examples_columns() {
    let o = Command::new(BIN).arg("man").output().unwrap();
    assert!(o.status.success());
    let roff = String::from_utf8_lossy(&o.stdout).into_owned();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgpchat.1");
    std::fs::write(&file, &roff).unwrap();
    let rendered = Command::new("man")
        .arg("-l")
        .arg(&file)
        .env("MANWIDTH", "200")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .ok()
        .filter(|o| o.status.success() && !o.stdout.is_empty())
        .or_else(|| {
            Command::new("groff")
                .args(["-man", "-Tutf8", "-rLL=200n"])
                .arg(&file)
                .output()
                .ok()
                .filter(|o| o.status.success())
        })
        .map_or(roff.clone(), |o| {
            String::from_utf8_lossy(&o.stdout).into_owned()
        });
    // Bold and underline as a terminal pager shows them, undone.
    let mut page = String::new();
    for c in rendered.chars() {
        if c == '\u{8}' {
            page.pop();
        } else {
            page.push(c);
        }
    }
    assert!(!page.lines().any(|l| l.trim() == "EXTRA"), "{page}");
    assert!(
        !roff.contains("pgpchat\\-history(1)"),
        "a link to a page not made:\n{roff}"
    );
    let history = page
        .find("pgpchat history [OPTIONS]")
        .unwrap_or_else(|| panic!("no history command:\n{page}"));
    assert!(page[history..].contains("--before"), "{page}");
    assert!(
        page.contains(
            "pgpchat --profile alice chat                 the interactive prompt (starts the core if needed)"
        ),
        "the examples' columns lost:\n{page}"
    );
}

/// Finding 12 (second trial): the README walk-through, run as written (the debug binary in place
/// of the release one, its own discovery port): alice's `history` shows bob's reply (it waits for
/// it), and nothing of it stays in the shell that ran it (its `umask 077`, its functions).
#[test]
fn the_readme_walk_through_waits_for_the_reply_and_leaves_the_shell_as_it_was() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let from = readme.find("## A 60-second walk-through").unwrap();
    let block = &readme[from..];
    let start = block.find("```sh\n").unwrap() + "```sh\n".len();
    let end = start + block[start..].find("```").unwrap();
    let script: String = block[start..end]
        .lines()
        .filter(|l| !l.starts_with("cargo build"))
        .map(|l| l.replace("release/pgpchat", "debug/pgpchat") + "\n")
        .collect();
    let target = std::path::Path::new(BIN)
        .parent()
        .unwrap()
        .parent()
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "umask 022\n{script}\necho \"UMASK=$(umask)\"\ntype alice >/dev/null 2>&1 && echo FUNCTIONS-LEFT\n"
        ))
        .current_dir(root)
        .env("CARGO_TARGET_DIR", target)
        .env("HOME", home.path())
        .env("PGPCHAT__DISCOVERY__PORT", free_udp_port().to_string())
        .env_remove("PGPCHAT_PROFILE")
        .env_remove("PGPCHAT_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the walk-through did not end");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        out.contains("UMASK=0022"),
        "the umask stayed:\n{out}\n{err}"
    );
    assert!(!out.contains("FUNCTIONS-LEFT"), "functions stayed:\n{out}");
    // alice's history (the first one printed, not bob's JSON): both lines, the reply included.
    let history = &out[out
        .find("hello bob")
        .unwrap_or_else(|| panic!("{out}\n{err}"))..];
    let history = &history[..history.find("\"body\"").unwrap_or(history.len())];
    assert!(
        history.contains("hi alice"),
        "bob's reply not waited for:\n{out}\n{err}"
    );
}

/// Finding 13 (second trial): a negative `interval_secs` is told the real range (at least 1, not
/// "0 or more"), and `name = ""` is refused (a name is 1 to 64 characters): both usage errors
/// (exit status 2) that name the file and the key.
#[test]
fn configuration_errors_say_the_real_range_and_refuse_an_empty_name() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, key, want) in [
        (
            "[discovery]\ninterval_secs = -5\n",
            "discovery.interval_secs",
            "at least 1",
        ),
        ("[node]\nname = \"\"\n", "node.name", "1 to 64 characters"),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, toml).unwrap();
        let o = Command::new(BIN)
            .arg("--config")
            .arg(&file)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["whoami"])
            .env_remove("PGPCHAT_PROFILE")
            .env_remove("PGPCHAT_CONFIG")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{toml}: {err}");
        assert!(err.contains("bad.toml") && err.contains(key), "{err}");
        assert!(err.contains(want) && !err.contains("0 or more"), "{err}");
    }
}

// The third trial (a new user, issue 12): what was still wrong at 40 columns and with several
// discussions with one peer.

/// The first word of `text` that is not whole on one of `rows` (cut across two by the terminal).
fn cut_word<'a>(rows: &[&str], text: &'a str) -> Option<&'a str> {
    text.split_whitespace()
        .find(|w| !rows.iter().any(|l| l.split_whitespace().any(|t| t == *w)))
}

/// A fingerprint's groups of 4 (as the prompt shows them).
fn groups(fingerprint: &str) -> Vec<String> {
    fingerprint
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

/// A line of exactly `len` columns starting with `tag`: words of 5, no space at the end.
fn filling(tag: &str, len: usize) -> String {
    let mut s = tag.to_string();
    while s.len() < len {
        s.push(if s.len() % 6 == 5 { ' ' } else { 'x' });
    }
    if s.ends_with(' ') {
        s.pop();
        s.push('y');
    }
    s
}

/// Third trial, defect 1: a typed line that exactly fills the terminal's rows (the prompt and
/// the text 40 or 80 columns in a 40-column pane, 80 in an 80-column one) is erased whole after
/// Enter: no stale copy of it stays above its chat line.
#[test]
fn a_line_that_exactly_fills_its_rows_leaves_no_stale_copy_after_enter() {
    let (alice, bob) = alice_and_bob_running();
    let id = bob.open_with(&alice, "pw");
    let tmux = Tmux::start_sized(&chat_command(&alice), 40, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    open_first_discussion(&tmux, "bob");
    for (cols, len, tag) in [(40, 38, "ONE"), (40, 78, "TWO"), (80, 78, "THREE")] {
        if cols == 80 {
            // Back to the menu, wider, and into the view again.
            tmux.keys(&["C-c"]);
            wait_menu(&tmux);
            resize(&tmux, 80);
            open_first_discussion(&tmux, "bob");
        }
        let text = filling(tag, len);
        assert_eq!(text.len() + 2, len + 2);
        tmux.type_text(&text);
        tmux.wait_screen("the typed line", |s| {
            s.replace('\n', "").contains(&text[text.len() - 8..])
        });
        tmux.keys(&["Enter"]);
        wait_has_line(&bob, &id, &text, 30, "bob to get the line");
        tmux.wait_text(&format!("me: {tag}"));
        // The editor's next (empty) line is drawn: what is on screen now stays.
        let s = tmux.wait_screen("the empty input line", |s| {
            s.contains(&format!("me: {tag}"))
                && s.lines().rfind(|l| !l.trim().is_empty()) == Some(">")
        });
        assert!(
            !s.lines().any(|l| l.starts_with(&format!("> {tag}"))),
            "a stale copy of the typed line ({len} columns at {cols}):\n{s}"
        );
    }
}

/// Third trial, defect 2: at 40 columns the first run's lines break at words and its
/// fingerprint between groups of 4; so do the Verify screen's two fingerprints.
#[test]
fn at_40_columns_fingerprints_and_first_run_lines_break_between_groups_and_words() {
    let port = free_udp_port();
    let mut bob = Person::new("bob", port);
    bob.init();
    bob.start();
    let alice = Person::new("alice", port);
    let tmux = Tmux::start_sized(&chat_command(&alice), 40, 60);
    let _core = KillCore(alice.data_dir().display().to_string());
    tmux.wait_text("Your name, as others will see it");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Passphrase to protect");
    tmux.keys(&["Enter"]);
    wait_menu(&tmux);
    let s = tmux.scrollback();
    let rows: Vec<&str> = s.lines().collect();
    let warning = format!(
        "warning: no passphrase: anyone who can read {} can read your secret key and messages",
        alice.data_dir().display()
    );
    for text in [
        "Welcome to pgpchat. First, your identity: a key pair that is yours alone.",
        "Read it to the people you talk to, so they can verify it is you.",
        "Passphrase to protect your key (empty: none)",
        &warning,
    ] {
        if let Some(w) = cut_word(&rows, text) {
            panic!("{w:?} cut at the first run:\n{s}");
        }
    }
    let mine = groups(&alice.fingerprint());
    let shown = block(&s, "Your fingerprint:", "Read it");
    let shown = &shown[..shown.len() - 1];
    for g in &mine {
        assert!(
            cut_word(shown, g).is_none(),
            "group {g} cut in the first run's fingerprint:\n{s}"
        );
    }

    alice.wait_sees(&bob);
    tmux.keys(&["Down", "Down", "Down", "Down", "Enter"]);
    tmux.wait_text("? Verify");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_text("(y/n)");
    let shown = block(&s, "Compare aloud", "(y/n)");
    for g in mine.iter().chain(&groups(&bob.fingerprint())) {
        assert!(
            cut_word(&shown, g).is_none(),
            "group {g} cut on the Verify screen:\n{s}"
        );
    }
    tmux.keys(&["n"]);
    wait_menu(&tmux);
}

/// Third trial, defect 3: at 40 columns the line confirming a menu choice, what an action then
/// says, "Waiting for bob…", and the binary's last error (on stderr, as the prompt ends) break at
/// words.
#[test]
fn at_40_columns_chosen_lines_waiting_and_the_last_error_break_at_words() {
    let (alice, _bob) = alice_and_bob_running();
    let tmux = Tmux::start_sized(&chat_command(&alice), 40, 40);
    let _core = KillCore(alice.data_dir().display().to_string());
    wait_menu(&tmux);
    // "Ask a contact for its contacts": no discussion is open, so it says there is none to ask.
    tmux.keys(&["Down", "Down", "Down", "Down", "Down", "Down", "Enter"]);
    let s = tmux.wait_text("it).");
    let rows: Vec<&str> = s.lines().collect();
    for text in [
        "✔ pgpchat · Ask a contact for its contacts",
        "No contact with an open discussion: open a discussion with them first (this travels over it).",
    ] {
        if let Some(w) = cut_word(&rows, text) {
            panic!("{w:?} cut:\n{s}");
        }
    }
    wait_menu(&tmux);
    tmux.keys(&["Down", "Enter"]);
    tmux.wait_text("? Talk to");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Secret shared with bob");
    tmux.type_text("purple tulip");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_text("the request...");
    let rows: Vec<&str> = s.lines().collect();
    let waiting = "Waiting for bob to accept (up to 10 min); Ctrl-C cancels the request...";
    if let Some(w) = cut_word(&rows, waiting) {
        panic!("{w:?} cut:\n{s}");
    }
    tmux.keys(&["C-c"]);
    wait_menu(&tmux);

    // The last error, printed by the binary on stderr as the prompt ends.
    let carol = Person::new("carol", free_udp_port());
    let tmux = Tmux::start_sized(
        &format!(
            "sh -c 'trap : INT; {}; echo PROMPT-ENDED $?; sleep 600'",
            chat_command(&carol)
        ),
        40,
        30,
    );
    tmux.wait_text("Your name, as others will see it");
    tmux.keys(&["C-c"]);
    let s = tmux.wait_text("PROMPT-ENDED");
    let rows: Vec<&str> = s.lines().collect();
    if let Some(w) = cut_word(&rows, "pgpchat: cancelled: no identity was created") {
        panic!("{w:?} cut:\n{s}");
    }
}

/// Third trial, defect 4: Ctrl-C at the passphrase question of `/restart` says "(not
/// restarted)" and stays in the chat view; the next `/restart` starts the core there.
#[test]
fn ctrl_c_at_the_restart_passphrase_says_not_restarted_and_stays_in_the_view() {
    let port = free_udp_port();
    let mut alice = Person::new("alice", port);
    alice.passphrase = Some("right one".into());
    let mut bob = Person::new("bob", port);
    alice.init();
    bob.init();
    alice.start();
    bob.start();
    alice.wait_sees(&bob);
    bob.wait_sees(&alice);
    let id = bob.open_with(&alice, "pw");
    let tmux = Tmux::start_sized(&chat_command(&alice), 80, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    open_first_discussion(&tmux, "bob");
    alice.ok(&["stop"]);
    tmux.wait_text("the core stopped");
    wait_for(20, "the core to stop", || {
        alice.run(&["status"]).status.code() == Some(5)
    });
    let menus = tmux.scrollback().matches("Requests (").count();
    tmux.type_text("/restart");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Passphrase for your identity key");
    tmux.keys(&["C-c"]);
    tmux.wait_text("(not restarted)");
    // Still in the chat view: its input line, no menu, no question to start the core.
    let s = tmux.wait_screen("the input line", |s| {
        s.lines().rfind(|l| !l.trim().is_empty()) == Some(">")
    });
    assert!(!s.contains("Start the core again"), "{s}");
    assert_eq!(
        tmux.scrollback().matches("Requests (").count(),
        menus,
        "back at the menu"
    );
    tmux.type_text("/restart");
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the question again", |s| {
        s.matches("Passphrase for your identity key").count() == 2
    });
    tmux.type_text("right one");
    tmux.keys(&["Enter"]);
    tmux.wait_text("the core is running again");
    tmux.type_text("after the restart");
    tmux.keys(&["Enter"]);
    wait_has_line(&bob, &id, "after the restart", 60, "bob to get the line");
}

/// Third trial, defect 5: with two discussions with one peer, the chat header and the notices
/// name the discussion by its short id (as the picker and `/list` do), and the notice's hint
/// (`/switch ID`) goes to that discussion.
#[test]
fn with_two_discussions_with_one_peer_the_header_and_notices_show_the_short_id() {
    let (alice, bob) = alice_and_bob_running();
    let first = bob.open_with(&alice, "pw");
    let second = bob.open_with(&alice, "pw");
    let tmux = Tmux::start_sized(&chat_command(&alice), 80, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    wait_menu(&tmux);
    tmux.keys(&["Down", "Down", "Down", "Enter"]);
    tmux.wait_text("? Discussion");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_screen("the header with an id", |s| {
        [&first, &second]
            .iter()
            .any(|id| s.contains(&format!("── bob ({}) · ", &id[..8])))
    });
    let (current, other) = if s.contains(&format!("── bob ({}) · ", &first[..8])) {
        (&first, &second)
    } else {
        (&second, &first)
    };
    tmux.wait_screen("the input line", |s| {
        s.lines().rfind(|l| !l.trim().is_empty()) == Some(">")
    });
    bob.ok(&["send", other, "in the other one"]);
    let s = tmux.wait_text("in the other one");
    let notice = format!(
        "» bob ({}): in the other one  (/switch {})",
        &other[..8],
        &other[..8]
    );
    assert!(s.contains(&notice), "no {notice:?}:\n{s}");
    bob.ok(&["send", current, "in this one"]);
    tmux.wait_text("bob: in this one");
    tmux.type_text(&format!("/switch {}", &other[..8]));
    tmux.keys(&["Enter"]);
    tmux.wait_text(&format!("── bob ({}) · ", &other[..8]));
    tmux.wait_text("bob: in the other one");
}

/// Third trial, defect 6: the README's capture of the prompt shows what the prompt prints: its
/// first run (the hidden entries as "(hidden)", the repeated passphrase), the contacts, the
/// secret asked when opening a discussion, the wait. Fingerprints, ports and times aside.
#[test]
fn the_readme_capture_of_the_prompt_is_what_it_prints() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let from = readme.find("## What the prompt looks like").unwrap();
    let block_start = from + readme[from..].find("```\n").unwrap() + 4;
    let capture = &readme[block_start..block_start + readme[block_start..].find("```").unwrap()];
    let capture: Vec<&str> = capture
        .lines()
        .take_while(|l| !l.starts_with("── "))
        .collect();
    // Hex runs (fingerprints) and digits (seconds ago) are not compared.
    let norm = |l: &str| {
        let mut out = String::new();
        let mut hex = String::new();
        for c in l.chars().chain(std::iter::once('\n')) {
            if c.is_ascii_digit() || ('A'..='F').contains(&c) {
                hex.push(c);
                continue;
            }
            if hex.len() >= 4 {
                out.push('H');
            } else {
                // A number of any length is one digit (1s ago, 12s ago).
                for h in hex.chars() {
                    if !h.is_ascii_digit() {
                        out.push(h);
                    } else if !out.ends_with('9') {
                        out.push('9');
                    }
                }
            }
            hex.clear();
            out.push(c);
        }
        out.trim_end().to_string()
    };
    let port = free_udp_port();
    let mut bob = Person::new("bob", port);
    bob.init();
    bob.start();
    let alice = Person::new("alice", port);
    let tmux = Tmux::start_sized(&chat_command(&alice), 80, 50);
    let _core = KillCore(alice.data_dir().display().to_string());
    tmux.wait_text("Your name, as others will see it");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Passphrase to protect");
    tmux.type_text("hunter2");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Repeat it");
    tmux.type_text("hunter2");
    tmux.keys(&["Enter"]);
    wait_menu(&tmux);
    alice.wait_sees(&bob);
    tmux.keys(&["Enter"]);
    tmux.wait_text("  bob ");
    wait_menu(&tmux);
    tmux.keys(&["Down", "Enter"]);
    tmux.wait_text("? Talk to");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Secret shared with bob");
    tmux.type_text("pw");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_text("Ctrl-C cancels the request...");
    let shown: Vec<String> = block(&s, "Welcome", "Ctrl-C cancels the request...")
        .iter()
        .map(|l| norm(l))
        .collect();
    let readme: Vec<String> = capture.iter().map(|l| norm(l)).collect();
    assert_eq!(
        readme, shown,
        "README.md (left) is not what the prompt prints (right)"
    );
    tmux.keys(&["C-c"]);
    wait_menu(&tmux);
}

/// The pid of the prompt the pane's shell runs (its child named `pgpchat`).
fn prompt_pid(tmux: &Tmux) -> u32 {
    let shell = tmux.var("pane_pid");
    let mut found = None;
    wait_for(20, "the prompt's process", || {
        found = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                // `pid (comm) state ppid ...`: the fields after the last `)`.
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    stat.contains("(pgpchat)")
                        && stat
                            .rsplit(')')
                            .next()
                            .and_then(|rest| rest.split_whitespace().nth(1))
                            == Some(shell.as_str())
                })
            });
        found.is_some()
    });
    found.unwrap()
}

/// Issue 12 (last trial), defect 4: a prompt ended by a signal gives the terminal back. SIGTERM
/// at the home menu (echo off, keys one by one) and SIGHUP at a hidden entry (raw mode): each
/// time the shell after it has its echo and line mode, the cursor is visible, and the shell saw
/// the signal (status 128 + its number). Before, the echo stayed off.
#[test]
fn a_prompt_ended_by_a_signal_gives_the_terminal_back() {
    let (alice, _bob) = alice_and_bob_running();
    // Each run is followed by its status and the terminal's echo and line-mode flags, then reads a
    // line (its echo is what a person sees) before the next run.
    let tmux = Tmux::start_sized(
        &format!(
            "sh -c 'for run in 1 2; do {}; echo \"ENDED-$run status=$?\"; \
             stty -a | tr \" \" \"\\n\" | grep -x -e -echo -e echo -e -icanon -e icanon \
             | tr \"\\n\" \" \"; echo \"FLAGS-$run\"; read typed; done; sleep 600'",
            chat_command(&alice)
        ),
        40,
        30,
    );
    let _core = KillCore(alice.data_dir().display().to_string());
    let flags = |s: &str, run: u8| -> String {
        let end = format!("FLAGS-{run}");
        s.lines()
            .find(|l| l.contains(&end))
            .unwrap_or_else(|| panic!("no {end}:\n{s}"))
            .to_string()
    };

    // SIGTERM at the home menu.
    wait_menu(&tmux);
    let pid = prompt_pid(&tmux);
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let s = tmux.wait_text("FLAGS-1");
    assert!(s.contains("ENDED-1 status=143"), "{s}");
    let f = flags(&s, 1);
    assert!(
        f.contains("icanon")
            && !f.contains("-icanon")
            && f.contains("echo")
            && !f.contains("-echo"),
        "the terminal was not given back after SIGTERM: {f}\n{s}"
    );
    assert!(tmux.cursor_visible(), "cursor hidden after SIGTERM:\n{s}");
    tmux.type_text("echoed-1");
    tmux.wait_text("echoed-1");
    tmux.keys(&["Enter"]);

    // SIGHUP at the hidden entry of a shared secret.
    wait_menu(&tmux);
    tmux.keys(&["Down", "Enter"]);
    tmux.wait_text("? Talk to");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Secret shared with bob");
    let pid = prompt_pid(&tmux);
    assert!(Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let s = tmux.wait_text("FLAGS-2");
    assert!(s.contains("ENDED-2 status=129"), "{s}");
    let f = flags(&s, 2);
    assert!(
        f.contains("icanon")
            && !f.contains("-icanon")
            && f.contains("echo")
            && !f.contains("-echo"),
        "the terminal was not given back after SIGHUP: {f}\n{s}"
    );
    assert!(tmux.cursor_visible(), "cursor hidden after SIGHUP:\n{s}");
    tmux.type_text("echoed-2");
    tmux.wait_text("echoed-2");
}

/// The discussion ids `/list` showed last, by number: the short ids of the last row of each
/// number on the screen.
fn listed(s: &str, numbers: &[usize]) -> Vec<String> {
    numbers
        .iter()
        .map(|n| {
            let tag = format!(" /{n} ");
            let row = s
                .lines()
                .rfind(|l| l.contains(&tag))
                .unwrap_or_else(|| panic!("no /{n} in the list:\n{s}"));
            let open = row.find('(').unwrap_or_else(|| panic!("no id: {row}\n{s}"));
            row[open + 1..open + 9].to_string()
        })
        .collect()
}

/// Issue 12 (last trial), defect 1: `/list` numbers discussions in an order that does not move
/// when another one gets a message (it was the activity order), and `/N` and `/switch N` open the
/// one shown as N. At 40 columns.
#[test]
fn list_numbers_stay_put_and_slash_n_opens_the_one_shown() {
    let (alice, bob) = alice_and_bob_running();
    let first = bob.open_with(&alice, "pw");
    let second = bob.open_with(&alice, "pw");
    let tmux = Tmux::start_sized(&chat_command(&alice), 40, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    open_first_discussion(&tmux, "bob");
    let list = |tmux: &Tmux| {
        let before = tmux.scrollback().matches(" /2 ").count();
        tmux.type_text("/list");
        tmux.keys(&["Enter"]);
        tmux.wait_screen("the list", |_| {
            tmux.scrollback().matches(" /2 ").count() > before
        });
        listed(&tmux.scrollback(), &[1, 2])
    };
    let shown = list(&tmux);
    let mut ids = shown.clone();
    ids.sort();
    let mut both = vec![first[..8].to_string(), second[..8].to_string()];
    both.sort();
    assert_eq!(ids, both, "{shown:?}");

    // The discussion the core lists last (the least active) gets a message: it becomes the most
    // active (times are in seconds: one later than the others').
    let by_activity = || -> Vec<String> {
        alice
            .json(&["discussions"])
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap()[..8].to_string())
            .collect()
    };
    let least = by_activity()[1].clone();
    let full = if first.starts_with(&least) {
        &first
    } else {
        &second
    };
    std::thread::sleep(Duration::from_millis(1100));
    bob.ok(&["send", full, "now the most active"]);
    wait_for(20, "the order of activity to change", || {
        by_activity()[0] == least
    });
    let again = list(&tmux);
    assert_eq!(again, shown, "the numbers moved:\n{}", tmux.screen());

    // `/N` opens the one shown as N (the other than the current one), `/switch N` too.
    let current = tmux
        .scrollback()
        .lines()
        .rfind(|l| l.starts_with("── bob ("))
        .map(|l| l["── bob (".len()..].chars().take(8).collect::<String>())
        .unwrap();
    let other = shown.iter().position(|id| *id != current).unwrap() + 1;
    let back = shown.iter().position(|id| *id == current).unwrap() + 1;
    for (typed, n) in [
        (format!("/{other}"), other),
        (format!("/switch {back}"), back),
    ] {
        let header = format!("── bob ({}) ", shown[n - 1]);
        let before = tmux.scrollback().matches(&header).count();
        tmux.type_text(&typed);
        tmux.keys(&["Enter"]);
        tmux.wait_screen(&format!("{typed}: the header of {header}"), |_| {
            tmux.scrollback().matches(&header).count() > before
        });
    }
}

/// Issue 12 (last trial), defect 2: the Requests picker is kept current while it is shown: a
/// request that arrives appears, requests withdrawn go (the picker says none waits), and a request
/// picked but withdrawn before it is answered says it is gone, without asking for the secret.
/// At 40 columns.
#[test]
fn the_requests_picker_shows_requests_as_they_come_and_go() {
    let (alice, bob) = alice_and_bob_running();
    let tmux = Tmux::start_sized(&chat_command(&alice), 40, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    let secret = bob.secret_file("pw");
    let open = || {
        bob.cmd()
            .args([
                "open",
                "alice",
                "--password-file",
                crate::binary::path_str(&secret),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let waiting = || alice.requests().as_array().map_or(0, Vec::len);
    let mut first = open();
    wait_for(20, "bob's first request", || waiting() == 1);
    wait_menu(&tmux);
    tmux.wait_text("Requests (1)");
    tmux.keys(&["Down", "Down", "Enter"]);
    tmux.wait_text("#1 bob");
    // A second request arrives while the picker is shown: it appears.
    let mut second = open();
    tmux.wait_text("#2 bob");
    // Both withdrawn: they go, and the picker says none waits.
    bob.ok(&["cancel", "alice"]);
    let s = tmux.wait_screen("the requests gone", |s| {
        s.contains("(none waiting") && !s.contains("#1 bob") && !s.contains("#2 bob")
    });
    assert!(s.contains("? Request"), "{s}");
    let _ = first.wait();
    let _ = second.wait();
    // One more arrives and is picked; withdrawn while the question is shown, it says so.
    let mut third = open();
    tmux.wait_text("#3 bob");
    tmux.keys(&["Enter"]);
    tmux.wait_text("bob asks for a discussion");
    bob.ok(&["cancel", "alice"]);
    wait_for(20, "the request withdrawn", || waiting() == 0);
    tmux.keys(&["Enter"]);
    let s = tmux.wait_text("is gone");
    assert!(!s.contains("Secret shared with bob"), "asked anyway:\n{s}");
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("The request #3 from bob is gone (withdrawn by bob, expired, or answered elsewhere): nothing was done."),
        "{s}"
    );
    let _ = third.wait();
    // The core stops under the picker: it gives way to the menu's question, said once.
    wait_menu(&tmux);
    tmux.keys(&["Down", "Down", "Enter"]);
    tmux.wait_screen("the empty picker", |s| {
        s.lines()
            .rfind(|l| !l.trim().is_empty())
            .is_some_and(|l| l.contains("(none waiting"))
    });
    alice.ok(&["stop"]);
    let s = tmux.wait_text("(y/n)");
    assert_eq!(
        s.lines().filter(|l| l.starts_with("! ")).count(),
        1,
        "not said once:\n{s}"
    );
}

/// The core a prompt starts does not inherit the signals the prompt blocks in its threads (those
/// that end it, given to the one thread that gives the terminal back): SIGTERM stops it, and the
/// menu says so.
#[test]
fn a_core_started_by_the_prompt_stops_on_sigterm() {
    let alice = Person::new("alice", free_udp_port());
    alice.init();
    let tmux = Tmux::start_sized(&chat_command(&alice), 80, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    wait_menu(&tmux);
    let dir = alice.data_dir().display().to_string();
    let core = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                args.contains(&b"daemon".as_slice()) && args.contains(&dir.as_bytes())
            })
        })
        .expect("the core the prompt started");
    assert!(Command::new("kill")
        .args(["-TERM", &core.to_string()])
        .status()
        .unwrap()
        .success());
    wait_for(20, "the core to stop on SIGTERM", || {
        alice.run(&["status"]).status.code() == Some(5)
    });
    tmux.wait_text("(y/n)");
}

/// Issue 15: `/rotate` in the chat view replaces our key of the discussion, says the new key is
/// pending until bob has it, then a one-line notice says it is ours; `/key` shows it in 40
/// columns, and `pgpchat discussions --json` reports that same key id.
#[test]
fn rotate_in_the_chat_view_says_the_new_key_pending_then_active_and_key_shows_it() {
    let (alice, bob) = alice_and_bob_running();
    let id = bob.open_with(&alice, "pw");
    let key_of = |p: &Person| -> String {
        p.json(&["discussions"])
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id.as_str())
            .and_then(|d| d["key_id"].as_str().map(String::from))
            .expect("a key id")
    };
    let old = key_of(&alice);
    let tmux = Tmux::start_sized(&chat_command(&alice), 40, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    open_first_discussion(&tmux, "bob");
    tmux.type_text("/rotate");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_text("pending;");
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let new = joined
        .split("(new key ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("no new key said:\n{s}"))
        .to_string();
    assert_ne!(new, old, "{s}");
    assert!(
        joined.contains(&format!(
            "(new key {new} pending; it becomes active when bob has it)"
        )),
        "{s}"
    );
    let s = tmux.wait_screen("the key_rotated notice", |s| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains(&format!(
                "(your key is now {new}; the old one is being destroyed)"
            ))
    });
    assert!(!s.contains(&old), "the old key still shown:\n{s}");
    wait_for(30, "discussions --json to report the new key", || {
        key_of(&alice) == new
    });
    tmux.type_text("/key");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_text("· rotated ");
    let line = s
        .lines()
        .find(|l| l.starts_with("key "))
        .unwrap_or_else(|| panic!("no /key line:\n{s}"));
    assert!(line.starts_with(&format!("key {new} · rotated ")), "{s}");
    assert!(line.chars().count() <= 40, "{line}");
}
