//! Per-peer senders: the loop pushes messages into a bounded queue per peer (never waiting);
//! one task per peer drains the queue into batches and streams them over gRPC.
//!
//! Limits and behaviour at the limit:
//! - `peer_queue_msgs_max` messages wait per peer. When the queue is full the NEWEST messages
//!   are dropped and counted: Raft retransmits (heartbeats re-trigger AppendEntries, elections
//!   re-send votes), so a dropped message costs latency, never safety.
//! - While a peer is disconnected every message to it is dropped and counted at once: sending
//!   stale heartbeats after a reconnect is useless, and the queue must not fill with them.
//! - `stream_batches_inflight_max` encoded batches may wait inside the gRPC stream; beyond
//!   that the sender task waits (HTTP/2 flow control), and the queue above absorbs the burst,
//!   coalescing everything that waited into the next batch.
//! - One batch carries at most `batch_bytes_max` payload bytes (the receiver's decode limit is
//!   a multiple of it), beyond which the rest stays queued for the next batch.
//! - Reconnects back off exponentially from `backoff_ms_min` to `backoff_ms_max`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::raft::{Message, MessageBody, NodeId};

use super::pb::raft_transport_client::RaftTransportClient;
use super::{TransportStats, convert, pb};

/// Bounds of the per-peer machinery (see the file comment for behaviour at each limit).
#[derive(Clone, Debug)]
pub struct PeerLimits {
    /// Messages waiting per peer before the newest are dropped.
    pub peer_queue_msgs_max: usize,
    /// Encoded batches buffered inside one gRPC stream.
    pub stream_batches_inflight_max: usize,
    /// Entry payload bytes per batch (approximate: `Entry::size_bytes`).
    pub batch_bytes_max: u64,
    pub backoff_ms_min: u64,
    pub backoff_ms_max: u64,
    pub connect_timeout_ms: u64,
}

impl Default for PeerLimits {
    fn default() -> Self {
        PeerLimits {
            peer_queue_msgs_max: 4096,
            stream_batches_inflight_max: 8,
            batch_bytes_max: 16 << 20,
            backoff_ms_min: 20,
            backoff_ms_max: 1000,
            connect_timeout_ms: 1000,
        }
    }
}

/// What the loop and one sender task share.
struct PeerShared {
    queue: Mutex<Vec<Message>>,
    notify: Notify,
    connected: AtomicBool,
}

/// The loop's handle to every peer sender. `send` never blocks on the network.
pub struct Transport {
    peers: HashMap<NodeId, Arc<PeerShared>>,
    limits: PeerLimits,
    stats: Arc<TransportStats>,
    /// What `add_peer` needs to start a sender later (membership changes).
    self_id: NodeId,
    cluster_id: u64,
    shutdown: CancellationToken,
    runtime: tokio::runtime::Handle,
}

impl Transport {
    /// Spawn one sender task per peer (on the current tokio runtime). They run until
    /// `shutdown` is cancelled.
    pub fn start(
        self_id: NodeId,
        cluster_id: u64,
        peers: &[(NodeId, String)],
        limits: PeerLimits,
        stats: Arc<TransportStats>,
        shutdown: CancellationToken,
    ) -> Transport {
        let mut t = Transport {
            peers: HashMap::new(),
            limits,
            stats,
            self_id,
            cluster_id,
            shutdown,
            runtime: tokio::runtime::Handle::current(),
        };
        for (id, addr) in peers {
            t.add_peer(*id, addr.clone());
        }
        t
    }

    /// Start sending to a new member at `addr` (a membership change added it). A peer that is
    /// already known keeps its sender. Callable from any thread: the sender runs on the
    /// runtime `start` was called on.
    pub fn add_peer(&mut self, id: NodeId, addr: String) {
        if id == self.self_id || self.peers.contains_key(&id) {
            return;
        }
        let shared = Arc::new(PeerShared {
            queue: Mutex::new(Vec::new()),
            notify: Notify::new(),
            connected: AtomicBool::new(false),
        });
        let sender = PeerSender {
            from: self.self_id,
            to: id,
            addr,
            cluster_id: self.cluster_id,
            shared: shared.clone(),
            limits: self.limits.clone(),
            stats: self.stats.clone(),
            shutdown: self.shutdown.clone(),
        };
        self.runtime.spawn(sender.run());
        self.peers.insert(id, shared);
    }

    /// Whether a sender to `id` exists.
    pub fn has_peer(&self, id: NodeId) -> bool {
        self.peers.contains_key(&id)
    }

    /// Queue `msgs` to their receivers. Messages to unknown nodes are dropped (the core only
    /// addresses members; this is a guard, counted as disconnected).
    pub fn send(&self, msgs: impl IntoIterator<Item = Message>) {
        let mut touched: Vec<&Arc<PeerShared>> = Vec::new();
        for msg in msgs {
            let Some(peer) = self.peers.get(&msg.to) else {
                TransportStats::add(&self.stats.msgs_dropped_disconnected, 1);
                continue;
            };
            if !peer.connected.load(Ordering::Relaxed) {
                TransportStats::add(&self.stats.msgs_dropped_disconnected, 1);
                continue;
            }
            // The lock is held only for a push; the sender task holds it only for a swap.
            let mut queue = match peer.queue.lock() {
                Ok(q) => q,
                Err(poisoned) => poisoned.into_inner(),
            };
            if queue.len() >= self.limits.peer_queue_msgs_max {
                TransportStats::add(&self.stats.msgs_dropped_queue_full, 1);
                continue;
            }
            queue.push(msg);
            drop(queue);
            if !touched.iter().any(|p| Arc::ptr_eq(p, peer)) {
                touched.push(peer);
            }
        }
        for peer in touched {
            peer.notify.notify_one();
        }
    }
}

/// One peer's sender task.
struct PeerSender {
    from: NodeId,
    to: NodeId,
    addr: String,
    cluster_id: u64,
    shared: Arc<PeerShared>,
    limits: PeerLimits,
    stats: Arc<TransportStats>,
    shutdown: CancellationToken,
}

impl PeerSender {
    async fn run(self) {
        let mut backoff_ms = self.limits.backoff_ms_min;
        while !self.shutdown.is_cancelled() {
            match self.connect().await {
                Some(channel) => {
                    let opened = std::time::Instant::now();
                    self.pump(channel).await;
                    // Only a stream that lived a while resets the backoff: one the receiver
                    // refuses at once (another cluster) must not be retried in a tight loop.
                    if opened.elapsed() >= Duration::from_millis(self.limits.backoff_ms_max) {
                        backoff_ms = self.limits.backoff_ms_min;
                    }
                    self.shared.connected.store(false, Ordering::Relaxed);
                    self.take_queue();
                }
                None => TransportStats::add(&self.stats.connect_failures, 1),
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
            }
            backoff_ms = (backoff_ms * 2).min(self.limits.backoff_ms_max);
        }
    }

    async fn connect(&self) -> Option<Channel> {
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addr))
            .ok()?
            .connect_timeout(Duration::from_millis(self.limits.connect_timeout_ms))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(3))
            .keep_alive_while_idle(true)
            .initial_stream_window_size(Some(8 << 20))
            .initial_connection_window_size(Some(16 << 20));
        tokio::select! {
            _ = self.shutdown.cancelled() => None,
            r = endpoint.connect() => match r {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::debug!(peer = %self.to, addr = %self.addr, error = %e, "connect failed");
                    None
                }
            },
        }
    }

    /// Stream batches over one call until it breaks or we shut down.
    async fn pump(&self, channel: Channel) {
        let (tx, rx) = mpsc::channel::<pb::MessageBatch>(self.limits.stream_batches_inflight_max);
        let mut client = RaftTransportClient::new(channel)
            .max_decoding_message_size(1 << 20)
            .max_encoding_message_size(usize::MAX);
        let peer = self.to;
        let stats = self.stats.clone();
        let call = tokio::spawn(async move {
            if let Err(status) = client.stream(ReceiverStream::new(rx)).await {
                TransportStats::add(&stats.connect_failures, 1);
                tracing::debug!(%peer, %status, "stream to peer ended");
            }
        });
        self.shared.connected.store(true, Ordering::Relaxed);
        tracing::debug!(peer = %self.to, addr = %self.addr, "connected to peer");
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tx.closed() => break,
                _ = self.shared.notify.notified() => {}
            }
            let mut pending = self.take_queue();
            while !pending.is_empty() {
                let batch = self.encode_batch(&mut pending);
                let sent = tokio::select! {
                    _ = self.shutdown.cancelled() => false,
                    r = tx.send(batch) => r.is_ok(),
                };
                if !sent {
                    call.abort();
                    return;
                }
            }
        }
        drop(tx);
        call.abort();
    }

    fn take_queue(&self) -> Vec<Message> {
        let mut queue = match self.shared.queue.lock() {
            Ok(q) => q,
            Err(poisoned) => poisoned.into_inner(),
        };
        std::mem::take(&mut *queue)
    }

    /// Encode messages from the front of `pending` into one batch of at most
    /// `batch_bytes_max` entry bytes (always at least one message); the rest stay in `pending`.
    fn encode_batch(&self, pending: &mut Vec<Message>) -> pb::MessageBatch {
        let mut bytes = 0u64;
        let mut taken = 0usize;
        for msg in pending.iter() {
            let size = match &msg.body {
                MessageBody::AppendEntries { entries, .. } => {
                    entries.iter().map(|e| e.size_bytes()).sum::<u64>()
                }
                MessageBody::InstallSnapshot { data, .. } => data.len() as u64,
                _ => 0,
            };
            if taken > 0 && bytes + size > self.limits.batch_bytes_max {
                break;
            }
            bytes += size;
            taken += 1;
        }
        let messages: Vec<pb::RaftMessage> = pending
            .drain(..taken)
            .map(|m| convert::encode_message(&m))
            .collect();
        TransportStats::add(&self.stats.msgs_sent, messages.len() as u64);
        pb::MessageBatch {
            cluster_id: self.cluster_id,
            from: self.from.0,
            to: self.to.0,
            messages,
        }
    }
}
