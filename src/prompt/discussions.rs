//! The list of discussions, to open one's chat view; and their numbers, as the chat view's
//! `/list` shows them and `/N` and `/switch N` go to them ([`numbered`]).

use std::collections::HashMap;
use std::sync::Mutex;

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

/// The number each discussion has had in this prompt, and the next one to give.
struct Numbers {
    of: HashMap<String, usize>,
    next: usize,
}

static NUMBERS: Mutex<Option<Numbers>> = Mutex::new(None);

/// The discussions of `list` with their numbers, by number. A discussion keeps its number for
/// the life of the prompt: numbers are given in opening order (oldest first; the core lists
/// discussions by activity, which moved them under the person between two `/list`, and `/2`
/// opened another than the one shown as 2), and one opened later gets the next number. The
/// table holds only the discussions the core lists (a number no longer listed is not reused).
pub(super) fn numbered(list: &[api::Discussion]) -> Vec<(usize, &api::Discussion)> {
    let mut guard = NUMBERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let numbers = guard.get_or_insert_with(|| Numbers {
        of: HashMap::new(),
        next: 1,
    });
    numbers.of.retain(|id, _| list.iter().any(|d| &d.id == id));
    let mut new: Vec<&api::Discussion> = list
        .iter()
        .filter(|d| !numbers.of.contains_key(&d.id))
        .collect();
    new.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    for d in new {
        numbers.of.insert(d.id.clone(), numbers.next);
        numbers.next += 1;
    }
    let mut out: Vec<(usize, &api::Discussion)> = list
        .iter()
        .filter_map(|d| numbers.of.get(&d.id).map(|n| (*n, d)))
        .collect();
    out.sort_by_key(|(n, _)| *n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discussion(id: &str, created: u64, last_activity: u64) -> api::Discussion {
        api::Discussion {
            id: id.into(),
            peer_fingerprint: "F".into(),
            peer_name: "bob".into(),
            role: api::Role::Requester,
            state: api::DiscussionState::Open,
            created,
            unread: 0,
            messages: 0,
            last_activity,
            peer_not_told: false,
            key_id: None,
            last_rotation: None,
        }
    }

    fn ids(list: &[api::Discussion]) -> Vec<(usize, String)> {
        numbered(list)
            .into_iter()
            .map(|(n, d)| (n, d.id.clone()))
            .collect()
    }

    /// One test: the table is the prompt's (one per process).
    #[test]
    fn numbers_follow_opening_order_and_never_move() {
        // Listed by activity, as the core lists them.
        let mut list = vec![discussion("b", 20, 50), discussion("a", 10, 40)];
        let first = ids(&list);
        assert_eq!(first, [(1, "a".to_string()), (2, "b".to_string())]);
        // "a" becomes the most active: listed first, numbered as before.
        list.reverse();
        assert_eq!(ids(&list), first);
        // One opened later (even with an earlier clock) gets the next number.
        list.insert(0, discussion("c", 5, 60));
        assert_eq!(ids(&list)[2], (3, "c".to_string()));
        // One no longer listed leaves its number unused.
        list.retain(|d| d.id != "a");
        assert_eq!(ids(&list), [(2, "b".to_string()), (3, "c".to_string())]);
    }
}
