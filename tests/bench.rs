//! `pgpchat bench`: a short real run of the binary (tiny counts, two nodes on loopback with a
//! private discovery port), whose JSON report has every figure and every ratio, positive and
//! consistent with each other. Nothing here asserts how fast anything is.

use std::process::Command;

use serde_json::Value;

use crate::binary::BIN;

/// `v[path]` as a positive number.
fn positive(r: &Value, path: &[&str]) -> f64 {
    let mut v = r;
    for p in path {
        v = &v[*p];
    }
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{path:?} missing in {r}"));
    assert!(x > 0.0 && x.is_finite(), "{path:?} = {x} in {r}");
    x
}

/// Equal up to float rounding.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-9)
}

#[test]
fn bench_reports_every_figure_with_its_ratio_to_the_same_runs_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--json",
            "bench",
        ])
        .args([
            "--crypto",
            "6",
            "--commits",
            "6",
            "--keygens",
            "3",
            "--spake2",
            "3",
        ])
        .args(["--opens", "2", "--one-at-a-time", "4", "--messages", "12"])
        .args(["--senders", "3", "--gpg", "2"])
        .args(["--timeout", "120"])
        .output()
        .expect("pgpchat bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(stdout.trim()).expect("one JSON report");

    // Raw baselines: each measured as many times as asked, median ≤ 99th percentile.
    for (name, count) in [
        ("crypto_round_trip", 6),
        ("sqlite_commit", 6),
        ("key_generation", 3),
        ("spake2_exchange", 3),
    ] {
        assert_eq!(r["raw"][name]["count"], count, "{name}: {r}");
        let p50 = positive(&r, &["raw", name, "p50_ms"]);
        assert!(p50 <= positive(&r, &["raw", name, "p99_ms"]), "{name}: {r}");
    }
    let crypto = positive(&r, &["raw", "crypto_round_trip", "p50_ms"]);
    let commit = positive(&r, &["raw", "sqlite_commit", "p50_ms"]);
    let keygen = positive(&r, &["raw", "key_generation", "p50_ms"]);
    let spake = positive(&r, &["raw", "spake2_exchange", "p50_ms"]);
    let rate = positive(&r, &["raw", "crypto_round_trips_per_second"]);
    assert!(close(rate, 1000.0 / crypto), "{r}");
    let message_floor = positive(&r, &["raw", "message_floor_ms"]);
    assert!(close(message_floor, crypto + 2.0 * commit), "{r}");
    let open_floor = positive(&r, &["raw", "open_floor_ms"]);
    assert!(
        close(open_floor, spake + 2.0 * keygen + 4.0 * crypto),
        "{r}"
    );

    // P1: every message acknowledged, the rate and its ratio to one core's crypto rate.
    assert_eq!(r["p1_throughput"]["messages"], 12, "{r}");
    let secs = positive(&r, &["p1_throughput", "seconds"]);
    let mps = positive(&r, &["p1_throughput", "messages_per_second"]);
    assert!(close(mps, 12.0 / secs), "{r}");
    let p1 = positive(&r, &["p1_throughput", "ratio_to_one_core_crypto"]);
    assert!(close(p1, mps / rate), "{r}");

    // P2: each message stored before it is delivered; ratios to the commit and the floor.
    let p2 = &r["p2_one_at_a_time"];
    assert_eq!(p2["stored"]["count"], 4, "{r}");
    assert_eq!(p2["delivered"]["count"], 4, "{r}");
    let stored = positive(p2, &["stored", "p50_ms"]);
    let delivered = positive(p2, &["delivered", "p50_ms"]);
    let delivered99 = positive(p2, &["delivered", "p99_ms"]);
    assert!(stored <= delivered && delivered <= delivered99, "{r}");
    let ratio = positive(p2, &["stored_p50_ratio_to_commit"]);
    assert!(close(ratio, stored / commit), "{r}");
    let ratio = positive(p2, &["delivered_p50_ratio_to_floor"]);
    assert!(close(ratio, delivered / message_floor), "{r}");
    let ratio = positive(p2, &["delivered_p99_ratio_to_floor"]);
    assert!(close(ratio, delivered99 / message_floor), "{r}");

    // P4: both discussions opened, and the ratio to the raw cost of opening one.
    assert_eq!(r["p4_open"]["open"]["count"], 2, "{r}");
    let open = positive(&r, &["p4_open", "open", "p50_ms"]);
    let ratio = positive(&r, &["p4_open", "p50_ratio_to_floor"]);
    assert!(close(ratio, open / open_floor), "{r}");

    // P5: gpg (installed for the tests) run twice, against the node's cost of one P1 message.
    assert_eq!(r["options"]["senders"], 3, "{r}");
    assert_eq!(r["p5_gpg"]["gpg_round_trip"]["count"], 2, "{r}");
    let gpg = positive(&r, &["p5_gpg", "gpg_round_trip", "p50_ms"]);
    let node = positive(&r, &["p5_gpg", "node_ms_per_message"]);
    assert!(close(node, 1000.0 / mps), "{r}");
    let faster = positive(&r, &["p5_gpg", "times_faster_than_gpg"]);
    assert!(close(faster, gpg / node), "{r}");
    positive(&r, &["seconds"]);
}

#[test]
fn bench_refuses_a_count_out_of_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--data-dir", dir.path().to_str().unwrap(), "bench"])
        .args(["--messages", "0"])
        .output()
        .expect("pgpchat bench runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("messages is 0"), "{err}");
}
