//! The cluster spec: loading the seed's YAML format (API.md §1), validating it, and the
//! identities derived from it (node ids, the cluster id).
//!
//! Invariants of a `ClusterSpec` that `parse` returned: at least one controller; every
//! `address:port` and `address:rest` endpoint distinct; every port in 1..=65535; every node id
//! distinct and non-zero; every tunable inside its documented range, with
//! `heartbeat_ms < election_timeout_ms.min < election_timeout_ms.max` (a leader must be heard
//! from well within the shortest election timeout, §5.2) and one `max_value_bytes` entry
//! fitting in a WAL segment. Errors name the line of the offending text. serde_yaml is used in
//! this module only (`raw.rs` holds the YAML shape).
//!
//! Identity: a controller's id is FNV-1a 64 of the string `ADDRESS:PORT`, exactly as written
//! in the spec, so the same spec gives the same ids on every machine and every version. The
//! cluster id hashes the cluster name and the sorted member endpoints; nodes put it on every
//! message and drop messages from another cluster.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::raft::NodeId;

mod raw;
use raw::{RawController, RawRoot};

/// Election timeout range, drawn uniformly in [min, max) at each reset (§5.2). The core counts
/// in ticks; the runtime converts.
pub const ELECTION_TIMEOUT_MS_MIN_DEFAULT: u64 = 1_000;
pub const ELECTION_TIMEOUT_MS_MAX_DEFAULT: u64 = 2_000;
/// How often a leader heartbeats each follower (§5.2); about a tenth of the election timeout.
pub const HEARTBEAT_MS_DEFAULT: u64 = 100;
/// Applied entries after which a node snapshots its state machine and compacts its log (§7).
/// etcd's default too. A snapshot is serialized in the loop (about 37 ms per 250k keys here), so
/// a small threshold under a heavy write load shows in the tail latency: 10,000 made p99 of
/// 64-connection writes 44 ms against 3.6 ms without snapshots.
pub const SNAPSHOT_THRESHOLD_ENTRIES_DEFAULT: u64 = 100_000;
/// WAL segment size before rolling to a new file.
pub const WAL_SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Largest value a client may write (`413 value_too_large` above it).
pub const MAX_VALUE_BYTES_DEFAULT: u64 = 1024 * 1024;
/// How long a write waits for its commit before `504 timeout` (outcome unknown).
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// How long an Idempotency-Key answer is remembered, in leader time (API.md §3).
pub const IDEMPOTENCY_WINDOW_S_DEFAULT: u64 = crate::kv::store::IDEMPOTENCY_WINDOW_S_DEFAULT;
/// Default flow-record TTLs per protocol (API.md §4).
pub const FLOW_TTL_S_TCP_DEFAULT: u64 = 432_000;
pub const FLOW_TTL_S_UDP_DEFAULT: u64 = 30;

/// A validated cluster spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSpec {
    /// `artifact.cluster.name`.
    pub name: String,
    /// `artifact.cleanupOnFailure`: remove a half-initialised data dir after a failed first
    /// start. Default false.
    pub cleanup_on_failure: bool,
    /// In spec order; `serve --node N` is 1-based into this list.
    pub controllers: Vec<Controller>,
    /// `artifact.cluster.data_dir`: the parent of every node's data dir (`<data_dir>/<id>`).
    /// `None`: `./data`. A controller's own `data_dir` and `--data-dir` take precedence.
    pub data_dir: Option<PathBuf>,
    pub election_timeout_ms: ElectionTimeoutMs,
    pub heartbeat_ms: u64,
    /// In log entries.
    pub snapshot_threshold: u64,
    pub wal_segment_bytes: u64,
    pub max_value_bytes: u64,
    pub request_timeout_ms: u64,
    /// Part of the replicated semantics (which retries replay): set cluster-wide only.
    pub idempotency_window_s: u64,
    pub flow_ttl_s: FlowTtlS,
    pub fsync: Fsync,
}

/// One member as the spec lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Controller {
    /// Node-to-node gRPC address (an IP or a host name), as written.
    pub address: String,
    /// Node-to-node gRPC port.
    pub port: u16,
    /// Client REST port, on the same address.
    pub rest: u16,
    /// Optional extra Prometheus listener, e.g. ":2112" (REST `/metrics` is always served).
    pub metric: Option<String>,
    /// Optional directory overriding the built-in dashboard assets.
    pub wwwroot: Option<PathBuf>,
    /// Optional: this node's own data dir, exactly (no `<id>` appended).
    pub data_dir: Option<PathBuf>,
}

/// `election_timeout_ms: [MIN, MAX]` in the spec: a two-element list, milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElectionTimeoutMs {
    pub min: u64,
    pub max: u64,
}

/// `flow_ttl_s: {tcp: S, udp: S}`; either may be omitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTtlS {
    pub tcp: u64,
    pub udp: u64,
}

/// `fsync: always` (default: an acknowledged write is on disk) or `never` (benchmarks only:
/// acknowledged writes can be lost on a power failure; the server says so loudly at start).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    Always,
    Never,
}

/// Identifies a cluster: FNV-1a 64 of its name and sorted member endpoints. Shown as 16 hex
/// digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClusterId(pub u64);

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Why a spec was refused. The CLI turns every variant into exit code 2, before anything is
/// written to disk.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read spec {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Bad YAML, a wrong or unknown field, or a rule above broken. `line` is 1-based.
    #[error("{}{}{message}", origin_prefix(.path), line_prefix(.line))]
    Invalid {
        path: Option<PathBuf>,
        line: Option<usize>,
        message: String,
    },
}

fn origin_prefix(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

fn line_prefix(line: &Option<usize>) -> String {
    line.map(|l| format!("line {l}: ")).unwrap_or_default()
}

impl SpecError {
    /// The 1-based line the error points at, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            SpecError::Invalid { line, .. } => *line,
            SpecError::Io { .. } => None,
        }
    }

    /// Exit code for the CLI (API.md §2: 2 = bad usage or bad spec).
    pub fn exit_code(&self) -> i32 {
        2
    }

    fn at(line: Option<usize>, message: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            path: None,
            line,
            message: message.into(),
        }
    }
}

/// FNV-1a, 64 bit: offset basis 0xcbf29ce484222325, prime 0x100000001b3; for each byte, xor
/// then multiply. Its output is part of the external contract (node ids), so it never changes.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

impl Controller {
    /// FNV-1a 64 of `ADDRESS:PORT` (API.md §1).
    pub fn id(&self) -> NodeId {
        NodeId(fnv1a_64(self.endpoint().as_bytes()))
    }

    /// `ADDRESS:PORT` exactly as the id is computed from.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }

    /// The gRPC address to bind or dial (IPv6 literals bracketed).
    pub fn peer_addr(&self) -> String {
        socket_addr(&self.address, self.port)
    }

    /// The REST "host:port" (IPv6 literals bracketed), as shown in `/v1/status`.
    pub fn rest_addr(&self) -> String {
        socket_addr(&self.address, self.rest)
    }
}

fn socket_addr(address: &str, port: u16) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

impl ClusterSpec {
    /// Read and validate a spec file. Reads only; nothing is written.
    pub fn load(path: impl AsRef<Path>) -> Result<ClusterSpec, SpecError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        ClusterSpec::parse(&text).map_err(|err| match err {
            SpecError::Invalid { line, message, .. } => SpecError::Invalid {
                path: Some(path.to_path_buf()),
                line,
                message,
            },
            other => other,
        })
    }

    /// Parse and validate spec text.
    pub fn parse(text: &str) -> Result<ClusterSpec, SpecError> {
        let raw: RawRoot = serde_yaml::from_str(text).map_err(yaml_error)?;
        let artifact = raw.artifact;
        let c = artifact.cluster;
        let (min, max) = c.election_timeout_ms.map_or(
            (
                ELECTION_TIMEOUT_MS_MIN_DEFAULT,
                ELECTION_TIMEOUT_MS_MAX_DEFAULT,
            ),
            |r| (r.min, r.max),
        );
        let flow = c.flow_ttl_s.unwrap_or_default();
        let spec = ClusterSpec {
            name: c.name.0,
            cleanup_on_failure: artifact.cleanup_on_failure.unwrap_or(false),
            controllers: c
                .controllers
                .0
                .into_iter()
                .map(RawController::into_controller)
                .collect(),
            data_dir: c.data_dir,
            election_timeout_ms: ElectionTimeoutMs { min, max },
            heartbeat_ms: c.heartbeat_ms.map_or(HEARTBEAT_MS_DEFAULT, |v| v.0),
            snapshot_threshold: c
                .snapshot_threshold
                .map_or(SNAPSHOT_THRESHOLD_ENTRIES_DEFAULT, |v| v.0),
            wal_segment_bytes: c
                .wal_segment_bytes
                .map_or(WAL_SEGMENT_BYTES_DEFAULT, |v| v.0),
            max_value_bytes: c.max_value_bytes.map_or(MAX_VALUE_BYTES_DEFAULT, |v| v.0),
            request_timeout_ms: c
                .request_timeout_ms
                .map_or(REQUEST_TIMEOUT_MS_DEFAULT, |v| v.0),
            idempotency_window_s: c
                .idempotency_window_s
                .map_or(IDEMPOTENCY_WINDOW_S_DEFAULT, |v| v.0),
            flow_ttl_s: FlowTtlS {
                tcp: flow.tcp.map_or(FLOW_TTL_S_TCP_DEFAULT, |v| v.0),
                udp: flow.udp.map_or(FLOW_TTL_S_UDP_DEFAULT, |v| v.0),
            },
            fsync: c.fsync.unwrap_or(Fsync::Always),
        };
        spec.check_timing(text)?;
        Ok(spec)
    }

    /// Rules across fields, which the per-field parsing cannot see.
    fn check_timing(&self, text: &str) -> Result<(), SpecError> {
        // min < max is checked where the pair is parsed.
        let min = self.election_timeout_ms.min;
        if self.heartbeat_ms >= min {
            let line =
                key_line(text, "heartbeat_ms").or_else(|| key_line(text, "election_timeout_ms"));
            return Err(SpecError::at(
                line,
                format!(
                    "heartbeat_ms {} must be below the election timeout minimum {min}",
                    self.heartbeat_ms
                ),
            ));
        }
        if self.wal_segment_bytes <= self.max_value_bytes {
            let line =
                key_line(text, "wal_segment_bytes").or_else(|| key_line(text, "max_value_bytes"));
            return Err(SpecError::at(
                line,
                format!(
                    "wal_segment_bytes {} must exceed max_value_bytes {} (one entry must fit a segment)",
                    self.wal_segment_bytes, self.max_value_bytes
                ),
            ));
        }
        Ok(())
    }

    /// FNV-1a 64 over `name`, then each member endpoint in sorted order, each followed by a
    /// newline (the separator keeps `a`+`bc` apart from `ab`+`c`).
    pub fn cluster_id(&self) -> ClusterId {
        let mut endpoints: Vec<String> =
            self.controllers.iter().map(Controller::endpoint).collect();
        endpoints.sort();
        let mut text = format!("{}\n", self.name);
        for e in endpoints {
            text.push_str(&e);
            text.push('\n');
        }
        ClusterId(fnv1a_64(text.as_bytes()))
    }

    /// The controller `n`, 1-based as in `serve --node N`.
    pub fn controller(&self, n: usize) -> Option<&Controller> {
        n.checked_sub(1).and_then(|i| self.controllers.get(i))
    }

    /// The controller with this id.
    pub fn by_id(&self, id: NodeId) -> Option<&Controller> {
        self.controllers.iter().find(|c| c.id() == id)
    }

    /// A node's data dir when `--data-dir` is not given: the controller's own `data_dir`, else
    /// `<cluster data_dir or ./data>/<id>`.
    pub fn node_data_dir(&self, controller: &Controller) -> PathBuf {
        if let Some(dir) = &controller.data_dir {
            return dir.clone();
        }
        let parent = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("data"));
        parent.join(controller.id().to_string())
    }

    /// The state machine's config: the idempotency window comes from the spec.
    pub fn store_config(&self) -> crate::kv::StoreConfig {
        crate::kv::StoreConfig::with_window_s(self.idempotency_window_s)
    }
}

/// A serde_yaml error as a `SpecError`: its 1-based line, and its message without the
/// " at line L column C" suffix serde_yaml appends (the line is carried separately).
fn yaml_error(err: serde_yaml::Error) -> SpecError {
    let line = err.location().map(|l| l.line());
    let mut message = err.to_string();
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    // A document that is not a mapping at all: name what is expected, not our type.
    let message = message.replace("struct RawRoot", "a mapping with an `artifact` key");
    SpecError::at(line, message)
}

/// The 1-based line of the first `key:` in the text (for rules across fields, which serde
/// cannot locate). A plain scan: good enough to point a human at the right place.
fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim_start().trim_start_matches("- ").trim_start();
            t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}
