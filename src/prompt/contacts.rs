//! Contacts: the list, choosing one, verifying one (fingerprints compared aloud). What is said
//! breaks at words at any width, a fingerprint between its groups of 4.

use anyhow::Result;
use dialoguer::{theme::ColorfulTheme, Confirm, Input};
use pgpchat_actors::api::{self, Contact};
use pgpchat_actors::offline::fingerprint_groups;

use super::lines::{print, print_labelled};
use crate::client::Client;
use crate::format::{self, now_secs};
use crate::safe_text;

fn contact_line(c: &Contact, now: u64) -> String {
    let mut marks = String::new();
    if c.verified {
        marks.push_str(" [verified]");
    }
    if c.key_changed {
        marks.push_str(" [KEY CHANGED]");
    }
    if let Some(by) = &c.introduced_by {
        if !matches!(c.origin, api::ContactOrigin::Introduced { .. }) {
            marks.push_str(&format!(" [introduced by {}]", safe_text::line(&by.name)));
        }
    }
    format!(
        "{:<16} {}  seen {}  {}{}",
        safe_text::line(&c.name),
        format::short_fpr(&c.fingerprint),
        format::ago(c.last_seen, now),
        safe_text::line(&c.origin.to_string()),
        marks
    )
}

pub(super) fn show_contacts(client: &mut Client) -> Result<()> {
    let list = client.call(api::ContactsRequest {})?;
    if list.is_empty() {
        print("No contacts seen yet. Others appear here when their core runs on this network.");
    }
    let now = now_secs();
    for c in &list {
        print(&format!("  {}", contact_line(c, now)));
    }
    Ok(())
}

pub(super) fn choose_contact(
    client: &mut Client,
    theme: &ColorfulTheme,
    prompt: &str,
) -> Result<Option<Contact>> {
    let list = client.call(api::ContactsRequest {})?;
    if list.is_empty() {
        print("No contacts seen yet.");
        return Ok(None);
    }
    let now = now_secs();
    let items: Vec<String> = list.iter().map(|c| contact_line(c, now)).collect();
    let pick = super::width::pick(theme, prompt, &items)?;
    Ok(pick.map(|i| list[i].clone()))
}

/// Contacts we have an open discussion with (the ones a contact list or an introduction can travel
/// to), less `except`; the rest of the table is not offered, so no pick ends in "no discussion
/// matches". Says so when there is none.
pub(super) fn choose_connected_contact(
    client: &mut Client,
    theme: &ColorfulTheme,
    prompt: &str,
    except: Option<&str>,
) -> Result<Option<Contact>> {
    let open: std::collections::HashSet<String> = client
        .call(api::DiscussionsRequest {})?
        .into_iter()
        .filter(|d| d.state == api::DiscussionState::Open)
        .map(|d| d.peer_fingerprint)
        .collect();
    let list: Vec<Contact> = client
        .call(api::ContactsRequest {})?
        .into_iter()
        .filter(|c| open.contains(&c.fingerprint) && Some(c.fingerprint.as_str()) != except)
        .collect();
    if list.is_empty() {
        print(&format!(
            "No {}contact with an open discussion: open a discussion with them first \
             (this travels over it).",
            if except.is_some() { "other " } else { "" }
        ));
        return Ok(None);
    }
    let now = now_secs();
    let items: Vec<String> = list.iter().map(|c| contact_line(c, now)).collect();
    let pick = super::width::pick(theme, prompt, &items)?;
    Ok(pick.map(|i| list[i].clone()))
}

pub(super) fn verify_contact(client: &mut Client, theme: &ColorfulTheme) -> Result<()> {
    let Some(c) = choose_contact(client, theme, "Verify")? else {
        return Ok(());
    };
    let me = client.call(api::WhoamiRequest {})?;
    let name = &safe_text::line(&c.name);
    print("Compare aloud, out of band:");
    // Each fingerprint in one column, broken between its groups of 4.
    let label = |who: &str| {
        let pad = 6usize.saturating_sub(super::width::width(who));
        format!("  {who}{} ", " ".repeat(pad))
    };
    print_labelled(&label("you:"), &fingerprint_groups(&me.fingerprint));
    print_labelled(&label(name), &fingerprint_groups(&c.fingerprint));
    if Confirm::with_theme(theme)
        .with_prompt(super::width::question(
            &format!("Does {name} read you the same fingerprint?"),
            super::width::CONFIRM_EXTRA,
        ))
        .default(false)
        .interact()?
    {
        client.call(api::VerifyRequest {
            contact: c.fingerprint.clone(),
            verified: Some(true),
        })?;
        print(&format!("{name} is verified."));
    }
    Ok(())
}

/// Someone beyond the local network: their node's address and main TCP port (their `whoami`).
pub(super) fn add_contact(client: &mut Client, theme: &ColorfulTheme) -> Result<()> {
    let address: String = Input::with_theme(theme)
        .with_prompt(super::width::question(
            "Address (HOST:PORT, their main TCP port; empty: cancel)",
            super::width::INPUT_EXTRA,
        ))
        .allow_empty(true)
        .interact_text()?;
    if address.trim().is_empty() {
        return Ok(());
    }
    let c = client.call(api::AddContactRequest { address, dht: None })?;
    print(&format!(
        "{} {} added; verify the fingerprint before trusting it.",
        safe_text::line(&c.name),
        fingerprint_groups(&c.fingerprint)
    ));
    Ok(())
}

/// Pick a contact (one we have a discussion with: the list travels over it) and merge its list.
pub(super) fn ask_for_contacts(client: &mut Client, theme: &ColorfulTheme) -> Result<()> {
    let Some(c) = choose_connected_contact(client, theme, "Whose contact list", None)? else {
        return Ok(());
    };
    print(&format!(
        "Asking {} (it sees that you asked)...",
        safe_text::line(&c.name)
    ));
    let merged = client.call(api::ContactsFromRequest {
        peer: c.fingerprint,
    })?;
    print(&format::list_merged(&merged));
    Ok(())
}
