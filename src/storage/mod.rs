//! Durable storage: the segmented write-ahead log (entries, hard state, truncations) and the
//! snapshot files. Synchronous `std::fs`, called only by the runtime, from one place.
//!
//! Promise: when `append` returns `Ok`, everything it was given survives a crash (with
//! `Fsync::Always`). A failed fsync is fatal: the caller must stop the node, never retry.
//!
//! A data directory holds only these files:
//! - `<20-digit first index>.wal`: log segments (`segment.rs`), records framed by `frame.rs`
//!   and encoded by `record.rs`; replayed in name order by `recovery.rs`;
//! - `<segment>.wal.broken`: bytes of a torn tail cut off by recovery, kept for operators;
//! - `<20-digit last_included_index>.snap` (and `.snap.tmp` while one is being written):
//!   snapshot files (`snapshot_file.rs`).
//!
//! Reading order: `frame`, `record`, `segment`, `wal`, `snapshot_file`, `recovery`, `inspect`.

use std::path::{Path, PathBuf};

use crate::raft::{Entry, HardState, Index, SnapshotMeta};

pub mod frame;
mod fsio;
pub mod inspect;
pub mod record;
pub mod recovery;
pub mod segment;
pub mod snapshot_file;
pub mod wal;

pub use inspect::inspect;

/// Process exit code for `StorageError::Corrupt`: the data directory needs an operator.
pub const EXIT_CODE_CORRUPT: i32 = 3;

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

impl Default for StorageOptions {
    /// 64 MiB segments, fsync on.
    fn default() -> Self {
        StorageOptions {
            segment_bytes_max: 64 << 20,
            fsync: Fsync::Always,
        }
    }
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

impl StorageError {
    /// The exit code the CLI uses for this error: `EXIT_CODE_CORRUPT` (3) for corruption, so
    /// supervisors do not restart the node in a loop over a log it must not run on; 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            StorageError::Corrupt { .. } => EXIT_CODE_CORRUPT,
            StorageError::Io { .. } => 1,
        }
    }
}

/// The WAL plus snapshot files of one node.
pub struct Storage {
    dir: PathBuf,
    wal: wal::Wal,
}

impl Storage {
    /// Open (creating if needed) the data directory and recover its contents. A torn tail of
    /// the last segment is repaired (see `Recovered::repairs`); any other damage is
    /// `StorageError::Corrupt` and nothing is modified.
    pub fn open(dir: &Path, options: StorageOptions) -> Result<(Storage, Recovered), StorageError> {
        let (wal, recovered) = recovery::open(dir, options)?;
        Ok((
            Storage {
                dir: dir.to_path_buf(),
                wal,
            },
            recovered,
        ))
    }

    /// One write and one fdatasync for the whole batch (group commit). If `entries[0].index`
    /// is at or below the last index, every entry from that index on is first durably cut off
    /// (§5.3 conflict). The hard state, when given, is written in the same batch.
    ///
    /// `entries` must be contiguous and start at most one past `last_index()` (asserted: a
    /// gap is a caller bug). After a snapshot past the log's end, they may start right after
    /// the snapshot. One entry's data may be at most `frame::PAYLOAD_BYTES_MAX` (256 MiB) less
    /// 17 bytes (asserted: the API bounds request sizes far below). On error the node must
    /// stop: the WAL refuses all further calls.
    pub fn append(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
    ) -> Result<(), StorageError> {
        self.wal.append(hard_state, entries)
    }

    /// Durably write a snapshot (temp file, fsync, rename, fsync dir), then remove older ones.
    /// It does not compact the log: call `compact` after it. If the log holds entries after
    /// the snapshot but not its last entry with the same term (an installed snapshot that
    /// conflicts, §7), those entries are durably discarded first.
    ///
    /// Snapshots only move forward: saving one older than the latest is a caller bug (the core
    /// ignores stale InstallSnapshot requests) and is asserted, since it would delete the newer.
    pub fn save_snapshot(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        assert!(
            meta.last_included_index >= self.wal.snapshot_index(),
            "snapshot at {} is older than the saved one at {}",
            meta.last_included_index,
            self.wal.snapshot_index()
        );
        self.wal.prepare_snapshot(meta)?;
        snapshot_file::save(&self.dir, meta, data).inspect_err(|_| self.wal.poison())?;
        self.wal.snapshot_saved(meta);
        Ok(())
    }

    /// The data directory, for writing a snapshot of this node's own applied state off the
    /// runtime's loop (`snapshot_file::save`), followed by `snapshot_written`. Only for a
    /// snapshot whose last entry the log holds (so nothing needs discarding, unlike an
    /// installed one: use `save_snapshot` for those), and never while another save runs
    /// (`snapshot_file::save` deletes every other snapshot file).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A snapshot written with `snapshot_file::save` is durable: the log may be compacted up
    /// to it. An older one than the latest saved is ignored.
    pub fn snapshot_written(&mut self, meta: &SnapshotMeta) {
        if meta.last_included_index > self.wal.snapshot_index() {
            self.wal.snapshot_saved(meta);
        }
    }

    /// Delete whole segments whose every entry is at or below `up_to` (covered by a snapshot).
    /// Capped at the latest saved snapshot; the active segment is never deleted.
    pub fn compact(&mut self, up_to: Index) -> Result<(), StorageError> {
        self.wal.compact(up_to)
    }

    /// Entries in `[from, to]`, stopping early once `bytes_max` is passed (at least one entry).
    /// The range is clamped to the entries held after the snapshot; reads segment files.
    pub fn entries(
        &self,
        from: Index,
        to: Index,
        bytes_max: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        self.wal.entries(from, to, bytes_max)
    }

    /// The last index of the log (the snapshot's if no entry follows it).
    pub fn last_index(&self) -> Index {
        self.wal.last_index()
    }
}
