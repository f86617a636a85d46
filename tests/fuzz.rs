//! Fuzzing that runs in CI (proptest instead of cargo-fuzz, so it needs no nightly toolchain):
//! every decoder that reads bytes from the world must return an error, never panic. Targets:
//! the WAL frame decoder and segment scan, recovery of a real data directory whose files were
//! torn, flipped or extended with garbage, the spec parser, the log-entry payload decoders,
//! and REST request parsing through a live single-node server (no request may crash it or get
//! a 500).
//!
//! Inputs are both unstructured bytes and valid encodings with a few mutations (valid inputs
//! with small damage reach much deeper into a parser than noise does). Seeds are fixed so CI is
//! reproducible; `PROPTEST_RNG_SEED=N` explores others, `PROPTEST_CASES=N` runs more.

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use rocinante::config::ClusterSpec;
use rocinante::kv::command::{Command, Idempotency, Op, Outcome};
use rocinante::raft::{Entry, EntryKind, HardState, Index, NodeId, Term};
use rocinante::storage::{Storage, StorageOptions, frame, segment};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SEED: u64 = 0xf022_5eed_0000_0006;

fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(cases);
    if matches!(config.rng_seed, RngSeed::Random) {
        config.rng_seed = RngSeed::Fixed(SEED);
    }
    config
}

/// A mutation of a byte string: flip a bit, overwrite a byte, truncate, insert, or append.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Append(Vec<u8>),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Set(at, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(at, b)| Mutation::Insert(at, b)),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Append),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        let n = bytes.len().max(1);
        match m {
            Mutation::Flip(at, bit) if !bytes.is_empty() => bytes[at % n] ^= 1 << bit,
            Mutation::Set(at, b) if !bytes.is_empty() => bytes[at % n] = *b,
            Mutation::Truncate(at) => bytes.truncate(at % n),
            Mutation::Insert(at, b) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Append(b) => bytes.extend_from_slice(b),
            _ => {}
        }
    }
}

fn sample_command(i: u64) -> Command {
    let key = Bytes::from(format!("key/{i}"));
    let op = match i % 3 {
        0 => Op::Put {
            key,
            value: Bytes::from(vec![i as u8; (i % 40) as usize]),
            if_revision: (i % 2 == 0).then_some(i),
        },
        1 => Op::Delete {
            key,
            if_revision: None,
        },
        _ => Op::Tick,
    };
    Command {
        leader_time_ms: 1_700_000_000_000 + i,
        idempotency: (i % 4 == 0).then(|| Idempotency {
            key: Bytes::from(format!("idem-{i}")),
            fingerprint: i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        }),
        op,
    }
}

const SPEC: &str = "artifact:
  cleanupOnFailure: true
  cluster:
    name: fuzz
    election_timeout_ms: [500, 1000]
    heartbeat_ms: 50
    fsync: always
    controllers:
      - address: 127.0.0.1
        port: 35001
        rest: 8001
        metric: \":2112\"
      - { address: 127.0.0.1, port: 35002, rest: 8002 }
";

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn frame_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let frame::Decoded::Record { len, payload, .. } = frame::decode(&bytes) {
            prop_assert!(len <= bytes.len() && payload.len() + frame::HEADER_BYTES == len);
        }
        let _ = frame::any_record_from(&bytes, 0);
    }

    #[test]
    fn frame_decode_of_damaged_frames_never_panics(
        payload in proptest::collection::vec(any::<u8>(), 0..128),
        kind in 1u8..=255,
        mutations in proptest::collection::vec(arb_mutation(), 1..4),
    ) {
        let mut buf = Vec::new();
        frame::encode(&mut buf, kind, |b| b.extend_from_slice(&payload));
        mutate(&mut buf, &mutations);
        let _ = frame::decode(&buf);
    }

    #[test]
    fn command_and_outcome_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        if let Ok(c) = Command::decode(&bytes) {
            // Whatever decodes re-encodes to something that decodes the same.
            prop_assert_eq!(Command::decode(&c.encode()), Ok(c));
        }
        let _ = Outcome::decode(&bytes);
    }

    #[test]
    fn command_decode_of_damaged_commands_never_panics(
        i in 0u64..1000,
        mutations in proptest::collection::vec(arb_mutation(), 1..4),
    ) {
        let mut bytes = sample_command(i).encode();
        mutate(&mut bytes, &mutations);
        let _ = Command::decode(&bytes);
    }

    #[test]
    fn spec_parser_never_panics_on_text(text in "\\PC{0,200}") {
        let _ = ClusterSpec::parse(&text);
    }

    #[test]
    fn spec_parser_never_panics_on_damaged_specs(
        mutations in proptest::collection::vec(arb_mutation(), 1..4),
    ) {
        let mut bytes = SPEC.as_bytes().to_vec();
        mutate(&mut bytes, &mutations);
        let text = String::from_utf8_lossy(&bytes);
        let _ = ClusterSpec::parse(&text);
    }
}

static DIR_COUNTER: AtomicU64 = AtomicU64::new(0);

fn scratch_dir(what: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "fuzz-{what}-{}-{}",
        std::process::id(),
        DIR_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A data directory with a few batches of entries in small segments, as the node writes it.
fn write_wal(dir: &std::path::Path, entries: u64) {
    let options = StorageOptions {
        segment_bytes_max: 4096,
        ..StorageOptions::default()
    };
    let (mut storage, _) = Storage::open(dir, options).expect("open fresh storage");
    let hs = HardState {
        current_term: Term(3),
        voted_for: Some(NodeId(7)),
    };
    let mut next = 1;
    while next <= entries {
        let batch: Vec<Entry> = (next..(next + 10).min(entries + 1))
            .map(|i| Entry {
                term: Term(1 + i / 50),
                index: Index(i),
                kind: EntryKind::Normal,
                data: Bytes::from(sample_command(i).encode()),
            })
            .collect();
        next += batch.len() as u64;
        storage.append(Some(&hs), &batch).expect("append");
    }
}

proptest! {
    #![proptest_config(config(150))]

    /// Recovery of a directory whose segment files were damaged: an error, never a panic; and
    /// what does open holds a contiguous prefix of what was written.
    #[test]
    fn recovery_of_damaged_wal_never_panics(
        entries in 1u64..200,
        file_pick in any::<usize>(),
        mutations in proptest::collection::vec(arb_mutation(), 1..4),
    ) {
        let dir = scratch_dir("wal");
        write_wal(&dir, entries);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("list dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        let victim = &files[file_pick % files.len()];
        let mut bytes = std::fs::read(victim).expect("read segment");
        mutate(&mut bytes, &mutations);
        std::fs::write(victim, &bytes).expect("write damaged segment");
        if let Ok((storage, _)) = Storage::open(&dir, StorageOptions::default()) {
            prop_assert!(storage.last_index().0 <= entries);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn segment_scan_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let file = Bytes::from(bytes);
        let _ = segment::scan(Index(1), &file, |_, _| Ok(()));
    }
}

// ---- REST request parsing through a live node ----

/// One node of a one-member cluster on free 127.0.0.1 ports; killed and removed on drop.
struct LiveNode {
    child: Child,
    rest: String,
    dir: PathBuf,
}

impl LiveNode {
    fn start() -> LiveNode {
        let ports: Vec<u16> = {
            let ls: Vec<std::net::TcpListener> = (0..2)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
                .collect();
            ls.iter()
                .map(|l| l.local_addr().expect("addr").port())
                .collect()
        };
        let dir = scratch_dir("rest");
        let spec = dir.join("spec.yaml");
        std::fs::write(
            &spec,
            format!(
                "artifact:\n  cluster:\n    name: fuzz\n    election_timeout_ms: [300, 600]\n    controllers:\n      - {{ address: 127.0.0.1, port: {}, rest: {} }}\n",
                ports[0], ports[1]
            ),
        )
        .expect("write spec");
        let log = std::fs::File::create(dir.join("node.log")).expect("create log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_rocinante"))
            .args(["serve", "--spec"])
            .arg(&spec)
            .args(["--node", "1", "--data-dir"])
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn rocinante");
        let node = LiveNode {
            child,
            rest: format!("127.0.0.1:{}", ports[1]),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if send(
                &node.rest,
                b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .is_some_and(|a| a.starts_with(b"HTTP/1.1 200"))
            {
                return node;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "node did not become ready in 30 s; log in {}",
            node.dir.display()
        );
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
            && send(
                &self.rest,
                b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .is_some_and(|a| a.starts_with(b"HTTP/1.1 200"))
    }
}

impl Drop for LiveNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("node log kept in {}", self.dir.display());
        }
    }
}

/// Send raw bytes, read until the server closes or 5 s pass. `None`: could not connect.
fn send(addr: &str, request: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = stream.write_all(request);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    Some(answer)
}

fn arb_request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        Just("GET"),
        Just("PUT"),
        Just("DELETE"),
        Just("POST"),
        Just("PATCH"),
        Just("G\0T"),
    ];
    let path = prop_oneof![
        Just("/v1/kv/".to_string()),
        Just("/v1/kv".to_string()),
        Just("/v1/txn".to_string()),
        Just("/v1/watch".to_string()),
        Just("/v1/members/".to_string()),
        Just("/v1/leader/transfer".to_string()),
        Just("/v1/flows/t".to_string()),
        "[a-z%/]{0,8}".prop_map(|s| format!("/{s}")),
    ];
    let tail = "[a-zA-Z0-9%/?=&._~+-]{0,40}";
    let headers = proptest::collection::vec(
        prop_oneof![
            Just("Content-Length: 3".to_string()),
            Just("Content-Length: -1".to_string()),
            Just("Content-Length: 99999999999999999999".to_string()),
            Just("Transfer-Encoding: chunked".to_string()),
            Just("Idempotency-Key: k".to_string()),
            Just("Idempotency-Key: ".to_string()),
            Just("Expect: 100-continue".to_string()),
            "[A-Za-z-]{1,10}: [ -~]{0,20}",
        ],
        0..4,
    );
    let body = proptest::collection::vec(any::<u8>(), 0..64);
    (method, path, tail, headers, body, any::<bool>()).prop_map(
        |(method, path, tail, headers, body, with_length)| {
            let mut req = format!("{method} {path}{tail} HTTP/1.1\r\nHost: fuzz\r\n").into_bytes();
            for h in headers {
                req.extend_from_slice(h.as_bytes());
                req.extend_from_slice(b"\r\n");
            }
            if with_length {
                req.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
            }
            req.extend_from_slice(b"Connection: close\r\n\r\n");
            req.extend_from_slice(&body);
            req
        },
    )
}

/// Random, often malformed requests against a live node: never a 500, never a crash.
#[test]
fn rest_requests_never_crash_a_node_or_get_500() {
    let mut node = LiveNode::start();
    let mut runner = proptest::test_runner::TestRunner::new(config(300));
    let rest = node.rest.clone();
    let answered = std::cell::Cell::new(0u32);
    let result = runner.run(&arb_request(), |req| {
        let answer = send(&rest, &req).unwrap_or_default();
        if answer.starts_with(b"HTTP/1.1 ") {
            answered.set(answered.get() + 1);
        }
        prop_assert!(
            !answer.starts_with(b"HTTP/1.1 500"),
            "500 for {:?}: {:?}",
            String::from_utf8_lossy(&req),
            String::from_utf8_lossy(&answer)
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Most requests are well-formed enough to get an answer: the test reached the router.
    assert!(
        answered.get() >= 150,
        "only {} requests answered",
        answered.get()
    );
    assert!(node.alive(), "node died or stopped answering /health");
}

/// Raw bytes that are not HTTP at all, and a request head far over any limit.
#[test]
fn garbage_and_huge_heads_never_crash_a_node() {
    let mut node = LiveNode::start();
    let mut runner = proptest::test_runner::TestRunner::new(config(100));
    let rest = node.rest.clone();
    let result = runner.run(&proptest::collection::vec(any::<u8>(), 0..512), |bytes| {
        let answer = send(&rest, &bytes).unwrap_or_default();
        prop_assert!(!answer.starts_with(b"HTTP/1.1 500"));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let mut huge = b"GET /v1/kv/".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 200_000));
    huge.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    let _ = send(&node.rest, &huge);
    let mut many = b"GET /health HTTP/1.1\r\n".to_vec();
    for i in 0..5000 {
        many.extend_from_slice(format!("X-H{i}: {}\r\n", "v".repeat(20)).as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let _ = send(&node.rest, &many);
    assert!(node.alive(), "node died or stopped answering /health");
}
