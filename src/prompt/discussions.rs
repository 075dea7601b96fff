//! The list of discussions, to open one's chat view.

use anyhow::Result;
use dialoguer::theme::ColorfulTheme;
use pgpchat_actors::api;

use super::lines::NAME_WIDTH;
use super::width;
use crate::client::Client;
use crate::ctx::Ctx;
use crate::format::state;
use crate::safe_text;

pub(super) fn pick_discussion(ctx: &Ctx, client: &mut Client, theme: &ColorfulTheme) -> Result<()> {
    let list = client.call(api::DiscussionsRequest {})?;
    if list.is_empty() {
        super::lines::print("No discussions yet.");
        return Ok(());
    }
    let items: Vec<String> = list
        .iter()
        .map(|d| {
            // The short id right after the name: at 40 columns the end of the entry is cut, and
            // the id is what tells two discussions with one peer apart.
            let name = width::cut(&safe_text::line(&d.peer_name), NAME_WIDTH);
            format!(
                "{name}{} ({}) {:<6} {} unread{}",
                " ".repeat(NAME_WIDTH.saturating_sub(width::width(&name))),
                super::events::short_id(&d.id),
                state(d.state),
                d.unread,
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
