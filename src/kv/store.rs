//! The deterministic key-value state machine the Raft log is applied to.
//!
//! Every member applies the same committed entries in the same order and so reaches the same
//! state (§5.3, State Machine Safety): nothing here reads a local clock, a random number or a
//! hash-map iteration order. Time is the leader's (`Command::leader_time_ms`), made monotonic by
//! taking the maximum seen so far, because a new leader's clock may be behind the old one's.
//!
//! Invariants: `revision` is the index of the last applied entry and only grows (applying an
//! index at or below it is a runtime bug and asserts); every key's
//! `create_revision <= mod_revision <= revision`; a revision is the Raft index of the entry that
//! made the change (API.md §3), so it is cluster-wide, strictly increasing and never reused.
//!
//! Memory: keys and values are stored as exact-size boxed slices (16 bytes of pointer and length
//! each, no spare capacity, no reference count), and a map slot is 48 bytes; `get` copies the
//! value out. See the memory test in tests/kv.rs for the measured ratio.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use super::command::{Applied, CommandRef, Idempotency, OpRef, Outcome};
use super::idempotency::{IdempotencyTable, Limits};
use crate::node::handle::{KeyValue, ListPage};
use crate::raft::Index;

/// How long an Idempotency-Key is remembered, in leader time (API.md §3).
pub const IDEMPOTENCY_WINDOW_S_DEFAULT: u64 = 600;
/// At most this many remembered answers; at the limit the oldest are evicted early.
pub const IDEMPOTENCY_RECORDS_MAX_DEFAULT: usize = 1_000_000;
/// At most this many bytes of remembered answers (keys + encoded outcomes + overhead); at the
/// limit the oldest are evicted early. A 409 outcome carries the current value, so one record
/// may be as large as a value.
pub const IDEMPOTENCY_BYTES_MAX_DEFAULT: u64 = 256 * 1024 * 1024;
/// Queue entries examined for expiry per applied command: bounds the work of one apply after a
/// long quiet period. Records past their window but not yet popped are already ignored.
pub const IDEMPOTENCY_EXPIRE_PER_APPLY_MAX: usize = 256;

/// The store's knobs. They shape replicated behaviour (which retries replay), so every member
/// must use the same values: they come from the cluster-wide part of the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    pub idempotency_window_ms: u64,
    pub idempotency_records_max: usize,
    pub idempotency_bytes_max: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            idempotency_window_ms: IDEMPOTENCY_WINDOW_S_DEFAULT * 1000,
            idempotency_records_max: IDEMPOTENCY_RECORDS_MAX_DEFAULT,
            idempotency_bytes_max: IDEMPOTENCY_BYTES_MAX_DEFAULT,
        }
    }
}

impl StoreConfig {
    /// The defaults with the window from the spec's `idempotency_window_s`.
    pub fn with_window_s(window_s: u64) -> Self {
        StoreConfig {
            idempotency_window_ms: window_s.saturating_mul(1000).max(1),
            ..StoreConfig::default()
        }
    }

    pub(super) fn limits(&self) -> Limits {
        Limits {
            window_ms: self.idempotency_window_ms.max(1),
            records_max: self.idempotency_records_max,
            bytes_max: self.idempotency_bytes_max,
        }
    }
}

/// One key's value and revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Slot {
    pub value: Box<[u8]>,
    /// Index of the entry that created the key (since its last delete).
    pub create_revision: u64,
    /// Index of the entry that last changed it.
    pub mod_revision: u64,
}

/// The state machine. `PartialEq` compares the complete internal state, which is what the
/// determinism tests need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    pub(super) config: StoreConfig,
    pub(super) keys: BTreeMap<Box<[u8]>, Slot>,
    /// `last_applied` (§5.3): the index of the last entry applied, of any kind.
    pub(super) revision: u64,
    /// The largest leader time seen in an applied command (monotonic leader clock).
    pub(super) clock_ms: u64,
    pub(super) idempotency: IdempotencyTable,
}

impl Default for Store {
    fn default() -> Self {
        Store::new(StoreConfig::default())
    }
}

impl Store {
    pub fn new(config: StoreConfig) -> Self {
        Store {
            config,
            keys: BTreeMap::new(),
            revision: 0,
            clock_ms: 0,
            idempotency: IdempotencyTable::default(),
        }
    }

    pub fn config(&self) -> StoreConfig {
        self.config
    }

    /// The index of the last applied entry: the revision every read reflects.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The same as `revision`, as a Raft index (`last_applied`).
    pub fn applied_index(&self) -> Index {
        Index(self.revision)
    }

    /// The monotonic leader clock: the largest `leader_time_ms` applied so far.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Number of remembered Idempotency-Key answers (expired ones not yet dropped included).
    pub fn idempotency_records(&self) -> usize {
        self.idempotency.len()
    }

    /// Apply a committed `Normal` entry at `index`.
    ///
    /// A payload that does not decode (corruption the CRCs missed, or a newer format than this
    /// binary knows) must not stop the cluster nor diverge it: every member decodes the same
    /// bytes the same way, so each one logs it and applies it as a no-op (`Outcome::Ticked`)
    /// that only advances the revision.
    pub fn apply(&mut self, index: Index, data: &[u8]) -> Applied {
        self.advance_to(index);
        let command = match CommandRef::decode(data) {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(index = index.0, %err, "undecodable log entry applied as a no-op");
                return Applied {
                    outcome: Outcome::Ticked,
                    replayed: false,
                };
            }
        };
        self.clock_ms = self.clock_ms.max(command.leader_time_ms);
        let limits = self.config.limits();
        self.idempotency.expire(
            self.clock_ms,
            limits.window_ms,
            IDEMPOTENCY_EXPIRE_PER_APPLY_MAX,
        );
        if let Some((key, fingerprint)) = command.idempotency {
            if let Some(answer) = self.replay_key(key, fingerprint) {
                return answer;
            }
        }
        let outcome = self.execute(index.0, command.op);
        if let Some((key, fingerprint)) = command.idempotency {
            let clock_ms = self.clock_ms;
            self.idempotency
                .insert(key, fingerprint, outcome.encode(), clock_ms, limits);
        }
        Applied {
            outcome,
            replayed: false,
        }
    }

    /// Apply an entry with no command for the store (a leader's no-op, a membership change):
    /// it only advances the revision.
    pub fn apply_noop(&mut self, index: Index) {
        self.advance_to(index);
    }

    fn advance_to(&mut self, index: Index) {
        assert!(
            index.0 > self.revision,
            "entries are applied in log order: index {} after revision {}",
            index.0,
            self.revision
        );
        self.revision = index.0;
    }

    /// What a command with this Idempotency-Key answers without being applied, if anything:
    /// the remembered answer (replayed) for the same fingerprint, `IdempotencyKeyReused` for
    /// another one, `None` when the key is unknown or its window has passed. The runtime may
    /// call this to answer a retry without proposing it (the answer can only be older).
    pub fn replay(&self, idem: &Idempotency) -> Option<Applied> {
        self.replay_key(&idem.key, idem.fingerprint)
    }

    fn replay_key(&self, key: &[u8], fingerprint: u64) -> Option<Applied> {
        let limits = self.config.limits();
        let record = self
            .idempotency
            .lookup(key, self.clock_ms, limits.window_ms)?;
        if record.fingerprint != fingerprint {
            return Some(Applied {
                outcome: Outcome::IdempotencyKeyReused,
                replayed: false,
            });
        }
        // Records are validated when written and when restored, so this decodes; if it ever
        // did not, refusing is the safe answer (never a second application).
        let outcome = Outcome::decode(&record.outcome).unwrap_or(Outcome::IdempotencyKeyReused);
        Some(Applied {
            outcome,
            replayed: true,
        })
    }

    fn execute(&mut self, revision: u64, op: OpRef<'_>) -> Outcome {
        match op {
            OpRef::Put {
                key,
                value,
                if_revision,
            } => {
                if let Some(mismatch) = self.check_revision(key, if_revision) {
                    return mismatch;
                }
                let prev_revision = match self.keys.get_mut(key) {
                    Some(slot) => {
                        let prev = slot.mod_revision;
                        slot.value = Box::from(value);
                        slot.mod_revision = revision;
                        Some(prev)
                    }
                    None => {
                        let slot = Slot {
                            value: Box::from(value),
                            create_revision: revision,
                            mod_revision: revision,
                        };
                        self.keys.insert(Box::from(key), slot);
                        None
                    }
                };
                Outcome::Put {
                    revision,
                    prev_revision,
                }
            }
            OpRef::Delete { key, if_revision } => {
                if let Some(mismatch) = self.check_revision(key, if_revision) {
                    return mismatch;
                }
                let deleted = self.keys.remove(key).is_some();
                Outcome::Deleted { revision, deleted }
            }
            OpRef::Tick => Outcome::Ticked,
        }
    }

    /// Compare-and-set on the key's mod revision (`Some(0)`: must be absent). `None` when the
    /// write may go ahead, else the mismatch answer carrying what the caller lost to.
    fn check_revision(&self, key: &[u8], if_revision: Option<u64>) -> Option<Outcome> {
        let want = if_revision?;
        let current = self.keys.get(key);
        let current_revision = current.map_or(0, |s| s.mod_revision);
        if current_revision == want {
            return None;
        }
        Some(Outcome::RevisionMismatch {
            current_revision,
            current_value: current.map(|s| Bytes::copy_from_slice(&s.value)),
        })
    }

    /// One key, if present.
    pub fn get(&self, key: &[u8]) -> Option<KeyValue> {
        self.keys.get_key_value(key).map(|(k, s)| key_value(k, s))
    }

    /// Keys starting with `prefix`, sorted by key bytes, strictly after `start_after` when
    /// given, at most `limit` of them; `more` is true exactly when further keys with the prefix
    /// follow the last one returned.
    pub fn list(&self, prefix: &[u8], start_after: Option<&[u8]>, limit: usize) -> ListPage {
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut range = self
            .keys
            .range::<[u8], _>((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix));
        let items: Vec<KeyValue> = range
            .by_ref()
            .take(limit)
            .map(|(k, s)| key_value(k, s))
            .collect();
        let more = range.next().is_some();
        ListPage {
            revision: self.revision,
            items,
            more,
        }
    }
}

fn key_value(key: &[u8], slot: &Slot) -> KeyValue {
    KeyValue {
        key: Bytes::copy_from_slice(key),
        value: Bytes::copy_from_slice(&slot.value),
        create_revision: slot.create_revision,
        mod_revision: slot.mod_revision,
    }
}
