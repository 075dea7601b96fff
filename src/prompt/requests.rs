//! Requests: asking a contact for a discussion (outgoing), and answering one (incoming).

use std::sync::mpsc;
use std::time::Duration;

use anyhow::Result;
use dialoguer::theme::ColorfulTheme;
use pgpchat_actors::api;
use pgpchat_actors::offline::fingerprint_groups;

use super::lines::print;
use crate::client::Client;
use crate::ctx::Ctx;
use crate::safe_text;

/// How often the wait for an answer looks for Ctrl-C.
const CANCEL_POLL: Duration = Duration::from_millis(100);
/// How long a cancelled request's `open` has to answer.
const CANCEL_ANSWER_WAIT: Duration = Duration::from_secs(5);

pub(super) fn open_discussion(ctx: &Ctx, client: &mut Client, theme: &ColorfulTheme) -> Result<()> {
    let Some(c) = super::contacts::choose_contact(client, theme, "Talk to")? else {
        return Ok(());
    };
    let name = safe_text::line(&c.name);
    let fpr = c.fingerprint.clone();
    let secret = super::hidden::read(theme, &format!("Secret shared with {name}"))?;
    let wait = ctx.settings.limits.request_timeout_secs;
    // A Ctrl-C pressed before now was for nothing here; one pressed as soon as the line below
    // says it cancels, does (it used to be forgotten while the request was being sent).
    super::interrupt::take();
    print(&format!(
        "Waiting for {name} to accept (up to {}); Ctrl-C cancels the request...",
        if wait >= 120 {
            format!("{} min", wait / 60)
        } else {
            format!("{wait} s")
        }
    ));
    // Subscribed before the request goes: the discussion's first events (its connection coming
    // up) happen before `open` answers, and a view subscribing after it missed them.
    let events = super::chat::subscribe(ctx)?;
    // The request runs on its own connection, on a thread, while this one watches for Ctrl-C.
    let mut opener = ctx.client()?;
    let (done, answer) = mpsc::channel();
    let contact = fpr.clone();
    std::thread::spawn(move || {
        let _ = done.send(opener.call(api::OpenRequest {
            contact,
            password: secret,
        }));
    });
    let opened = loop {
        match answer.recv_timeout(CANCEL_POLL) {
            Ok(r) => break r?,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => anyhow::bail!("the request was lost"),
        }
        if super::interrupt::take() {
            client.call(api::CancelRequest { contact: fpr })?;
            // The open answers `cancelled`, or the discussion it opened just before.
            match answer.recv_timeout(CANCEL_ANSWER_WAIT) {
                Ok(Ok(v)) => break v,
                _ => {
                    print(&format!("Request to {name} cancelled."));
                    return Ok(());
                }
            }
        }
    };
    // A new discussion: nothing unread beyond what the view shows anyway.
    super::chat::run(ctx, client, &opened.discussion_id, 0, Some(events))
}

pub(super) fn handle_request(ctx: &Ctx, client: &mut Client, theme: &ColorfulTheme) -> Result<()> {
    // Fetched now, not when the menu was drawn: a request may have arrived since.
    let list = client.requests()?;
    if list.is_empty() {
        print("No requests waiting.");
        return Ok(());
    }
    let items: Vec<String> = list
        .iter()
        .map(|r| {
            format!(
                "#{} {} {}{}",
                r.id,
                safe_text::line(&r.name),
                fingerprint_groups(&r.fingerprint),
                if r.key_changed {
                    "  WARNING: name known with another key"
                } else {
                    ""
                }
            )
        })
        .collect();
    let Some(i) = super::width::pick(theme, "Request", &items)? else {
        return Ok(());
    };
    let r = &list[i];
    let name = safe_text::line(&r.name);
    let id = r.id;
    let action = super::width::pick(
        theme,
        &format!("{name} asks for a discussion"),
        &["Accept (type the shared secret)".into(), "Refuse".into()],
    )?;
    match action {
        Some(0) => {
            let secret = super::hidden::read(theme, &format!("Secret shared with {name}"))?;
            // Subscribed before the discussion opens: its first events (connected) are not missed.
            let events = super::chat::subscribe(ctx)?;
            let v = client.call(api::AcceptRequest {
                request: id,
                password: secret,
            })?;
            super::chat::run(ctx, client, &v.discussion_id, 0, Some(events))
        }
        Some(_) => {
            client.call(api::RefuseRequest { request: id })?;
            print("Refused.");
            Ok(())
        }
        None => Ok(()),
    }
}
