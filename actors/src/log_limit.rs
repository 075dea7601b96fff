//! Rate-limited log lines about hostile input: junk datagrams, junk or surplus connections, bad
//! frames. Each used to cost one log line, so an attacker could write the log as fast as it could
//! send (about 2 200 lines a second from one host).
//!
//! Within each window of [`HOSTILE_INTERVAL`], a source (an address, or a discussion for frames of an
//! authenticated peer) gets [`LINES_PER_SOURCE`] line, and all sources together
//! [`LINES_PER_INTERVAL`] lines; what is held back is counted, and when the window ends one summary
//! line per source says how many more there were ("N more ... from X"), at most
//! [`LINES_PER_INTERVAL`] of them plus one line for all the other sources. So hostile input costs at
//! most `2 * LINES_PER_INTERVAL + 1` lines per window, however many addresses it comes from (UDP
//! sources are free to forge). At most [`MAX_SOURCES`] sources are tracked per window; lines from
//! further ones are only counted.
//!
//! Everything it keeps or writes is bounded in size whatever the input: a source key is cut to
//! [`MAX_SOURCE_CHARS`] and a line (hostile or summary) to [`MAX_LINE_CHARS`], with a marker. Callers
//! key a line by the peer's address (or their own discussion id), never by a string the peer chose:
//! otherwise each new string would be a new source.
//!
//! The limiter is process-wide, like the logger and the log file it protects; a source is named
//! with its node, so several nodes in one process (tests, `simulate`) keep their own lines.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use log::Level;

/// The window of the limits below.
pub const HOSTILE_INTERVAL: Duration = Duration::from_secs(60);
/// Lines about one source's hostile input per window.
pub const LINES_PER_SOURCE: u32 = 1;
/// Lines about hostile input per window, all sources together (summaries come on top, as many).
pub const LINES_PER_INTERVAL: usize = 32;
/// Sources tracked per window.
pub const MAX_SOURCES: usize = 4096;

/// Longest source key kept (characters); a longer one is cut, so its memory stays bounded.
pub const MAX_SOURCE_CHARS: usize = 64;
/// Longest line written (characters), hostile lines and summaries alike; the rest is cut.
pub const MAX_LINE_CHARS: usize = 512;
/// What ends a cut line or key.
pub const TRUNCATED: &str = "…[truncated]";

/// `s` cut to at most `max` characters (plus [`TRUNCATED`] when cut).
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((end, _)) => format!("{}{TRUNCATED}", &s[..end]),
    }
}

/// Who sent the input: the node that received it, and where it came from.
type Source = (String, String);

#[derive(Default)]
struct Seen {
    logged: u32,
    held: u64,
}

/// The pure limiter: fixed windows, per-source and total line budgets, held-back counts.
pub struct LogLimiter {
    interval: Duration,
    per_source: u32,
    per_interval: usize,
    max_sources: usize,
    window_start: Instant,
    lines: usize,
    sources: HashMap<Source, Seen>,
    /// Held-back lines from sources beyond `max_sources`.
    untracked: u64,
}

impl LogLimiter {
    pub fn new(
        interval: Duration,
        per_source: u32,
        per_interval: usize,
        max_sources: usize,
        now: Instant,
    ) -> Self {
        Self {
            interval,
            per_source,
            per_interval,
            max_sources,
            window_start: now,
            lines: 0,
            sources: HashMap::new(),
            untracked: 0,
        }
    }

    /// Whether a line about `source`'s input may be written now. Also returns the summaries of the
    /// window that ended, if one did (to be written first).
    pub fn admit(&mut self, node: &str, source: &str, now: Instant) -> (bool, Vec<String>) {
        let summaries = self.roll(now);
        let budget_left = self.lines < self.per_interval;
        let key = (
            truncate(node, MAX_SOURCE_CHARS),
            truncate(source, MAX_SOURCE_CHARS),
        );
        let full = self.sources.len() >= self.max_sources;
        let admitted = match self.sources.get_mut(&key) {
            Some(seen) if seen.logged < self.per_source && budget_left => {
                seen.logged += 1;
                true
            }
            Some(seen) => {
                seen.held += 1;
                false
            }
            None if full => {
                self.untracked += 1;
                false
            }
            None => {
                let seen = self.sources.entry(key).or_default();
                if budget_left && self.per_source > 0 {
                    seen.logged = 1;
                    true
                } else {
                    seen.held = 1;
                    false
                }
            }
        };
        if admitted {
            self.lines += 1;
        }
        (admitted, summaries)
    }

    /// If the window is over: start a new one, and say what the old one held back.
    pub fn roll(&mut self, now: Instant) -> Vec<String> {
        if now.saturating_duration_since(self.window_start) < self.interval {
            return Vec::new();
        }
        let secs = now.saturating_duration_since(self.window_start).as_secs();
        self.window_start = now;
        self.lines = 0;
        let mut held: Vec<(Source, u64)> = self
            .sources
            .drain()
            .filter(|(_, s)| s.held > 0)
            .map(|(k, s)| (k, s.held))
            .collect();
        // The loudest sources get a line of their own.
        held.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut out = Vec::new();
        let (mut others, mut other_sources) = (std::mem::take(&mut self.untracked), 0u64);
        if others > 0 {
            other_sources = 1;
        }
        for (i, ((node, source), n)) in held.into_iter().enumerate() {
            if i < self.per_interval {
                out.push(truncate(
                    &format!(
                        "[{node}] {n} more lines about hostile input from {source} in the last {secs}s"
                    ),
                    MAX_LINE_CHARS,
                ));
            } else {
                others += n;
                other_sources += 1;
            }
        }
        if others > 0 {
            out.push(format!(
                "{others} more lines about hostile input from other sources ({other_sources}+) in the last {secs}s"
            ));
        }
        out
    }
}

fn global() -> &'static Mutex<LogLimiter> {
    static LIMITER: OnceLock<Mutex<LogLimiter>> = OnceLock::new();
    LIMITER.get_or_init(|| {
        // Summaries of a window are written when it ends even if the flood has stopped.
        let tick = HOSTILE_INTERVAL / 4;
        let spawned = std::thread::Builder::new()
            .name("pgpchat-log-limit".into())
            .spawn(move || loop {
                std::thread::sleep(tick);
                let lines = match global().lock() {
                    Ok(mut l) => l.roll(Instant::now()),
                    Err(_) => return,
                };
                write_summaries(lines);
            });
        if let Err(e) = spawned {
            log::warn!("log limiter: no summary thread ({e}); summaries come with the next line");
        }
        Mutex::new(LogLimiter::new(
            HOSTILE_INTERVAL,
            LINES_PER_SOURCE,
            LINES_PER_INTERVAL,
            MAX_SOURCES,
            Instant::now(),
        ))
    })
}

fn write_summaries(lines: Vec<String>) {
    for l in lines {
        log::info!("{l}");
    }
}

/// Log a line about hostile input from `source` received by `node`, at `level`, within the
/// limits above. A line the filter would drop costs nothing (and no budget).
pub fn hostile(level: Level, node: &str, source: &dyn fmt::Display, args: fmt::Arguments<'_>) {
    if !log::log_enabled!(level) {
        return;
    }
    let (admitted, summaries) = match global().lock() {
        Ok(mut l) => l.admit(node, &source.to_string(), Instant::now()),
        Err(_) => return,
    };
    write_summaries(summaries);
    if admitted {
        let line = truncate(&format!("[{node}] {args}"), MAX_LINE_CHARS);
        log::log!(level, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(now: Instant) -> LogLimiter {
        LogLimiter::new(Duration::from_secs(10), 1, 4, 8, now)
    }

    #[test]
    fn one_line_per_source_per_window_then_a_summary() {
        let t0 = Instant::now();
        let mut l = limiter(t0);
        let admitted = (0..300)
            .filter(|_| l.admit("bob", "10.0.0.1", t0).0)
            .count();
        assert_eq!(admitted, 1);
        // Another source still gets its line.
        assert!(l.admit("bob", "10.0.0.2", t0).0);
        let (admitted, summaries) = l.admit("bob", "10.0.0.1", t0 + Duration::from_secs(11));
        assert!(admitted, "a new window");
        assert_eq!(
            summaries,
            vec!["[bob] 299 more lines about hostile input from 10.0.0.1 in the last 11s"]
        );
        assert!(
            l.roll(t0 + Duration::from_secs(12)).is_empty(),
            "not over yet"
        );
    }

    #[test]
    fn many_sources_share_one_budget_and_stay_bounded() {
        let t0 = Instant::now();
        let mut l = limiter(t0);
        // 1000 forged sources, 3 junk datagrams each.
        let mut admitted = 0;
        for round in 0..3 {
            for s in 0..1000 {
                admitted += usize::from(l.admit("bob", &format!("10.0.{round}.{s}"), t0).0);
            }
        }
        assert_eq!(admitted, 4, "the budget of the window");
        let summaries = l.roll(t0 + Duration::from_secs(10));
        // At most one line per tracked source up to the budget, plus one for all the others.
        assert!(summaries.len() <= 4 + 1, "{summaries:?}");
        let last = summaries.last().unwrap();
        assert!(last.contains("from other sources"), "{last}");
        // Every held-back line is counted somewhere.
        let counted: u64 = summaries
            .iter()
            .map(|s| {
                let words: Vec<&str> = s.split_whitespace().collect();
                let n = if s.starts_with('[') {
                    words[1]
                } else {
                    words[0]
                };
                n.parse::<u64>().unwrap()
            })
            .sum();
        assert_eq!(counted, 3000 - 4);
    }

    #[test]
    fn long_sources_and_lines_are_cut() {
        let t0 = Instant::now();
        let mut l = limiter(t0);
        let long = "x".repeat(250_000);
        assert!(l.admit("bob", &long, t0).0);
        assert!(!l.admit("bob", &long, t0).0);
        // Two long keys that differ only after the cut are one source.
        assert!(!l.admit("bob", &format!("{long}y"), t0).0);
        assert!(l
            .sources
            .keys()
            .all(|(_, s)| s.chars().count() <= MAX_SOURCE_CHARS + TRUNCATED.chars().count()));
        let summaries = l.roll(t0 + Duration::from_secs(10));
        assert_eq!(summaries.len(), 1);
        assert!(summaries[0].chars().count() <= MAX_LINE_CHARS + TRUNCATED.chars().count());
        assert!(summaries[0].contains(TRUNCATED));
        assert_eq!(truncate("héllo", 2), format!("hé{TRUNCATED}"));
        assert_eq!(truncate("héllo", 5), "héllo");
    }

    #[test]
    fn nodes_keep_their_own_sources() {
        let t0 = Instant::now();
        let mut l = limiter(t0);
        assert!(l.admit("alice", "10.0.0.1", t0).0);
        assert!(l.admit("bob", "10.0.0.1", t0).0);
        assert!(!l.admit("bob", "10.0.0.1", t0).0);
    }
}
