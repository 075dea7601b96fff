//! The list of discussions, to open one's chat view.

use anyhow::Result;
use dialoguer::theme::ColorfulTheme;
use pgpchat_actors::api;

use crate::client::Client;
use crate::ctx::Ctx;
use crate::format::state;
use crate::safe_text;

pub(super) fn pick_discussion(ctx: &Ctx, client: &mut Client, theme: &ColorfulTheme) -> Result<()> {
    let list = client.call(api::DiscussionsRequest {})?;
    if list.is_empty() {
        println!("No discussions yet.");
        return Ok(());
    }
    let items: Vec<String> = list
        .iter()
        .map(|d| {
            format!(
                "{:<16} {:<6} {} unread  ({}){}",
                safe_text::line(&d.peer_name),
                state(d.state),
                d.unread,
                d.id.get(..8).unwrap_or(&d.id),
                if d.peer_not_told {
                    "  peer told when reachable"
                } else {
                    ""
                }
            )
        })
        .collect();
    let Some(i) = super::width::pick(theme, "Discussion", &items)? else {
        return Ok(());
    };
    let d = &list[i];
    super::chat::run(ctx, client, &d.id, d.unread, None)
}
