//! The crypto a protocol step needs, as a trait: the protocol layer ([`crate::net`] and the
//! handshake drivers) takes any [`Crypto`], not an actor address, so every path of it runs in a
//! unit test over an in-memory pipe.
//!
//! Two implementations: [`KeysHandle`](crate::keys::KeysHandle), which runs each job on the key
//! manager's workers (the node: no crypto on an event loop), and [`LocalCrypto`], which runs it
//! inline on the caller's thread (tests and tools that have no actor system; it blocks the caller
//! for the length of one OpenPGP operation, so an actor must never use it).

use std::future::Future;
use std::sync::Arc;

use crate::at_rest::{self, Sealed};
use crate::crypto::{verify_detached, CryptoError, Decrypted, PublicCert, SecretCert};

/// OpenPGP work with the node's identity key, wherever it runs. Implementors provide [`Self::run`]
/// (and who we are); every other operation is written once here on top of it.
pub trait Crypto: Clone + Send + Sync + 'static {
    /// Our identity's fingerprint.
    fn fingerprint(&self) -> &str;

    /// Our display name (the identity's user id).
    fn name(&self) -> &str;

    /// Run `job` with the identity key. A panic inside it must come back as an error, not take
    /// the caller (or a worker) down: the OpenPGP library has had such bugs on hostile packets.
    fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce(&SecretCert) -> Result<R, CryptoError> + Send + 'static,
    ) -> impl Future<Output = Result<R, CryptoError>> + Send;

    /// Detached signature by the identity key.
    fn sign(&self, data: Vec<u8>) -> impl Future<Output = Result<Vec<u8>, CryptoError>> + Send {
        self.run(move |id| id.sign_detached(&data))
    }

    /// Signed by the identity, encrypted to `to`'s identity (handshake frames).
    fn seal(
        &self,
        to: PublicCert,
        plaintext: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, CryptoError>> + Send {
        self.run(move |id| id.sign_and_encrypt(&to, &plaintext))
    }

    /// Decrypt a sealed frame; the caller checks the signature against the expected sender.
    fn unseal(
        &self,
        message: Vec<u8>,
    ) -> impl Future<Output = Result<Decrypted, CryptoError>> + Send {
        self.run(move |id| id.decrypt_unverified(&message))
    }

    /// Parse and check a certificate (off the event loop for [`KeysHandle`](crate::keys::KeysHandle)).
    fn parse_cert(
        &self,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<PublicCert, CryptoError>> + Send {
        self.run(move |_| PublicCert::from_bytes(&bytes))
    }

    /// A fresh discussion key pair, and its secret sealed for our own store ([`at_rest`]).
    fn new_discussion_key(
        &self,
        label: String,
    ) -> impl Future<Output = Result<(SecretCert, Vec<u8>), CryptoError>> + Send {
        self.run(move |id| {
            let key = SecretCert::generate(&label)?;
            let plain = zeroize::Zeroizing::new(key.to_protected_bytes(None)?);
            let sealed = at_rest::seal(id, Sealed::DiscussionKey, &plain)?;
            Ok((key, sealed))
        })
    }

    /// Detached signature by another key we hold (a discussion key).
    fn sign_with(
        &self,
        key: Arc<SecretCert>,
        data: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, CryptoError>> + Send {
        self.run(move |_| key.sign_detached(&data))
    }

    /// Check `signer`'s detached signature over `data`.
    fn verify_detached(
        &self,
        signer: PublicCert,
        data: Vec<u8>,
        signature: Vec<u8>,
    ) -> impl Future<Output = Result<(), CryptoError>> + Send {
        self.run(move |_| verify_detached(&signer, &data, &signature))
    }
}

/// [`Crypto`] on the caller's thread, for tests and tools without an actor system. Catches panics
/// like the key manager does.
#[derive(Clone)]
pub struct LocalCrypto {
    identity: Arc<SecretCert>,
    name: Arc<str>,
}

impl LocalCrypto {
    pub fn new(identity: SecretCert) -> Self {
        let name = Arc::from(identity.public().user_id());
        Self {
            identity: Arc::new(identity),
            name,
        }
    }

    pub fn public(&self) -> &PublicCert {
        self.identity.public()
    }
}

impl Crypto for LocalCrypto {
    fn fingerprint(&self) -> &str {
        self.identity.fingerprint()
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce(&SecretCert) -> Result<R, CryptoError> + Send + 'static,
    ) -> impl Future<Output = Result<R, CryptoError>> + Send {
        let result = run_caught(&self.identity, job);
        std::future::ready(result)
    }
}

/// Run `job` with `identity`, a panic inside it becoming [`CryptoError::Malformed`] (with the
/// panic's text, which comes from the library's code, never from the input).
pub(crate) fn run_caught<R>(
    identity: &SecretCert,
    job: impl FnOnce(&SecretCert) -> Result<R, CryptoError>,
) -> Result<R, CryptoError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || job(identity))).unwrap_or_else(
        |p| {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            log::error!(
                "[{}] OpenPGP operation panicked (input dropped): {what}",
                identity.public().user_id()
            );
            Err(CryptoError::Malformed(format!(
                "the OpenPGP library panicked: {what}"
            )))
        },
    )
}
