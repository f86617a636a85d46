//! The messages Raft nodes exchange, as the core sees them (the wire form lives in
//! `transport::convert`, the one file that maps protobuf to these types).
//!
//! Every message carries the sender's `term`; a receiver that sees a higher term updates its own
//! and becomes a follower before handling the message (§5.1), except for pre-votes, which never
//! change anybody's term (thesis §9.6).

use super::types::{Entry, Index, NodeId, Term};

/// One message from `from` to `to`, sent at the sender's `term`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    /// The sender's term (for a pre-vote request: the term it *would* campaign in).
    pub term: Term,
    pub body: MessageBody,
}

/// Opaque id of a read request, chosen by the runtime (unique among its pending reads).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadId(pub u64);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// RequestVote RPC (§5.2), or a pre-vote (thesis §9.6) when `pre_vote` is set.
    RequestVote {
        pre_vote: bool,
        last_log_index: Index,
        last_log_term: Term,
        /// Set when the election was started by TimeoutNow (thesis §3.10): the receiver must
        /// not reject it for having heard from a current leader recently.
        leadership_transfer: bool,
    },
    RequestVoteResponse {
        pre_vote: bool,
        vote_granted: bool,
    },
    /// AppendEntries RPC (§5.3); with no entries it is a heartbeat. `read_seq` is the leader's
    /// heartbeat round number; echoing it back confirms leadership for ReadIndex (thesis §6.4).
    AppendEntries {
        prev_log_index: Index,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: Index,
        read_seq: u64,
    },
    /// The answer to AppendEntries. On success `last_index` is the last index the follower now
    /// matches (sent only once those entries are persisted). On failure `last_index` is the
    /// `prev_log_index` that was rejected (so the leader can ignore stale rejections), and
    /// `conflict_index` and `conflict_term` are the fast-backtracking hint (thesis §5.3 /
    /// 6.5840): the first index the follower holds of `conflict_term`, or its log length + 1
    /// with term 0 if its log is short.
    AppendEntriesResponse {
        success: bool,
        last_index: Index,
        conflict_index: Index,
        conflict_term: Term,
        read_seq: u64,
    },
    /// Leadership transfer (thesis §3.10): "start an election now, ignoring your timer".
    TimeoutNow,
    /// A follower asks the leader for a read index on behalf of its clients (thesis §6.4).
    ReadIndexRequest {
        id: ReadId,
    },
    /// The leader's answer: the read is safe once the follower has applied `index`. `index`
    /// of `None` means the leader could not serve it (lost leadership) and the read fails.
    ReadIndexResponse {
        id: ReadId,
        index: Option<Index>,
    },
    /// InstallSnapshot (§7), one chunk: `data` is the snapshot's bytes from `offset`, `done`
    /// on the last chunk. Built and assembled by the runtime (see `raft/snapshot.rs`); the
    /// core only applies the term rules and resets the election timer.
    InstallSnapshot {
        last_included_index: Index,
        last_included_term: Term,
        offset: u64,
        data: bytes::Bytes,
        done: bool,
    },
    InstallSnapshotResponse {
        last_included_index: Index,
        /// Next byte offset the follower expects (for resuming a broken transfer).
        next_offset: u64,
        done: bool,
    },
}

impl MessageBody {
    /// A short name for traces and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            MessageBody::RequestVote { pre_vote: true, .. } => "PreVote",
            MessageBody::RequestVote { .. } => "RequestVote",
            MessageBody::RequestVoteResponse { pre_vote: true, .. } => "PreVoteResponse",
            MessageBody::RequestVoteResponse { .. } => "RequestVoteResponse",
            MessageBody::AppendEntries { .. } => "AppendEntries",
            MessageBody::AppendEntriesResponse { .. } => "AppendEntriesResponse",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::ReadIndexRequest { .. } => "ReadIndexRequest",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResponse",
            MessageBody::InstallSnapshot { .. } => "InstallSnapshot",
            MessageBody::InstallSnapshotResponse { .. } => "InstallSnapshotResponse",
        }
    }
}
