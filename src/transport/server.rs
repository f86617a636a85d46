//! The receiving side: a tonic service that accepts one stream per peer, checks every batch
//! (cluster id, known sender, addressed to us), decodes it through `convert`, and pushes the
//! messages into the runtime's bounded inbox.
//!
//! At the inbox limit (`inbox_batches_max` batches, set by the runtime) the stream handler
//! waits: HTTP/2 flow control then slows the sender, whose own queue drops the newest messages
//! (see `peer.rs`). A batch from another cluster or an unknown sender ends the stream with
//! PERMISSION_DENIED and is counted; one undecodable message is dropped alone and counted.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

use crate::raft::{Message, NodeId};

use super::pb::raft_transport_server::{RaftTransport, RaftTransportServer};
use super::{TransportStats, convert, pb};

/// Where received messages go: one `Vec` per accepted batch.
pub type Inbox = mpsc::Sender<Vec<Message>>;

/// The largest batch the server decodes (a sender cuts batches at `batch_bytes_max`, default
/// 16 MiB, plus one AppendEntries of at most `msg_bytes_max`): larger ones end the stream.
pub const BATCH_DECODE_BYTES_MAX: usize = 64 << 20;

/// The senders a node accepts batches from: its members, grown by membership changes (the
/// runtime adds a member as soon as the change adding it is in the log).
pub type Members = Arc<std::sync::RwLock<HashSet<NodeId>>>;

pub struct RaftService {
    cluster_id: u64,
    self_id: NodeId,
    members: Members,
    inbox: Inbox,
    stats: Arc<TransportStats>,
    shutdown: CancellationToken,
}

impl RaftService {
    pub fn new(
        cluster_id: u64,
        self_id: NodeId,
        members: HashSet<NodeId>,
        inbox: Inbox,
        stats: Arc<TransportStats>,
        shutdown: CancellationToken,
    ) -> RaftService {
        RaftService {
            cluster_id,
            self_id,
            members: Arc::new(std::sync::RwLock::new(members)),
            inbox,
            stats,
            shutdown,
        }
    }

    /// The shared member set, for the runtime to add members to.
    pub fn members(&self) -> Members {
        self.members.clone()
    }

    /// Check the batch header; on success decode its messages (dropping the bad ones).
    fn accept(&self, batch: pb::MessageBatch) -> Result<Vec<Message>, Status> {
        let from = NodeId(batch.from);
        if batch.cluster_id != self.cluster_id {
            TransportStats::add(&self.stats.batches_rejected, 1);
            tracing::warn!(
                theirs = batch.cluster_id,
                ours = self.cluster_id,
                "rejecting batch from another cluster"
            );
            return Err(Status::permission_denied("cluster id mismatch"));
        }
        let known = match self.members.read() {
            Ok(m) => m.contains(&from),
            Err(poisoned) => poisoned.into_inner().contains(&from),
        };
        if from == self.self_id || !known || batch.to != self.self_id.0 {
            TransportStats::add(&self.stats.batches_rejected, 1);
            tracing::warn!(%from, to = batch.to, "rejecting batch from an unknown sender");
            return Err(Status::permission_denied("unknown sender or receiver"));
        }
        TransportStats::add(&self.stats.batches_received, 1);
        let mut msgs = Vec::with_capacity(batch.messages.len());
        for m in batch.messages {
            match convert::decode_message(from, self.self_id, m) {
                Ok(msg) => msgs.push(msg),
                Err(e) => {
                    TransportStats::add(&self.stats.msgs_undecodable, 1);
                    tracing::debug!(%from, error = %e, "dropping undecodable message");
                }
            }
        }
        Ok(msgs)
    }
}

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn stream(
        &self,
        request: Request<Streaming<pb::MessageBatch>>,
    ) -> Result<Response<pb::StreamSummary>, Status> {
        let mut stream = request.into_inner();
        let mut batches = 0u64;
        loop {
            // Ending the stream on shutdown lets the server's graceful stop complete even
            // though peers keep their streams open forever.
            let next = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                next = stream.message() => next?,
            };
            let Some(batch) = next else { break };
            let msgs = self.accept(batch)?;
            batches += 1;
            if msgs.is_empty() {
                continue;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                r = self.inbox.send(msgs) => {
                    if r.is_err() {
                        return Err(Status::unavailable("node is stopping"));
                    }
                }
            }
        }
        Ok(Response::new(pb::StreamSummary { batches }))
    }
}

/// Serve `service` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    service: RaftService,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let svc = RaftTransportServer::new(service)
        .max_decoding_message_size(BATCH_DECODE_BYTES_MAX)
        .max_encoding_message_size(1 << 20);
    tonic::transport::Server::builder()
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .serve_with_incoming_shutdown(svc, incoming, shutdown.cancelled_owned())
        .await
}
