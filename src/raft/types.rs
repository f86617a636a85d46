//! The vocabulary of Raft: terms, indexes, node ids, log entries and the hard state.
//!
//! Invariants carried by these types: a `Term` or `Index` of 0 means "none" (the log is 1-based,
//! §5.3: index 0 is the empty prefix every log shares, with term 0). No bare `u64` that means a
//! term, an index or a node crosses a module boundary; the newtypes make mixing them a compile
//! error.

use std::fmt;

use bytes::Bytes;

/// A Raft term (§5.1): a logical clock that only grows. Term 0 is "before any election".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term(pub u64);

/// A position in the replicated log (§5.3), 1-based. Index 0 is the empty prefix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Index(pub u64);

/// A member's identity: FNV-1a 64 of its `address:port` (see `config`). Never 0 in a real
/// cluster; 0 is reserved for "no node".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

impl Term {
    /// The next term, as a candidate starts an election (§5.2).
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl Index {
    pub fn next(self) -> Index {
        Index(self.0 + 1)
    }
    /// The previous index, saturating at 0 (the empty prefix).
    pub fn prev(self) -> Index {
        Index(self.0.saturating_sub(1))
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Node ids are shown everywhere as 16 lowercase hex digits (API.md §1).
impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What a log entry carries. The core interprets only `Noop` and `ConfChange`; `Normal`
/// payloads are opaque bytes for the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A client command, opaque to Raft.
    Normal,
    /// The empty entry a new leader appends to commit entries of earlier terms (§5.4.2, §8).
    Noop,
    /// A membership change (thesis ch. 4); payload is an encoded `membership::ConfChange`.
    ConfChange,
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The term of the leader that created the entry (§5.3).
    pub term: Term,
    pub index: Index,
    pub kind: EntryKind,
    /// Cheap to clone: one entry is sent to every follower without copying its bytes.
    pub data: Bytes,
}

impl Entry {
    /// Bytes this entry counts for in every byte-bounded batch (payload plus fixed overhead).
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64 + 24
    }
}

/// The state Raft must make durable before answering any RPC (§5.1 figure 2, "persistent state
/// on all servers", less the log, which is persisted as entries).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HardState {
    /// Latest term this server has seen; only grows.
    pub current_term: Term,
    /// The candidate that received this server's vote in `current_term`, if any. One vote per
    /// term, durable before the vote is answered (§5.2).
    pub voted_for: Option<NodeId>,
}

/// Where a snapshot ends: the last entry it covers, and the membership as of that entry.
/// Stored with the snapshot's bytes, so a node restarting or installing it knows its term
/// and membership.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SnapshotMeta {
    pub last_included_index: Index,
    pub last_included_term: Term,
    /// Voters as of `last_included_index`.
    pub voters: Vec<NodeId>,
    /// Learners as of `last_included_index`.
    pub learners: Vec<NodeId>,
}

/// A role and the leader this node believes in: what the runtime shows in `/v1/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
    Learner,
}
