//! Raft, from the paper ("In Search of an Understandable Consensus Algorithm", Ongaro and
//! Ousterhout, 2014) and Ongaro's thesis ("Consensus: Bridging Theory and Practice", 2014), as a
//! pure deterministic state machine.
//!
//! No I/O, no clock, no global RNG lives here: the runtime passes in ticks, messages and
//! proposals, and drains a `Ready` (see `node.rs` for the contract and its execution order).
//!
//! # How this Raft works
//!
//! **The shape.** A `RaftNode` is fed four kinds of input: `tick` (the passage of time, in
//! whatever unit the runtime chooses), `step` (a message from a peer), `propose` (a client
//! command, on the leader) and `read_index` (a linearizable read). It never does anything by
//! itself. After a batch of inputs the runtime calls `ready()` and gets everything the node
//! decided: the hard state and log entries to make durable, messages to send, committed entries
//! to apply, reads that became safe. Because the whole algorithm is a function of its inputs and
//! a seed, a simulator can replay any run exactly (`tests/simulation.rs`).
//!
//! **Terms and roles (§5.1).** Time is divided into terms, each with at most one leader. Every
//! message carries its sender's term; a node that sees a higher term adopts it and becomes a
//! follower before doing anything else (`election.rs: step_term`), and messages of lower terms
//! are dropped (or answered with the newer term, so a deposed leader learns it). The role is an
//! enum whose variants carry their own state (`role.rs`): only a leader has per-peer progress,
//! only a candidate has votes.
//!
//! **Elections (§5.2, §5.4.1).** A follower that hears nothing from a leader for a randomized
//! timeout in `[election_ticks_min, election_ticks_max)` starts an election. With pre-vote on
//! (thesis §9.6) it first asks, at no cost, whether a majority *would* vote for it in the next
//! term; only then does it increment its term, vote for itself and send RequestVote. A voter
//! grants one vote per term, to a candidate whose log is at least as up to date as its own (last
//! term, then last index). The vote is durable before it is announced: the response sits in
//! `Ready::messages`, which the runtime sends after persisting `Ready::hard_state`. With
//! check-quorum on (thesis §4.2.3, §6.2), a follower that heard from a leader within
//! `election_ticks_min` ignores vote requests, and a leader that did not hear from a majority
//! within `election_ticks_min` steps down. Together with pre-vote this keeps a node that was
//! partitioned away from deposing a healthy leader when it returns.
//!
//! **Replication (§5.3).** The leader appends each proposal to its log and, at the next
//! `ready()`, sends every peer one AppendEntries carrying all entries that peer has not been
//! sent (bounded by `msg_bytes_max`), so a busy turn costs one message per peer, not one per
//! proposal. The follower checks that its log holds `prev_log_index` with `prev_log_term`,
//! deletes any conflicting suffix, appends, and answers. Per-peer progress (`progress.rs`) has
//! two modes: *probe*, one message at a time while the match point is unknown, stepping back
//! with the follower's conflict hint (one round trip per conflicting term, not per entry); and
//! *replicate*, streaming optimistically with at most `inflight_msgs_max` messages and
//! `inflight_bytes_max` bytes unacknowledged.
//!
//! **Commitment (§5.3, §5.4.2).** An entry is committed once stored on a majority; the leader
//! computes the highest such index from the match indexes (`quorum.rs`), but commits it only if
//! it is of its current term (figure 8: older entries are committed indirectly). A new leader
//! therefore appends a no-op at once. The leader sends new entries *before* its own fsync
//! (thesis §10.2.1: `Ready::messages_before_persist`) but counts itself only for what storage
//! reported with `persisted`. Followers acknowledge only after their fsync.
//!
//! **Reads (thesis §6.4).** `read_index` records the commit index and waits for a heartbeat
//! round, started after the read arrived, to be echoed by a majority; many reads share a round.
//! A new leader defers reads until its no-op commits. Followers forward reads to the leader. A
//! leader whose majority answered within `election_ticks_min` minus a margin holds a lease
//! (`has_lease`, thesis §6.4.1) and may serve reads without a round.
//!
//! **Snapshots (§7).** The runtime snapshots its state machine at an applied index and, once
//! the snapshot is durable, calls `compact`; the log forgets what the snapshot covers. A peer
//! that needs forgotten entries gets the snapshot instead: the leader lists it in
//! `Ready::snapshot_requests`, the runtime streams the bytes in chunks, and the follower's
//! runtime hands the assembled snapshot to `install_snapshot`, which resets the log (keeping a
//! suffix that matches) and returns it in `Ready::snapshot` to persist and load.
//!
//! **Membership (thesis ch. 4).** `propose_conf_change` adds a learner, promotes one, or
//! removes a node, one server at a time; each configuration takes effect as soon as its entry
//! is appended. Learners replicate the log but never vote, campaign or count toward a quorum.
//!
//! **Leadership transfer (thesis §3.10).** The leader stops taking proposals, brings the target
//! up to date, and sends it TimeoutNow; the target campaigns at once, and voters skip their
//! check-quorum lease for it. The transfer is abandoned after `election_ticks_min`.
//!
//! # Reading order
//!
//! `types.rs`, `message.rs`, `node.rs` (the contract), then `election.rs`, `replication.rs`,
//! `read_index.rs`, `snapshot.rs`, `membership.rs`; `log.rs`, `progress.rs`, `quorum.rs` are
//! the small concepts they use.
//!
//! # Implementation caveats
//!
//! * Heartbeats are AppendEntries anchored at the peer's `match_index` (which it is known to
//!   hold), so they always succeed; they do not discover divergence. A lost AppendEntries in
//!   replicate mode is resent after `election_ticks_min / heartbeat_ticks` heartbeat rounds
//!   without progress (a retransmission timeout, `Progress::heartbeat_round`); in probe mode a
//!   heartbeat's answer re-arms the probe.
//! * A follower answers an AppendEntries whose `prev_log_index` is below its commit index by
//!   checking from its commit index instead: committed entries are in every later leader's log
//!   (Leader Completeness, §5.4), so they need no check. For the same reason a follower refuses
//!   (drops) any AppendEntries that would truncate a committed entry: only a faulty peer sends
//!   one.
//! * A follower's success answer is queued when the entries are appended, and sent after the
//!   `Ready` that persists them. If a newer leader truncates those entries in the same turn, the
//!   queued answer is withdrawn, so it never acknowledges entries that are not on disk (§5.3
//!   with thesis §10.2.1).
//! * A voter that already knows a leader in the current term does not grant its vote to
//!   another candidate in that term even if it has not voted (as etcd does); this is stricter
//!   than figure 2 and cannot hurt safety.
//! * A pre-vote is granted when the candidate's proposed term is above ours, its log is up to
//!   date and we are not in a leader lease; the grant carries the proposed term and changes
//!   nothing here. A rejection carries the voter's real term; if that is above the candidate's,
//!   the candidate adopts it and becomes a follower (§5.1). Thesis §9.6 leaves these details
//!   open; they follow etcd's reading.
//! * The lease (`has_lease`) assumes tick rates on different nodes differ by less than the
//!   `LEASE_MARGIN_TICKS` margin over an election timeout, as thesis §6.4.1 warns. It is
//!   measured from when the confirming round was *sent*, not when it was answered. A follower
//!   that restarts cannot know whether it was part of some leader's lease, so a restarted node
//!   (one with a non-zero term) ignores vote requests for its first `election_ticks_min` ticks.
//! * TimeoutNow is obeyed only when it comes from the leader this node follows, and once a
//!   leader has sent one it holds no lease for the rest of its term (the election it starts
//!   ignores the followers' lease, even if the transfer is later aborted).
//! * Forwarded reads fail after `election_ticks_max` ticks without an answer, as
//!   `ReadFailure::LeadershipLost` (the request or its answer may have been lost).
//! * commit_index is not persisted (figure 2 makes it volatile): after a restart the node
//!   relearns it from the leader, so `Ready::committed_entries` starts after the snapshot.
//! * Snapshots never carry their bytes through the core (`snapshot.rs`): the core tracks a
//!   peer's transfer only as Snapshot progress mode, paused until the follower's final
//!   acknowledgement, a failure report from the runtime (retried after `election_ticks_min`)
//!   or `snapshot_timeout_ticks` without news (asked again). Chunks and their offsets are the
//!   runtime's business; the follower's core only checks that they come from its leader.
//! * A follower whose commit index already covers an arriving snapshot does not install it,
//!   but still acknowledges its index: everything up to there is in its log and durable by
//!   the time the acknowledgement leaves (it is queued behind the persist step).
//! * Compaction keeps `compaction_tail_entries` before the snapshot in memory only; storage
//!   may drop more, so after a restart the log starts right after the snapshot.
//! * Membership (`membership.rs`) uses single-server changes only (no joint consensus),
//!   effective on append, one at a time, and never before the leader committed an entry of
//!   its term. `Config::voters`/`learners` are the *initial* configuration; a snapshot's
//!   membership and the ConfChange entries after it replace them. Messages from outside the
//!   configuration are heard (thesis §4.1: a leader may be in a configuration this node has
//!   not seen yet). A removed node that never learned of its removal may campaign; pre-vote
//!   and check-quorum (thesis §4.2.3) keep it from disrupting a cluster that has a leader.
//! * A removed leader steps down when its removal commits without handing leadership over:
//!   the remaining voters elect a leader after an election timeout. (The runtime's graceful
//!   stop transfers leadership first.)

mod election;
mod inspect;
mod log;
pub mod membership;
pub mod message;
pub mod node;
pub mod progress;
pub mod quorum;
pub mod read_index;
mod replication;
mod role;
mod snapshot;
pub mod types;

pub use membership::{ConfChange, ConfChangeOp, Membership};
pub use message::{Message, MessageBody, ReadId};
pub use node::{
    Config, ConfigError, ProposeError, RaftNode, ReadError, ReadFailure, ReadState, Ready,
    Restored, SoftState,
};
pub use types::{Entry, EntryKind, HardState, Index, NodeId, Role, SnapshotMeta, Term};
