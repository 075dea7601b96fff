//! Both handshake drivers over an in-memory pipe, each end with its own [`LocalCrypto`] and the
//! receiver with a recording [`ResponderHost`]: no actor system, no sockets.

use std::cell::RefCell;
use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use tokio::io::DuplexStream;
use tokio::sync::oneshot;

use super::requester::{self, RequestError};
use super::responder::{self, Decision, RespondError, Responded, ResponderHost, Unconfirmed};
use super::*;
use crate::admission::{DecryptBudget, DECRYPT_BURST_PER_ADDRESS};
use crate::crypto::SecretCert;
use crate::events::now_secs;
use crate::handshake::{Agreed, Requester};
use crate::wire::{FailReason, RequestBody};

const T: Duration = Duration::from_secs(5);
const FROM: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const PORT: u16 = 4711;

fn pipe() -> (Conn<DuplexStream>, Conn<DuplexStream>) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    (framed(a, 1 << 20), framed(b, 1 << 20))
}

fn node(name: &str) -> LocalCrypto {
    LocalCrypto::new(SecretCert::generate(name).unwrap())
}

/// What the user answers, and what the host saw.
struct TestHost {
    /// `Some(Ok(secret))` accepts, `Some(Err(()))` refuses, `None` never decides.
    answer: Option<Result<&'static str, ()>>,
    /// Turn the request away before asking the user.
    turn_away: Option<FailReason>,
    verified: RefCell<bool>,
    failures: RefCell<Vec<String>>,
    gone: RefCell<Vec<String>>,
    created: RefCell<Option<Agreed>>,
    /// Keeps a pending decision's channel open.
    undecided: RefCell<Option<oneshot::Sender<Decision<()>>>>,
}

impl TestHost {
    fn answering(answer: Option<Result<&'static str, ()>>) -> Self {
        Self {
            answer,
            turn_away: None,
            verified: RefCell::new(false),
            failures: RefCell::default(),
            gone: RefCell::default(),
            created: RefCell::default(),
            undecided: RefCell::default(),
        }
    }
}

impl ResponderHost for TestHost {
    type Then = ();

    fn verified(&self) {
        *self.verified.borrow_mut() = true;
    }

    async fn arrived(
        &self,
        _: &RequestBody,
    ) -> Result<(u64, oneshot::Receiver<Decision<()>>), FailReason> {
        if let Some(r) = self.turn_away {
            return Err(r);
        }
        let (tx, rx) = oneshot::channel();
        match self.answer {
            Some(Ok(secret)) => {
                let _ = tx.send(Decision::Accept {
                    password: secret.into(),
                    then: (),
                });
            }
            Some(Err(())) => {
                let _ = tx.send(Decision::Refuse);
            }
            None => *self.undecided.borrow_mut() = Some(tx),
        }
        Ok((1, rx))
    }

    fn gone(&self, _: u64, reason: &str) {
        self.gone.borrow_mut().push(reason.into());
    }

    fn failed(&self, _: &str, reason: String) {
        self.failures.borrow_mut().push(reason);
    }

    async fn create_discussion(
        &self,
        _: &RequestBody,
        agreed: Agreed,
        _: SecretCert,
        _: Vec<u8>,
    ) -> Result<u16, Box<dyn StdError + Send + Sync>> {
        *self.created.borrow_mut() = Some(agreed);
        Ok(PORT)
    }
}

fn deadlines() -> (requester::Deadlines, responder::Deadlines) {
    (
        requester::Deadlines {
            step: T,
            decision: T,
        },
        responder::Deadlines {
            first_frame: T,
            step: T,
            decision: T,
        },
    )
}

/// Run both drivers: alice requests with `secret`, bob's host answers.
async fn run(
    secret: &str,
    host: &TestHost,
) -> (
    Result<requester::Requested, RequestError>,
    Result<Responded<()>, (RespondError, Option<()>)>,
) {
    let (alice, bob) = (node("alice"), node("bob"));
    let (mut a, mut b) = pipe();
    let (rd, sd) = deadlines();
    let budget = DecryptBudget::default();
    tokio::join!(
        requester::request(&mut a, &alice, bob.public(), "bob", secret.into(), rd),
        responder::respond(&mut b, &bob, host, &budget, FROM, sd)
    )
}

#[tokio::test]
async fn the_same_secret_opens_a_discussion_on_both_sides() {
    let host = TestHost::answering(Some(Ok("pw")));
    let (requested, responded) = run("pw", &host).await;
    let requested = requested.unwrap();
    let Ok(Responded::Opened { discussion_id, .. }) = responded else {
        panic!("not opened")
    };
    assert_eq!(requested.agreed.discussion_id, discussion_id);
    assert_eq!(requested.port, PORT, "the port the host's listener took");
    let created = host.created.borrow().clone().unwrap();
    assert_eq!(
        created.peer_discussion_key.fingerprint(),
        requested.own_key.fingerprint(),
        "each side holds the other's discussion key"
    );
    assert!(*host.verified.borrow());
    assert!(host.failures.borrow().is_empty());
}

#[tokio::test]
async fn another_secret_fails_on_both_sides_and_burns_an_attempt() {
    let host = TestHost::answering(Some(Ok("other")));
    let (requested, responded) = run("pw", &host).await;
    let e = requested.err().unwrap();
    assert!(matches!(e, RequestError::Handshake(_)), "{e:?}");
    assert!(e.burns_an_attempt());
    assert!(
        matches!(
            responded,
            Err((
                RespondError::Failed(FailReason::WrongSecretOrIntercepted),
                Some(())
            ))
        ),
        "the accepting user gets the failure"
    );
    assert_eq!(host.failures.borrow().len(), 1, "one burned attempt");
    assert!(host.created.borrow().is_none());
}

#[tokio::test]
async fn a_refusal_reaches_the_requester() {
    let host = TestHost::answering(Some(Err(())));
    let (requested, responded) = run("pw", &host).await;
    let e = requested.err().unwrap();
    assert!(
        matches!(&e, RequestError::Refused(r) if r == "the user declined"),
        "{e:?}"
    );
    assert!(!e.burns_an_attempt());
    assert!(matches!(responded, Ok(Responded::Refused)));
}

#[tokio::test]
async fn a_request_turned_away_says_why_and_burns_nothing() {
    let mut host = TestHost::answering(Some(Ok("pw")));
    host.turn_away = Some(FailReason::Busy);
    let (requested, responded) = run("pw", &host).await;
    let e = requested.err().unwrap();
    assert!(matches!(e, RequestError::Failed(FailReason::Busy)), "{e:?}");
    assert!(!e.burns_an_attempt());
    assert!(matches!(
        responded,
        Err((RespondError::Failed(FailReason::Busy), None))
    ));
}

#[tokio::test]
async fn a_bad_first_frame_gets_the_fixed_refusal() {
    let bob = node("bob");
    let host = TestHost::answering(Some(Ok("pw")));
    let (mut a, mut b) = pipe();
    let (_, sd) = deadlines();
    let budget = DecryptBudget::default();
    send(&mut a, Frame::Sealed(vec![0xc1, 0x00, 0x07]), T)
        .await
        .unwrap();
    let responded = responder::respond(&mut b, &bob, &host, &budget, FROM, sd).await;
    assert!(matches!(
        responded,
        Err((RespondError::Net(NetError::SealedFrameRefused), None))
    ));
    let answer = recv(&mut a, T).await;
    assert!(matches!(&answer, Err(NetError::Peer(r)) if r == SEALED_FRAME_REFUSED));
    assert!(
        !*host.verified.borrow(),
        "an unverified peer stays evictable"
    );
}

#[tokio::test]
async fn an_address_over_its_decryption_budget_is_not_decrypted() {
    let bob = node("bob");
    let host = TestHost::answering(Some(Ok("pw")));
    let budget = DecryptBudget::default();
    let now = Instant::now();
    for _ in 0..DECRYPT_BURST_PER_ADDRESS as usize {
        assert!(budget.spend(FROM, now));
    }
    let (mut a, mut b) = pipe();
    let (_, sd) = deadlines();
    send(&mut a, Frame::Sealed(vec![1]), T).await.unwrap();
    let responded = responder::respond(&mut b, &bob, &host, &budget, FROM, sd).await;
    assert!(matches!(
        responded,
        Err((RespondError::Net(NetError::OverBudget), None))
    ));
}

/// Alice's side by hand up to bob's `Accept`, then silence instead of a `Confirm`.
async fn accept_then_silence() -> (TestHost, RespondError) {
    let (alice, bob) = (node("alice"), node("bob"));
    let host = TestHost::answering(Some(Ok("pw")));
    let (mut a, mut b) = pipe();
    let (_, sd) = deadlines();
    let sd = responder::Deadlines {
        step: Duration::from_millis(500),
        ..sd
    };
    let budget = DecryptBudget::default();
    let dkey = SecretCert::generate("d").unwrap();
    let responded = {
        let requester = async {
            let (_state, req) = alice
                .run({
                    let (to, dpub) = (bob.fingerprint().to_string(), dkey.public().clone());
                    move |id| Ok(Requester::start(id, "alice", &to, &dpub, b"pw", now_secs()))
                })
                .await
                .unwrap();
            send_sealed(&mut a, &alice, bob.public(), &Handshake::Request(req), T)
                .await
                .unwrap();
            let got = recv_sealed_from(&mut a, &alice, bob.public(), T).await;
            assert!(matches!(got, Ok(Handshake::Accept(_))), "{got:?}");
        };
        let (_, r) = tokio::join!(
            requester,
            responder::respond(&mut b, &bob, &host, &budget, FROM, sd)
        );
        r
    };
    drop(a);
    let (e, then) = responded.err().unwrap();
    assert!(then.is_some(), "the accepting user is answered");
    (host, e)
}

#[tokio::test]
async fn an_accept_without_a_confirm_is_a_failed_attempt() {
    // Alice stays silent past the step deadline: the responder gives up and counts it.
    let (host, e) = accept_then_silence().await;
    assert!(
        matches!(
            &e,
            RespondError::NotConfirmed {
                why: Unconfirmed::TimedOut,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(host.failures.borrow().len(), 1);
    assert!(host.failures.borrow()[0].contains("counts as a failed attempt"));
}

#[tokio::test]
async fn a_withdrawn_request_is_gone_before_the_user_decides() {
    let (alice, bob) = (node("alice"), node("bob"));
    let host = TestHost::answering(None);
    let (mut a, mut b) = pipe();
    let (_, sd) = deadlines();
    let budget = DecryptBudget::default();
    let dkey = SecretCert::generate("d").unwrap();
    let requester = async {
        let (to, dpub) = (bob.fingerprint().to_string(), dkey.public().clone());
        let (_state, req) = alice
            .run(move |id| Ok(Requester::start(id, "alice", &to, &dpub, b"pw", now_secs())))
            .await
            .unwrap();
        send_sealed(&mut a, &alice, bob.public(), &Handshake::Request(req), T)
            .await
            .unwrap();
        // Any frame (or hanging up) withdraws the request.
        send(
            &mut a,
            Frame::Error {
                reason: "bye".into(),
            },
            T,
        )
        .await
        .unwrap();
    };
    let (_, responded) = tokio::join!(
        requester,
        responder::respond(&mut b, &bob, &host, &budget, FROM, sd)
    );
    assert!(matches!(
        responded,
        Err((RespondError::Net(NetError::Closed), None))
    ));
    assert_eq!(
        *host.gone.borrow(),
        vec!["withdrawn by the requester".to_string()]
    );
}
