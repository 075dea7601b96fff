//! The peer-to-peer protocol's values. Encodings live in [`crate::codec`]; every frame is documented
//! in `docs/protocol.md`, and golden-bytes tests below pin the format.

use serde::{Deserialize, Serialize};

/// The highest protocol version this build speaks (`docs/protocol.md`, "Versions"). Two peers agree
/// on the highest version both speak: the connecting side says its highest in `Hello`, the other
/// side answers at `min(theirs, ours)`.
pub const PROTOCOL_VERSION: u16 = 4;

/// The lowest protocol version this build still speaks: version 1 is the protocol of every build
/// before versions were negotiated, which refuses any hello version but 1.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// The first version with the control channel ([`Frame::Control`]) and with the agreed version
/// covered by the `SessionAuth` signatures.
pub const CONTROL_VERSION: u16 = 2;

/// The first version with [`Control::Rendezvous`] (issue 11): a version-2 peer cannot decode it, so
/// it is only sent once the peer has authenticated at 3 or more.
pub const RENDEZVOUS_VERSION: u16 = 3;

/// The first version with [`Control::Rotation`] (issue 14): a version-3 peer cannot decode it, so
/// a discussion rotates its keys only once its peer has authenticated at 4 or more.
pub const ROTATION_VERSION: u16 = 4;

/// The version of the announce format ([`AnnounceBody::version`]), apart from the protocol's:
/// unchanged by version negotiation, so nodes of every version hear each other's announces.
pub const ANNOUNCE_VERSION: u16 = 1;

/// Random value that makes a frame unique (replay defence).
pub type Nonce = [u8; 32];

// ---------------------------------------------------------------------------------------------
// UDP discovery

/// One discovery datagram: `bincode(Announce)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    /// `bincode(AnnounceBody)`: what the signature covers.
    pub body: Vec<u8>,
    /// Detached OpenPGP signature over `body` by the identity key inside it.
    pub signature: Vec<u8>,
    /// Zero bytes that make broadcast announces larger than any reply (no amplification): a node
    /// only answers when its own reply is not larger than what it received.
    pub padding: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnounceBody {
    /// [`ANNOUNCE_VERSION`].
    pub version: u16,
    /// Display name (a hint: identity is only proven in the TCP handshake).
    pub name: String,
    /// Port of the node's main TCP listener.
    pub tcp_port: u16,
    /// The node's identity certificate, binary OpenPGP.
    pub cert: Vec<u8>,
    pub nonce: Nonce,
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// True for a unicast answer to an announce; answers are never answered.
    pub reply: bool,
}

// ---------------------------------------------------------------------------------------------
// TCP

/// Why a connection is opened; carried by its first frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    /// Ask for a new discussion (main listener).
    Handshake,
    /// (Re)connect an existing discussion, authenticated with the discussion keys.
    Discussion {
        discussion_id: String,
        /// The connecting side's fresh challenge.
        nonce: Nonce,
    },
    /// Ask the node for its signed announce (adding a contact by address, re-probing one that
    /// broadcast cannot reach). Answered with one [`Frame::ProbeAnswer`] whose announce carries
    /// this nonce (freshness: the answer cannot be replayed to another prober), then closed.
    Probe {
        /// The prober's fresh challenge, echoed as the answer's `AnnounceBody::nonce`.
        nonce: Nonce,
    },
    /// Ask for a new discussion that an introduction arranged (version 2 on): the rest is a
    /// [`Purpose::Handshake`]'s, but the receiver accepts it without asking its user only if it
    /// matches an introduction its user accepted, and never treats an ordinary `Handshake` so. Sent
    /// only by an introduction's dialer (`docs/protocol.md`, section 6).
    Introduced,
}

/// Characters of a discussion id: 16 bytes (of a hash of the handshake transcript) in lowercase hex.
pub const DISCUSSION_ID_CHARS: usize = 32;

/// Whether `id` has the form of a discussion id. A hello naming anything else is refused before any
/// lookup or log line: the id is the peer's choice, and must not cost us memory or log space.
pub fn is_discussion_id(id: &str) -> bool {
    id.len() == DISCUSSION_ID_CHARS && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Every TCP frame, on the main listener and on discussion listeners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// First frame of every connection, from the side that connected.
    Hello { version: u16, purpose: Purpose },
    /// A handshake step: an OpenPGP message signed by the sender's identity key and encrypted to
    /// the peer's identity encryption subkey, whose plaintext is `bincode(Handshake)`.
    Sealed(Vec<u8>),
    /// Discussion authentication: a fresh nonce and a detached signature by the sender's discussion
    /// key over [`session_auth_data`]. `port` is the listening side's current discussion port (so a
    /// peer that came in through the main listener learns it), 0 from the connecting side.
    SessionAuth {
        nonce: Nonce,
        port: u16,
        signature: Vec<u8>,
    },
    /// A chat message: OpenPGP, signed by the sender's discussion key, encrypted to the receiver's;
    /// plaintext `bincode(ChatPayload)`.
    Chat(Vec<u8>),
    /// Cumulative acknowledgement: every message up to `upto` is stored. Signed by the receiver's
    /// discussion key over [`ack_data`].
    Ack { upto: u64, signature: Vec<u8> },
    /// The sender closes the discussion for good. Signed over [`close_data`].
    Close { signature: Vec<u8> },
    /// An unauthenticated, informational reason before the connection closes (version mismatch,
    /// busy, unknown discussion). Never trusted for anything but display.
    Error { reason: String },
    /// The answer to a [`Purpose::Probe`]: `bincode(Announce)`, unpadded, `reply` set, its body's
    /// nonce the prober's. Verified exactly as a broadcast announce.
    ProbeAnswer(Vec<u8>),
    /// Version 2 and later only: a control message of the discussion, OpenPGP signed by the
    /// sender's discussion key and encrypted to the receiver's; plaintext `bincode(ControlPayload)`.
    /// Shares the discussion's sequence numbers and acks with [`Frame::Chat`].
    Control(Vec<u8>),
    /// Version 4 and later only (issue 14): the receiver could not read a chat or control frame
    /// encrypted to its subkey `key_id` (16 upper-case hex digits), which it no longer holds (a
    /// destroyed key); `last_seq` is the last message it stored. Signed by its discussion key over
    /// [`unreadable_data`]. The sender encrypts everything after `last_seq` again, to the subkey
    /// current now.
    Unreadable {
        key_id: String,
        last_seq: u64,
        signature: Vec<u8>,
    },
}

/// Plaintext of [`Frame::Sealed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handshake {
    Request(RequestBody),
    Accept(AcceptBody),
    Confirm { confirm: [u8; 32] },
    Ready { discussion_id: String, port: u16 },
    Refused { nonce: Nonce, reason: String },
    Failed { reason: FailReason },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestBody {
    pub version: u16,
    /// Requester's identity fingerprint; must be the fingerprint of `cert`.
    pub from: String,
    /// Intended receiver's identity fingerprint.
    pub to: String,
    pub name: String,
    pub nonce: Nonce,
    pub time: u64,
    /// Requester's identity certificate (binary OpenPGP); it verifies this frame's signature.
    pub cert: Vec<u8>,
    /// Requester's public discussion key (binary OpenPGP).
    pub discussion_key: Vec<u8>,
    /// SPAKE2 message, role A, identities (from, to).
    pub spake: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptBody {
    /// Echo of the request's nonce.
    pub request_nonce: Nonce,
    pub nonce: Nonce,
    pub discussion_key: Vec<u8>,
    /// SPAKE2 message, role B.
    pub spake: Vec<u8>,
    /// Key confirmation from the receiver; zero while the transcript hash is computed.
    pub confirm: [u8; 32],
}

/// Why a handshake ended. Both sides show it to their users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailReason {
    /// Key confirmation failed: the secrets differ, or someone is in the middle.
    WrongSecretOrIntercepted,
    /// Too many failed attempts for this contact recently.
    TooManyAttempts,
    /// A replayed or stale frame.
    Replay,
    /// A step took too long.
    Timeout,
    /// Something that does not follow the protocol.
    Protocol,
    /// The receiver has too many requests waiting for a decision.
    Busy,
}

impl std::fmt::Display for FailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::WrongSecretOrIntercepted => {
                "the secrets do not match (wrong secret, or someone is intercepting the connection)"
            }
            Self::TooManyAttempts => "too many failed attempts with this contact; try again later",
            Self::Replay => "replayed or stale handshake",
            Self::Timeout => "the handshake timed out",
            Self::Protocol => "protocol violation",
            Self::Busy => "the other side has too many pending requests; try again later",
        })
    }
}

/// Plaintext of [`Frame::Chat`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatPayload {
    pub discussion_id: String,
    /// Sender's sequence number, from 1, without gaps.
    pub seq: u64,
    /// Seconds since the Unix epoch, sender's clock.
    pub time: u64,
    /// Fingerprint of the intended recipient's discussion key.
    pub recipient: String,
    pub body: String,
}

/// The body never shows.
impl std::fmt::Debug for ChatPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatPayload")
            .field("discussion_id", &self.discussion_id)
            .field("seq", &self.seq)
            .field("time", &self.time)
            .field("recipient", &self.recipient)
            .field("body", &crate::redact::Hidden::of(&self.body))
            .finish()
    }
}

/// Plaintext of [`Frame::Control`]: like [`ChatPayload`], with a typed [`Control`] instead of text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPayload {
    pub discussion_id: String,
    /// Sender's sequence number, shared with chat messages (one sequence per direction).
    pub seq: u64,
    /// Seconds since the Unix epoch, sender's clock.
    pub time: u64,
    /// Fingerprint of the intended recipient's discussion key.
    pub recipient: String,
    pub control: Control,
}

/// Every control message: the one extension point of the control channel (`docs/protocol.md`,
/// "Control channel"). A new exchange adds its variants at the end (the variant index is the wire
/// format: never reorder), a handler in [`crate::control`], and its golden bytes below.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// Ask the peer for its contact list (`request_id` is the asker's, echoed in the answer).
    ListRequest { request_id: u64 },
    /// The answer to a [`Control::ListRequest`]: the sharer itself and the contacts it shares.
    ListResponse {
        request_id: u64,
        entries: Vec<ListEntry>,
    },
    /// The peer will not answer this [`Control::ListRequest`] (asked too often).
    ListRefused { request_id: u64 },
    /// An introduction's offer, answer or outcome (`docs/protocol.md`, section 6; the types and
    /// rules live in [`crate::introduction`]).
    Introduction(crate::introduction::IntroductionMessage),
    /// The discussion's DHT rendezvous secret, for a discussion that has none (opened before
    /// issue 11, or with a peer on an older version; `docs/protocol.md`, section 7). Version 3.
    Rendezvous(RendezvousMessage),
    /// A discussion encryption subkey's rotation (issue 14, `docs/protocol.md`, "Key rotation").
    /// Version 4.
    Rotation(RotationMessage),
}

/// The rotation of one side's discussion encryption subkey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RotationMessage {
    /// From the rotating side: its new subkey `key_id` (upper-case hex of the v4 key id), in `cert`:
    /// its public discussion certificate (binary OpenPGP) with that one subkey and its binding
    /// signature by the discussion's primary key. At most `crypto::MAX_CERT_BYTES`.
    Announce { key_id: String, cert: Vec<u8> },
    /// From the peer: it encrypts to subkey `key_id` from this message's own sequence number on.
    Acknowledge { key_id: String },
}

/// The rendezvous-secret exchange: the requester's secret is the discussion's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RendezvousMessage {
    /// From the requester: the secret (drawn at random if it had none). The receiver keeps it in
    /// place of any it had.
    Secret(SecretBytes),
    /// From the receiver that has none: please send [`RendezvousMessage::Secret`].
    Wanted,
}

/// 32 secret bytes whose `Debug` shows nothing (a control message may be logged).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretBytes(pub [u8; 32]);

/// Wiped when dropped (the copy in a decoded control message lives until it is handled).
impl Drop for SecretBytes {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBytes(hidden)")
    }
}

/// One contact in a [`Control::ListResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    /// The contact's own last signed announce, relayed unchanged (`bincode(Announce)`, padding
    /// removed): the sharer cannot forge its name, key or port.
    pub announce: Vec<u8>,
    /// Where the sharer reaches it: a hint only (the sharer's observation, not signed by the
    /// contact). An IP address in text form.
    pub address: String,
}

/// Roles in a discussion: the requester (A) and the receiver (B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Requester,
    Receiver,
}

impl Role {
    pub fn peer(self) -> Self {
        match self {
            Self::Requester => Self::Receiver,
            Self::Receiver => Self::Requester,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requester => "requester",
            Self::Receiver => "receiver",
        }
    }
}

/// What a discussion key signs to prove itself on a (re)connection: domain, discussion, the
/// signer's role, the peer's fresh nonce, then its own.
pub fn session_auth_data(
    discussion_id: &str,
    signer: Role,
    peer_nonce: &Nonce,
    own: &Nonce,
    port: u16,
) -> Vec<u8> {
    let mut v = b"pgpchat-session-auth-v1\0".to_vec();
    v.extend_from_slice(discussion_id.as_bytes());
    v.push(0);
    v.extend_from_slice(signer.as_str().as_bytes());
    v.push(0);
    v.extend_from_slice(peer_nonce);
    v.extend_from_slice(own);
    v.extend_from_slice(&port.to_be_bytes());
    v
}

/// [`session_auth_data`] at the agreed protocol `version`: version 1 is the old form exactly; from
/// version 2 on, another domain and the version itself are signed, so the version both sides agreed
/// on cannot be changed in flight (a downgrade needs a signature).
pub fn session_auth_data_at(
    version: u16,
    discussion_id: &str,
    signer: Role,
    peer_nonce: &Nonce,
    own: &Nonce,
    port: u16,
) -> Vec<u8> {
    if version < CONTROL_VERSION {
        return session_auth_data(discussion_id, signer, peer_nonce, own, port);
    }
    let mut v = b"pgpchat-session-auth-v2\0".to_vec();
    v.extend_from_slice(&version.to_be_bytes());
    v.extend_from_slice(discussion_id.as_bytes());
    v.push(0);
    v.extend_from_slice(signer.as_str().as_bytes());
    v.push(0);
    v.extend_from_slice(peer_nonce);
    v.extend_from_slice(own);
    v.extend_from_slice(&port.to_be_bytes());
    v
}

/// What an acknowledgement signs.
pub fn ack_data(discussion_id: &str, upto: u64) -> Vec<u8> {
    let mut v = b"pgpchat-ack-v1\0".to_vec();
    v.extend_from_slice(discussion_id.as_bytes());
    v.push(0);
    v.extend_from_slice(&upto.to_be_bytes());
    v
}

/// What an [`Frame::Unreadable`] signs.
pub fn unreadable_data(discussion_id: &str, key_id: &str, last_seq: u64) -> Vec<u8> {
    let mut v = b"pgpchat-unreadable-v1\0".to_vec();
    v.extend_from_slice(discussion_id.as_bytes());
    v.push(0);
    v.extend_from_slice(key_id.as_bytes());
    v.push(0);
    v.extend_from_slice(&last_seq.to_be_bytes());
    v
}

/// What a close signs.
pub fn close_data(discussion_id: &str) -> Vec<u8> {
    let mut v = b"pgpchat-close-v1\0".to_vec();
    v.extend_from_slice(discussion_id.as_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};

    #[test]
    fn golden_bytes_pin_the_format() {
        let hello = Frame::Hello {
            version: 1,
            purpose: Purpose::Handshake,
        };
        assert_eq!(hex::encode(encode(&hello).unwrap()), "00000000000100000000");
        // An introduction's dial: purpose variant 3, after the probe (version 2 only).
        let introduced = Frame::Hello {
            version: 2,
            purpose: Purpose::Introduced,
        };
        assert_eq!(
            hex::encode(encode(&introduced).unwrap()),
            "00000000000200000003"
        );
        let ack = Frame::Ack {
            upto: 7,
            signature: vec![0xaa],
        };
        assert_eq!(
            hex::encode(encode(&ack).unwrap()),
            "0000000400000000000000070000000000000001aa"
        );
    }

    #[test]
    fn golden_bytes_pin_the_control_channel() {
        // Frame::Control is variant 8, after every version-1 frame and the probe answer (a v1
        // peer never gets one).
        let frame = Frame::Control(vec![0xbb]);
        assert_eq!(
            hex::encode(encode(&frame).unwrap()),
            "000000080000000000000001bb"
        );
        let request = Control::ListRequest { request_id: 5 };
        assert_eq!(
            hex::encode(encode(&request).unwrap()),
            "000000000000000000000005"
        );
        let response = Control::ListResponse {
            request_id: 5,
            entries: vec![ListEntry {
                announce: vec![0xcc],
                address: "1".into(),
            }],
        };
        assert_eq!(
            hex::encode(encode(&response).unwrap()),
            concat!(
                "00000001",
                "0000000000000005",
                "0000000000000001",
                "0000000000000001cc",
                "000000000000000131"
            )
        );
        assert_eq!(
            hex::encode(encode(&Control::ListRefused { request_id: 5 }).unwrap()),
            "000000020000000000000005"
        );
        let payload = ControlPayload {
            discussion_id: "d".into(),
            seq: 2,
            time: 3,
            recipient: "r".into(),
            control: request,
        };
        assert_eq!(
            hex::encode(encode(&payload).unwrap()),
            concat!(
                "000000000000000164",
                "0000000000000002",
                "0000000000000003",
                "000000000000000172",
                "000000000000000000000005"
            )
        );
    }

    #[test]
    fn golden_bytes_pin_the_rendezvous_exchange() {
        // Control::Rendezvous is variant 4; inside it Secret 0 (32 bytes, no length), Wanted 1.
        let secret = Control::Rendezvous(RendezvousMessage::Secret(SecretBytes([0xab; 32])));
        assert_eq!(
            hex::encode(encode(&secret).unwrap()),
            format!("0000000400000000{}", "ab".repeat(32))
        );
        let wanted = Control::Rendezvous(RendezvousMessage::Wanted);
        assert_eq!(hex::encode(encode(&wanted).unwrap()), "0000000400000001");
        assert_eq!(
            format!("{secret:?}"),
            "Rendezvous(Secret(SecretBytes(hidden)))"
        );
    }

    #[test]
    fn golden_bytes_pin_the_unreadable_frame() {
        // Frame::Unreadable is variant 9: key id (u64 length + bytes), last_seq, signature.
        let f = Frame::Unreadable {
            key_id: "AB".into(),
            last_seq: 7,
            signature: vec![0xee],
        };
        assert_eq!(
            hex::encode(encode(&f).unwrap()),
            "00000009000000000000000241420000000000000007000000000000000 1ee".replace(' ', "")
        );
        assert_eq!(
            unreadable_data("d", "AB", 7),
            b"pgpchat-unreadable-v1\0d\0AB\0\0\0\0\0\0\0\0\x07"
        );
    }

    #[test]
    fn golden_bytes_pin_the_rotation_messages() {
        // Control::Rotation is variant 5; inside it Announce 0 (key id, cert), Acknowledge 1.
        let ann = Control::Rotation(RotationMessage::Announce {
            key_id: "AB".into(),
            cert: vec![0xc6],
        });
        assert_eq!(
            hex::encode(encode(&ann).unwrap()),
            "0000000500000000000000000000000241420000000000000001c6"
        );
        let ack = Control::Rotation(RotationMessage::Acknowledge {
            key_id: "AB".into(),
        });
        assert_eq!(
            hex::encode(encode(&ack).unwrap()),
            "0000000500000001000000000000000241 42".replace(' ', "")
        );
    }

    #[test]
    fn golden_bytes_pin_the_introduction_messages() {
        use crate::introduction::{IntroductionMessage, IntroductionOffer};
        // Control::Introduction is variant 3; inside it Offer 0, Answer 1, Outcome 2.
        let answer = Control::Introduction(IntroductionMessage::Answer {
            id: "a".into(),
            accepted: true,
        });
        assert_eq!(
            hex::encode(encode(&answer).unwrap()),
            "000000030000000100000000000000016101"
        );
        let outcome = Control::Introduction(IntroductionMessage::Outcome {
            id: "a".into(),
            go: false,
        });
        assert_eq!(
            hex::encode(encode(&outcome).unwrap()),
            "000000030000000200000000000000016100"
        );
        let offer = Control::Introduction(IntroductionMessage::Offer(IntroductionOffer {
            id: "i".into(),
            peer_cert: vec![0xcc],
            peer_announce: None,
            peer_name: "n".into(),
            peer_address: "1".into(),
            peer_port: 7,
            secret: "s".into(),
        }));
        assert_eq!(
            hex::encode(encode(&offer).unwrap()),
            concat!(
                "00000003",
                "00000000",
                "000000000000000169",
                "0000000000000001cc",
                "00",
                "00000000000000016e",
                "000000000000000131",
                "0007",
                "000000000000000173"
            )
        );
    }

    #[test]
    fn session_auth_data_signs_the_version_from_version_2() {
        let v1 = session_auth_data_at(1, "d", Role::Receiver, &[1; 32], &[2; 32], 7);
        assert_eq!(
            v1,
            session_auth_data("d", Role::Receiver, &[1; 32], &[2; 32], 7)
        );
        let v2 = session_auth_data_at(2, "d", Role::Receiver, &[1; 32], &[2; 32], 7);
        assert!(v2.starts_with(b"pgpchat-session-auth-v2\0\0\x02d\0receiver\0"));
        assert_ne!(
            v2,
            session_auth_data_at(3, "d", Role::Receiver, &[1; 32], &[2; 32], 7)
        );
    }

    #[test]
    fn every_frame_round_trips() {
        let frames = vec![
            Frame::Hello {
                version: PROTOCOL_VERSION,
                purpose: Purpose::Discussion {
                    discussion_id: "d".into(),
                    nonce: [3; 32],
                },
            },
            Frame::Sealed(vec![1, 2, 3]),
            Frame::SessionAuth {
                nonce: [9; 32],
                port: 4000,
                signature: vec![4],
            },
            Frame::Chat(vec![5; 100]),
            Frame::Ack {
                upto: u64::MAX,
                signature: vec![],
            },
            Frame::Close { signature: vec![6] },
            Frame::Error {
                reason: "é".into()
            },
            Frame::Hello {
                version: PROTOCOL_VERSION,
                purpose: Purpose::Probe { nonce: [7; 32] },
            },
            Frame::Hello {
                version: PROTOCOL_VERSION,
                purpose: Purpose::Introduced,
            },
            Frame::ProbeAnswer(vec![8; 40]),
            Frame::Control(vec![7; 10]),
        ];
        for f in frames {
            assert_eq!(decode::<Frame>(&encode(&f).unwrap()).unwrap(), f);
        }
        let hs = vec![
            Handshake::Confirm { confirm: [1; 32] },
            Handshake::Ready {
                discussion_id: "x".into(),
                port: 9,
            },
            Handshake::Refused {
                nonce: [0; 32],
                reason: "no".into(),
            },
            Handshake::Failed {
                reason: FailReason::Replay,
            },
        ];
        for h in hs {
            assert_eq!(decode::<Handshake>(&encode(&h).unwrap()).unwrap(), h);
        }
    }
}
