//! 6.5840 lab 3A (leader election), ported to the simulator. Times are scaled to the core's
//! default election timeout (100-200 ms virtual; the lab assumes up to 1 s).

use rocinante::raft::Term;

use super::cluster::{Options, Sim};
use super::control::ELECTION_TIMEOUT_MS;

/// The seed of the lab tests: `LAB_SEED` (default 1), so a flaky-looking scenario can be
/// explored under other seeds.
pub fn lab(nodes: usize, test: &str) -> Sim {
    let seed = std::env::var("LAB_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut opts = Options::new(nodes, seed);
    opts.replay = format!("LAB_SEED={seed} cargo test --test simulation {test} -- --nocapture");
    Sim::new(opts)
}

#[test]
fn initial_election_3a() {
    let mut s = lab(3, "initial_election_3a");
    s.check_one_leader();
    s.run_for(50);
    let term1 = s.check_terms();
    if term1 < Term(1) {
        s.fail(&format!("term is {term1}, but election should change term"));
    }
    // With no failures, nobody has a reason to start an election: the term must not move.
    s.run_for(2 * ELECTION_TIMEOUT_MS);
    let term2 = s.check_terms();
    if term1 != term2 {
        s.fail(&format!(
            "term changed from {term1} to {term2} with no failures"
        ));
    }
    s.check_one_leader();
}

#[test]
fn re_election_3a() {
    let mut s = lab(3, "re_election_3a");
    let n = 3;
    let leader1 = s.check_one_leader();
    // The leader disconnects: a new one must be elected.
    s.disconnect(leader1);
    s.check_one_leader();
    // The old leader rejoins: that must not disturb the new leader.
    s.connect(leader1);
    let leader2 = s.check_one_leader();
    // No quorum: no new leader.
    s.disconnect(leader2);
    s.disconnect((leader2 + 1) % n);
    s.run_for(2 * ELECTION_TIMEOUT_MS);
    s.check_no_leader();
    // A quorum arises: it elects a leader.
    s.connect((leader2 + 1) % n);
    s.check_one_leader();
    // Rejoining the last node must not prevent a leader from existing.
    s.connect(leader2);
    s.check_one_leader();
}

#[test]
fn many_elections_3a() {
    let mut s = lab(7, "many_elections_3a");
    let n = 7;
    s.check_one_leader();
    for _ in 0..10 {
        // Disconnect three nodes at random; the other four are a quorum and keep (or elect) a
        // leader.
        let picks: Vec<usize> = (0..3).map(|_| s.rng_range(0, n as u64) as usize).collect();
        for &p in &picks {
            s.disconnect(p);
        }
        s.check_one_leader();
        for &p in &picks {
            s.connect(p);
        }
    }
    s.check_one_leader();
}
