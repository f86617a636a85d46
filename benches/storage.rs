//! Storage benchmark (a plain binary, `harness = false`; run with `make bench-storage`).
//!
//! Measures, on the disk holding `ROCINANTE_BENCH_DIR` (default: the system temp dir):
//! - the raw rate of "append 154 bytes + fdatasync" on a bare file: the ceiling for a WAL that
//!   makes every write durable (154 bytes is one 128-byte entry's record);
//! - `Storage::append` of 128-byte entries with `Fsync::Always` at batch sizes 1, 64 and 1024:
//!   entries/s, payload MB/s and fsyncs/s, beside that raw rate;
//! - recovery (`Storage::open`) of a log of `ROCINANTE_BENCH_RECOVERY_BYTES` (default 1 GiB),
//!   written just before, so its pages are likely in the page cache (warm recovery).
//!
//! Goals (issue 3): batch 1 within 80% of the raw fdatasync rate; batch 1024 above 200,000
//! entries/s; recovery of 1 GiB under 2 s. Each append run lasts `ROCINANTE_BENCH_SECS`
//! (default 3) seconds.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rocinante::raft::{Entry, EntryKind, Index, Term};
use rocinante::storage::{Fsync, Storage, StorageError, StorageOptions};

/// Payload of every benchmark entry, in bytes.
const ENTRY_DATA_BYTES: usize = 128;
/// Bytes of one 128-byte entry's record on disk: frame header 9 + entry fields 17 + data.
const RECORD_BYTES: usize = 9 + 17 + ENTRY_DATA_BYTES;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn scratch(name: &str) -> PathBuf {
    let base =
        std::env::var_os("ROCINANTE_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = base.join(format!("rocinante-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// fsyncs per second of "append RECORD_BYTES, fdatasync" on a bare file.
fn raw_fdatasync_rate(dir: &Path, run: Duration) -> std::io::Result<f64> {
    let path = dir.join("raw");
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    let record = [0x5au8; RECORD_BYTES];
    let start = Instant::now();
    let mut syncs = 0u64;
    while start.elapsed() < run {
        file.write_all(&record)?;
        file.sync_data()?;
        syncs += 1;
    }
    Ok(syncs as f64 / start.elapsed().as_secs_f64())
}

/// Entries/s and fsyncs/s of `Storage::append` at `batch` entries per call.
fn append_rate(dir: &Path, batch: usize, run: Duration) -> Result<(f64, f64), StorageError> {
    let options = StorageOptions {
        fsync: Fsync::Always,
        ..StorageOptions::default()
    };
    let (mut storage, _) = Storage::open(dir, options)?;
    let data = Bytes::from(vec![0xa5u8; ENTRY_DATA_BYTES]);
    let mut entries: Vec<Entry> = (0..batch)
        .map(|_| Entry {
            term: Term(1),
            index: Index(0),
            kind: EntryKind::Normal,
            data: data.clone(),
        })
        .collect();
    let mut next = 1u64;
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < run {
        for entry in entries.iter_mut() {
            entry.index = Index(next);
            next += 1;
        }
        storage.append(None, &entries)?;
        calls += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(((next - 1) as f64 / secs, calls as f64 / secs))
}

/// Write a log of about `bytes` (without fsync: only its recovery is measured), then time
/// `Storage::open` over it. Returns (entries recovered, seconds).
fn recovery_time(dir: &Path, bytes: u64) -> Result<(usize, f64), StorageError> {
    let options = StorageOptions {
        fsync: Fsync::Never,
        ..StorageOptions::default()
    };
    {
        let (mut storage, _) = Storage::open(dir, options.clone())?;
        let data = Bytes::from(vec![0x3cu8; ENTRY_DATA_BYTES]);
        let total = (bytes / RECORD_BYTES as u64).max(1);
        let mut next = 1u64;
        while next <= total {
            let end = (next + 1023).min(total);
            let batch: Vec<Entry> = (next..=end)
                .map(|i| Entry {
                    term: Term(1),
                    index: Index(i),
                    kind: EntryKind::Normal,
                    data: data.clone(),
                })
                .collect();
            storage.append(None, &batch)?;
            next = end + 1;
        }
    }
    // Make the log durable first (untimed), so the timing is not mixed with writeback.
    for dirent in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = dirent.map_err(|e| io(dir, e))?.path();
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(&path, e))?;
    }
    let start = Instant::now();
    let (_storage, recovered) = Storage::open(dir, options)?;
    let secs = start.elapsed().as_secs_f64();
    Ok((recovered.entries.len(), secs))
}

fn io(path: &Path, source: std::io::Error) -> StorageError {
    StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn main() {
    let run = Duration::from_secs(env_u64("ROCINANTE_BENCH_SECS", 3));
    let recovery_bytes = env_u64("ROCINANTE_BENCH_RECOVERY_BYTES", 1 << 30);

    let dir = scratch("raw");
    let raw = raw_fdatasync_rate(&dir, run).unwrap_or_else(|e| panic!("raw fdatasync: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    println!("raw disk: append {RECORD_BYTES} B + fdatasync: {raw:.0} fsyncs/s");

    for batch in [1usize, 64, 1024] {
        let dir = scratch(&format!("batch{batch}"));
        let (entries_s, fsyncs_s) =
            append_rate(&dir, batch, run).unwrap_or_else(|e| panic!("append batch {batch}: {e}"));
        let _ = std::fs::remove_dir_all(&dir);
        let payload_mb_s = entries_s * ENTRY_DATA_BYTES as f64 / 1e6;
        let disk_mb_s = entries_s * RECORD_BYTES as f64 / 1e6;
        println!(
            "append batch {batch:>4}: {entries_s:>10.0} entries/s  {payload_mb_s:>7.2} MB/s payload \
             ({disk_mb_s:.2} MB/s on disk)  {fsyncs_s:>7.0} fsyncs/s  = {:.0}% of raw fdatasync",
            100.0 * fsyncs_s / raw
        );
    }

    let dir = scratch("recovery");
    let (entries, secs) =
        recovery_time(&dir, recovery_bytes).unwrap_or_else(|e| panic!("recovery: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let gib = recovery_bytes as f64 / (1u64 << 30) as f64;
    println!(
        "recovery: {gib:.3} GiB log, {entries} entries, in {secs:.3} s ({:.2} GiB/s, warm page cache)",
        gib / secs
    );
    println!("goals: batch 1 >= 80% of raw; batch 1024 > 200000 entries/s; 1 GiB recovery < 2 s");
}
