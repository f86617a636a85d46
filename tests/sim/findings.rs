//! Scripted reproductions of the bugs the simulator found in the core, one test each, named
//! after the property that caught them (see SIM_FINDINGS.md). Each failed when the bug was
//! present; they stay as regression tests.

use rocinante::raft::{Index, MessageBody, Role};

use super::cluster::{Options, Sim};

fn scripted(nodes: usize, test: &str) -> Sim {
    let mut opts = Options::new(nodes, 11);
    opts.replay = format!("cargo test --test simulation {test} -- --nocapture");
    opts.fsync_ms_min = 1;
    opts.fsync_ms_max = 1;
    Sim::new(opts)
}

/// Finding 1 (lease read, thesis §6.4/§6.4.1): a new leader must not hold a read lease before
/// it has committed an entry of its own term, because until then its commit index may lag
/// entries that the previous leader committed (and acknowledged to clients).
///
/// n1 commits "b" with n2's help and crashes before telling anyone. n2 (which holds "b" but
/// does not know it is committed) wins term 2, but its no-op never reaches n3 (entries from n2
/// are dropped; heartbeats pass). n3's answers to the heartbeats confirm n2's leadership: a
/// buggy `has_lease()` turns true while n2's commit index is still 1 < 2. The simulator's lease
/// check fails the run at that moment.
#[test]
fn lease_requires_an_entry_of_the_leaders_term() {
    let mut s = scripted(3, "lease_requires_an_entry_of_the_leaders_term");
    s.campaign(0);
    let elected = |s: &Sim| (0..3).all(|i| s.nodes[i].seen.applied >= Index(1));
    assert!(s.run_until_true(200, elected), "n1 not elected");
    // "b" reaches n2 only; n1 commits it but its news of the commit never leaves; later, n2's
    // AppendEntries that carry entries never arrive (its heartbeats do).
    s.filter = Some(Box::new(|m| match &m.body {
        MessageBody::AppendEntries { leader_commit, .. } if m.from.0 == 1 => {
            *leader_commit < Index(2)
        }
        MessageBody::AppendEntries { entries, .. } if m.from.0 == 2 => entries.is_empty(),
        _ => true,
    }));
    s.cut(0, 2);
    s.propose(0, "b").ok();
    assert!(
        s.run_until_true(100, |s| s.checker.commit_index() >= Index(2)),
        "b not committed"
    );
    s.crash(0);
    let n2_leads = |s: &Sim| s.raft(1).is_some_and(|r| r.role() == Role::Leader);
    assert!(s.run_until_true(2_000, n2_leads), "n2 not elected");
    // A few heartbeat rounds: the lease check runs at every step.
    s.run_for(200);
}
