//! What `{:?}` prints in place of a message text, a shared secret, a passphrase or decrypted bytes.
//!
//! Every type that carries one has a hand-written `Debug` that shows [`Hidden`] for that field, so
//! no log line, panic message or test failure can ever quote it (people paste logs into reports).

use std::fmt;

/// Stands for a hidden value: only its length in bytes is shown.
pub struct Hidden(pub usize);

impl Hidden {
    pub fn of(bytes: impl AsRef<[u8]>) -> Self {
        Self(bytes.as_ref().len())
    }
}

impl fmt::Debug for Hidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<hidden, {} bytes>", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_length_shows() {
        assert_eq!(
            format!("{:?}", Hidden::of("purple tulip")),
            "<hidden, 12 bytes>"
        );
    }

    #[test]
    fn texts_and_secrets_never_show_in_debug() {
        const TEXT: &str = "the text of a message";
        let payload = crate::wire::ChatPayload {
            discussion_id: "d".into(),
            seq: 1,
            time: 2,
            recipient: "R".into(),
            body: TEXT.into(),
        };
        let record = crate::store::MessageRecord {
            discussion_id: "d".into(),
            direction: crate::store::Direction::In,
            seq: 1,
            time: 2,
            body: TEXT.into(),
            state: crate::store::DeliveryState::Received,
        };
        let event = crate::events::Event::Message {
            message: record.clone(),
        };
        let request = crate::ipc::parse_request(
            r#"{"jsonrpc":"2.0","id":1,"method":"open","params":{"contact":"bob","password":"the text of a message"}}"#,
        )
        .unwrap();
        let key = crate::crypto::SecretCert::generate("k").unwrap();
        for shown in [
            format!("{payload:?}"),
            format!("{record:?}"),
            format!("{event:?}"),
            format!("{request:?}"),
        ] {
            assert!(!shown.contains(TEXT), "{shown}");
            assert!(shown.contains("<hidden"), "{shown}");
        }
        assert_eq!(
            format!("{key:?}"),
            format!(
                "SecretCert {{ fingerprint: {:?}, .. }}",
                key.public().fingerprint()
            )
        );
    }
}
