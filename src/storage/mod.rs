//! Durable storage: the segmented write-ahead log (entries, hard state, truncations) and the
//! snapshot files. Synchronous `std::fs`, called only by the runtime, from one place.
//!
//! Promise: when `append` returns `Ok`, everything it was given survives a crash (with
//! `Fsync::Always`). A failed fsync is fatal: the caller must stop the node, never retry.

use std::path::{Path, PathBuf};

use crate::raft::{Entry, HardState, Index, SnapshotMeta};

/// Whether `append` ends with an fdatasync. `Never` exists only for benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    Always,
    Never,
}

#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// A new segment is started once the current one passes this size (default 64 MiB).
    pub segment_bytes_max: u64,
    pub fsync: Fsync,
}

/// Everything recovered from a data directory.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    pub hard_state: HardState,
    /// The latest valid snapshot: its metadata and the state machine's bytes.
    pub snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    /// Every entry after the snapshot, contiguous.
    pub entries: Vec<Entry>,
    /// Human-readable notes on repairs made (a torn tail cut off, and where its bytes went).
    pub repairs: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Corruption that is not a torn tail: the node must not run on it (exit code 3).
    #[error("{path}: corrupt at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

/// The WAL plus snapshot files of one node. The implementation fills this in.
pub struct Storage {}

impl Storage {
    /// Open (creating if needed) the data directory and recover its contents.
    pub fn open(dir: &Path, options: StorageOptions) -> Result<(Storage, Recovered), StorageError> {
        let _ = (dir, options);
        todo!()
    }

    /// One write and one fdatasync for the whole batch (group commit). If `entries[0].index`
    /// is at or below the last index, every entry from that index on is first durably cut off
    /// (§5.3 conflict). The hard state, when given, is written in the same batch.
    pub fn append(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
    ) -> Result<(), StorageError> {
        let _ = (hard_state, entries);
        todo!()
    }

    /// Durably write a snapshot (temp file, fsync, rename, fsync dir), then remove older ones.
    pub fn save_snapshot(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        let _ = (meta, data);
        todo!()
    }

    /// Delete whole segments whose every entry is at or below `up_to` (covered by a snapshot).
    pub fn compact(&mut self, up_to: Index) -> Result<(), StorageError> {
        let _ = up_to;
        todo!()
    }

    /// Entries in `[from, to]`, stopping early once `bytes_max` is passed (at least one entry).
    pub fn entries(
        &self,
        from: Index,
        to: Index,
        bytes_max: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let _ = (from, to, bytes_max);
        todo!()
    }

    pub fn last_index(&self) -> Index {
        todo!()
    }
}
