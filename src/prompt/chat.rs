//! The chat view: a header (the peer, verified or not, the fingerprint), the recent history with
//! date lines and an unread separator, then a line editor (rustyline: editing keys, history, Tab
//! completion, pasting several lines as one message). Arriving lines print above the line being
//! typed ([`super::live`]). Ctrl-C or Ctrl-D return to the menu; `/help` lists the commands.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};
use pgpchat_actors::api::{self, Discussion};
use pgpchat_actors::client::ClientError;
use pgpchat_actors::offline::fingerprint_groups;
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{
    Cmd, ConditionalEventHandler, Config, Editor, Event, EventContext, EventHandler, Helper,
    KeyEvent, RepeatCount,
};

use super::events::{Peers, Scope};
use super::lines::{self, Days};
use super::live::{Ended, Live};
use super::slash::{self, Typed};
use crate::client::Client;
use crate::ctx::Ctx;
use crate::safe_text;

/// `println!` for the chat view: kept to be drawn again after a resize ([`super::transcript`]).
macro_rules! say {
    ($($t:tt)*) => {
        super::transcript::say(super::lines::fill(&format!($($t)*)))
    };
}

/// Hex digits of a discussion's id shown to tell two discussions with one peer apart.
pub(super) const SHORT_ID: usize = 8;
/// Messages of history shown when a chat view opens.
const HISTORY_SHOWN: u64 = 20;
/// At most this many unread messages are printed when a chat view opens (older ones: `/more`).
const MAX_UNREAD_SHOWN: u64 = 2_000;
/// Messages shown by each `/more`.
const MORE_PAGE: u64 = 50;
/// Lines typed kept for the Up key, across chat views.
const TYPED_HISTORY: usize = 200;

/// What was typed, across chat views (each view has its own editor).
static TYPED: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());

/// What to do after a view.
enum Next {
    Menu,
    Open(String),
}

/// Show the chat view of `discussion`, then the ones the person switches to, until they go back
/// to the menu. `unread`: the discussion's unread count as the caller listed it; every one is shown.
/// `events`: a connection subscribed before the discussion opened (see [`subscribe`]).
pub(super) fn run(
    ctx: &Ctx,
    client: &mut Client,
    discussion: &str,
    unread: u64,
    events: Option<Client>,
) -> Result<()> {
    let mut next = view(ctx, client, discussion, unread, events)?;
    while let Next::Open(id) = next {
        let unread = client
            .call(api::DiscussionsRequest {})?
            .iter()
            .find(|d| d.id == id)
            .map_or(0, |d| d.unread);
        next = view(ctx, client, &id, unread, None)?;
    }
    Ok(())
}

/// A connection subscribed to the core's events, for a chat view.
pub(super) fn subscribe(ctx: &Ctx) -> Result<Client> {
    let mut events = ctx.client()?;
    events.call(api::SubscribeRequest {})?;
    Ok(events)
}

fn view(
    ctx: &Ctx,
    client: &mut Client,
    discussion: &str,
    unread: u64,
    early: Option<Client>,
) -> Result<Next> {
    let list = client.call(api::DiscussionsRequest {})?;
    let d = list
        .iter()
        .find(|d| d.id == discussion)
        .ok_or_else(|| anyhow!("the discussion is gone"))?
        .clone();
    let peer = safe_text::line(&d.peer_name);
    let peers: Peers = list
        .iter()
        .map(|d| {
            (
                d.id.clone(),
                (d.peer_name.clone(), d.peer_fingerprint.clone()),
            )
        })
        .collect();
    // The view's own lines name the discussion as its notices do: by its peer, and by its short
    // id when the peer has several discussions with us.
    let label = super::events::label(&peers, discussion);
    super::transcript::clear();
    // Keys typed before the view shows were not meant for it (an arrow for the menu before it
    // would bring back an earlier line); those typed once its header is on screen are for it.
    super::tty::drop_typeahead();
    let contacts = client.call(api::ContactsRequest {})?;
    let verified = contacts
        .iter()
        .any(|c| c.fingerprint == d.peer_fingerprint && c.verified);
    // A closed discussion says so first: it looks like an open one otherwise.
    let closed = match d.state {
        api::DiscussionState::Open => "",
        api::DiscussionState::Closing => "closing · ",
        api::DiscussionState::Closed => "closed · ",
    };
    say!(
        "{}",
        console::style(format!(
            "── {label} · {closed}{} · {} ──",
            if verified { "verified" } else { "not verified" },
            fingerprint_groups(&d.peer_fingerprint)
        ))
        .bold()
    );
    if d.state != api::DiscussionState::Open {
        say!(
            "{}",
            lines::notice(&format!(
                "(the discussion with {label} is closed: read only, /back for the menu)"
            ))
        );
    }
    say!(
        "{}",
        lines::notice("/help: commands · Ctrl-C: menu · Tab completes · Up: earlier lines")
    );
    // Every unread message is shown (leaving the view marks them read), and at least the last
    // `HISTORY_SHOWN`; one more is asked for to know whether older ones stay out of view.
    let shown = unread.clamp(HISTORY_SHOWN, MAX_UNREAD_SHOWN);
    let mut history = client.call(api::HistoryRequest {
        discussion: discussion.to_string(),
        limit: Some(shown + 1),
        ..api::HistoryRequest::default()
    })?;
    if history.len() as u64 > shown {
        history.remove(0);
        say!("{}", lines::notice("(earlier messages: /more)"));
    }
    // The index of the first message shown, in the whole discussion (for `/more`).
    let mut first_shown = d.messages.saturating_sub(history.len() as u64);
    let first_unread = unread_from(&history, unread);
    let mut days = Days::default();
    for (i, m) in history.iter().enumerate() {
        if let Some(l) = days.line_for(m.time) {
            say!("{l}");
        }
        if Some(i) == first_unread {
            say!("{}", lines::notice(&format!("──── {unread} unread ────")));
        }
        super::transcript::say_message(m, &peer);
    }

    // What is shown is read: `/list` and the other front-ends say so while the view is open.
    let _ = client.call(api::MarkReadRequest {
        discussion: discussion.to_string(),
    });

    let mut editor = new_editor(&list)?;
    let core_gone = Arc::new(AtomicBool::new(false));
    let mut live = Some(start_live(
        ctx,
        early,
        &mut editor,
        Scope::new(discussion, peers.clone()),
        &days,
        &core_gone,
    )?);
    let mut kept = String::new();
    let next = loop {
        let line = match editor.readline_with_initial("> ", (&kept, "")) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => {
                // The unsent draft is not thrown away: Up brings it back.
                if let Some(draft) = DRAFT.lock().ok().and_then(|mut d| d.take()) {
                    remember(&mut editor, &draft);
                }
                break Next::Menu;
            }
            Err(ReadlineError::Eof) => break Next::Menu,
            Err(e) => return Err(e.into()),
        };
        kept.clear();
        remember(&mut editor, &line);
        if matches!(slash::parse(&line), Ok(Typed::Send(_))) {
            // The message comes back as a chat line (with its mark): the typed copy goes.
            erase_typed(&line);
        }
        let typed = match slash::parse(&line) {
            Ok(t) => t,
            Err(e) => {
                // Not left in the line (the next command would be glued to it): Up brings it
                // back to be corrected.
                say!("! {e} (Up brings the line back)");
                continue;
            }
        };
        match typed {
            Typed::Nothing => {}
            Typed::Send(text) => {
                if core_gone.load(Ordering::SeqCst) {
                    say!("! not sent: the core is not running; /restart starts it again");
                    kept = line;
                    continue;
                }
                let r = client.call(api::SendRequest {
                    discussion: discussion.to_string(),
                    text,
                });
                // The line itself is printed by the live thread, with its delivery mark.
                if let Err(e) = r {
                    if e.kind() == Some(api::ErrorKind::Closed) {
                        // The core's message names the discussion by its id: the peer says more.
                        say!("! not sent: the discussion with {label} is closed");
                    } else {
                        say!("! not sent: {}", safe_text::line(&format!("{e:#}")));
                    }
                    if is_gone(&e) {
                        say!("{}", lines::notice(super::live::CORE_STOPPED));
                    }
                    kept = line;
                }
            }
            Typed::Back => break Next::Menu,
            Typed::Help => {
                for (c, what) in slash::COMMANDS {
                    say!("  {c:<16} {what}");
                }
                say!("  Keys: Left/Right, Home/End, Ctrl-U/Ctrl-W erase, Up/Down earlier lines, Tab completes, Ctrl-C menu");
            }
            Typed::List => print_list(&client.call(api::DiscussionsRequest {})?, discussion),
            Typed::Jump(n) => {
                if let Some(id) = jump(client, discussion, n)? {
                    break Next::Open(id);
                }
            }
            Typed::Switch(name) => {
                let list = client.call(api::DiscussionsRequest {})?;
                if let Ok(n) = name.parse::<usize>() {
                    // `/switch 3` is `/3`, unless a peer is named `3`.
                    if by_name(&list, &name).is_none() {
                        if let Some(id) = jump(client, discussion, n)? {
                            break Next::Open(id);
                        }
                        continue;
                    }
                }
                match by_name_or_id(&list, &name) {
                    Some(d) if d.id != discussion => break Next::Open(d.id.clone()),
                    Some(_) => say!("! this is the discussion with {label}"),
                    None => say!(
                        "! no discussion with {}: /list shows them",
                        safe_text::line(&name)
                    ),
                }
            }
            Typed::More => more(client, discussion, &peer, &mut first_shown)?,
            Typed::Rotate => match client.call(api::RotateRequest {
                discussion: discussion.to_string(),
            }) {
                Ok(r) => say!(
                    "{}",
                    lines::notice(&format!(
                        "(new key {} pending; it becomes active when {peer} has it)",
                        safe_text::line(&r.key_id)
                    ))
                ),
                Err(e) => {
                    say!("! not rotated: {}", safe_text::line(&format!("{e:#}")));
                    if is_gone(&e) {
                        say!("{}", lines::notice(super::live::CORE_STOPPED));
                    }
                }
            },
            Typed::Key => {
                let list = client.call(api::DiscussionsRequest {})?;
                say!("{}", key_line(list.iter().find(|d| d.id == discussion)));
            }
            Typed::Close { force } => {
                // The question is printed broken at words; the editor's prompt stays short (a
                // prompt wider than the pane is wrapped mid-word by the terminal).
                if force {
                    say!("End the discussion with {label} now, keys destroyed, undelivered messages lost?");
                } else {
                    say!("End the discussion with {label} for both sides (keys are destroyed)?");
                }
                let sure = matches!(editor.readline("[y/N] "), Ok(a) if a.trim().eq_ignore_ascii_case("y") || a.trim().eq_ignore_ascii_case("yes"));
                if !sure {
                    say!("{}", lines::notice("(not closed)"));
                    continue;
                }
                let v = client.call(api::CloseRequest {
                    discussion: discussion.to_string(),
                    force: Some(force),
                })?;
                say!(
                    "{}",
                    if v.state == api::DiscussionState::Closed {
                        format!("discussion with {label} closed")
                    } else {
                        format!("discussion with {label} closing: {peer} is told now or when back")
                    }
                );
                break Next::Menu;
            }
            Typed::Restart => {
                if !core_gone.load(Ordering::SeqCst) && client.call(api::VersionRequest {}).is_ok()
                {
                    say!("{}", lines::notice("(the core is running)"));
                    continue;
                }
                if let Some(l) = live.take() {
                    l.stop();
                }
                // A failed start is said here and the view stays (with what was typed): the
                // next /restart may work, Ctrl-C goes back to the menu.
                match super::start_core(ctx) {
                    Ok(c) => *client = c,
                    // Ctrl-C at its passphrase cancels the restart, not the view: the menu
                    // has nothing to show without a core.
                    Err(e) if super::interrupt::is_interrupt(&e) => {
                        core_gone.store(true, Ordering::SeqCst);
                        say!("{}", lines::notice("(not restarted)"));
                        continue;
                    }
                    Err(e) => {
                        core_gone.store(true, Ordering::SeqCst);
                        say!("! the core did not start: {}", lines::error_text(&e));
                        continue;
                    }
                }
                core_gone.store(false, Ordering::SeqCst);
                live = Some(start_live(
                    ctx,
                    None,
                    &mut editor,
                    Scope::new(discussion, peers.clone()),
                    &days,
                    &core_gone,
                )?);
                say!("{}", lines::notice("(the core is running again)"));
            }
        }
    };
    // Everything arrived while the view was open has been seen, unless live updates stopped: then
    // what came after was not shown, and stays unread.
    if live.is_some_and(|l| l.stop() == Ended::Stopped) {
        let _ = client.call(api::MarkReadRequest {
            discussion: discussion.to_string(),
        });
    }
    // Nothing of the view is kept once it is gone.
    super::transcript::clear();
    Ok(next)
}

fn start_live(
    ctx: &Ctx,
    early: Option<Client>,
    editor: &mut Editor<ChatHelper, DefaultHistory>,
    scope: Scope,
    days: &Days,
    core_gone: &Arc<AtomicBool>,
) -> Result<Live> {
    let events = match early {
        Some(e) => e,
        None => subscribe(ctx)?,
    };
    let printer = editor.create_external_printer()?;
    Ok(Live::start(
        events,
        ctx.client()?,
        printer,
        scope,
        days.clone(),
        ctx.settings.prompt.bell,
        core_gone.clone(),
    ))
}

/// Erase the prompt and `line` as the editor left them on screen: the rows they took, counted
/// as the editor counts them (a line that exactly fills its rows took one more: the editor moved
/// the cursor under it before the Enter).
fn erase_typed(line: &str) {
    let term = console::Term::stdout();
    let rows = super::width::editor_rows(&format!("> {line}"), usize::from(term.size().1));
    let _ = term.clear_last_lines(rows);
}

/// The discussion `/N` goes to (its number in `/list`, [`super::discussions::numbered`]): its
/// id, or None when there is none to go to (said).
fn jump(client: &mut Client, discussion: &str, n: usize) -> Result<Option<String>> {
    let list = client.call(api::DiscussionsRequest {})?;
    let numbered = super::discussions::numbered(&list);
    match numbered.iter().find(|(m, _)| *m == n) {
        Some((_, d)) if d.id != discussion => return Ok(Some(d.id.clone())),
        Some(_) => say!("! this is discussion {n}"),
        None => say!("! no discussion {n}: /list shows them"),
    }
    Ok(None)
}

/// Whether a call failed because the core is gone.
fn is_gone(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::NotRunning { .. } | ClientError::Closed | ClientError::ClosedWith(_)
    )
}

/// Where the unread separator goes: before the first of the last `unread` incoming messages.
fn unread_from(history: &[api::Message], unread: u64) -> Option<usize> {
    if unread == 0 {
        return None;
    }
    let mut seen = 0;
    for (i, m) in history.iter().enumerate().rev() {
        if m.direction == api::Direction::In {
            seen += 1;
            if seen == unread {
                return Some(i);
            }
        }
    }
    None
}

/// The discussion `/switch` means: by its peer's name ([`by_name`]), else by its id: the one
/// whose id starts with `what` (its short id, or at least 4 of its hex digits).
fn by_name_or_id<'a>(list: &'a [Discussion], what: &str) -> Option<&'a Discussion> {
    by_name(list, what).or_else(|| {
        if what.len() < 4 || !what.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let what = what.to_ascii_lowercase();
        let mut found = list.iter().filter(|d| d.id.starts_with(&what));
        match (found.next(), found.next()) {
            (Some(d), None) => Some(d),
            _ => None,
        }
    })
}

/// The most recent open discussion with a peer of that name (any case), else the most recent.
fn by_name<'a>(list: &'a [Discussion], name: &str) -> Option<&'a Discussion> {
    let named = |d: &&Discussion| d.peer_name.eq_ignore_ascii_case(name);
    list.iter()
        .filter(named)
        .find(|d| d.state == api::DiscussionState::Open)
        .or_else(|| list.iter().find(named))
}

/// The discussions by their numbers (they never move: [`super::discussions::numbered`]), `*`
/// before the current one; a peer with several has each one's short id (the first [`SHORT_ID`]
/// hex digits) so they can be told apart.
fn print_list(list: &[Discussion], current: &str) {
    for (n, d) in super::discussions::numbered(list) {
        let several = list
            .iter()
            .filter(|o| o.peer_fingerprint == d.peer_fingerprint)
            .count()
            > 1;
        // The id right after the name: it is what a narrow pane must not lose.
        say!(
            "{} /{:<2} {}{} {} · {} unread",
            if d.id == current { '*' } else { ' ' },
            n,
            super::width::cut(&safe_text::line(&d.peer_name), lines::NAME_WIDTH),
            if several {
                format!(" ({})", super::events::short_id(&d.id))
            } else {
                String::new()
            },
            crate::format::state(d.state),
            d.unread,
        );
    }
}

/// `/key`: our current encryption key of the discussion and when it last rotated, short enough
/// for a 40-column pane (`key 0123456789ABCDEF · rotated 5m ago`).
fn key_line(d: Option<&Discussion>) -> String {
    match d.and_then(|d| d.key_id.as_deref().map(|k| (k, d.last_rotation))) {
        Some((key, rotated)) => format!(
            "key {} · {}",
            safe_text::line(key),
            rotated.map_or_else(
                || "never rotated".to_string(),
                |t| format!(
                    "rotated {}",
                    crate::format::ago(t, crate::format::now_secs())
                )
            )
        ),
        None => lines::notice("(no key: the discussion is closed)"),
    }
}

/// The page of messages before the first one shown, back to the first message.
fn more(client: &mut Client, discussion: &str, peer: &str, first_shown: &mut u64) -> Result<()> {
    if *first_shown == 0 {
        say!("{}", lines::notice("(that was the first message)"));
        return Ok(());
    }
    let total = client
        .call(api::DiscussionsRequest {})?
        .iter()
        .find(|d| d.id == discussion)
        .map_or(0, |d| d.messages);
    let from = first_shown.saturating_sub(MORE_PAGE);
    let h = client.call(api::HistoryRequest {
        discussion: discussion.to_string(),
        limit: Some(total - from),
        ..api::HistoryRequest::default()
    })?;
    let base = total.saturating_sub(h.len() as u64);
    let page: Vec<_> = h
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let n = base + *i as u64;
            n >= from && n < *first_shown
        })
        .map(|(_, m)| m)
        .collect();
    say!(
        "{}",
        lines::notice(&format!(
            "──── earlier: messages {} to {} of {total} ────",
            from + 1,
            *first_shown
        ))
    );
    let mut days = Days::default();
    for m in page {
        if let Some(l) = days.line_for(m.time) {
            say!("{l}");
        }
        super::transcript::say_message(m, peer);
    }
    *first_shown = from;
    say!(
        "{}",
        lines::notice(if from == 0 {
            "──── that was the first message ────"
        } else {
            "──── end of the earlier page: /more for the one before ────"
        })
    );
    Ok(())
}

fn new_editor(list: &[Discussion]) -> Result<Editor<ChatHelper, DefaultHistory>> {
    let config = Config::builder()
        .max_history_size(TYPED_HISTORY)?
        .auto_add_history(false)
        .bracketed_paste(true)
        .build();
    let mut editor = Editor::with_config(config)?;
    let mut names: Vec<String> = list.iter().map(|d| d.peer_name.clone()).collect();
    names.sort();
    names.dedup();
    editor.set_helper(Some(ChatHelper { names }));
    editor.bind_sequence(
        KeyEvent::ctrl('C'),
        EventHandler::Conditional(Box::new(KeepDraft)),
    );
    // No Alt-1 .. Alt-9 (issue 12 asked for them): rustyline's emacs mode reads Alt-digits as a
    // numeric argument before any custom binding is looked at (keymap.rs, `emacs`), so a binding
    // for them is never called; `/1`, `/2` ... do it.
    if let Ok(typed) = TYPED.lock() {
        for l in typed.iter() {
            let _ = editor.add_history_entry(l.as_str());
        }
    }
    Ok(editor)
}

/// The line being typed when Ctrl-C left the chat view (read by the view, then forgotten).
static DRAFT: Mutex<Option<String>> = Mutex::new(None);

/// Ctrl-C in the chat view: remember the draft, then interrupt as usual.
struct KeepDraft;

impl ConditionalEventHandler for KeepDraft {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, ctx: &EventContext) -> Option<Cmd> {
        if let Ok(mut d) = DRAFT.lock() {
            *d = Some(ctx.line().to_string());
        }
        Some(Cmd::Interrupt)
    }
}

/// Keep a typed line for the Up key (this view's and the next ones').
fn remember(editor: &mut Editor<ChatHelper, DefaultHistory>, line: &str) {
    if line.trim().is_empty() {
        return;
    }
    let _ = editor.add_history_entry(line);
    if let Ok(mut typed) = TYPED.lock() {
        if typed.len() >= TYPED_HISTORY {
            typed.pop_front();
        }
        typed.push_back(line.to_string());
    }
}

/// Tab completion: command words, and names after `/switch`.
struct ChatHelper {
    names: Vec<String>,
}

impl Completer for ChatHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let before = &line[..pos];
        if let Some(partial) = before.strip_prefix("/switch ") {
            let lower = partial.to_lowercase();
            let found = self
                .names
                .iter()
                .filter(|n| n.to_lowercase().starts_with(&lower))
                .cloned()
                .collect();
            return Ok(("/switch ".len(), found));
        }
        if before.starts_with('/') && !before.contains(' ') {
            let found = slash::WORDS
                .iter()
                .filter(|w| w.starts_with(before))
                .map(|w| {
                    if *w == "/switch" {
                        format!("{w} ")
                    } else {
                        (*w).to_string()
                    }
                })
                .collect();
            return Ok((0, found));
        }
        Ok((pos, Vec::new()))
    }
}

impl Hinter for ChatHelper {
    type Hint = String;
}
impl Highlighter for ChatHelper {}
impl Validator for ChatHelper {}
impl Helper for ChatHelper {}
