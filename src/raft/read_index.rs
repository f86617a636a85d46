//! The leader's linearizable reads (thesis §6.4) and its lease (thesis §6.4.1).
//!
//! ReadIndex: a read arriving at the leader records `read_index = commit_index` and waits for a
//! heartbeat round *sent after it arrived* to be echoed by a quorum: then no other leader can
//! have existed when the read arrived, and serving state at `read_index` or later is
//! linearizable. Rounds are numbered by `read_seq`; every AppendEntries carries the current
//! number and every answer echoes it, so one round confirms every read that joined it.
//! A new leader must first commit an entry of its own term (its no-op) so that its
//! commit_index is at least every entry committed before it (thesis §6.4 step 1); reads that
//! arrive earlier are deferred, not failed.
//!
//! The lease: each round remembers the tick it was first sent at. When a quorum echoed round
//! `s`, every one of those followers heard from this leader no earlier than `s`'s tick, and with
//! check-quorum none of them will vote for anyone else within `election_ticks_min` of that
//! (their own clock). So until `tick(s) + election_ticks_min - LEASE_MARGIN_TICKS` no other
//! leader can exist. The margin covers tick granularity (a follower's elapsed count may start
//! up to one tick late) and one tick of clock drift between nodes.
//!
//! Invariants: `pending` is sorted by `seq`; every pending read's `seq` is at most `seq + 1`.
//! Bounded by `pending_reads_max` (enforced by the caller, which refuses new reads).

use std::collections::VecDeque;

use super::message::{MessageBody, ReadId};
use super::node::{RaftNode, ReadError, ReadFailure, ReadState};
use super::quorum::quorum_value;
use super::role::RoleState;
use super::types::{Index, NodeId};

/// Ticks of safety margin subtracted from `election_ticks_min` for lease reads (see above).
pub const LEASE_MARGIN_TICKS: u64 = 2;

/// One read waiting for confirmation. `from` is `None` for the leader's own clients, or the
/// follower that forwarded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingRead {
    pub id: ReadId,
    pub from: Option<NodeId>,
    pub index: Index,
    pub seq: u64,
}

#[derive(Debug, Default)]
pub struct ReadIndexState {
    /// The last round number sent to the followers.
    seq: u64,
    /// A read joined round `seq + 1`, which must be sent at the next `ready()`.
    round_needed: bool,
    pending: VecDeque<PendingRead>,
    /// Reads that arrived before the leader committed an entry of its term.
    deferred: Vec<(ReadId, Option<NodeId>)>,
    /// (first round sent at this tick, tick); one record per tick, pruned to the lease window.
    round_ticks: VecDeque<(u64, u64)>,
}

impl ReadIndexState {
    pub fn waiting(&self) -> usize {
        self.pending.len() + self.deferred.len()
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn round_needed(&self) -> bool {
        self.round_needed
    }

    pub fn defer(&mut self, id: ReadId, from: Option<NodeId>) {
        self.deferred.push((id, from));
    }

    /// A read at `commit_index`, joining the next round.
    pub fn add(&mut self, id: ReadId, from: Option<NodeId>, commit_index: Index) {
        self.pending.push_back(PendingRead {
            id,
            from,
            index: commit_index,
            seq: self.seq + 1,
        });
        self.round_needed = true;
    }

    /// The leader committed an entry of its term: deferred reads may now take commit_index.
    pub fn release_deferred(&mut self, commit_index: Index) {
        for (id, from) in std::mem::take(&mut self.deferred) {
            self.add(id, from, commit_index);
        }
    }

    /// A round is being sent now (at tick `now`); returns its number.
    pub fn start_round(&mut self, now: u64, lease_window_ticks: u64) -> u64 {
        self.seq += 1;
        self.round_needed = false;
        if self.round_ticks.back().is_none_or(|&(_, t)| t != now) {
            self.round_ticks.push_back((self.seq, now));
        }
        while let Some(&(_, t)) = self.round_ticks.front() {
            if now.saturating_sub(t) <= lease_window_ticks {
                break;
            }
            self.round_ticks.pop_front();
        }
        self.seq
    }

    /// A quorum echoed round `quorum_seq`: every read of that round or earlier is confirmed.
    pub fn confirm(&mut self, quorum_seq: u64) -> Vec<PendingRead> {
        let mut out = Vec::new();
        while let Some(r) = self.pending.front() {
            if r.seq > quorum_seq {
                break;
            }
            out.extend(self.pending.pop_front());
        }
        out
    }

    /// Leadership is lost: every read fails.
    pub fn drain_all(&mut self) -> Vec<(ReadId, Option<NodeId>)> {
        let mut out: Vec<_> = self.pending.drain(..).map(|r| (r.id, r.from)).collect();
        out.append(&mut self.deferred);
        out
    }

    /// The tick at which round `quorum_seq` was sent, or earlier (conservative), if still known.
    pub fn round_tick(&self, quorum_seq: u64) -> Option<u64> {
        self.round_ticks
            .iter()
            .rev()
            .find(|&&(s, _)| s <= quorum_seq)
            .map(|&(_, t)| t)
    }
}

impl RaftNode {
    /// Ask for a linearizable read (thesis §6.4). On a leader it joins the next confirmation
    /// round; on a follower it is forwarded to the leader. The answer arrives in
    /// `Ready::read_states` or `Ready::failed_reads`. At `pending_reads_max` waiting reads it
    /// returns `ReadError::Busy`.
    pub fn read_index(&mut self, id: ReadId) -> Result<(), ReadError> {
        let max = self.config.pending_reads_max;
        let commit = self.log.commit_index();
        let committed_in_term = self.log.term_at(commit) == Some(self.current_term);
        if let RoleState::Leader(l) = &mut self.role {
            if l.reads.waiting() >= max {
                return Err(ReadError::Busy);
            }
            if committed_in_term {
                l.reads.add(id, None, commit);
            } else {
                l.reads.defer(id, None);
            }
            return Ok(());
        }
        let Some(leader) = self.leader else {
            return Err(ReadError::NoLeader);
        };
        if self.forwarded_reads.len() >= max {
            return Err(ReadError::Busy);
        }
        self.forwarded_reads.push((id, leader, self.now));
        self.send(leader, MessageBody::ReadIndexRequest { id });
        Ok(())
    }

    /// A follower's read request: treated like a local read, answered when confirmed. A
    /// non-leader, or a leader at its limit, answers at once that it cannot serve it.
    pub(super) fn handle_read_index_request(&mut self, from: NodeId, id: ReadId) {
        let max = self.config.pending_reads_max;
        let commit = self.log.commit_index();
        let committed_in_term = self.log.term_at(commit) == Some(self.current_term);
        match &mut self.role {
            RoleState::Leader(l) if l.reads.waiting() < max => {
                if committed_in_term {
                    l.reads.add(id, Some(from), commit);
                } else {
                    l.reads.defer(id, Some(from));
                }
            }
            _ => self.send(from, MessageBody::ReadIndexResponse { id, index: None }),
        }
    }

    /// The leader's answer to a read this node forwarded.
    pub(super) fn handle_read_index_response(
        &mut self,
        from: NodeId,
        id: ReadId,
        index: Option<Index>,
    ) {
        let Some(pos) = self
            .forwarded_reads
            .iter()
            .position(|&(rid, leader, _)| rid == id && leader == from)
        else {
            return;
        };
        self.forwarded_reads.remove(pos);
        match index {
            Some(index) => self.read_states.push(ReadState { id, index }),
            None => self.failed_reads.push((id, ReadFailure::LeadershipLost)),
        }
    }

    /// The round a quorum of voters has echoed (this leader counts as having echoed every
    /// round it sent).
    fn quorum_seq(&self) -> Option<u64> {
        let RoleState::Leader(l) = &self.role else {
            return None;
        };
        let seqs = self
            .config
            .voters
            .iter()
            .map(|v| {
                if *v == self.config.id {
                    l.reads.seq()
                } else {
                    l.progress.get(v).map_or(0, |p| p.acked_seq)
                }
            })
            .collect();
        Some(quorum_value(seqs))
    }

    /// Hand out every read whose round a quorum echoed: local ones as `read_states`, a
    /// follower's as a ReadIndexResponse.
    pub(super) fn confirm_reads(&mut self) {
        let Some(q) = self.quorum_seq() else { return };
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        for r in l.reads.confirm(q) {
            match r.from {
                None => self.read_states.push(ReadState {
                    id: r.id,
                    index: r.index,
                }),
                Some(to) => self.send(
                    to,
                    MessageBody::ReadIndexResponse {
                        id: r.id,
                        index: Some(r.index),
                    },
                ),
            }
        }
    }

    /// Leadership is lost: every pending read fails (local ones in `failed_reads`, a
    /// follower's by a negative answer so it does not wait for nothing).
    pub(super) fn fail_leader_reads(&mut self, reads: &mut ReadIndexState) {
        for (id, from) in reads.drain_all() {
            match from {
                None => self.failed_reads.push((id, ReadFailure::LeadershipLost)),
                Some(to) => self.send(to, MessageBody::ReadIndexResponse { id, index: None }),
            }
        }
    }

    /// The leader this node forwarded reads to is no longer known to be the leader.
    pub(super) fn fail_forwarded_reads(&mut self) {
        for (id, _, _) in self.forwarded_reads.drain(..) {
            self.failed_reads.push((id, ReadFailure::LeadershipLost));
        }
    }

    /// Forwarded reads unanswered for `election_ticks_max` ticks fail: the request or the
    /// answer was lost, and the leader cannot be confirmed (reported as `LeadershipLost`; the
    /// client may retry).
    pub(super) fn expire_forwarded_reads(&mut self) {
        let (now, max) = (self.now, self.config.election_ticks_max);
        let failed = &mut self.failed_reads;
        self.forwarded_reads.retain(|&(id, _, sent)| {
            let alive = now.saturating_sub(sent) < max;
            if !alive {
                failed.push((id, ReadFailure::LeadershipLost));
            }
            alive
        });
    }

    /// True on a leader that heard from a quorum within the last `election_ticks_min` ticks
    /// less `LEASE_MARGIN_TICKS`: it may serve `consistency=lease` reads locally (thesis
    /// §6.4.1). Needs check-quorum (it is what makes followers refuse other candidates) and is
    /// off from the start of a leadership transfer, and for the rest of the term once a
    /// TimeoutNow was sent (its election overrides the followers' lease, even if the transfer
    /// was since aborted).
    pub fn has_lease(&self) -> bool {
        let RoleState::Leader(l) = &self.role else {
            return false;
        };
        if !self.config.check_quorum || l.transfer.is_some() || l.lease_revoked {
            return false;
        }
        // Thesis §6.4 step 1 holds for lease reads too: until an entry of its term commits, a
        // new leader's commit_index may lag what its predecessor committed.
        if self.log.term_at(self.log.commit_index()) != Some(self.current_term) {
            return false;
        }
        let Some(q) = self.quorum_seq() else {
            return false;
        };
        let window = self
            .config
            .election_ticks_min
            .saturating_sub(LEASE_MARGIN_TICKS);
        l.reads
            .round_tick(q)
            .is_some_and(|t| self.now.saturating_sub(t) < window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_share_a_round_and_wait_for_it() {
        let mut r = ReadIndexState::default();
        r.add(ReadId(1), None, Index(5));
        r.add(ReadId(2), None, Index(5));
        assert!(r.round_needed());
        assert!(
            r.confirm(0).is_empty(),
            "rounds sent before the reads do not count"
        );
        let s = r.start_round(0, 10);
        r.add(ReadId(3), None, Index(6));
        let done: Vec<_> = r.confirm(s).iter().map(|p| p.id).collect();
        assert_eq!(done, vec![ReadId(1), ReadId(2)]);
        assert_eq!(r.waiting(), 1);
    }

    #[test]
    fn round_ticks_are_conservative_and_pruned() {
        let mut r = ReadIndexState::default();
        let a = r.start_round(1, 5);
        let b = r.start_round(1, 5);
        assert_eq!(r.round_tick(b), Some(1));
        assert_eq!(r.round_tick(a), Some(1));
        r.start_round(20, 5);
        assert_eq!(r.round_tick(b), None, "too old to give a lease");
    }
}
