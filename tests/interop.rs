//! Interoperability with an independent OpenPGP implementation (GnuPG).

use std::path::Path;
use std::process::{Command, Stdio};

use pgpchat_actors::crypto::SecretCert;
use pgpchat_actors::net::chat::encrypt_chat;
use pgpchat_actors::wire::ChatPayload;

use crate::binary::Person;
use crate::common::free_udp_port;

pub(crate) fn gpg(home: &Path, args: &[&str], input: Option<&[u8]>) -> std::process::Output {
    let mut c = Command::new("gpg");
    c.arg("--homedir")
        .arg(home)
        .args([
            "--batch",
            "--no-tty",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .expect("gpg is installed (.ci/run installs gnupg)");
    if let Some(i) = input {
        std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), i).expect("write");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("gpg")
}

pub(crate) fn gnupghome() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(
        d.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    d
}

#[test]
fn gpg_decrypts_and_verifies_a_chat_message() {
    let sender = SecretCert::generate("pgpchat discussion with bob").expect("key");
    let receiver = SecretCert::generate("pgpchat discussion with alice").expect("key");
    let payload = ChatPayload {
        discussion_id: "0123456789abcdef0123456789abcdef".into(),
        seq: 7,
        time: 1_800_000_000,
        recipient: receiver.fingerprint().into(),
        body: "meet at noon".into(),
    };
    let message = encrypt_chat(&sender, receiver.public(), &payload).expect("encrypt");

    let home = gnupghome();
    let secret = receiver.to_protected_armored(None).expect("armor");
    let o = gpg(home.path(), &["--import"], Some(secret.as_bytes()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let public = sender.public().to_armored().expect("armor");
    let o = gpg(home.path(), &["--import"], Some(public.as_bytes()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let o = gpg(
        home.path(),
        &["--status-fd", "2", "--decrypt"],
        Some(&message),
    );
    let status = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "gpg --decrypt failed: {status}");
    assert!(status.contains("[GNUPG:] GOODSIG"), "{status}");
    assert!(
        status.contains(&format!("VALIDSIG {}", sender.fingerprint())),
        "{status}"
    );
    assert!(status.contains("DECRYPTION_OKAY"), "{status}");
    // The plaintext is the signed payload, and it carries the body.
    assert_eq!(
        o.stdout,
        pgpchat_actors::codec::encode(&payload).expect("encode")
    );
    assert!(o.stdout.windows(12).any(|w| w == b"meet at noon"));
}

#[test]
fn exported_key_imports_into_gpg_with_the_same_fingerprint() {
    let p = Person::new("erin", free_udp_port());
    p.init();
    let fp = p.fingerprint();
    let armored = p.ok(&["export-key"]);
    assert!(armored.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    let home = gnupghome();
    let o = gpg(home.path(), &["--import"], Some(armored.as_bytes()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = gpg(home.path(), &["--with-colons", "--list-keys"], None);
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(listing.contains(&format!("fpr:::::::::{fp}:")), "{listing}");
    assert!(listing.contains("erin"), "{listing}");
    // Ed25519 (algo 22) primary, Curve25519 ECDH (algo 18) subkey.
    assert!(listing
        .lines()
        .any(|l| l.starts_with("pub:") && l.split(':').nth(3) == Some("22")));
    assert!(listing
        .lines()
        .any(|l| l.starts_with("sub:") && l.split(':').nth(3) == Some("18")));
}
