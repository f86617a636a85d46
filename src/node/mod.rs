//! The runtime: one event loop that owns the Raft core, the storage and the state machine,
//! and executes each `Ready` in the order `raft::node::Ready` documents (DESIGN.md §2).
//!
//! Shape. `start` opens storage, recovers, binds the gRPC listener, starts the per-peer
//! senders and the gRPC server on the caller's tokio runtime, and runs the loop (`driver.rs`)
//! on a dedicated OS thread with its own single-threaded tokio runtime. Why a thread: the
//! loop's fsync (`Storage::append`) is a blocking system call that takes milliseconds; on its
//! own thread it stalls nothing but the loop, while the network tasks keep receiving into the
//! bounded inbox, and whatever piles up during one fsync is the next turn's group commit.
//! (`block_in_place` would do the same inside the shared runtime, but would take one of the
//! two worker threads of this machine away from the network on every turn.)
//!
//! Files: `driver.rs` (the loop), `ready.rs` (executing one `Ready`), `pending.rs` (waiting
//! clients), `snapshot.rs` (taking, writing, compacting, streaming and installing snapshots),
//! `members.rs` (membership changes, member addresses, leadership transfer), `status.rs`,
//! `handle.rs` (the API layer's entry point).
//!
//! Invariants: only the loop touches the core, storage and store; the handle and the network
//! talk to it only through bounded queues (`requests_queued_max` requests,
//! `inbox_batches_max` batches) and read its published `Status` through a watch channel.
//! Storage errors are fatal: the loop stops, and `Running::join` returns `NodeRunError`
//! (exit code 3 for the binary).

mod driver;
pub mod handle;
pub mod members;
mod pending;
mod ready;
mod snapshot;
mod status;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::raft::NodeId;
use crate::storage::{Fsync, StorageError};
use crate::transport::{self, PeerLimits, Transport, TransportStats};

pub use handle::{AdminError, NodeHandle};
pub use members::member_id;

/// Where one member listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAddrs {
    /// Node-to-node gRPC "host:port" (the member's identity: its id is FNV-1a 64 of it).
    pub grpc: String,
    /// Client REST "host:port" (what `NotLeader` and `/v1/leader` report).
    pub rest: String,
}

/// Everything a node needs to run. `NodeOptions::new` fills in the defaults.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub id: NodeId,
    /// Carried by every node-to-node batch; batches with another id are rejected.
    pub cluster_id: u64,
    /// The cluster's name (shown in status).
    pub name: String,
    /// Every member, this node included (its `grpc` address is where it listens).
    pub peers: BTreeMap<NodeId, MemberAddrs>,
    /// The voters of the initial configuration (every member in a fresh cluster).
    pub voters: Vec<NodeId>,
    pub data_dir: PathBuf,
    /// Length of one Raft tick in milliseconds.
    pub tick_ms: u64,
    /// Election timeout range in ticks, drawn uniformly from [min, max) (§5.2).
    pub election_ticks_min: u64,
    pub election_ticks_max: u64,
    pub heartbeat_ticks: u64,
    /// A write not applied within this many milliseconds is answered `Timeout` (outcome
    /// unknown); a read, `Timeout` too (it can simply be retried).
    pub request_timeout_ms: u64,
    /// How long idempotency records live in the state machine (API.md §3).
    pub idempotency_window_s: u64,
    /// How often a leader proposes `Op::Tick`, so idempotency records expire on every member.
    pub housekeeping_interval_ms: u64,
    pub fsync: Fsync,
    pub segment_bytes_max: u64,
    /// Requests waiting for the loop; beyond it callers get `Unavailable` at once.
    pub requests_queued_max: usize,
    /// Received batches waiting for the loop; beyond it the gRPC streams are backpressured.
    pub inbox_batches_max: usize,
    /// Inputs one loop turn takes at most (the rest waits for the next turn), so one turn's
    /// Ready, and therefore one fsync, stays bounded.
    pub turn_batches_max: usize,
    pub turn_requests_max: usize,
    /// At most this many client writes proposed and not yet applied (core's
    /// `uncommitted_entries_max`); beyond it writes get `Unavailable`.
    pub uncommitted_entries_max: usize,
    /// How long a graceful stop waits for in-flight requests before answering them.
    pub shutdown_grace_ms: u64,
    pub peer_limits: PeerLimits,
    /// Take a snapshot once this many entries were applied since the last one (§7)...
    pub snapshot_threshold: u64,
    /// ...or once this many bytes of entry payloads were (a few huge values grow the log
    /// as fast as many small ones).
    pub snapshot_threshold_bytes: u64,
    /// Entries kept before a snapshot when compacting (for slightly slow followers).
    pub compaction_tail_entries: u64,
    /// Bytes per InstallSnapshot chunk.
    pub snapshot_chunk_bytes: usize,
    /// A snapshot transfer with no progress for this long is abandoned and retried.
    pub snapshot_transfer_timeout_ms: u64,
    /// This node starts empty outside the cluster, as a learner-to-be (`serve --join`): it
    /// never campaigns until a member adds and promotes it. Ignored once it has state.
    pub join: bool,
    /// Seed of the core's RNG (election timeouts); `None`: derived from the id and the clock.
    pub seed: Option<u64>,
}

impl NodeOptions {
    /// Options with sane defaults: 10 ms ticks, elections after 150..300 ms, heartbeats every
    /// 30 ms, 5 s request timeout, 600 s idempotency window, fsync always.
    pub fn new(
        id: NodeId,
        cluster_id: u64,
        name: String,
        peers: BTreeMap<NodeId, MemberAddrs>,
        data_dir: PathBuf,
    ) -> NodeOptions {
        let voters = peers.keys().copied().collect();
        NodeOptions {
            id,
            cluster_id,
            name,
            peers,
            voters,
            data_dir,
            tick_ms: 10,
            election_ticks_min: 15,
            election_ticks_max: 30,
            heartbeat_ticks: 3,
            request_timeout_ms: 5000,
            idempotency_window_s: 600,
            housekeeping_interval_ms: 10_000,
            fsync: Fsync::Always,
            segment_bytes_max: 64 << 20,
            requests_queued_max: 65_536,
            inbox_batches_max: 1024,
            turn_batches_max: 256,
            turn_requests_max: 8192,
            uncommitted_entries_max: 100_000,
            shutdown_grace_ms: 2000,
            peer_limits: PeerLimits::default(),
            snapshot_threshold: crate::config::SNAPSHOT_THRESHOLD_ENTRIES_DEFAULT,
            snapshot_threshold_bytes: 256 << 20,
            compaction_tail_entries: 1_000,
            snapshot_chunk_bytes: 1 << 20,
            snapshot_transfer_timeout_ms: 10_000,
            join: false,
            seed: None,
        }
    }

    fn validate(&self) -> Result<(), NodeStartError> {
        let bad = |m: &str| Err(NodeStartError::Options(m.to_string()));
        if !self.peers.contains_key(&self.id) {
            return bad("this node's id is not among the peers");
        }
        if self.snapshot_threshold == 0 || self.snapshot_chunk_bytes == 0 {
            return bad("snapshot_threshold and snapshot_chunk_bytes must be positive");
        }
        if self.voters.iter().any(|v| !self.peers.contains_key(v)) {
            return bad("a voter is not among the peers");
        }
        if self.tick_ms == 0 || self.heartbeat_ticks == 0 {
            return bad("tick_ms and heartbeat_ticks must be positive");
        }
        if self.election_ticks_min <= self.heartbeat_ticks
            || self.election_ticks_max <= self.election_ticks_min
        {
            return bad("need heartbeat_ticks < election_ticks_min < election_ticks_max");
        }
        if self.requests_queued_max == 0
            || self.inbox_batches_max == 0
            || self.turn_batches_max == 0
            || self.turn_requests_max == 0
        {
            return bad("queue limits must be positive");
        }
        Ok(())
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeStartError {
    #[error("bad node options: {0}")]
    Options(String),
    /// The data directory could not be opened or is corrupt (exit code 3).
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the event loop thread: {0}")]
    Thread(std::io::Error),
}

impl NodeStartError {
    /// The process exit code the binary should use.
    pub fn exit_code(&self) -> i32 {
        match self {
            NodeStartError::Storage(e) => e.exit_code(),
            NodeStartError::Options(_) => 2,
            _ => 1,
        }
    }
}

/// Why a running node stopped other than by a graceful shutdown.
#[derive(Debug, thiserror::Error)]
pub enum NodeRunError {
    /// A failed write or fsync: the node must not continue (exit code 3).
    #[error("storage failure, node stopped: {0}")]
    Storage(#[from] StorageError),
    /// The event loop thread panicked (a bug).
    #[error("event loop died: {0}")]
    LoopDied(String),
}

impl NodeRunError {
    pub fn exit_code(&self) -> i32 {
        3
    }
}

/// A started node.
pub struct Running {
    /// The handle the API layer calls (cloneable).
    pub handle: NodeHandle,
    /// Where the node-to-node gRPC server actually listens (useful with port 0).
    pub grpc_addr: SocketAddr,
    /// Completes when the node has stopped: `Ok` after a graceful shutdown, `Err` after a
    /// fatal storage error (the network is stopped in both cases).
    pub join: tokio::task::JoinHandle<Result<(), NodeRunError>>,
}

/// Start a node: bind its gRPC address (from `opts.peers[opts.id].grpc`) and run it until
/// `shutdown` is cancelled.
pub async fn start(
    opts: NodeOptions,
    shutdown: CancellationToken,
) -> Result<Running, NodeStartError> {
    opts.validate()?;
    let addr = opts.peers[&opts.id].grpc.clone();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| NodeStartError::Bind { addr, source })?;
    start_with_listener(opts, listener, shutdown).await
}

/// `start` with an already bound gRPC listener (the CLI's "first bindable controller", tests).
pub async fn start_with_listener(
    opts: NodeOptions,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<Running, NodeStartError> {
    opts.validate()?;
    let grpc_addr = listener
        .local_addr()
        .map_err(|source| NodeStartError::Bind {
            addr: opts.peers[&opts.id].grpc.clone(),
            source,
        })?;
    let opts = Arc::new(opts);
    // The network lives until the loop has finished its graceful stop (it may still need to
    // commit in-flight writes), so it has its own token, cancelled by the loop's wrapper.
    let net_shutdown = CancellationToken::new();
    let stats = Arc::new(TransportStats::default());
    let (inbox_tx, inbox_rx) = mpsc::channel(opts.inbox_batches_max);
    let (req_tx, req_rx) = mpsc::channel(opts.requests_queued_max);
    let (status_tx, status_rx) = watch::channel(status::initial(&opts));
    let (transport, server, member_set) = start_network(
        &opts,
        listener,
        inbox_tx,
        stats.clone(),
        net_shutdown.clone(),
    );
    let (init_tx, init_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let parts = driver::Parts {
        opts: opts.clone(),
        transport,
        inbox: inbox_rx,
        requests: req_rx,
        status: status_tx,
        members: member_set,
    };
    let thread_shutdown = shutdown.clone();
    std::thread::Builder::new()
        .name(format!("raft-loop-{}", opts.id))
        .spawn(move || {
            let result = driver::run_on_this_thread(parts, thread_shutdown, init_tx);
            let _ = done_tx.send(result);
        })
        .map_err(NodeStartError::Thread)?;

    match init_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            net_shutdown.cancel();
            return Err(e);
        }
        Err(_) => {
            net_shutdown.cancel();
            return Err(NodeStartError::Options("event loop failed to start".into()));
        }
    }

    let join = tokio::spawn(async move {
        let result = match done_rx.await {
            Ok(r) => r,
            Err(_) => Err(NodeRunError::LoopDied("event loop thread panicked".into())),
        };
        net_shutdown.cancel();
        if let Ok(Err(e)) = server.await {
            tracing::warn!(error = %e, "gRPC server ended with an error");
        }
        result
    });
    let handle = NodeHandle::new(req_tx, status_rx, opts.request_timeout_ms, stats);
    Ok(Running {
        handle,
        grpc_addr,
        join,
    })
}

/// Start the per-peer senders and the gRPC server (on the caller's runtime).
fn start_network(
    opts: &NodeOptions,
    listener: tokio::net::TcpListener,
    inbox: transport::Inbox,
    stats: Arc<TransportStats>,
    net_shutdown: CancellationToken,
) -> (
    Transport,
    tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    transport::server::Members,
) {
    let peers: Vec<_> = opts
        .peers
        .iter()
        .filter(|(id, _)| **id != opts.id)
        .map(|(id, a)| (*id, a.grpc.clone()))
        .collect();
    let transport = Transport::start(
        opts.id,
        opts.cluster_id,
        &peers,
        opts.peer_limits.clone(),
        stats.clone(),
        net_shutdown.clone(),
    );
    let members: HashSet<NodeId> = opts.peers.keys().copied().collect();
    let service = transport::RaftService::new(
        opts.cluster_id,
        opts.id,
        members,
        inbox,
        stats,
        net_shutdown.clone(),
    );
    let member_set = service.members();
    let server = tokio::spawn(transport::serve(listener, service, net_shutdown));
    (transport, server, member_set)
}
