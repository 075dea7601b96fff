//! Requests: asking a contact for a discussion (outgoing), and answering one (incoming).

use std::sync::mpsc;
use std::time::Duration;

use anyhow::Result;
use dialoguer::theme::ColorfulTheme;
use pgpchat_actors::api;

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
    // Read now, not when the menu was drawn, and kept current while the picker is shown.
    let list = client.requests()?;
    let Some(r) = super::request_picker::pick(ctx, list)? else {
        return Ok(());
    };
    let name = safe_text::line(&r.name);
    let id = r.id;
    let action = super::width::pick(
        theme,
        &format!("{name} asks for a discussion"),
        &["Accept (type the shared secret)".into(), "Refuse".into()],
    )?;
    if action.is_none() {
        return Ok(());
    }
    // The request may have ended while the question was shown: no secret asked for nothing.
    if !client.requests()?.iter().any(|r| r.id == id) {
        print(&gone(&name, id));
        return Ok(());
    }
    match action {
        Some(0) => {
            let secret = super::hidden::read(theme, &format!("Secret shared with {name}"))?;
            // Subscribed before the discussion opens: its first events (connected) are not missed.
            let events = super::chat::subscribe(ctx)?;
            let v = match client.call(api::AcceptRequest {
                request: id,
                password: secret,
            }) {
                Ok(v) => v,
                Err(e) if e.kind() == Some(api::ErrorKind::NotFound) => {
                    print(&gone(&name, id));
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            super::chat::run(ctx, client, &v.discussion_id, 0, Some(events))
        }
        _ => {
            match client.call(api::RefuseRequest { request: id }) {
                Ok(_) => print("Refused."),
                Err(e) if e.kind() == Some(api::ErrorKind::NotFound) => print(&gone(&name, id)),
                Err(e) => return Err(e.into()),
            }
            Ok(())
        }
    }
}

/// Said when the request picked has ended before it was answered here.
fn gone(name: &str, id: u64) -> String {
    format!(
        "The request #{id} from {name} is gone (withdrawn by {name}, expired, or answered \
         elsewhere): nothing was done."
    )
}
