//! Golden files: a small data directory written by today's code must match, byte for byte,
//! the files kept in `testdata/wal/`, and those files must recover to the expected log. So the
//! on-disk format cannot change by accident; a deliberate change bumps `FORMAT_VERSION` and
//! regenerates them with `UPDATE_GOLDEN=1 cargo test --test storage golden`.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use rocinante::raft::{Entry, EntryKind, Index, Term};

use crate::{TempDir, dir_contents, hs, meta, open};

const SEGMENT_BYTES_MAX: u64 = 150;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/wal")
}

fn e(term: u64, index: u64, kind: EntryKind, data: &'static [u8]) -> Entry {
    Entry {
        term: Term(term),
        index: Index(index),
        kind,
        data: Bytes::from_static(data),
    }
}

/// Two segments holding every record kind: headers, hard states (with and without a vote),
/// entries of every kind, a truncation; and a snapshot.
fn write_sample(dir: &Path) {
    let (mut storage, _) = open(dir, SEGMENT_BYTES_MAX);
    let first = [
        e(1, 1, EntryKind::Normal, b"put a=1"),
        e(1, 2, EntryKind::Noop, b""),
    ];
    storage.append(Some(&hs(1, None)), &first).expect("append");
    let conf = [e(1, 3, EntryKind::ConfChange, b"conf")];
    storage
        .append(Some(&hs(1, Some(0x0102_0304_0506_0708))), &conf)
        .expect("append");
    storage
        .append(None, &[e(1, 4, EntryKind::Normal, b"x")])
        .expect("append (rolls)");
    let replaced = [
        e(2, 4, EntryKind::Normal, b"y"),
        e(2, 5, EntryKind::Normal, b"z"),
    ];
    storage
        .append(Some(&hs(2, None)), &replaced)
        .expect("append (truncates)");
    storage
        .save_snapshot(&meta(2, 1), b"snapshot bytes")
        .expect("snapshot");
}

fn is_golden_file(name: &str) -> bool {
    name.ends_with(".wal") || name.ends_with(".snap")
}

#[test]
fn format_matches_golden_files() {
    let scratch = TempDir::new("golden");
    write_sample(scratch.path());
    let written = dir_contents(scratch.path());
    let golden = golden_dir();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(&golden).expect("create testdata/wal");
        for (name, _) in dir_contents(&golden)
            .into_iter()
            .filter(|(n, _)| is_golden_file(n))
        {
            std::fs::remove_file(golden.join(name)).expect("remove old golden");
        }
        for (name, bytes) in &written {
            std::fs::write(golden.join(name), bytes).expect("write golden");
        }
    }
    let kept: Vec<_> = dir_contents(&golden)
        .into_iter()
        .filter(|(n, _)| is_golden_file(n))
        .collect();
    let names =
        |files: &[(String, Vec<u8>)]| files.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&written),
        names(&kept),
        "file set differs from testdata/wal"
    );
    for ((name, now), (_, then)) in written.iter().zip(&kept) {
        assert!(
            now == then,
            "{name} differs from its golden copy: the on-disk format changed"
        );
    }
}

#[test]
fn golden_files_recover() {
    let scratch = TempDir::new("golden-read");
    for (name, bytes) in dir_contents(&golden_dir())
        .into_iter()
        .filter(|(n, _)| is_golden_file(n))
    {
        std::fs::write(scratch.path().join(name), bytes).expect("copy golden");
    }
    let (storage, recovered) = open(scratch.path(), SEGMENT_BYTES_MAX);
    assert_eq!(recovered.hard_state, hs(2, None));
    assert_eq!(
        recovered.snapshot,
        Some((meta(2, 1), b"snapshot bytes".to_vec()))
    );
    let want = [
        e(1, 3, EntryKind::ConfChange, b"conf"),
        e(2, 4, EntryKind::Normal, b"y"),
        e(2, 5, EntryKind::Normal, b"z"),
    ];
    assert_eq!(recovered.entries, want);
    assert_eq!(storage.last_index(), Index(5));
    assert!(recovered.repairs.is_empty());
}
