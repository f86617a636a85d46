//! Membership changes in the simulator (thesis ch. 4): the operator's requests, restoring the
//! full membership before the sweep's liveness phase, and named scenarios: a joiner catching
//! up through a snapshot and being promoted, a leader removing itself, one change at a time,
//! learners that never vote, and changes under partitions and crashes.
//!
//! Every scenario runs with the checker on; the quorum it checks commits against is the
//! committing node's own configuration (`Checker::on_observe`'s `voters`).

use bytes::Bytes;
use rocinante::raft::{ConfChange, ConfChangeOp, Config, Index, ProposeError, Role};

use super::cluster::{Input, Options, Sim, id};
use super::control::ELECTION_TIMEOUT_MS;
use super::network::Time;

impl Sim {
    /// Queues a membership change on `node` (fire and forget: the log shows the answer).
    pub fn conf_change(&mut self, node: usize, op: ConfChangeOp, target: usize) {
        let cc = ConfChange {
            op,
            node: id(target),
            context: Bytes::new(),
        };
        self.input(node, Input::ConfChange(cc));
    }

    /// Proposes a change on `node` now and returns the core's answer.
    pub fn try_conf_change(
        &mut self,
        node: usize,
        op: ConfChangeOp,
        target: usize,
    ) -> Result<(Index, rocinante::raft::Term), ProposeError> {
        self.settle(node);
        let cc = ConfChange {
            op,
            node: id(target),
            context: Bytes::new(),
        };
        let Some(raft) = self.nodes[node].raft.as_mut() else {
            return Err(ProposeError::NotLeader { leader: None });
        };
        let r = raft.propose_conf_change(cc);
        self.log(format!(
            "n{} conf change {op:?} n{}: {r:?}",
            node + 1,
            target + 1
        ));
        self.run_turns(node);
        r
    }

    /// Voters as the current leader sees them (node indexes).
    pub fn voters(&self) -> Vec<usize> {
        self.leader()
            .and_then(|l| self.raft(l))
            .map(|r| {
                r.membership()
                    .voters
                    .iter()
                    .map(|v| v.0 as usize - 1)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drives the leader until `target` is a committed voter (adding and promoting it as
    /// needed), within `limit_ms`. True on success.
    pub fn make_voter(&mut self, target: usize, limit_ms: Time) -> bool {
        self.make_member(target, true, limit_ms)
    }

    /// Drives the leader until `target` is a committed member, a voter if `voter` (a voter
    /// is never demoted), within `limit_ms`. True on success.
    pub fn make_member(&mut self, target: usize, voter: bool, limit_ms: Time) -> bool {
        let end = self.now + limit_ms;
        while self.now < end {
            let Some(l) = self.leader() else {
                self.run_for(20);
                continue;
            };
            let Some(r) = self.raft(l) else { continue };
            let m = r.membership();
            let me = id(target);
            let done = m.voters.contains(&me) || (!voter && m.learners.contains(&me));
            if done && !r.conf_change_pending() {
                return true;
            }
            let op = if m.learners.contains(&me) {
                ConfChangeOp::PromoteLearner
            } else {
                ConfChangeOp::AddLearner
            };
            if !r.conf_change_pending() && self.try_conf_change(l, op, target).is_ok() {
                self.stats.conf_changes += 1;
            }
            self.run_for(20);
        }
        false
    }
}

fn joiners(nodes: usize, voters: usize, test: &str) -> Sim {
    let mut opts = Options::new(nodes, 1);
    opts.initial_voters = Some(voters);
    opts.snapshot_every = Some(10);
    opts.configure = Some(|_, c: &mut Config| c.compaction_tail_entries = 0);
    opts.replay = format!("cargo test --test simulation {test} -- --nocapture");
    Sim::new(opts)
}

/// Thesis §4.2.1 and the real-process scenario, in the simulator: a fourth node joins a
/// loaded three-node cluster as a learner, catches up through a snapshot, is promoted; then an
/// original voter (the leader, the hardest case) is removed; writes keep committing.
#[test]
fn join_through_snapshot_promote_then_remove_leader() {
    let mut s = joiners(4, 3, "join_through_snapshot_promote_then_remove_leader");
    for k in 0..40 {
        s.one(&format!("w{k}"), 3, true);
    }
    let l = s.check_one_leader();
    assert_eq!(s.raft(3).map(|r| r.role()), Some(Role::Learner));
    if !s.make_voter(3, 5_000) {
        s.fail("the joiner never became a voter");
    }
    if s.stats.snapshots_installed == 0 {
        s.fail("the joiner caught up without InstallSnapshot (the test is not testing it)");
    }
    s.one("after-promote", 4, true);
    s.try_conf_change(l, ConfChangeOp::RemoveNode, l)
        .unwrap_or_else(|e| s.fail(&format!("removing the leader refused: {e}")));
    // The removed leader commits its removal, then steps down; the others elect a new leader.
    s.run_for(4 * ELECTION_TIMEOUT_MS);
    if s.raft(l).is_some_and(|r| r.role() == Role::Leader) {
        s.fail("the removed leader did not step down");
    }
    let l2 = s.check_one_leader();
    if l2 == l || s.voters().contains(&l) {
        s.fail("the removed node still leads or votes");
    }
    for k in 0..20 {
        s.one(&format!("after-remove{k}"), 3, true);
    }
}

/// One change at a time, and a new leader commits an entry of its term before any change
/// (the single-server-change bug).
#[test]
fn one_change_at_a_time() {
    let mut s = joiners(5, 3, "one_change_at_a_time");
    s.one("a", 3, true);
    let l = s.check_one_leader();
    s.try_conf_change(l, ConfChangeOp::AddLearner, 3)
        .unwrap_or_else(|e| s.fail(&format!("first change refused: {e}")));
    // Same turn, not yet committed: refused.
    match s.try_conf_change(l, ConfChangeOp::AddLearner, 4) {
        Err(ProposeError::ConfChangeInProgress) => {}
        other => s.fail(&format!("second change while one is pending: {other:?}")),
    }
    s.one("b", 3, true);
    if s.try_conf_change(l, ConfChangeOp::AddLearner, 4).is_err() {
        s.fail("change refused after the previous one committed");
    }
    match s.try_conf_change(l, ConfChangeOp::PromoteLearner, 1) {
        Err(ProposeError::ConfChangeInProgress | ProposeError::InvalidConfChange { .. }) => {}
        other => s.fail(&format!("promoting a voter: {other:?}")),
    }
    // A brand-new leader refuses changes until its no-op commits: catch it the moment it wins.
    s.one("c", 3, true);
    let l = s.check_one_leader();
    let old_term = s.raft(l).map(|r| r.term()).unwrap_or_default();
    s.crash(l);
    let new_leader = |s: &Sim| {
        (0..5).find(|&i| {
            s.raft(i)
                .is_some_and(|r| r.role() == Role::Leader && r.term() > old_term)
        })
    };
    if !s.run_until_true(2_000, |s| new_leader(s).is_some()) {
        s.fail("no new leader");
    }
    let Some(l2) = new_leader(&s) else { return };
    let Some(r) = s.raft(l2) else { return };
    let committed_in_term = r
        .entries(r.commit_index(), r.commit_index())
        .first()
        .is_some_and(|e| e.term == r.term());
    if committed_in_term {
        s.fail("the new leader committed its no-op before the test could look");
    }
    match s.try_conf_change(l2, ConfChangeOp::PromoteLearner, 3) {
        Err(ProposeError::ConfChangeInProgress) => {}
        other => s.fail(&format!("change before committing in its term: {other:?}")),
    }
}

/// Learners receive the log but never vote or campaign, even cut off from the leader.
#[test]
fn learners_never_vote_or_campaign() {
    let mut s = joiners(4, 3, "learners_never_vote_or_campaign");
    s.one("a", 3, true);
    let l = s.check_one_leader();
    s.try_conf_change(l, ConfChangeOp::AddLearner, 3).ok();
    s.one("b", 4, true);
    let term = s.raft(3).map(|r| r.term());
    s.disconnect(3);
    s.run_for(10 * ELECTION_TIMEOUT_MS);
    if s.raft(3).map(|r| (r.role(), r.term())) != term.map(|t| (Role::Learner, t)) {
        s.fail("a cut-off learner campaigned");
    }
    s.connect(3);
    // With two voters down, the learner must not help form a quorum.
    let l = s.check_one_leader();
    let down: Vec<usize> = (0..3).filter(|&i| i != l).collect();
    for &d in &down {
        s.crash(d);
    }
    let before = s.checker.commit_index();
    s.propose(l, "no-quorum").ok();
    s.run_for(5 * ELECTION_TIMEOUT_MS);
    if s.checker.commit_index() > before {
        s.fail("a learner counted toward the quorum");
    }
}

/// Changes proposed while nodes crash and the network partitions: safety is checked at every
/// step, and the cluster recovers full membership afterwards.
#[test]
fn changes_under_faults() {
    let (mut changes, mut installs) = (0, 0);
    for seed in 1..=20u64 {
        let mut opts = Options::new(5, seed);
        opts.snapshot_every = Some(8);
        opts.configure = Some(|_, c: &mut Config| c.compaction_tail_entries = 2);
        opts.replay = format!("changes_under_faults seed {seed}");
        let mut s = Sim::new(opts);
        super::sweep::chaos_with_membership(&mut s, 6_000);
        super::sweep::liveness(&mut s);
        changes += s.stats.conf_changes;
        installs += s.stats.snapshots_installed;
    }
    eprintln!("changes_under_faults: {changes} changes accepted, {installs} snapshots installed");
    assert!(
        changes > 10 && installs > 0,
        "the faults never exercised changes or installs"
    );
}
