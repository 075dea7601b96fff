//! What a line typed in the chat view means: a message, or a command. An unknown `/word` is an
//! error with a hint (never sent: `/clsoe` and `/Back` used to go to the peer); `//text` sends a
//! line that starts with a slash, and so does a slash followed by a space (`/ shrug`: no command
//! word starts with a space). A command that takes no argument says so when given one.

/// A line typed in the chat view.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Typed {
    Nothing,
    Send(String),
    Back,
    Help,
    List,
    /// `/1`, `/2` ... : the discussion with that number in `/list`.
    Jump(usize),
    Switch(String),
    More,
    Close {
        force: bool,
    },
    Restart,
    /// Rotate our encryption key of this discussion now (`rotate`).
    Rotate,
    /// Our current encryption key of this discussion, and when it last rotated.
    Key,
}

/// Every command with what it does: `/help` prints this, Tab completes the names.
pub(super) const COMMANDS: &[(&str, &str)] = &[
    ("/help", "this list"),
    ("/back", "back to the menu (also Ctrl-C or Ctrl-D)"),
    ("/list", "the discussions, numbered"),
    (
        "/1, /2 …",
        "go to the discussion with that number in /list (numbers never change)",
    ),
    (
        "/switch NAME",
        "go to the discussion with NAME (Tab completes), that short id, or that number",
    ),
    (
        "/more",
        "show earlier messages, a page at a time, back to the first",
    ),
    (
        "/close",
        "end this discussion for both sides (asks first: keys are destroyed)",
    ),
    ("/close --force", "end it now; the peer is told when back"),
    (
        "/rotate",
        "replace our encryption key of this discussion now (forward secrecy)",
    ),
    (
        "/key",
        "our encryption key of this discussion, and its last rotation",
    ),
    ("/restart", "start the core again after it stopped"),
    (
        "//text, / text",
        "send a message that starts with / (a slash and a space are sent as typed)",
    ),
];

/// The command words, for completion and hints.
pub(super) const WORDS: &[&str] = &[
    "/help", "/back", "/list", "/switch", "/more", "/close", "/rotate", "/key", "/restart",
];

pub(super) fn parse(line: &str) -> Result<Typed, String> {
    let text = line.trim();
    if text.is_empty() {
        return Ok(Typed::Nothing);
    }
    if let Some(literal) = text.strip_prefix("//") {
        return Ok(Typed::Send(format!("/{literal}")));
    }
    // Not a command: no slash, or a slash alone or before a space (`/ hello` is text).
    if !text.starts_with('/') || text[1..].chars().next().is_none_or(char::is_whitespace) {
        return Ok(Typed::Send(text.to_string()));
    }
    let (word, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let rest = rest.trim();
    if let Some(n) = number(word) {
        if !rest.is_empty() {
            return Err(format!("{word} takes no argument"));
        }
        return Ok(Typed::Jump(n));
    }
    let typed = match (word, rest) {
        ("/help" | "/?", "") => Typed::Help,
        ("/back" | "/quit", "") => Typed::Back,
        ("/list", "") => Typed::List,
        ("/more", "") => Typed::More,
        ("/restart", "") => Typed::Restart,
        ("/rotate", "") => Typed::Rotate,
        ("/key", "") => Typed::Key,
        ("/close", "") => Typed::Close { force: false },
        ("/close", "--force") => Typed::Close { force: true },
        ("/switch", name) if !name.is_empty() => Typed::Switch(name.to_string()),
        ("/switch", _) => return Err("/switch needs a name: /switch NAME (Tab completes)".into()),
        ("/close", _) => return Err("/close takes no argument but --force".into()),
        (
            "/help" | "/?" | "/back" | "/quit" | "/list" | "/more" | "/restart" | "/rotate"
            | "/key",
            _,
        ) => return Err(format!("{word} takes no argument")),
        _ => return Err(unknown(word, rest)),
    };
    Ok(typed)
}

/// The discussion number in `/N` (1 or more, at most [`MAX_DIGITS`] digits).
fn number(word: &str) -> Option<usize> {
    let digits = word.strip_prefix('/')?;
    if digits.is_empty() || digits.len() > MAX_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    digits.parse().ok().filter(|n| *n > 0)
}

/// Digits of a `/N` at most: more is no discussion's number (and could not be parsed).
const MAX_DIGITS: usize = 6;

/// The error for a mistyped command: the nearest command when there is one.
fn unknown(word: &str, rest: &str) -> String {
    let shown = crate::safe_text::line(word);
    let near = WORDS
        .iter()
        .map(|w| (distance(&word.to_lowercase(), w), *w))
        .filter(|(d, _)| *d <= 2)
        .min();
    let hint = match near {
        Some((_, w)) if w == "/close" && !rest.is_empty() => {
            " (did you mean /close --force?)".into()
        }
        Some((_, w)) => format!(" (did you mean {w}?)"),
        None => String::new(),
    };
    format!("unknown command {shown}{hint}: not sent. /help lists the commands; //text sends a line starting with /")
}

/// Edit distance (insertions, deletions, substitutions), on characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistyped_commands_are_errors_not_messages() {
        let e = parse("/clsoe").unwrap_err();
        assert!(
            e.contains("did you mean /close?") && e.contains("not sent"),
            "{e}"
        );
        let e = parse("/Back").unwrap_err();
        assert!(e.contains("did you mean /back?"), "{e}");
        assert!(parse("/frobnicate").unwrap_err().contains("/help lists"));
        assert_eq!(parse("//etc/hosts"), Ok(Typed::Send("/etc/hosts".into())));
        assert_eq!(parse("  hi  "), Ok(Typed::Send("hi".into())));
        assert_eq!(parse("/3"), Ok(Typed::Jump(3)));
        assert_eq!(parse("/12"), Ok(Typed::Jump(12)));
        assert!(parse("/1234567").is_err());
        assert_eq!(parse("/switch bob"), Ok(Typed::Switch("bob".into())));
        assert_eq!(parse("/close --force"), Ok(Typed::Close { force: true }));
        assert!(parse("/0").is_err());
        assert_eq!(parse("   "), Ok(Typed::Nothing));
    }

    #[test]
    fn a_command_given_an_argument_it_does_not_take_says_so() {
        assert_eq!(parse("/more extra"), Err("/more takes no argument".into()));
        assert_eq!(parse("/list all"), Err("/list takes no argument".into()));
        assert_eq!(
            parse("/rotate now"),
            Err("/rotate takes no argument".into())
        );
        assert_eq!(parse("/rotate"), Ok(Typed::Rotate));
        assert_eq!(parse("/key"), Ok(Typed::Key));
        assert!(parse("/rotaet")
            .unwrap_err()
            .contains("did you mean /rotate?"));
        assert_eq!(parse("/2 x"), Err("/2 takes no argument".into()));
        assert!(parse("/close now").unwrap_err().contains("--force"));
        // A slash and a space is text, sent as typed.
        assert_eq!(parse("/ hello"), Ok(Typed::Send("/ hello".into())));
        assert_eq!(parse("/"), Ok(Typed::Send("/".into())));
    }

    #[test]
    fn help_lists_every_command_word() {
        for w in WORDS {
            assert!(COMMANDS.iter().any(|(c, _)| c.starts_with(w)), "{w}");
        }
    }
}
