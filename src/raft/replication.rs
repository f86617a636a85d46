//! Log replication (§5.3) and commitment (§5.4.2): the leader's sending, the follower's
//! consistency check and conflict truncation, the leader's handling of the answers, its
//! heartbeats and check-quorum (thesis §6.2), and leadership transfer (thesis §3.10).
//!
//! Batching: the leader builds its AppendEntries only in `ready()`, so every entry proposed in
//! one turn of the loop travels in one message per peer (split only at `msg_bytes_max`, and
//! pipelined up to the in-flight window in Replicate mode).
//!
//! Invariants: a follower answers success only for entries that are persisted by the time the
//! answer leaves (the answer is in `Ready::messages`, behind the persist step, and is withdrawn
//! if the entries it acknowledges are truncated before it leaves); a leader commits only an
//! entry of its current term, counting itself only up to what storage reported persisted.

use super::message::{Message, MessageBody};
use super::node::RaftNode;
use super::progress::{Mode, Progress, backtrack_hint};
use super::quorum::{committed_index, majority};
use super::role::{RoleState, Transfer};
use super::types::{Entry, Index, NodeId, Term};

impl RaftNode {
    /// A leader's tick: heartbeats every `heartbeat_ticks`, check-quorum and transfer timeout
    /// every `election_ticks_min`.
    pub(super) fn tick_leader(&mut self) {
        let min = self.config.election_ticks_min;
        let hb = self.config.heartbeat_ticks;
        self.tick_snapshots();
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        l.heartbeat_elapsed += 1;
        if l.heartbeat_elapsed >= hb {
            l.heartbeat_elapsed = 0;
            l.heartbeat_due = true;
        }
        if let Some(t) = &mut l.transfer {
            t.elapsed += 1;
            if t.elapsed >= min {
                // Thesis §3.10: abort so the cluster is not left without a working leader.
                l.transfer = None;
            }
        }
        self.election_elapsed += 1;
        if self.election_elapsed < min {
            return;
        }
        self.election_elapsed = 0;
        let active = self.quorum_active();
        if let RoleState::Leader(l) = &mut self.role {
            l.progress
                .values_mut()
                .for_each(|p| p.recent_active = false);
        }
        if self.config.check_quorum && !active {
            // Thesis §6.2: a leader that cannot reach a quorum steps down, so its clients
            // retry elsewhere instead of waiting on a leader that cannot commit.
            self.become_follower(self.current_term, None);
        }
    }

    /// Did a quorum of voters (counting this node) answer within this check-quorum round?
    fn quorum_active(&self) -> bool {
        let RoleState::Leader(l) = &self.role else {
            return false;
        };
        let active = self
            .config
            .voters
            .iter()
            .filter(|&&v| {
                v == self.config.id || l.progress.get(&v).is_some_and(|p| p.recent_active)
            })
            .count();
        active >= majority(self.config.voters.len())
    }

    /// True if a leader's `flush_leader` would send something.
    pub(super) fn leader_has_sends(&self) -> bool {
        let RoleState::Leader(l) = &self.role else {
            return false;
        };
        let last = self.log.last_index();
        l.heartbeat_due
            || l.commit_changed
            || l.reads.round_needed()
            || l.progress
                .values()
                .any(|p| p.can_send() && p.next_index <= last)
    }

    /// Build this turn's AppendEntries: new entries to every peer that may receive them, and an
    /// empty one (a heartbeat) to the others when a heartbeat or read round is due or the
    /// commit index moved. Then confirm reads a quorum already echoed (a lone voter's at once).
    pub(super) fn flush_leader(&mut self) {
        let RaftNode {
            role,
            log,
            config,
            msgs_before_persist,
            current_term,
            now,
            ..
        } = self;
        let RoleState::Leader(l) = role else {
            return;
        };
        if l.heartbeat_due {
            let stalled_max = (config.election_ticks_min / config.heartbeat_ticks).max(1);
            l.progress
                .values_mut()
                .for_each(|p| p.heartbeat_round(stalled_max));
        }
        let round = l.heartbeat_due || l.reads.round_needed();
        if round {
            l.reads.start_round(*now, config.election_ticks_min);
        }
        let empty_due = round || l.commit_changed;
        let ctx = SendCtx {
            from: config.id,
            term: *current_term,
            commit: log.commit_index(),
            read_seq: l.reads.seq(),
            msg_bytes_max: config.msg_bytes_max,
        };
        for (&to, pr) in l.progress.iter_mut() {
            let sent = send_entries(&ctx, log, to, pr, msgs_before_persist);
            if !sent && empty_due {
                send_heartbeat(&ctx, log, to, pr, msgs_before_persist);
            }
        }
        l.heartbeat_due = false;
        l.commit_changed = false;
        self.confirm_reads();
    }

    /// §5.3 receiver side of AppendEntries (the term is already ours: see `step_term`).
    pub(super) fn handle_append_entries(&mut self, msg: Message) {
        let MessageBody::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
            read_seq,
        } = msg.body
        else {
            return;
        };
        match self.role {
            // Two leaders in one term would break Election Safety; a correct peer never does
            // this, so the message is dropped.
            RoleState::Leader(_) => return,
            RoleState::PreCandidate { .. } | RoleState::Candidate { .. } => {
                self.become_follower(msg.term, Some(msg.from))
            }
            RoleState::Follower => self.set_leader(Some(msg.from)),
        }
        self.election_elapsed = 0;
        if !well_formed(prev_log_index, prev_log_term, &entries, msg.term) {
            return;
        }
        let reply = |success, last_index, conflict_index, conflict_term| {
            MessageBody::AppendEntriesResponse {
                success,
                last_index,
                conflict_index,
                conflict_term,
                read_seq,
            }
        };
        // Everything up to our commit_index matches any current leader (Leader Completeness):
        // start the check there instead, which also covers entries compacted into a snapshot.
        let commit = self.log.commit_index();
        let (prev_log_index, prev_log_term, entries) = if prev_log_index < commit {
            let skip = (commit.0 - prev_log_index.0) as usize;
            let rest: Vec<Entry> = entries.into_iter().skip(skip).collect();
            let term = self.log.term_at(commit).unwrap_or(Term(0));
            (commit, term, rest)
        } else {
            (prev_log_index, prev_log_term, entries)
        };
        if self.log.term_at(prev_log_index) != Some(prev_log_term) {
            let (ci, ct) = self.log.conflict_hint(prev_log_index);
            self.send(msg.from, reply(false, prev_log_index, ci, ct));
            return;
        }
        match self.log.merge(&entries) {
            Err(_) => return,
            Ok(Some(at)) => {
                self.withdraw_acks_from(at);
                self.conf_truncated(at);
            }
            Ok(None) => {}
        }
        // Thesis §4.1: a configuration is in effect as soon as it is in the log.
        self.conf_appended(&entries);
        let last_new = Index(prev_log_index.0 + entries.len() as u64);
        // §5.3 rule 5: commit_index = min(leader_commit, index of last new entry).
        self.log.commit_to(leader_commit.min(last_new));
        self.send(msg.from, reply(true, last_new, Index(0), Term(0)));
    }

    /// The log was truncated at `at`: success answers not yet sent that acknowledge entries
    /// at or after `at` would now lie about what we hold, so they are withdrawn.
    fn withdraw_acks_from(&mut self, at: Index) {
        self.msgs.retain(|m| {
            !matches!(m.body, MessageBody::AppendEntriesResponse { success: true, last_index, .. }
                if last_index >= at)
        });
    }

    /// The leader's side: advance match_index and commit, or back off next_index.
    pub(super) fn handle_append_response(&mut self, msg: Message) {
        let MessageBody::AppendEntriesResponse {
            success,
            last_index,
            conflict_index,
            conflict_term,
            read_seq,
        } = msg.body
        else {
            return;
        };
        let leader_last = self.log.last_index();
        let hint = if success || conflict_term == Term(0) {
            conflict_index
        } else {
            let mine = self.log.last_index_of_term(conflict_term, last_index);
            backtrack_hint(conflict_index, conflict_term, mine)
        };
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let Some(pr) = l.progress.get_mut(&msg.from) else {
            return;
        };
        pr.recent_active = true;
        if read_seq <= l.reads.seq() {
            pr.acked_seq = pr.acked_seq.max(read_seq);
        }
        // An answer about entries we never had is malformed: only the liveness echo counts.
        let mut advanced = false;
        if last_index <= leader_last {
            if success {
                advanced = pr.ack(last_index);
            } else {
                pr.reject(last_index, hint);
            }
        }
        if advanced {
            self.maybe_commit();
        }
        self.maybe_send_timeout_now(msg.from);
        self.confirm_reads();
    }

    /// §5.3/§5.4.2: commit the highest index a quorum has persisted, if it is of our term.
    /// The leader's own match is what storage reported persisted (thesis §10.2.1).
    pub(super) fn maybe_commit(&mut self) {
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let me = self.config.id;
        let matches: Vec<Index> = self
            .config
            .voters
            .iter()
            .map(|&v| {
                if v == me {
                    self.log.persisted_index()
                } else {
                    l.progress.get(&v).map_or(Index(0), |p| p.match_index)
                }
            })
            .collect();
        let candidate = committed_index(&matches);
        // Figure 8: an entry of an older term is never committed by counting replicas.
        if self.log.term_at(candidate) != Some(self.current_term) {
            return;
        }
        if self.log.commit_to(candidate) {
            l.commit_changed = true;
            // Thesis §6.4: reads wait for the first commit of the leader's term.
            l.reads.release_deferred(candidate);
            self.maybe_step_down_removed();
        }
    }

    /// Thesis §3.10: start handing leadership to `to`. Proposals are refused meanwhile; once
    /// `to` matches our whole log it gets TimeoutNow. Aborted after `election_ticks_min`.
    pub fn transfer_leadership(&mut self, to: NodeId) {
        if to == self.config.id || !self.config.voters.contains(&to) {
            return;
        }
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        if l.transfer.as_ref().is_some_and(|t| t.to == to) {
            return;
        }
        l.transfer = Some(Transfer {
            to,
            elapsed: 0,
            timeout_now_sent: false,
        });
        if let Some(pr) = l.progress.get_mut(&to) {
            // Do not wait out a paused probe: bring the target up to date now.
            pr.probe_sent = false;
        }
        self.maybe_send_timeout_now(to);
    }

    pub(super) fn maybe_send_timeout_now(&mut self, peer: NodeId) {
        let last = self.log.last_index();
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let Some(t) = &mut l.transfer else { return };
        let caught_up = l.progress.get(&peer).is_some_and(|p| p.match_index == last);
        if t.to == peer && !t.timeout_now_sent && caught_up {
            t.timeout_now_sent = true;
            l.lease_revoked = true;
            self.send(peer, MessageBody::TimeoutNow);
        }
    }
}

/// What every AppendEntries of one `flush_leader` shares.
struct SendCtx {
    from: NodeId,
    term: Term,
    commit: Index,
    read_seq: u64,
    msg_bytes_max: u64,
}

fn append_msg(ctx: &SendCtx, to: NodeId, prev: (Index, Term), entries: Vec<Entry>) -> Message {
    Message {
        from: ctx.from,
        to,
        term: ctx.term,
        body: MessageBody::AppendEntries {
            prev_log_index: prev.0,
            prev_log_term: prev.1,
            entries,
            leader_commit: ctx.commit,
            read_seq: ctx.read_seq,
        },
    }
}

/// Send `pr` the entries from its next_index: one message in Probe mode; in Replicate mode as
/// many as the in-flight window allows (normally one: everything new fits in `msg_bytes_max`).
fn send_entries(
    ctx: &SendCtx,
    log: &super::log::RaftLog,
    to: NodeId,
    pr: &mut Progress,
    out: &mut Vec<Message>,
) -> bool {
    let mut sent = false;
    while pr.can_send() && pr.next_index <= log.last_index() {
        let prev = pr.next_index.prev();
        // Below the log's offset only a snapshot helps (`request_snapshots`).
        let Some(prev_term) = log.term_at(prev) else {
            break;
        };
        let entries = log.slice(pr.next_index, log.last_index(), ctx.msg_bytes_max);
        let (Some(last), bytes) = (
            entries.last().map(|e| e.index),
            entries.iter().map(Entry::size_bytes).sum::<u64>(),
        ) else {
            break;
        };
        out.push(append_msg(ctx, to, (prev, prev_term), entries));
        pr.sent_entries(last, bytes);
        sent = true;
        if pr.mode == Mode::Probe {
            break;
        }
    }
    sent
}

/// An empty AppendEntries anchored at the peer's match_index, which it is known to hold, so it
/// always succeeds: it resets the follower's timer, carries commit_index and the read round,
/// and its answer ends a probe's wait (which is how a lost probe is retried).
fn send_heartbeat(
    ctx: &SendCtx,
    log: &super::log::RaftLog,
    to: NodeId,
    pr: &Progress,
    out: &mut Vec<Message>,
) {
    // Compacted away: anchor at the log's offset instead (a success there is still true).
    let (prev, prev_term) = match log.term_at(pr.match_index) {
        Some(t) => (pr.match_index, t),
        None => log.offset(),
    };
    out.push(append_msg(ctx, to, (prev, prev_term), Vec::new()));
}

/// A peer's AppendEntries must be shaped like one: entries contiguous after prev_log_index,
/// terms never decreasing, none newer than the sender's term. Anything else is dropped.
fn well_formed(prev_log_index: Index, prev_log_term: Term, entries: &[Entry], term: Term) -> bool {
    // Checked: a peer may send indexes at the very end of the u64 range.
    let mut expect_index = prev_log_index.0.checked_add(1);
    let mut min_term = prev_log_term;
    for e in entries {
        if Some(e.index.0) != expect_index || e.term < min_term || e.term > term {
            return false;
        }
        expect_index = e.index.0.checked_add(1);
        min_term = e.term;
    }
    prev_log_term <= term
}
