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
use crate::crypto::{verify_detached, CryptoError, PublicCert, SecretCert};
use crate::net::crypto::run_caught;

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

/// A discussion key with a new encryption subkey ([`KeysHandle::add_discussion_subkey`]).
pub struct NewSubkey {
    pub key: SecretCert,
    pub key_id: String,
    /// `key` sealed for our own store ([`at_rest`]).
    pub sealed: Vec<u8>,
    /// The public certificate with only the new subkey, for the peer.
    pub announcement: Vec<u8>,
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
        run_caught(&self.identity, msg.0)
    }
}

/// Typed access to the key manager; cheap to clone. The protocol layer uses it through
/// [`net::Crypto`](crate::net::Crypto) (sealing, signing, discussion keys); the methods here are
/// what only the node's actors need.
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
            .map_err(|_| CryptoError::WorkerUnavailable)?
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

    /// Open a discussion key sealed by [`Self::new_discussion_key`].
    pub async fn unseal_discussion_key(&self, sealed: Vec<u8>) -> Result<SecretCert, CryptoError> {
        self.run(move |id| {
            let bytes = at_rest::open(id, Sealed::DiscussionKey, &sealed)?;
            SecretCert::unlock(&bytes, None)
        })
        .await
    }

    /// A rotation's first step (issue 14): `key` with a fresh encryption subkey (created at `now`
    /// backdated by the allowed clock skew), that key sealed for our store, and the subkey's
    /// announcement for the peer.
    pub async fn add_discussion_subkey(
        &self,
        key: Arc<SecretCert>,
        now: u64,
    ) -> Result<NewSubkey, CryptoError> {
        self.run(move |id| {
            let mut key = (*key).clone();
            let skew = crate::handshake::MAX_CLOCK_SKEW.as_secs();
            let key_id = key.add_encryption_subkey(now, skew)?;
            let announcement = key.announcement(&key_id)?;
            let plain = zeroize::Zeroizing::new(key.to_protected_bytes(None)?);
            let sealed = at_rest::seal(id, Sealed::DiscussionKey, &plain)?;
            Ok(NewSubkey {
                key,
                key_id,
                sealed,
                announcement,
            })
        })
        .await
    }

    /// A rotation's last step: `key` without subkey `key_id`, and sealed for our store.
    pub async fn drop_discussion_subkey(
        &self,
        key: Arc<SecretCert>,
        key_id: String,
    ) -> Result<(SecretCert, Vec<u8>), CryptoError> {
        self.run(move |id| {
            let key = key.without_subkey(&key_id)?;
            let plain = zeroize::Zeroizing::new(key.to_protected_bytes(None)?);
            let sealed = at_rest::seal(id, Sealed::DiscussionKey, &plain)?;
            Ok((key, sealed))
        })
        .await
    }

    /// Check the peer's announcement of its new subkey against its certificate `peer`.
    pub async fn check_announcement(
        &self,
        peer: PublicCert,
        cert: Vec<u8>,
        key_id: String,
        now: u64,
    ) -> Result<PublicCert, CryptoError> {
        self.run(move |_| {
            let skew = crate::handshake::MAX_CLOCK_SKEW.as_secs();
            peer.rotated(&cert, &key_id, now, skew)
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
}

impl crate::net::Crypto for KeysHandle {
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce(&SecretCert) -> Result<R, CryptoError> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<R, CryptoError>> + Send {
        KeysHandle::run(self, job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Crypto as _;

    #[actix_rt::test]
    async fn a_panicking_job_costs_only_itself() {
        let keys = KeyManager::start(SecretCert::generate("t").unwrap(), 1);
        let r: Result<(), _> = keys.run(|_| panic!("hostile packet")).await;
        assert!(matches!(r, Err(CryptoError::Malformed(m)) if m.contains("hostile packet")));
        // The single worker is still alive.
        assert!(keys.sign(b"x".to_vec()).await.is_ok());
    }
}
