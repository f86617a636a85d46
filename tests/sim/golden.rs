//! Golden traces: a handful of interactions, recorded message by message into
//! `testdata/raft/<name>.txt` and compared on every run. `UPDATE_GOLDEN=1` rewrites them (then
//! read the diff: it is the behaviour change).
//!
//! Each scenario is scripted and seeded, and node 1 campaigns at time 0, long before any other
//! node's randomized timeout (>= 100 ms), so the traces show one protocol exchange each, not
//! RNG noise. One line per delivered or dropped message and per node event (role change,
//! commit, apply, read served, crash, partition).

use std::path::PathBuf;

use rocinante::raft::{Index, MessageBody, Role};

use super::cluster::{Options, Sim};

const GOLDEN_SEED: u64 = 7;

fn golden_sim(nodes: usize, name: &str) -> Sim {
    let mut opts = Options::new(nodes, GOLDEN_SEED);
    opts.keep_trace = true;
    opts.fsync_ms_min = 1;
    opts.fsync_ms_max = 1;
    opts.replay = format!("cargo test --test simulation golden_{name} -- --nocapture");
    let mut s = Sim::new(opts);
    // A fixed 2 ms link: the order of lines is the protocol's, not the dice's.
    s.net.config.delay_ms_min = 2;
    s.net.config.delay_ms_max = 2;
    s
}

/// Compares the run's trace with `testdata/raft/<name>.txt`, or rewrites it.
fn check_golden(s: &Sim, name: &str, about: &str) {
    let mut text = format!(
        "# {about}\n# Regenerate: UPDATE_GOLDEN=1 cargo test --test simulation golden_{name}\n"
    );
    for line in s.trace.full().unwrap_or_default() {
        text.push_str(line);
        text.push('\n');
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/raft")
        .join(format!("{name}.txt"));
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e} (create it with UPDATE_GOLDEN=1)",
            path.display()
        )
    });
    if want != text {
        let first = want
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(text.lines().count()));
        panic!(
            "golden trace {} differs at line {}:\n  want: {}\n  got:  {}\nreview, then regenerate with UPDATE_GOLDEN=1",
            path.display(),
            first + 1,
            want.lines().nth(first).unwrap_or("<end>"),
            text.lines().nth(first).unwrap_or("<end>")
        );
    }
}

fn elect_n1(s: &mut Sim) {
    s.campaign(0);
    let n = s.nodes.len();
    let all_know = |s: &Sim| (0..n).all(|i| s.nodes[i].seen.applied >= Index(1));
    if !s.run_until_true(100, all_know) {
        s.fail("n1 did not get elected and commit its no-op");
    }
}

/// Pre-vote, vote, the new leader's no-op (§5.2, thesis §9.6, §5.4.2) and two heartbeats.
#[test]
fn golden_election() {
    let mut s = golden_sim(3, "election");
    elect_n1(&mut s);
    s.run_for(45);
    check_golden(
        &s,
        "election",
        "election: n1 campaigns; pre-vote, vote, no-op, heartbeats",
    );
}

/// §5.3: a deposed leader's uncommitted entries are found by the consistency check (with the
/// fast-backtracking hint) and replaced by the new leader's.
#[test]
fn golden_conflict() {
    let mut s = golden_sim(3, "conflict");
    // n1's clock is paused below: a lease assumes bounded clock drift (thesis §6.4.1), which a
    // paused process breaks, so lease reads are not checked in this scenario.
    s.opts.lease_check = false;
    elect_n1(&mut s);
    s.propose(0, "a").ok();
    s.run_for(10);
    s.disconnect(0);
    s.set_ticking(0, false);
    s.propose(0, "x1").ok();
    s.propose(0, "x2").ok();
    let new_leader = |s: &Sim| (1..3).any(|i| s.raft(i).is_some_and(|r| r.role() == Role::Leader));
    if !s.run_until_true(1_000, new_leader) {
        s.fail("no new leader among n2, n3");
    }
    let leader = s.leader().unwrap_or(1);
    let other = 3 - leader; // the other of n2 (1), n3 (2)
    s.propose(leader, "y").ok();
    s.run_for(10);
    // The term-2 leader leaves; n1 returns. The remaining follower has the longer log and wins
    // term 3; its first AppendEntries to n1 fails the consistency check, and the hint
    // (conflict term 1, its first index) skips n1's whole divergent term in one step.
    s.disconnect(leader);
    s.connect(0);
    s.set_ticking(0, true);
    let caught_up = move |s: &Sim| s.nodes[0].seen.applied >= Index(5) && s.leader() == Some(other);
    if !s.run_until_true(1_000, caught_up) {
        s.fail("n1 did not catch up with the term-3 leader");
    }
    s.run_for(5);
    check_golden(
        &s,
        "conflict",
        "conflict resolution: deposed n1 holds x1, x2 (term 1); the term-3 leader's log replaces them",
    );
}

/// Figure 8 (§5.4.2): an entry of an old term that reaches a majority is not committed by
/// counting; it commits only together with an entry of the new leader's term.
#[test]
fn golden_figure8() {
    let mut s = golden_sim(5, "figure8");
    elect_n1(&mut s);
    s.set_ticking(0, false);
    // (a) n1 replicates "x" to n2 only.
    for p in 2..5 {
        s.cut(0, p);
    }
    s.propose(0, "x").ok();
    s.run_for(10);
    // (b) n1 crashes, n2 is cut off; n3..n5 elect a leader whose AppendEntries never arrive:
    // its no-op stays on it alone.
    s.crash(0);
    s.disconnect(1);
    s.filter = Some(Box::new(|m| {
        !(m.from.0 >= 3 && matches!(m.body, MessageBody::AppendEntries { .. }))
    }));
    let elected = |s: &Sim| (2..5).any(|i| s.raft(i).is_some_and(|r| r.role() == Role::Leader));
    if !s.run_until_true(2_000, elected) {
        s.fail("no leader among n3..n5");
    }
    let l = s.leader().unwrap_or(2);
    s.crash(l);
    // (c) n1 restarts and n2 returns: one of them (the longest logs) leads term 3 and brings
    // "x" (term 1) to a majority, but it commits only with the new term's no-op.
    s.filter = None;
    s.heal();
    s.restart(0);
    s.set_ticking(0, true);
    let committed = |s: &Sim| s.checker.commit_index() >= Index(3);
    if !s.run_until_true(2_000, committed) {
        s.fail("the term-3 leader did not commit");
    }
    s.run_for(5);
    check_golden(
        &s,
        "figure8",
        "figure 8: x (term 1) on a majority commits only with the term-3 leader's no-op",
    );
}

/// Thesis §6.4: a read on the leader and a read on a follower, each confirmed by a heartbeat
/// round, served once the read index is applied.
#[test]
fn golden_read_index() {
    let mut s = golden_sim(3, "read_index");
    elect_n1(&mut s);
    s.propose(0, "v1").ok();
    s.run_for(10);
    let r1 = s.read(0);
    s.run_for(25);
    let r2 = s.read(1);
    s.run_for(30);
    for r in [r1, r2] {
        if !matches!(s.reads[r].outcome, super::cluster::ReadOutcome::Served(_)) {
            s.fail(&format!("read {r} not served: {:?}", s.reads[r].outcome));
        }
    }
    check_golden(
        &s,
        "read_index",
        "ReadIndex: a read on leader n1, then a read on follower n2",
    );
}

/// Thesis §3.10: the leader brings the target up to date, sends TimeoutNow, and the target
/// wins at once (its RequestVote carries the transfer flag past the other voters' leases).
#[test]
fn golden_transfer() {
    let mut s = golden_sim(3, "transfer");
    elect_n1(&mut s);
    s.cut(0, 2);
    s.propose(0, "a").ok();
    s.run_for(10);
    s.uncut(0, 2);
    s.transfer_leadership(0, 2);
    let moved = |s: &Sim| s.raft(2).is_some_and(|r| r.role() == Role::Leader);
    if !s.run_until_true(500, moved) {
        s.fail("leadership did not move to n3");
    }
    s.run_for(25);
    check_golden(&s, "transfer", "leadership transfer from n1 to lagging n3");
}
