//! A cluster of the real `rocinante` binary for one run: the generated spec, one child
//! process per node (inside its network namespace when there is one), and the process-level
//! faults: kill -9, SIGSTOP/SIGCONT, restart, and tearing the tail of a stopped node's WAL.
//!
//! Invariants: every node this struct started is killed (SIGCONT first if paused, then
//! SIGKILL) and reaped on drop, panics included; the network (`Net`) is dropped after the
//! processes. Node logs go to `<run dir>/n<i>.log`, appended across restarts.

use crate::http::{self, Answer, Fate, Timeouts};
use crate::net::Net;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Node-to-node gRPC port and REST port: every node has its own address, so they can share.
const GRPC_PORT: u16 = 35001;
const REST_PORT: u16 = 8001;
/// In the run dir: the pid of every node process started, one per line.
const PIDS_FILE: &str = "pids";

/// The timing in the generated spec. A 2-core machine running the whole test suite stalls
/// processes for tens of milliseconds, so the election timeout is well above that.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub election_timeout_ms: (u64, u64),
    pub heartbeat_ms: u64,
    pub request_timeout_ms: u64,
    /// Small, so snapshots (and restarts from them) happen during a run.
    pub snapshot_threshold: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            election_timeout_ms: (600, 1200),
            heartbeat_ms: 100,
            request_timeout_ms: 2000,
            snapshot_threshold: 500,
        }
    }
}

struct NodeProc {
    child: Option<Child>,
    paused: bool,
}

pub struct Cluster {
    // Field order matters for drop: processes are killed in `Drop::drop`, then `net` goes.
    nodes: Vec<NodeProc>,
    pub net: Net,
    pub dir: PathBuf,
    spec: PathBuf,
    /// Extra environment for every node (the unsafe test-build switches).
    env: Vec<(String, String)>,
}

/// The harness's timeouts for a client request: longer than the server's request timeout, so
/// the server's own `504` normally arrives first.
pub fn client_timeouts(timing: &Timing) -> Timeouts {
    Timeouts {
        connect: Duration::from_millis(500),
        answer: Duration::from_millis(timing.request_timeout_ms + 1500),
    }
}

impl Cluster {
    /// Write the spec and start every node.
    pub fn start(
        net: Net,
        nodes: usize,
        dir: &Path,
        timing: Timing,
        env: &[(String, String)],
    ) -> Cluster {
        std::fs::create_dir_all(dir).expect("create run dir");
        let mut yaml = format!(
            "artifact:\n  cleanupOnFailure: true\n  cluster:\n    name: jepsen\n    \
             election_timeout_ms: [{}, {}]\n    heartbeat_ms: {}\n    request_timeout_ms: {}\n    \
             snapshot_threshold: {}\n    controllers:\n",
            timing.election_timeout_ms.0,
            timing.election_timeout_ms.1,
            timing.heartbeat_ms,
            timing.request_timeout_ms,
            timing.snapshot_threshold
        );
        for i in 0..nodes {
            yaml.push_str(&format!(
                "      - {{ address: {}, port: {GRPC_PORT}, rest: {REST_PORT} }}\n",
                net.node_ip(i)
            ));
        }
        let spec = dir.join("spec.yaml");
        std::fs::write(&spec, yaml).expect("write spec");
        let mut cluster = Cluster {
            nodes: (0..nodes)
                .map(|_| NodeProc {
                    child: None,
                    paused: false,
                })
                .collect(),
            net,
            dir: dir.to_path_buf(),
            spec,
            env: env.to_vec(),
        };
        for i in 0..nodes {
            cluster.spawn(i);
        }
        cluster
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{i}"))
    }

    /// Node `i`'s id as the API shows it: FNV-1a 64 of "address:port", 16 hex digits.
    pub fn node_id(&self, i: usize) -> String {
        let endpoint = format!("{}:{GRPC_PORT}", self.net.node_ip(i));
        format!("{:016x}", rocinante::config::fnv1a_64(endpoint.as_bytes()))
    }

    pub fn rest_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.net.node_ip(i).into(), REST_PORT)
    }

    /// Start node `i` (it must not be running).
    pub fn spawn(&mut self, i: usize) {
        assert!(self.nodes[i].child.is_none(), "node {i} already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("n{i}.log")))
            .expect("open node log");
        let child = self
            .net
            .command(i, env!("CARGO_BIN_EXE_rocinante"))
            .arg("serve")
            .arg("--spec")
            .arg(&self.spec)
            .arg("--node")
            .arg((i + 1).to_string())
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn rocinante");
        // Remembered so a later run can kill nodes a killed test process left behind.
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(PIDS_FILE))
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, format!("{}\n", child.id()).as_bytes())
            });
        self.nodes[i] = NodeProc {
            child: Some(child),
            paused: false,
        };
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    pub fn is_paused(&self, i: usize) -> bool {
        self.nodes[i].paused
    }

    /// kill -9 node `i` and reap it.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.nodes[i].paused = false;
    }

    fn signal(&self, i: usize, sig: &str) {
        if let Some(child) = &self.nodes[i].child {
            let _ = std::process::Command::new("kill")
                .args([sig, &child.id().to_string()])
                .status();
        }
    }

    /// SIGSTOP node `i`: it keeps its sockets but answers nothing.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, "-STOP");
        self.nodes[i].paused = true;
    }

    pub fn resume(&mut self, i: usize) {
        self.signal(i, "-CONT");
        self.nodes[i].paused = false;
    }

    /// Node `i` must be dead. Tear the end of its newest WAL segment the way a crash in the
    /// middle of a write does: cut `cut` bytes off the end, or (`cut == 0`) append the first
    /// bytes of a frame whose header promises more payload than follows. Returns what was done.
    pub fn tear_wal(&self, i: usize, cut: u64) -> String {
        assert!(!self.is_running(i), "tear the WAL of a dead node only");
        let dir = self.data_dir(i);
        let segments = rocinante::storage::segment::list(&dir).unwrap_or_default();
        let Some((_, last)) = segments.last() else {
            return format!("node {i}: no WAL segment to tear");
        };
        let Ok(meta) = std::fs::metadata(last) else {
            return format!("node {i}: cannot stat {}", last.display());
        };
        let len = meta.len();
        let Ok(file) = std::fs::OpenOptions::new()
            .write(true)
            .append(cut == 0)
            .open(last)
        else {
            return format!("node {i}: cannot open {}", last.display());
        };
        if cut == 0 {
            // payload_len 100, a CRC, kind 1, then 20 of the 100 payload bytes.
            let mut partial = vec![100, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1];
            partial.extend_from_slice(&[0x55; 20]);
            let written = std::io::Write::write_all(&mut &file, &partial);
            return format!(
                "node {i}: appended a 29-byte partial frame to {} ({written:?})",
                last.display()
            );
        }
        let new_len = len.saturating_sub(cut);
        let done = file.set_len(new_len);
        format!(
            "node {i}: cut {} from {len} to {new_len} bytes ({done:?})",
            last.display()
        )
    }

    /// `GET /v1/status` of node `i`, when it answers.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let timeouts = Timeouts {
            connect: Duration::from_millis(300),
            answer: Duration::from_millis(1000),
        };
        match http::request(self.rest_addr(i), "GET", "/v1/status", &[], b"", timeouts) {
            Fate::Answered(a) if a.status == 200 => a.json(),
            _ => None,
        }
    }

    /// The node that says it leads with the highest term, among running, unpaused nodes.
    pub fn leader(&self) -> Option<usize> {
        (0..self.len())
            .filter(|&i| self.is_running(i) && !self.is_paused(i))
            .filter_map(|i| {
                let s = self.status(i)?;
                (s["role"] == "leader").then(|| (s["term"].as_u64().unwrap_or(0), i))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// Poll `leader()` for up to `within`.
    pub fn wait_leader(&self, within: Duration) -> Option<usize> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Time until a write through EVERY running, unpaused node has succeeded (followers
    /// forward to the leader), polling up to `within`; `None` if some node never served. A
    /// node that restarted must have recovered its WAL and found the leader for this. The probe
    /// key is outside every workload's key space.
    pub fn wait_serving(&self, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        let timeouts = Timeouts {
            connect: Duration::from_millis(300),
            answer: Duration::from_millis(1500),
        };
        let mut pending: Vec<usize> = (0..self.len())
            .filter(|&i| self.is_running(i) && !self.is_paused(i))
            .collect();
        while started.elapsed() < within {
            pending.retain(|&i| {
                let sent = http::request(
                    self.rest_addr(i),
                    "PUT",
                    "/v1/kv/jepsen-probe",
                    &[],
                    b"probe",
                    timeouts,
                );
                !matches!(sent, Fate::Answered(Answer { status: 200, .. }))
            });
            if pending.is_empty() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Nodes that exited by themselves (a crash or a refusal to start), with their status.
    /// The harness never lets a node exit except by `kill9`, which forgets the child first.
    pub fn exited(&mut self) -> Vec<(usize, String)> {
        let mut gone = Vec::new();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if let Some(child) = &mut node.child {
                if let Ok(Some(status)) = child.try_wait() {
                    gone.push((i, status.to_string()));
                    node.child = None;
                }
            }
        }
        gone
    }
}

/// Kill nodes listed in `dir`'s pid file that still run with `dir` on their command line:
/// leftovers of a test process that was itself killed (so its `Drop`s never ran).
pub fn kill_leftovers(dir: &Path) {
    let Ok(pids) = std::fs::read_to_string(dir.join(PIDS_FILE)) else {
        return;
    };
    let needle = dir.to_string_lossy().into_owned();
    for pid in pids
        .lines()
        .filter(|p| p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty())
    {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", pid])
                .status();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", pid])
                .status();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused {
                self.resume(i);
            }
            self.kill9(i);
        }
    }
}
