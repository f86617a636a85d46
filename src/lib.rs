//! Rocinante: a replicated key-value server on a Raft written here from the paper.
//!
//! # The shape
//!
//! ```text
//!  clients ──REST──▶ api ──▶ NodeHandle ──▶ ┌──────── node runtime: one loop, one thread ────────┐
//!                                           │ inbox ─▶ raft core (pure) ─▶ Ready ─▶ persist ─▶   │
//!  peers ◀──gRPC──▶ transport ─────────────▶│   send ─▶ apply to kv ─▶ answer clients, reads     │
//!                                           └─────────────────────────────────────────────────────┘
//!                                              storage: segmented WAL + snapshot files (std::fs)
//! ```
//!
//! # Reading order
//!
//! 1. [`raft`]: the algorithm as a pure, deterministic state machine. Start with its module
//!    essay, then `raft::node` (the contract below), `election`, `replication`, `read_index`.
//!    Nothing in it does I/O, reads a clock or draws from a global RNG, so the simulator in
//!    `tests/simulation.rs` runs whole clusters of it under faults from one seed.
//! 2. [`storage`]: the durable log. A pure frame codec (`storage::frame`) under segment files
//!    and a recovery scan that tells a torn tail (repaired) from corruption (refused).
//! 3. [`kv`]: the state machine the log is applied to: revisions, compare-and-set, the
//!    idempotency table, snapshots of itself. Same log, same state, on every node.
//! 4. [`node`]: the runtime that owns core, storage and store and executes each `Ready`.
//! 5. [`transport`] and [`api`]: the edges (gRPC between nodes, REST for clients), with
//!    [`config`] (the cluster spec) and [`client`] (leader-finding client for the CLI).
//!
//! # The contract between core and runtime
//!
//! Each turn the runtime steps the core with everything that arrived, takes one `Ready` and
//! executes it in one order (documented on `raft::Ready`): send the leader's new entries (it may
//! replicate before its own fsync, thesis §10.2.1, because it counts itself toward a quorum only
//! for what it reported persisted); persist hard state and entries with one write and one fsync
//! (group commit); send the messages that acknowledge what was persisted; apply committed
//! entries and answer clients; serve reads whose read index is applied; report back with
//! `persisted` and `applied`. Batching is the architecture: one fsync per turn, one
//! AppendEntries per peer per turn, every queue bounded.

pub mod api;
pub mod client;
pub mod config;
pub mod kv;
pub mod node;
pub mod raft;
pub mod storage;
pub mod transport;
