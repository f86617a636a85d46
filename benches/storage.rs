//! Storage benchmark (a plain binary, `harness = false`; run with `make bench-storage`).
//!
//! Measures, on the disk holding `ROCINANTE_BENCH_DIR` (default: the system temp dir):
//! - the raw rate of "append 154 bytes + fdatasync" on a bare file: the ceiling for a WAL that
//!   makes every write durable (154 bytes is one 128-byte entry's record);
//! - `Storage::append` of 128-byte entries with `Fsync::Always` at batch sizes 1, 64 and 1024:
//!   entries/s, payload MB/s and fsyncs/s, beside that raw rate. The four are run in
//!   interleaved slices, so a shared disk's drifting rate affects them alike;
//! - recovery (`Storage::open`) of a log of `ROCINANTE_BENCH_RECOVERY_BYTES` (default 1 GiB),
//!   written just before, so its pages are likely in the page cache (warm recovery).
//!
//! Goals (issue 3): batch 1 within 80% of the raw fdatasync rate; batch 1024 above 200,000
//! entries/s; recovery of 1 GiB under 2 s. Each of the four contenders runs for
//! `ROCINANTE_BENCH_SECS` (default 3) seconds in total.

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

/// Counts for one contender: calls made (each one fdatasync), entries written, time spent.
#[derive(Default)]
struct Tally {
    calls: u64,
    entries: u64,
    secs: f64,
}

/// "append RECORD_BYTES, fdatasync" on a bare file: the raw rate of the disk.
struct Raw {
    file: std::fs::File,
}

impl Raw {
    fn run(&mut self, slice: Duration, tally: &mut Tally) -> std::io::Result<()> {
        let record = [0x5au8; RECORD_BYTES];
        let start = Instant::now();
        while start.elapsed() < slice {
            self.file.write_all(&record)?;
            self.file.sync_data()?;
            tally.calls += 1;
            tally.entries += 1;
        }
        tally.secs += start.elapsed().as_secs_f64();
        Ok(())
    }
}

/// `Storage::append` of `entries.len()` 128-byte entries per call, fsync on.
struct Appender {
    storage: Storage,
    entries: Vec<Entry>,
    next: u64,
}

impl Appender {
    fn new(dir: &Path, batch: usize) -> Result<Appender, StorageError> {
        let options = StorageOptions {
            fsync: Fsync::Always,
            ..StorageOptions::default()
        };
        let (storage, _) = Storage::open(dir, options)?;
        let data = Bytes::from(vec![0xa5u8; ENTRY_DATA_BYTES]);
        let entry = Entry {
            term: Term(1),
            index: Index(0),
            kind: EntryKind::Normal,
            data,
        };
        Ok(Appender {
            storage,
            entries: vec![entry; batch],
            next: 1,
        })
    }

    fn run(&mut self, slice: Duration, tally: &mut Tally) -> Result<(), StorageError> {
        let start = Instant::now();
        while start.elapsed() < slice {
            for entry in self.entries.iter_mut() {
                entry.index = Index(self.next);
                self.next += 1;
            }
            self.storage.append(None, &self.entries)?;
            tally.calls += 1;
            tally.entries += self.entries.len() as u64;
        }
        tally.secs += start.elapsed().as_secs_f64();
        Ok(())
    }
}

/// Run the raw disk and the three batch sizes in interleaved slices (`ROUNDS` rounds over
/// `run` each), so a shared disk's drifting rate affects every contender alike.
fn append_rates(run: Duration) -> Result<(Tally, Vec<(usize, Tally)>), StorageError> {
    const ROUNDS: u32 = 10;
    let slice = run / ROUNDS;
    let raw_dir = scratch("raw");
    let raw_path = raw_dir.join("raw");
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&raw_path)
        .map_err(|e| io(&raw_path, e))?;
    let mut raw = Raw { file };
    let mut raw_tally = Tally::default();
    let mut contenders = Vec::new();
    for batch in [1usize, 64, 1024] {
        let dir = scratch(&format!("batch{batch}"));
        contenders.push((
            batch,
            dir.clone(),
            Appender::new(&dir, batch)?,
            Tally::default(),
        ));
    }
    for _ in 0..ROUNDS {
        raw.run(slice, &mut raw_tally)
            .map_err(|e| io(&raw_path, e))?;
        for (_, _, appender, tally) in contenders.iter_mut() {
            appender.run(slice, tally)?;
        }
    }
    let _ = std::fs::remove_dir_all(&raw_dir);
    let mut out = Vec::new();
    for (batch, dir, appender, tally) in contenders {
        drop(appender);
        let _ = std::fs::remove_dir_all(&dir);
        out.push((batch, tally));
    }
    Ok((raw_tally, out))
}

/// Write a log of about `bytes` (without fsync: only its recovery is measured), then time
/// `Storage::open` over it. Returns (entries recovered, wall seconds, CPU seconds).
fn recovery_time(dir: &Path, bytes: u64) -> Result<(usize, f64, f64), StorageError> {
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
    let (cpu_before, start) = (cpu_seconds(), Instant::now());
    let (_storage, recovered) = Storage::open(dir, options)?;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    Ok((recovered.entries.len(), secs, cpu))
}

/// CPU time (user + system) this process has used so far, from /proc/self/stat (Linux), or 0.
/// Reported beside wall time because the benchmark may share its cores with other work.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the stat line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
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

    let (raw, results) = append_rates(run).unwrap_or_else(|e| panic!("append: {e}"));
    let raw_rate = raw.calls as f64 / raw.secs;
    println!("raw disk: append {RECORD_BYTES} B + fdatasync: {raw_rate:.0} fsyncs/s");
    for (batch, tally) in results {
        let entries_s = tally.entries as f64 / tally.secs;
        let fsyncs_s = tally.calls as f64 / tally.secs;
        let payload_mb_s = entries_s * ENTRY_DATA_BYTES as f64 / 1e6;
        let disk_mb_s = entries_s * RECORD_BYTES as f64 / 1e6;
        println!(
            "append batch {batch:>4}: {entries_s:>10.0} entries/s  {payload_mb_s:>7.2} MB/s payload \
             ({disk_mb_s:.2} MB/s on disk)  {fsyncs_s:>7.0} fsyncs/s  = {:.0}% of raw fdatasync",
            100.0 * fsyncs_s / raw_rate
        );
    }

    let dir = scratch("recovery");
    let (entries, secs, cpu) =
        recovery_time(&dir, recovery_bytes).unwrap_or_else(|e| panic!("recovery: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let gib = recovery_bytes as f64 / (1u64 << 30) as f64;
    println!(
        "recovery: {gib:.3} GiB log, {entries} entries, in {secs:.3} s wall ({:.2} GiB/s), \
         {cpu:.2} s CPU, warm page cache",
        gib / secs
    );
    println!("goals: batch 1 >= 80% of raw; batch 1024 > 200000 entries/s; 1 GiB recovery < 2 s");
}
