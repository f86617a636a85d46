//! Snapshot figures for the issue's closing note (ignored: run it on purpose, in release):
//!
//! ```text
//! cargo test --release --test snapshot_bench -- --ignored --nocapture
//! SNAP_BENCH_KEYS=100000 cargo test --release --test snapshot_bench -- --ignored --nocapture
//! ```
//!
//! With `SNAP_BENCH_KEYS` keys (default 1,000,000) of 128-byte values it measures: applying
//! them, resident memory per key, serializing the store (the time the loop spends and the
//! extra memory the copy takes), writing and fsyncing the snapshot file (off the loop),
//! reading it back and restoring a store from it (what a restart and an installing follower
//! do), and the time to move it through a loopback TCP socket in 1 MiB chunks (a lower bound
//! for the gRPC transfer, which sends the same chunks stop-and-wait).

use std::io::{Read, Write};
use std::time::Instant;

use bytes::Bytes;
use rocinante::kv::command::{Command, Op};
use rocinante::kv::{Store, StoreConfig};
use rocinante::raft::{Index, NodeId, SnapshotMeta, Term};
use rocinante::storage::snapshot_file;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
#[ignore = "benchmark: run explicitly in release"]
fn snapshot_figures() {
    let keys: u64 = std::env::var("SNAP_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let value = Bytes::from(vec![b'v'; 128]);
    let rss0 = rss_bytes();
    let mut store = Store::new(StoreConfig::default());
    let t = Instant::now();
    for i in 0..keys {
        let cmd = Command {
            leader_time_ms: 1,
            idempotency: None,
            op: Op::Put {
                key: Bytes::from(format!("key/{i:010}")),
                value: value.clone(),
                if_revision: None,
            },
        };
        store.apply(Index(i + 1), &cmd.encode());
    }
    let apply = t.elapsed();
    let rss1 = rss_bytes();
    let raw_per_key = 14 + 128;
    let per_key = (rss1.saturating_sub(rss0)) as f64 / keys as f64;

    let t = Instant::now();
    let bytes = store.snapshot_bytes();
    let serialize = t.elapsed();
    let rss2 = rss_bytes();

    let dir = std::env::temp_dir().join(format!("rocinante-snapbench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let meta = SnapshotMeta {
        last_included_index: Index(keys),
        last_included_term: Term(1),
        voters: vec![NodeId(1), NodeId(2), NodeId(3)],
        learners: vec![],
    };
    let t = Instant::now();
    let path = snapshot_file::save(&dir, &meta, &bytes).expect("save");
    let save = t.elapsed();
    let file_bytes = std::fs::metadata(&path).map_or(0, |m| m.len());

    let t = Instant::now();
    let (_m, data) = snapshot_file::load(&path, meta.last_included_index).expect("load");
    let load = t.elapsed();
    let t = Instant::now();
    let restored = Store::restore_with(StoreConfig::default(), &data).expect("restore");
    let restore = t.elapsed();
    assert_eq!(restored.snapshot_bytes().len(), bytes.len());

    let transfer = loopback_transfer(&bytes);
    eprintln!("snapshot figures, {keys} keys x 128-byte values:");
    eprintln!("  apply all:            {apply:.2?}");
    eprintln!(
        "  memory per key:       {per_key:.0} B resident (raw key+value {raw_per_key} B, ratio {:.2})",
        per_key / raw_per_key as f64
    );
    eprintln!(
        "  serialize (in loop):  {serialize:.2?}, {} MiB, extra resident {} MiB",
        bytes.len() >> 20,
        rss2.saturating_sub(rss1) >> 20
    );
    eprintln!(
        "  write+fsync file:     {save:.2?} ({} MiB on disk)",
        file_bytes >> 20
    );
    eprintln!("  read file:            {load:.2?}");
    eprintln!("  restore store:        {restore:.2?} (restart / install load time)");
    eprintln!("  loopback 1 MiB chunks {transfer:.2?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Moves `bytes` through a loopback TCP socket in 1 MiB chunks, each acknowledged
/// (stop-and-wait, like the runtime's InstallSnapshot); returns the time it took.
fn loopback_transfer(bytes: &[u8]) -> std::time::Duration {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let total = bytes.len();
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut got = vec![0u8; total];
        let mut at = 0;
        while at < total {
            let n = (total - at).min(1 << 20);
            s.read_exact(&mut got[at..at + n]).expect("read chunk");
            at += n;
            s.write_all(&(at as u64).to_le_bytes()).expect("ack");
        }
        got
    });
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let mut at = 0;
    while at < total {
        let n = (total - at).min(1 << 20);
        s.write_all(&bytes[at..at + n]).expect("send chunk");
        let mut ack = [0u8; 8];
        s.read_exact(&mut ack).expect("read ack");
        at = u64::from_le_bytes(ack) as usize;
    }
    let got = receiver.join().expect("receiver");
    assert_eq!(got.len(), total);
    t.elapsed()
}
