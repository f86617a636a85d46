//! Read-only views of a `RaftNode`: what the runtime shows in `/v1/status` and what tests and
//! the simulator check. Nothing here changes the node.

use super::node::{Config, RaftNode, SoftState};
use super::role::RoleState;
use super::types::{Entry, HardState, Index, NodeId, Role, Term};

impl RaftNode {
    pub fn id(&self) -> NodeId {
        self.config.id
    }
    pub fn role(&self) -> Role {
        match self.role {
            RoleState::Follower if !self.is_voter() => Role::Learner,
            RoleState::Follower => Role::Follower,
            RoleState::PreCandidate { .. } => Role::PreCandidate,
            RoleState::Candidate { .. } => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
        }
    }
    pub fn term(&self) -> Term {
        self.current_term
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn commit_index(&self) -> Index {
        self.log.commit_index()
    }
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }
    /// The term of the last entry in the log (§5.4.1's "last log term").
    pub fn last_term(&self) -> Term {
        self.log.last_term()
    }
    /// Highest index the runtime reported applied.
    pub fn last_applied(&self) -> Index {
        self.last_applied
    }
    /// Highest index storage reported durable.
    pub fn persisted_index(&self) -> Index {
        self.log.persisted_index()
    }
    pub fn hard_state(&self) -> HardState {
        HardState {
            current_term: self.current_term,
            voted_for: self.voted_for,
        }
    }
    pub fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role(),
            term: self.current_term,
            leader: self.leader,
            commit_index: self.log.commit_index(),
        }
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The target of the leadership transfer in progress, if any.
    pub fn transferring_to(&self) -> Option<NodeId> {
        match &self.role {
            RoleState::Leader(l) => l.transfer.as_ref().map(|t| t.to),
            _ => None,
        }
    }
    /// The leader's view of each peer's `match_index` (empty on a follower).
    pub fn progress(&self) -> Vec<(NodeId, Index)> {
        match &self.role {
            RoleState::Leader(l) => l
                .progress
                .iter()
                .map(|(id, p)| (*id, p.match_index))
                .collect(),
            _ => Vec::new(),
        }
    }
    /// Entries in `[from, to]` still in memory (for tests and the simulator's checks).
    pub fn entries(&self, from: Index, to: Index) -> Vec<Entry> {
        self.log.slice(from, to, u64::MAX)
    }
}
