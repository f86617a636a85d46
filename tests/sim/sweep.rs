//! The randomized nemesis of the seed sweep: for one seed, a chaos phase with every fault at
//! once, then a liveness phase with none.
//!
//! Chaos (CHAOS_MS of virtual time): clients propose unique payloads throughout (mostly to the
//! leader, sometimes to anybody) and ask for reads; the nemesis crashes and restarts nodes,
//! reshapes the network (random bipartitions, an isolated leader, a leader that can only send
//! or only receive, random one-way cuts) and changes loss, duplication and delay. Every step is
//! checked by the checker as it happens. Per seed, nodes may also snapshot and compact every
//! few entries (so InstallSnapshot runs under the same faults) and the nemesis may remove, add
//! and promote nodes (thesis ch. 4); the liveness phase first restores every node as a voter.
//!
//! Liveness, once the faults stop: a leader within LEADER_MS, then a sentinel proposal
//! committed and applied on every node within COMMIT_MS, after which every proposal must be
//! settled (committed, or lost because its index was committed with another entry, or beyond
//! the sentinel and so never in the leader's log), and a read on every node must be served
//! (failed reads are retried, as clients do) within COMMIT_MS.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rocinante::raft::Role;

use super::cluster::{Options, Outcome, ReadOutcome, Sim, Tuning};
use super::network::{NetConfig, Time};

/// Virtual length of the chaos phase.
pub const CHAOS_MS: Time = 10_000;
/// Bound on electing a leader once the faults stop (10 maximal election timeouts).
pub const LEADER_MS: Time = 2_000;
/// Bound on committing and applying the sentinel everywhere once there is a leader.
pub const COMMIT_MS: Time = 2_000;
/// Bound on applying the sentinel everywhere when nodes were re-added after the faults.
pub const CATCH_UP_MS: Time = 10_000;

/// What one seed did (printed by the sweep; `hash` is the trace hash).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub hash: u64,
    pub committed: usize,
    pub proposals: usize,
    pub proposals_committed: usize,
    pub reads_served: usize,
    pub crashes: usize,
    /// Snapshots taken, snapshots installed from a leader, membership changes accepted.
    pub snapshots_taken: u64,
    pub snapshots_installed: u64,
    pub conf_changes: u64,
    /// Trace lines: delivered and dropped messages plus node events.
    pub lines: u64,
    /// Virtual time the seed covered.
    pub virtual_ms: Time,
}

pub fn run_seed(nodes: usize, seed: u64, replay: String) -> Summary {
    let mut opts = Options::new(nodes, seed);
    opts.replay = replay;
    run(opts)
}

/// One seed of the sweep with the given options (clients' payloads are always unique).
pub fn run(mut opts: Options) -> Summary {
    opts.unique_payloads = true;
    // Per-seed features, from an RNG of their own so the run's RNG stream stays the same.
    let mut r = StdRng::seed_from_u64(opts.seed ^ 0x5eed_5eed);
    if r.random_bool(0.7) {
        opts.snapshot_every = Some(r.random_range(3..30));
        opts.configure = Some(|i, c| c.compaction_tail_entries = i as u64 % 3);
    }
    opts.membership_changes = r.random_bool(0.5);
    // Half the seeds run the core's defaults, half a random tuning (drawn from a generator
    // of its own, so the main RNG's stream does not depend on this choice).
    let mut tuning_rng = StdRng::seed_from_u64(opts.seed ^ 0x7475_6e69_6e67);
    if tuning_rng.random_bool(0.5) {
        opts.tuning = Some(Tuning::random(&mut tuning_rng));
    }
    opts.hard_state_last = tuning_rng.random_bool(0.3);
    if tuning_rng.random_bool(0.3) {
        opts.learners = tuning_rng.random_range(1..=2);
    }
    let mut sim = Sim::new(opts);
    if let Some(t) = sim.opts.tuning.clone() {
        sim.log(format!("TUNING {t:?}"));
    }
    if sim.opts.learners > 0 {
        sim.log(format!("LEARNERS {}", sim.opts.learners));
    }
    if sim.opts.hard_state_last {
        sim.log("STORAGE writes entries before the hard state".to_string());
    }
    chaos(&mut sim, CHAOS_MS);
    liveness(&mut sim);
    if let Some(all) = sim
        .trace
        .full()
        .filter(|_| std::env::var("SIM_TRACE").is_ok_and(|v| v == "1"))
    {
        eprintln!("full trace:\n{}", all.join("\n"));
    }
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
        crashes: sim.stats.crashes,
        snapshots_taken: sim.stats.snapshots_taken,
        snapshots_installed: sim.stats.snapshots_installed,
        conf_changes: sim.stats.conf_changes,
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
        long_delay_ms_min: 40,
        long_delay_ms_extra_max: 600,
        fifo: r.random_bool(0.3),
    };
    let c = sim.net.config.clone();
    sim.log(format!(
        "NET loss={:.2} dup={:.2} delay<={} long={} fifo={}",
        c.loss, c.duplicate, c.delay_ms_max, c.long_delay, c.fifo
    ));
}

/// Runs the chaos phase. It alternates storms (every
/// fault, at a per-seed intensity) with calm spells (network healed, clients still busy), so
/// that leaders get elected and entries committed between faults: most interesting bugs need
/// progress first and a fault at the wrong moment second.
fn chaos(sim: &mut Sim, chaos_ms: Time) {
    let end = sim.now + chaos_ms;
    // Per seed: how often a storm step is a fault (in percent).
    let intensity = sim.rng.random_range(5..40);
    while sim.now < end {
        let storm_end = sim.now + sim.rng.random_range(100..1_000);
        random_net(sim);
        while sim.now < storm_end.min(end) {
            chaos_step(sim, intensity);
        }
        let calm_end = sim.now + sim.rng.random_range(0..600);
        sim.heal();
        sim.net.config = NetConfig::reliable();
        while sim.now < calm_end.min(end) {
            chaos_step(sim, 0);
        }
    }
}

/// The leader of the highest term, connected or not (a client may still reach it).
fn any_leader(sim: &Sim) -> Option<usize> {
    (0..sim.nodes.len())
        .filter_map(|i| {
            sim.raft(i)
                .filter(|r| r.role() == Role::Leader)
                .map(|r| (r.term(), i))
        })
        .max()
        .map(|(_, i)| i)
}

/// One step of the workload: advance 1-20 ms, then a client request, or (with probability
/// `fault_pct`) a fault.
fn chaos_step(sim: &mut Sim, fault_pct: u32) {
    let n = sim.nodes.len();
    let dt = sim.rng.random_range(1..20);
    sim.run_for(dt);
    let target = sim.rng.random_range(0..n);
    let leader = any_leader(sim);
    if sim.rng.random_range(0..100) >= fault_pct {
        match sim.rng.random_range(0..100) {
            0..60 => {
                let to = match leader {
                    Some(l) if sim.rng.random_bool(0.8) => l,
                    _ => target,
                };
                proposals(sim, to);
            }
            60..75 => {
                sim.read(target);
            }
            75..80 => sim.restart(target),
            // An operator's membership change, in calm and storm alike.
            80..82 if sim.opts.membership_changes => {
                if let Some(l) = leader {
                    random_conf_change(sim, l, target);
                }
            }
            _ => {}
        }
        return;
    }
    match sim.rng.random_range(0..100) {
        0..30 => reshape_network(sim, leader),
        30..40 => sim.crash(target),
        40..50 => {
            if let Some(l) = leader {
                sim.crash(l);
            }
        }
        // A crash in the middle of a write (a random prefix of it survives).
        50..60 => {
            if let Some(w) = (0..n).find(|&i| sim.nodes[i].inflight.is_some()) {
                sim.crash(w);
            }
        }
        // A fast reboot: crash and come back at once (votes and terms must survive).
        60..70 => {
            sim.crash(target);
            sim.restart(target);
        }
        70..85 => sim.restart(target),
        85..90 => {
            if let Some(l) = leader {
                sim.transfer_leadership(l, target);
            }
        }
        90..93 => {
            let k = sim.rng.random_range(1..10);
            sim.replay_old(k);
        }
        93..94 => sim.inject_stranger(),
        94..98 if sim.opts.membership_changes => {
            if let Some(l) = leader {
                random_conf_change(sim, l, target);
            }
        }
        _ => random_net(sim),
    }
}

/// Remove `target` if it is a member (never below two voters), else add it back as a learner,
/// or promote it if it is a learner.
fn random_conf_change(sim: &mut Sim, leader: usize, target: usize) {
    use rocinante::raft::ConfChangeOp::*;
    let Some(m) = sim.raft(leader).map(|r| r.membership()) else {
        return;
    };
    let t = super::cluster::id(target);
    let op = if m.learners.contains(&t) {
        if sim.rng.random_bool(0.5) {
            PromoteLearner
        } else {
            RemoveNode
        }
    } else if m.voters.contains(&t) {
        if m.voters.len() <= 2 {
            return;
        }
        RemoveNode
    } else {
        AddLearner
    };
    sim.conf_change(leader, op, target);
}

/// The sweep's chaos phase with membership changes on (for `membership.rs`).
pub fn chaos_with_membership(sim: &mut Sim, chaos_ms: Time) {
    sim.opts.membership_changes = true;
    sim.opts.unique_payloads = true;
    chaos(sim, chaos_ms);
}

/// Client proposals to `to`: sometimes a burst arriving at once (batching, flow control,
/// Busy); unique payloads, some padded to exercise the byte limits.
fn proposals(sim: &mut Sim, to: usize) {
    let burst = if sim.rng.random_bool(0.05) {
        sim.rng.random_range(2..30)
    } else {
        1
    };
    for _ in 0..burst {
        let pad = if sim.rng.random_bool(0.2) {
            sim.rng.random_range(0..300)
        } else {
            0
        };
        let data = Bytes::from(format!("c{}{}", sim.proposals.len(), ".".repeat(pad)));
        sim.submit(to, data);
    }
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
    let apply_ms = restore_membership(sim);
    if !sim.run_until_true(LEADER_MS, stable_leader) {
        sim.fail(&format!(
            "no stable leader {LEADER_MS}ms after the faults stopped"
        ));
    }
    let elected_ms = sim.now - t0;
    let sentinel = commit_sentinel(sim);
    let all_applied = |s: &Sim| (0..n).all(|i| s.nodes[i].seen.applied >= sentinel);
    if !sim.run_until_true(apply_ms, all_applied) {
        sim.fail(&format!(
            "sentinel at {sentinel} not applied everywhere {apply_ms}ms after election"
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
    // A read on every node must be served; a read that fails (the core gives up on a
    // forwarded read it got no answer to) is retried, as a client would.
    let mut reads: Vec<usize> = (0..n).map(|i| sim.read(i)).collect();
    let deadline = sim.now + COMMIT_MS;
    let served = |s: &Sim, r: usize| matches!(s.reads[r].outcome, ReadOutcome::Served(_));
    while sim.now < deadline && !reads.iter().all(|&r| served(sim, r)) {
        for (i, r) in reads.iter_mut().enumerate() {
            let failed = matches!(
                sim.reads[*r].outcome,
                ReadOutcome::Failed | ReadOutcome::Rejected(_) | ReadOutcome::Dropped
            );
            if failed {
                *r = sim.read(i);
            }
        }
        sim.run_for(1);
    }
    if !reads.iter().all(|&r| served(sim, r)) {
        let states: Vec<_> = reads
            .iter()
            .map(|&r| sim.reads[r].outcome.clone())
            .collect();
        sim.fail(&format!(
            "reads after recovery not served within {COMMIT_MS}ms: {states:?}"
        ));
    }
    // Every read the core accepted during the chaos is answered within COMMIT_MS: served, or
    // failed so the client can retry. None may hang forever.
    let hanging = |s: &Sim| -> Vec<usize> {
        (0..s.reads.len())
            .filter(|&r| {
                matches!(
                    s.reads[r].outcome,
                    ReadOutcome::Pending | ReadOutcome::Queued
                )
            })
            .collect()
    };
    if !sim.run_until_true(COMMIT_MS, |s| hanging(s).is_empty()) {
        let h = hanging(sim);
        sim.fail(&format!(
            "reads never answered {COMMIT_MS}ms after recovery: {h:?}"
        ));
    }
    sim.log(format!(
        "LIVE leader after {elected_ms}ms, sentinel {sentinel} applied everywhere"
    ));
}

/// Every node back in its initial role (removed ones are added, and promoted again if they
/// were voters). A node re-added from far behind must first catch up, entry by entry or
/// through a snapshot, which a tiny tuning makes slow: the bound for applying the sentinel
/// everywhere is then CATCH_UP_MS instead of COMMIT_MS (returned).
fn restore_membership(sim: &mut Sim) -> Time {
    let changes = sim.stats.conf_changes;
    for i in 0..sim.nodes.len() {
        let voter = i < sim.opts.nodes;
        if !sim.make_member(i, voter, LEADER_MS) {
            sim.fail(&format!("n{} could not be made a member again", i + 1));
        }
    }
    if sim.stats.conf_changes > changes {
        CATCH_UP_MS
    } else {
        COMMIT_MS
    }
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
