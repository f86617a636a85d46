//! The safety checker: Raft's guarantees (§5.2-§5.4, figure 3 of the paper), checked after
//! every step against the whole history of the run, not only the current state.
//!
//! What is remembered, and why it is enough:
//! - `leaders`: the one leader of every term ever seen (Election Safety).
//! - `log_matching`: for every (index, term) ever written to any log, the entry and the term of
//!   its predecessor. If (index, term) always determines both, then by induction two logs that
//!   share an (index, term) share the whole prefix: that is Log Matching, checked in O(1) per
//!   appended entry.
//! - `committed`: the cluster-wide committed log, built from every node's commit index and
//!   compared with every node's log and every applied entry (State Machine Safety).
//! - `leader_logs`: each leader's log at its election. Leaders only append (checked), so an
//!   entry committed in term c must be in every `leader_logs[t]` with t > c (Leader
//!   Completeness), whichever came first, the election or our sight of the commit. We know c
//!   only from above (the term of the first node seen with the entry committed), which can
//!   only make the check weaker, never raise a false alarm.
//! - `durable`: the last durable hard state of each node (terms never decrease, one vote per
//!   term across restarts) and `votes`: every granted vote that left a node.
//!
//! Every check returns `Err(description)`; the simulator turns it into a failure carrying the
//! seed and the replay command.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use rocinante::raft::{
    Entry, EntryKind, HardState, Index, Message, MessageBody, NodeId, Role, Term,
};

use super::storage::DurableStorage;

pub type Check = Result<(), String>;

/// Learners the checker has room for beyond the voters.
const LEARNERS_MAX: usize = 8;

/// What the checker last saw of one node in its current incarnation (volatile state restarts
/// from zero with the node).
#[derive(Clone, Copy, Debug, Default)]
pub struct Observed {
    pub term: Term,
    pub commit: Index,
    pub applied: Index,
}

pub struct Checker {
    leaders: BTreeMap<Term, usize>,
    leader_logs: BTreeMap<Term, Vec<Entry>>,
    log_matching: HashMap<(Index, Term), (Entry, Term)>,
    /// The committed log: index i at position i - 1.
    pub committed: Vec<Entry>,
    /// The state digest after applying committed index i, at position i - 1 (snapshots are
    /// checked against it).
    committed_digests: Vec<u64>,
    /// For each committed index, the term of the node that first reported it committed: at
    /// or above the term in which it was committed.
    commit_terms: Vec<Term>,
    durable: Vec<HardState>,
    votes: HashMap<(usize, Term), NodeId>,
    /// When set, every Normal payload may be committed at most once (the sweep's clients never
    /// retry, so a second copy would be a duplicated append).
    unique_payloads: Option<HashSet<Bytes>>,
}

fn who(node: usize) -> String {
    format!("n{}", node + 1)
}

impl Checker {
    /// Who votes and counts toward a quorum is each node's own configuration, passed to
    /// `on_observe` (membership changes move it); `voters` is the initial voter count.
    pub fn new(voters: usize, unique_payloads: bool) -> Checker {
        Checker {
            committed_digests: Vec::new(),
            leaders: BTreeMap::new(),
            leader_logs: BTreeMap::new(),
            log_matching: HashMap::new(),
            committed: Vec::new(),
            commit_terms: Vec::new(),
            durable: vec![HardState::default(); voters + LEARNERS_MAX],
            votes: HashMap::new(),
            unique_payloads: unique_payloads.then(HashSet::new),
        }
    }

    /// The highest term that has had a leader so far.
    pub fn latest_leader_term(&self) -> Option<Term> {
        self.leaders.keys().next_back().copied()
    }

    pub fn commit_index(&self) -> Index {
        Index(self.committed.len() as u64)
    }

    /// The committed state's digest at `index` (0 for the empty prefix), if committed.
    pub fn digest_at(&self, index: Index) -> Option<u64> {
        match index.0 as usize {
            0 => Some(0),
            k => self.committed_digests.get(k - 1).copied(),
        }
    }

    pub fn digests(&self) -> &[u64] {
        &self.committed_digests
    }

    /// A node handed `entries` to storage in a `Ready`; `log` is its in-memory log before them
    /// and is updated. `role`/`term` are the node's after the turn that produced them.
    pub fn on_append(
        &mut self,
        node: usize,
        role: Role,
        term: Term,
        log: &mut Vec<Entry>,
        entries: &[Entry],
    ) -> Check {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let start = first.index.0 as usize;
        if start == 0 || start > log.len() + 1 {
            return Err(format!(
                "{} Ready.entries start at {} but its log ends at {}: gap",
                who(node),
                first.index,
                log.len()
            ));
        }
        for (k, e) in entries.iter().enumerate() {
            if e.index.0 as usize != start + k {
                return Err(format!(
                    "{} Ready.entries not contiguous at {}",
                    who(node),
                    e.index
                ));
            }
            if e.term > term {
                return Err(format!(
                    "{} appended {} of a term above its own {term}",
                    who(node),
                    e.index
                ));
            }
        }
        self.check_overwrite(node, role, term, &log[start - 1..], entries)?;
        log.truncate(start - 1);
        for e in entries {
            let prev_term = log.last().map_or(Term(0), |p| p.term);
            if e.term < prev_term {
                return Err(format!(
                    "{} log terms decrease at {} ({} after {prev_term})",
                    who(node),
                    e.index,
                    e.term
                ));
            }
            let seen = self
                .log_matching
                .entry((e.index, e.term))
                .or_insert_with(|| (e.clone(), prev_term));
            if seen.0 != *e || seen.1 != prev_term {
                return Err(format!(
                    "Log Matching: {} holds {} after term {prev_term}, another log held {} after term {}",
                    who(node),
                    super::trace::entry(e),
                    super::trace::entry(&seen.0),
                    seen.1
                ));
            }
            log.push(e.clone());
        }
        Ok(())
    }

    /// `old` entries of a node's log are being replaced by `entries` (§5.3 conflict
    /// truncation, or a re-send of the same entries). A leader never changes or removes its
    /// own entries (Leader Append-Only), and nobody removes a committed one.
    fn check_overwrite(
        &self,
        node: usize,
        role: Role,
        term: Term,
        old: &[Entry],
        entries: &[Entry],
    ) -> Check {
        let start = entries.first().map_or(0, |e| e.index.0 as usize);
        for o in old {
            if entries.get(o.index.0 as usize - start) == Some(o) {
                continue;
            }
            if role == Role::Leader {
                return Err(format!(
                    "Leader Append-Only: leader {} of term {term} overwrote/removed {}",
                    who(node),
                    o.index
                ));
            }
            if self.committed.get(o.index.0 as usize - 1) == Some(o) {
                return Err(format!(
                    "{} truncated committed entry {}",
                    who(node),
                    o.index
                ));
            }
        }
        Ok(())
    }

    /// After a turn: the node's role, term, commit index and in-memory log. `durable` is every
    /// node's storage (to check that what is committed is durable on a quorum of one of
    /// `voters`, the configurations the node may have decided the commit under). Returns the indexes that became committed cluster-wide.
    #[allow(clippy::too_many_arguments)]
    pub fn on_observe(
        &mut self,
        node: usize,
        role: Role,
        term: Term,
        commit: Index,
        last_index: Index,
        log: &[Entry],
        seen: &mut Observed,
        durable: &[&DurableStorage],
        voters: &[Vec<usize>],
    ) -> Result<std::ops::Range<usize>, String> {
        if term < seen.term {
            return Err(format!(
                "{} term went back from {} to {term}",
                who(node),
                seen.term
            ));
        }
        if commit < seen.commit {
            return Err(format!(
                "{} commit_index went back from {} to {commit}",
                who(node),
                seen.commit
            ));
        }
        if last_index.0 as usize != log.len() {
            return Err(format!(
                "{} last_index {last_index} but its Readys gave {} entries",
                who(node),
                log.len()
            ));
        }
        if commit.0 as usize > log.len() {
            return Err(format!(
                "{} commit_index {commit} beyond its last index {}",
                who(node),
                log.len()
            ));
        }
        // A node that is not a voter in its own configuration never campaigns (a leader that
        // removed itself keeps leading until the removal commits, thesis §4.2.2, so only
        // campaigning is checked; a learner can become leader only through it).
        let own_voter = voters.first().is_none_or(|v| v.contains(&node));
        if !own_voter && matches!(role, Role::Candidate | Role::PreCandidate) {
            return Err(format!(
                "learner {} became {role:?} in term {term}",
                who(node)
            ));
        }
        if role == Role::Leader {
            self.on_leader(node, term, log)?;
        }
        let before = self.committed.len();
        for i in seen.commit.0 as usize + 1..=commit.0 as usize {
            let e = &log[i - 1];
            match self.committed.get(i - 1) {
                Some(c) if c == e => {}
                Some(c) => {
                    return Err(format!(
                        "State Machine Safety: {} commits {} where {} was committed",
                        who(node),
                        super::trace::entry(e),
                        super::trace::entry(c)
                    ));
                }
                None => self.on_newly_committed(e, term, durable, voters)?,
            }
        }
        seen.term = term;
        seen.commit = commit;
        Ok(before..self.committed.len())
    }

    /// Election Safety, and Leader Completeness at the moment of election.
    fn on_leader(&mut self, node: usize, term: Term, log: &[Entry]) -> Check {
        match self.leaders.get(&term) {
            Some(&l) if l == node => return Ok(()),
            Some(&l) => {
                return Err(format!(
                    "Election Safety: {} and {} both leaders of term {term}",
                    who(l),
                    who(node)
                ));
            }
            None => {}
        }
        self.leaders.insert(term, node);
        // Only entries committed in earlier terms bind this leader: a leader of a lower term
        // can still be elected (by votes granted before its voters moved on) after a higher
        // term committed something, and it will never commit anything itself.
        for (k, c) in self.committed.iter().enumerate() {
            if self.commit_terms[k] < term && log.get(k) != Some(c) {
                return Err(format!(
                    "Leader Completeness: {} elected for term {term} without committed {}",
                    who(node),
                    super::trace::entry(c)
                ));
            }
        }
        self.leader_logs.insert(term, log.to_vec());
        Ok(())
    }

    /// `e` just became known as committed, by a node at `term` (so committed at or before it).
    fn on_newly_committed(
        &mut self,
        e: &Entry,
        term: Term,
        durable: &[&DurableStorage],
        voters: &[Vec<usize>],
    ) -> Check {
        let k = e.index.0 as usize - 1;
        let durable_on_quorum =
            |vs: &Vec<usize>| vs.iter().filter(|&&v| durable[v].holds(e)).count() > vs.len() / 2;
        if !voters.iter().any(durable_on_quorum) {
            let holders: Vec<usize> = (0..durable.len())
                .filter(|&v| durable[v].holds(e))
                .collect();
            return Err(format!(
                "committed {} is durable only on {holders:?}, not a quorum of any of {voters:?}",
                super::trace::entry(e),
            ));
        }
        for (t, log) in self.leader_logs.range(Term(term.0 + 1)..) {
            if log.get(k) != Some(e) {
                return Err(format!(
                    "Leader Completeness: leader of term {t} lacks {} committed by term {term}",
                    super::trace::entry(e)
                ));
            }
        }
        if let (Some(seen), EntryKind::Normal) = (&mut self.unique_payloads, e.kind) {
            if !seen.insert(e.data.clone()) {
                return Err(format!(
                    "payload of {} committed twice",
                    super::trace::entry(e)
                ));
            }
        }
        let prev = self.committed_digests.last().copied().unwrap_or(0);
        self.committed_digests.push(super::storage::digest(prev, e));
        self.committed.push(e.clone());
        self.commit_terms.push(term);
        Ok(())
    }

    /// A node's write completed: `hard_state` became durable and `removed` entries were
    /// truncated from its durable log.
    pub fn on_persist(
        &mut self,
        node: usize,
        hard_state: Option<HardState>,
        removed: &[Entry],
    ) -> Check {
        for r in removed {
            if self.committed.get(r.index.0 as usize - 1) == Some(r) {
                return Err(format!(
                    "{} truncated committed {} from its durable log",
                    who(node),
                    super::trace::entry(r)
                ));
            }
        }
        let Some(hs) = hard_state else { return Ok(()) };
        let old = self.durable[node];
        if hs.current_term < old.current_term {
            return Err(format!(
                "{} persisted term {} after {}",
                who(node),
                hs.current_term,
                old.current_term
            ));
        }
        if hs.current_term == old.current_term
            && old.voted_for.is_some()
            && hs.voted_for != old.voted_for
        {
            return Err(format!(
                "{} changed its durable vote in term {} from {:?} to {:?}",
                who(node),
                hs.current_term,
                old.voted_for,
                hs.voted_for
            ));
        }
        if let Some(v) = hs.voted_for {
            self.record_vote(node, hs.current_term, v)?;
        }
        self.durable[node] = hs;
        Ok(())
    }

    fn record_vote(&mut self, node: usize, term: Term, candidate: NodeId) -> Check {
        let v = self.votes.entry((node, term)).or_insert(candidate);
        if *v != candidate {
            return Err(format!(
                "{} voted for n{} and n{} in term {term}",
                who(node),
                v.0,
                candidate.0
            ));
        }
        Ok(())
    }

    /// A message leaves `node` (whose log is `log`): what it acknowledges must already be
    /// durable, and an AppendEntries or TimeoutNow is a claim to lead its term (Election
    /// Safety holds for leaders that stepped down within the turn that elected them, too).
    pub fn on_send(
        &mut self,
        node: usize,
        msg: &Message,
        durable: &DurableStorage,
        log: &[Entry],
    ) -> Check {
        if matches!(
            msg.body,
            MessageBody::AppendEntries { .. } | MessageBody::TimeoutNow
        ) {
            self.on_leader(node, msg.term, log)?;
        }
        if msg.from != NodeId(node as u64 + 1) || msg.to == msg.from {
            return Err(format!(
                "{} sent a message from n{} to n{}",
                who(node),
                msg.from.0,
                msg.to.0
            ));
        }
        match &msg.body {
            MessageBody::RequestVoteResponse {
                pre_vote: false,
                vote_granted: true,
            } => {
                // The vote itself, or a later term, must be durable: a node whose durable term
                // is above the vote's can never vote in that term again, so a grant that one
                // batch superseded is safe to send.
                let hs = durable.hard_state;
                let durable_vote = hs.current_term == msg.term && hs.voted_for == Some(msg.to);
                if !(durable_vote || hs.current_term > msg.term) {
                    return Err(format!(
                        "{} granted its vote in term {} before it was durable (durable: term {} vote {:?})",
                        who(node),
                        msg.term,
                        hs.current_term,
                        hs.voted_for
                    ));
                }
                self.record_vote(node, msg.term, msg.to)
            }
            MessageBody::AppendEntriesResponse {
                success: true,
                last_index,
                ..
            } if *last_index > durable.last_index() => Err(format!(
                "{} acknowledged up to {last_index} with only {} durable",
                who(node),
                durable.last_index()
            )),
            MessageBody::InstallSnapshotResponse {
                last_included_index,
                done: true,
                ..
            } if *last_included_index > durable.last_index()
                && *last_included_index > durable.snapshot_index() =>
            {
                Err(format!(
                    "{} acknowledged snapshot {last_included_index} with only {} durable",
                    who(node),
                    durable.last_index()
                ))
            }
            _ => Ok(()),
        }
    }

    /// `node` applies `entries` (a Ready's committed_entries); `seen.commit` is its commit index.
    pub fn on_apply(&mut self, node: usize, seen: &mut Observed, entries: &[Entry]) -> Check {
        let commit = seen.commit;
        for e in entries {
            if e.index != seen.applied.next() {
                return Err(format!(
                    "{} applies {} after {}: not in order",
                    who(node),
                    e.index,
                    seen.applied
                ));
            }
            if e.index > commit {
                return Err(format!(
                    "{} applies {} beyond its commit_index {commit}",
                    who(node),
                    e.index
                ));
            }
            if self.committed.get(e.index.0 as usize - 1) != Some(e) {
                return Err(format!(
                    "State Machine Safety: {} applies {} not in the committed log",
                    who(node),
                    super::trace::entry(e)
                ));
            }
            seen.applied = e.index;
        }
        Ok(())
    }

    /// A restarted node must come back with exactly its durable hard state.
    pub fn on_restart(&self, node: usize, hard_state: HardState) -> Check {
        if hard_state != self.durable[node] {
            return Err(format!(
                "{} restarted with {hard_state:?}, durable was {:?}",
                who(node),
                self.durable[node]
            ));
        }
        Ok(())
    }
}

/// ReadIndex safety (thesis §6.4): a read served at `index` must see every entry that was
/// committed anywhere in the cluster when the read was requested (`required`), and must itself
/// be committed and applied on the serving node.
pub fn check_read(node: usize, read: u64, required: Index, index: Index, seen: &Observed) -> Check {
    if index < required {
        return Err(format!(
            "ReadIndex: read {read} on {} served at {index} but {required} was committed when it was requested",
            who(node)
        ));
    }
    if index > seen.commit || index > seen.applied {
        return Err(format!(
            "ReadIndex: read {read} on {} served at {index} before commit/apply",
            who(node)
        ));
    }
    Ok(())
}
