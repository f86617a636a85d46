//! Membership with real processes (issue 5): a 4th node joins a loaded 3-node cluster with
//! `serve --join`, is added with `rocinante members add`, catches up through a snapshot
//! (InstallSnapshot over gRPC), is promoted; one of the original three is removed with
//! `rocinante members remove`; leadership moves with `rocinante leader transfer`; a writer
//! keeps writing throughout and no acknowledged write is lost.
//!
//! Waiting is bounded polling on the nodes' `/v1/status` (support::poll), never a bare sleep.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::{free_ports, get, poll, put};

const WAIT: Duration = Duration::from_secs(60);
/// Keys written before the join: several snapshots' worth.
const PRELOAD_KEYS: usize = 1500;

struct Proc(Option<Child>);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spec(controllers: &[(u16, u16)]) -> String {
    let mut yaml = String::from(
        "artifact:\n  cluster:\n    name: members\n    snapshot_threshold: 300\n    controllers:\n",
    );
    for (grpc, rest) in controllers {
        yaml.push_str(&format!(
            "      - {{ address: 127.0.0.1, port: {grpc}, rest: {rest} }}\n"
        ));
    }
    yaml
}

fn serve(dir: &Path, spec: &Path, node: usize, join: bool) -> Proc {
    let log = std::fs::File::create(dir.join(format!("n{node}.log"))).expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rocinante"));
    cmd.arg("serve")
        .arg("--spec")
        .arg(spec)
        .arg("--node")
        .arg(node.to_string())
        .arg("--data-dir")
        .arg(dir.join(format!("n{node}")));
    if join {
        cmd.arg("--join");
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn rocinante");
    Proc(Some(child))
}

/// Runs a CLI command; returns (exit code, stdout + stderr).
fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rocinante"))
        .args(args)
        .output()
        .expect("run rocinante");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn status(rest: &str) -> serde_json::Value {
    get(rest, "/v1/status").json()
}

#[test]
fn fourth_node_joins_through_a_snapshot_is_promoted_and_a_founder_leaves() {
    let dir = std::env::temp_dir().join(format!("rocinante-members-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    let p = free_ports(8);
    let nodes: Vec<(u16, u16)> = (0..4).map(|i| (p[2 * i], p[2 * i + 1])).collect();
    let rest: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.1)).collect();
    let (spec3, spec4) = (dir.join("spec3.yaml"), dir.join("spec4.yaml"));
    std::fs::write(&spec3, spec(&nodes[..3])).expect("spec3");
    std::fs::write(&spec4, spec(&nodes)).expect("spec4");
    let mut procs: Vec<Proc> = (1..=3).map(|n| serve(&dir, &spec3, n, false)).collect();
    let fail = |what: &str| -> ! { panic!("{what}; logs in {}", dir.display()) };

    // Load the founders: several snapshots, so a newcomer can only catch up through one.
    let leader_known = poll(WAIT, || {
        status(&rest[0])["leader"]["rest"]
            .as_str()
            .map(String::from)
    });
    if leader_known.is_none() {
        fail("no leader among the founders");
    }
    for k in 0..PRELOAD_KEYS {
        let key = format!("/v1/kv/pre{k:05}");
        let ok = poll(WAIT, || {
            (put(&rest[k % 3], &key, key.as_bytes()).status == 200).then_some(())
        });
        if ok.is_none() {
            fail(&format!("preload write {key} failed"));
        }
    }
    let snapped = poll(WAIT, || {
        (status(&rest[0])["snapshot_index"].as_u64()? > 0).then_some(())
    });
    if snapped.is_none() {
        fail("the founders never took a snapshot");
    }

    // A writer runs through everything below; it keeps what was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let targets: Vec<String> = rest[1..].to_vec();
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("/v1/kv/live{k:06}");
                if put(&targets[k % targets.len()], &key, key.as_bytes()).status == 200 {
                    acked.push(key);
                }
                k += 1;
            }
            acked
        })
    };

    // The joiner starts empty as a learner-to-be, then is added as a voter.
    procs.push(serve(&dir, &spec4, 4, true));
    let up = poll(WAIT, || {
        status(&rest[3])["role"]
            .as_str()
            .map(|r| r == "learner")
            .filter(|l| *l)
    });
    if up.is_none() {
        fail("the joiner did not come up as a learner");
    }
    let endpoints = rest[..3].join(",");
    let joiner = format!("127.0.0.1:{}", nodes[3].0);
    let rest_port = nodes[3].1.to_string();
    let (code, out) = cli(&[
        "members",
        "add",
        &joiner,
        "--rest",
        &rest_port,
        "--endpoints",
        &endpoints,
    ]);
    if code != 0 {
        fail(&format!("members add exited {code}: {out}"));
    }
    let s4 = status(&rest[3]);
    if s4["snapshot_index"].as_u64().unwrap_or(0) == 0 || s4["role"] == "learner" {
        fail(&format!(
            "the joiner is not a voter caught up through a snapshot: {s4}"
        ));
    }

    // A founder that is not the leader leaves; then node 1 is gone from the cluster.
    let leader_rest = status(&rest[3])["leader"]["rest"]
        .as_str()
        .map(String::from);
    let victim = (0..3)
        .find(|&i| Some(&rest[i]) != leader_rest.as_ref())
        .unwrap_or(0);
    let victim_id = status(&rest[victim])["id"].as_str().map(String::from);
    let Some(victim_id) = victim_id else {
        fail("victim has no id");
    };
    let alive: Vec<usize> = (0..4).filter(|&i| i != victim).collect();
    let endpoints: String = alive
        .iter()
        .map(|&i| rest[i].clone())
        .collect::<Vec<_>>()
        .join(",");
    let (code, out) = cli(&["members", "remove", &victim_id, "--endpoints", &endpoints]);
    if code != 0 {
        fail(&format!("members remove exited {code}: {out}"));
    }
    procs[victim] = Proc(None);
    let (code, out) = cli(&["members", "remove", &victim_id, "--endpoints", &endpoints]);
    if code != 1 {
        fail(&format!("removing an unknown member exited {code}: {out}"));
    }

    // Leadership moves to the newcomer.
    let id4 = status(&rest[3])["id"]
        .as_str()
        .map(String::from)
        .unwrap_or_default();
    let (code, out) = cli(&["leader", "transfer", &id4, "--endpoints", &endpoints]);
    if code != 0 {
        fail(&format!("leader transfer exited {code}: {out}"));
    }
    if status(&rest[3])["role"] != "leader" {
        fail("the newcomer does not lead after the transfer");
    }

    stop.store(true, Ordering::Relaxed);
    let acked = writer.join().expect("writer thread");
    if acked.len() < 10 {
        fail(&format!(
            "only {} writes acknowledged while membership changed",
            acked.len()
        ));
    }
    // Nothing acknowledged is lost: every key reads back through the new leader.
    let keys = (0..PRELOAD_KEYS)
        .map(|k| format!("/v1/kv/pre{k:05}"))
        .chain(acked);
    for key in keys {
        let a = get(&rest[3], &key);
        if a.status != 200 || a.body != key.as_bytes() {
            fail(&format!("{key} lost: {} {}", a.status, a.text()));
        }
    }
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
}
