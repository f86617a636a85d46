//! The role a node plays (§5.1 figure 4), each variant carrying only the state that role needs,
//! so a follower cannot accidentally read a leader's progress and a leader's progress is gone
//! the moment it steps down.

use std::collections::BTreeMap;

use super::progress::Progress;
use super::read_index::ReadIndexState;
use super::types::NodeId;

pub(super) enum RoleState {
    /// Follower (or learner: same behaviour, but never votes or campaigns).
    Follower,
    /// Pre-vote phase (thesis §9.6): asking whether an election could be won, at no term cost.
    PreCandidate {
        votes: Votes,
    },
    /// Candidate (§5.2): voted for itself in `current_term`, collecting votes.
    Candidate {
        votes: Votes,
    },
    Leader(Box<LeaderState>),
}

/// Answers received in an election: voter -> granted. One answer per voter counts.
pub(super) type Votes = BTreeMap<NodeId, bool>;

pub(super) struct LeaderState {
    /// Every peer (voters and learners except this node). BTreeMap: deterministic order.
    pub progress: BTreeMap<NodeId, Progress>,
    /// Ticks since the last heartbeat round.
    pub heartbeat_elapsed: u64,
    /// A heartbeat round is due at the next `ready()`.
    pub heartbeat_due: bool,
    /// commit_index advanced: tell every follower at the next `ready()`.
    pub commit_changed: bool,
    pub reads: ReadIndexState,
    pub transfer: Option<Transfer>,
    /// TimeoutNow was sent in this term: the target may win an election that ignores the
    /// followers' lease, so this leader holds no lease for the rest of its term.
    pub lease_revoked: bool,
}

/// A leadership transfer in progress (thesis §3.10).
pub(super) struct Transfer {
    pub to: NodeId,
    /// Ticks since it started; aborted at `election_ticks_min`.
    pub elapsed: u64,
    /// TimeoutNow was sent (once the target matched our log).
    pub timeout_now_sent: bool,
}
