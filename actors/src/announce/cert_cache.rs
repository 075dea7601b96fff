//! Certificates already checked, so that an announce heard again (every interval, from every
//! node) costs one signature check instead of three: a certificate's own binding signatures and
//! policy are the same each time its exact bytes come back.
//!
//! Keyed by the SHA-256 of the certificate's bytes (which determine its fingerprint): a changed
//! certificate, even of the same key, is checked again. Only certificates that passed
//! [`PublicCert::from_bytes`] are kept; the announce's own signature (over a fresh nonce and time)
//! is always checked. Bounded in all ([`CERT_CACHE_ENTRIES`], oldest out first), per fingerprint
//! ([`CERT_CACHE_PER_FINGERPRINT`], so one key minting certificates cannot push the others out),
//! and in age ([`CERT_CACHE_TTL`], so a check that depends on the time is made again).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::crypto::{CryptoError, PublicCert};

/// Checked certificates kept by one node's discovery (about 1 KiB each with their parsed form).
pub const CERT_CACHE_ENTRIES: usize = 4096;
/// Certificates kept for one fingerprint (its current one and the one before).
pub const CERT_CACHE_PER_FINGERPRINT: usize = 2;
/// How long a checked certificate is trusted without checking it again.
pub const CERT_CACHE_TTL: Duration = Duration::from_secs(3600);

type Key = [u8; 32];

struct Entry {
    cert: PublicCert,
    checked: Instant,
}

/// See the module documentation. Shared between the discovery actor and the crypto workers that
/// check its announces ([`SharedCertCache`]); each use holds the lock for a few map operations.
#[derive(Default)]
pub struct CertCache {
    entries: HashMap<Key, Entry>,
    /// Insertion order, oldest first (a key may be stale: already removed).
    order: VecDeque<Key>,
    by_fingerprint: HashMap<String, VecDeque<Key>>,
}

/// A node's cache, shared with the closures its crypto workers run.
pub type SharedCertCache = Arc<Mutex<CertCache>>;

impl CertCache {
    pub fn shared() -> SharedCertCache {
        Arc::new(Mutex::new(Self::default()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn get(&mut self, key: &Key, now: Instant) -> Option<PublicCert> {
        match self.entries.get(key) {
            Some(e) if now.duration_since(e.checked) < CERT_CACHE_TTL => Some(e.cert.clone()),
            Some(_) => {
                self.remove(key);
                None
            }
            None => None,
        }
    }

    fn remove(&mut self, key: &Key) {
        if let Some(e) = self.entries.remove(key) {
            let fpr = e.cert.fingerprint().to_string();
            if let Some(keys) = self.by_fingerprint.get_mut(&fpr) {
                keys.retain(|k| k != key);
                if keys.is_empty() {
                    self.by_fingerprint.remove(&fpr);
                }
            }
        }
    }

    fn insert(&mut self, key: Key, cert: PublicCert, now: Instant) {
        if self.entries.contains_key(&key) {
            return;
        }
        let fpr = cert.fingerprint().to_string();
        let same_key = self.by_fingerprint.get(&fpr).map_or(0, VecDeque::len);
        if same_key >= CERT_CACHE_PER_FINGERPRINT {
            if let Some(oldest) = self
                .by_fingerprint
                .get(&fpr)
                .and_then(|k| k.front().copied())
            {
                self.remove(&oldest);
            }
        }
        while self.entries.len() >= CERT_CACHE_ENTRIES {
            match self.order.pop_front() {
                Some(oldest) => self.remove(&oldest),
                None => break,
            }
        }
        // Stale keys in `order` (removed by TTL or per fingerprint) are skipped above; drop them
        // when they pile up so `order` stays bounded too.
        if self.order.len() >= 2 * CERT_CACHE_ENTRIES {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
        self.order.push_back(key);
        self.by_fingerprint.entry(fpr).or_default().push_back(key);
        self.entries.insert(key, Entry { cert, checked: now });
    }
}

/// The checked certificate of `bytes`: from `cache` if these exact bytes passed `check` within
/// [`CERT_CACHE_TTL`], else from `check` (kept only if it passes). Runs on a crypto worker; the
/// lock is not held while checking.
pub fn checked_cert(
    cache: &SharedCertCache,
    bytes: &[u8],
    check: impl FnOnce(&[u8]) -> Result<PublicCert, CryptoError>,
) -> Result<PublicCert, CryptoError> {
    let key: Key = Sha256::digest(bytes).into();
    let now = Instant::now();
    if let Some(cert) = lock(cache).get(&key, now) {
        return Ok(cert);
    }
    let cert = check(bytes)?;
    lock(cache).insert(key, cert.clone(), now);
    Ok(cert)
}

/// A poisoned lock (a worker panicked mid-update) still holds a usable map: entries are only ever
/// certificates that passed their check.
fn lock(cache: &SharedCertCache) -> std::sync::MutexGuard<'_, CertCache> {
    cache.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretCert;
    use std::cell::Cell;

    fn counted<'a>(
        calls: &'a Cell<usize>,
    ) -> impl Fn(&[u8]) -> Result<PublicCert, CryptoError> + 'a {
        move |b| {
            calls.set(calls.get() + 1);
            PublicCert::from_bytes(b)
        }
    }

    #[test]
    fn the_same_certificate_is_checked_once_and_a_changed_one_again() {
        let cache = CertCache::shared();
        let calls = Cell::new(0);
        let key = SecretCert::generate("alice").unwrap();
        let bytes = key.public().to_bytes();
        let first = checked_cert(&cache, &bytes, counted(&calls)).unwrap();
        let second = checked_cert(&cache, &bytes, counted(&calls)).unwrap();
        assert_eq!(
            calls.get(),
            1,
            "the second identical certificate is not checked again"
        );
        assert_eq!(first.fingerprint(), second.fingerprint());

        // Another certificate (another key): checked.
        let other = SecretCert::generate("alice").unwrap().public().to_bytes();
        checked_cert(&cache, &other, counted(&calls)).unwrap();
        assert_eq!(calls.get(), 2);

        // The same key's certificate with one byte changed: not a hit; it fails its check and is
        // not kept, so it is checked (and refused) every time.
        let mut changed = bytes.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        assert!(checked_cert(&cache, &changed, counted(&calls)).is_err());
        assert!(checked_cert(&cache, &changed, counted(&calls)).is_err());
        assert_eq!(calls.get(), 4);
        assert_eq!(cache.lock().unwrap().len(), 2);
    }

    #[test]
    fn one_fingerprint_keeps_a_bounded_number_of_certificates() {
        // Certificates of one key differing in bytes (here: armored and binary of the same key,
        // and the binary one again) count against that key's share.
        let cache = CertCache::shared();
        let key = SecretCert::generate("alice").unwrap();
        let binary = key.public().to_bytes();
        let armored = key.public().to_armored().unwrap().into_bytes();
        let calls = Cell::new(0);
        checked_cert(&cache, &binary, counted(&calls)).unwrap();
        checked_cert(&cache, &armored, counted(&calls)).unwrap();
        assert_eq!(cache.lock().unwrap().len(), CERT_CACHE_PER_FINGERPRINT);
        let mut spaced = armored.clone();
        spaced.push(b'\n');
        checked_cert(&cache, &spaced, counted(&calls)).unwrap();
        let c = cache.lock().unwrap();
        assert_eq!(
            c.len(),
            CERT_CACHE_PER_FINGERPRINT,
            "the oldest of that key went"
        );
        assert_eq!(c.by_fingerprint.len(), 1);
        assert_eq!(calls.get(), 3);
    }
}
