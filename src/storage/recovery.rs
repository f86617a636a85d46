//! Recovery: rebuild the hard state, the latest snapshot and the log after it from a data
//! directory, repairing only what a crash can legitimately leave behind.
//!
//! The rule (after etcd's WAL): a crash can only tear the LAST write, and the last write only
//! ever lands at the end of the LAST segment. So damage there, with no valid record after it,
//! is a torn tail: it is cut off, its bytes are kept beside the segment as `<segment>.broken`
//! (never deleted), and the node starts, with the repair described in `Recovered::repairs`.
//! Anything else is corruption and returns `StorageError::Corrupt` naming the file and offset,
//! before anything on disk is touched:
//! - damage in a sealed (not last) segment, including a torn record there;
//! - damage in the last segment with a valid record after it (acknowledged data follows);
//! - a record whose checksum is valid but whose content is not (bad payload, wrong header,
//!   an entry index that does not follow the log);
//! - a snapshot that fails its checksum, or a log that does not reach back to the snapshot.
//!
//! The CLI maps `StorageError::Corrupt` to exit code 3: an operator must look (with
//! `rocinante wal inspect DIR`) before the node may run again. A node that ran on a log it had
//! guessed at could vote twice in a term or lose committed entries (§5.2, §5.4).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::fsio::io_err;
use super::record::Record;
use super::segment::{self, Damage};
use super::wal::{LogState, SegmentInfo, Wal};
use super::{Recovered, StorageError, StorageOptions, snapshot_file};
use crate::raft::{Entry, HardState, Index, SnapshotMeta, Term};

/// The log as rebuilt by replaying records in order. Pure.
///
/// Invariant: `entries[i].index == base + 1 + i` once `base` is known; `base` is unknown only
/// until the first entry or truncation record.
#[derive(Debug, Default)]
pub struct Replay {
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
    pub base: Option<Index>,
}

impl Replay {
    /// The index of the last entry, or the base if the log is empty after it.
    pub fn last_index(&self) -> Option<Index> {
        self.base.map(|b| Index(b.0 + self.entries.len() as u64))
    }

    /// Apply one record. An error means a valid record that does not fit the log: corruption.
    pub fn apply(&mut self, record: Record) -> Result<(), String> {
        match record {
            Record::Entry(entry) => {
                let expected = self.last_index().unwrap_or(entry.index.prev()).next();
                if entry.index != expected {
                    return Err(format!(
                        "entry index {} where {expected} was due",
                        entry.index
                    ));
                }
                self.base.get_or_insert(entry.index.prev());
                self.entries.push(entry);
            }
            Record::HardState(hs) => self.hard_state = hs,
            Record::Truncate { last_kept } => self.truncate(last_kept),
            Record::SegmentHeader { .. } => {}
        }
        Ok(())
    }

    /// Void every entry above `last_kept` (§5.3); past the end, restart the log after it.
    fn truncate(&mut self, last_kept: Index) {
        match self.base {
            Some(base)
                if last_kept >= base && last_kept.0 - base.0 <= self.entries.len() as u64 =>
            {
                self.entries.truncate((last_kept.0 - base.0) as usize);
            }
            _ => {
                self.entries.clear();
                self.base = Some(last_kept);
            }
        }
    }
}

/// Read a whole file into one shared buffer (entries are zero-copy slices of it).
pub fn read_file(path: &Path) -> Result<Bytes, StorageError> {
    std::fs::read(path).map(Bytes::from).map_err(io_err(path))
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// Damage at the end of the last segment that may be cut off, with the segment's bytes.
pub type TornTail = (Damage, Bytes);

/// Replay the segments `segments` (in order) into `replay`, returning the per-segment facts the
/// WAL needs, and the torn tail of the last segment if there is one. Nothing is modified.
pub fn replay_segments(
    segments: &[(Index, PathBuf)],
    replay: &mut Replay,
) -> Result<(Vec<SegmentInfo>, Option<TornTail>), StorageError> {
    let mut infos = Vec::with_capacity(segments.len());
    let mut torn = None;
    for (i, (first, path)) in segments.iter().enumerate() {
        let file = read_file(path)?;
        let mut max_entry: Option<Index> = None;
        let outcome = segment::scan(*first, &file, |_, record| {
            if let Record::Entry(e) = &record {
                max_entry = max_entry.max(Some(e.index));
            }
            replay.apply(record).map_err(|reason| (reason, true))
        });
        let damage = match outcome {
            Ok(None) => None,
            Ok(Some(damage)) | Err(damage) => Some(damage),
        };
        let mut bytes = file.len() as u64;
        if let Some(damage) = damage {
            let last = i + 1 == segments.len();
            if !(last && damage.is_torn_tail()) {
                let after = match damage.valid_record_after {
                    Some(at) => format!(" (valid record follows at offset {at})"),
                    None if !last => " (in a sealed segment)".to_string(),
                    None => String::new(),
                };
                return Err(corrupt(
                    path,
                    damage.offset,
                    format!("{}{after}", damage.reason),
                ));
            }
            bytes = damage.offset;
            torn = Some((damage, file));
        }
        infos.push(SegmentInfo {
            first: *first,
            path: path.clone(),
            bytes,
            max_entry,
        });
    }
    Ok((infos, torn))
}

/// Open `dir` (creating it if needed), recover everything in it, and return the WAL ready to
/// append after the last recovered entry.
pub fn open(dir: &Path, options: StorageOptions) -> Result<(Wal, Recovered), StorageError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let (snapshots, _temps) = snapshot_file::list(dir)?;
    let snapshot = match snapshots.last() {
        Some((index, path)) => Some(snapshot_file::load(path, *index)?),
        None => None,
    };
    let snapshot_index = snapshot
        .as_ref()
        .map_or(Index(0), |(m, _)| m.last_included_index);
    let segments = segment::list(dir)?;
    let mut replay = Replay::default();
    let (mut infos, torn) = replay_segments(&segments, &mut replay)?;
    let wal_last = replay.last_index().unwrap_or(snapshot_index);
    let terms = term_runs(&replay.entries);
    let entries = entries_after_snapshot(&mut replay, snapshot.as_ref().map(|(m, _)| m), &infos)?;

    // Every check has passed: only now may the torn tail be cut off.
    let mut repairs = Vec::new();
    if let (Some((damage, file)), Some(last)) = (torn, infos.last()) {
        let broken = segment::cut_tail(dir, &last.path, &file, damage.offset)?;
        repairs.push(format!(
            "{}: torn tail cut at offset {} ({}); {} bytes kept in {}",
            last.path.display(),
            damage.offset,
            damage.reason,
            file.len() as u64 - damage.offset,
            broken.display()
        ));
    }
    let hard_state = replay.hard_state;
    let active = open_active(dir, &mut infos, wal_last, &hard_state)?;
    let snapshot_term = snapshot
        .as_ref()
        .map_or(Term(0), |(m, _)| m.last_included_term);
    let state = LogState {
        wal_last,
        snapshot_index,
        snapshot_term,
        hard_state,
        terms,
    };
    let wal = Wal::new(dir, options, infos, active, state);
    Ok((
        wal,
        Recovered {
            hard_state,
            snapshot,
            entries,
            repairs,
        },
    ))
}

/// `(first index, term)` of each run of equal terms in `entries`.
fn term_runs(entries: &[Entry]) -> Vec<(Index, Term)> {
    let mut runs: Vec<(Index, Term)> = Vec::new();
    for entry in entries {
        if runs.last().map(|&(_, term)| term) != Some(entry.term) {
            runs.push((entry.index, entry.term));
        }
    }
    runs
}

/// Drop the entries a snapshot covers; check the log reaches back to the snapshot (or to
/// index 1 without one), so no committed entry can be missing in between.
fn entries_after_snapshot(
    replay: &mut Replay,
    snapshot: Option<&SnapshotMeta>,
    infos: &[SegmentInfo],
) -> Result<Vec<Entry>, StorageError> {
    let snapshot_index = snapshot.map_or(Index(0), |m| m.last_included_index);
    let Some(base) = replay.base else {
        return Ok(Vec::new());
    };
    if base > snapshot_index {
        let path = infos.first().map_or_else(PathBuf::new, |s| s.path.clone());
        let reason = format!(
            "log starts at index {} but the snapshot ends at {snapshot_index}: entries missing",
            base.next()
        );
        return Err(corrupt(&path, 0, reason));
    }
    let covered = ((snapshot_index.0 - base.0) as usize).min(replay.entries.len());
    let mut entries = std::mem::take(&mut replay.entries);
    entries.drain(..covered);
    Ok(entries)
}

/// Open the last segment for appending, creating the first segment of an empty directory, and
/// rewriting the header of a last segment whose whole content was a torn tail.
fn open_active(
    dir: &Path,
    infos: &mut Vec<SegmentInfo>,
    wal_last: Index,
    hard_state: &HardState,
) -> Result<File, StorageError> {
    let mut buf = Vec::new();
    let Some(last) = infos.last_mut() else {
        let first = wal_last.next();
        let (file, path, bytes) = segment::create(dir, first, hard_state, &mut buf)?;
        infos.push(SegmentInfo {
            first,
            path,
            bytes,
            max_entry: None,
        });
        return Ok(file);
    };
    let path = last.path.clone();
    let mut file = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io_err(&path))?;
    if last.bytes == 0 {
        segment::write_preamble(&mut buf, last.first, hard_state);
        file.write_all(&buf).map_err(io_err(&path))?;
        file.sync_data().map_err(io_err(&path))?;
        last.bytes = buf.len() as u64;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{EntryKind, Term};

    fn entry(index: u64) -> Record {
        Record::Entry(Entry {
            term: Term(1),
            index: Index(index),
            kind: EntryKind::Normal,
            data: Bytes::new(),
        })
    }

    fn indexes(r: &Replay) -> Vec<u64> {
        r.entries.iter().map(|e| e.index.0).collect()
    }

    #[test]
    fn replay_honours_truncation_and_restart() {
        let mut r = Replay::default();
        for i in 1..=5 {
            r.apply(entry(i)).expect("contiguous");
        }
        r.apply(Record::Truncate {
            last_kept: Index(3),
        })
        .expect("truncate");
        assert!(
            r.apply(entry(5)).is_err(),
            "a gap after truncation is corruption"
        );
        r.apply(entry(4)).expect("follows the truncation");
        assert_eq!(indexes(&r), vec![1, 2, 3, 4]);
        r.apply(Record::Truncate {
            last_kept: Index(10),
        })
        .expect("restart after a snapshot");
        assert_eq!(r.last_index(), Some(Index(10)));
        r.apply(entry(11)).expect("follows the restart");
        assert_eq!(indexes(&r), vec![11]);
        r.apply(Record::Truncate {
            last_kept: Index(7),
        })
        .expect("below the base");
        assert_eq!((r.base, indexes(&r)), (Some(Index(7)), vec![]));
    }
}
