//! The nemesis: the faults a run injects into the cluster, and how each is healed.
//!
//! Each fault names the nodes on the minority side, if it has one: a write sent to one of them
//! and both invoked and answered while the fault held must never succeed (it cannot reach a
//! quorum: §5.3 commitment needs a majority, and the isolated leader steps down or stalls).
//!
//! The torn-WAL fault only tears bytes a real crash could tear: bytes no acknowledged write
//! depends on. It first freezes a follower (SIGSTOP) and waits until every other member's
//! `match_index` is at least the follower's, so every entry the follower helped commit is also
//! on a majority without it; then it kills it, tears its newest segment (cut a few bytes, or
//! append a partial frame), and restarts it at heal. Cutting bytes a majority depends on would
//! lose acknowledged writes by going outside the fault model, not by a bug.

use crate::cluster::Cluster;
use rand::Rng;
use rand::rngs::StdRng;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// kill -9 one node (the leader every other time), restart at heal.
    KillOne,
    /// kill -9 a minority ((n-1)/2 nodes), restart at heal.
    KillMinority,
    /// kill -9 every node, restart all at heal.
    KillAll,
    /// SIGSTOP the leader for longer than an election timeout, SIGCONT at heal.
    PauseLeader,
    /// A random majority/minority partition (both ways).
    PartitionMinority,
    /// The leader cut off from every peer; clients still reach it.
    IsolateLeader,
    /// One-way: the leader's packets to its peers dropped, or its peers' packets to it
    /// (alternately).
    OneWay,
    /// Freeze a follower until the others hold everything it holds, kill -9 it, tear its WAL
    /// tail, restart it at heal.
    TornWal,
}

impl Fault {
    pub const ALL: [Fault; 8] = [
        Fault::KillOne,
        Fault::PauseLeader,
        Fault::PartitionMinority,
        Fault::IsolateLeader,
        Fault::OneWay,
        Fault::KillMinority,
        Fault::TornWal,
        Fault::KillAll,
    ];

    pub fn needs_network(self) -> bool {
        matches!(
            self,
            Fault::PartitionMinority | Fault::IsolateLeader | Fault::OneWay
        )
    }
}

/// One fault as it happened.
#[derive(Clone, Debug)]
pub struct Injected {
    pub fault: Fault,
    pub start_ns: u64,
    pub heal_ns: u64,
    /// Nodes (0-based) that must not complete a write while the fault holds.
    pub minority: Vec<usize>,
    pub detail: String,
    /// A cut or rule that could not be installed: the fault did not happen as planned.
    pub error: Option<String>,
    /// Time from heal until a write through every running node succeeded; `None`: not within
    /// the bound.
    pub recovery: Option<Duration>,
    /// What heal must undo.
    undo: Undo,
}

#[derive(Clone, Debug)]
enum Undo {
    Restart(Vec<usize>),
    Resume(Vec<usize>),
    Heal,
    Nothing,
}

fn shuffled(rng: &mut StdRng, n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.random_range(0..=i));
    }
    v
}

/// The leader if one is known within a few seconds, else a random running node.
fn leader_or_any(cluster: &Cluster, rng: &mut StdRng) -> usize {
    cluster
        .wait_leader(Duration::from_secs(3))
        .unwrap_or_else(|| rng.random_range(0..cluster.len()))
}

/// Inject `fault`. `round` alternates variants (which node, which direction).
/// `start_ns` is left 0 for the caller to stamp once this returns.
pub fn inject(cluster: &mut Cluster, fault: Fault, round: usize, rng: &mut StdRng) -> Injected {
    let mut error = None;
    let (minority, detail, undo) = if fault.needs_network() {
        let (minority, detail, done) = network_fault(cluster, fault, round, rng);
        error = done.err();
        (minority, detail, Undo::Heal)
    } else if fault == Fault::TornWal {
        torn_wal(cluster, round, rng)
    } else {
        let (detail, undo) = process_fault(cluster, fault, round, rng);
        (vec![], detail, undo)
    };
    Injected {
        fault,
        start_ns: 0,
        heal_ns: 0,
        minority,
        detail,
        error,
        recovery: None,
        undo,
    }
}

/// kill -9 and SIGSTOP faults: what was done and how to undo it.
fn process_fault(
    cluster: &mut Cluster,
    fault: Fault,
    round: usize,
    rng: &mut StdRng,
) -> (String, Undo) {
    let n = cluster.len();
    let victims: Vec<usize> = match fault {
        Fault::KillOne if round % 2 == 0 => vec![leader_or_any(cluster, rng)],
        Fault::KillOne => vec![rng.random_range(0..n)],
        Fault::KillMinority => shuffled(rng, n).into_iter().take((n - 1) / 2).collect(),
        Fault::KillAll => (0..n).collect(),
        Fault::PauseLeader => vec![leader_or_any(cluster, rng)],
        other => unreachable!("{other:?} is not a process fault"),
    };
    if fault == Fault::PauseLeader {
        for &v in &victims {
            cluster.pause(v);
        }
        return (format!("SIGSTOP {victims:?}"), Undo::Resume(victims));
    }
    for &v in &victims {
        cluster.kill9(v);
    }
    (format!("kill -9 {victims:?}"), Undo::Restart(victims))
}

/// Partitions and one-way cuts: the minority side, what was done, and whether every cut was
/// installed.
fn network_fault(
    cluster: &mut Cluster,
    fault: Fault,
    round: usize,
    rng: &mut StdRng,
) -> (Vec<usize>, String, Result<(), String>) {
    let n = cluster.len();
    match fault {
        Fault::PartitionMinority => {
            let order = shuffled(rng, n);
            let (small, big) = order.split_at((n - 1) / 2);
            let done = cluster.net.partition(small, big);
            (
                small.to_vec(),
                format!("partition {small:?} | {big:?}"),
                done,
            )
        }
        Fault::IsolateLeader => {
            let leader = leader_or_any(cluster, rng);
            let others: Vec<usize> = (0..n).filter(|&i| i != leader).collect();
            let done = cluster.net.partition(&[leader], &others);
            (vec![leader], format!("isolate leader n{leader}"), done)
        }
        Fault::OneWay => {
            let leader = leader_or_any(cluster, rng);
            let outbound = round % 2 == 0;
            let mut done = Ok(());
            for peer in (0..n).filter(|&i| i != leader) {
                let (from, to) = if outbound {
                    (leader, peer)
                } else {
                    (peer, leader)
                };
                done = done.and(cluster.net.cut(from, to));
            }
            let dir = if outbound {
                "cannot send"
            } else {
                "cannot receive"
            };
            (vec![leader], format!("leader n{leader} {dir}"), done)
        }
        other => unreachable!("{other:?} is not a network fault"),
    }
}

fn torn_wal(cluster: &mut Cluster, round: usize, rng: &mut StdRng) -> (Vec<usize>, String, Undo) {
    let Some(leader) = cluster.wait_leader(Duration::from_secs(5)) else {
        return (
            vec![],
            "torn WAL skipped: no leader".to_string(),
            Undo::Nothing,
        );
    };
    let followers: Vec<usize> = (0..cluster.len()).filter(|&i| i != leader).collect();
    let victim = followers[rng.random_range(0..followers.len())];
    cluster.pause(victim);
    let caught_up = wait_others_hold(cluster, victim, Duration::from_secs(10));
    cluster.kill9(victim);
    if !caught_up {
        // Not safe to tear: the others may not hold all the victim holds. A plain crash.
        return (
            vec![],
            format!("kill -9 n{victim} (others not caught up: WAL left whole)"),
            Undo::Restart(vec![victim]),
        );
    }
    let cut = if round % 2 == 0 {
        rng.random_range(1..=16)
    } else {
        0
    };
    let what = cluster.tear_wal(victim, cut);
    (vec![], what, Undo::Restart(vec![victim]))
}

/// Whether, per the current leader's `/v1/status`, every member but `victim` has a
/// `match_index` at least the victim's (polls up to `within`; the leader may change meanwhile).
fn wait_others_hold(cluster: &Cluster, victim: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let victim_id = Some(cluster.node_id(victim));
    while Instant::now() < deadline {
        let status = cluster.leader().and_then(|l| cluster.status(l));
        if let (Some(status), Some(victim_id)) = (status, &victim_id) {
            let members = status["members"].as_array().cloned().unwrap_or_default();
            let leader_last = status["last_log_index"].as_u64().unwrap_or(0);
            let index_of = |m: &serde_json::Value| {
                if m["id"] == status["id"] {
                    Some(leader_last)
                } else {
                    m["match_index"].as_u64()
                }
            };
            let victim_match = members
                .iter()
                .find(|m| m["id"].as_str() == Some(victim_id))
                .and_then(index_of);
            let others_ok = members
                .iter()
                .filter(|m| m["id"].as_str() != Some(victim_id))
                .all(|m| index_of(m).zip(victim_match).is_some_and(|(o, v)| o >= v));
            if victim_match.is_some() && others_ok {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Undo the fault.
pub fn heal(cluster: &mut Cluster, injected: &mut Injected, now_ns: u64) {
    match &injected.undo {
        Undo::Restart(nodes) => {
            for &i in nodes {
                cluster.spawn(i);
            }
        }
        Undo::Resume(nodes) => {
            for &i in nodes {
                cluster.resume(i);
            }
        }
        Undo::Heal => {
            if let Err(e) = cluster.net.heal() {
                injected.error = Some(format!("heal failed: {e}"));
            }
        }
        Undo::Nothing => {}
    }
    injected.heal_ns = now_ns;
}
