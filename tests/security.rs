//! The threat model's defences (docs/security.md), each shown by an attack or an audit.

use std::path::Path;

use pgpchat_actors::crypto::SecretCert;
use pgpchat_actors::identity;
use pgpchat_actors::store::Store;

use crate::binary::{wait_for, Person};
use crate::common::free_udp_port;

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_stolen_data_directory_reveals_no_text_no_secret_and_no_secret_key() {
    const SECRET: &str = "Zanzibar-Quokka-7781";
    const TEXTS: [&str; 2] = [
        "The eagle lands at midnight 0421",
        "Roger, bring the blue umbrella",
    ];
    let port = free_udp_port();
    let mut a = Person::new("alice", port);
    let mut b = Person::new("bob", port);
    a.passphrase = Some("alice's long passphrase".into());
    b.passphrase = Some("bob's long passphrase".into());
    a.init();
    b.init();
    a.start();
    b.start();
    let bob_fp = b.fingerprint();
    wait_for(20, "alice sees bob", || {
        a.json(&["contacts"])
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["fingerprint"] == bob_fp.as_str()))
    });
    let sa = a.secret_file(SECRET);
    let mut open = a
        .cmd()
        .args(["open", "bob", "--password-file", sa.to_str().unwrap()])
        .spawn()
        .unwrap();
    let mut req = 0;
    wait_for(20, "the request", || {
        let r = b.json(&["requests"]);
        r.as_array()
            .and_then(|r| r.first())
            .map(|r| req = r["id"].as_u64().unwrap())
            .is_some()
    });
    let sb = b.secret_file(SECRET);
    let id = b.json(&[
        "accept",
        &req.to_string(),
        "--password-file",
        sb.to_str().unwrap(),
    ])["discussion_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(open.wait().unwrap().success());
    std::fs::remove_file(&sa).unwrap();
    std::fs::remove_file(&sb).unwrap();
    a.ok(&["send", &id, TEXTS[0]]);
    b.ok(&["send", &id, TEXTS[1]]);
    wait_for(20, "both delivered", || {
        a.json(&["history", &id])
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] != "stored" && m["state"] != "sent")
            && b.json(&["history", &id]).as_array().unwrap().len() == 2
    });
    // The thief takes the directories as they are on disk, WAL included.
    a.kill();
    b.kill();

    let mut secrets: Vec<(String, Vec<u8>)> =
        vec![("the shared secret".into(), SECRET.as_bytes().to_vec())];
    for t in TEXTS {
        secrets.push((format!("message text {t:?}"), t.as_bytes().to_vec()));
    }
    for p in [&a, &b] {
        let dir = p.data_dir();
        assert!(
            identity::is_protected(&dir).unwrap(),
            "the identity key is passphrase-protected"
        );
        let id_key = identity::load(&dir, p.passphrase.as_deref()).unwrap();
        for (i, m) in id_key.secret_material_for_audit().into_iter().enumerate() {
            secrets.push((format!("{}'s identity secret key part {i}", p.name), m));
        }
        let sealed = Store::open(&dir.join("store.db"))
            .unwrap()
            .discussion(&id)
            .unwrap()
            .own_key_sealed;
        let dkey = SecretCert::unlock(
            &id_key.decrypt_and_verify(&sealed, id_key.public()).unwrap(),
            None,
        )
        .unwrap();
        for (i, m) in dkey.secret_material_for_audit().into_iter().enumerate() {
            secrets.push((format!("{}'s discussion secret key part {i}", p.name), m));
        }
    }
    let mut scanned = 0;
    for p in [&a, &b] {
        for f in files_under(&p.data_dir()) {
            let bytes = std::fs::read(&f).unwrap();
            scanned += bytes.len();
            for (what, needle) in &secrets {
                assert!(!contains(&bytes, needle), "{what} found in {}", f.display());
            }
        }
    }
    assert!(scanned > 10_000, "the scan saw the store ({scanned} bytes)");
}
