//! Mutation fuzzing of every decoder that sees outside input, on the stable toolchain.
//!
//! Each target gets seeds (real values made here, plus the files in `fuzz/corpus/<target>/`), and
//! every iteration applies 1–4 random mutations (bit flips, random or "interesting" bytes such as
//! huge length prefixes, insertions, deletions, truncation, duplication, splicing) and feeds the result
//! to the decoder under `catch_unwind`. The property: no input panics, and none allocates beyond the
//! decode limits. A panicking input is written to `fuzz/regressions/<target>/` and the test fails;
//! every file there is replayed first on every run.
//!
//! CI runs `PGPCHAT_FUZZ_ITERS` (default 5000) iterations per target. A long run:
//! `PGPCHAT_FUZZ_ITERS=200000 cargo test --release --test main fuzz -- --nocapture`
//! (figures in docs/security.md). `PGPCHAT_FUZZ_SEED` replays a run; `PGPCHAT_FUZZ_WRITE_CORPUS=1`
//! refreshes the committed seed corpus.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use pgpchat_actors::codec;
use pgpchat_actors::crypto::{verify_detached, PublicCert, SecretCert};
use pgpchat_actors::events::now_secs;
use pgpchat_actors::handshake::random_nonce;
use pgpchat_actors::ipc::parse_request;
use pgpchat_actors::net::chat::{decrypt_chat, encrypt_chat};
use pgpchat_actors::settings::Settings;
use pgpchat_actors::wire::{
    AcceptBody, Announce, AnnounceBody, ChatPayload, FailReason, Frame, Handshake, Purpose,
    RequestBody, PROTOCOL_VERSION,
};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    &[0x00],
    &[0xff],
    &[0x7f],
    &[0x80],
    &[0xff, 0xff, 0xff, 0xff],
    &[0x00, 0x00, 0x00, 0x00],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00],
    b"{",
    b"\"",
    b"\\u0000",
];

fn mutate(input: &[u8], corpus: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next() as u8;
            }
            2 => {
                let at = rng.below(len + 1);
                let what = INTERESTING[rng.below(INTERESTING.len())];
                if rng.below(2) == 0 || at + what.len() > len {
                    v.splice(at..at, what.iter().copied());
                } else {
                    v[at..at + what.len()].copy_from_slice(what);
                }
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(16));
                v.drain(at..at + n);
            }
            4 => v.truncate(rng.below(len + 1)),
            5 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                let chunk = v[at..at + n].to_vec();
                let to = rng.below(v.len() + 1);
                v.splice(to..to, chunk);
            }
            6 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            _ => {
                let at = rng.below(len + 1);
                v.insert(at, rng.next() as u8);
            }
        }
    }
    v
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_else(|_| Vec::new());
    v.sort();
    v.into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// Fuzz one target; returns (executions, seconds).
fn fuzz(name: &str, mut seeds: Vec<Vec<u8>>, target: impl Fn(&[u8])) -> (u64, f64) {
    let iters: u64 = std::env::var("PGPCHAT_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let seed: u64 = std::env::var("PGPCHAT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_secs() ^ (name.len() as u64) << 32 | 1);
    if std::env::var("PGPCHAT_FUZZ_WRITE_CORPUS").is_ok() {
        let dir = root().join("corpus").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), s).unwrap();
        }
    }
    seeds.extend(files(&root().join("corpus").join(name)));
    let regressions = root().join("regressions").join(name);
    let run = |input: &[u8]| catch_unwind(AssertUnwindSafe(|| target(input))).is_ok();
    for r in files(&regressions) {
        assert!(run(&r), "{name}: a regression input panics again");
    }
    let mut rng = Rng(seed);
    let start = Instant::now();
    for _ in 0..iters {
        let base = &seeds[rng.below(seeds.len())];
        let input = mutate(base, &seeds, &mut rng);
        if !run(&input) {
            std::fs::create_dir_all(&regressions).unwrap();
            let path = regressions.join(format!("crash-{:016x}", rng.next()));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "{name}: input panicked (seed {seed}); saved as {}",
                path.display()
            );
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!("fuzz {name}: {iters} executions in {secs:.2}s (seed {seed})");
    (iters, secs)
}

fn framed(f: &Frame) -> Vec<u8> {
    codec::encode(f).unwrap()
}

#[test]
fn fuzz_wire_frames() {
    let seeds = vec![
        framed(&Frame::Hello {
            version: PROTOCOL_VERSION,
            purpose: Purpose::Handshake,
        }),
        framed(&Frame::Hello {
            version: PROTOCOL_VERSION,
            purpose: Purpose::Discussion {
                discussion_id: "0123456789abcdef".into(),
                nonce: random_nonce(),
            },
        }),
        framed(&Frame::Sealed(vec![0xc1, 0x5e, 1, 2, 3])),
        framed(&Frame::SessionAuth {
            nonce: random_nonce(),
            port: 4242,
            signature: vec![0xc2; 80],
        }),
        framed(&Frame::Chat(vec![0xd2; 200])),
        framed(&Frame::Ack {
            upto: 42,
            signature: vec![0xc2; 80],
        }),
        framed(&Frame::Close {
            signature: vec![1; 70],
        }),
        framed(&Frame::Error {
            reason: "busy".into(),
        }),
    ];
    fuzz("frame", seeds, |d| {
        let _ = codec::decode::<Frame>(d);
    });
}

#[test]
fn fuzz_handshake_plaintexts() {
    let key = SecretCert::generate("k").unwrap().public().to_bytes();
    let seeds = vec![
        codec::encode(&Handshake::Request(RequestBody {
            version: PROTOCOL_VERSION,
            from: "A".repeat(40),
            to: "B".repeat(40),
            name: "alice".into(),
            nonce: random_nonce(),
            time: now_secs(),
            cert: key.clone(),
            discussion_key: key.clone(),
            spake: vec![7; 33],
        }))
        .unwrap(),
        codec::encode(&Handshake::Accept(AcceptBody {
            request_nonce: random_nonce(),
            nonce: random_nonce(),
            discussion_key: key,
            spake: vec![8; 33],
            confirm: [9; 32],
        }))
        .unwrap(),
        codec::encode(&Handshake::Ready {
            discussion_id: "x".into(),
            port: 1,
        })
        .unwrap(),
        codec::encode(&Handshake::Failed {
            reason: FailReason::Protocol,
        })
        .unwrap(),
    ];
    fuzz("handshake", seeds, |d| {
        let _ = codec::decode::<Handshake>(d);
    });
}

#[test]
fn fuzz_discovery_datagrams() {
    let k = SecretCert::generate("announcer").unwrap();
    let body = codec::encode(&AnnounceBody {
        version: PROTOCOL_VERSION,
        name: "announcer".into(),
        tcp_port: 4000,
        cert: k.public().to_bytes(),
        nonce: random_nonce(),
        time: now_secs(),
        reply: false,
    })
    .unwrap();
    let signature = k.sign_detached(&body).unwrap();
    let seeds = vec![codec::encode(&Announce {
        body,
        signature,
        padding: vec![0; 16],
    })
    .unwrap()];
    // The whole receive path short of the actor: decode, policy, certificate, signature.
    fuzz("datagram", seeds, |d| {
        if let Ok(a) = codec::decode::<Announce>(d) {
            if let Ok(b) = codec::decode::<AnnounceBody>(&a.body) {
                if let Ok(cert) = PublicCert::from_bytes(&b.cert) {
                    let _ = verify_detached(&cert, &a.body, &a.signature);
                }
            }
        }
    });
}

#[test]
fn fuzz_openpgp_chat_messages_and_certificates() {
    let sender = SecretCert::generate("sender").unwrap();
    let receiver = SecretCert::generate("receiver").unwrap();
    let msg = |body: &str| {
        encrypt_chat(
            &sender,
            receiver.public(),
            &ChatPayload {
                discussion_id: "d".into(),
                seq: 1,
                time: now_secs(),
                recipient: receiver.fingerprint().into(),
                body: body.into(),
            },
        )
        .unwrap()
    };
    let seeds = vec![msg("hello"), msg(&"long ".repeat(300))];
    fuzz("openpgp_message", seeds, |d| {
        let _ = decrypt_chat(&receiver, sender.public(), d);
    });
    let seeds = vec![
        sender.public().to_bytes(),
        receiver.public().to_armored().unwrap().into_bytes(),
    ];
    fuzz("certificate", seeds, |d| {
        let _ = PublicCert::from_bytes(d);
    });
}

#[test]
fn fuzz_ipc_lines() {
    let seeds: Vec<Vec<u8>> = [
        r#"{"jsonrpc":"2.0","id":1,"method":"whoami"}"#,
        r#"{"jsonrpc":"2.0","id":"x","method":"send","params":{"discussion":"bob","text":"hi"}}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"accept","params":{"request":3,"password":"pw"}}"#,
        r#"{"jsonrpc":"2.0","method":"subscribe"}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz("ipc_line", seeds, |d| {
        if let Ok(line) = std::str::from_utf8(d) {
            let _ = parse_request(line);
        }
    });
}

#[test]
fn fuzz_configuration_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let seeds: Vec<Vec<u8>> = ["default.toml", "alice.toml", "bob.toml"]
        .iter()
        .map(|f| std::fs::read(config.join(f)).unwrap())
        .chain(std::iter::once(
            b"[limits]\nmax_frame_bytes = 262144\nreconnect_max_secs = 5\n".to_vec(),
        ))
        .collect();
    let over = [("node.data_dir", dir.path().display().to_string())];
    fuzz("config", seeds, |d| {
        std::fs::write(&file, d).unwrap();
        let _ = Settings::load(None, Some(&file), Vec::new(), &over);
    });
}
