//! The at-most-once table behind `Idempotency-Key` (API.md §3, "Retries are safe").
//!
//! It is part of the replicated state: every member applies the same commands in the same order
//! and so holds the same table, and it travels in snapshots. Time here is only ever leader time
//! (`Command::leader_time_ms`, made monotonic by the store), never a local clock, so every member
//! expires the same records at the same log index.
//!
//! Invariants: `queue` is in non-decreasing `stamp_ms` order (records are stamped with the
//! store's monotonic clock as they are inserted); every live record has exactly one queue entry
//! with its stamp; a queue entry whose stamp differs from its key's record (or whose key has no
//! record) is stale and is skipped. Stale entries arise only when an expired record that was not
//! yet popped is replaced, and then the new stamp is strictly larger (the window is >= 1 ms), so
//! stamps identify records unambiguously. `bytes` is the sum of `record_bytes` over records.

use std::collections::{BTreeMap, VecDeque};

/// Bytes charged per record on top of its key and encoded outcome: map node share, queue entry
/// and the record's fixed fields, roughly.
pub const RECORD_OVERHEAD_BYTES: u64 = 64;

/// One remembered answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Fingerprint of the request that created it (method, path, query, body).
    pub fingerprint: u64,
    /// The answer, in the `Outcome` byte format.
    pub outcome: Box<[u8]>,
    /// Leader time when it was applied.
    pub stamp_ms: u64,
}

/// Limits of the table, from `StoreConfig`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub window_ms: u64,
    pub records_max: usize,
    pub bytes_max: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdempotencyTable {
    records: BTreeMap<Box<[u8]>, Record>,
    /// (stamp_ms, key) in insertion order; see the module invariants.
    queue: VecDeque<(u64, Box<[u8]>)>,
    bytes: u64,
}

fn record_bytes(key: &[u8], outcome: &[u8]) -> u64 {
    key.len() as u64 + outcome.len() as u64 + RECORD_OVERHEAD_BYTES
}

fn is_expired(stamp_ms: u64, now_ms: u64, window_ms: u64) -> bool {
    now_ms.saturating_sub(stamp_ms) >= window_ms
}

impl IdempotencyTable {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The live (not expired at `now_ms`) record for `key`. A record past the window that has
    /// not been popped yet is treated as gone, so the answer does not depend on how much
    /// expiry work earlier applies happened to do.
    pub fn lookup(&self, key: &[u8], now_ms: u64, window_ms: u64) -> Option<&Record> {
        self.records
            .get(key)
            .filter(|r| !is_expired(r.stamp_ms, now_ms, window_ms))
    }

    /// Drop records whose window has passed at `now_ms`, oldest first, popping at most
    /// `work_max` queue entries (bounded work per apply; the rest go on later applies, and
    /// `lookup` already ignores them).
    pub fn expire(&mut self, now_ms: u64, window_ms: u64, work_max: usize) {
        for _ in 0..work_max {
            let Some((stamp, key)) = self.queue.front() else {
                return;
            };
            let stale = self.records.get(key).is_none_or(|r| r.stamp_ms != *stamp);
            if !stale && !is_expired(*stamp, now_ms, window_ms) {
                return;
            }
            self.pop_front();
        }
    }

    /// Pop the oldest queue entry, removing its record unless the entry is stale.
    fn pop_front(&mut self) {
        let Some((stamp, key)) = self.queue.pop_front() else {
            return;
        };
        if self.records.get(&key).is_some_and(|r| r.stamp_ms == stamp) {
            if let Some(r) = self.records.remove(&key) {
                self.bytes -= record_bytes(&key, &r.outcome);
            }
        }
    }

    /// Remember an answer. The caller has checked that `key` has no live record.
    ///
    /// At the limits (`records_max` records or `bytes_max` bytes) the oldest records are
    /// evicted before their window ends: the window shrinks under load rather than refusing
    /// writes, and a retry of an evicted key would be applied again. Eviction is by queue
    /// order, so it too is identical on every member. A single record larger than `bytes_max`
    /// evicts everything else and is still kept.
    pub fn insert(
        &mut self,
        key: &[u8],
        fingerprint: u64,
        outcome: Vec<u8>,
        stamp_ms: u64,
        limits: Limits,
    ) {
        if let Some(old) = self.records.remove(key) {
            // An expired record not yet popped: its queue entry becomes stale.
            self.bytes -= record_bytes(key, &old.outcome);
        }
        let size = record_bytes(key, &outcome);
        while !self.queue.is_empty()
            && (self.records.len() >= limits.records_max.max(1)
                || self.bytes + size > limits.bytes_max)
        {
            self.pop_front();
        }
        let key: Box<[u8]> = key.into();
        self.queue.push_back((stamp_ms, key.clone()));
        self.bytes += size;
        let outcome = outcome.into_boxed_slice();
        self.records.insert(
            key,
            Record {
                fingerprint,
                outcome,
                stamp_ms,
            },
        );
    }

    /// Live records (stale queue entries skipped) in queue order: the order snapshots use, so
    /// that `restore` rebuilds the same expiry order.
    pub fn iter_in_order(&self) -> impl Iterator<Item = (&[u8], &Record)> {
        self.queue.iter().filter_map(|(stamp, key)| {
            self.records
                .get(key)
                .filter(|r| r.stamp_ms == *stamp)
                .map(|r| (&key[..], r))
        })
    }

    /// Rebuild from snapshot records given in queue order. Returns false (the snapshot is
    /// invalid) if stamps go backwards or a key repeats.
    pub fn push_restored(&mut self, key: &[u8], record: Record) -> bool {
        if self
            .queue
            .back()
            .is_some_and(|(last, _)| *last > record.stamp_ms)
        {
            return false;
        }
        if self.records.contains_key(key) {
            return false;
        }
        let key: Box<[u8]> = key.into();
        self.bytes += record_bytes(&key, &record.outcome);
        self.queue.push_back((record.stamp_ms, key.clone()));
        self.records.insert(key, record);
        true
    }
}
