//! gRPC between nodes: one client-streaming call per (sender, receiver) pair, carrying
//! `MessageBatch`es in order without waiting for a round trip.
//!
//! Why client streaming and not unary `Send`: Raft wants each peer's messages in order (an
//! AppendEntries overtaken by a later one is rejected and retransmitted) and wants the sender
//! never to wait a round trip per batch. One HTTP/2 stream per peer gives both: in order,
//! pipelined, and backpressured by HTTP/2 flow control. Answers (votes, acks) go back on the
//! receiver's own stream to us; the RPC's response is only the end-of-stream summary.
//!
//! Pieces: `convert` (the one wire <-> core file), `peer` (one bounded queue and one sender
//! task per peer, reconnecting with backoff), `server` (the tonic service that checks cluster
//! id and sender, decodes, and feeds the runtime's bounded inbox).
//!
//! Invariants: the runtime never blocks on the network (`Transport::send` only locks a short
//! queue); every queue is bounded and what happens at its limit is documented on the limit;
//! nothing a peer sends can panic this node.

pub mod convert;
pub mod peer;
pub mod server;

use std::sync::atomic::{AtomicU64, Ordering};

/// Generated protobuf and tonic code for `proto/raft.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("rocinante.raft");
}

pub use peer::{PeerLimits, Transport};
pub use server::{Inbox, RaftService, serve};

/// Counters of everything the transport dropped or refused (exposed through status/metrics).
/// Relaxed atomics: they are statistics, not synchronisation.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Messages handed to a peer sender.
    pub msgs_sent: AtomicU64,
    /// Messages dropped because a peer's queue was full or the peer was disconnected.
    pub msgs_dropped_queue_full: AtomicU64,
    pub msgs_dropped_disconnected: AtomicU64,
    /// Batches received and accepted.
    pub batches_received: AtomicU64,
    /// Batches refused: another cluster id, an unknown sender, or addressed to another node.
    pub batches_rejected: AtomicU64,
    /// Messages that did not decode (missing body, bad enum value): dropped one by one.
    pub msgs_undecodable: AtomicU64,
    /// Connection attempts that failed or streams that broke.
    pub connect_failures: AtomicU64,
}

impl TransportStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
