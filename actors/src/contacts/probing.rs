//! When a contact added by address is probed again: plain code over the contacts' probe states
//! and a clock, so the schedule is tested without sockets or time.
//!
//! A contact the user added by address ([`ProbeState`] set) that broadcast has not reached for
//! [`UNHEARD_INTERVALS`] announce intervals is probed at the announce interval. A probe without an
//! answer doubles the wait before the next one (up to [`MAX_PROBE_BACKOFF_SECS`]); an answer brings
//! it back to one interval. At most [`MAX_PROBED_ADDRESSES`] contacts carry an address to probe, and
//! at most that many probes leave per interval.

use std::collections::HashMap;

use crate::store::{ContactRecord, ProbeState};

/// Contacts added by address (and so re-probed) at most; `add-contact` beyond it is refused.
pub const MAX_PROBED_ADDRESSES: usize = 64;
/// Longest wait between two probes of a silent contact.
pub const MAX_PROBE_BACKOFF_SECS: u64 = 3600;
/// A contact heard by broadcast within this many announce intervals is not probed.
pub const UNHEARD_INTERVALS: u64 = 2;

/// The contacts to probe now, soonest due first, at most [`MAX_PROBED_ADDRESSES`]: `(fingerprint,
/// HOST:PORT)`. `heard` is when each contact was last heard by broadcast.
pub fn due<'a>(
    contacts: impl Iterator<Item = &'a ContactRecord>,
    heard: &HashMap<String, u64>,
    now: u64,
    interval_secs: u64,
) -> Vec<(String, String)> {
    let mut due: Vec<(&ContactRecord, &ProbeState)> = contacts
        .filter_map(|c| c.probe.as_ref().map(|p| (c, p)))
        .filter(|(_, p)| p.next <= now)
        .filter(|(c, _)| {
            heard
                .get(&c.fingerprint)
                .is_none_or(|&t| now.saturating_sub(t) >= UNHEARD_INTERVALS * interval_secs)
        })
        .collect();
    due.sort_by_key(|(c, p)| (p.next, c.fingerprint.clone()));
    due.into_iter()
        .take(MAX_PROBED_ADDRESSES)
        .map(|(c, p)| (c.fingerprint.clone(), p.address.clone()))
        .collect()
}

/// The probe state after a probe at `now`: answered or not.
pub fn after_probe(p: &ProbeState, answered: bool, now: u64, interval_secs: u64) -> ProbeState {
    let failures = if answered {
        0
    } else {
        p.failures.saturating_add(1)
    };
    ProbeState {
        address: p.address.clone(),
        failures,
        next: now + wait_secs(failures, interval_secs),
    }
}

/// Wait after `failures` probes without an answer in a row: one interval (after an answer, or
/// the first silence), doubled for each further silence, capped.
pub fn wait_secs(failures: u32, interval_secs: u64) -> u64 {
    let factor = 1u64 << failures.saturating_sub(1).min(20);
    interval_secs
        .saturating_mul(factor)
        .clamp(1, MAX_PROBE_BACKOFF_SECS.max(interval_secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ContactOrigin;

    fn added(fp: &str, next: u64) -> ContactRecord {
        ContactRecord {
            fingerprint: fp.into(),
            name: fp.into(),
            cert: vec![],
            address: "10.0.0.1".into(),
            tcp_port: 1,
            first_seen: 0,
            last_seen: 0,
            announce_time: 0,
            verified: false,
            key_changed: false,
            origin: ContactOrigin::Added,
            announce: vec![],
            probe: Some(ProbeState {
                address: "10.0.0.1:1".into(),
                failures: 0,
                next,
            }),
        }
    }

    #[test]
    fn only_added_contacts_unheard_for_two_intervals_and_due_are_probed() {
        let mut broadcast = added("B", 0);
        broadcast.probe = None;
        let all = [added("A", 100), added("C", 101), added("H", 0), broadcast];
        let heard = HashMap::from([("H".to_string(), 95)]);
        // H was heard 5 s ago, under two 10 s intervals: not probed. A is due, C not yet.
        assert_eq!(
            due(all.iter(), &heard, 100, 10),
            vec![("A".to_string(), "10.0.0.1:1".to_string())]
        );
        // 20 s after H was last heard, it is probed again.
        let names: Vec<_> = due(all.iter(), &heard, 115, 10)
            .into_iter()
            .map(|d| d.0)
            .collect();
        assert_eq!(names, ["H", "A", "C"]);
    }

    #[test]
    fn at_most_the_maximum_is_probed_per_interval() {
        let all: Vec<_> = (0..MAX_PROBED_ADDRESSES + 10)
            .map(|i| added(&format!("F{i:03}"), 0))
            .collect();
        assert_eq!(
            due(all.iter(), &HashMap::new(), 1, 1).len(),
            MAX_PROBED_ADDRESSES
        );
    }

    #[test]
    fn a_silent_contact_is_probed_with_exponential_backoff_up_to_a_cap() {
        // Count the probes of a contact that never answers over a simulated day at a 10 s interval.
        let interval = 10;
        let mut c = added("S", 0);
        let mut probes = 0;
        let mut gaps = vec![];
        let mut last = 0;
        for now in 0..86_400 {
            if !due(std::iter::once(&c), &HashMap::new(), now, interval).is_empty() {
                probes += 1;
                gaps.push(now - last);
                last = now;
                c.probe = Some(after_probe(c.probe.as_ref().unwrap(), false, now, interval));
            }
        }
        // 10, 20, 40 ... 2560, then 3600 s: 9 probes to reach the cap, then one an hour.
        assert_eq!(&gaps[1..9], &[10, 20, 40, 80, 160, 320, 640, 1280]);
        assert!(gaps[10..].iter().all(|&g| g == MAX_PROBE_BACKOFF_SECS));
        assert!(probes < 40, "{probes} probes in a day");
        // An answer brings it back to one interval.
        let p = after_probe(c.probe.as_ref().unwrap(), true, 100_000, interval);
        assert_eq!((p.failures, p.next), (0, 100_010));
    }
}
