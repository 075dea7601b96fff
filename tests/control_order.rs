//! The control channel hands received control messages to their handlers one at a time, in the
//! order they were sent: an exchange may depend on it (an introduction offer, then its withdrawal).
//! Several complete nodes in one process over loopback.

use pgpchat_actors::discussions::Lookup;
use pgpchat_actors::introduction::{
    random_hex, IntroState, IntroductionMessage, IntroductionOffer,
};
use pgpchat_actors::session::SendControl;
use pgpchat_actors::wire::Control;

use crate::common::*;

/// Mallory sends alice, back to back, offers each followed by its own withdrawal: handled in order,
/// every one ends withdrawn (`cancelled`) and none stays pending with a live secret. Handled
/// concurrently (as before), some withdrawals overtook their offers and were lost.
#[actix_rt::test]
async fn an_offer_and_its_withdrawal_sent_back_to_back_are_handled_in_order() {
    let n = spawn_nodes(&["alice", "mallory"]).await;
    let (a, m) = (&n[0].node, &n[1].node);
    let other = spawn_nodes(&["dave"]).await;
    let d = &other[0].node;
    wait_sees(m, a).await;
    let (opened, _) = open_discussion(m, a, "tulip", "tulip").await;
    let id = opened.expect("mallory and alice talk");
    let session = m.directory.send(Lookup(id)).await.unwrap().unwrap();
    // Within the per-introducer bound of live introductions, so none is refused for room.
    const N: usize = 3;
    for _ in 0..N {
        let id = random_hex(16).to_string();
        let offer = IntroductionOffer {
            id: id.clone(),
            peer_cert: d.keys.public().to_bytes(),
            peer_announce: None,
            peer_name: "dave".into(),
            peer_address: "127.0.0.1".into(),
            peer_port: d.tcp_port,
            secret: random_hex(32).to_string(),
        };
        for c in [
            IntroductionMessage::Offer(offer),
            IntroductionMessage::Outcome { id, go: false },
        ] {
            session
                .send(SendControl(Control::Introduction(c)))
                .await
                .unwrap()
                .unwrap();
        }
    }
    let states = wait_until(60, "every offer and withdrawal handled", || {
        let a = a.clone();
        async move {
            let rows = a.introductions().await.ok()?;
            let ended = rows
                .iter()
                .filter(|i| i.state != IntroState::Pending)
                .count();
            (rows.len() == N && ended == N).then_some(rows)
        }
    })
    .await;
    assert!(
        states.iter().all(|i| i.state == IntroState::Cancelled),
        "{:?}",
        states.iter().map(|i| i.state).collect::<Vec<_>>()
    );
}
