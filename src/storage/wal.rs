//! The write-ahead log: group commit of hard state and entries, durable truncation of a
//! conflicting suffix, compaction by whole segments, and reading entries back.
//!
//! Invariants:
//! - One `append` is one `write_all` of one buffer and one `sync_data`, whatever the batch
//!   size (group commit). The buffer is reused, so the append path allocates nothing once warm.
//! - Truncation (§5.3) is a Truncate record written in the same batch as the entries that
//!   replace the suffix; replay honours it wherever the voided entries were (even in earlier
//!   segments). Nothing is rewritten in place, so a crash never damages acknowledged records.
//! - Segment names only grow: a new segment is named after the next index to be written, and
//!   one is started only if that name is above the active segment's. After a deep truncation
//!   (back into an earlier segment) the active segment therefore keeps growing past
//!   `segment_bytes_max` until the log passes its name again; this is bounded by the number
//!   of entries truncated.
//! - A failed write or fsync poisons the WAL: every later call returns an error, because what
//!   reached the disk is unknown (and a retried fsync can falsely succeed). The node must stop.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::fsio::{io_err, remove_durably};
use super::recovery::{self, Replay};
use super::{Fsync, StorageError, StorageOptions, record, segment};
use crate::raft::{Entry, HardState, Index, SnapshotMeta, Term};

/// What the WAL remembers about one segment file.
#[derive(Clone, Debug)]
pub struct SegmentInfo {
    /// The index in the segment's name: the next index to be written when it was created.
    pub first: Index,
    pub path: PathBuf,
    /// Length of the file's valid content.
    pub bytes: u64,
    /// Highest entry index ever written into it (voided entries included), if any. A segment
    /// may be compacted away once this is at or below the snapshot.
    pub max_entry: Option<Index>,
}

/// Where the log stands, as recovered or as left by the last call.
#[derive(Clone, Debug, Default)]
pub struct LogState {
    /// Index of the last entry the WAL's records hold (or the snapshot's, if it holds none).
    pub wal_last: Index,
    /// The latest durable snapshot's last_included_index (0 if none).
    pub snapshot_index: Index,
    /// ... and its last_included_term: the term of the entry at `snapshot_index`.
    pub snapshot_term: Term,
    /// The latest hard state written, copied into each new segment's preamble.
    pub hard_state: HardState,
    /// The term of every entry the WAL holds, as runs: `(first index of the run, term)`,
    /// sorted by index. One element per term change, so it stays tiny; it lets a snapshot be
    /// compared with the log without reading segments (§7).
    pub terms: Vec<(Index, Term)>,
}

pub struct Wal {
    dir: PathBuf,
    options: StorageOptions,
    /// In log order; the last one is the active segment, open in `active`.
    segments: Vec<SegmentInfo>,
    active: File,
    state: LogState,
    /// The reused encode buffer. Grows to the largest batch seen and stays there.
    buf: Vec<u8>,
    poisoned: bool,
}

impl Wal {
    pub(super) fn new(
        dir: &Path,
        options: StorageOptions,
        segments: Vec<SegmentInfo>,
        active: File,
        state: LogState,
    ) -> Wal {
        assert!(
            !segments.is_empty(),
            "recovery always leaves an active segment"
        );
        let dir = dir.to_path_buf();
        Wal {
            dir,
            options,
            segments,
            active,
            state,
            buf: Vec::new(),
            poisoned: false,
        }
    }

    /// The last index of the log, counting a snapshot as covering everything up to its index.
    pub fn last_index(&self) -> Index {
        self.state.wal_last.max(self.state.snapshot_index)
    }

    pub fn segments(&self) -> &[SegmentInfo] {
        &self.segments
    }

    fn check_poisoned(&self) -> Result<(), StorageError> {
        if self.poisoned {
            let source = std::io::Error::other("an earlier write or fsync failed; restart");
            let path = self.active_path().to_path_buf();
            return Err(StorageError::Io { path, source });
        }
        Ok(())
    }

    fn active_path(&self) -> &Path {
        &self.segments[self.segments.len() - 1].path
    }

    /// Group commit: truncation (if the entries overwrite a suffix, §5.3), hard state and
    /// entries in one write and one fdatasync.
    pub fn append(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
    ) -> Result<(), StorageError> {
        self.check_poisoned()?;
        if hard_state.is_none() && entries.is_empty() {
            return Ok(());
        }
        self.maybe_roll()?;
        self.buf.clear();
        if let Some(first) = entries.first() {
            assert!(
                first.index.prev() <= self.last_index(),
                "append at {} leaves a gap after {}",
                first.index,
                self.last_index()
            );
            if first.index != self.state.wal_last.next() {
                record::encode_truncate(&mut self.buf, first.index.prev());
            }
        }
        if let Some(hs) = hard_state {
            record::encode_hard_state(&mut self.buf, hs);
        }
        let mut expected = entries.first().map(|e| e.index);
        for entry in entries {
            assert_eq!(
                Some(entry.index),
                expected,
                "entries of one batch must be contiguous"
            );
            expected = Some(entry.index.next());
            record::encode_entry(&mut self.buf, entry);
        }
        self.write_batch()?;
        if let Some(hs) = hard_state {
            self.state.hard_state = *hs;
        }
        self.note_terms(entries);
        if let Some(last) = entries.last() {
            self.state.wal_last = last.index;
            let active = self.segments.len() - 1;
            let max = &mut self.segments[active].max_entry;
            *max = (*max).max(Some(last.index));
        }
        Ok(())
    }

    /// Write `buf` to the active segment and (with `Fsync::Always`) fdatasync it.
    fn write_batch(&mut self) -> Result<(), StorageError> {
        let active = self.segments.len() - 1;
        let path = &self.segments[active].path;
        let written = self.active.write_all(&self.buf).map_err(io_err(path));
        let synced = written.and_then(|()| match self.options.fsync {
            Fsync::Always => self.active.sync_data().map_err(io_err(path)),
            Fsync::Never => Ok(()),
        });
        if synced.is_err() {
            self.poisoned = true;
        }
        synced?;
        self.segments[active].bytes += self.buf.len() as u64;
        Ok(())
    }

    /// Start a new segment if the active one has passed `segment_bytes_max` and the next index
    /// names a segment after it (see the module invariants).
    fn maybe_roll(&mut self) -> Result<(), StorageError> {
        let active = &self.segments[self.segments.len() - 1];
        let next = self.state.wal_last.next();
        if active.bytes < self.options.segment_bytes_max || next <= active.first {
            return Ok(());
        }
        let created = segment::create(&self.dir, next, &self.state.hard_state, &mut self.buf);
        let (file, path, bytes) = created.inspect_err(|_| self.poisoned = true)?;
        self.active = file;
        self.segments.push(SegmentInfo {
            first: next,
            path,
            bytes,
            max_entry: None,
        });
        Ok(())
    }

    /// Keep the term runs in step with entries just written (after any truncation).
    fn note_terms(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        let terms = &mut self.state.terms;
        if first.index > self.state.wal_last.next() {
            terms.clear();
        }
        while terms.last().is_some_and(|&(start, _)| start >= first.index) {
            terms.pop();
        }
        for entry in entries {
            if terms.last().map(|&(_, term)| term) != Some(entry.term) {
                terms.push((entry.index, entry.term));
            }
        }
    }

    /// The term of the entry at `index`, if the WAL or the snapshot holds it.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.state.snapshot_index && index > Index(0) {
            return Some(self.state.snapshot_term);
        }
        if index > self.state.wal_last {
            return None;
        }
        let runs = self
            .state
            .terms
            .partition_point(|&(start, _)| start <= index);
        runs.checked_sub(1).map(|run| self.state.terms[run].1)
    }

    /// Before a snapshot is saved: if the log holds entries after it but does not hold the
    /// snapshot's last entry with the same term, the whole log is superseded (§7: "if the
    /// existing log entry has the same index and term as the snapshot's last included entry,
    /// retain log entries following it ... otherwise discard the entire log"). A Truncate
    /// record voids the entries after the snapshot, durably, before the snapshot becomes
    /// durable, so a crash in between leaves only an uncommitted suffix cut short.
    pub fn prepare_snapshot(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.check_poisoned()?;
        let index = meta.last_included_index;
        if self.state.wal_last <= index || self.term_at(index) == Some(meta.last_included_term) {
            return Ok(());
        }
        self.maybe_roll()?;
        self.buf.clear();
        record::encode_truncate(&mut self.buf, index);
        self.write_batch()?;
        self.state.wal_last = index;
        while self
            .state
            .terms
            .last()
            .is_some_and(|&(start, _)| start > index)
        {
            self.state.terms.pop();
        }
        Ok(())
    }

    /// A snapshot is durable: the log before it may be compacted, and an append may restart
    /// the log right after it.
    pub fn snapshot_saved(&mut self, meta: &SnapshotMeta) {
        self.state.snapshot_index = meta.last_included_index;
        self.state.snapshot_term = meta.last_included_term;
    }

    pub fn snapshot_index(&self) -> Index {
        self.state.snapshot_index
    }

    /// Mark the storage failed (a snapshot file could not be made durable): see the module
    /// invariants.
    pub fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Delete, oldest first, every segment (but the active one) whose entries are all at or
    /// below `up_to`. `up_to` is capped at the durable snapshot's index: the log is never
    /// shortened past what a snapshot covers, or recovery would find a gap.
    pub fn compact(&mut self, up_to: Index) -> Result<(), StorageError> {
        self.check_poisoned()?;
        let up_to = up_to.min(self.state.snapshot_index);
        let deletable = self.segments[..self.segments.len() - 1]
            .iter()
            .take_while(|s| s.max_entry.is_none_or(|m| m <= up_to))
            .count();
        for _ in 0..deletable {
            let path = self.segments[0].path.clone();
            // A failed delete or directory fsync leaves the directory in an unknown state.
            remove_durably(&self.dir, &path).inspect_err(|_| self.poisoned = true)?;
            self.segments.remove(0);
        }
        Ok(())
    }

    /// Entries in `[from, to]` (clamped to what the log holds after the snapshot), at least
    /// one if any is in range, then more while the total `Entry::size_bytes` stays within
    /// `bytes_max`. Reads the segment files: the runtime keeps the log in memory and needs this
    /// rarely. Cost: the segments from the one holding `from` to the end are read and replayed,
    /// because a truncation record anywhere later may void entries.
    pub fn entries(
        &self,
        from: Index,
        to: Index,
        bytes_max: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        self.check_poisoned()?;
        let from = from.max(self.state.snapshot_index.next());
        let to = to.min(self.state.wal_last);
        if from > to {
            return Ok(Vec::new());
        }
        let mut start = self
            .segments
            .partition_point(|s| s.first <= from)
            .saturating_sub(1);
        let replay = loop {
            let mut replay = Replay::default();
            let paths: Vec<_> = self.segments[start..]
                .iter()
                .map(|s| (s.first, s.path.clone()))
                .collect();
            let (_, torn) = recovery::replay_segments(&paths, &mut replay)?;
            if let Some((damage, _)) = torn {
                let path = self.active_path().to_path_buf();
                let reason = format!("{} after recovery", damage.reason);
                return Err(StorageError::Corrupt {
                    path,
                    offset: damage.offset,
                    reason,
                });
            }
            if replay.base.is_some_and(|b| b < from) || start == 0 {
                break replay;
            }
            start -= 1;
        };
        let base = replay.base.unwrap_or(Index(0));
        let mut out = Vec::new();
        let mut total = 0u64;
        for entry in replay
            .entries
            .into_iter()
            .skip((from.0.saturating_sub(base.0 + 1)) as usize)
        {
            if entry.index > to || (!out.is_empty() && total + entry.size_bytes() > bytes_max) {
                break;
            }
            total += entry.size_bytes();
            out.push(entry);
        }
        Ok(out)
    }
}
