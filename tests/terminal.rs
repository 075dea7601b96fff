//! Text a peer chooses never drives the user's terminal: message bodies and names full of escape
//! sequences, C1 controls, bidi overrides and lone carriage returns, through the real binary.

use serde_json::Value;

use crate::binary::{wait_for, Person, Watch};
use crate::common::free_udp_port;

/// Clear the screen, home the cursor, set the window title, write the clipboard (OSC 52), a C1
/// CSI, a bidi override, a lone carriage return to overwrite the line, a newline and a tab.
pub const HOSTILE_BODY: &str = "\u{1b}[2J\u{1b}[Hsystem: all fine\u{1b}]0;pwned\u{7}\
    \u{1b}]52;c;cHduZWQ=\u{7}\u{9b}31mred\u{202e}txet\u{2066}\rforged: alice\u{85}\u{7f}\n\
    second line\tafter a tab";

/// A display name with bidi controls (the core already refuses C0/C1 in names).
pub const HOSTILE_NAME: &str = "bob\u{202e}\u{2066}gpj.exe";

/// Characters that must never reach a terminal raw (newline aside).
pub fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

fn assert_terminal_safe(what: &str, out: &str) {
    let bad: Vec<char> = out.chars().filter(|&c| is_unsafe(c)).collect();
    assert!(bad.is_empty(), "{what} printed raw {bad:?}:\n{out:?}");
}

#[test]
fn peer_text_is_escaped_in_history_watch_contacts_and_json() {
    let port = free_udp_port();
    let mut alice = Person::new("alice", port);
    let mut bob = Person::new(HOSTILE_NAME, port);
    alice.init();
    bob.init();
    alice.start();
    bob.start();
    let human = Watch::start(&alice, false);
    let json = Watch::start(&alice, true);
    bob.wait_sees(&alice);
    // alice's `requests --json` names bob exactly (wait_request compares the name).
    let id = bob.open_with(&alice, "pw");
    bob.ok(&["send", &id, HOSTILE_BODY]);

    wait_for(20, "alice to store bob's message", || {
        alice
            .json(&["history", &id])
            .as_array()
            .is_some_and(|h| !h.is_empty())
    });
    // --json: the exact text, but every dangerous character as a \u escape.
    let raw = alice.ok(&["--json", "history", &id]);
    assert_terminal_safe("history --json", &raw);
    let h: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(h[0]["body"], HOSTILE_BODY);
    assert!(raw.contains("\\u009b") && raw.contains("\\u202e"), "{raw}");

    // Human: escapes shown, the newline continues on an indented line, the tab is spaces.
    let out = alice.ok(&["history", &id]);
    assert_terminal_safe("history", &out);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("\\x1b[2J\\x1b[Hsystem: all fine\\x1b]0;pwned\\x07"),
        "{out}"
    );
    assert!(
        lines[0].contains("\\x9b31mred\\u{202e}txet\\u{2066}\\rforged: alice\\x85\\x7f"),
        "{out}"
    );
    assert!(lines[0].contains("bob\\u{202e}\\u{2066}gpj.exe: "), "{out}");
    assert!(
        lines[1].starts_with("     ") && lines[1].trim() == "second line    after a tab",
        "{out}"
    );

    // watch, both forms.
    let l = human.expect("bob's message", |l| l.contains("system: all fine"));
    assert_terminal_safe("watch", &l);
    let l = human.expect("its continuation line", |l| l.contains("second line"));
    assert!(l.starts_with("  "), "{l}");
    let l = json.expect("bob's message", |l| l.contains("\"message\""));
    assert_terminal_safe("watch --json", &l);
    let e: Value = serde_json::from_str(&l).unwrap();
    assert_eq!(e["message"]["body"], HOSTILE_BODY);

    // Names in the tables.
    for cmd in ["contacts", "discussions"] {
        let out = alice.ok(&[cmd]);
        assert_terminal_safe(cmd, &out);
        assert!(out.contains("bob\\u{202e}\\u{2066}gpj.exe"), "{cmd}: {out}");
    }
    alice.kill();
    bob.kill();
}
