//! Introductions: accepting or declining those made to us, and introducing two contacts.

use anyhow::Result;
use dialoguer::theme::ColorfulTheme;
use pgpchat_actors::api;
use pgpchat_actors::offline::fingerprint_groups;

use super::contacts::choose_connected_contact;
use super::lines::print;
use crate::client::Client;
use crate::format;
use crate::safe_text;

/// Introductions made to us: accept or decline one waiting for our decision.
pub(super) fn handle_introduction(client: &mut Client, theme: &ColorfulTheme) -> Result<()> {
    let list: Vec<api::Introduction> = client
        .call(api::IntroductionsRequest {})?
        .into_iter()
        .filter(|i| i.state == api::IntroductionState::Pending)
        .collect();
    if list.is_empty() {
        print("No introductions waiting.");
        return Ok(());
    }
    let items: Vec<String> = list
        .iter()
        .map(|i| {
            format!(
                "#{} {} introduces {} {}{}",
                i.id,
                safe_text::line(&i.introducer.name),
                safe_text::line(&i.peer_name),
                fingerprint_groups(&i.peer_fingerprint),
                if i.key_changed {
                    "  WARNING: name known with another key"
                } else {
                    ""
                }
            )
        })
        .collect();
    let Some(pick) = super::width::pick(theme, "Introduction", &items)? else {
        return Ok(());
    };
    let id = list[pick].id as u64;
    let action = super::width::pick(
        theme,
        "Meet them? (they will show as introduced, not verified)",
        &["Accept".into(), "Decline".into()],
    )?;
    let i = match action {
        Some(0) => client.call(api::AcceptIntroductionRequest { introduction: id })?,
        Some(_) => client.call(api::DeclineIntroductionRequest { introduction: id })?,
        None => return Ok(()),
    };
    print(&format!(
        "introduction {}: {}",
        i.id,
        format::introduction_state(i.state)
    ));
    Ok(())
}

/// Introduce two contacts we each have an open discussion with.
pub(super) fn introduce(client: &mut Client, theme: &ColorfulTheme) -> Result<()> {
    let Some(a) = choose_connected_contact(client, theme, "Introduce", None)? else {
        return Ok(());
    };
    let Some(b) = choose_connected_contact(client, theme, "to", Some(&a.fingerprint))? else {
        return Ok(());
    };
    let v = client.call(api::IntroduceRequest {
        a: a.fingerprint,
        b: b.fingerprint,
    })?;
    print(&format!(
        "introduction {} sent: each side is asked to accept",
        v.introduction
    ));
    Ok(())
}
