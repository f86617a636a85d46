//! 6.5840 lab 3D (log compaction), ported to the simulator: every node snapshots every
//! `SNAPSHOT_INTERVAL` applied entries and compacts its log with no tail, so a node that fell
//! behind can only catch up through InstallSnapshot (streamed in chunks by `snapshots.rs`).
//! The lab's "log size too large" check becomes a bound on each node's durable and in-memory
//! log; every snapshot saved, installed or restarted from is checked against the committed log.

use rocinante::raft::Config;

use super::cluster::{Options, Sim};
use super::lab_3a::lab;

/// Applied entries between two snapshots (the lab's `SnapShotInterval`).
const SNAPSHOT_INTERVAL: u64 = 10;
/// The lab bounds the persisted state to 2000 bytes; we bound the log to this many entries.
const LOG_ENTRIES_MAX: u64 = 4 * SNAPSHOT_INTERVAL;

fn no_tail(_: usize, c: &mut Config) {
    c.compaction_tail_entries = 0;
}

pub fn lab_snap(nodes: usize, test: &str) -> Sim {
    let base = lab(nodes, test);
    let mut opts = Options::new(nodes, base.opts.seed);
    opts.replay = base.opts.replay.clone();
    opts.snapshot_every = Some(SNAPSHOT_INTERVAL);
    opts.configure = Some(no_tail);
    Sim::new(opts)
}

impl Sim {
    /// A fresh payload for the lab's `rand.Int()` commands.
    fn cmd(&mut self) -> String {
        let r = self.rng_range(0, 1 << 40);
        format!("x{r}")
    }

    /// The lab's `LogSize() >= MAXLOGSIZE` check, on every running node.
    fn check_log_size(&self) {
        for i in (0..self.nodes.len()).filter(|&i| self.is_up(i)) {
            let durable = self.nodes[i].storage.entries.len() as u64;
            let r = self
                .raft(i)
                .map_or(0, |r| r.last_index().0 - r.snapshot().last_included_index.0);
            if durable.max(r) > LOG_ENTRIES_MAX {
                self.fail(&format!(
                    "n{} log too large: {durable} durable, {r} in memory",
                    i + 1
                ));
            }
        }
    }
}

/// The lab's `snapcommon`: 30 rounds of a victim (disconnected or crashed, or neither)
/// missing more than a snapshot interval of entries, then catching up.
fn snap_common(test: &str, disconnect: bool, reliable: bool, crash: bool) {
    let servers = 3;
    let mut s = lab_snap(servers, test);
    s.set_unreliable(!reliable);
    let c = s.cmd();
    s.one(&c, servers, true);
    let mut leader1 = s.check_one_leader();
    for i in 0..30 {
        let (mut victim, mut sender) = ((leader1 + 1) % servers, leader1);
        if i % 3 == 1 {
            sender = (leader1 + 1) % servers;
            victim = leader1;
        }
        if disconnect {
            s.disconnect(victim);
            let c = s.cmd();
            s.one(&c, servers - 1, true);
        }
        if crash {
            s.crash(victim);
            let c = s.cmd();
            s.one(&c, servers - 1, true);
        }
        // Enough to cross a snapshot.
        let nn = SNAPSHOT_INTERVAL / 2 + s.rng_range(0, SNAPSHOT_INTERVAL);
        for _ in 0..nn {
            let c = s.cmd();
            s.start(sender, c);
        }
        let c = s.cmd();
        if !disconnect && !crash {
            // Everybody caught up: no InstallSnapshot needed for the basic test.
            s.one(&c, servers, true);
        } else {
            s.one(&c, servers - 1, true);
        }
        s.check_log_size();
        if disconnect {
            // The victim may be behind the leader's snapshot: it needs InstallSnapshot.
            s.connect(victim);
            let c = s.cmd();
            s.one(&c, servers, true);
            leader1 = s.check_one_leader();
        }
        if crash {
            s.restart(victim);
            let c = s.cmd();
            s.one(&c, servers, true);
            leader1 = s.check_one_leader();
        }
    }
    let st = s.stats;
    eprintln!(
        "{test}: {} snapshots taken, {} installed, {} chunks",
        st.snapshots_taken, st.snapshots_installed, st.snapshot_chunks
    );
    if st.snapshots_taken == 0 || ((disconnect || crash) && st.snapshots_installed == 0) {
        s.fail("the scenario never exercised snapshots or InstallSnapshot");
    }
}

#[test]
fn snapshot_basic_3d() {
    snap_common("snapshot_basic_3d", false, true, false);
}

#[test]
fn snapshot_install_3d() {
    snap_common("snapshot_install_3d", true, true, false);
}

#[test]
fn snapshot_install_unreliable_3d() {
    snap_common("snapshot_install_unreliable_3d", true, false, false);
}

#[test]
fn snapshot_install_crash_3d() {
    snap_common("snapshot_install_crash_3d", false, true, true);
}

#[test]
fn snapshot_install_unreliable_crash_3d() {
    snap_common("snapshot_install_unreliable_crash_3d", false, false, true);
}

/// Crash every server at once, repeatedly: each restarts from its snapshot plus log tail, and
/// the log never goes backwards.
#[test]
fn snapshot_all_crash_3d() {
    let servers = 3;
    let mut s = lab_snap(servers, "snapshot_all_crash_3d");
    let c = s.cmd();
    s.one(&c, servers, true);
    for _ in 0..5 {
        let nn = SNAPSHOT_INTERVAL / 2 + s.rng_range(0, SNAPSHOT_INTERVAL);
        for _ in 0..nn {
            let c = s.cmd();
            s.one(&c, servers, true);
        }
        let c = s.cmd();
        let index1 = s.one(&c, servers, true);
        for i in 0..servers {
            s.crash(i);
        }
        for i in 0..servers {
            s.restart(i);
        }
        let c = s.cmd();
        let index2 = s.one(&c, servers, true);
        if index2 < index1.next() {
            s.fail(&format!("index decreased from {index1} to {index2}"));
        }
    }
}

/// Restarting from a snapshot must initialise the node's applied index from it (the lab's
/// "lastApplied" bug): crash all after a snapshot, write, crash all again, write.
#[test]
fn snapshot_init_3d() {
    let servers = 3;
    let mut s = lab_snap(servers, "snapshot_init_3d");
    let c = s.cmd();
    s.one(&c, servers, true);
    for _ in 0..=SNAPSHOT_INTERVAL {
        let c = s.cmd();
        s.one(&c, servers, false);
    }
    for _ in 0..2 {
        for i in 0..servers {
            s.crash(i);
        }
        for i in 0..servers {
            s.restart(i);
        }
        let c = s.cmd();
        s.one(&c, servers, false);
    }
    if s.nodes.iter().all(|n| n.storage.snapshot.is_none()) {
        s.fail("no node ever took a snapshot");
    }
}
