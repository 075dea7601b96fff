//! Discovery that scales (issue 13, item 4): with N nodes in one process, once every node knows
//! every other, an interval costs each node the N−1 broadcasts it hears, and no replies.

use pgpchat_actors::simulate::announce_interval_for;

use crate::common::{spawn_nodes_with, wait_until};

/// How many nodes: enough that replies to every broadcast (the old rule) would show at once.
const NODES: usize = 12;

#[actix_rt::test]
async fn nodes_converge_with_the_chosen_interval_and_then_stop_answering_each_other() {
    let names: Vec<String> = (0..NODES).map(|i| format!("node{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let interval = announce_interval_for(NODES);
    let nodes = spawn_nodes_with(&names, |_, s| {
        s.discovery.interval_secs = interval;
        s.limits.max_contacts = s.limits.max_contacts.max(2 * NODES);
    })
    .await;
    for n in &nodes {
        let n = n.node.clone();
        wait_until(60, "every node sees every other", || {
            let n = n.clone();
            async move { (n.contacts().await.ok()?.len() == NODES - 1).then_some(()) }
        })
        .await;
    }
    // Each node hears a whole round of broadcasts more (N−1 announces checked)...
    let mut before = Vec::new();
    for n in &nodes {
        before.push(n.node.discovery_stats().await.unwrap());
    }
    for (n, b) in nodes.iter().zip(&before) {
        let (n, accepted) = (n.node.clone(), b.accepted);
        wait_until(60, "another round of announces", || {
            let n = n.clone();
            async move {
                let s = n.discovery_stats().await.ok()?;
                (s.accepted >= accepted + 2 * (NODES as u64 - 1)).then_some(())
            }
        })
        .await;
    }
    // ...and answers (nearly) none of them: every sender heard its broadcasts already. The old rule
    // answered every broadcast: 2·(N−1) replies per node here, 264 in all. A node so busy that it
    // dropped all of a source's announces for `REPLY_QUIET_INTERVALS` takes it for a newcomer
    // again (a debug build on a loaded machine can be): a few are allowed, not one per broadcast.
    let mut answered = 0;
    let mut detail = Vec::new();
    for (n, b) in nodes.iter().zip(&before) {
        let s = n.node.discovery_stats().await.unwrap();
        answered += s.replies_sent - b.replies_sent;
        detail.push((b.replies_sent, s.replies_sent, s.dropped_busy));
    }
    assert!(
        answered < NODES as u64 - 1,
        "{answered} replies to nodes already known (before, after, dropped busy): {detail:?}"
    );
}
