//! Starting the core: one core per data directory (the lock), and hints that repeat the user's own
//! global options (a bare `pgpchat daemon` would start the built-in defaults on the real network).

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::binary::{wait_for, Person, BIN};
use crate::common::free_udp_port;

#[test]
fn hints_repeat_the_global_options_the_user_gave() {
    let p = Person::new("carol", free_udp_port());
    // No identity: the `init` to run names the same configuration and data directory.
    let o = p.run(&["daemon"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let config = p.config.display().to_string();
    let data = p.data_dir().display().to_string();
    let init = format!("`pgpchat --config {config} --data-dir {data} init --name NAME`");
    assert!(err.contains(&init), "{err}");

    p.init();
    let o = p.run(&["contacts"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    for sub in ["daemon", "chat"] {
        let hint = format!("`pgpchat --config {config} --data-dir {data} {sub}`");
        assert!(err.contains(&hint), "{err}");
    }

    // With --profile (the shipped loopback profile), the hint keeps it; a path with a space is
    // quoted so the hint still runs as shown.
    let spaced = p.dir.path().join("my data");
    let o = Command::new(BIN)
        .args(["--profile", "alice", "--data-dir"])
        .arg(&spaced)
        .arg("contacts")
        .env_remove("PGPCHAT_PROFILE")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let hint = format!(
        "`pgpchat --profile alice --data-dir '{}' daemon`",
        spaced.display()
    );
    assert!(err.contains(&hint), "{err}");
}

#[test]
fn a_second_core_on_the_same_data_directory_says_so_and_touches_nothing() {
    let mut p = Person::new("dora", free_udp_port());
    p.passphrase = Some("pw".into());
    p.init();
    p.start();
    let pid = p.core.as_ref().unwrap().id();
    let socket_before = std::fs::metadata(p.socket()).unwrap();
    let store = p.data_dir().join("store.db");
    let store_before = std::fs::read(&store).unwrap();

    // No passphrase given and no terminal: had it not checked the lock first, it would ask.
    let o = p.cmd().arg("daemon").stdin(Stdio::null()).output().unwrap();
    assert_eq!(o.status.code(), Some(7), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let want = format!(
        "a core is already running on {} (pid {pid})",
        p.data_dir().display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("panic"), "{err}");
    // The first core's socket and store are untouched, and it still serves.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(p.socket()).unwrap().ino(),
        socket_before.ino()
    );
    assert_eq!(std::fs::read(&store).unwrap(), store_before);
    assert_eq!(p.json(&["discussions"]), serde_json::json!([]));

    // SIGKILL: the kernel frees the lock; a new core starts on the same directory.
    p.kill();
    p.start();
    assert_eq!(p.json(&["discussions"]), serde_json::json!([]));
    p.kill();
}

#[test]
fn two_prompts_starting_at_once_end_with_one_core() {
    // The prompt's autostart, twice at the same moment; both prompts must end up talking to the
    // one core that got the lock. `chat` needs a terminal, so each runs in its own tmux pane.
    assert!(
        Command::new("tmux").arg("-V").output().is_ok(),
        "tmux is needed (.ci/run installs it)"
    );
    let p = Person::new("eve", free_udp_port());
    p.init();
    let tag = format!("pgpchat-lock-{}", std::process::id());
    let cmd = format!(
        "{BIN} --config {} --data-dir {} chat",
        p.config.display(),
        p.data_dir().display()
    );
    let mut sessions = Vec::new();
    for i in 0..2 {
        let socket = format!("{tag}-{i}");
        let ok = Command::new("tmux")
            .args(["-u", "-L", &socket, "new-session", "-d", "-s", "t"])
            .args(["-x", "120", "-y", "40", &cmd])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        sessions.push(socket);
    }
    let screen = |s: &str| {
        let o = Command::new("tmux")
            .args(["-L", s, "capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    wait_for(40, "both prompts to show their menu", || {
        sessions.iter().all(|s| screen(s).contains("You are eve"))
    });
    for s in &sessions {
        assert!(!screen(s).contains("stopped at once"), "{}", screen(s));
    }
    // Exactly one core process runs on this data directory.
    let data = p.data_dir().display().to_string();
    let cores = || {
        let o = Command::new("pgrep")
            .args(["-f", &format!("data-dir {data} daemon")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    std::thread::sleep(Duration::from_millis(300));
    let running = cores();
    for s in &sessions {
        let _ = Command::new("tmux").args(["-L", s, "kill-server"]).status();
    }
    // Stop the one core (by its pid, found above) before asserting, so a failure leaves nothing.
    for pid in &running {
        let _ = Command::new("kill").arg(pid).status();
    }
    assert_eq!(running.len(), 1, "core processes: {running:?}");
    // The core that lost the race (if both prompts started one) stopped at the lock, with its one
    // line, before building a node: no panic, no second node in the shared log.
    let log = std::fs::read_to_string(p.data_dir().join("daemon.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.matches("node up").count() <= 1, "{log}");
}
