//! Storage integration tests: crash (torn writes at every offset), corruption (a bit flipped
//! in each region), a property test against an in-memory model, and golden segment files.
//! Each test works in its own fresh directory under `std::env::temp_dir()`, removed on success.
//!
//! This file holds the shared helpers and the plain behaviour tests; the themed suites live in
//! `tests/storage/`.

mod storage {
    pub mod corruption;
    pub mod golden;
    pub mod model;
    pub mod torn;
}

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use rocinante::raft::{Entry, EntryKind, HardState, Index, NodeId, SnapshotMeta, Term};
use rocinante::storage::{Fsync, Recovered, Storage, StorageError, StorageOptions};

/// A unique scratch directory, deleted when dropped (kept if the test panics, for debugging).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "rocinante-storage-{}-{name}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// An entry whose data is `len` bytes derived from its index and term (deterministic).
pub fn entry(term: u64, index: u64, len: usize) -> Entry {
    let data: Vec<u8> = (0..len)
        .map(|i| (index as usize * 31 + term as usize * 7 + i) as u8)
        .collect();
    Entry {
        term: Term(term),
        index: Index(index),
        kind: EntryKind::Normal,
        data: Bytes::from(data),
    }
}

pub fn entries(term: u64, from: u64, to: u64, len: usize) -> Vec<Entry> {
    (from..=to).map(|i| entry(term, i, len)).collect()
}

pub fn hs(term: u64, vote: Option<u64>) -> HardState {
    HardState {
        current_term: Term(term),
        voted_for: vote.map(NodeId),
    }
}

pub fn options(segment_bytes_max: u64) -> StorageOptions {
    StorageOptions {
        segment_bytes_max,
        fsync: Fsync::Always,
    }
}

pub fn open(dir: &Path, segment_bytes_max: u64) -> (Storage, Recovered) {
    Storage::open(dir, options(segment_bytes_max)).expect("open")
}

pub fn meta(index: u64, term: u64) -> SnapshotMeta {
    SnapshotMeta {
        last_included_index: Index(index),
        last_included_term: Term(term),
        voters: vec![NodeId(1), NodeId(2), NodeId(3)],
        learners: vec![],
    }
}

/// Names and bytes of every file in `dir`, sorted: to prove a failed open modified nothing.
pub fn dir_contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|d| {
            let d = d.expect("dirent");
            let bytes = std::fs::read(d.path()).expect("read");
            (d.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    out.sort();
    out
}

/// Segment file paths in `dir`, in log order.
pub fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|d| d.expect("dirent").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    out.sort();
    out
}

pub fn expect_corrupt(
    result: Result<(Storage, Recovered), StorageError>,
) -> (PathBuf, u64, String) {
    match result {
        Err(StorageError::Corrupt {
            path,
            offset,
            reason,
        }) => (path, offset, reason),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok((_, r)) => panic!(
            "expected Corrupt, recovered {} entries, repairs {:?}",
            r.entries.len(),
            r.repairs
        ),
    }
}

#[test]
fn empty_directory_opens_empty() {
    let dir = TempDir::new("empty");
    let (storage, recovered) = open(dir.path(), 1 << 20);
    assert_eq!(storage.last_index(), Index(0));
    assert_eq!(recovered.hard_state, HardState::default());
    assert!(recovered.entries.is_empty() && recovered.snapshot.is_none());
    assert_eq!(
        segment_paths(dir.path()).len(),
        1,
        "the first segment exists from the start"
    );
}

#[test]
fn appends_and_hard_state_survive_reopen() {
    let dir = TempDir::new("reopen");
    let (mut storage, _) = open(dir.path(), 1 << 20);
    storage
        .append(Some(&hs(1, Some(7))), &entries(1, 1, 3, 10))
        .expect("append");
    storage.append(None, &entries(1, 4, 4, 0)).expect("append");
    storage
        .append(Some(&hs(2, None)), &[])
        .expect("hard state only");
    drop(storage);
    let (storage, recovered) = open(dir.path(), 1 << 20);
    assert_eq!(recovered.hard_state, hs(2, None));
    let mut want = entries(1, 1, 3, 10);
    want.extend(entries(1, 4, 4, 0));
    assert_eq!(recovered.entries, want);
    assert_eq!(storage.last_index(), Index(4));
    assert!(recovered.repairs.is_empty());
}

#[test]
fn conflicting_suffix_is_truncated_durably_across_segments() {
    let dir = TempDir::new("truncate");
    // Tiny segments: every batch rolls, so the truncation reaches back several segments.
    let (mut storage, _) = open(dir.path(), 64);
    for i in 1..=10 {
        storage
            .append(Some(&hs(1, Some(1))), &[entry(1, i, 20)])
            .expect("append");
    }
    let segments_before = segment_paths(dir.path()).len();
    assert!(
        segments_before >= 5,
        "rolled into {segments_before} segments"
    );
    storage
        .append(Some(&hs(2, Some(2))), &entries(2, 4, 5, 20))
        .expect("overwrite from 4");
    assert_eq!(storage.last_index(), Index(5));
    drop(storage);
    let (mut storage, recovered) = open(dir.path(), 64);
    let mut want = entries(1, 1, 3, 20);
    want.extend(entries(2, 4, 5, 20));
    assert_eq!(recovered.entries, want);
    assert_eq!(recovered.hard_state, hs(2, Some(2)));
    // The log keeps working after the deep truncation: appends, rolls, and another reopen.
    for i in 6..=20 {
        storage.append(None, &[entry(2, i, 20)]).expect("append");
    }
    drop(storage);
    let (_, recovered) = open(dir.path(), 64);
    want.extend(entries(2, 6, 20, 20));
    assert_eq!(recovered.entries, want);
    let names = segment_paths(dir.path());
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[test]
fn compaction_deletes_only_segments_covered_by_the_snapshot() {
    let dir = TempDir::new("compact");
    let (mut storage, _) = open(dir.path(), 200);
    storage
        .append(Some(&hs(3, Some(9))), &[])
        .expect("hard state");
    for i in 1..=60 {
        storage.append(None, &[entry(3, i, 40)]).expect("append");
    }
    let before = segment_paths(dir.path()).len();
    storage
        .compact(Index(60))
        .expect("compact without snapshot");
    assert_eq!(
        segment_paths(dir.path()).len(),
        before,
        "no snapshot: nothing may go"
    );
    storage
        .save_snapshot(&meta(30, 3), b"state at 30")
        .expect("snapshot");
    storage.compact(Index(30)).expect("compact");
    let after = segment_paths(dir.path()).len();
    assert!(after < before, "{after} segments left of {before}");
    drop(storage);
    let (storage, recovered) = open(dir.path(), 200);
    assert_eq!(
        recovered.hard_state,
        hs(3, Some(9)),
        "hard state survives compaction"
    );
    assert_eq!(
        recovered.snapshot,
        Some((meta(30, 3), b"state at 30".to_vec()))
    );
    assert_eq!(recovered.entries, entries(3, 31, 60, 40));
    assert_eq!(storage.last_index(), Index(60));
}

#[test]
fn snapshot_past_the_log_restarts_it() {
    let dir = TempDir::new("restart");
    let (mut storage, _) = open(dir.path(), 1 << 20);
    storage.append(None, &entries(1, 1, 5, 8)).expect("append");
    storage
        .save_snapshot(&meta(100, 4), b"installed")
        .expect("snapshot");
    storage.compact(Index(100)).expect("compact");
    assert_eq!(storage.last_index(), Index(100));
    storage
        .append(Some(&hs(4, None)), &entries(4, 101, 102, 8))
        .expect("append after");
    drop(storage);
    let (storage, recovered) = open(dir.path(), 1 << 20);
    assert_eq!(recovered.entries, entries(4, 101, 102, 8));
    assert_eq!(recovered.snapshot.map(|s| s.0), Some(meta(100, 4)));
    assert_eq!(storage.last_index(), Index(102));
}

#[test]
fn newer_snapshot_replaces_older() {
    let dir = TempDir::new("snapshots");
    let (mut storage, _) = open(dir.path(), 1 << 20);
    storage.append(None, &entries(1, 1, 20, 8)).expect("append");
    storage
        .save_snapshot(&meta(5, 1), b"five")
        .expect("snapshot");
    storage
        .save_snapshot(&meta(10, 1), b"ten")
        .expect("snapshot");
    let snaps: Vec<_> = dir_contents(dir.path())
        .into_iter()
        .filter(|(n, _)| n.contains(".snap"))
        .collect();
    assert_eq!(
        snaps.len(),
        1,
        "older snapshot removed once the new one is durable"
    );
    drop(storage);
    let (_, recovered) = open(dir.path(), 1 << 20);
    assert_eq!(recovered.snapshot, Some((meta(10, 1), b"ten".to_vec())));
    assert_eq!(recovered.entries, entries(1, 11, 20, 8));
}

#[test]
fn entries_reads_ranges_bounded_by_bytes() {
    let dir = TempDir::new("read");
    let (mut storage, _) = open(dir.path(), 300);
    for i in 1..=30 {
        storage.append(None, &[entry(1, i, 50)]).expect("append");
    }
    storage
        .append(None, &entries(2, 25, 35, 50))
        .expect("overwrite a suffix");
    let mut log = entries(1, 1, 24, 50);
    log.extend(entries(2, 25, 35, 50));
    assert_eq!(
        storage
            .entries(Index(1), Index(35), u64::MAX)
            .expect("read"),
        log
    );
    assert_eq!(
        storage
            .entries(Index(20), Index(28), u64::MAX)
            .expect("read"),
        log[19..28]
    );
    // Each entry counts 50 + 24 = 74 bytes: 200 bytes hold two; one is always returned.
    assert_eq!(
        storage.entries(Index(3), Index(35), 200).expect("read"),
        log[2..4]
    );
    assert_eq!(
        storage.entries(Index(3), Index(35), 1).expect("read"),
        log[2..3]
    );
    assert!(
        storage
            .entries(Index(36), Index(40), 1000)
            .expect("read")
            .is_empty()
    );
    storage.save_snapshot(&meta(10, 1), b"s").expect("snapshot");
    storage.compact(Index(10)).expect("compact");
    assert_eq!(
        storage
            .entries(Index(1), Index(12), u64::MAX)
            .expect("read"),
        log[10..12]
    );
}

#[test]
fn inspect_reports_without_modifying() {
    let dir = TempDir::new("inspect");
    let (mut storage, _) = open(dir.path(), 1 << 20);
    storage
        .append(Some(&hs(5, Some(2))), &entries(5, 1, 4, 16))
        .expect("append");
    storage
        .save_snapshot(&meta(2, 5), b"snap")
        .expect("snapshot");
    drop(storage);
    let segment = segment_paths(dir.path()).pop().expect("a segment");
    let len = std::fs::metadata(&segment).expect("stat").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open");
    file.set_len(len - 3).expect("tear the tail");
    let before = dir_contents(dir.path());
    let report = rocinante::storage::inspect(dir.path()).expect("inspect");
    assert_eq!(dir_contents(dir.path()), before, "inspect wrote something");
    for needle in [
        "current_term 5",
        "entries written 1..=3",
        "torn tail",
        "node can start",
        ".snap",
    ] {
        assert!(report.contains(needle), "missing {needle:?} in:\n{report}");
    }
}

/// §7: an installed snapshot whose last entry matches the log keeps the entries after it; one
/// that conflicts discards them, durably.
#[test]
fn installed_snapshot_keeps_or_discards_the_log_after_it() {
    let dir = TempDir::new("install");
    let (mut storage, _) = open(dir.path(), 1 << 20);
    storage.append(None, &entries(1, 1, 10, 8)).expect("append");
    storage
        .save_snapshot(&meta(4, 1), b"matches")
        .expect("snapshot");
    assert_eq!(storage.last_index(), Index(10));
    storage
        .save_snapshot(&meta(6, 2), b"conflicts")
        .expect("snapshot");
    assert_eq!(storage.last_index(), Index(6));
    drop(storage);
    let (mut storage, recovered) = open(dir.path(), 1 << 20);
    assert!(recovered.entries.is_empty(), "{:?}", recovered.entries);
    assert_eq!(storage.last_index(), Index(6));
    storage
        .append(None, &entries(2, 7, 8, 8))
        .expect("append after install");
    drop(storage);
    let (_, recovered) = open(dir.path(), 1 << 20);
    assert_eq!(recovered.entries, entries(2, 7, 8, 8));
}

/// Saving a snapshot again at the same index (after the log restarted behind it) keeps the
/// entries after it: the snapshot's own term is known without reading the log.
#[test]
fn resaving_a_snapshot_keeps_the_log() {
    let dir = TempDir::new("resave");
    let (mut storage, _) = open(dir.path(), 1 << 20);
    storage
        .save_snapshot(&meta(50, 3), b"installed")
        .expect("snapshot");
    storage
        .append(None, &entries(3, 51, 55, 8))
        .expect("append");
    storage
        .save_snapshot(&meta(50, 3), b"again")
        .expect("snapshot");
    assert_eq!(storage.last_index(), Index(55));
    drop(storage);
    let (mut storage, recovered) = open(dir.path(), 1 << 20);
    assert_eq!(recovered.entries, entries(3, 51, 55, 8));
    storage
        .save_snapshot(&meta(50, 3), b"after reopen")
        .expect("snapshot");
    drop(storage);
    let (_, recovered) = open(dir.path(), 1 << 20);
    assert_eq!(recovered.entries, entries(3, 51, 55, 8));
}
