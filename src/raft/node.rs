//! The Raft node's public face: how the runtime feeds it inputs and drains its `Ready`.
//!
//! This file is the contract of DESIGN.md §2. Inputs: `tick`, `step` (a peer's message),
//! `propose`, `read_index`, `transfer_leadership`. Output: `ready()`, executed by the runtime in
//! the order documented on `Ready`, then acknowledged with `persisted` and `applied`.
//! Everything here is deterministic given the seed in `Config` and the order of calls.

use super::message::{Message, ReadId};
use super::types::{Entry, HardState, Index, NodeId, Role, SnapshotMeta, Term};

/// Static parameters of one node. Times are in ticks: the runtime decides how long a tick is.
#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// Voters of the initial configuration (including `id` when it is a voter).
    pub voters: Vec<NodeId>,
    /// Learners of the initial configuration.
    pub learners: Vec<NodeId>,
    /// Election timeout is drawn uniformly from [min, max) ticks at each reset (§5.2).
    pub election_ticks_min: u64,
    pub election_ticks_max: u64,
    /// A leader sends a heartbeat to each peer every `heartbeat_ticks` (must be < min election).
    pub heartbeat_ticks: u64,
    /// Pre-vote (thesis §9.6); on by default.
    pub pre_vote: bool,
    /// Check-quorum: a leader that has not heard from a quorum for an election timeout steps
    /// down; a follower that heard from a leader within the minimum election timeout ignores
    /// vote requests (thesis §4.2.3, §9.6). On by default.
    pub check_quorum: bool,
    /// At most this many AppendEntries with entries in flight per peer in replicate mode.
    pub inflight_msgs_max: usize,
    /// At most this many entry bytes in flight per peer; further entries wait for acks.
    pub inflight_bytes_max: u64,
    /// At most this many entry bytes in one AppendEntries (at least one entry is always sent).
    pub msg_bytes_max: u64,
    /// At most this many proposals waiting on a leader (appended, not yet committed); beyond it
    /// `propose` returns `ProposeError::Busy` and the runtime answers 503.
    pub uncommitted_entries_max: usize,
    /// At most this many read requests waiting for a confirmation round; beyond it
    /// `read_index` returns `ReadError::Busy`.
    pub pending_reads_max: usize,
    /// Seed of this node's RNG (election timeouts). The simulator derives it from its seed.
    pub seed: u64,
}

impl Config {
    /// Sane defaults for a node `id` in a cluster of `voters`: 10 ticks..20 ticks election,
    /// heartbeat every 2 ticks, pre-vote and check-quorum on.
    pub fn new(id: NodeId, voters: Vec<NodeId>, seed: u64) -> Config {
        Config {
            id,
            voters,
            learners: Vec::new(),
            election_ticks_min: 10,
            election_ticks_max: 20,
            heartbeat_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            inflight_msgs_max: 64,
            inflight_bytes_max: 32 << 20,
            msg_bytes_max: 4 << 20,
            uncommitted_entries_max: 100_000,
            pending_reads_max: 100_000,
            seed,
        }
    }
}

/// What the node restarts from: everything storage recovered.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    pub hard_state: HardState,
    /// The latest snapshot's metadata, if any (its data is the runtime's business).
    pub snapshot: Option<SnapshotMeta>,
    /// Every entry after the snapshot, in order, contiguous.
    pub entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// A leadership transfer is in progress; proposals are refused until it ends (thesis §3.10).
    #[error("leadership transfer in progress")]
    Transferring,
    #[error("too many uncommitted entries")]
    Busy,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("no known leader")]
    NoLeader,
    #[error("too many pending reads")]
    Busy,
}

/// Why a read that was accepted later failed (it surfaces in `Ready::failed_reads`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFailure {
    /// Leadership was lost (or the leader answered that it could not serve) before the read
    /// index was confirmed. The client may retry.
    LeadershipLost,
}

/// A read that became safe: serve it once the state machine has applied `index` (thesis §6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    pub id: ReadId,
    pub index: Index,
}

/// What the node wants the runtime to observe: role, term and leader (for status and routing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    pub role: Role,
    pub term: Term,
    pub leader: Option<NodeId>,
    pub commit_index: Index,
}

/// Everything the runtime must do after one turn of inputs. Execute it in this order:
///
/// 1. Send `messages_before_persist` (only a leader's AppendEntries: thesis §10.2.1 allows the
///    leader to replicate before its own fsync, because it counts itself toward a quorum only for
///    what it has reported persisted).
/// 2. Persist `hard_state` (when `Some`) and `entries` in one write and one fsync. `entries`
///    may start at or below the current last index: storage first truncates every entry at or
///    after `entries[0].index` (§5.3 conflict), then appends.
/// 3. Send `messages`: they may acknowledge what step 2 persisted (votes, AppendEntries
///    successes), so they must never leave before it.
/// 4. Apply `committed_entries` to the state machine, in order, and answer waiting clients.
/// 5. Serve `read_states` whose index is applied; fail `failed_reads`.
/// 6. Call `persisted(last index, its term)` for step 2 and `applied(index)` for step 4.
#[derive(Clone, Debug, Default)]
pub struct Ready {
    pub soft_state: Option<SoftState>,
    pub hard_state: Option<HardState>,
    pub entries: Vec<Entry>,
    pub messages_before_persist: Vec<Message>,
    pub messages: Vec<Message>,
    pub committed_entries: Vec<Entry>,
    pub read_states: Vec<ReadState>,
    pub failed_reads: Vec<(ReadId, ReadFailure)>,
}

impl Ready {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.soft_state.is_none()
            && self.hard_state.is_none()
            && self.entries.is_empty()
            && self.messages_before_persist.is_empty()
            && self.messages.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
            && self.failed_reads.is_empty()
    }
}

/// One Raft node. See `raft/mod.rs` for how it works.
pub struct RaftNode {
    // The implementation fills this in.
}

impl RaftNode {
    /// A node starting from recovered state (`Restored::default()` for a brand-new node).
    pub fn new(config: Config, restored: Restored) -> RaftNode {
        let _ = (config, restored);
        todo!()
    }

    /// Advance the logical clock by one tick: election timeouts, heartbeats, check-quorum.
    pub fn tick(&mut self) {
        todo!()
    }

    /// Handle one message from a peer. Messages from unknown senders or old terms are dropped
    /// (answered where the paper says to answer), never a panic.
    pub fn step(&mut self, msg: Message) {
        let _ = msg;
        todo!()
    }

    /// Append a client command (leader only). Returns the index and term the entry was given:
    /// the runtime's proposal has succeeded exactly when an entry with this index *and* term
    /// is later committed; if the index is committed with another term, it was lost.
    pub fn propose(&mut self, data: bytes::Bytes) -> Result<(Index, Term), ProposeError> {
        let _ = data;
        todo!()
    }

    /// Ask for a linearizable read (thesis §6.4). On a leader it joins the next confirmation
    /// round; on a follower it is forwarded to the leader. The answer arrives in
    /// `Ready::read_states` or `Ready::failed_reads`.
    pub fn read_index(&mut self, id: ReadId) -> Result<(), ReadError> {
        let _ = id;
        todo!()
    }

    /// Start handing leadership to `to` (thesis §3.10): bring it up to date, then TimeoutNow.
    /// Aborted after an election timeout if it has not happened.
    pub fn transfer_leadership(&mut self, to: NodeId) {
        let _ = to;
        todo!()
    }

    /// Start an election now (tests and single-node bootstrap).
    pub fn campaign(&mut self) {
        todo!()
    }

    /// Everything accumulated since the last call; see `Ready` for the execution order.
    pub fn ready(&mut self) -> Ready {
        todo!()
    }

    /// True if `ready()` would return something non-empty.
    pub fn has_ready(&self) -> bool {
        todo!()
    }

    /// Storage has durably written the log up to `index`, whose entry has term `term`. If the
    /// log was truncated meanwhile and `index` now holds another term, this is ignored.
    pub fn persisted(&mut self, index: Index, term: Term) {
        let _ = (index, term);
        todo!()
    }

    /// The state machine has applied every committed entry up to `index`.
    pub fn applied(&mut self, index: Index) {
        let _ = index;
        todo!()
    }

    pub fn id(&self) -> NodeId {
        todo!()
    }
    pub fn role(&self) -> Role {
        todo!()
    }
    pub fn term(&self) -> Term {
        todo!()
    }
    pub fn leader(&self) -> Option<NodeId> {
        todo!()
    }
    pub fn commit_index(&self) -> Index {
        todo!()
    }
    pub fn last_index(&self) -> Index {
        todo!()
    }
    pub fn hard_state(&self) -> HardState {
        todo!()
    }
    /// True on a leader that heard from a quorum within the last `election_ticks_min` ticks
    /// less a safety margin: it may serve `consistency=lease` reads locally (thesis §6.4.1).
    pub fn has_lease(&self) -> bool {
        todo!()
    }
    /// The leader's view of each peer's `match_index` (empty on a follower).
    pub fn progress(&self) -> Vec<(NodeId, Index)> {
        todo!()
    }
    /// Entries in `[from, to]` still in memory (for tests and the simulator's checks).
    pub fn entries(&self, from: Index, to: Index) -> Vec<Entry> {
        let _ = (from, to);
        todo!()
    }
}
