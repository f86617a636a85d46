//! One node's simulated durable storage: the hard state and the log that survived every
//! completed "fsync".
//!
//! A `Ready`'s write is modelled as one append-only record stream: the hard state first, then
//! the entries in order. A crash during the write keeps a prefix of that stream (what a WAL
//! that repairs its torn tail keeps); nothing the node acknowledged can be in the lost part,
//! because acknowledgements leave only after the write completes. Truncation (§5.3 conflict)
//! takes effect with the first entry written at or below the last index.

use rocinante::raft::{Entry, HardState, Index, Restored};

#[derive(Clone, Debug, Default)]
pub struct DurableStorage {
    pub hard_state: HardState,
    /// The durable log: entry i (1-based) at position i - 1. No snapshots yet.
    pub entries: Vec<Entry>,
}

impl DurableStorage {
    pub fn last_index(&self) -> Index {
        Index(self.entries.len() as u64)
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
        let start = first.index.0 as usize - 1;
        assert!(
            start <= self.entries.len(),
            "Ready.entries start at {} but the durable log ends at {}: a gap",
            first.index,
            self.entries.len()
        );
        let removed = self.entries.split_off(start);
        self.entries.extend_from_slice(kept);
        removed
    }

    /// What a restarted node is built from.
    pub fn restored(&self) -> Restored {
        Restored {
            hard_state: self.hard_state,
            snapshot: None,
            entries: self.entries.clone(),
        }
    }
}
