//! Real-process test support: a cluster of `rocinante serve` children on 127.0.0.1 ports
//! chosen free at run time, in a temporary directory; a minimal blocking HTTP/1.1 client over
//! raw TCP (so tests can also send malformed bytes); bounded polling instead of sleeps.
//!
//! Every child is killed (SIGKILL) and reaped when its `Cluster` drops, and the directory is
//! removed; a failing test leaves the nodes' logs in place and prints where they are.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Ports that were free a moment ago (bound to port 0, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// Write `dir/spec.yaml` for one node per (gRPC, REST) pair in `ports`, with `extra` cluster
/// keys (each line indented four spaces, e.g. "    snapshot_threshold: 300\n"). Returns the
/// spec's path and each node's REST "127.0.0.1:port".
pub fn write_spec(dir: &Path, name: &str, extra: &str, ports: &[u16]) -> (PathBuf, Vec<String>) {
    let mut yaml = format!("artifact:\n  cluster:\n    name: {name}\n{extra}    controllers:\n");
    for pair in ports.chunks_exact(2) {
        yaml.push_str(&format!(
            "      - {{ address: 127.0.0.1, port: {}, rest: {} }}\n",
            pair[0], pair[1]
        ));
    }
    let spec = dir.join("spec.yaml");
    std::fs::write(&spec, yaml).expect("write spec");
    let rest = ports
        .chunks_exact(2)
        .map(|pair| format!("127.0.0.1:{}", pair[1]))
        .collect();
    (spec, rest)
}

static DIR_COUNTER: AtomicU64 = AtomicU64::new(0);

pub struct Cluster {
    pub dir: PathBuf,
    pub spec: PathBuf,
    /// REST "127.0.0.1:port" per node, 0-based.
    pub rest: Vec<String>,
    children: Vec<Option<Child>>,
}

impl Cluster {
    /// Write a spec for `n` nodes and start them all.
    pub fn start(n: usize) -> Cluster {
        let ports = free_ports(2 * n);
        let dir = std::env::temp_dir().join(format!(
            "rocinante-test-{}-{}",
            std::process::id(),
            DIR_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        let (spec, rest) = write_spec(&dir, "test", "", &ports);
        let mut cluster = Cluster {
            dir,
            spec,
            rest,
            children: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster
    }

    /// Start node `i` (0-based) with its own data dir and log file.
    pub fn spawn(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "node {i} already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("n{}.log", i + 1)))
            .expect("open log");
        let child = Command::new(env!("CARGO_BIN_EXE_rocinante"))
            .arg("serve")
            .arg("--spec")
            .arg(&self.spec)
            .arg("--node")
            .arg((i + 1).to_string())
            .arg("--data-dir")
            .arg(self.dir.join(format!("n{}", i + 1)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn rocinante");
        self.children[i] = Some(child);
    }

    /// SIGKILL node `i`: a crash, no graceful anything.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM node `i` and wait (bounded) for its exit code.
    pub fn terminate(&mut self, i: usize, within: Duration) -> Option<i32> {
        let mut c = self.children[i].take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    /// The index of the node every running node agrees leads, within `within`.
    pub fn wait_leader(&self, within: Duration) -> usize {
        let found = poll(within, || {
            let views: Vec<serde_json::Value> = self
                .running()
                .into_iter()
                .map(|i| get(&self.rest[i], "/v1/status").json())
                .collect();
            let leader_rest = views[0]["leader"]["rest"].as_str()?;
            let agreed = views.iter().all(|v| v["leader"]["rest"] == leader_rest);
            let l = self.rest.iter().position(|r| r == leader_rest)?;
            let leads = get(&self.rest[l], "/v1/status").json()["role"] == "leader";
            (agreed && leads).then_some(l)
        });
        match found {
            Some(l) => l,
            None => panic!(
                "no agreed leader within {within:?}; logs in {}",
                self.dir.display()
            ),
        }
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.rest.len())
            .filter(|i| self.is_running(*i))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill9(i);
        }
        if std::thread::panicking() {
            eprintln!("node logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Call `f` until it returns `Some`, or `within` passes.
pub fn poll<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// One HTTP answer. `status` 0: no answer (connection refused, reset or closed early).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn error_code(&self) -> Option<String> {
        self.json()["error"].as_str().map(str::to_string)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send raw bytes, read the answer until the server closes (bounded by `timeout`).
pub fn raw(addr: &str, request: &[u8], timeout: Duration) -> Answer {
    let none = || Answer {
        status: 0,
        head: String::new(),
        body: Vec::new(),
    };
    let Ok(mut s) = TcpStream::connect_timeout(&addr.parse().expect("addr"), timeout) else {
        return none();
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let Some(split) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
        return none();
    };
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head,
        body: out[split + 4..].to_vec(),
    }
}

/// A well-formed request with `Connection: close`; `headers` are extra "Name: value\r\n" lines.
pub fn request(addr: &str, method: &str, target: &str, headers: &str, body: &[u8]) -> Answer {
    let mut r = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    raw(addr, &r, Duration::from_secs(10))
}

pub fn get(addr: &str, target: &str) -> Answer {
    request(addr, "GET", target, "", b"")
}

pub fn put(addr: &str, target: &str, body: &[u8]) -> Answer {
    request(addr, "PUT", target, "", body)
}
