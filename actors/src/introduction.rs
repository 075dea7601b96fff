//! Introductions (as Briar does them), the plain rules: the states of an introduction received by
//! one of the two people introduced, their transitions, who dials, when a request is accepted
//! without asking the user, and the bounds. No actor, socket or store here; the
//! [`crate::introductions::Introductions`] actor and the store (`store/introductions.rs`) apply them.
//!
//! An introducer C, with an open discussion with each of A and B, sends each side the other's
//! certificate, signed announce and address and one fresh secret (the same to both). Each side
//! accepts or declines and tells C; once C has both acceptances it tells both (`go`), a decline
//! is passed on to the other side (`no go`). Then the side with the lower identity fingerprint
//! dials; the other side accepts that request without asking its user because it matches an
//! introduction it accepted (same requester fingerprint; the secret is proven by the SPAKE2
//! handshake itself, so a wrong one fails like any wrong secret). The secret lives at most
//! [`crate::settings::Limits::introduction_window_secs`] (48 h by default), sealed at rest, and is
//! destroyed when the introduction is used, declined, cancelled or expires.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Introductions holding a live secret, from one introducer: more are ignored until some end.
pub const MAX_PENDING_INTRODUCTIONS_PER_INTRODUCER: usize = 4;
/// Introductions holding a live secret, from everyone together.
pub const MAX_PENDING_INTRODUCTIONS: usize = 32;
/// Ended introductions (declined, cancelled, expired) kept per introducer, for the user to see;
/// older ones are deleted first (an introducer sending offer-then-cancel cannot grow the table).
/// Used ones are kept: they record where a contact came from, and each needs both users' accept.
pub const MAX_ENDED_INTRODUCTIONS_PER_INTRODUCER: usize = 8;
/// Ended introductions (declined, cancelled, expired) kept in all.
pub const MAX_ENDED_INTRODUCTIONS: usize = 64;
/// Introductions we made that still wait for answers.
pub const MAX_INTRODUCTIONS_MADE_PENDING: usize = 32;
/// Bytes of randomness in an introduction's secret (sent as 64 hex digits).
pub const INTRODUCTION_SECRET_BYTES: usize = 32;
/// Bytes of randomness in an introduction's id (sent as 32 hex digits).
pub const INTRODUCTION_ID_BYTES: usize = 16;
/// Seconds between two dials of a ready introduction that did not open yet (peer offline).
pub const INTRODUCTION_DIAL_RETRY_SECS: u64 = 30;

/// Where an introduction received by one of the two introduced people stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IntroState {
    /// Waiting for our user's decision.
    Pending,
    /// Our user accepted (the introducer was told); waiting for the other side's answer.
    Accepted,
    /// Both accepted (the introducer said so): the lower fingerprint dials.
    Ready,
    /// A discussion opened through it (the secret is gone).
    Used,
    /// Our user declined (the secret is gone).
    Declined,
    /// The other side declined, or the introducer cancelled (the secret is gone).
    Cancelled,
    /// The window passed (the secret is gone).
    Expired,
}

/// A transition that the state does not allow (a replayed or late message, a second decision).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("introduction is {from}: cannot {what}")]
pub struct BadTransition {
    pub from: IntroState,
    pub what: &'static str,
}

impl std::fmt::Display for IntroState {
    /// The state as the API names it (`used`, `declined`, ...): error messages reach the user.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Ready => "ready",
            Self::Used => "used",
            Self::Declined => "declined",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        })
    }
}

impl IntroState {
    /// Whether the secret still exists (sealed in the store) in this state.
    pub fn holds_secret(self) -> bool {
        matches!(self, Self::Pending | Self::Accepted | Self::Ready)
    }

    /// Our user's decision.
    pub fn decide(self, accept: bool) -> Result<Self, BadTransition> {
        match self {
            Self::Pending if accept => Ok(Self::Accepted),
            Self::Pending => Ok(Self::Declined),
            from => Err(BadTransition {
                from,
                what: "decide again",
            }),
        }
    }

    /// The introducer's outcome: both accepted (`go`), or the other side declined.
    pub fn outcome(self, go: bool) -> Result<Self, BadTransition> {
        match self {
            Self::Accepted if go => Ok(Self::Ready),
            // A no-go ends any live introduction (the other side declined, or the introducer
            // withdrew it before we decided).
            Self::Pending | Self::Accepted | Self::Ready if !go => Ok(Self::Cancelled),
            from => Err(BadTransition {
                from,
                what: "take the introducer's outcome",
            }),
        }
    }

    /// A discussion opened through the introduction.
    pub fn used(self) -> Result<Self, BadTransition> {
        match self {
            Self::Accepted | Self::Ready => Ok(Self::Used),
            from => Err(BadTransition {
                from,
                what: "be used",
            }),
        }
    }

    /// The state at `now` for an introduction that expires at `expires`.
    pub fn at(self, now: u64, expires: u64) -> Self {
        if self.holds_secret() && now >= expires {
            Self::Expired
        } else {
            self
        }
    }

    /// Whether a request from the introduced peer is accepted without asking our user: only when
    /// our user accepted, within the window. (The secret is checked by the handshake.)
    pub fn accepts_request(self, now: u64, expires: u64) -> bool {
        matches!(self.at(now, expires), Self::Accepted | Self::Ready)
    }

    /// The column's text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Ready => "ready",
            Self::Used => "used",
            Self::Declined => "declined",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    pub fn from_column(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "accepted" => Self::Accepted,
            "ready" => Self::Ready,
            "used" => Self::Used,
            "declined" => Self::Declined,
            "cancelled" => Self::Cancelled,
            "expired" => Self::Expired,
            _ => return None,
        })
    }
}

/// Whether we are the side that dials once both accepted: the lower identity fingerprint (hex,
/// compared without case), so exactly one side dials and no two requests cross.
pub fn we_dial(own_fingerprint: &str, peer_fingerprint: &str) -> bool {
    own_fingerprint.to_ascii_uppercase() < peer_fingerprint.to_ascii_uppercase()
}

/// An answer of one introduced side, as the introducer records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Waiting,
    Accepted,
    Declined,
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Accepted => "accepted",
            Self::Declined => "declined",
        }
    }

    pub fn from_column(s: &str) -> Option<Self> {
        Some(match s {
            "waiting" => Self::Waiting,
            "accepted" => Self::Accepted,
            "declined" => Self::Declined,
            _ => return None,
        })
    }
}

/// What the introducer tells both sides once the answers are in: `Some(go)`, or `None` while one
/// is still waiting.
pub fn outcome_of(a: Answer, b: Answer) -> Option<bool> {
    match (a, b) {
        (Answer::Declined, _) | (_, Answer::Declined) => Some(false),
        (Answer::Accepted, Answer::Accepted) => Some(true),
        _ => None,
    }
}

/// Whether one more live introduction from `introducer` fits: `from_introducer` and `total` are
/// the live ones (holding a secret) now.
pub fn has_room(from_introducer: usize, total: usize) -> bool {
    from_introducer < MAX_PENDING_INTRODUCTIONS_PER_INTRODUCER && total < MAX_PENDING_INTRODUCTIONS
}

// ---------------------------------------------------------------------------------------------
// The control messages (variants of `wire::Control`; `docs/protocol.md`, "Introductions")

/// From the introducer to each introduced side: the other side and the secret. Its `Debug` hides
/// the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntroductionOffer {
    /// The introducer's id for this introduction, [`INTRODUCTION_ID_BYTES`] in lowercase hex; the
    /// same at both sides.
    pub id: String,
    /// The other side's identity certificate (binary OpenPGP).
    pub peer_cert: Vec<u8>,
    /// The other side's own last signed announce (`bincode(Announce)`) as the introducer holds it,
    /// if it holds one; its name and port are then the announce's, not the introducer's word.
    pub peer_announce: Option<Vec<u8>>,
    /// The other side's name as the introducer knows it (used without an announce).
    pub peer_name: String,
    /// Where the introducer reaches the other side: a hint only (IP address in text form).
    pub peer_address: String,
    /// The other side's main TCP port, as the introducer knows it.
    pub peer_port: u16,
    /// The one-time secret, [`INTRODUCTION_SECRET_BYTES`] in lowercase hex; the same to both.
    pub secret: String,
}

impl std::fmt::Debug for IntroductionOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntroductionOffer")
            .field("id", &self.id)
            .field("peer_name", &self.peer_name)
            .field("peer_address", &self.peer_address)
            .field("peer_port", &self.peer_port)
            .field("secret", &"hidden")
            .finish()
    }
}

/// The control messages of an introduction: one variant of `wire::Control` carries them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IntroductionMessage {
    /// Introducer → each introduced side.
    Offer(IntroductionOffer),
    /// Introduced side → introducer: our user's decision.
    Answer { id: String, accepted: bool },
    /// Introducer → both sides, once both answered: `go` when both accepted; a decline is
    /// passed on as `go: false`.
    Outcome { id: String, go: bool },
}

/// Whether `s` is `bytes` random bytes in lowercase hex (ids and secrets of introductions: a
/// peer's id must not cost us memory or log space, a secret must be one we could have made).
pub fn is_hex_of(s: &str, bytes: usize) -> bool {
    s.len() == 2 * bytes && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `bytes` fresh random bytes in lowercase hex.
pub fn random_hex(bytes: usize) -> zeroize::Zeroizing<String> {
    use rand::RngCore;
    let mut raw = zeroize::Zeroizing::new(vec![0u8; bytes]);
    rand::rngs::OsRng.fill_bytes(&mut raw);
    zeroize::Zeroizing::new(hex::encode(&*raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use IntroState::*;

    #[test]
    fn accepted_then_go_is_ready_then_used_and_only_live_states_hold_the_secret() {
        let s = Pending.decide(true).unwrap();
        assert_eq!(s, Accepted);
        let s = s.outcome(true).unwrap();
        assert_eq!(s, Ready);
        assert_eq!(s.used().unwrap(), Used);
        for s in [Pending, Accepted, Ready] {
            assert!(s.holds_secret());
        }
        for s in [Used, Declined, Cancelled, Expired] {
            assert!(!s.holds_secret());
            assert_eq!(
                s.at(u64::MAX, 0),
                s,
                "an ended introduction stays as it ended"
            );
        }
    }

    #[test]
    fn a_decline_on_either_side_ends_it_and_nothing_ended_comes_back() {
        assert_eq!(Pending.decide(false).unwrap(), Declined);
        assert_eq!(Accepted.outcome(false).unwrap(), Cancelled);
        assert_eq!(Pending.outcome(false).unwrap(), Cancelled);
        assert!(
            Pending.outcome(true).is_err(),
            "no go before our own user said yes"
        );
        assert!(Accepted.decide(false).is_err(), "one decision only");
        for s in [Used, Declined, Cancelled, Expired] {
            assert!(s.decide(true).is_err() && s.outcome(true).is_err() && s.used().is_err());
        }
        assert!(
            Pending.used().is_err(),
            "never used before our user accepted"
        );
    }

    #[test]
    fn only_an_accepted_introduction_within_its_window_accepts_a_request() {
        assert!(
            !Pending.accepts_request(10, 100),
            "our user has not said yes"
        );
        assert!(Accepted.accepts_request(10, 100));
        assert!(Ready.accepts_request(99, 100));
        assert!(!Ready.accepts_request(100, 100), "the window is over");
        assert_eq!(Ready.at(100, 100), Expired);
        for s in [Used, Declined, Cancelled, Expired] {
            assert!(!s.accepts_request(0, 100));
        }
    }

    #[test]
    fn exactly_one_side_dials() {
        let (a, b) = ("0A11", "b022");
        assert!(we_dial(a, b));
        assert!(!we_dial(b, a));
        assert!(!we_dial(a, a));
    }

    #[test]
    fn the_introducer_waits_for_both_answers_and_any_decline_is_no_go() {
        use Answer::*;
        assert_eq!(outcome_of(Waiting, Accepted), None);
        assert_eq!(outcome_of(Accepted, Accepted), Some(true));
        assert_eq!(outcome_of(Declined, Waiting), Some(false));
        assert_eq!(outcome_of(Accepted, Declined), Some(false));
    }

    #[test]
    fn ids_and_secrets_are_checked_and_the_secret_never_shows_in_debug() {
        let secret = random_hex(INTRODUCTION_SECRET_BYTES);
        assert!(is_hex_of(&secret, INTRODUCTION_SECRET_BYTES));
        assert!(!is_hex_of("ABCD", 2), "lowercase only");
        assert!(!is_hex_of("abc", 2));
        let offer = IntroductionOffer {
            id: "00".repeat(INTRODUCTION_ID_BYTES),
            peer_cert: vec![],
            peer_announce: None,
            peer_name: "bob".into(),
            peer_address: "127.0.0.1".into(),
            peer_port: 1,
            secret: secret.to_string(),
        };
        assert!(!format!("{offer:?}").contains(secret.as_str()));
    }

    #[test]
    fn bounds_per_introducer_and_in_total() {
        assert!(has_room(0, 0));
        assert!(!has_room(MAX_PENDING_INTRODUCTIONS_PER_INTRODUCER, 5));
        assert!(!has_room(0, MAX_PENDING_INTRODUCTIONS));
    }
}
