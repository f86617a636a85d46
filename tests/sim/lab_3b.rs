//! 6.5840 lab 3B (log replication), ported to the simulator. Our leaders append a no-op when
//! elected (§5.4.2, §8), so client commands start after it: the tests check that indexes are
//! consecutive rather than equal to the lab's literal numbers.

use bytes::Bytes;
use rocinante::raft::Index;

use super::cluster::{Outcome, Sim};
use super::control::ELECTION_TIMEOUT_MS;
use super::lab_3a::lab;

/// Gets every command in `cmds` committed on at least `expected` nodes, proposing them all at
/// once (the lab's concurrent clients) and proposing again any whose index was taken by another
/// entry. Bounded by 10 s of virtual time.
pub fn agree_all(s: &mut Sim, cmds: &[String], expected: usize) {
    let mut pending: Vec<(String, Option<Index>)> =
        cmds.iter().map(|c| (c.clone(), None)).collect();
    let t0 = s.now;
    while s.now < t0 + 10_000 {
        for (cmd, at) in pending.iter_mut() {
            if let Some(i) = at {
                let (n, v) = s.n_committed(*i);
                if n > 0 && v.as_deref() != Some(cmd.as_bytes()) {
                    *at = None; // lost: its index holds another entry
                }
            }
            if at.is_none() {
                for i in 0..s.nodes.len() {
                    if s.is_live(i) {
                        if let Some((index, _)) = s.start(i, cmd.clone()) {
                            *at = Some(index);
                            break;
                        }
                    }
                }
            }
        }
        pending.retain(|(cmd, at)| {
            let Some(i) = at else { return true };
            let (n, v) = s.n_committed(*i);
            !(n >= expected && v.as_deref() == Some(cmd.as_bytes()))
        });
        if pending.is_empty() {
            return;
        }
        s.run_for(20);
    }
    s.fail(&format!(
        "{} commands never agreed on: {:?}",
        pending.len(),
        pending
    ))
}

#[test]
fn basic_agree_3b() {
    let mut s = lab(3, "basic_agree_3b");
    s.check_one_leader();
    let first = s.one("c0", 3, false);
    for k in 1..=3u64 {
        let expect = Index(first.0 + k);
        if s.n_committed(expect).0 > 0 {
            s.fail("some have committed before Start()");
        }
        let got = s.one(&format!("c{k}"), 3, false);
        if got != expect {
            s.fail(&format!("got index {got} but expected {expect}"));
        }
    }
}

#[test]
fn follower_failure_3b() {
    let mut s = lab(3, "follower_failure_3b");
    s.one("101", 3, false);
    let leader1 = s.check_one_leader();
    s.disconnect((leader1 + 1) % 3);
    // The leader and the remaining follower can still agree.
    s.one("102", 2, false);
    s.run_for(ELECTION_TIMEOUT_MS);
    s.one("103", 2, false);
    // Disconnect the remaining follower: no quorum left.
    let leader2 = s.check_one_leader();
    s.disconnect((leader2 + 1) % 3);
    s.disconnect((leader2 + 2) % 3);
    let Some((index, _)) = s.start(leader2, "104") else {
        s.fail("leader rejected Start()")
    };
    s.run_for(2 * ELECTION_TIMEOUT_MS);
    if s.n_committed(index).0 > 0 {
        s.fail(&format!("{index} committed without a majority"));
    }
}

#[test]
fn leader_failure_3b() {
    let mut s = lab(3, "leader_failure_3b");
    s.one("101", 3, false);
    let leader1 = s.check_one_leader();
    s.disconnect(leader1);
    // The remaining two elect a new leader and agree.
    s.one("102", 2, false);
    s.run_for(ELECTION_TIMEOUT_MS);
    s.one("103", 2, false);
    let leader2 = s.check_one_leader();
    s.disconnect(leader2);
    // Only one connected node: whatever it accepts must not commit.
    let mut index = None;
    for i in 0..3 {
        if let Some((x, _)) = s.start(i, "104") {
            index = Some(x);
        }
    }
    s.run_for(2 * ELECTION_TIMEOUT_MS);
    if let Some(i) = index.filter(|&i| s.n_committed(i).0 > 0) {
        s.fail(&format!("{i} committed without a majority"));
    }
}

#[test]
fn fail_agree_3b() {
    let mut s = lab(3, "fail_agree_3b");
    s.one("101", 3, false);
    let leader = s.check_one_leader();
    s.disconnect((leader + 1) % 3);
    for c in ["102", "103", "104", "105"] {
        s.one(c, 2, false);
    }
    // The follower rejoins and must catch up.
    s.connect((leader + 1) % 3);
    s.one("106", 3, true);
    s.run_for(ELECTION_TIMEOUT_MS);
    s.one("107", 3, true);
}

#[test]
fn fail_no_agree_3b() {
    let mut s = lab(5, "fail_no_agree_3b");
    s.one("10", 5, false);
    // Three of five followers disconnect: no majority.
    let leader = s.check_one_leader();
    for k in 1..=3 {
        s.disconnect((leader + k) % 5);
    }
    let Some((index, _)) = s.start(leader, "20") else {
        s.fail("leader rejected Start()")
    };
    s.run_for(2 * ELECTION_TIMEOUT_MS);
    if s.n_committed(index).0 > 0 {
        s.fail(&format!("{index} committed without a majority"));
    }
    for k in 1..=3 {
        s.connect((leader + k) % 5);
    }
    // The disconnected majority may have chosen its own leader; either way, agreement resumes.
    let leader2 = s.check_one_leader();
    if s.start(leader2, "30").is_none() {
        s.fail("leader2 rejected Start()");
    }
    s.one("1000", 5, true);
}

#[test]
fn concurrent_starts_3b() {
    let mut s = lab(3, "concurrent_starts_3b");
    for attempt in 0..5 {
        if attempt > 0 {
            s.run_for(3 * ELECTION_TIMEOUT_MS);
        }
        let leader = s.check_one_leader();
        let Some((_, term)) = s.start(leader, "1") else {
            continue;
        };
        let cmds: Vec<String> = (0..5).map(|k| format!("{}", 100 + k)).collect();
        let mut indices = Vec::new();
        for c in &cmds {
            match s.start(leader, c.clone()) {
                Some((i, t)) if t == term => indices.push(i),
                _ => {}
            }
        }
        if (0..3).any(|j| s.raft(j).is_some_and(|r| r.term() != term)) {
            continue; // the term moved on: try again
        }
        let mut got = Vec::new();
        for &i in &indices {
            match s.wait_committed(i, 3, Some(term)) {
                Some(v) => got.push(v),
                None => break,
            }
        }
        if got.len() < indices.len() {
            continue;
        }
        for c in &cmds {
            if !got.iter().any(|v| v.as_ref() == c.as_bytes()) {
                s.fail(&format!("cmd {c} missing in {got:?}"));
            }
        }
        return;
    }
    s.fail("term changed too often");
}

#[test]
fn rejoin_3b() {
    let mut s = lab(3, "rejoin_3b");
    s.one("101", 3, true);
    // The leader is partitioned away and accepts entries that never commit.
    let leader1 = s.check_one_leader();
    s.disconnect(leader1);
    for c in ["102", "103", "104"] {
        s.start(leader1, c);
    }
    // A new leader, also for index 2.
    s.one("103", 2, true);
    let leader2 = s.check_one_leader();
    s.disconnect(leader2);
    // The old leader rejoins: its uncommitted entries must be replaced.
    s.connect(leader1);
    s.one("104", 2, true);
    s.connect(leader2);
    s.one("105", 3, true);
}

#[test]
fn backup_3b() {
    let mut s = lab(5, "backup_3b");
    let n = 5;
    s.one("start", n, true);
    // The leader and one follower are left alone; they accept 50 entries that never commit.
    let leader1 = s.check_one_leader();
    for k in 2..=4 {
        s.disconnect((leader1 + k) % n);
    }
    for k in 0..50 {
        s.start(leader1, format!("a{k}"));
    }
    s.run_for(ELECTION_TIMEOUT_MS / 2);
    s.disconnect(leader1);
    s.disconnect((leader1 + 1) % n);
    // The other three elect a leader and commit 50 entries.
    for k in 2..=4 {
        s.connect((leader1 + k) % n);
    }
    for k in 0..50 {
        s.one(&format!("b{k}"), 3, true);
    }
    // Now their leader loses one of them and accepts 50 more that never commit.
    let leader2 = s.check_one_leader();
    let mut other = (leader1 + 2) % n;
    if leader2 == other {
        other = (leader2 + 1) % n;
    }
    s.disconnect(other);
    for k in 0..50 {
        s.start(leader2, format!("c{k}"));
    }
    s.run_for(ELECTION_TIMEOUT_MS / 2);
    // The original leader's pair plus `other` form a majority: long conflicting logs to back
    // up over, in both directions.
    for i in 0..n {
        s.disconnect(i);
    }
    s.connect(leader1);
    s.connect((leader1 + 1) % n);
    s.connect(other);
    let rejects0 = s.stats.append_rejects;
    for k in 0..50 {
        s.one(&format!("d{k}"), 3, true);
    }
    for i in 0..n {
        s.connect(i);
    }
    s.one("end", n, true);
    // Fast backtracking (thesis §5.3 hint): a follower that is 50 conflicting entries behind
    // is brought back in a few rejections per term, not one per entry. Without the hint the
    // two phases above need at least 100 rejections.
    let rejects = s.stats.append_rejects - rejects0;
    if rejects > 30 {
        s.fail(&format!("{rejects} AppendEntries rejections to back up ~50 entries on 4 followers: no fast backtracking?"));
    }
}

#[test]
fn count_3b() {
    let mut s = lab(3, "count_3b");
    let n = 3;
    s.check_one_leader();
    let total1 = s.stats.rpcs;
    if !(1..=30).contains(&total1) {
        s.fail(&format!(
            "too many or few RPCs ({total1}) to elect initial leader"
        ));
    }
    let total2 = (0..5)
        .find_map(|attempt| {
            if attempt > 0 {
                s.run_for(3 * ELECTION_TIMEOUT_MS);
            }
            count_burst(&mut s)
        })
        .unwrap_or_else(|| s.fail("term changed too often"));
    // Idle: only heartbeats, one per peer per heartbeat interval (2 ticks = 20 ms).
    s.run_for(ELECTION_TIMEOUT_MS * 5);
    let total3 = s.stats.rpcs;
    let bound = (n as u64 - 1) * (ELECTION_TIMEOUT_MS * 5 / 20 + 2);
    if total3 - total2 > bound {
        s.fail(&format!(
            "too many RPCs ({}) for {}ms of idleness (bound {bound})",
            total3 - total2,
            ELECTION_TIMEOUT_MS * 5
        ));
    }
}

/// One attempt of `count_3b`'s agreement phase: 11 entries proposed at once must commit with
/// at most the lab's bound of RPCs. None if the term changed meanwhile; else the RPC total.
fn count_burst(s: &mut Sim) -> Option<u64> {
    let n = 3;
    let leader = s.check_one_leader();
    let total1 = s.stats.rpcs;
    let iters = 10u64;
    let (starti, term) = s.start(leader, "1")?;
    // The burst arrives at once (the lab's tight loop of Start calls): the leader is to batch
    // it, not send one AppendEntries per entry per peer.
    let cmds: Vec<String> = (1..=iters + 1).map(|i| format!("x{i}")).collect();
    let ps: Vec<usize> = cmds
        .iter()
        .map(|c| s.submit(leader, Bytes::from(c.clone())))
        .collect();
    s.settle(leader);
    for (k, &p) in ps.iter().enumerate() {
        let index = match s.proposals[p].outcome {
            Outcome::Accepted(index, t) if t == term => index,
            Outcome::Committed(index) => index,
            _ => return None,
        };
        if index != Index(starti.0 + k as u64 + 1) {
            s.fail("Start() failed: indexes not consecutive");
        }
    }
    for i in 1..=iters {
        let v = s.wait_committed(Index(starti.0 + i), n, Some(term))?;
        if v.as_ref() != cmds[i as usize - 1].as_bytes() {
            s.fail("wrong value committed");
        }
    }
    if (0..n).any(|j| s.raft(j).is_some_and(|r| r.term() != term)) {
        return None;
    }
    let total2 = s.stats.rpcs;
    if total2 - total1 > (iters + 1 + 3) * 3 {
        s.fail(&format!(
            "too many RPCs ({}) for {iters} entries",
            total2 - total1
        ));
    }
    Some(total2)
}

#[test]
fn rpc_bytes_3b() {
    let mut s = lab(3, "rpc_bytes_3b");
    s.one("99", 3, false);
    let bytes0 = s.stats.entry_bytes;
    let iters = 10;
    let size = 5000;
    for k in 0..iters {
        let cmd = format!("{k:0>width$}", width = size);
        s.one(&cmd, 3, false);
    }
    // Each entry travels to each of the 2 followers about once.
    let got = s.stats.entry_bytes - bytes0;
    let expected = 2 * iters * size as u64;
    if got > expected + 50_000 {
        s.fail(&format!(
            "too many entry bytes sent: {got}, expected about {expected}"
        ));
    }
}
