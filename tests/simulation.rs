//! The seeded cluster simulator's tests: determinism, the seed sweep, the 6.5840 lab
//! scenarios and the golden traces (the simulator itself lives in `tests/sim/`).
//!
//! The sweep runs `SIM_SEEDS` seeds (500 by default in release builds, 100 for 7 nodes; 20 and
//! 4 in debug builds) from `SIM_SEED_START` for 3, 5 and 7 nodes (`SIM_NODES` picks one size);
//! a failure prints the seed and the one command that replays it. Each seed: 10 s of virtual
//! time with every fault, then the liveness phase (sweep.rs).
//!
//! Other knobs: `SIM_TRACE=1` prints a run's whole trace (on failure, or at the end of a sweep
//! seed); `LAB_SEED=N` reruns the lab scenarios under another seed; `UPDATE_GOLDEN=1` rewrites
//! testdata/raft/*.txt; `SIM_LEASE_CHECK=0` turns off the lease-read check (to hunt for other
//! bugs while a lease finding is open, see SIM_FINDINGS.md).

mod sim;

use std::time::Instant;

use sim::sweep;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Seeds per node count when `SIM_SEEDS` is not set: 500 in release builds (the bar),
/// fewer in debug builds, where `cargo test` is for quick iteration.
fn default_seeds(nodes: usize) -> u64 {
    let base = if cfg!(debug_assertions) { 20 } else { 500 };
    if nodes >= 7 { base / 5 } else { base }
}

fn sweep(nodes: usize) {
    if env_u64("SIM_NODES").is_some_and(|n| n != nodes as u64) {
        return;
    }
    let seeds = env_u64("SIM_SEEDS").unwrap_or_else(|| default_seeds(nodes));
    let start = env_u64("SIM_SEED_START").unwrap_or(1);
    let t0 = Instant::now();
    let mut total = sweep::Summary::default();
    for seed in start..start + seeds {
        let replay = format!(
            "SIM_SEED_START={seed} SIM_SEEDS=1 SIM_NODES={nodes} cargo test --release --test simulation sweep -- --nocapture"
        );
        let run = std::panic::catch_unwind(|| sweep::run_seed(nodes, seed, replay.clone()));
        match run {
            Ok(s) => {
                total.committed += s.committed;
                total.proposals += s.proposals;
                total.proposals_committed += s.proposals_committed;
                total.reads_served += s.reads_served;
                total.crashes += s.crashes;
                total.snapshots_taken += s.snapshots_taken;
                total.snapshots_installed += s.snapshots_installed;
                total.conf_changes += s.conf_changes;
                total.lines += s.lines;
                total.virtual_ms += s.virtual_ms;
            }
            Err(e) => {
                eprintln!("sweep: seed {seed} with {nodes} nodes FAILED; replay with:\n  {replay}");
                std::panic::resume_unwind(e);
            }
        }
    }
    eprintln!(
        "sweep {nodes} nodes: seeds {start}..{} in {:.1?}: {} entries committed, {}/{} proposals committed, {} reads served, {} crashes, {} snapshots taken, {} installed, {} membership changes, {} trace lines, {}s virtual",
        start + seeds,
        t0.elapsed(),
        total.committed,
        total.proposals_committed,
        total.proposals,
        total.reads_served,
        total.crashes,
        total.snapshots_taken,
        total.snapshots_installed,
        total.conf_changes,
        total.lines,
        total.virtual_ms / 1000
    );
}

#[test]
fn sweep_3_nodes() {
    sweep(3);
}

#[test]
fn sweep_5_nodes() {
    sweep(5);
}

#[test]
fn sweep_7_nodes() {
    sweep(7);
}

/// The same seed gives the same run, byte for byte: the whole trace hashes the same (or, if
/// the run fails, it fails with the same message at the same virtual time). Another seed gives
/// another run (so the hash is not trivially constant).
#[test]
fn same_seed_same_trace() {
    let run = |nodes: usize, seed: u64| {
        let opts = sim::cluster::Options::new(nodes, seed);
        sim::cluster::expect_failures(|| sweep::run(opts)).map_err(|e| {
            match e.downcast::<String>() {
                Ok(msg) => *msg,
                Err(e) => std::panic::resume_unwind(e),
            }
        })
    };
    for nodes in [3, 5] {
        let a = run(nodes, 42);
        let b = run(nodes, 42);
        assert_eq!(a, b, "seed 42 with {nodes} nodes ran differently twice");
        let c = run(nodes, 43);
        assert_ne!(a, c, "seeds 42 and 43 gave the same run");
        if let Ok(s) = a {
            assert!(
                s.lines > 1_000,
                "a seed of the sweep did almost nothing: {s:?}"
            );
        }
    }
}

/// The checker must bite: with a disk that loses acknowledged entries at a crash (a lying
/// fsync), Raft's safety is gone, and some seed must show it as a checked violation. If this
/// test fails, the checker has gone blind, and a green sweep means nothing.
#[test]
fn checker_catches_a_lying_disk() {
    let mut caught: Vec<String> = Vec::new();
    for seed in 1..=300 {
        let mut opts = sim::cluster::Options::new(3, seed);
        opts.lying_disk = true;
        // Only the lie may fail these runs (not an open lease finding).
        opts.lease_check = false;
        if let Err(e) = sim::cluster::expect_failures(|| sweep::run(opts)) {
            match e.downcast::<String>() {
                Ok(msg) => caught.push(*msg),
                Err(e) => std::panic::resume_unwind(e), // a panic in the core: report it
            }
        }
        if caught.len() >= 3 {
            break;
        }
    }
    assert!(
        !caught.is_empty(),
        "300 seeds with a lying disk and the checker saw nothing"
    );
    for c in &caught {
        eprintln!("lying disk caught: {c}");
    }
}
