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

/// The test's cluster: where the nodes listen, where their files are.
struct Setup {
    dir: std::path::PathBuf,
    /// (gRPC port, REST port) per node.
    nodes: Vec<(u16, u16)>,
    rest: Vec<String>,
}

impl Setup {
    fn fail(&self, what: &str) -> ! {
        panic!("{what}; logs in {}", self.dir.display())
    }

    fn endpoints(&self, among: &[usize]) -> String {
        among
            .iter()
            .map(|&i| self.rest[i].clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Loads the founders past several snapshots, so a newcomer can only catch up through one.
    fn preload(&self) {
        let leader = poll(WAIT, || {
            status(&self.rest[0])["leader"]["rest"].as_str().map(|_| ())
        });
        if leader.is_none() {
            self.fail("no leader among the founders");
        }
        for k in 0..PRELOAD_KEYS {
            let key = format!("/v1/kv/pre{k:05}");
            let ok = poll(WAIT, || {
                (put(&self.rest[k % 3], &key, key.as_bytes()).status == 200).then_some(())
            });
            if ok.is_none() {
                self.fail(&format!("preload write {key} failed"));
            }
        }
        let snapped = poll(WAIT, || {
            (status(&self.rest[0])["snapshot_index"].as_u64()? > 0).then_some(())
        });
        if snapped.is_none() {
            self.fail("the founders never took a snapshot");
        }
    }

    /// `rocinante members add` for node 4 (it is running with `--join`): it must end a voter
    /// that caught up through a snapshot.
    fn add_joiner(&self) {
        let up = poll(WAIT, || {
            (status(&self.rest[3])["role"].as_str()? == "learner").then_some(())
        });
        if up.is_none() {
            self.fail("the joiner did not come up as a learner");
        }
        let joiner = format!("127.0.0.1:{}", self.nodes[3].0);
        let rest_port = self.nodes[3].1.to_string();
        let endpoints = self.endpoints(&[0, 1, 2]);
        let args = [
            "members",
            "add",
            &joiner,
            "--rest",
            &rest_port,
            "--endpoints",
            &endpoints,
        ];
        let (code, out) = cli(&args);
        if code != 0 {
            self.fail(&format!("members add exited {code}: {out}"));
        }
        let s4 = status(&self.rest[3]);
        if s4["snapshot_index"].as_u64().unwrap_or(0) == 0 || s4["role"] == "learner" {
            self.fail(&format!(
                "the joiner is not a voter caught up through a snapshot: {s4}"
            ));
        }
    }

    /// `rocinante members remove` a founder that does not lead; returns its index. Removing
    /// it again is refused (unknown member, exit 1).
    fn remove_a_founder(&self) -> usize {
        let leader = status(&self.rest[3])["leader"]["rest"]
            .as_str()
            .map(String::from);
        let victim = (0..3)
            .find(|&i| Some(&self.rest[i]) != leader.as_ref())
            .unwrap_or(0);
        let Some(id) = status(&self.rest[victim])["id"].as_str().map(String::from) else {
            self.fail("the victim has no id");
        };
        let alive: Vec<usize> = (0..4).filter(|&i| i != victim).collect();
        let endpoints = self.endpoints(&alive);
        let (code, out) = cli(&["members", "remove", &id, "--endpoints", &endpoints]);
        if code != 0 {
            self.fail(&format!("members remove exited {code}: {out}"));
        }
        let (code, out) = cli(&["members", "remove", &id, "--endpoints", &endpoints]);
        if code != 1 {
            self.fail(&format!("removing an unknown member exited {code}: {out}"));
        }
        victim
    }

    /// `rocinante leader transfer` to node 4.
    fn transfer_to_joiner(&self, alive: &[usize]) {
        let id4 = status(&self.rest[3])["id"]
            .as_str()
            .map(String::from)
            .unwrap_or_default();
        let endpoints = self.endpoints(alive);
        let (code, out) = cli(&["leader", "transfer", &id4, "--endpoints", &endpoints]);
        if code != 0 {
            self.fail(&format!("leader transfer exited {code}: {out}"));
        }
        if status(&self.rest[3])["role"] != "leader" {
            self.fail("the newcomer does not lead after the transfer");
        }
    }
}

/// A writer over `targets` until `stop`; returns the acknowledged keys.
fn writer(targets: Vec<String>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let (mut acked, mut k) = (Vec::new(), 0usize);
        while !stop.load(Ordering::Relaxed) {
            let key = format!("/v1/kv/live{k:06}");
            if put(&targets[k % targets.len()], &key, key.as_bytes()).status == 200 {
                acked.push(key);
            }
            k += 1;
        }
        acked
    })
}

#[test]
fn fourth_node_joins_through_a_snapshot_is_promoted_and_a_founder_leaves() {
    let dir = std::env::temp_dir().join(format!("rocinante-members-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    let p = free_ports(8);
    let nodes: Vec<(u16, u16)> = (0..4).map(|i| (p[2 * i], p[2 * i + 1])).collect();
    let rest = nodes.iter().map(|n| format!("127.0.0.1:{}", n.1)).collect();
    let (spec3, spec4) = (dir.join("spec3.yaml"), dir.join("spec4.yaml"));
    std::fs::write(&spec3, spec(&nodes[..3])).expect("spec3");
    std::fs::write(&spec4, spec(&nodes)).expect("spec4");
    let t = Setup { dir, nodes, rest };
    let mut procs: Vec<Proc> = (1..=3).map(|n| serve(&t.dir, &spec3, n, false)).collect();
    t.preload();

    // A writer runs through everything below; it keeps what was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(t.rest[1..].to_vec(), stop.clone());
    procs.push(serve(&t.dir, &spec4, 4, true));
    t.add_joiner();
    let victim = t.remove_a_founder();
    procs[victim] = Proc(None);
    let alive: Vec<usize> = (0..4).filter(|&i| i != victim).collect();
    t.transfer_to_joiner(&alive);
    stop.store(true, Ordering::Relaxed);
    let acked = writing.join().expect("writer thread");
    if acked.len() < 10 {
        t.fail(&format!(
            "only {} writes acknowledged while membership changed",
            acked.len()
        ));
    }
    // Nothing acknowledged is lost: every key reads back through the new leader.
    let keys = (0..PRELOAD_KEYS)
        .map(|k| format!("/v1/kv/pre{k:05}"))
        .chain(acked);
    for key in keys {
        let a = get(&t.rest[3], &key);
        if a.status != 200 || a.body != key.as_bytes() {
            t.fail(&format!("{key} lost: {} {}", a.status, a.text()));
        }
    }
    drop(procs);
    let _ = std::fs::remove_dir_all(&t.dir);
}
