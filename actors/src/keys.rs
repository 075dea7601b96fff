//! Key manager actor: owns the unlocked identity key and runs every OpenPGP operation on its own
//! worker threads (a `SyncArbiter`), so no actor's event loop ever does crypto.
//!
//! Messages: [`Crypto`] (a closure given the identity key). [`KeysHandle`] wraps it in typed
//! methods: sealing and opening handshake frames, signing announces, making and unsealing discussion
//! keys (sealed for our own store, apart from handshake frames: [`at_rest`]), and chat encryption
//! with discussion keys. Lifecycle: started by the node with the identity unlocked once (a locked key
//! would cost an S2K derivation, ~20 ms, per operation), stopped with it.

use std::sync::Arc;

use actix::prelude::*;

use crate::at_rest::{self, Sealed};
use crate::crypto::{verify_detached, CryptoError, Decrypted, PublicCert, SecretCert};

pub struct KeyManager {
    identity: Arc<SecretCert>,
}

impl Actor for KeyManager {
    type Context = SyncContext<Self>;
}

impl KeyManager {
    /// Start `threads` workers sharing the identity.
    pub fn start(identity: SecretCert, threads: usize) -> KeysHandle {
        let identity = Arc::new(identity);
        let fingerprint: Arc<str> = identity.fingerprint().into();
        let public = identity.public().clone();
        let id = identity.clone();
        let addr = SyncArbiter::start(threads, move || KeyManager {
            identity: id.clone(),
        });
        KeysHandle {
            addr,
            fingerprint,
            public: Arc::new(public),
            name: Arc::from(identity.public().user_id()),
        }
    }
}

/// Run a closure with the identity key on a crypto worker.
pub struct Crypto<R: Send + 'static>(
    #[allow(clippy::type_complexity)]
    pub  Box<dyn FnOnce(&SecretCert) -> Result<R, CryptoError> + Send>,
);

impl<R: Send + 'static> Message for Crypto<R> {
    type Result = Result<R, CryptoError>;
}

impl<R: Send + 'static> Handler<Crypto<R>> for KeyManager {
    type Result = Result<R, CryptoError>;
    /// A panic inside the OpenPGP library on a hostile packet (it has had such bugs) costs that one
    /// operation, not the worker thread: it becomes an error.
    fn handle(&mut self, msg: Crypto<R>, _: &mut SyncContext<Self>) -> Self::Result {
        let identity = &self.identity;
        let job = msg.0;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || job(identity)))
            .unwrap_or_else(|p| {
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
            })
    }
}

/// Typed access to the key manager; cheap to clone.
#[derive(Clone)]
pub struct KeysHandle {
    addr: Addr<KeyManager>,
    fingerprint: Arc<str>,
    public: Arc<PublicCert>,
    name: Arc<str>,
}

impl KeysHandle {
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn public(&self) -> &PublicCert {
        &self.public
    }

    /// The display name (the identity's user id).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run `f` on a crypto worker. A panic in `f` is caught and reported as an error.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&SecretCert) -> Result<R, CryptoError> + Send + 'static,
    ) -> Result<R, CryptoError> {
        self.addr
            .send(Crypto(Box::new(f)))
            .await
            .map_err(|_| CryptoError::Pgp("key manager unavailable".into()))?
    }

    /// Detached signature by the identity key.
    pub async fn sign(&self, data: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
        self.run(move |id| id.sign_detached(&data)).await
    }

    /// Signed by the identity, encrypted to `to`'s identity (handshake frames).
    pub async fn seal(&self, to: PublicCert, plaintext: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
        self.run(move |id| id.sign_and_encrypt(&to, &plaintext))
            .await
    }

    /// Decrypt a sealed frame; the caller checks the signature against the expected sender.
    pub async fn unseal(&self, message: Vec<u8>) -> Result<Decrypted, CryptoError> {
        self.run(move |id| id.decrypt_unverified(&message)).await
    }

    /// Parse and check a certificate off the event loop.
    pub async fn parse_cert(&self, bytes: Vec<u8>) -> Result<PublicCert, CryptoError> {
        self.run(move |_| PublicCert::from_bytes(&bytes)).await
    }

    /// Check a certificate and a detached signature it made over `data` (announces).
    pub async fn verify_with_cert(
        &self,
        cert: Vec<u8>,
        data: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<PublicCert, CryptoError> {
        self.run(move |_| {
            let cert = PublicCert::from_bytes(&cert)?;
            verify_detached(&cert, &data, &signature)?;
            Ok(cert)
        })
        .await
    }

    /// A fresh discussion key pair, and its secret sealed for our own store ([`at_rest`]).
    pub async fn new_discussion_key(
        &self,
        label: String,
    ) -> Result<(SecretCert, Vec<u8>), CryptoError> {
        self.run(move |id| {
            let key = SecretCert::generate(&label)?;
            let plain = zeroize::Zeroizing::new(key.to_protected_bytes(None)?);
            let sealed = at_rest::seal(id, Sealed::DiscussionKey, &plain)?;
            Ok((key, sealed))
        })
        .await
    }

    /// Open a discussion key sealed by [`Self::new_discussion_key`].
    pub async fn unseal_discussion_key(&self, sealed: Vec<u8>) -> Result<SecretCert, CryptoError> {
        self.run(move |id| {
            let bytes = at_rest::open(id, Sealed::DiscussionKey, &sealed)?;
            SecretCert::unlock(&bytes, None)
        })
        .await
    }

    /// Convert a blob sealed for ourselves before issue 8 ([`at_rest::convert_legacy`]).
    pub async fn convert_legacy(
        &self,
        what: Sealed,
        sealed: Vec<u8>,
    ) -> Result<Vec<u8>, CryptoError> {
        self.run(move |id| at_rest::convert_legacy(id, what, &sealed))
            .await
    }

    /// Chat encryption with discussion keys.
    pub async fn encrypt_with(
        &self,
        key: Arc<SecretCert>,
        to: PublicCert,
        plaintext: Vec<u8>,
    ) -> Result<Vec<u8>, CryptoError> {
        self.run(move |_| key.sign_and_encrypt(&to, &plaintext))
            .await
    }

    pub async fn decrypt_with(
        &self,
        key: Arc<SecretCert>,
        from: PublicCert,
        message: Vec<u8>,
    ) -> Result<Vec<u8>, CryptoError> {
        self.run(move |_| key.decrypt_and_verify(&message, &from))
            .await
    }

    pub async fn sign_with(
        &self,
        key: Arc<SecretCert>,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, CryptoError> {
        self.run(move |_| key.sign_detached(&data)).await
    }

    pub async fn verify_detached(
        &self,
        signer: PublicCert,
        data: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<(), CryptoError> {
        self.run(move |_| verify_detached(&signer, &data, &signature))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn a_panicking_job_costs_only_itself() {
        let keys = KeyManager::start(SecretCert::generate("t").unwrap(), 1);
        let r: Result<(), _> = keys.run(|_| panic!("hostile packet")).await;
        assert!(matches!(r, Err(CryptoError::Malformed(m)) if m.contains("hostile packet")));
        // The single worker is still alive.
        assert!(keys.sign(b"x".to_vec()).await.is_ok());
    }
}
