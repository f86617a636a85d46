//! The node-to-node transport over real sockets on 127.0.0.1: messages arrive in order in the
//! receiver's inbox; batches from another cluster or an unknown sender are refused; a dead
//! peer never blocks the sender and its messages are counted as dropped.
//!
//! No sleeps as synchronisation: every wait is a bounded `timeout` around a channel receive.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rocinante::raft::{Message, MessageBody, NodeId, ReadId, Term};
use rocinante::transport::pb::raft_transport_client::RaftTransportClient;
use rocinante::transport::{PeerLimits, RaftService, Transport, TransportStats, pb, serve};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const CLUSTER: u64 = 0xc1u64;
const WAIT: Duration = Duration::from_secs(10);

fn msg(from: u64, to: u64, id: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(3),
        body: MessageBody::ReadIndexRequest { id: ReadId(id) },
    }
}

/// A receiver (node 2) listening on a fresh port; returns its address, inbox and stats.
async fn receiver(
    shutdown: &CancellationToken,
) -> (String, mpsc::Receiver<Vec<Message>>, Arc<TransportStats>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (tx, rx) = mpsc::channel(64);
    let stats = Arc::new(TransportStats::default());
    let members: HashSet<NodeId> = [NodeId(1), NodeId(2)].into_iter().collect();
    let svc = RaftService::new(
        CLUSTER,
        NodeId(2),
        members,
        tx,
        stats.clone(),
        shutdown.clone(),
    );
    tokio::spawn(serve(listener, svc, shutdown.clone()));
    (addr, rx, stats)
}

#[tokio::test]
async fn messages_arrive_in_order_through_the_peer_sender() {
    let shutdown = CancellationToken::new();
    let (addr, mut inbox, _) = receiver(&shutdown).await;
    let stats = Arc::new(TransportStats::default());
    let t = Transport::start(
        NodeId(1),
        CLUSTER,
        &[(NodeId(2), addr)],
        PeerLimits::default(),
        stats.clone(),
        shutdown.clone(),
    );
    // Messages sent before the connection is up are dropped (Raft retransmits), so keep
    // sending id 0 probes until one arrives, then send the real sequence.
    let mut got = Vec::new();
    let connected = tokio::time::timeout(WAIT, async {
        loop {
            t.send([msg(1, 2, 0)]);
            tokio::select! {
                Some(b) = inbox.recv() => { got.extend(b); break; }
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
    .await;
    assert!(connected.is_ok(), "peer sender never connected");
    t.send((1..=100).map(|i| msg(1, 2, i)));
    let mut ids = Vec::new();
    let all = tokio::time::timeout(WAIT, async {
        while ids.len() < 100 {
            let Some(batch) = inbox.recv().await else {
                break;
            };
            for m in batch {
                assert_eq!(m.from, NodeId(1));
                assert_eq!(m.to, NodeId(2));
                if let MessageBody::ReadIndexRequest { id } = m.body
                    && id.0 != 0
                {
                    ids.push(id.0);
                }
            }
        }
    })
    .await;
    assert!(all.is_ok(), "only {} of 100 messages arrived", ids.len());
    assert_eq!(ids, (1..=100).collect::<Vec<_>>(), "messages reordered");
    shutdown.cancel();
}

async fn send_raw(addr: &str, batch: pb::MessageBatch) -> Result<(), tonic::Status> {
    let mut client = RaftTransportClient::connect(format!("http://{addr}"))
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let stream = tokio_stream_once(batch);
    client.stream(stream).await.map(|_| ())
}

/// A request stream of exactly one batch.
fn tokio_stream_once(
    batch: pb::MessageBatch,
) -> tonic::codegen::tokio_stream::Iter<std::vec::IntoIter<pb::MessageBatch>> {
    tonic::codegen::tokio_stream::iter(vec![batch])
}

fn wire_batch(cluster_id: u64, from: u64, to: u64) -> pb::MessageBatch {
    pb::MessageBatch {
        cluster_id,
        from,
        to,
        messages: vec![rocinante::transport::convert::encode_message(&msg(
            from, to, 9,
        ))],
    }
}

#[tokio::test]
async fn foreign_cluster_and_unknown_sender_are_refused() {
    let shutdown = CancellationToken::new();
    let (addr, mut inbox, stats) = receiver(&shutdown).await;

    let other_cluster = send_raw(&addr, wire_batch(CLUSTER + 1, 1, 2)).await;
    assert_eq!(
        other_cluster.err().map(|s| s.code()),
        Some(tonic::Code::PermissionDenied)
    );
    let stranger = send_raw(&addr, wire_batch(CLUSTER, 77, 2)).await;
    assert_eq!(
        stranger.err().map(|s| s.code()),
        Some(tonic::Code::PermissionDenied)
    );
    let wrong_receiver = send_raw(&addr, wire_batch(CLUSTER, 1, 3)).await;
    assert_eq!(
        wrong_receiver.err().map(|s| s.code()),
        Some(tonic::Code::PermissionDenied)
    );
    assert_eq!(stats.batches_rejected.load(Ordering::Relaxed), 3);

    // A good batch with one undecodable message: the good one arrives, the bad one is counted.
    let mut good = wire_batch(CLUSTER, 1, 2);
    good.messages.push(pb::RaftMessage {
        term: 1,
        body: None,
    });
    assert!(send_raw(&addr, good).await.is_ok());
    let batch = tokio::time::timeout(WAIT, inbox.recv())
        .await
        .expect("inbox");
    assert_eq!(batch.map(|b| b.len()), Some(1));
    assert_eq!(stats.msgs_undecodable.load(Ordering::Relaxed), 1);
    assert!(
        inbox.try_recv().is_err(),
        "a refused batch reached the inbox"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn a_dead_peer_never_blocks_the_sender() {
    // Reserve a port and close it: nothing listens there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let shutdown = CancellationToken::new();
    let stats = Arc::new(TransportStats::default());
    let t = Transport::start(
        NodeId(1),
        CLUSTER,
        &[(NodeId(2), dead)],
        PeerLimits::default(),
        stats.clone(),
        shutdown.clone(),
    );
    // 100k messages to a dead peer: `send` returns at once each time and drops them.
    for i in 0..1000 {
        t.send((0..100).map(|j| msg(1, 2, i * 100 + j)));
    }
    let dropped = stats.msgs_dropped_disconnected.load(Ordering::Relaxed)
        + stats.msgs_dropped_queue_full.load(Ordering::Relaxed);
    assert_eq!(dropped, 100_000);
    shutdown.cancel();
}
