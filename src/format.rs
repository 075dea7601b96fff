//! Human-readable output: times, fingerprints, a message, an event. Every string that may come from
//! a peer goes through `safe_text`.

use pgpchat_actors::offline::fingerprint_groups;
use serde_json::Value;

use crate::safe_text;

/// Seconds since the epoch, now (0 if the clock is before 1970).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) from seconds since the epoch.
pub fn time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// "12s ago", "5m ago", ...
pub fn ago(secs: u64, now: u64) -> String {
    let d = now.saturating_sub(secs);
    match d {
        0..=59 => format!("{d}s ago"),
        60..=3599 => format!("{}m ago", d / 60),
        3600..=86_399 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86_400),
    }
}

/// The first 16 characters of a fingerprint (by characters: never splits one).
pub fn short_fpr(f: &str) -> &str {
    let end = f.char_indices().nth(16).map_or(f.len(), |(i, _)| i);
    &f[..end]
}

/// One message: `2026-11-24 18:00:00      bob: hello  [delivered]`. The body's own lines continue
/// indented under its first; control characters in the body or the name show escaped.
pub fn format_message(m: &Value, peer: Option<&str>) -> String {
    let out = m["direction"].as_str() == Some("out");
    let who = if out {
        "me".to_string()
    } else {
        safe_text::line(peer.unwrap_or("them"))
    };
    let state = if out {
        format!("  [{}]", m["state"].as_str().unwrap_or(""))
    } else {
        String::new()
    };
    let head = format!("{} {:>8}: ", time(m["time"].as_u64().unwrap_or(0)), who);
    let body = safe_text::block(m["body"].as_str().unwrap_or(""), head.chars().count());
    format!("{head}{body}{state}")
}

/// A one-line human description of an event.
pub fn describe_event(p: &Value) -> String {
    // Every string of an event may come from a peer.
    let s = |k: &str| safe_text::line(p[k].as_str().unwrap_or(""));
    let sub = |o: &str, k: &str| safe_text::line(p[o][k].as_str().unwrap_or(""));
    match p["event"].as_str().unwrap_or("") {
        "contact_seen" => format!(
            "contact {} {} at {}",
            sub("contact", "name"),
            short_fpr(&sub("contact", "fingerprint")),
            sub("contact", "address")
        ),
        "key_changed" => format!(
            "WARNING: '{}' is now announced by another key {} (was {})",
            s("name"),
            s("new_fingerprint"),
            s("old_fingerprint")
        ),
        "request" => format!(
            "request {} from {} {}",
            p["request"]["id"],
            sub("request", "name"),
            fingerprint_groups(&sub("request", "fingerprint"))
        ),
        "request_closed" => format!("request {} {}", p["request_id"], s("reason")),
        "request_refused" => format!(
            "request from {} {} at {} refused without asking you: {}",
            s("name"),
            fingerprint_groups(&s("fingerprint")),
            s("address"),
            s("reason")
        ),
        "discussion_opened" => format!(
            "discussion {} with {} open",
            s("discussion_id"),
            s("peer_name")
        ),
        "handshake_failed" => format!(
            "handshake with {} failed: {}",
            short_fpr(&s("peer_fingerprint")),
            s("reason")
        ),
        "message" => format!(
            "[{}] {}",
            sub("message", "discussion_id"),
            format_message(&p["message"], None)
        ),
        "delivery" => format!(
            "[{}] message {} {}",
            s("discussion_id"),
            p["seq"],
            s("state")
        ),
        "connection" => format!(
            "[{}] {}",
            s("discussion_id"),
            if p["connected"].as_bool() == Some(true) {
                "connected"
            } else {
                "disconnected"
            }
        ),
        "discussion_closed" => format!(
            "discussion {} closed{}",
            s("discussion_id"),
            if p["by_peer"].as_bool() == Some(true) {
                " by the peer"
            } else {
                ""
            }
        ),
        other => format!("{}: {}", safe_text::line(other), safe_text::json(p)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_time() {
        assert_eq!(super::time(0), "1970-01-01 00:00:00");
        assert_eq!(super::time(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(super::ago(100, 160), "1m ago");
    }
}
