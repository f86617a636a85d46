//! One node's simulated durable storage: the hard state, the latest snapshot and the log that
//! survived every completed "fsync".
//!
//! A `Ready`'s write is modelled as one append-only record stream: the installed snapshot (if
//! any), the hard state, then the entries in order. A crash during the write keeps a prefix of
//! that stream (what a WAL that repairs its torn tail keeps); nothing the node acknowledged can
//! be in the lost part, because acknowledgements leave only after the write completes.
//! Truncation (§5.3 conflict) takes effect with the first entry written at or below the last
//! index.
//!
//! A snapshot is modelled by its metadata and the digest of the state machine it holds (the
//! fold of every entry applied up to its index, see `digest`): the checker compares that digest
//! with the committed log's, so a snapshot of the wrong state cannot go unnoticed. Saving one
//! compacts the log up to it, and discards the whole log if the log does not hold the
//! snapshot's last entry with its term (§7), as `storage::Storage::save_snapshot` does.

use rocinante::raft::{Entry, HardState, Index, Restored, SnapshotMeta};

#[derive(Clone, Debug, Default)]
pub struct DurableStorage {
    pub hard_state: HardState,
    /// The latest durable snapshot and the digest of its state.
    pub snapshot: Option<(SnapshotMeta, u64)>,
    /// The durable log after `offset`: entry `offset + 1 + i` at position i.
    pub entries: Vec<Entry>,
    pub offset: Index,
}

/// The state machine's digest after applying `e` to a state of digest `prev` (FNV-1a style
/// fold of index, term and payload): equal digests mean equal applied histories.
pub fn digest(prev: u64, e: &Entry) -> u64 {
    let mut h = prev ^ 0xcbf2_9ce4_8422_2325;
    let bytes = e
        .index
        .0
        .to_le_bytes()
        .into_iter()
        .chain(e.term.0.to_le_bytes());
    for b in bytes.chain(e.data.iter().copied()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl DurableStorage {
    pub fn last_index(&self) -> Index {
        Index(self.offset.0 + self.entries.len() as u64)
    }

    pub fn snapshot_index(&self) -> Index {
        self.snapshot
            .as_ref()
            .map_or(Index(0), |(m, _)| m.last_included_index)
    }

    /// Whether `e` survives here: in the log, or covered by the snapshot (whose state the
    /// checker verified against the committed log).
    pub fn holds(&self, e: &Entry) -> bool {
        if e.index <= self.snapshot_index() {
            return true;
        }
        self.get(e.index) == Some(e)
    }

    pub fn get(&self, index: Index) -> Option<&Entry> {
        if index <= self.offset {
            return None;
        }
        self.entries.get((index.0 - self.offset.0 - 1) as usize)
    }

    /// Writes `hard_state` (if any) and the first `keep` of `entries`. Returns the entries the
    /// truncation removed (for the checker).
    pub fn write(
        &mut self,
        hard_state: Option<HardState>,
        entries: &[Entry],
        keep: usize,
    ) -> Vec<Entry> {
        if let Some(hs) = hard_state {
            self.hard_state = hs;
        }
        let kept = &entries[..keep.min(entries.len())];
        let Some(first) = kept.first() else {
            return Vec::new();
        };
        assert!(
            first.index > self.offset && first.index <= self.last_index().next(),
            "Ready.entries start at {} but the durable log holds ({}, {}]: a gap",
            first.index,
            self.offset,
            self.last_index()
        );
        let start = (first.index.0 - self.offset.0 - 1) as usize;
        let removed = self.entries.split_off(start);
        self.entries.extend_from_slice(kept);
        removed
    }

    /// Saves a snapshot and compacts the log up to it; a log that does not hold the snapshot's
    /// last entry with its term is discarded (§7). Returns the entries discarded *after* the
    /// snapshot (compacted ones are covered by it, not lost).
    pub fn save_snapshot(&mut self, meta: &SnapshotMeta, state: u64) -> Vec<Entry> {
        let index = meta.last_included_index;
        if index <= self.snapshot_index() {
            return Vec::new();
        }
        let matches = self
            .get(index)
            .is_some_and(|e| e.term == meta.last_included_term);
        let mut removed = Vec::new();
        if matches {
            let drop = (index.0 - self.offset.0) as usize;
            self.entries.drain(..drop);
        } else {
            removed = std::mem::take(&mut self.entries)
                .into_iter()
                .filter(|e| e.index > index)
                .collect();
        }
        self.offset = index;
        self.snapshot = Some((meta.clone(), state));
        removed
    }

    /// What a restarted node is built from.
    pub fn restored(&self) -> Restored {
        Restored {
            hard_state: self.hard_state,
            snapshot: self.snapshot.as_ref().map(|(m, _)| m.clone()),
            entries: self.entries.clone(),
        }
    }
}
