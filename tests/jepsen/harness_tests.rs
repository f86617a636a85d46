//! The fault-injection runs against real clusters.
//!
//! Short form (part of `make test`, about 2 minutes): one 3-node run injecting every fault
//! type once, with all three workloads; then the checker is shown to reject the same real
//! history with a stale read or a doubly applied write injected into it; and, when the binary
//! has the unsafe test switch `ROCINANTE_UNSAFE_LOCAL_READS`, a run of that broken server must
//! fail. Long form (`JEPSEN_LONG=1`, `make jepsen`): every fault type alone for
//! `JEPSEN_FAULT_S` seconds (default 180) on 3 nodes, then a 5-node run of all of them.
//! `JEPSEN_SEED=N` changes the seed (printed in every summary); `JEPSEN_ONLY=<Fault>` limits
//! the long form to one fault type.

use crate::checker::{Limits, Verdict, check};
use crate::faults::Fault;
use crate::mutate;
use crate::run::{Report, RunOptions, run};
use std::sync::Mutex;
use std::time::Duration;

/// The runs share the machine's two cores: one cluster at a time.
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The switch a test build of the server may have, making linearizable reads local.
const UNSAFE_LOCAL_READS: &str = "ROCINANTE_UNSAFE_LOCAL_READS";

fn seed() -> u64 {
    std::env::var("JEPSEN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn long() -> bool {
    std::env::var("JEPSEN_LONG").is_ok_and(|v| v == "1")
}

fn exclusive_run(options: RunOptions) -> Report {
    let _guard = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let report = run(options);
    println!("{}", report.summary());
    report
}

/// The checker must reject the recorded history once a broken server's answer is put in it.
fn assert_mutations_caught(report: &Report) {
    let mutations = [
        ("stale read", mutate::stale_read(&report.ops)),
        ("double apply", mutate::double_apply(&report.ops)),
    ];
    for (name, mutated) in mutations {
        let (ops, why) = mutated
            .unwrap_or_else(|| panic!("no spot for a {name} in {}", report.history_path.display()));
        let verdict = check(&ops, Limits::default());
        println!("injected {name}: {why}\n  -> {verdict:?}");
        assert!(
            matches!(verdict, Verdict::NotLinearizable(_)),
            "the checker missed an injected {name} ({why}) in {}",
            report.history_path.display()
        );
    }
}

#[test]
fn short_run_every_fault_once() {
    if long() {
        return; // the long form covers it
    }
    let options = RunOptions::new("short", seed(), &Fault::ALL, Duration::from_secs(75));
    let report = exclusive_run(options);
    assert!(report.passed(), "{}", report.summary());
    assert_mutations_caught(&report);
}

#[test]
fn long_run_each_fault_alone() {
    if !long() {
        return;
    }
    let secs = std::env::var("JEPSEN_FAULT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    // `JEPSEN_ONLY=TornWal` runs just that fault type (and no 5-node run).
    let only = std::env::var("JEPSEN_ONLY").ok();
    let mut failed = Vec::new();
    for fault in Fault::ALL {
        if only.as_ref().is_some_and(|o| *o != format!("{fault:?}")) {
            continue;
        }
        let name = format!("long-{fault:?}");
        let report = exclusive_run(RunOptions::new(
            &name,
            seed(),
            &[fault],
            Duration::from_secs(secs),
        ));
        if !report.passed() {
            failed.push(format!("{name}: {}", report.history_path.display()));
        }
    }
    if only.is_some() {
        assert!(failed.is_empty(), "failed runs: {failed:#?}");
        return;
    }
    let mut five = RunOptions::new(
        "long-5-nodes",
        seed(),
        &Fault::ALL,
        Duration::from_secs(secs),
    );
    five.nodes = 5;
    let report = exclusive_run(five);
    if !report.passed() {
        failed.push(format!("long-5-nodes: {}", report.history_path.display()));
    }
    assert!(failed.is_empty(), "failed runs: {failed:#?}");
}

/// Whether the server binary knows the unsafe switch (its name is in the binary's strings).
fn binary_has(switch: &str) -> bool {
    std::fs::read(env!("CARGO_BIN_EXE_rocinante"))
        .is_ok_and(|bin| bin.windows(switch.len()).any(|w| w == switch.as_bytes()))
}

/// A deliberately broken server (linearizable reads served from local state) must fail.
#[test]
fn broken_server_with_local_reads_is_caught() {
    if !binary_has(UNSAFE_LOCAL_READS) {
        println!("skipped: the server has no {UNSAFE_LOCAL_READS} switch");
        return;
    }
    let mut options = RunOptions::new(
        "broken-local-reads",
        seed(),
        &[
            Fault::PartitionMinority,
            Fault::KillOne,
            Fault::IsolateLeader,
        ],
        Duration::from_secs(30),
    );
    options.node_env = vec![(UNSAFE_LOCAL_READS.to_string(), "1".to_string())];
    let report = exclusive_run(options);
    assert!(
        matches!(report.verdict, Verdict::NotLinearizable(_)),
        "the harness did not catch stale local reads: {}",
        report.summary()
    );
}

/// Re-check a saved history: `JEPSEN_CHECK=target/jepsen/short-1/history.jsonl cargo test
/// --release --test jepsen recheck -- --nocapture`. Also shows the injected faults caught.
#[test]
fn recheck_a_saved_history() {
    let Ok(path) = std::env::var("JEPSEN_CHECK") else {
        return;
    };
    let ops = crate::history::read_jsonl(std::path::Path::new(&path)).expect("read the history");
    let started = std::time::Instant::now();
    let verdict = check(&ops, Limits::default());
    println!(
        "{path}: {} ops: {verdict:?} in {:.2?}",
        ops.len(),
        started.elapsed()
    );
    for (name, mutated) in [
        ("stale read", mutate::stale_read(&ops)),
        ("double apply", mutate::double_apply(&ops)),
    ] {
        if let Some((damaged, why)) = mutated {
            println!(
                "injected {name}: {why}\n  -> {:?}",
                check(&damaged, Limits::default())
            );
        }
    }
    assert_eq!(verdict, Verdict::Linearizable);
}
