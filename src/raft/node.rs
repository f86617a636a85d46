//! The Raft node's public face: how the runtime feeds it inputs and drains its `Ready`.
//!
//! This file is the contract of DESIGN.md §2. Inputs: `tick`, `step` (a peer's message),
//! `propose`, `read_index`, `transfer_leadership`. Output: `ready()`, executed by the runtime in
//! the order documented on `Ready`, then acknowledged with `persisted` and `applied`.
//! Everything here is deterministic given the seed in `Config` and the order of calls.
//!
//! `RaftNode`'s methods are spread by idea: `read_index` and `has_lease` are in
//! `read_index.rs`, `transfer_leadership` in `replication.rs`, the election rules in
//! `election.rs`, snapshots (`compact`, `install_snapshot`...) in `snapshot.rs`, membership
//! changes in `membership.rs`, read-only views (`role`, `term`, `progress`...) in
//! `inspect.rs`. This file holds the struct, the inputs' entry points and `ready()`.

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::log::RaftLog;
use super::membership::{ConfChange, ConfTracker, membership_of};
use super::message::{Message, MessageBody, ReadId};
use super::role::RoleState;
use super::types::{Entry, EntryKind, HardState, Index, NodeId, Role, SnapshotMeta, Term};

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
    /// At most this many entry bytes in one `Ready::committed_entries` (at least one entry is
    /// always handed out); the rest follow in the next `ready()`.
    pub committed_bytes_max: u64,
    /// Entries kept in memory before a snapshot's index when compacting (§7), so a follower
    /// slightly behind still gets entries instead of a whole snapshot.
    pub compaction_tail_entries: u64,
    /// A leader asks the runtime to send a snapshot to a peer again when it heard nothing of
    /// the transfer (no `InstallSnapshotResponse`) for this many ticks.
    pub snapshot_timeout_ticks: u64,
    /// Seed of this node's RNG (election timeouts). The simulator derives it from its seed.
    pub seed: u64,
}

/// A configuration that cannot work (checked by `Config::validate`, asserted by `RaftNode::new`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("election_ticks_min must be >= 1 and < election_ticks_max")]
    ElectionTicks,
    #[error("heartbeat_ticks must be >= 1 and < election_ticks_min")]
    HeartbeatTicks,
    #[error("node id 0 is reserved")]
    ZeroId,
    #[error("a node cannot be both voter and learner")]
    VoterAndLearner,
    #[error("limits must be >= 1")]
    Limits,
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
            committed_bytes_max: 64 << 20,
            compaction_tail_entries: 1_000,
            snapshot_timeout_ticks: 100,
            seed,
        }
    }

    /// Check the parameters make sense; the runtime calls this on user-supplied settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.election_ticks_min == 0 || self.election_ticks_min >= self.election_ticks_max {
            return Err(ConfigError::ElectionTicks);
        }
        if self.heartbeat_ticks == 0 || self.heartbeat_ticks >= self.election_ticks_min {
            return Err(ConfigError::HeartbeatTicks);
        }
        if self.id == NodeId(0) {
            return Err(ConfigError::ZeroId);
        }
        if self.voters.iter().any(|v| self.learners.contains(v)) {
            return Err(ConfigError::VoterAndLearner);
        }
        if self.inflight_msgs_max == 0
            || self.inflight_bytes_max == 0
            || self.msg_bytes_max == 0
            || self.uncommitted_entries_max == 0
            || self.pending_reads_max == 0
            || self.committed_bytes_max == 0
            || self.snapshot_timeout_ticks == 0
        {
            return Err(ConfigError::Limits);
        }
        Ok(())
    }
}

/// What the node restarts from: everything storage recovered.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    pub hard_state: HardState,
    /// The latest snapshot's metadata, if any (its data is the runtime's business, loaded into
    /// the state machine before the node is created). Its membership replaces the one in
    /// `Config`.
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
    /// Thesis ch. 4: a membership change is already in progress (appended, not committed), or
    /// this leader has not yet committed an entry of its term. Retry shortly.
    #[error("a membership change is in progress")]
    ConfChangeInProgress,
    /// The membership change makes no sense from the current configuration.
    #[error("invalid membership change: {reason}")]
    InvalidConfChange { reason: &'static str },
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
/// 2. If `snapshot` is `Some` (a snapshot installed from the leader, see `snapshot.rs`), save
///    it durably first (storage discards the log entries it conflicts with, §7). Then persist
///    `hard_state` (when `Some`) and `entries` in one write and one fsync. `entries` may start
///    at or below the current last index: storage first truncates every entry at or after
///    `entries[0].index` (§5.3 conflict), then appends.
/// 3. Send `messages`: they may acknowledge what step 2 persisted (votes, AppendEntries
///    successes, an installed snapshot), so they must never leave before it.
/// 4. Load `snapshot` into the state machine (if `Some`), then apply `committed_entries`, in
///    order, and answer waiting clients.
/// 5. Serve `read_states` whose index is applied; fail `failed_reads`.
/// 6. Call `persisted(last index, its term)` for step 2 and `applied(index)` for step 4.
///
/// `snapshot_requests` (leader only) may be started at any point: stream the latest snapshot
/// to each peer listed (see `snapshot.rs`); a peer already being streamed to needs nothing new.
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
    /// A snapshot installed from the leader: persist (step 2), then load (step 4).
    pub snapshot: Option<SnapshotMeta>,
    /// Peers the runtime should stream the latest snapshot to (§7).
    pub snapshot_requests: Vec<NodeId>,
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
            && self.snapshot.is_none()
            && self.snapshot_requests.is_empty()
    }
}

/// One Raft node. See `raft/mod.rs` for how it works.
///
/// Fields are `pub(super)` so the files that each hold one idea (`election.rs`,
/// `replication.rs`, `read_index.rs`) can extend it; nothing outside `raft` sees them.
pub struct RaftNode {
    pub(super) config: Config,
    /// Election timeouts only; seeded from `config.seed` so a run is reproducible.
    pub(super) rng: StdRng,
    /// Latest term seen (§5.1); persisted through `Ready::hard_state`.
    pub(super) current_term: Term,
    /// Vote cast in `current_term` (§5.2); persisted before any vote response leaves.
    pub(super) voted_for: Option<NodeId>,
    pub(super) log: RaftLog,
    pub(super) role: RoleState,
    /// The leader of `current_term` as far as this node knows.
    pub(super) leader: Option<NodeId>,
    /// Ticks since the last reset: for followers and candidates the time since they heard from
    /// a leader or granted a vote; for a leader the time within the current check-quorum round.
    pub(super) election_elapsed: u64,
    /// This round's randomized timeout, in `[election_ticks_min, election_ticks_max)` (§5.2).
    pub(super) election_timeout: u64,
    /// Ticks since this node started: the virtual clock the lease is measured on.
    pub(super) now: u64,
    /// Started from a non-empty hard state (see `in_lease`).
    pub(super) restarted: bool,
    /// Leader AppendEntries that may leave before the fsync (thesis §10.2.1). Drained by
    /// every `ready()`, so bounded by what one turn of inputs produces.
    pub(super) msgs_before_persist: Vec<Message>,
    /// Everything else: may acknowledge the hard state or entries of the same `Ready`.
    pub(super) msgs: Vec<Message>,
    pub(super) read_states: Vec<ReadState>,
    pub(super) failed_reads: Vec<(ReadId, ReadFailure)>,
    /// Reads this non-leader forwarded: (id, to which leader, tick sent). At most
    /// `pending_reads_max`; each fails if unanswered after `election_ticks_max` ticks (the
    /// request or its answer may have been lost).
    pub(super) forwarded_reads: Vec<(ReadId, NodeId, u64)>,
    /// Highest index the runtime reported applied (`applied`); never beyond what was handed out.
    pub(super) last_applied: Index,
    /// The membership: the base configuration and the ConfChange entries in the log
    /// (`membership.rs`); `config.voters/learners` always mirror its current value.
    pub(super) conf: ConfTracker,
    /// The latest snapshot (index 0 when none); see `snapshot.rs`.
    pub(super) snapshot: SnapshotMeta,
    /// An installed snapshot not yet handed out in `Ready::snapshot`.
    pub(super) pending_snapshot: Option<SnapshotMeta>,
    /// Peers to stream a snapshot to, drained by `ready()`; at most one entry per peer per
    /// `snapshot_timeout_ticks`.
    pub(super) snapshot_requests: Vec<NodeId>,
    prev_soft: SoftState,
    prev_hard: HardState,
}

impl RaftNode {
    /// A node starting from recovered state (`Restored::default()` for a brand-new node).
    /// It starts as a follower (a learner if it is not a voter) with commit_index at the
    /// snapshot: commit_index is volatile (figure 2) and is relearned from the leader.
    ///
    /// Panics if `config.validate()` fails or the restored entries are not contiguous after
    /// the snapshot: both are the caller's bugs (the runtime validates user settings first,
    /// and storage recovery checks the log).
    pub fn new(config: Config, restored: Restored) -> RaftNode {
        if let Err(e) = config.validate() {
            panic!("invalid raft config: {e}");
        }
        let snapshot = restored.snapshot.unwrap_or_else(|| SnapshotMeta {
            voters: config.voters.clone(),
            learners: config.learners.clone(),
            ..SnapshotMeta::default()
        });
        let (snap_index, snap_term) = (snapshot.last_included_index, snapshot.last_included_term);
        let log = RaftLog::restore(snap_index, snap_term, restored.entries);
        let conf = ConfTracker::new(snap_index, membership_of(&snapshot));
        let mut node = RaftNode {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            current_term: restored.hard_state.current_term,
            voted_for: restored.hard_state.voted_for,
            log,
            role: RoleState::Follower,
            leader: None,
            election_elapsed: 0,
            election_timeout: 0,
            now: 0,
            restarted: restored.hard_state.current_term > Term(0),
            msgs_before_persist: Vec::new(),
            msgs: Vec::new(),
            read_states: Vec::new(),
            failed_reads: Vec::new(),
            forwarded_reads: Vec::new(),
            last_applied: snap_index,
            conf,
            snapshot,
            pending_snapshot: None,
            snapshot_requests: Vec::new(),
            prev_soft: SoftState {
                role: Role::Follower,
                term: Term(0),
                leader: None,
                commit_index: Index(0),
            },
            prev_hard: restored.hard_state,
        };
        let entries = node.log.all().to_vec();
        node.conf.append(&entries);
        node.adopt_conf();
        node.reset_election_timer();
        node.prev_soft = node.soft_state();
        node
    }

    /// Advance the logical clock by one tick: election timeouts, heartbeats, check-quorum.
    pub fn tick(&mut self) {
        self.now += 1;
        self.expire_forwarded_reads();
        if matches!(self.role, RoleState::Leader(_)) {
            self.tick_leader();
        } else {
            self.tick_election();
        }
    }

    /// Handle one message from a peer. Messages of old terms are dropped (answered where the
    /// paper says to answer), never a panic. Senders outside our configuration are heard
    /// (thesis §4.1): a leader may be in a configuration we have not seen yet; their votes and
    /// acknowledgements count for nothing unless they are in ours.
    pub fn step(&mut self, msg: Message) {
        if msg.to != self.config.id || msg.from == self.config.id || msg.from == NodeId(0) {
            return;
        }
        if !self.step_term(&msg) {
            return;
        }
        let from = msg.from;
        match msg.body {
            MessageBody::RequestVote {
                pre_vote,
                last_log_index,
                last_log_term,
                leadership_transfer,
            } => self.handle_request_vote(
                from,
                msg.term,
                pre_vote,
                (last_log_index, last_log_term),
                leadership_transfer,
            ),
            MessageBody::RequestVoteResponse {
                pre_vote,
                vote_granted,
            } => self.handle_vote_response(from, msg.term, pre_vote, vote_granted),
            MessageBody::AppendEntries { .. } => self.handle_append_entries(msg),
            MessageBody::AppendEntriesResponse { .. } => self.handle_append_response(msg),
            MessageBody::TimeoutNow => self.handle_timeout_now(from),
            MessageBody::ReadIndexRequest { id } => self.handle_read_index_request(from, id),
            MessageBody::ReadIndexResponse { id, index } => {
                self.handle_read_index_response(from, id, index)
            }
            MessageBody::InstallSnapshot { .. } => self.handle_install_snapshot(from, msg.term),
            MessageBody::InstallSnapshotResponse {
                last_included_index,
                done,
                ..
            } => self.handle_install_snapshot_response(from, last_included_index, done),
        }
    }

    /// Append a client command (leader only). Returns the index and term the entry was given:
    /// the runtime's proposal has succeeded exactly when an entry with this index *and* term
    /// is later committed; if the index is committed with another term, it was lost.
    pub fn propose(&mut self, data: bytes::Bytes) -> Result<(Index, Term), ProposeError> {
        self.propose_entry(EntryKind::Normal, data)
    }

    /// Append an entry of any kind (leader only); `propose` is the `Normal` case, and a
    /// `ConfChange` goes through `propose_conf_change`'s rules. The limit is
    /// `uncommitted_entries_max` entries appended but not yet committed.
    pub fn propose_entry(
        &mut self,
        kind: EntryKind,
        data: bytes::Bytes,
    ) -> Result<(Index, Term), ProposeError> {
        if kind == EntryKind::ConfChange {
            let cc = ConfChange::decode(&data).ok_or(ProposeError::InvalidConfChange {
                reason: "undecodable",
            })?;
            return self.propose_conf_change(cc);
        }
        self.append_proposal(kind, data)
    }

    /// The leader appends a proposal at the end of its log (§5.3).
    pub(super) fn append_proposal(
        &mut self,
        kind: EntryKind,
        data: bytes::Bytes,
    ) -> Result<(Index, Term), ProposeError> {
        let RoleState::Leader(leader) = &self.role else {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        };
        if leader.transfer.is_some() {
            return Err(ProposeError::Transferring);
        }
        let uncommitted = self.log.last_index().0 - self.log.commit_index().0;
        if uncommitted >= self.config.uncommitted_entries_max as u64 {
            return Err(ProposeError::Busy);
        }
        let index = self.log.last_index().next();
        let term = self.current_term;
        let entry = Entry {
            term,
            index,
            kind,
            data,
        };
        if kind == EntryKind::ConfChange {
            // Thesis §4.1: the new configuration is in effect from its append.
            self.conf_appended(std::slice::from_ref(&entry));
        }
        self.log.append(entry);
        Ok((index, term))
    }

    /// Start an election now (tests and single-node bootstrap). With pre-vote on, this starts
    /// the pre-vote phase. Ignored on a leader and on a non-voter.
    pub fn campaign(&mut self) {
        if matches!(self.role, RoleState::Leader(_)) || !self.is_voter() {
            return;
        }
        self.start_campaign();
    }

    /// Everything accumulated since the last call; see `Ready` for the execution order.
    pub fn ready(&mut self) -> Ready {
        if matches!(self.role, RoleState::Leader(_)) {
            self.request_snapshots();
            self.flush_leader();
        }
        let soft = self.soft_state();
        let soft_state = (soft != self.prev_soft).then_some(soft);
        self.prev_soft = soft;
        let hard = self.hard_state();
        let hard_state = (hard != self.prev_hard).then_some(hard);
        self.prev_hard = hard;
        Ready {
            soft_state,
            hard_state,
            entries: self.log.take_unstable(),
            messages_before_persist: std::mem::take(&mut self.msgs_before_persist),
            messages: std::mem::take(&mut self.msgs),
            committed_entries: self.log.take_committed(self.config.committed_bytes_max),
            read_states: std::mem::take(&mut self.read_states),
            failed_reads: std::mem::take(&mut self.failed_reads),
            snapshot: self.pending_snapshot.take(),
            snapshot_requests: std::mem::take(&mut self.snapshot_requests),
        }
    }

    /// True if `ready()` would return something non-empty.
    pub fn has_ready(&self) -> bool {
        self.soft_state() != self.prev_soft
            || self.hard_state() != self.prev_hard
            || self.log.has_unstable()
            || !self.msgs_before_persist.is_empty()
            || !self.msgs.is_empty()
            || self.log.has_committed_to_send()
            || !self.read_states.is_empty()
            || !self.failed_reads.is_empty()
            || self.leader_has_sends()
            || self.pending_snapshot.is_some()
            || !self.snapshot_requests.is_empty()
            || self.snapshot_requests_due()
    }

    /// Storage has durably written the log up to `index`, whose entry has term `term`. If the
    /// log was truncated meanwhile and `index` now holds another term, this is ignored.
    pub fn persisted(&mut self, index: Index, term: Term) {
        if self.log.persisted_to(index, term) && matches!(self.role, RoleState::Leader(_)) {
            // The leader's own vote toward commitment (thesis §10.2.1).
            self.maybe_commit();
        }
    }

    /// The state machine has applied every committed entry up to `index`.
    pub fn applied(&mut self, index: Index) {
        let index = index.min(self.log.applied_sent());
        self.last_applied = self.last_applied.max(index);
    }

    pub(super) fn is_voter(&self) -> bool {
        self.config.voters.contains(&self.config.id)
    }

    /// Queue a message for after the persist step (see `Ready`).
    pub(super) fn send(&mut self, to: NodeId, body: MessageBody) {
        self.msgs.push(Message {
            from: self.config.id,
            to,
            term: self.current_term,
            body,
        });
    }
}
