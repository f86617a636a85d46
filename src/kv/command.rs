//! The payloads of `Normal` log entries: what a client asked for, and what applying it answered.
//!
//! The encoding (`Command::encode` / `Command::decode`) is part of the on-disk format: it is in
//! every WAL segment and snapshot, so it is versioned and documented byte by byte next to the
//! encoder. Decoding untrusted bytes never panics.

use bytes::Bytes;

/// A write, as proposed to Raft. Reads do not go through the log (ReadIndex instead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Leader's wall-clock time in milliseconds since the Unix epoch when it proposed this
    /// entry: the one clock every member uses for TTLs and idempotency windows, so expiry is
    /// deterministic (API.md §4).
    pub leader_time_ms: u64,
    /// `Idempotency-Key` and a fingerprint of the whole request (method, path, query, body),
    /// when the client sent one (API.md §3, "Retries are safe").
    pub idempotency: Option<Idempotency>,
    pub op: Op,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idempotency {
    /// 1..=128 bytes.
    pub key: Bytes,
    /// A hash of method, path, query and body: the same key with another fingerprint is a
    /// `422 idempotency_key_reused`.
    pub fingerprint: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `if_revision`: `Some(0)` = must not exist, `Some(r)` = mod revision must be `r`.
    Put {
        key: Bytes,
        value: Bytes,
        if_revision: Option<u64>,
    },
    Delete {
        key: Bytes,
        if_revision: Option<u64>,
    },
    /// Leader-time housekeeping (expire idempotency records older than the window). Carries
    /// no client; always succeeds.
    Tick,
}

/// The outcome of applying one `Command`: deterministic on every member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Put {
        revision: u64,
        prev_revision: Option<u64>,
    },
    Deleted {
        revision: u64,
        deleted: bool,
    },
    /// Compare-and-set failed: the key's current mod revision (0 = absent) and value.
    RevisionMismatch {
        current_revision: u64,
        current_value: Option<Bytes>,
    },
    /// Same Idempotency-Key, different request.
    IdempotencyKeyReused,
    Ticked,
}

/// What the runtime hands back to the waiting client: the outcome, and whether it is a replay
/// of an earlier answer for the same Idempotency-Key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub outcome: Outcome,
    pub replayed: bool,
}
