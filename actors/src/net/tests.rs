//! The protocol layer over in-memory pipes (`tokio::io::duplex`), with [`LocalCrypto`]: no actor
//! system, no sockets. Each test runs both ends in one task (`tokio::join!`).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::DuplexStream;

use super::*;
use crate::crypto::SecretCert;
use crate::wire::{close_data, FailReason, Nonce, Role};

const T: Duration = Duration::from_secs(5);
const MAX_FRAME: usize = 1 << 20;

fn pipe() -> (Conn<DuplexStream>, Conn<DuplexStream>) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    (framed(a, MAX_FRAME), framed(b, MAX_FRAME))
}

fn node(name: &str) -> LocalCrypto {
    LocalCrypto::new(SecretCert::generate(name).unwrap())
}

/// A discussion id of the form hellos accept (32 lowercase hex digits).
const D1: &str = "d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1";

/// Both sides' discussion keys for discussion [`D1`]: (requester's, receiver's).
fn discussion_keys() -> (SessionKeys, SessionKeys) {
    let req = Arc::new(SecretCert::generate("dr").unwrap());
    let rec = Arc::new(SecretCert::generate("ds").unwrap());
    (
        SessionKeys::new(
            D1.into(),
            Role::Requester,
            req.clone(),
            rec.public().clone(),
        ),
        SessionKeys::new(D1.into(), Role::Receiver, rec, req.public().clone()),
    )
}

/// The listening side reads a discussion hello: its nonce.
async fn read_discussion_hello(conn: &mut Conn<DuplexStream>) -> Nonce {
    match recv_hello(conn, T).await.unwrap() {
        Purpose::Discussion {
            discussion_id,
            nonce,
        } => {
            assert_eq!(discussion_id, D1);
            nonce
        }
        other => panic!("not a discussion hello: {other:?}"),
    }
}

/// The node's side of a probe: reads the hello, answers with its announce bound to `nonce_of`
/// (the prober's nonce, or another for a replay).
async fn answer_probe(
    conn: &mut Conn<DuplexStream>,
    keys: &LocalCrypto,
    nonce_of: impl FnOnce(Nonce) -> Nonce,
) {
    let Purpose::Probe { nonce } = recv_hello(conn, T).await.unwrap() else {
        panic!("not a probe");
    };
    let cert = keys.public().to_bytes();
    let body = crate::discovery::announce_body("bob", cert, 4242, nonce_of(nonce), true);
    probe::answer(conn, keys, &body, T).await.unwrap();
}

#[tokio::test]
async fn a_probe_is_answered_with_the_nodes_announce_bound_to_the_probers_nonce() {
    let (prober, node_keys) = (node("alice"), node("bob"));
    let (mut a, mut b) = pipe();
    let (got, ()) = tokio::join!(
        probe::ask(&mut a, &prober, [5; 32], T),
        answer_probe(&mut b, &node_keys, |n| n)
    );
    let got = got.unwrap();
    assert_eq!(got.fingerprint, node_keys.fingerprint());
    assert_eq!((got.name.as_str(), got.tcp_port), ("bob", 4242));
    // The kept bytes are the announce as signed: they verify again, relayed.
    let again = crate::announce::verify(&prober, &got.signed, crate::announce::Freshness::Relayed)
        .await
        .unwrap();
    assert_eq!(again.fingerprint, got.fingerprint);
}

#[tokio::test]
async fn a_probe_answer_for_another_nonce_is_refused() {
    let (prober, node_keys) = (node("alice"), node("bob"));
    let (mut a, mut b) = pipe();
    let (got, ()) = tokio::join!(
        probe::ask(&mut a, &prober, [5; 32], T),
        answer_probe(&mut b, &node_keys, |_| [6; 32])
    );
    assert!(matches!(got, Err(probe::ProbeError::WrongNonce)), "{got:?}");
}

#[tokio::test]
async fn a_node_closing_on_the_probe_gives_no_answer_and_still_speaks_pgpchat() {
    let prober = node("alice");
    let (mut a, mut b) = pipe();
    let (got, ()) = tokio::join!(probe::ask(&mut a, &prober, [5; 32], T), async {
        let _ = recv(&mut b, T).await;
        drop(b);
    });
    assert!(matches!(got, Err(probe::ProbeError::NoAnswer)), "{got:?}");
    // What every version does with a hello of version 0: an Error frame.
    let (mut a, mut b) = pipe();
    let (speaks, _) = tokio::join!(probe::speaks_pgpchat(&mut a, T), recv_hello(&mut b, T));
    assert!(speaks);
}

#[tokio::test]
async fn hello_below_the_lowest_version_is_answered_and_refused() {
    let (mut a, mut b) = pipe();
    let hello = Frame::Hello {
        version: 0,
        purpose: Purpose::Handshake,
    };
    send(&mut a, hello, T).await.unwrap();
    let got = recv_hello(&mut b, T).await;
    assert!(matches!(got, Err(NetError::Version(0))));
    let answer = recv(&mut a, T).await;
    assert!(
        is_version_refusal(answer.as_ref().unwrap_err()),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_higher_hello_is_met_at_ours_and_a_version_1_node_refuses_it() {
    let (mut a, mut b) = pipe();
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION + 1,
        purpose: Purpose::Handshake,
    };
    send(&mut a, hello.clone(), T).await.unwrap();
    let (agreed, _) = recv_hello_at(&mut b, T, PROTOCOL_VERSION).await.unwrap();
    assert_eq!(agreed, PROTOCOL_VERSION);
    // A node that speaks version 1 only answers like every build before negotiation did.
    let (mut a, mut b) = pipe();
    send(&mut a, hello, T).await.unwrap();
    let got = recv_hello_at(&mut b, T, 1).await;
    assert!(matches!(got, Err(NetError::Version(_))), "{got:?}");
    let answer = recv(&mut a, T).await;
    assert!(
        is_version_refusal(answer.as_ref().unwrap_err()),
        "{answer:?}"
    );
}

#[test]
fn versions_agree_on_the_highest_both_speak() {
    assert_eq!(agree_version(1, 2), Some(1));
    assert_eq!(agree_version(2, 2), Some(2));
    assert_eq!(agree_version(9, 2), Some(2));
    assert_eq!(agree_version(0, 2), None);
    assert_eq!(agree_version(1, 1), Some(1));
    assert_eq!(agree_version(2, 1), None);
}

#[tokio::test]
async fn hello_must_come_first() {
    let (mut a, mut b) = pipe();
    send(&mut a, Frame::Sealed(vec![1, 2, 3]), T).await.unwrap();
    let got = recv_hello(&mut b, T).await;
    assert!(
        matches!(got, Err(NetError::Unexpected("Sealed"))),
        "{got:?}"
    );
}

#[tokio::test]
async fn silence_times_out_and_hanging_up_closes() {
    let (mut a, b) = pipe();
    let got = recv(&mut a, Duration::from_millis(50)).await;
    assert!(matches!(got, Err(NetError::Timeout)), "{got:?}");
    drop(b);
    let got = recv(&mut a, T).await;
    assert!(matches!(got, Err(NetError::Closed)), "{got:?}");
}

#[tokio::test]
async fn a_peers_error_text_is_sanitized() {
    let (mut a, mut b) = pipe();
    let reason = format!("bad\x1b[2J{}", "x".repeat(500));
    send(&mut a, Frame::Error { reason }, T).await.unwrap();
    match recv(&mut b, T).await {
        Err(NetError::Peer(r)) => {
            assert!(!r.contains('\x1b'), "{r:?}");
            assert_eq!(r.chars().count(), 200);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn sealed_steps_round_trip_between_their_two_identities() {
    let (alice, bob) = (node("alice"), node("bob"));
    let (mut a, mut b) = pipe();
    let step = Handshake::Failed {
        reason: FailReason::Busy,
    };
    send_sealed(&mut a, &alice, bob.public(), &step, T)
        .await
        .unwrap();
    let got = recv_sealed_from(&mut b, &bob, alice.public(), T).await;
    assert!(
        matches!(
            got,
            Ok(Handshake::Failed {
                reason: FailReason::Busy
            })
        ),
        "{got:?}"
    );
}

#[tokio::test]
async fn every_bad_sealed_frame_is_the_same_refusal() {
    let (alice, bob, mallory) = (node("alice"), node("bob"), node("mallory"));
    // Garbage, a frame sealed to someone else, and one signed by someone other than expected.
    let step = Handshake::Failed {
        reason: FailReason::Busy,
    };
    let to_mallory = alice
        .seal(mallory.public().clone(), codec::encode(&step).unwrap())
        .await
        .unwrap();
    let from_mallory = mallory
        .seal(bob.public().clone(), codec::encode(&step).unwrap())
        .await
        .unwrap();
    // Signed and sealed correctly, but not a handshake step.
    let not_a_step = alice
        .seal(bob.public().clone(), vec![0xff; 7])
        .await
        .unwrap();
    for bytes in [vec![0xc3, 0x01, 0x02], to_mallory, from_mallory, not_a_step] {
        let (mut a, mut b) = pipe();
        send(&mut a, Frame::Sealed(bytes), T).await.unwrap();
        let got = recv_sealed_from(&mut b, &bob, alice.public(), T).await;
        assert!(matches!(got, Err(NetError::SealedFrameRefused)), "{got:?}");
        refuse_sealed(&mut b, T).await;
        let answer = recv(&mut a, T).await;
        assert!(
            matches!(&answer, Err(NetError::Peer(r)) if r == SEALED_FRAME_REFUSED),
            "{answer:?}"
        );
    }
}

#[tokio::test]
async fn discussion_authentication_both_ways() {
    let crypto = node("n");
    let (rq, rc) = discussion_keys();
    let (mut a, mut b) = pipe();
    let listener = async {
        let nonce = read_discussion_hello(&mut b).await;
        authenticate_as_listener(&mut b, &crypto, &rc, nonce, 4242, T).await
    };
    let (port, listened) =
        tokio::join!(authenticate_as_connector(&mut a, &crypto, &rq, T), listener);
    assert_eq!(port.unwrap(), 4242, "the listener's signed port");
    listened.unwrap();
    // The reverse roles: the receiver connects back to the requester.
    let (mut a, mut b) = pipe();
    let listener = async {
        let nonce = read_discussion_hello(&mut b).await;
        authenticate_as_listener(&mut b, &crypto, &rq, nonce, 0, T).await
    };
    let (port, listened) =
        tokio::join!(authenticate_as_connector(&mut a, &crypto, &rc, T), listener);
    assert_eq!(port.unwrap(), 0);
    listened.unwrap();
}

#[tokio::test]
async fn a_listener_without_the_discussion_key_is_refused() {
    let crypto = node("n");
    let (rq, rc) = discussion_keys();
    // An impostor who knows the discussion id and the requester's public key, not the receiver's
    // secret one.
    let impostor = SessionKeys::new(
        D1.into(),
        Role::Receiver,
        Arc::new(SecretCert::generate("impostor").unwrap()),
        rc.peer.clone(),
    );
    let (mut a, mut b) = pipe();
    let listener = async {
        let nonce = read_discussion_hello(&mut b).await;
        authenticate_as_listener(&mut b, &crypto, &impostor, nonce, 1, T).await
    };
    let (connected, _) = tokio::join!(authenticate_as_connector(&mut a, &crypto, &rq, T), listener);
    assert!(matches!(connected, Err(NetError::Auth(_))), "{connected:?}");
}

#[tokio::test]
async fn a_connector_without_the_discussion_key_is_refused() {
    let crypto = node("n");
    let (rq, rc) = discussion_keys();
    let impostor = SessionKeys::new(
        D1.into(),
        Role::Requester,
        Arc::new(SecretCert::generate("impostor").unwrap()),
        rq.peer.clone(),
    );
    let (mut a, mut b) = pipe();
    let listener = async {
        let nonce = read_discussion_hello(&mut b).await;
        authenticate_as_listener(&mut b, &crypto, &rc, nonce, 1, T).await
    };
    let (_, listened) = tokio::join!(
        authenticate_as_connector(&mut a, &crypto, &impostor, T),
        listener
    );
    assert!(matches!(listened, Err(NetError::Auth(_))), "{listened:?}");
}

/// What `close --force` keeps: our `Close`, signed with our discussion key.
async fn notice_of(sk: &SessionKeys, crypto: &LocalCrypto) -> CloseNotice {
    CloseNotice {
        discussion_id: sk.discussion_id.clone(),
        peer: sk.peer.clone(),
        proof: sk.own_close(crypto).await.unwrap(),
    }
}

#[tokio::test]
async fn a_closed_listener_is_confirmed_by_the_connector() {
    let crypto = node("n");
    let (rq, rc) = discussion_keys();
    let notice = notice_of(&rc, &crypto).await;
    let (mut a, mut b) = pipe();
    let connector = async {
        match authenticate_as_connector(&mut a, &crypto, &rq, T).await {
            Err(NetError::PeerClosedDiscussion(sig)) => {
                confirm_close(&mut a, &crypto, &rq, sig, T).await
            }
            other => panic!("{other:?}"),
        }
    };
    let listener = async {
        read_discussion_hello(&mut b).await;
        tell_closed_as_listener(&mut b, &crypto, &notice, T).await
    };
    let (confirmed, told) = tokio::join!(connector, listener);
    confirmed.unwrap();
    told.unwrap();
}

#[tokio::test]
async fn a_closed_connector_is_confirmed_by_the_listener() {
    let crypto = node("n");
    let (rq, rc) = discussion_keys();
    let notice = notice_of(&rq, &crypto).await;
    let (mut a, mut b) = pipe();
    let listener = async {
        let nonce = read_discussion_hello(&mut b).await;
        match authenticate_as_listener(&mut b, &crypto, &rc, nonce, 7, T).await {
            Err(NetError::PeerClosedDiscussion(sig)) => {
                confirm_close(&mut b, &crypto, &rc, sig, T).await
            }
            other => panic!("{other:?}"),
        }
    };
    let (told, confirmed) = tokio::join!(
        tell_closed_as_connector(&mut a, &crypto, &notice, T),
        listener
    );
    told.unwrap();
    confirmed.unwrap();
}

#[tokio::test]
async fn both_closed_confirm_each_other() {
    let crypto = node("n");
    let (rq, rc) = discussion_keys();
    let (nq, nc) = (notice_of(&rq, &crypto).await, notice_of(&rc, &crypto).await);
    let (mut a, mut b) = pipe();
    let listener = async {
        read_discussion_hello(&mut b).await;
        tell_closed_as_listener(&mut b, &crypto, &nc, T).await
    };
    let (connector, listener) =
        tokio::join!(tell_closed_as_connector(&mut a, &crypto, &nq, T), listener);
    connector.unwrap();
    listener.unwrap();
}

#[tokio::test]
async fn a_forged_close_is_not_believed() {
    let crypto = node("n");
    let (rq, rc) = discussion_keys();
    // A `Close` for the right discussion, signed by a key that is not the peer's.
    let forger = SecretCert::generate("forger").unwrap();
    let forged = forger.sign_detached(&close_data(D1)).unwrap();
    let notice = CloseNotice {
        discussion_id: D1.into(),
        peer: rc.peer.clone(),
        proof: forged,
    };
    let (mut a, mut b) = pipe();
    let connector = async {
        match authenticate_as_connector(&mut a, &crypto, &rq, T).await {
            Err(NetError::PeerClosedDiscussion(sig)) => {
                confirm_close(&mut a, &crypto, &rq, sig, T).await
            }
            other => panic!("{other:?}"),
        }
    };
    let listener = async {
        read_discussion_hello(&mut b).await;
        // The forger waits for a confirmation that never comes.
        tell_closed_as_listener(&mut b, &crypto, &notice, Duration::from_millis(300)).await
    };
    let (confirmed, told) = tokio::join!(connector, listener);
    assert!(matches!(confirmed, Err(NetError::Auth(_))), "{confirmed:?}");
    assert!(told.is_err(), "no confirmation for a forged close");
}
