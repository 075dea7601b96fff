//! Who may hold a listener's resources before proving anything: connection slots and crypto time.
//!
//! [`ConnectionPool`] bounds the connections of a listener (the main one, or a discussion's own) in
//! all and per source address. When it is full, a newcomer evicts the oldest *unverified*
//! connection of the address that holds the most unverified ones; a connection marked verified (it
//! sent a frame whose signature checked, e.g. a request now waiting for the user) is never evicted.
//! So silent connections cannot keep an honest peer out: an attacker with fewer addresses than the
//! pool has slots minus one always holds some address twice, and that address pays for newcomers.
//!
//! [`DecryptBudget`] bounds the OpenPGP work that unauthenticated peers can cause: per source
//! address (a token bucket of decryption attempts) and in all (one unauthenticated decryption at a
//! time, so the other crypto workers stay free for discussions that already exist).
//!
//! Both are shared by the tasks that serve connections (`Clone` shares the state); their critical
//! sections are a few map operations, so a plain mutex is enough.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// Unauthenticated decryptions allowed from one address in a burst.
pub const DECRYPT_BURST_PER_ADDRESS: f64 = 8.0;
/// Unauthenticated decryptions allowed from one address per second, after the burst.
pub const DECRYPT_RATE_PER_ADDRESS: f64 = 1.0;
/// Unauthenticated decryptions running at once, whatever their source.
pub const CONCURRENT_UNAUTHENTICATED_DECRYPTS: usize = 1;
/// Addresses the decryption budget remembers; the one that spent longest ago goes first.
pub const DECRYPT_BUDGET_ADDRESSES: usize = 4096;

struct Entry {
    address: IpAddr,
    opened: Instant,
    verified: bool,
    evict: Option<oneshot::Sender<()>>,
}

struct PoolState {
    entries: HashMap<u64, Entry>,
    next: u64,
    capacity: usize,
    per_address: usize,
}

/// The connections of one listener: see the module documentation.
#[derive(Clone)]
pub struct ConnectionPool(Arc<Mutex<PoolState>>);

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address already holds its share of the pool.
    AddressFull,
    /// The pool is full of verified connections.
    Full,
}

/// A connection's place in the pool, released when dropped. `evicted` resolves when a newcomer
/// took the place while the connection was still unverified: its task must then end.
pub struct Slot {
    pool: ConnectionPool,
    id: u64,
    pub evicted: oneshot::Receiver<()>,
}

impl Slot {
    /// Take the eviction signal, to wait on while the slot is used elsewhere.
    pub fn watch_eviction(&mut self) -> oneshot::Receiver<()> {
        std::mem::replace(&mut self.evicted, oneshot::channel().1)
    }

    /// The connection sent a verified frame: it can no longer be evicted.
    pub fn verified(&self) {
        if let Some(e) = self.pool.lock().entries.get_mut(&self.id) {
            e.verified = true;
            e.evict = None;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pool.lock().entries.remove(&self.id);
    }
}

impl ConnectionPool {
    /// At most `capacity` connections, at most `per_address` of them from one address.
    pub fn new(capacity: usize, per_address: usize) -> Self {
        Self(Arc::new(Mutex::new(PoolState {
            entries: HashMap::new(),
            next: 0,
            capacity: capacity.max(1),
            per_address: per_address.max(1),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A panic while holding this lock cannot leave the map half-changed: recover the state.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admit a connection from `address`, evicting an unverified one if the pool is full.
    pub fn admit(&self, address: IpAddr, now: Instant) -> Result<Slot, Refusal> {
        let mut s = self.lock();
        let from_address = s.entries.values().filter(|e| e.address == address).count();
        if from_address >= s.per_address {
            return Err(Refusal::AddressFull);
        }
        if s.entries.len() >= s.capacity {
            let victim = s.victim().ok_or(Refusal::Full)?;
            if let Some(e) = s.entries.remove(&victim) {
                if let Some(tx) = e.evict {
                    let _ = tx.send(());
                }
            }
        }
        let id = s.next;
        s.next += 1;
        let (tx, rx) = oneshot::channel();
        s.entries.insert(
            id,
            Entry {
                address,
                opened: now,
                verified: false,
                evict: Some(tx),
            },
        );
        drop(s);
        Ok(Slot {
            pool: self.clone(),
            id,
            evicted: rx,
        })
    }

    /// Connections held now (verified or not).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PoolState {
    /// The oldest unverified connection of the address with the most unverified connections.
    fn victim(&self) -> Option<u64> {
        let mut per_address: HashMap<IpAddr, usize> = HashMap::new();
        for e in self.entries.values().filter(|e| !e.verified) {
            *per_address.entry(e.address).or_default() += 1;
        }
        self.entries
            .iter()
            .filter(|(_, e)| !e.verified)
            .max_by_key(|(id, e)| {
                // Most connections first, then the oldest (smallest time, then smallest id).
                (
                    per_address[&e.address],
                    std::cmp::Reverse(e.opened),
                    std::cmp::Reverse(**id),
                )
            })
            .map(|(id, _)| *id)
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Crypto time for unauthenticated input: see the module documentation.
#[derive(Clone)]
pub struct DecryptBudget {
    buckets: Arc<Mutex<HashMap<IpAddr, Bucket>>>,
    running: Arc<Semaphore>,
}

impl Default for DecryptBudget {
    fn default() -> Self {
        Self {
            buckets: Arc::default(),
            running: Arc::new(Semaphore::new(CONCURRENT_UNAUTHENTICATED_DECRYPTS)),
        }
    }
}

impl DecryptBudget {
    /// Take one decryption from `address`'s budget: false when it is spent.
    pub fn spend(&self, address: IpAddr, now: Instant) -> bool {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !b.contains_key(&address) && b.len() >= DECRYPT_BUDGET_ADDRESSES {
            // Full buckets cost nothing to forget; else the address that spent longest ago.
            b.retain(|_, k| refill(k, now) < DECRYPT_BURST_PER_ADDRESS);
            if b.len() >= DECRYPT_BUDGET_ADDRESSES {
                if let Some(oldest) = b.iter().min_by_key(|(_, k)| k.at).map(|(a, _)| *a) {
                    b.remove(&oldest);
                }
            }
        }
        let k = b.entry(address).or_insert(Bucket {
            tokens: DECRYPT_BURST_PER_ADDRESS,
            at: now,
        });
        let tokens = refill(k, now);
        if tokens < 1.0 {
            return false;
        }
        k.tokens = tokens - 1.0;
        k.at = now;
        true
    }

    /// Wait for the right to run one unauthenticated decryption (held until the permit drops).
    pub async fn run_permit(&self) -> OwnedSemaphorePermit {
        self.running
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }
}

fn refill(k: &Bucket, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(k.at).as_secs_f64();
    (k.tokens + elapsed * DECRYPT_RATE_PER_ADDRESS).min(DECRYPT_BURST_PER_ADDRESS)
}

/// How long a connection may take to send its first frame (and, on the main listener, its first
/// sealed one). Short, because it is what a silent connection costs; never longer than a
/// handshake step.
pub fn first_frame_deadline(settings: &crate::settings::Settings) -> Duration {
    let l = &settings.limits;
    Duration::from_secs(l.first_frame_timeout_secs.min(l.handshake_timeout_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn per_address_cap_and_eviction_of_the_most_represented_address() {
        let pool = ConnectionPool::new(4, 3);
        let t = Instant::now();
        let mut a: Vec<Slot> = (0..3).map(|_| pool.admit(ip(2), t).unwrap()).collect();
        assert_eq!(pool.admit(ip(2), t).err(), Some(Refusal::AddressFull));
        let b = pool.admit(ip(3), t).unwrap();
        // Full: the honest newcomer evicts the oldest connection of the address holding three.
        let mut honest = pool.admit(ip(1), t).unwrap();
        assert!(a[0].evicted.try_recv().is_ok());
        assert!(a[1].evicted.try_recv().is_err());
        assert_eq!(pool.len(), 4);
        a.remove(0);
        assert_eq!(pool.len(), 4, "an evicted slot is already free");
        // The attacker keeps renewing: it only ever evicts its own connections.
        for _ in 0..10 {
            let _renewed = pool.admit(ip(3), t).unwrap();
            assert!(honest.evicted.try_recv().is_err());
        }
        drop(b);
        assert!(honest.evicted.try_recv().is_err());
    }

    #[test]
    fn verified_connections_are_never_evicted() {
        let pool = ConnectionPool::new(2, 2);
        let t = Instant::now();
        let mut v1 = pool.admit(ip(1), t).unwrap();
        let mut v2 = pool.admit(ip(1), t).unwrap();
        v1.verified();
        v2.verified();
        assert_eq!(pool.admit(ip(2), t).err(), Some(Refusal::Full));
        assert!(v1.evicted.try_recv().is_err() && v2.evicted.try_recv().is_err());
        drop(v1);
        assert!(pool.admit(ip(2), t).is_ok());
    }

    #[test]
    fn decrypt_budget_refills_per_address() {
        let budget = DecryptBudget::default();
        let t = Instant::now();
        for _ in 0..DECRYPT_BURST_PER_ADDRESS as usize {
            assert!(budget.spend(ip(2), t));
        }
        assert!(!budget.spend(ip(2), t));
        assert!(budget.spend(ip(3), t), "another address has its own budget");
        assert!(budget.spend(ip(2), t + Duration::from_secs(1)));
        assert!(!budget.spend(ip(2), t + Duration::from_secs(1)));
    }
}
