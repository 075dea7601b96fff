//! The core as a library function: `pgpchat_actors::daemon::run` on a thread of the test process,
//! stopped by the test's own shutdown future; and the start-up order `claim` enforces.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use pgpchat_actors::daemon::{self, DaemonError};
use pgpchat_actors::datadir_lock::LOCK_FILE;
use pgpchat_actors::offline::{self, IdentityError};
use serde_json::{json, Value};

use crate::common::{free_udp_port, settings};

/// One JSON-RPC call over a fresh connection.
fn call(socket: &Path, method: &str) -> Value {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": {}});
    writeln!(s, "{req}").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("answer");
    serde_json::from_str(&line).expect("json answer")
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn run_serves_the_ipc_socket_until_its_shutdown_future_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let s = settings("alice", tmp.path(), free_udp_port());
    let me = offline::init(tmp.path(), "alice", None).unwrap();
    let socket = s.ipc_socket();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let core = std::thread::spawn(move || {
        let claimed = daemon::claim(s).expect("claim");
        assert!(!claimed.needs_passphrase().unwrap());
        claimed.unlock(None).expect("unlock").run(async {
            let _ = stopped.await;
        })
    });
    wait_for("the core's socket", || UnixStream::connect(&socket).is_ok());
    let who = call(&socket, "whoami");
    assert_eq!(
        who["result"]["fingerprint"],
        me.fingerprint.as_str(),
        "{who}"
    );

    // While it runs, the directory is claimed: a second core stops with "already running".
    let second = daemon::claim(settings("alice", tmp.path(), free_udp_port()));
    assert!(
        matches!(&second, Err(e) if e.is_already_running()),
        "{second:?}"
    );

    stop.send(()).unwrap();
    core.join().unwrap().expect("the core stops cleanly");
    assert!(
        !socket.exists(),
        "the socket is removed when the core stops"
    );
    // The lock went with it.
    drop(daemon::claim(settings("alice", tmp.path(), free_udp_port())).expect("claim again"));
}

#[test]
fn run_stops_when_a_front_end_asks() {
    let tmp = tempfile::tempdir().unwrap();
    let s = settings("bob", tmp.path(), free_udp_port());
    offline::init(tmp.path(), "bob", Some("pw")).unwrap();
    let socket = s.ipc_socket();
    let dir = tmp.path().to_path_buf();
    let core = std::thread::spawn(move || {
        let claimed = daemon::claim(s).expect("claim");
        assert!(claimed.needs_passphrase().unwrap());
        assert!(matches!(
            claimed.unlock(Some("wrong")),
            Err(DaemonError::Identity(_))
        ));
        // The wrong passphrase released the claim; take it again.
        let claimed = daemon::claim(settings("bob", &dir, free_udp_port())).unwrap();
        claimed
            .unlock(Some("pw"))
            .expect("unlock")
            .run(std::future::pending())
    });
    wait_for("the core's socket", || UnixStream::connect(&socket).is_ok());
    let bye = call(&socket, "shutdown");
    assert!(bye.get("error").is_none(), "{bye}");
    core.join().unwrap().expect("the core stops cleanly");
    assert!(!socket.exists());
}

#[test]
fn claim_without_an_identity_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let err = daemon::claim(settings("carol", tmp.path(), free_udp_port())).unwrap_err();
    assert!(
        matches!(err.identity(), Some(IdentityError::Missing(_))),
        "{err:?}"
    );
    assert!(!tmp.path().join(LOCK_FILE).exists(), "no lock file made");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}
