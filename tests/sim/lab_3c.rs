//! 6.5840 lab 3C (persistence), ported to the simulator. A crash here loses more than in the
//! lab: any write in flight keeps only a random prefix (see `storage`), so these tests also
//! exercise "nothing acknowledged is lost" on every crash.

use bytes::Bytes;
use rocinante::raft::Index;

use super::cluster::Sim;
use super::control::ELECTION_TIMEOUT_MS;
use super::lab_3a::lab;
use super::lab_3b::agree_all;

#[test]
fn persist1_3c() {
    let mut s = lab(3, "persist1_3c");
    let n = 3;
    s.one("11", n, true);
    // Crash and restart everybody.
    for i in 0..n {
        s.crash(i);
    }
    for i in 0..n {
        s.restart(i);
    }
    s.one("12", n, true);
    let leader1 = s.check_one_leader();
    s.crash(leader1);
    s.restart(leader1);
    s.one("13", n, true);
    let leader2 = s.check_one_leader();
    s.crash(leader2);
    let index = s.one("14", n - 1, true);
    s.restart(leader2);
    s.wait_committed(index, n, None);
    let i3 = (s.check_one_leader() + 1) % n;
    s.crash(i3);
    s.one("15", n - 1, true);
    s.restart(i3);
    s.one("16", n, true);
}

#[test]
fn persist2_3c() {
    let mut s = lab(5, "persist2_3c");
    let n = 5;
    let mut index = 1;
    for _ in 0..5 {
        s.one(&format!("{}", 10 + index), n, true);
        index += 1;
        let leader1 = s.check_one_leader();
        s.crash((leader1 + 1) % n);
        s.crash((leader1 + 2) % n);
        s.one(&format!("{}", 10 + index), n - 2, true);
        index += 1;
        s.crash(leader1);
        s.crash((leader1 + 3) % n);
        s.crash((leader1 + 4) % n);
        s.restart((leader1 + 1) % n);
        s.restart((leader1 + 2) % n);
        s.run_for(ELECTION_TIMEOUT_MS);
        s.restart((leader1 + 3) % n);
        s.one(&format!("{}", 10 + index), n - 2, true);
        index += 1;
        s.restart((leader1 + 4) % n);
        s.restart(leader1);
    }
    s.one("1000", n, true);
}

#[test]
fn persist3_3c() {
    let mut s = lab(3, "persist3_3c");
    s.one("101", 3, true);
    let leader = s.check_one_leader();
    s.disconnect((leader + 2) % 3);
    s.one("102", 2, true);
    s.crash(leader);
    s.crash((leader + 1) % 3);
    s.connect((leader + 2) % 3);
    s.restart(leader);
    s.one("103", 2, true);
    s.restart((leader + 1) % 3);
    s.one("104", 3, true);
}

/// Figure 8 of the paper: leaders crash right after proposing, so entries of old terms sit on
/// some nodes; a new leader must never commit them by counting replicas (§5.4.2). The checker
/// (State Machine Safety, Leader Completeness) catches a violation the moment it happens.
#[test]
fn figure8_3c() {
    let mut s = lab(5, "figure8_3c");
    figure8(&mut s, false);
}

#[test]
fn figure8_unreliable_3c() {
    let mut s = lab(5, "figure8_unreliable_3c");
    figure8(&mut s, true);
}

fn figure8(s: &mut Sim, unreliable: bool) {
    let n = 5;
    if unreliable {
        s.set_unreliable(true);
    }
    s.one("first", 1, true);
    let mut nup = n;
    for iter in 0..1000 {
        if unreliable && iter == 200 {
            s.set_long_reordering(true);
        }
        let mut leader = None;
        for i in 0..n {
            if (!unreliable || s.is_connected(i)) && s.start(i, format!("f{iter}-{i}")).is_some() {
                leader = Some(i);
            }
        }
        let pause = if s.rng_range(0, 1000) < 100 {
            s.rng_range(0, ELECTION_TIMEOUT_MS / 2)
        } else {
            s.rng_range(0, 13)
        };
        s.run_for(pause);
        if let Some(l) = leader {
            if unreliable {
                if s.rng_range(0, 1000) < 500 {
                    s.disconnect(l);
                    nup -= 1;
                }
            } else {
                s.crash(l);
                nup -= 1;
            }
        }
        if nup < 3 {
            let i = s.rng_range(0, n as u64) as usize;
            let down = if unreliable {
                !s.is_connected(i)
            } else {
                !s.is_up(i)
            };
            if down {
                s.restart(i);
                s.connect(i);
                nup += 1;
            }
        }
    }
    for i in 0..n {
        s.restart(i);
        s.connect(i);
    }
    s.one("last", n, true);
}

#[test]
fn unreliable_agree_3c() {
    let mut s = lab(5, "unreliable_agree_3c");
    s.set_unreliable(true);
    for iter in 1..50 {
        let cmds: Vec<String> = (0..4)
            .map(|j| format!("{}", 100 * iter + j))
            .chain([format!("{iter}")])
            .collect();
        agree_all(&mut s, &cmds, 1);
    }
    s.set_unreliable(false);
    s.one("100", 5, true);
}

#[test]
fn reliable_churn_3c() {
    churn(false, "reliable_churn_3c");
}

#[test]
fn unreliable_churn_3c() {
    churn(true, "unreliable_churn_3c");
}

/// A lab client: proposes on every node, then polls for its value at the index it was given.
struct Client {
    me: u64,
    next_at: u64,
    /// (index, value, polls so far)
    waiting: Option<(Index, Bytes, usize)>,
    committed: Vec<Bytes>,
    sent: u64,
}

const POLL_MS: [u64; 5] = [10, 20, 50, 100, 200];

fn drive(s: &mut Sim, c: &mut Client) {
    if s.now < c.next_at {
        return;
    }
    match c.waiting.take() {
        None => {
            let x = Bytes::from(format!("k{}-{}", c.me, c.sent));
            c.sent += 1;
            let mut at = None;
            for i in 0..s.nodes.len() {
                if let Some((index, _)) = s.start(i, x.clone()) {
                    at = Some(index);
                }
            }
            match at {
                Some(index) => c.waiting = Some((index, x, 0)),
                None => c.next_at = s.now + 16 + c.me * 3,
            }
        }
        Some((index, x, polls)) => {
            let (nd, v) = s.n_committed(index);
            if nd > 0 {
                if v.as_ref() == Some(&x) {
                    c.committed.push(x);
                }
            } else if polls < POLL_MS.len() {
                c.next_at = s.now + POLL_MS[polls];
                c.waiting = Some((index, x, polls + 1));
            }
        }
    }
}

fn churn(unreliable: bool, name: &str) {
    let mut s = lab(5, name);
    let n = 5;
    if unreliable {
        s.set_unreliable(true);
    }
    let mut clients: Vec<Client> = (0..3)
        .map(|me| Client {
            me,
            next_at: 0,
            waiting: None,
            committed: Vec::new(),
            sent: 0,
        })
        .collect();
    for _ in 0..20 {
        if s.rng_range(0, 1000) < 200 {
            let i = s.rng_range(0, n as u64) as usize;
            s.disconnect(i);
        }
        if s.rng_range(0, 1000) < 500 {
            let i = s.rng_range(0, n as u64) as usize;
            s.restart(i);
            s.connect(i);
        }
        if s.rng_range(0, 1000) < 200 {
            let i = s.rng_range(0, n as u64) as usize;
            s.crash(i);
        }
        let until = s.now + ELECTION_TIMEOUT_MS * 7 / 10;
        while s.now < until {
            s.run_for(5);
            for c in clients.iter_mut() {
                drive(&mut s, c);
            }
        }
    }
    s.run_for(ELECTION_TIMEOUT_MS);
    s.set_unreliable(false);
    for i in 0..n {
        s.restart(i);
        s.connect(i);
    }
    let last = s.one("final", n, true);
    let mut really = Vec::new();
    for i in 1..=last.0 {
        if let Some(v) = s.wait_committed(Index(i), n, None) {
            really.push(v);
        }
    }
    // Everything a client saw committed survived every crash and is on every node.
    let mut seen = 0;
    for c in &clients {
        for v in &c.committed {
            seen += 1;
            if !really.contains(v) {
                s.fail(&format!(
                    "value {v:?} was committed but is not in the final log"
                ));
            }
        }
    }
    if seen == 0 {
        s.fail("no client value was ever committed: the churn test tested nothing");
    }
}
