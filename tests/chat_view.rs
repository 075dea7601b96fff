//! The chat view and Ctrl-C as a person meets them (issue 12): a real terminal (tmux), keys sent,
//! the screen read back.

use std::time::{Duration, Instant};

use crate::binary::{alice_and_bob_running, wait_for, Person, BIN};
use crate::common::free_udp_port;
use crate::prompt::{KillCore, Tmux};

pub(crate) fn chat_command(p: &Person) -> String {
    format!(
        "{BIN} --config {} --data-dir {} chat",
        p.config.display(),
        p.data_dir().display()
    )
}

/// The bodies of a discussion's messages, as `history` lists them.
fn bodies(p: &Person, discussion: &str) -> Vec<String> {
    p.json(&["history", discussion, "--limit", "1000"])
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect()
}

/// Wait until the home menu is shown and reading keys: its last entry is the screen's last line
/// (a menu drawn earlier and since left would still match a plain text search, and keys sent
/// then are dropped as type-ahead when the menu is drawn again).
pub(crate) fn wait_menu(tmux: &Tmux) {
    tmux.wait_screen("the home menu, shown", |s| {
        s.lines()
            .rfind(|l| !l.trim().is_empty())
            .is_some_and(|l| l.trim_end().ends_with("Quit"))
    });
}

/// From the menu, open the first (most recent) discussion's chat view.
pub(crate) fn open_first_discussion(tmux: &Tmux, peer: &str) {
    wait_menu(tmux);
    tmux.keys(&["Down", "Down", "Down", "Enter"]);
    tmux.wait_text("? Discussion");
    // A chat view opened before may still be on screen: wait for one more header, then for the
    // input line under it (the line editor reads keys from then on; keys sent earlier would be
    // read by the terminal in cooked mode).
    // `── bob · `, or `── bob (1a2b3c4d) · ` when bob has several discussions with us.
    let header = format!("── {peer} ");
    let before = tmux.scrollback().matches(&header).count();
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the chat view's input line", |_| {
        let all = tmux.scrollback();
        all.matches(&header).count() > before
            && all
                .rsplit(&header)
                .next()
                .is_some_and(|after| after.lines().any(|l| l == ">" || l.starts_with("> ")))
    });
}

/// Defects 1 and 4, notifications and scrollback: at 40 columns a line longer than the pane is
/// shown once while typed and once sent, earlier lines intact; a paste of several lines is one
/// message; a mistyped command is not sent;
/// another discussion's message is announced; `/more` pages back to the first message.
#[test]
fn the_chat_view_at_40_columns_edits_announces_and_pages_back_to_the_first_message() {
    let (alice, bob) = alice_and_bob_running();
    let other = bob.open_with(&alice, "pw");
    let id = bob.open_with(&alice, "pw");
    for i in 0..45 {
        bob.ok(&["send", &id, &format!("number {i:02}")]);
    }
    wait_for(30, "45 messages at alice", || {
        bodies(&alice, &id).len() == 45
    });
    // Read (history marks read); then two unread ones.
    bob.ok(&["send", &id, "unread one"]);
    bob.ok(&["send", &id, "unread two"]);
    wait_for(30, "2 unread at alice", || {
        alice
            .json(&["discussions"])
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == id.as_str() && d["unread"] == 2)
    });

    let tmux = Tmux::start_sized(&chat_command(&alice), 40, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    open_first_discussion(&tmux, "bob");
    let s = tmux.wait_text("unread two");
    assert!(s.contains("── 2 unread ──"), "no unread separator:\n{s}");

    // A line longer than the pane, typed a word at a time: one copy on screen, not one per key.
    let words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima END";
    for w in words.split(' ') {
        tmux.type_text(&format!("{w} "));
    }
    let s = tmux.wait_text("lima END");
    assert_eq!(s.matches("foxtrot").count(), 1, "typed line repeated:\n{s}");
    assert!(s.contains("bob: unread two"), "earlier lines damaged:\n{s}");
    tmux.keys(&["Enter"]);
    wait_for(30, "bob to get the long line", || {
        bodies(&bob, &id).iter().any(|b| b.ends_with("lima END"))
    });
    let s = tmux.wait_text("me: alpha");
    assert_eq!(
        s.matches("foxtrot").count(),
        1,
        "sent line shown twice:\n{s}"
    );

    // A mistyped command: an error with a hint, never sent, not left in the line (the next
    // command is not glued to it), Up brings it back.
    // (At 40 columns the error is broken at words: read the screen with its words joined.)
    let wait_joined = |what: &str| {
        tmux.wait_screen(what, |s| {
            s.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .contains(what)
        });
    };
    tmux.type_text("/clsoe");
    tmux.keys(&["Enter"]);
    wait_joined("unknown command /clsoe (did you mean /close?): not sent");
    tmux.type_text("/Back");
    tmux.keys(&["Enter"]);
    wait_joined("unknown command /Back (did you mean /back?)");
    tmux.keys(&["Up"]);
    wait_joined("> /Back");
    tmux.keys(&["C-u"]);
    // `//text` sends a literal slash.
    tmux.type_text("//slash");
    tmux.keys(&["Enter"]);
    wait_for(30, "bob to get the slash line", || {
        bodies(&bob, &id).contains(&"/slash".to_string())
    });
    let theirs = bodies(&bob, &id);
    assert!(
        !theirs
            .iter()
            .any(|b| b.contains("clsoe") || b.contains("Back")),
        "{theirs:?}"
    );

    // A paste of several lines is one message.
    tmux.paste("pasted one\npasted two");
    tmux.wait_text("pasted two");
    tmux.keys(&["Enter"]);
    wait_for(30, "bob to get the pasted lines", || {
        bodies(&bob, &id).contains(&"pasted one\npasted two".to_string())
    });

    // The other discussion gets a message: a notice here, the conversation unchanged. bob has
    // two discussions with alice: the notice names this one by its short id.
    bob.ok(&["send", &other, "over here"]);
    wait_joined(&format!(
        "» bob ({}): over here (/switch {})",
        &other[..8],
        &other[..8]
    ));

    // Page back to the first message.
    tmux.type_text("/more");
    tmux.keys(&["Enter"]);
    wait_joined("that was the first message");
    let all = tmux.scrollback();
    for i in 0..45 {
        assert!(
            all.contains(&format!("number {i:02}")),
            "message {i} never shown:\n{all}"
        );
    }
}

/// The process id of the prompt running on `data_dir` (its command line names it and `chat`).
fn prompt_pid(data_dir: &str) -> u32 {
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == data_dir)
            && args.last().is_some_and(|a| a == "chat")
            && args.first().is_some_and(|a| a.ends_with("pgpchat"))
        {
            return pid;
        }
    }
    panic!("no prompt process for {data_dir}");
}

/// User and system CPU ticks a process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Defect 3: the core stops under a chat view: the view says so, the prompt waits without using
/// the CPU, the line being typed stays, and /restart brings the core back.
#[test]
fn when_the_core_stops_under_a_chat_view_the_prompt_idles_keeps_the_text_and_restarts_it() {
    let (mut alice, mut bob) = alice_and_bob_running();
    let id = alice.open_with(&bob, "pw");
    let tmux = Tmux::start_sized(&chat_command(&alice), 40, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    open_first_discussion(&tmux, "bob");
    tmux.type_text("half typed");
    tmux.wait_text("> half typed");

    alice.ok(&["stop"]);
    let s = tmux.wait_text("the core stopped");
    assert!(s.contains("> half typed"), "typed text lost:\n{s}");
    alice.kill();
    // At most a tenth of one core while nothing happens (ticks are 1/100 s on Linux).
    let pid = prompt_pid(&alice.data_dir().display().to_string());
    let before = cpu_ticks(pid);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(pid) - before;
    let allowed = start.elapsed().as_secs() * 10;
    assert!(
        used <= allowed,
        "the prompt used {used} ticks in 3 s with the core stopped"
    );

    // Enter: not sent, said why, the text still there to send later.
    tmux.keys(&["Enter"]);
    let s = tmux.wait_text("not sent: the core is not running");
    assert!(
        s.trim_end().ends_with("> half typed"),
        "typed text lost:\n{s}"
    );
    tmux.keys(&["C-u"]);
    tmux.type_text("/restart");
    tmux.keys(&["Enter"]);
    tmux.wait_text("the core is running again");
    tmux.type_text("after the restart");
    tmux.keys(&["Enter"]);
    wait_for(60, "bob to get the message sent after the restart", || {
        bodies(&bob, &id).contains(&"after the restart".to_string())
    });
    bob.kill();
}

/// Defect 2: Ctrl-C in a submenu, while a request waits for the peer (it is cancelled, and gone
/// from the peer's requests), and in the chat view returns to the menu, alive; in the menu it
/// ends the prompt, the cursor visible at the shell (a menu hides it while it is shown, as
/// dialoguer does; the waiting line and the chat view show it).
#[test]
fn ctrl_c_returns_to_the_menu_cancels_a_waiting_request_and_restores_the_cursor() {
    let port = free_udp_port();
    let mut bob = Person::new("bob", port);
    bob.init();
    bob.start();
    let alice = Person::new("alice", port);
    alice.init();
    // The shell stands for the user's: Ctrl-C is for the prompt, the shell goes on after it.
    let tmux = Tmux::start(&format!(
        "sh -c 'trap : INT; {}; echo PROMPT-ENDED; sleep 600'",
        chat_command(&alice)
    ));
    let _core = KillCore(alice.data_dir().display().to_string());
    let menus = |t: &Tmux| t.scrollback().matches("Requests (").count();
    tmux.wait_text("Requests (0)");
    alice.wait_sees(&bob);
    let back_at_the_menu = |t: &Tmux, before: usize, what: &str| {
        let end = Instant::now() + Duration::from_secs(20);
        while menus(t) <= before {
            assert!(
                Instant::now() < end,
                "not back at the menu after Ctrl-C {what}:\n{}",
                t.screen()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // In a submenu.
    tmux.keys(&["Down", "Enter"]);
    tmux.wait_text("Talk to");
    let n = menus(&tmux);
    tmux.keys(&["C-c"]);
    back_at_the_menu(&tmux, n, "in a submenu");

    // At the hidden secret: cancelled at once, nothing carried over to the next entry.
    tmux.keys(&["Down", "Enter"]);
    tmux.wait_text("Talk to");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Secret shared with bob");
    let n = menus(&tmux);
    tmux.keys(&["C-c"]);
    back_at_the_menu(&tmux, n, "at the shared secret");

    // While the request waits for bob.
    tmux.keys(&["Down", "Enter"]);
    tmux.wait_text("Talk to");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Secret shared with bob");
    tmux.type_text("purple tulip");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Ctrl-C cancels the request");
    bob.wait_request(&alice);
    assert!(tmux.cursor_visible(), "cursor hidden:\n{}", tmux.screen());
    let n = menus(&tmux);
    tmux.keys(&["C-c"]);
    tmux.wait_text("Request to bob cancelled.");
    back_at_the_menu(&tmux, n, "while waiting");
    wait_for(20, "the request to disappear from bob's requests", || {
        bob.requests().as_array().unwrap().is_empty()
    });
    assert!(alice.json(&["discussions"]).as_array().unwrap().is_empty());

    // In the chat view.
    bob.open_with(&alice, "pw");
    // Contacts: redraws the menu with the new counts (once chosen, then the menu shown again).
    let chosen = |t: &Tmux| t.scrollback().matches("✔ pgpchat · Contacts").count();
    let n = chosen(&tmux);
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the contacts chosen", |_| chosen(&tmux) > n);
    open_first_discussion(&tmux, "bob");
    assert!(tmux.cursor_visible(), "cursor hidden:\n{}", tmux.screen());
    let n = menus(&tmux);
    tmux.type_text("unsent draft");
    tmux.keys(&["C-c"]);
    back_at_the_menu(&tmux, n, "in the chat view");
    // The draft was not thrown away: Up brings it back in the next chat view.
    open_first_discussion(&tmux, "bob");
    tmux.keys(&["Up"]);
    tmux.wait_screen("the draft back on the input line", |s| {
        s.lines().rfind(|l| !l.trim().is_empty()) == Some("> unsent draft")
    });
    let n = menus(&tmux);
    tmux.keys(&["C-u", "C-c"]);
    back_at_the_menu(&tmux, n, "in the chat view, again");

    // In the menu: the prompt ends, the terminal as the shell expects it.
    tmux.keys(&["C-c"]);
    tmux.wait_text("PROMPT-ENDED");
    assert!(tmux.cursor_visible(), "cursor hidden:\n{}", tmux.screen());
    bob.kill();
}

/// Defect 6: a wrong passphrase in the prompt is said once and asked again (three tries, as gpg).
#[test]
fn a_wrong_passphrase_in_the_prompt_is_said_once_and_asked_again() {
    let mut alice = Person::new("alice", free_udp_port());
    alice.passphrase = Some("right one".into());
    alice.init();
    let tmux = Tmux::start_sized(&chat_command(&alice), 40, 30);
    let _core = KillCore(alice.data_dir().display().to_string());
    tmux.wait_text("Passphrase for your identity key");
    tmux.type_text("wrong one");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_screen("the second try", |s| {
        s.matches("Passphrase for your identity key").count() == 2
    });
    assert_eq!(s.matches("wrong passphrase").count(), 1, "{s}");
    tmux.type_text("right one");
    tmux.keys(&["Enter"]);
    tmux.wait_text("You are alice");
}

/// Hidden entries at the first run: Ctrl-C at the passphrase ends the prompt at once and cleanly
/// (no identity made); an empty passphrase is asked once (no "Repeat it"), warned about, and its
/// length never shown.
#[test]
fn first_run_passphrase_ctrl_c_ends_cleanly_and_an_empty_one_is_asked_once() {
    let alice = Person::new("alice", free_udp_port());
    let tmux = Tmux::start(&format!(
        "sh -c 'trap : INT; {c}; echo PROMPT-ENDED; {c}; sleep 600'",
        c = chat_command(&alice)
    ));
    let _core = KillCore(alice.data_dir().display().to_string());
    tmux.wait_text("Your name, as others will see it");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Passphrase to protect your key");
    tmux.keys(&["C-c"]);
    tmux.wait_text("PROMPT-ENDED");
    assert!(tmux.cursor_visible(), "cursor hidden:\n{}", tmux.screen());

    // The second run starts over: an empty passphrase.
    tmux.wait_screen("the second first run", |s| {
        s.matches("Your name, as others will see it").count() == 2
    });
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the second passphrase", |s| {
        s.matches("Passphrase to protect your key").count() == 2
    });
    tmux.keys(&["Enter"]);
    let s = tmux.wait_text("You are alice");
    assert!(s.contains("warning: no passphrase"), "{s}");
    assert!(
        !s.contains("Repeat it"),
        "an empty passphrase asked twice:\n{s}"
    );
    assert!(!s.contains("****"), "the passphrase's length shown:\n{s}");
}
