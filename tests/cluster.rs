//! Three real `rocinante serve` processes on free localhost ports: the cluster elects and
//! serves, followers forward (or redirect) to the leader, a SIGKILLed leader loses no
//! acknowledged write and is replaced within 3 s, and a restart of all three keeps every
//! acknowledged write. Waits are bounded polls, never sleeps used as synchronisation.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Cluster, get, poll, put, request};

const ELECTION_WAIT: Duration = Duration::from_secs(10);

#[test]
fn three_nodes_elect_one_leader_and_followers_forward() {
    let c = Cluster::start(3);
    let l = c.wait_leader(ELECTION_WAIT);
    let roles: Vec<String> = c
        .rest
        .iter()
        .map(|r| {
            get(r, "/v1/status").json()["role"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(
        roles.iter().filter(|r| *r == "leader").count(),
        1,
        "{roles:?}"
    );
    let leader_id = get(&c.rest[l], "/v1/status").json()["id"].clone();
    for (i, rest) in c.rest.iter().enumerate() {
        let key = format!("/v1/kv/from-{i}");
        let a = put(rest, &key, rest.as_bytes());
        assert_eq!(a.status, 200, "put via node {i}: {}", a.text());
        let me = get(rest, "/v1/status").json()["id"].clone();
        assert_eq!(
            a.header("x-node-id").as_deref(),
            me.as_str(),
            "X-Node-Id is the node asked"
        );
        assert_eq!(a.header("x-leader-id").as_deref(), leader_id.as_str());
        // A linearizable read on any node sees the write just acknowledged.
        for r in &c.rest {
            assert_eq!(get(r, &key).body, rest.as_bytes(), "read of {key} on {r}");
        }
    }
    let f = (l + 1) % 3;
    let r = put(&c.rest[f], "/v1/kv/redirected?redirect=true", b"x");
    assert_eq!(r.status, 307);
    let want = format!("http://{}/v1/kv/redirected?redirect=true", c.rest[l]);
    assert_eq!(r.header("location"), Some(want));
    assert_eq!(
        get(&c.rest[l], "/v1/kv/redirected").status,
        404,
        "a redirect applies nothing"
    );
    let g = get(&c.rest[f], "/v1/kv/from-0?redirect=true");
    assert_eq!(g.status, 307);
    let stale = get(&c.rest[f], "/v1/kv/from-0?redirect=true&consistency=stale");
    assert_eq!(stale.status, 200, "stale reads are served where they land");
}

/// Acknowledged writes of a background writer: (key, value).
type Acked = Arc<Mutex<Vec<(String, String)>>>;

/// Write `w0, w1, ...` one after another through the endpoints in `targets`, retrying each
/// write with the same Idempotency-Key until acknowledged or `stop` is set.
fn writer(targets: Arc<Mutex<Vec<String>>>, acked: Acked, stop: Arc<AtomicBool>) {
    let mut turn = 0usize;
    for i in 0.. {
        let (key, value) = (format!("w{i:06}"), format!("value-{i}"));
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let target = {
                let t = targets.lock().expect("targets");
                turn += 1;
                t[turn % t.len()].clone()
            };
            let h = format!("Idempotency-Key: {key}\r\n");
            let a = request(
                &target,
                "PUT",
                &format!("/v1/kv/{key}"),
                &h,
                value.as_bytes(),
            );
            if a.status == 200 {
                acked.lock().expect("acked").push((key, value));
                break;
            }
        }
    }
}

#[test]
fn killing_the_leader_under_writes_loses_no_acknowledged_write() {
    let mut c = Cluster::start(3);
    let l = c.wait_leader(ELECTION_WAIT);
    let targets = Arc::new(Mutex::new(c.rest.clone()));
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let (t, a, s) = (targets.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || writer(t, a, s))
    };
    let enough = poll(ELECTION_WAIT, || {
        (acked.lock().ok()?.len() >= 50).then_some(())
    });
    assert!(enough.is_some(), "the writer made no progress");

    let survivors: Vec<String> = (0..3)
        .filter(|i| *i != l)
        .map(|i| c.rest[i].clone())
        .collect();
    *targets.lock().expect("targets") = survivors.clone();
    c.kill9(l);
    let killed_at = Instant::now();
    let served = poll(Duration::from_secs(10), || {
        survivors
            .iter()
            .any(|s| put(s, "/v1/kv/after-kill", b"new leader").status == 200)
            .then(Instant::now)
    });
    let took = served.expect("no new leader served a write within 10 s") - killed_at;
    assert!(
        took <= Duration::from_secs(3),
        "a new leader served only after {took:?}"
    );

    let before = acked.lock().expect("acked").len();
    let more = poll(ELECTION_WAIT, || {
        (acked.lock().ok()?.len() >= before + 20).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let _ = w.join();
    assert!(
        more.is_some(),
        "the writer made no progress after the failover"
    );

    let new_leader = c.wait_leader(ELECTION_WAIT);
    assert_ne!(new_leader, l);
    let acked = acked.lock().expect("acked").clone();
    for (key, value) in &acked {
        let a = get(&c.rest[new_leader], &format!("/v1/kv/{key}"));
        assert_eq!(
            (a.status, a.text()),
            (200, value.clone()),
            "acknowledged {key} lost"
        );
    }
    eprintln!(
        "{} acknowledged writes kept; new leader served after {took:?}",
        acked.len()
    );
}

#[test]
fn restarting_all_three_keeps_every_acknowledged_write() {
    let mut c = Cluster::start(3);
    let l = c.wait_leader(ELECTION_WAIT);
    let mut acked = Vec::new();
    for i in 0..100 {
        let (key, value) = (format!("/v1/kv/r{i:03}"), format!("v{i}"));
        let a = put(&c.rest[(l + i) % 3], &key, value.as_bytes());
        assert_eq!(a.status, 200, "{}", a.text());
        acked.push((key, value));
    }
    for i in 0..3 {
        c.kill9(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    let l = c.wait_leader(ELECTION_WAIT);
    for (key, value) in &acked {
        let a = get(&c.rest[l], key);
        assert_eq!(
            (a.status, a.text()),
            (200, value.clone()),
            "{key} lost in the restart"
        );
    }
    // And the cluster still takes writes, at later revisions.
    let a = put(&c.rest[l], "/v1/kv/after-restart", b"x");
    assert_eq!(a.status, 200);
}

#[test]
fn sigterm_stops_a_node_gracefully_with_exit_code_0() {
    let mut c = Cluster::start(3);
    let l = c.wait_leader(ELECTION_WAIT);
    assert_eq!(put(&c.rest[l], "/v1/kv/k", b"v").status, 200);
    let f = (l + 1) % 3;
    assert_eq!(c.terminate(f, Duration::from_secs(10)), Some(0));
    assert_eq!(c.terminate(l, Duration::from_secs(10)), Some(0));
}
