//! The table of connected front-ends (bounded by `limits.ipc_max_clients`) and what it knows of each:
//! whether it is idle (no subscription, nothing in flight) and since when, so the longest-idle one can
//! be closed to make room, and a way to tell its connection to close.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

/// The connected front-ends, bounded by `limits.ipc_max_clients`.
#[derive(Default)]
pub(super) struct ClientTable {
    next_id: u64,
    slots: HashMap<u64, Arc<ClientSlot>>,
}

impl ClientTable {
    /// Make a place for a new client, at most `max` in all. When full, the longest-idle client
    /// makes room (it is told to close; it can reconnect); a subscribed or waiting one is never
    /// chosen, so when every client is busy the newcomer is refused (None).
    pub(super) fn admit(&mut self, max: usize) -> Option<(u64, Arc<ClientSlot>)> {
        if self.slots.len() >= max {
            let oldest = self
                .slots
                .iter()
                .filter_map(|(id, c)| c.idle_since().map(|t| (t, *id)))
                .min()?;
            if let Some(evicted) = self.slots.remove(&oldest.1) {
                evicted.evict.notify_one();
            }
        }
        self.next_id += 1;
        let slot = Arc::new(ClientSlot::new());
        self.slots.insert(self.next_id, slot.clone());
        Some((self.next_id, slot))
    }

    /// A client's connection ended (evicted ones are gone already).
    pub(super) fn remove(&mut self, id: u64) {
        self.slots.remove(&id);
    }
}

/// One connected front-end, as the table sees it: whether it is idle, and a way to close it.
pub(super) struct ClientSlot {
    activity: Mutex<Activity>,
    /// Wakes the client's reader to close the connection (evicted for a newcomer).
    pub(super) evict: Notify,
}

pub(super) struct Activity {
    pub(super) in_flight: usize,
    pub(super) subscribed: bool,
    /// Since when the client has been idle (no subscription, nothing in flight, no line read);
    /// `None` while it is busy.
    idle_since: Option<Instant>,
}

impl ClientSlot {
    fn new() -> Self {
        Self {
            activity: Mutex::new(Activity {
                in_flight: 0,
                subscribed: false,
                idle_since: Some(Instant::now()),
            }),
            evict: Notify::new(),
        }
    }

    /// Apply `f` and restart the idle clock: every change is activity.
    pub(super) fn update(&self, f: impl FnOnce(&mut Activity)) {
        let mut a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut a);
        a.idle_since = (a.in_flight == 0 && !a.subscribed).then(Instant::now);
    }

    pub(super) fn idle_since(&self) -> Option<Instant> {
        self.activity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .idle_since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_evicts_the_longest_idle_client_and_never_a_busy_one() {
        let mut t = ClientTable::default();
        let (first, a) = t.admit(2).unwrap();
        let (_, b) = t.admit(2).unwrap();
        // b subscribes: never evicted. a is idle: it makes room, and is told to close.
        b.update(|s| s.subscribed = true);
        let (_, c) = t.admit(2).unwrap();
        assert!(!t.slots.contains_key(&first));
        assert!(futures::FutureExt::now_or_never(a.evict.notified()).is_some());
        // Now b is subscribed and c waits for an answer: a newcomer is refused.
        c.update(|s| s.in_flight += 1);
        assert!(t.admit(2).is_none());
        c.update(|s| s.in_flight -= 1);
        assert!(t.admit(2).is_some());
    }
}
