//! Leader election (§5.2), with pre-vote (thesis §9.6), check-quorum's vote lease (thesis
//! §4.2.3) and TimeoutNow for leadership transfer (thesis §3.10); and the term rules every
//! message passes through first (§5.1).
//!
//! Invariants: `current_term` never decreases; `voted_for` changes only when it is `None` in
//! the current term (one vote per term, §5.2), and the grant leaves in `Ready::messages`, after
//! the hard state carrying it is durable. Pre-votes never change anybody's term or vote.

use std::collections::BTreeMap;

use rand::Rng;

use super::message::{Message, MessageBody};
use super::node::RaftNode;
use super::progress::Progress;
use super::quorum::{VoteResult, vote_result};
use super::read_index::ReadIndexState;
use super::role::{LeaderState, RoleState, Votes};
use super::types::{Entry, EntryKind, Index, NodeId, Term};

impl RaftNode {
    /// Draw a fresh randomized timeout in `[election_ticks_min, election_ticks_max)` (§5.2:
    /// randomization makes split votes rare).
    pub(super) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        self.election_timeout = self
            .rng
            .random_range(self.config.election_ticks_min..self.config.election_ticks_max);
    }

    /// Tick of a follower or candidate: time out into a new election (§5.2).
    pub(super) fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            if self.is_voter() {
                self.start_campaign();
            } else {
                self.reset_election_timer();
            }
        }
    }

    /// True while this node has recently heard from a leader: it then refuses pre-votes
    /// (thesis §9.6) and, with check-quorum, real votes (see `in_lease`). A node that restarted
    /// (it has a term) may have heard from a leader just before it crashed, and that leader may
    /// be counting on it for its lease: it counts as having heard for its first
    /// `election_ticks_min` ticks. A brand-new node never heard from anyone.
    pub(super) fn heard_from_leader_recently(&self) -> bool {
        let min = self.config.election_ticks_min;
        let heard = self.leader.is_some() && self.election_elapsed < min;
        let just_restarted = self.restarted && self.now < min;
        heard || just_restarted
    }

    /// With check-quorum on, a node that heard from a leader recently ignores vote requests
    /// rather than help depose it (thesis §4.2.3).
    pub(super) fn in_lease(&self) -> bool {
        self.config.check_quorum && self.heard_from_leader_recently()
    }

    /// §5.1: a message from a higher term makes us a follower in that term first, except the
    /// messages of pre-vote (thesis §9.6), which carry a term nobody is in yet, and vote
    /// requests arriving while we still hear from a leader. Lower-term messages are dropped,
    /// answered only where the answer makes a stale sender step down. Returns false to drop.
    pub(super) fn step_term(&mut self, msg: &Message) -> bool {
        if msg.term > self.current_term {
            match msg.body {
                MessageBody::RequestVote { pre_vote: true, .. } => {}
                // A granted pre-vote carries the term we would campaign in, not a real one.
                // A rejected one carries the voter's real term and does demote us (below).
                MessageBody::RequestVoteResponse {
                    pre_vote: true,
                    vote_granted: true,
                } => {}
                MessageBody::RequestVote {
                    leadership_transfer: false,
                    ..
                } if self.in_lease() => return false,
                MessageBody::AppendEntries { .. }
                | MessageBody::InstallSnapshot { .. }
                | MessageBody::TimeoutNow => self.become_follower(msg.term, Some(msg.from)),
                _ => self.become_follower(msg.term, None),
            }
            return true;
        }
        if msg.term < self.current_term {
            match msg.body {
                // Tell a deposed leader about the new term so it steps down; with pre-vote
                // and check-quorum it may otherwise never learn of it.
                MessageBody::AppendEntries { read_seq, .. } => self.send(
                    msg.from,
                    MessageBody::AppendEntriesResponse {
                        success: false,
                        last_index: Index(0),
                        conflict_index: Index(0),
                        conflict_term: Term(0),
                        read_seq,
                    },
                ),
                MessageBody::RequestVote { pre_vote, .. } => self.send(
                    msg.from,
                    MessageBody::RequestVoteResponse {
                        pre_vote,
                        vote_granted: false,
                    },
                ),
                _ => {}
            }
            return false;
        }
        true
    }

    /// Become a follower in `term` (no-op on the term if it is not higher), believing in
    /// `leader`. A leader stepping down fails its pending reads (thesis §6.4).
    pub(super) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        assert!(term >= self.current_term, "terms never decrease");
        if term > self.current_term {
            self.current_term = term;
            self.voted_for = None;
            // A read forwarded in an older term may race the new leader's writes: fail it.
            self.fail_forwarded_reads();
        }
        let old = std::mem::replace(&mut self.role, RoleState::Follower);
        if let RoleState::Leader(mut l) = old {
            self.fail_leader_reads(&mut l.reads);
        }
        self.set_leader(leader);
        self.reset_election_timer();
    }

    /// Pre-vote if configured, a real election otherwise.
    pub(super) fn start_campaign(&mut self) {
        if self.config.pre_vote {
            self.start_pre_vote();
        } else {
            self.start_election(false);
        }
    }

    /// Thesis §9.6: ask the voters whether they *would* vote for us at `current_term + 1`,
    /// without changing our term; only a majority of yeses starts the real election.
    fn start_pre_vote(&mut self) {
        self.set_leader(None);
        self.reset_election_timer();
        self.role = RoleState::PreCandidate {
            votes: BTreeMap::from([(self.config.id, true)]),
        };
        if self.tally() == VoteResult::Won {
            self.start_election(false);
            return;
        }
        self.request_votes(true, self.current_term.next(), false);
    }

    /// §5.2: increment current_term, vote for self, ask every other voter.
    pub(super) fn start_election(&mut self, leadership_transfer: bool) {
        self.current_term = self.current_term.next();
        self.voted_for = Some(self.config.id);
        self.set_leader(None);
        self.reset_election_timer();
        self.role = RoleState::Candidate {
            votes: BTreeMap::from([(self.config.id, true)]),
        };
        if self.tally() == VoteResult::Won {
            self.become_leader();
            return;
        }
        self.request_votes(false, self.current_term, leadership_transfer);
    }

    fn request_votes(&mut self, pre_vote: bool, term: Term, leadership_transfer: bool) {
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        let voters: Vec<NodeId> = self.config.voters.clone();
        for to in voters.into_iter().filter(|&v| v != self.config.id) {
            self.msgs.push(Message {
                from: self.config.id,
                to,
                term,
                body: MessageBody::RequestVote {
                    pre_vote,
                    last_log_index,
                    last_log_term,
                    leadership_transfer,
                },
            });
        }
    }

    /// §5.2 / §5.4.1 receiver rules for RequestVote, and thesis §9.6 for pre-votes.
    pub(super) fn handle_request_vote(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        (last_log_index, last_log_term): (Index, Term),
        leadership_transfer: bool,
    ) {
        // Thesis §4.1: votes are answered whatever our own configuration says. A node that
        // thinks it is a learner (or removed) may be a voter in the candidate's newer
        // configuration, which may need its vote; a candidate counts only its own voters, so a
        // learner's vote counts for nothing anywhere else.
        let up_to_date = self.log.is_up_to_date(last_log_index, last_log_term);
        let (granted, reply_term) = if pre_vote {
            // Granted if the candidate could win a real election at `term` with our vote: its
            // term is ahead of ours, its log is up to date, and we have not heard from a leader
            // within the minimum election timeout (unless a transfer asked for it).
            let lease = self.heard_from_leader_recently() && !leadership_transfer;
            let granted = term > self.current_term && up_to_date && !lease;
            (granted, if granted { term } else { self.current_term })
        } else {
            // One vote per term; and not for anyone else once we follow a leader in this term.
            let can_vote =
                self.voted_for == Some(from) || (self.voted_for.is_none() && self.leader.is_none());
            let granted = can_vote && up_to_date && !matches!(self.role, RoleState::Leader(_));
            if granted {
                self.voted_for = Some(from);
                // §5.2: granting a vote resets the election timer.
                self.reset_election_timer();
            }
            (granted, self.current_term)
        };
        self.msgs.push(Message {
            from: self.config.id,
            to: from,
            term: reply_term,
            body: MessageBody::RequestVoteResponse {
                pre_vote,
                vote_granted: granted,
            },
        });
    }

    /// Count an answer to our (pre-)vote request.
    pub(super) fn handle_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        granted: bool,
    ) {
        let current = self.current_term;
        let votes = match &mut self.role {
            RoleState::PreCandidate { votes } if pre_vote => {
                // Grants carry the term we campaign for; rejections our own term (a higher one
                // already demoted us in `step_term`).
                let expected = if granted { current.next() } else { current };
                if term != expected {
                    return;
                }
                votes
            }
            RoleState::Candidate { votes } if !pre_vote && term == current => votes,
            _ => return,
        };
        votes.entry(from).or_insert(granted);
        match self.tally() {
            VoteResult::Won if pre_vote => self.start_election(false),
            VoteResult::Won => self.become_leader(),
            VoteResult::Lost => self.become_follower(current, None),
            VoteResult::Pending => {}
        }
    }

    /// The standing of the current (pre-)election, counting voters only.
    fn tally(&self) -> VoteResult {
        let votes: &Votes = match &self.role {
            RoleState::PreCandidate { votes } | RoleState::Candidate { votes } => votes,
            _ => return VoteResult::Pending,
        };
        let voters = &self.config.voters;
        let counted = votes.iter().filter(|(id, _)| voters.contains(id));
        let granted = counted.clone().filter(|(_, g)| **g).count();
        let rejected = counted.filter(|(_, g)| !**g).count();
        vote_result(voters.len(), granted, rejected)
    }

    /// §5.2 won: initialize next_index to just past our log for every peer (§5.3) and append a
    /// no-op of the new term, whose commitment commits every earlier entry (§5.4.2, §8).
    pub(super) fn become_leader(&mut self) {
        let next = self.log.last_index().next();
        let peers: Vec<NodeId> = self
            .config
            .voters
            .iter()
            .chain(self.config.learners.iter())
            .copied()
            .filter(|&p| p != self.config.id)
            .collect();
        let progress = peers
            .into_iter()
            .map(|p| {
                let pr = Progress::new(
                    next,
                    self.config.inflight_msgs_max,
                    self.config.inflight_bytes_max,
                );
                (p, pr)
            })
            .collect();
        self.role = RoleState::Leader(Box::new(LeaderState {
            progress,
            heartbeat_elapsed: 0,
            heartbeat_due: false,
            commit_changed: false,
            reads: ReadIndexState::default(),
            transfer: None,
            lease_revoked: false,
        }));
        self.set_leader(Some(self.config.id));
        self.election_elapsed = 0;
        self.log.append(Entry {
            term: self.current_term,
            index: next,
            kind: EntryKind::Noop,
            data: bytes::Bytes::new(),
        });
    }

    /// Thesis §3.10: the leader says "campaign now"; skip pre-vote and tell voters to ignore
    /// their lease, since the old leader asked for this.
    /// Only the leader we follow may ask (any other sender could otherwise make us disrupt a
    /// healthy leader).
    pub(super) fn handle_timeout_now(&mut self, from: NodeId) {
        if !self.is_voter() || self.leader != Some(from) {
            return;
        }
        self.start_election(true);
    }

    /// Change the leader we believe in; reads forwarded to another leader can no longer be
    /// answered reliably and fail (the client retries).
    pub(super) fn set_leader(&mut self, leader: Option<NodeId>) {
        if self.leader != leader {
            self.fail_forwarded_reads();
        }
        self.leader = leader;
    }
}
