//! Corruption: a bit flipped in each region of the data directory gives its documented
//! outcome. The tail record of the last segment: repaired like a torn write (it cannot be told
//! apart from one, and nothing valid follows it). Anything else (a record with valid records
//! after it, a sealed segment, the snapshot, a hard state record in a sealed place): an error
//! naming the file and the offset of the damaged record, with nothing on disk changed.

use std::path::{Path, PathBuf};

use rocinante::storage::Storage;
use rocinante::storage::frame::{Decoded, decode};

use crate::{
    TempDir, dir_contents, entries, expect_corrupt, hs, meta, open, options, segment_paths,
};

const SEGMENT_BYTES_MAX: u64 = 300;

/// Three segments: 1 (entries 1..=6, sealed), 7 (entries 7..=12, sealed), 13 (entries
/// 13..=15, last), and a snapshot at index 2.
fn build() -> TempDir {
    let dir = TempDir::new("corruption");
    let (mut storage, _) = open(dir.path(), SEGMENT_BYTES_MAX);
    storage
        .append(Some(&hs(1, Some(1))), &entries(1, 1, 3, 20))
        .expect("append");
    storage.append(None, &entries(1, 4, 6, 20)).expect("append");
    storage
        .save_snapshot(&meta(2, 1), b"state machine at 2")
        .expect("snapshot");
    storage
        .append(Some(&hs(2, Some(2))), &entries(2, 7, 9, 20))
        .expect("append");
    storage
        .append(None, &entries(2, 10, 12, 20))
        .expect("append");
    storage
        .append(None, &entries(2, 13, 15, 20))
        .expect("append");
    let names: Vec<_> = segment_paths(dir.path()).iter().map(|p| name(p)).collect();
    assert_eq!(
        names,
        [
            "00000000000000000001.wal",
            "00000000000000000007.wal",
            "00000000000000000013.wal"
        ]
    );
    dir
}

fn name(path: &Path) -> String {
    path.file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

/// (offset, length) of every record in a segment file.
fn records(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Decoded::Record { len, .. } = decode(&bytes[at..]) {
        out.push((at, len));
        at += len;
    }
    assert_eq!(at, bytes.len(), "test segment must be whole");
    out
}

/// Flip one bit in place (no truncation: rewriting whole files is slow on ext4).
fn flip(path: &Path, bit: usize) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, (bit / 8) as u64)
        .expect("read");
    byte[0] ^= 1 << (bit % 8);
    file.write_all_at(&byte, (bit / 8) as u64).expect("write");
}

fn reopen(
    dir: &Path,
) -> Result<(Storage, rocinante::storage::Recovered), rocinante::storage::StorageError> {
    Storage::open(dir, options(SEGMENT_BYTES_MAX))
}

/// Every bit of a segment flipped in turn: the damaged record is the one reported, or, for the
/// tail record of the last segment only, it is cut off and the node starts.
fn flip_every_bit(segment_index: usize, tail_repairable: bool) {
    let pristine = build();
    let segment = segment_paths(pristine.path())[segment_index].clone();
    let bytes = std::fs::read(&segment).expect("read");
    let recs = records(&bytes);
    for (n, &(offset, len)) in recs.iter().enumerate() {
        let is_tail = n + 1 == recs.len();
        // Repairs fsync several times each, so the repairable tail record is sampled (every
        // 11th bit, covering every field); every other record is flipped at every bit.
        let step = if is_tail && tail_repairable { 11 } else { 1 };
        for bit in (offset * 8..(offset + len) * 8).step_by(step) {
            let what = format!("{} bit {bit} (record at {offset})", name(&segment));
            if is_tail && tail_repairable {
                let dir = TempDir::new("flip");
                copy(pristine.path(), dir.path());
                flip(&dir.path().join(name(&segment)), bit);
                let (_, recovered) = reopen(dir.path()).unwrap_or_else(|e| panic!("{what}: {e}"));
                let mut want = entries(1, 3, 6, 20);
                want.extend(entries(2, 7, 14, 20));
                assert_eq!(recovered.entries, want, "{what}");
                assert_eq!(recovered.repairs.len(), 1, "{what}");
                continue;
            }
            // A refused open changes nothing, so the same directory is reused: flip, check,
            // flip back.
            flip(&segment, bit);
            let before = dir_contents(pristine.path());
            let (path, at, reason) = expect_corrupt(reopen(pristine.path()));
            assert_eq!(
                (path, at),
                (segment.clone(), offset as u64),
                "{what}: {reason}"
            );
            assert_eq!(
                dir_contents(pristine.path()),
                before,
                "{what}: nothing may change"
            );
            flip(&segment, bit);
        }
    }
}

fn copy(from: &Path, to: &Path) {
    for dirent in std::fs::read_dir(from).expect("read dir") {
        let dirent = dirent.expect("dirent");
        std::fs::copy(dirent.path(), to.join(dirent.file_name())).expect("copy");
    }
}

#[test]
fn pristine_directory_recovers() {
    let dir = build();
    let (storage, recovered) = reopen(dir.path()).expect("open");
    let mut want = entries(1, 3, 6, 20);
    want.extend(entries(2, 7, 15, 20));
    assert_eq!(recovered.entries, want);
    assert_eq!(recovered.hard_state, hs(2, Some(2)));
    assert_eq!(storage.last_index().0, 15);
}

/// Last segment: the tail record is repaired, every other record (its header, its hard state,
/// an entry with entries after it) is corruption.
#[test]
fn bit_flip_in_last_segment() {
    flip_every_bit(2, true);
}

/// A sealed segment, including its hard state records: always corruption, even its last record.
#[test]
fn bit_flip_in_sealed_segment() {
    flip_every_bit(1, false);
}

#[test]
fn bit_flip_in_snapshot_is_corruption() {
    let pristine = build();
    let snapshot: PathBuf = pristine.path().join("00000000000000000002.snap");
    let len = std::fs::metadata(&snapshot).expect("stat").len() as usize;
    for bit in 0..len * 8 {
        flip(&snapshot, bit);
        let before = dir_contents(pristine.path());
        let (path, _, reason) = expect_corrupt(reopen(pristine.path()));
        assert_eq!(path, snapshot, "bit {bit}: {reason}");
        assert_eq!(
            dir_contents(pristine.path()),
            before,
            "bit {bit}: nothing may change"
        );
        flip(&snapshot, bit);
    }
}

/// A hard state record as the last record of the last segment is a tail like any other: cut
/// off, and the node restarts with the previous hard state. Safe: the append that wrote it
/// never returned, so the vote or term it carried was never acted on (§5.2).
#[test]
fn bit_flip_in_tail_hard_state_restores_the_previous_one() {
    let dir = build();
    let (mut storage, _) = reopen(dir.path()).expect("open");
    storage
        .append(Some(&hs(3, Some(3))), &[])
        .expect("hard state");
    drop(storage);
    let last = segment_paths(dir.path()).pop().expect("segment");
    let len = std::fs::metadata(&last).expect("stat").len() as usize;
    flip(&last, (len - 5) * 8);
    let (_, recovered) = reopen(dir.path()).expect("open");
    assert_eq!(recovered.hard_state, hs(2, Some(2)));
    assert_eq!(recovered.repairs.len(), 1);
}

#[test]
fn torn_record_in_sealed_segment_is_corruption() {
    let dir = build();
    let sealed = segment_paths(dir.path())[1].clone();
    let bytes = std::fs::read(&sealed).expect("read");
    let (offset, _) = *records(&bytes).last().expect("records");
    std::fs::write(&sealed, &bytes[..bytes.len() - 1]).expect("tear");
    let (path, at, _) = expect_corrupt(reopen(dir.path()));
    assert_eq!((path, at), (sealed, offset as u64));
}

#[test]
fn missing_middle_segment_is_corruption() {
    let dir = build();
    let segments = segment_paths(dir.path());
    std::fs::remove_file(&segments[1]).expect("remove");
    let before = dir_contents(dir.path());
    let (path, _, reason) = expect_corrupt(reopen(dir.path()));
    assert_eq!(path, segments[2], "{reason}");
    assert!(reason.contains("index 13 where 7 was due"), "{reason}");
    assert_eq!(dir_contents(dir.path()), before);
}

#[test]
fn zeroed_tail_is_cut_off() {
    let dir = build();
    let last = segment_paths(dir.path()).pop().expect("segment");
    let mut bytes = std::fs::read(&last).expect("read");
    let valid = bytes.len();
    bytes.extend_from_slice(&[0u8; 4096]);
    std::fs::write(&last, &bytes).expect("write");
    let (_, recovered) = reopen(dir.path()).expect("open");
    assert_eq!(recovered.entries.last().map(|e| e.index.0), Some(15));
    assert_eq!(
        std::fs::metadata(&last).expect("stat").len() as usize,
        valid
    );
    assert!(
        recovered.repairs[0].contains(&format!("offset {valid}")),
        "{:?}",
        recovered.repairs
    );
}

#[test]
fn corrupt_error_maps_to_exit_code_3() {
    let dir = build();
    let segments = segment_paths(dir.path());
    flip(&segments[0], 100 * 8);
    match reopen(dir.path()) {
        Err(e) => assert_eq!(e.exit_code(), rocinante::storage::EXIT_CODE_CORRUPT),
        Ok(_) => panic!("must not open"),
    }
}

#[test]
fn inspect_names_corruption_without_touching_it() {
    let dir = build();
    let sealed = segment_paths(dir.path())[1].clone();
    flip(&sealed, 60 * 8);
    let before = dir_contents(dir.path());
    let report = rocinante::storage::inspect(dir.path()).expect("inspect");
    assert_eq!(dir_contents(dir.path()), before);
    for needle in [
        "00000000000000000007.wal",
        "DAMAGE at offset",
        "CORRUPT",
        "exit code 3",
    ] {
        assert!(report.contains(needle), "missing {needle:?} in:\n{report}");
    }
}
