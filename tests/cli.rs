//! The command line as people expect it (issue 12): strict configuration with errors that say where,
//! configuration files found without `--profile`, exit statuses per class of error, closing twice,
//! shell completions and the man page. The real binary, in its own processes.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::binary::{alice_and_bob_running, path_str, Person, BIN};
use crate::common::free_udp_port;

/// The binary with no configuration of the user's: no profile, no config file, the environment
/// variables that would choose one removed, run from `cwd` (so no `./config/`).
fn bare(cwd: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(cwd)
        .env("HOME", cwd)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("PGPCHAT_CONFIG")
        .env_remove("PGPCHAT_PROFILE")
        .env_remove("PGPCHAT_PASSPHRASE")
        .env_remove("PGPCHAT_PASSWORD")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Issue 12, defect 7: `port = "47480"`, `enabled = "yes"`, `name = 42` were accepted; a bad value
/// now names the file, the key and what was expected, in one line, and exits with 2.
#[test]
fn bad_configuration_values_name_the_file_the_key_and_what_was_expected() {
    let p = Person::new("dave", free_udp_port());
    let file = path_str(&p.config).to_string();
    for (toml, key, expected) in [
        (
            "[discovery]\nport = \"47480\"\n",
            "discovery.port",
            "a whole number",
        ),
        (
            "[discovery]\nenabled = \"yes\"\n",
            "discovery.enabled",
            "true or false",
        ),
        ("[node]\nname = 42\n", "node.name", "text in double quotes"),
        (
            "[discovery]\nport = 70000\n",
            "discovery.port",
            "from 0 to 65535",
        ),
        (
            "[discovery]\nbroadcst = \"127.255.255.255\"\n",
            "discovery.broadcst",
            "the keys of [discovery] are",
        ),
    ] {
        std::fs::write(&p.config, toml).expect("write");
        let o = p.run(&["whoami"]);
        let e = err(&o);
        assert_eq!(o.status.code(), Some(2), "{toml}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        assert!(e.contains(&file), "the file, for {toml}: {e}");
        assert!(e.contains(key), "the key, for {toml}: {e}");
        assert!(e.contains(expected), "{expected}, for {toml}: {e}");
        for jargon in ["u16", "invalid type", "invalid value"] {
            assert!(!e.contains(jargon), "jargon, for {toml}: {e}");
        }
    }
    std::fs::write(&p.config, "").expect("write");
    let o = p
        .cmd()
        .arg("whoami")
        .env("PGPCHAT__DISCOVERY__ENABLED", "yes")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("PGPCHAT__DISCOVERY__ENABLED"),
        "{}",
        err(&o)
    );
}

/// `--config` > `--profile` > `PGPCHAT_CONFIG` > `$XDG_CONFIG_HOME/pgpchat/config.toml` > defaults;
/// the shipped profiles work from any directory. `init` proposes the configured node name, so the
/// name it prints says which file was read.
#[test]
fn the_configuration_is_found_without_a_profile_in_the_documented_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let xdg = t.join("xdg");
    std::fs::create_dir_all(xdg.join("pgpchat")).expect("mkdir");
    std::fs::write(
        xdg.join("pgpchat/config.toml"),
        "[node]\nname = \"from-xdg\"\n",
    )
    .expect("w");
    let env_file = t.join("env.toml");
    std::fs::write(&env_file, "[node]\nname = \"from-env\"\n").expect("w");
    let explicit = t.join("explicit.toml");
    std::fs::write(&explicit, "[node]\nname = \"explicit\"\n").expect("w");
    let mut n = 0;
    let mut init = |cmd: &mut Command| -> String {
        n += 1;
        let o = cmd
            .arg("--data-dir")
            .arg(t.join(format!("data{n}")))
            .args(["init", "--no-passphrase"])
            .output()
            .expect("run");
        assert!(o.status.success(), "{}", err(&o));
        out(&o)
    };
    assert!(init(&mut bare(t)).contains("identity created for default"));
    assert!(init(bare(t).env("XDG_CONFIG_HOME", &xdg)).contains("for from-xdg"));
    // Without XDG_CONFIG_HOME, ~/.config is the user's config dir.
    let home_cfg = t.join(".config/pgpchat");
    std::fs::create_dir_all(&home_cfg).expect("mkdir");
    std::fs::write(
        home_cfg.join("config.toml"),
        "[node]\nname = \"from-home\"\n",
    )
    .expect("w");
    assert!(init(&mut bare(t)).contains("for from-home"));
    assert!(init(
        bare(t)
            .env("XDG_CONFIG_HOME", &xdg)
            .env("PGPCHAT_CONFIG", &env_file)
    )
    .contains("for from-env"));
    // The shipped profiles are built in: `--profile alice` works outside the checkout.
    assert!(init(
        bare(t)
            .env("XDG_CONFIG_HOME", &xdg)
            .env("PGPCHAT_CONFIG", &env_file)
            .args(["--profile", "alice"])
    )
    .contains("for alice"));
    assert!(init(
        bare(t)
            .env("PGPCHAT_CONFIG", &env_file)
            .args(["--profile", "alice", "--config"])
            .arg(&explicit)
    )
    .contains("for explicit"));
    // A PGPCHAT_CONFIG that names no file is an error, not a silent fallback.
    let o = bare(t)
        .env("PGPCHAT_CONFIG", t.join("missing.toml"))
        .arg("whoami")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("missing.toml"), "{}", err(&o));
}

/// A fake core on `socket` that answers `version` with an API of another major.
fn incompatible_core(socket: &Path) {
    std::fs::create_dir_all(socket.parent().expect("dir")).expect("mkdir");
    let listener = std::os::unix::net::UnixListener::bind(socket).expect("bind");
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let req: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            let answer = serde_json::json!({"jsonrpc": "2.0", "id": req["id"],
                "result": {"api": "99.0", "core": "99.0.0"}});
            let _ = writeln!(&conn, "{answer}");
        }
    });
}

/// Distinct exit statuses per class of error, chosen from the typed errors (they were all 1).
#[test]
fn each_class_of_error_has_its_exit_status() {
    let mut p = Person::new("erin", free_udp_port());
    assert_eq!(p.run(&["history"]).status.code(), Some(2), "usage");
    assert_eq!(p.run(&["whoami"]).status.code(), Some(3), "no identity");
    p.passphrase = Some("right".into());
    p.init();
    assert_eq!(p.run(&["contacts"]).status.code(), Some(5), "no core");
    let o = p
        .cmd()
        .arg("daemon")
        .env("PGPCHAT_PASSPHRASE", "wrong")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(4), "wrong passphrase: {}", err(&o));
    let o = p.run(&["open", "bob"]);
    assert_eq!(o.status.code(), Some(2), "no secret given: {}", err(&o));
    p.start();
    let o = p.run(&["history", "nobody"]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    let o = p.run(&["refuse", "99"]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    let o = p.run(&["send", "nobody", ""]);
    assert_eq!(o.status.code(), Some(2), "empty message: {}", err(&o));
    p.kill();

    let q = Person::new("fay", free_udp_port());
    incompatible_core(&q.socket());
    let o = q.run(&["contacts"]);
    assert_eq!(o.status.code(), Some(6), "{}", err(&o));
    assert!(err(&o).contains("99.0"), "{}", err(&o));
}

/// Through the real binary: a name means the newest *open* discussion with that contact (defect
/// 5); sending to a closed one is refused (4); closing a closed one says so and succeeds;
/// `requests --json` lists the refused requests too; `history` pages by position, and an empty
/// page says so on stderr (issue 12, last trial).
#[test]
fn names_closing_twice_and_requests_from_the_command_line() {
    let (alice, bob) = alice_and_bob_running();
    let first = alice.open_with(&bob, "first secret");
    let second = alice.open_with(&bob, "second secret");
    let closed = alice.json(&["close", &second, "--force"]);
    assert_eq!(closed["state"], "closed", "{closed}");
    let sent = alice.json(&["send", "bob", "to the open one"]);
    assert_eq!(sent["discussion_id"], first.as_str(), "{sent}");
    let o = alice.run(&["send", &second, "to the closed one"]);
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    let o = alice.run(&["close", &second]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("already closed"), "{}", out(&o));
    let r = bob.json(&["requests"]);
    assert!(r["requests"].is_array() && r["refused"].is_array(), "{r}");

    // `history --before/--after/--limit` pages through a discussion by position.
    for i in 2..=5 {
        alice.ok(&["send", "bob", &format!("message {i}")]);
    }
    let positions = |args: &[&str]| -> Vec<u64> {
        let mut a = vec!["history", "bob"];
        a.extend_from_slice(args);
        let h = alice.json(&a);
        h.as_array()
            .expect("array")
            .iter()
            .map(|m| m["position"].as_u64().expect("position"))
            .collect()
    };
    assert_eq!(positions(&["--limit", "2"]), [4, 5]);
    assert_eq!(positions(&["--limit", "2", "--before", "4"]), [2, 3]);
    assert_eq!(positions(&["--limit", "2", "--after", "1"]), [2, 3]);
    assert_eq!(positions(&["--before", "4", "--after", "1"]), [2, 3]);
    let o = alice.run(&["history", "bob", "--limit", "2"]);
    assert_eq!(out(&o).lines().count(), 2, "{}", out(&o));
    assert!(err(&o).contains("history bob --before 4"), "{}", err(&o));

    // An empty range is a success that says so on stderr (stdout stays empty); `--json` is `[]`.
    for (args, said) in [
        (
            &["--after", "5"][..],
            "no messages after position 5; the discussion has 5 messages",
        ),
        (
            &["--before", "1"][..],
            "no messages before position 1; the discussion has 5 messages",
        ),
        (
            &["--after", "2", "--before", "3"][..],
            "no messages between positions 2 and 3; the discussion has 5 messages",
        ),
    ] {
        let mut a = vec!["history", "bob"];
        a.extend_from_slice(args);
        let o = alice.run(&a);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", err(&o));
        assert_eq!(out(&o), "", "{args:?}");
        assert_eq!(err(&o).trim_end(), said, "{args:?}");
        let mut a = vec!["--json", "history", "bob"];
        a.extend_from_slice(args);
        let o = alice.run(&a);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", err(&o));
        assert_eq!(out(&o).trim_end(), "[]", "{args:?}");
        assert_eq!(err(&o), "", "{args:?}");
    }
}

/// `--help` has the global options under their heading, examples, the environment and the exit
/// statuses; completions and the man page are generated from the same definition.
#[test]
fn help_completions_and_man_page_come_from_the_cli_definition() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let o = bare(tmp.path()).args(args).output().expect("run");
        assert!(o.status.success(), "{args:?}: {}", err(&o));
        out(&o)
    };
    let help = run(&["--help"]);
    for want in [
        "Global options:",
        "--verbose",
        "--quiet",
        "Examples:",
        "PGPCHAT_PASSPHRASE",
        "PGPCHAT_PASSWORD",
        "RUST_LOG",
        "Exit status:",
    ] {
        assert!(help.contains(want), "{want} in --help:\n{help}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let c = run(&["completions", shell]);
        assert!(
            c.contains("pgpchat") && c.contains("history"),
            "{shell}: {c}"
        );
    }
    let man = run(&["man"]);
    assert!(man.contains(".TH pgpchat 1"), "{man}");
    assert!(man.contains("PGPCHAT_PASSWORD"), "{man}");
    // They need no configuration: a broken one does not stop them.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "nonsense").expect("w");
    let o = bare(tmp.path())
        .arg("--config")
        .arg(&bad)
        .args(["completions", "bash"])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", err(&o));
}

/// `-q` leaves only errors and `-vv` adds debug lines, whatever `RUST_LOG` says.
#[test]
fn quiet_and_verbose_set_the_log_level() {
    let port = free_udp_port();
    let p = Person::new("gil", port);
    p.init();
    let run_core = |flag: &str| -> String {
        let core = p
            .cmd()
            .args([flag, "daemon"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("daemon");
        crate::binary::wait_for(15, "the core's socket", || {
            std::os::unix::net::UnixStream::connect(p.socket()).is_ok()
        });
        // A junk datagram: the core drops it with a debug line.
        crate::common::broadcast(b"junk", port);
        std::thread::sleep(std::time::Duration::from_millis(1000));
        p.ok(&["stop"]);
        let o = core.wait_with_output().expect("core ends");
        err(&o)
    };
    let quiet = run_core("-q");
    assert!(!quiet.contains(" INFO "), "{quiet}");
    let verbose = run_core("-vv");
    assert!(verbose.contains(" DEBUG "), "{verbose}");
    assert!(verbose.contains(" INFO "), "{verbose}");
    let o = p.run(&["-v", "-q", "whoami"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
}
