//! One run: start a cluster, run the workloads against it while the nemesis injects and heals
//! faults, heal everything, read the final state, then judge the run and print its summary.
//!
//! Pass criteria (issue 6): the history is linearizable; every acknowledged set insert is
//! present at the end and no insert answered `503` is; no write sent to a minority node
//! completed while the fault held; after every heal the cluster served a write within
//! `recovery_max`; at least `ok_share_min` of the ops succeeded; no answer broke the contract
//! (a 500, a malformed body...). Every run is bounded: the fault phase by `duration`, requests
//! by the client timeouts, the check by the checker's budget; the cluster and network are
//! removed on every exit path (their `Drop`s), and the history is kept under
//! `target/jepsen/<name>-<seed>/history.jsonl` with the node logs beside it.

use crate::checker::{self, Limits, Verdict};
use crate::cluster::{Cluster, Timing, client_timeouts};
use crate::faults::{self, Fault, Injected};
use crate::history::{self, Input, Op, Output, RETURN_NEVER};
use crate::net::{Mode, Net};
use crate::workload::{self, SetLedger, Shared, Stats};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub name: String,
    pub seed: u64,
    pub nodes: usize,
    /// Injected in this order, cycling, until `duration` is over.
    pub faults: Vec<Fault>,
    pub duration: Duration,
    /// Fault-free time before each fault.
    pub quiet: Duration,
    /// How long each fault holds (longer than an election timeout).
    pub hold: Duration,
    pub register_clients: u32,
    pub set_clients: u32,
    pub idempotent_clients: u32,
    /// The cluster must serve a write within this long after every heal.
    pub recovery_max: Duration,
    /// Share of all ops that must have succeeded.
    pub ok_share_min: f64,
    pub timing: Timing,
    /// Extra environment for every node, e.g. a deliberately unsafe test-build switch.
    pub node_env: Vec<(String, String)>,
}

impl RunOptions {
    pub fn new(name: &str, seed: u64, faults: &[Fault], duration: Duration) -> RunOptions {
        RunOptions {
            name: name.to_string(),
            seed,
            nodes: 3,
            faults: faults.to_vec(),
            duration,
            quiet: Duration::from_secs(3),
            hold: Duration::from_secs(4),
            register_clients: 5,
            set_clients: 1,
            idempotent_clients: 2,
            recovery_max: Duration::from_secs(5),
            ok_share_min: 0.25,
            timing: Timing::default(),
            node_env: Vec::new(),
        }
    }
}

pub struct Report {
    pub options: RunOptions,
    pub mode: Mode,
    pub dir: PathBuf,
    pub history_path: PathBuf,
    pub ops: Vec<Op>,
    pub verdict: Verdict,
    pub faults: Vec<Injected>,
    pub stats: Stats,
    pub set: SetLedger,
    pub problems: Vec<String>,
    pub elapsed: Duration,
    pub check_time: Duration,
    /// Restarts whose recovery started from a snapshot (from the node logs' `recovered` lines;
    /// best effort: 0 also when the log format changed).
    pub snapshot_restarts: usize,
    /// Torn WAL tails the nodes reported repairing at start (best effort, from the logs).
    pub wal_repairs: usize,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn summary(&self) -> String {
        let mut by: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for op in &self.ops {
            let kind = match op.input {
                Input::Get => "get",
                Input::LeaseGet => "lease-get",
                Input::Put {
                    if_revision: Some(_),
                    ..
                } => "cas",
                Input::Put { .. } => "put",
                Input::Delete { .. } => "delete",
            };
            let outcome = match op.output {
                Output::Unknown => "unknown",
                Output::Failed => "failed",
                Output::Mismatch { .. } => "ok(409)",
                _ => "ok",
            };
            *by.entry((kind, outcome)).or_default() += 1;
        }
        let mut s = format!(
            "== jepsen run {} (seed {}, {} nodes, {:?} network) in {:.1?}\n",
            self.options.name, self.options.seed, self.options.nodes, self.mode, self.elapsed
        );
        s.push_str(&format!("ops: {} total;", self.ops.len()));
        for ((kind, outcome), n) in &by {
            s.push_str(&format!(" {kind} {outcome}: {n};"));
        }
        s.push_str(&format!(
            "\nset: {} acked, {} failed, {} unknown; idempotent: {} retried, {} answers replayed, \
             {} deliberate duplicates answered with the original\n",
            self.set.acked.len(),
            self.set.failed.len(),
            self.set.unknown.len(),
            self.stats.retried,
            self.stats.replayed,
            self.stats.duplicates_replayed
        ));
        s.push_str(&format!(
            "http statuses (0 = no answer, 1 = not sent): {:?}\n",
            self.stats.statuses
        ));
        s.push_str(&format!(
            "restarts recovered from a snapshot: {}; WAL tails repaired at start: {}\nfaults injected: {}\n",
            self.snapshot_restarts,
            self.wal_repairs,
            self.faults.len()
        ));
        s.push_str(&self.faults_lines());
        s.push_str(&format!(
            "checker: {:?} in {:.2?}\n",
            self.verdict, self.check_time
        ));
        s.push_str(&format!(
            "verdict: {}\n",
            if self.passed() {
                "PASS".to_string()
            } else {
                format!("FAIL: {}", self.problems.join("; "))
            }
        ));
        s.push_str(&format!(
            "history: {}\nnode logs: {}\n",
            self.history_path.display(),
            self.dir.display()
        ));
        s
    }

    /// One line per fault injected: when, what, recovery, and the minority's writes.
    fn faults_lines(&self) -> String {
        let mut s = String::new();
        for f in &self.faults {
            let (tried, done) = minority_writes(&self.ops, f);
            let minority = if f.minority.is_empty() {
                String::new()
            } else {
                format!(
                    "; writes sent to the minority: {tried}, completed: {}",
                    done.len()
                )
            };
            let recovery = f.recovery.map_or("NOT within bound".to_string(), |d| {
                format!("{d:.2?} after heal")
            });
            let error = f
                .error
                .as_ref()
                .map_or(String::new(), |e| format!("; ERROR: {e}"));
            s.push_str(&format!(
                "  {:>6.1}s {:?}: {}; all nodes served again {recovery}{minority}{error}\n",
                f.start_ns as f64 / 1e9,
                f.fault,
                f.detail,
            ));
        }
        s
    }
}

/// `target/jepsen/<name>-<seed>`.
fn run_dir(options: &RunOptions) -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let base = target.parent().map_or(target.clone(), |p| p.to_path_buf());
    base.join("jepsen")
        .join(format!("{}-{}", options.name, options.seed))
}

/// Run the workloads with the nemesis; returns the report (not yet asserted).
pub fn run(options: RunOptions) -> Report {
    let started = Instant::now();
    let dir = run_dir(&options);
    crate::cluster::kill_leftovers(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let net = Net::setup(options.nodes);
    let mode = net.mode;
    let faults_planned: Vec<Fault> = options
        .faults
        .iter()
        .copied()
        .filter(|f| mode == Mode::Namespaces || !f.needs_network())
        .collect();
    let mut cluster = Cluster::start(net, options.nodes, &dir, options.timing, &options.node_env);
    let addrs: Vec<_> = (0..options.nodes).map(|i| cluster.rest_addr(i)).collect();
    let shared = Shared::new(addrs, client_timeouts(&options.timing));
    let mut problems = Vec::new();
    let (injected, listed) = exercise(
        &mut cluster,
        &shared,
        &options,
        &faults_planned,
        &mut problems,
    );
    drop(cluster);
    let ops = std::mem::take(&mut *shared.ops.lock().unwrap_or_else(|e| e.into_inner()));
    let history_path = dir.join("history.jsonl");
    if let Err(e) = history::write_jsonl(&history_path, &ops) {
        problems.push(format!("could not write the history: {e}"));
    }
    let check_started = Instant::now();
    let verdict = checker::check(
        &ops,
        Limits {
            per_key_time_max: Duration::from_secs(60),
        },
    );
    let check_time = check_started.elapsed();
    let stats = std::mem::take(&mut *shared.stats.lock().unwrap_or_else(|e| e.into_inner()));
    let set = std::mem::take(&mut *shared.set.lock().unwrap_or_else(|e| e.into_inner()));
    judge(
        &options,
        &ops,
        &verdict,
        &injected,
        &stats,
        &set,
        listed,
        &mut problems,
    );
    if problems.is_empty() {
        for i in 0..options.nodes {
            let _ = std::fs::remove_dir_all(dir.join(format!("n{i}")));
        }
    }
    let count = |matches: fn(&str) -> bool| {
        (0..options.nodes)
            .map(|i| log_count(&dir, i, matches))
            .sum()
    };
    let snapshot_restarts = count(snapshot_restart);
    let wal_repairs = count(|l| l.contains("torn tail"));
    Report {
        options,
        mode,
        dir,
        history_path,
        ops,
        verdict,
        faults: injected,
        stats,
        set,
        problems,
        elapsed: started.elapsed(),
        check_time,
        snapshot_restarts,
        wal_repairs,
    }
}

/// The live part of a run: clients and nemesis, then (all healed) the final reads and the
/// listing of the set. Returns the faults injected and the listed set keys.
fn exercise(
    cluster: &mut Cluster,
    shared: &Shared,
    options: &RunOptions,
    planned: &[Fault],
    problems: &mut Vec<String>,
) -> (Vec<Injected>, Option<Vec<String>>) {
    let mut injected = Vec::new();
    if cluster.wait_serving(Duration::from_secs(30)).is_none() {
        problems.push("the cluster never served a write in 30 s after start".to_string());
    } else {
        std::thread::scope(|scope| {
            // Set on every exit from this scope, panics included: the scope joins the clients,
            // which run until told to stop.
            let _stop = StopOnDrop(&shared.stop);
            spawn_clients(scope, shared, options);
            injected = nemesis(cluster, shared, options, planned);
        });
    }
    // Everything healed by `nemesis`; the final reads need a serving cluster.
    if cluster.wait_serving(Duration::from_secs(30)).is_none() {
        problems
            .push("the cluster did not serve again within 30 s after the last heal".to_string());
    }
    for (i, status) in cluster.exited() {
        problems.push(format!(
            "node n{i} exited by itself ({status}); see n{i}.log"
        ));
    }
    workload::final_reads(shared, 10_000);
    let listed = (0..options.nodes).find_map(|i| workload::list_set(shared, cluster.rest_addr(i)));
    (injected, listed)
}

/// How many lines of node `i`'s log match.
fn log_count(dir: &std::path::Path, i: usize, matches: impl Fn(&str) -> bool) -> usize {
    let log = std::fs::read_to_string(dir.join(format!("n{i}.log"))).unwrap_or_default();
    log.lines().filter(|l| matches(l)).count()
}

/// A `recovered ... snapshot_index=N` line with N > 0.
fn snapshot_restart(line: &str) -> bool {
    line.contains("recovered")
        && line
            .split("snapshot_index=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|n| n.parse::<u64>().is_ok_and(|n| n > 0))
}

/// Register and set writes sent to `f`'s minority nodes, invoked once the fault was in place
/// and (for the second count) answered ok before it healed: that count must be 0.
fn minority_writes<'a>(ops: &'a [Op], f: &Injected) -> (usize, Vec<&'a Op>) {
    let sent: Vec<&Op> = ops
        .iter()
        .filter(|op| op.key.starts_with('r') || op.key.starts_with('s'))
        .filter(|op| !matches!(op.input, Input::Get | Input::LeaseGet))
        .filter(|op| f.minority.contains(&(op.node as usize).wrapping_sub(1)))
        .filter(|op| op.call_ns >= f.start_ns && op.call_ns <= f.heal_ns)
        .collect();
    let done = sent
        .iter()
        .filter(|op| matches!(op.output, Output::Written { .. } | Output::Deleted { .. }))
        .filter(|op| op.return_ns != RETURN_NEVER && op.return_ns <= f.heal_ns)
        .copied()
        .collect();
    (sent.len(), done)
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn spawn_clients<'s>(scope: &'s std::thread::Scope<'s, '_>, shared: &'s Shared, o: &RunOptions) {
    let mut client = 0u32;
    let mut next = |kind: u64| {
        client += 1;
        (
            client,
            o.seed
                .wrapping_mul(1_000_003)
                .wrapping_add(u64::from(client) * 7919 + kind),
        )
    };
    for _ in 0..o.register_clients {
        let (c, seed) = next(1);
        scope.spawn(move || workload::register_client(shared, c, seed));
    }
    for _ in 0..o.set_clients {
        let (c, seed) = next(2);
        scope.spawn(move || workload::set_client(shared, c, seed));
    }
    for _ in 0..o.idempotent_clients {
        let (c, seed) = next(3);
        scope.spawn(move || workload::idempotent_client(shared, c, seed));
    }
}

/// Cycle through the faults until the duration is over; every fault is healed before return.
/// A node found dead after a heal is restarted (so the run goes on) and the fault's `error`
/// says so, which fails the run in `judge`.
fn nemesis(
    cluster: &mut Cluster,
    shared: &Shared,
    o: &RunOptions,
    planned: &[Fault],
) -> Vec<Injected> {
    let mut rng = StdRng::seed_from_u64(o.seed ^ 0x006e_656d_6573_6973);
    let mut done = Vec::new();
    let phase_end = Instant::now() + o.duration;
    let mut round = 0;
    while Instant::now() + o.quiet + o.hold < phase_end && !planned.is_empty() {
        std::thread::sleep(o.quiet);
        let fault = planned[round % planned.len()];
        let mut f = faults::inject(cluster, fault, round / planned.len(), &mut rng);
        // The fault holds from the moment it is fully in place (the last rule installed).
        f.start_ns = shared.now_ns();
        std::thread::sleep(o.hold);
        faults::heal(cluster, &mut f, shared.now_ns());
        // Bounded wait, longer than the pass bound so the report can say how long it took.
        f.recovery = cluster.wait_serving(o.recovery_max * 4);
        for (i, status) in cluster.exited() {
            let note = format!("n{i} exited by itself ({status}), restarted");
            f.error = Some(
                f.error
                    .take()
                    .map_or(note.clone(), |e| format!("{e}; {note}")),
            );
            cluster.spawn(i);
        }
        println!(
            "jepsen: {:?}: {}; all nodes served again after {:?}",
            f.fault, f.detail, f.recovery
        );
        done.push(f);
        round += 1;
    }
    std::thread::sleep(o.quiet);
    done
}

#[allow(clippy::too_many_arguments)]
fn judge(
    o: &RunOptions,
    ops: &[Op],
    verdict: &Verdict,
    injected: &[Injected],
    stats: &Stats,
    set: &SetLedger,
    listed: Option<Vec<String>>,
    problems: &mut Vec<String>,
) {
    match verdict {
        Verdict::Linearizable => {}
        Verdict::NotLinearizable(why) => problems.push(format!("not linearizable: {why}")),
        Verdict::Unknown(why) => problems.push(format!("checker gave up: {why}")),
    }
    match listed {
        None => problems.push("could not list the set at the end".to_string()),
        Some(keys) => {
            let present: HashSet<&str> = keys.iter().map(String::as_str).collect();
            let lost: Vec<&String> = set
                .acked
                .iter()
                .filter(|k| !present.contains(k.as_str()))
                .collect();
            if !lost.is_empty() {
                problems.push(format!(
                    "{} acknowledged set inserts lost, e.g. {:?}",
                    lost.len(),
                    &lost[..lost.len().min(5)]
                ));
            }
            let ghosts: Vec<&String> = set
                .failed
                .iter()
                .filter(|k| present.contains(k.as_str()))
                .collect();
            if !ghosts.is_empty() {
                problems.push(format!(
                    "{} inserts answered 503 were applied, e.g. {:?}",
                    ghosts.len(),
                    &ghosts[..ghosts.len().min(5)]
                ));
            }
        }
    }
    for f in injected {
        let (_, minority_writes) = minority_writes(ops, f);
        if let Some(op) = minority_writes.first() {
            problems.push(format!(
                "{:?}: the minority side completed {} writes, e.g. {op:?}",
                f.fault,
                minority_writes.len()
            ));
        }
        if let Some(e) = &f.error {
            problems.push(format!("{:?} ({}): {e}", f.fault, f.detail));
        }
        match f.recovery {
            Some(d) if d <= o.recovery_max => {}
            other => problems.push(format!(
                "{:?} ({}): served again only after {other:?} (bound {:?})",
                f.fault, f.detail, o.recovery_max
            )),
        }
    }
    let ok = ops
        .iter()
        .filter(|op| !matches!(op.output, Output::Unknown | Output::Failed))
        .count();
    let share = ok as f64 / ops.len().max(1) as f64;
    if share < o.ok_share_min || ok < 100 {
        problems.push(format!(
            "only {ok} of {} ops succeeded ({:.0}%)",
            ops.len(),
            share * 100.0
        ));
    }
    if stats.odd_count > 0 {
        problems.push(format!(
            "{} answers outside the contract, e.g. {:?}",
            stats.odd_count, stats.odd
        ));
    }
}
