//! The randomized nemesis of the seed sweep: for one seed, a chaos phase with every fault at
//! once, then a liveness phase with none.
//!
//! Chaos (CHAOS_MS of virtual time): clients propose unique payloads throughout (mostly to the
//! leader, sometimes to anybody) and ask for reads; the nemesis crashes and restarts nodes,
//! reshapes the network (random bipartitions, an isolated leader, a leader that can only send
//! or only receive, random one-way cuts) and changes loss, duplication and delay. Every step is
//! checked by the checker as it happens.
//!
//! Liveness, once the faults stop: a leader within LEADER_MS, then a sentinel proposal
//! committed and applied on every node within COMMIT_MS, after which every proposal must be
//! settled (committed, or lost because its index was committed with another entry, or beyond
//! the sentinel and so never in the leader's log), and a read on every node must be served.

use bytes::Bytes;
use rand::Rng;
use rocinante::raft::Role;

use super::cluster::{Options, Outcome, ReadOutcome, Sim};
use super::network::{NetConfig, Time};

/// Virtual length of the chaos phase.
pub const CHAOS_MS: Time = 3_000;
/// Bound on electing a leader once the faults stop (10 maximal election timeouts).
pub const LEADER_MS: Time = 2_000;
/// Bound on committing and applying the sentinel everywhere once there is a leader.
pub const COMMIT_MS: Time = 2_000;

/// What one seed did (printed by the sweep; `hash` is the trace hash).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub hash: u64,
    pub committed: usize,
    pub proposals: usize,
    pub proposals_committed: usize,
    pub reads_served: usize,
    pub crashes: usize,
    /// Trace lines: delivered and dropped messages plus node events.
    pub lines: u64,
    /// Virtual time the seed covered.
    pub virtual_ms: Time,
}

pub fn run_seed(nodes: usize, seed: u64, replay: String) -> Summary {
    let mut opts = Options::new(nodes, seed);
    opts.unique_payloads = true;
    opts.replay = replay;
    let mut sim = Sim::new(opts);
    let crashes = chaos(&mut sim, CHAOS_MS);
    liveness(&mut sim);
    Summary {
        hash: sim.trace.hash(),
        committed: sim.checker.committed.len(),
        proposals: sim.proposals.len(),
        proposals_committed: sim
            .proposals
            .iter()
            .filter(|p| matches!(p.outcome, Outcome::Committed(_)))
            .count(),
        reads_served: sim
            .reads
            .iter()
            .filter(|r| matches!(r.outcome, ReadOutcome::Served(_)))
            .count(),
        crashes,
        lines: sim.trace.lines_count,
        virtual_ms: sim.now,
    }
}

fn random_net(sim: &mut Sim) {
    let r = &mut sim.rng;
    let max = r.random_range(2..40);
    sim.net.config = NetConfig {
        loss: r.random_range(0.0..0.25),
        duplicate: r.random_range(0.0..0.1),
        delay_ms_min: 0,
        delay_ms_max: max,
        long_delay: if r.random_bool(0.3) { 0.05 } else { 0.0 },
        long_delay_ms_max: 600,
        fifo: r.random_bool(0.3),
    };
    let c = sim.net.config.clone();
    sim.log(format!(
        "NET loss={:.2} dup={:.2} delay<={} long={}",
        c.loss, c.duplicate, c.delay_ms_max, c.long_delay
    ));
}

/// Runs the chaos phase; returns how many crashes it caused.
fn chaos(sim: &mut Sim, chaos_ms: Time) -> usize {
    let n = sim.nodes.len();
    let end = sim.now + chaos_ms;
    let mut crashes = 0;
    random_net(sim);
    while sim.now < end {
        let dt = sim.rng.random_range(1..20);
        sim.run_for(dt);
        let target = sim.rng.random_range(0..n);
        // The leader of the highest term, connected or not (a client may still reach it).
        let leader = (0..n)
            .filter_map(|i| {
                sim.raft(i)
                    .filter(|r| r.role() == Role::Leader)
                    .map(|r| (r.term(), i))
            })
            .max()
            .map(|(_, i)| i);
        match sim.rng.random_range(0..100) {
            0..40 => {
                let to = match leader {
                    Some(l) if sim.rng.random_bool(0.8) => l,
                    _ => target,
                };
                let data = Bytes::from(format!("c{}", sim.proposals.len()));
                sim.submit(to, data);
            }
            40..48 => {
                sim.read(target);
            }
            48..53 => reshape_network(sim, leader),
            53..55 => {
                if sim.is_up(target) {
                    crashes += 1;
                }
                sim.crash(target);
            }
            55..57 => {
                if let Some(l) = leader.filter(|_| sim.rng.random_bool(0.5)) {
                    crashes += 1;
                    sim.crash(l);
                }
            }
            57..62 => sim.restart(target),
            62..63 => {
                if let Some(l) = leader {
                    sim.transfer_leadership(l, target);
                }
            }
            63..65 => random_net(sim),
            _ => {}
        }
    }
    crashes
}

fn reshape_network(sim: &mut Sim, leader: Option<usize>) {
    let n = sim.nodes.len();
    match sim.rng.random_range(0..8) {
        0 => sim.heal(),
        1 => {
            let side: Vec<bool> = (0..n).map(|_| sim.rng.random_bool(0.5)).collect();
            sim.partition(&side);
        }
        2 => {
            if let Some(l) = leader {
                let side: Vec<bool> = (0..n).map(|i| i == l).collect();
                sim.partition(&side);
            }
        }
        3 => {
            for _ in 0..sim.rng.random_range(1..=n) {
                let (a, b) = (sim.rng.random_range(0..n), sim.rng.random_range(0..n));
                if a != b {
                    sim.cut(a, b);
                }
            }
        }
        4 => {
            let t = sim.rng.random_range(0..n);
            sim.disconnect(t);
        }
        5 => {
            let t = sim.rng.random_range(0..n);
            sim.connect(t);
        }
        // A leader that can only send (6) or only receive (7): check-quorum must depose it.
        6 | 7 => {
            if let Some(l) = leader {
                let only_send = sim.rng.random_bool(0.5);
                for p in (0..n).filter(|&p| p != l) {
                    if only_send {
                        sim.cut(p, l)
                    } else {
                        sim.cut(l, p)
                    }
                }
            }
        }
        _ => unreachable!(),
    }
}

/// Stops every fault and checks that the cluster recovers: leader, commit, settled clients.
pub fn liveness(sim: &mut Sim) {
    let n = sim.nodes.len();
    sim.heal();
    sim.set_unreliable(false);
    for i in 0..n {
        sim.restart(i);
    }
    let t0 = sim.now;
    if !sim.run_until_true(LEADER_MS, stable_leader) {
        sim.fail(&format!(
            "no stable leader {LEADER_MS}ms after the faults stopped"
        ));
    }
    let elected_ms = sim.now - t0;
    let sentinel = commit_sentinel(sim);
    let all_applied = |s: &Sim| (0..n).all(|i| s.nodes[i].seen.applied >= sentinel);
    if !sim.run_until_true(COMMIT_MS, all_applied) {
        sim.fail(&format!(
            "sentinel at {sentinel} not applied everywhere {COMMIT_MS}ms after election"
        ));
    }
    for p in 0..sim.proposals.len() {
        match sim.proposals[p].outcome.clone() {
            Outcome::Queued => sim.fail(&format!(
                "proposal {p} still queued after the faults stopped"
            )),
            Outcome::Accepted(i, t) if i <= sentinel => sim.fail(&format!(
                "proposal {p} at {i}/{t} neither committed nor lost though {sentinel} is committed"
            )),
            // Beyond the sentinel, which was the leader's last entry: never in the leader's
            // log, so never committed. The client learns it by timeout.
            Outcome::Accepted(..) => sim.proposals[p].outcome = Outcome::Lost,
            _ => {}
        }
    }
    let reads: Vec<usize> = (0..n).map(|i| sim.read(i)).collect();
    let served = |s: &Sim| {
        reads
            .iter()
            .all(|&r| matches!(s.reads[r].outcome, ReadOutcome::Served(_)))
    };
    if !sim.run_until_true(COMMIT_MS, served) {
        let states: Vec<_> = reads
            .iter()
            .map(|&r| sim.reads[r].outcome.clone())
            .collect();
        sim.fail(&format!("reads after recovery not served: {states:?}"));
    }
    sim.log(format!(
        "LIVE leader after {elected_ms}ms, sentinel {sentinel} applied everywhere"
    ));
}

/// One leader that every node follows, in one term.
fn stable_leader(s: &Sim) -> bool {
    let Some(l) = s.leader() else { return false };
    let Some(lr) = s.raft(l) else { return false };
    (0..s.nodes.len()).all(|i| {
        s.raft(i)
            .is_some_and(|r| r.term() == lr.term() && r.leader() == Some(lr.id()))
    })
}

/// Proposes the sentinel on the leader until it is committed; returns its index.
fn commit_sentinel(sim: &mut Sim) -> rocinante::raft::Index {
    for attempt in 0..20 {
        if let Some(l) = sim.leader() {
            if let Ok((i, t)) = sim.propose(l, format!("sentinel{attempt}")) {
                let committed = |s: &Sim| s.checker.commit_index() >= i;
                if sim.run_until_true(COMMIT_MS, committed)
                    && sim.checker.committed[i.0 as usize - 1].term == t
                {
                    return i;
                }
            }
        }
        sim.run_for(50);
    }
    sim.fail("could not commit a sentinel after the faults stopped")
}
