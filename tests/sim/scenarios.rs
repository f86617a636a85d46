//! Scenarios beyond the 6.5840 lab, for features the lab does not have: leadership transfer
//! (thesis §3.10) and ReadIndex reads (thesis §6.4) around an isolated leader. The checker
//! runs throughout, as everywhere; these tests add the liveness expectations.

use rocinante::raft::Role;

use super::cluster::{ReadOutcome, Sim};
use super::control::ELECTION_TIMEOUT_MS;
use super::lab_3a::lab;

/// Leadership moves to each node in turn, within one election timeout each, in one term step
/// (TimeoutNow skips pre-vote), and the cluster keeps agreeing after every move.
#[test]
fn transfer_round_trip() {
    let mut s = lab(5, "transfer_round_trip");
    s.one("start", 5, true);
    for target in 0..5 {
        let leader = s.check_one_leader();
        if leader == target {
            continue;
        }
        let term = s.raft(leader).map(|r| r.term()).unwrap_or_default();
        s.transfer_leadership(leader, target);
        let moved = |s: &Sim| s.raft(target).is_some_and(|r| r.role() == Role::Leader);
        if !s.run_until_true(ELECTION_TIMEOUT_MS, moved) {
            s.fail(&format!(
                "leadership did not move from n{} to n{}",
                leader + 1,
                target + 1
            ));
        }
        let new_term = s.raft(target).map(|r| r.term()).unwrap_or_default();
        if new_term.0 != term.0 + 1 {
            s.fail(&format!(
                "transfer went from term {term} to {new_term}, expected one step"
            ));
        }
        s.one(&format!("after-{target}"), 5, true);
    }
}

/// An isolated leader must not serve a read (it cannot confirm its leadership); the majority
/// elects a new leader and serves reads on every node of its side, leader and followers.
#[test]
fn reads_around_an_isolated_leader() {
    let mut s = lab(5, "reads_around_an_isolated_leader");
    s.one("x", 5, true);
    let old = s.check_one_leader();
    s.disconnect(old);
    let stale = s.read(old);
    s.one("y", 4, true);
    let majority: Vec<usize> = (0..5).filter(|&i| i != old).collect();
    let reads: Vec<usize> = majority.iter().map(|&i| s.read(i)).collect();
    let served = |s: &Sim| {
        reads
            .iter()
            .all(|&r| matches!(s.reads[r].outcome, ReadOutcome::Served(_)))
    };
    if !s.run_until_true(2 * ELECTION_TIMEOUT_MS, served) {
        let states: Vec<_> = reads.iter().map(|&r| s.reads[r].outcome.clone()).collect();
        s.fail(&format!("majority-side reads not served: {states:?}"));
    }
    if matches!(s.reads[stale].outcome, ReadOutcome::Served(_)) {
        s.fail("the isolated old leader served a read");
    }
}
