//! The runtime end to end, in process, over real sockets on 127.0.0.1: three nodes elect a
//! leader; a write through the leader's handle is read back linearizably on a follower; a
//! follower refuses writes with the leader's address; the leader stops (graceful cancel), a new
//! leader is elected and the value survives; the old leader rejoins and catches up; all three
//! restart from their data directories and still serve the value.
//!
//! Waiting is always for a condition, bounded: `wait_for` re-checks the published statuses
//! each time one of them changes (watch channels), with an overall timeout.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use rocinante::kv::command::{Op, Outcome};
use rocinante::node::handle::{Consistency, NodeError, Status};
use rocinante::node::{MemberAddrs, NodeHandle, NodeOptions, Running, start};
use rocinante::raft::{NodeId, Role};
use tokio_util::sync::CancellationToken;

const CLUSTER_ID: u64 = 0x5eed;
/// Upper bound for any cluster-level condition (elections take a few hundred ms).
const WAIT: Duration = Duration::from_secs(15);

struct Node {
    running: Running,
    token: CancellationToken,
}

struct Cluster {
    opts: Vec<NodeOptions>,
    nodes: Vec<Option<Node>>,
    dir: PathBuf,
}

/// Free ports: bind :0, note the port, release it. (The tiny race with other processes is
/// acceptable in tests; `start` fails loudly if it loses it.)
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

impl Cluster {
    fn new(name: &str) -> Cluster {
        let dir = std::env::temp_dir().join(format!("rocinante-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut peers = BTreeMap::new();
        for i in 1..=3u64 {
            peers.insert(
                NodeId(i),
                MemberAddrs {
                    grpc: format!("127.0.0.1:{}", free_port()),
                    rest: format!("127.0.0.1:{}", free_port()),
                },
            );
        }
        let opts = (1..=3u64)
            .map(|i| {
                let mut o = NodeOptions::new(
                    NodeId(i),
                    CLUSTER_ID,
                    "test".into(),
                    peers.clone(),
                    dir.join(format!("n{i}")),
                );
                o.seed = Some(i * 7919);
                o.request_timeout_ms = 5000;
                o.shutdown_grace_ms = 500;
                o
            })
            .collect();
        Cluster {
            opts,
            nodes: vec![None, None, None],
            dir,
        }
    }

    async fn start(&mut self, i: usize) {
        let token = CancellationToken::new();
        let running = start(self.opts[i].clone(), token.clone())
            .await
            .unwrap_or_else(|e| panic!("node {} failed to start: {e}", i + 1));
        self.nodes[i] = Some(Node { running, token });
    }

    async fn stop(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("node is running");
        node.token.cancel();
        let result = tokio::time::timeout(WAIT, node.running.join)
            .await
            .expect("node did not stop in time")
            .expect("join");
        assert!(result.is_ok(), "node {} stopped with {result:?}", i + 1);
    }

    fn handle(&self, i: usize) -> NodeHandle {
        self.nodes[i]
            .as_ref()
            .expect("running")
            .running
            .handle
            .clone()
    }

    fn running(&self) -> Vec<usize> {
        (0..3).filter(|i| self.nodes[*i].is_some()).collect()
    }

    /// Wait until `pred` holds over the statuses of the running nodes.
    async fn wait_for(&self, what: &str, pred: impl Fn(&[(usize, Status)]) -> bool) {
        let mut watches: Vec<_> = self
            .running()
            .into_iter()
            .map(|i| (i, self.handle(i).status_watch()))
            .collect();
        let outcome = tokio::time::timeout(WAIT, async {
            loop {
                let statuses: Vec<(usize, Status)> = watches
                    .iter_mut()
                    .map(|(i, w)| (*i, w.borrow_and_update().clone()))
                    .collect();
                if pred(&statuses) {
                    return;
                }
                let changes = watches.iter_mut().map(|(_, w)| Box::pin(w.changed()));
                any_ready(changes).await;
            }
        })
        .await;
        assert!(outcome.is_ok(), "timed out waiting for: {what}");
    }

    /// Wait for a leader every running node agrees on, all ready; return its index.
    async fn agreed_leader(&self) -> usize {
        self.wait_for("an agreed leader, every node ready", |s| {
            let leader = s.iter().find(|(_, st)| st.role == Role::Leader);
            match leader {
                Some((_, l)) => s
                    .iter()
                    .all(|(_, st)| st.ready && st.leader.as_ref().map(|x| x.0) == Some(l.id)),
                None => false,
            }
        })
        .await;
        self.running()
            .into_iter()
            .find(|i| self.handle(*i).status().role == Role::Leader)
            .expect("leader vanished")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.iter().flatten() {
            n.token.cancel();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Resolves when any of `futs` does (a minimal `select_all`, no extra dependency).
async fn any_ready<F: std::future::Future + Unpin>(futs: impl Iterator<Item = F>) {
    let mut futs: Vec<F> = futs.collect();
    std::future::poll_fn(|cx| {
        for f in futs.iter_mut() {
            if std::pin::Pin::new(f).poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        if_revision: None,
    }
}

async fn read(h: &NodeHandle, key: &str, c: Consistency) -> Option<Bytes> {
    let (kv, _meta) = h
        .get(Bytes::copy_from_slice(key.as_bytes()), c)
        .await
        .unwrap_or_else(|e| panic!("read {key} failed: {e}"));
    kv.map(|kv| kv.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_replicate_fail_over_and_recover() {
    let mut c = Cluster::new("runtime");
    for i in 0..3 {
        c.start(i).await;
    }
    let leader = c.agreed_leader().await;
    let follower = (leader + 1) % 3;

    // A write through the leader succeeds with a revision.
    let (applied, meta) = c
        .handle(leader)
        .write(put("hello", "world"), None)
        .await
        .expect("write on the leader");
    let Outcome::Put { revision, .. } = applied.outcome else {
        panic!("unexpected outcome {:?}", applied.outcome);
    };
    assert!(revision > 0);
    assert_eq!(meta.leader_id, Some(c.opts[leader].id));

    // Linearizable read on a follower sees it (ReadIndex through the leader, thesis §6.4).
    let got = read(&c.handle(follower), "hello", Consistency::Linearizable).await;
    assert_eq!(got.as_deref(), Some(&b"world"[..]));

    // A follower refuses writes and names the leader's REST address.
    match c.handle(follower).write(put("x", "y"), None).await {
        Err(NodeError::NotLeader {
            leader: Some((id, rest)),
        }) => {
            assert_eq!(id, c.opts[leader].id);
            assert_eq!(rest, c.opts[leader].peers[&id].rest);
        }
        other => panic!("expected NotLeader, got {other:?}"),
    }

    // Stop the leader; a new one is elected and still has the value.
    c.stop(leader).await;
    let new_leader = c.agreed_leader().await;
    assert_ne!(new_leader, leader);
    let got = read(&c.handle(new_leader), "hello", Consistency::Linearizable).await;
    assert_eq!(got.as_deref(), Some(&b"world"[..]));
    c.handle(new_leader)
        .write(put("after", "failover"), None)
        .await
        .expect("write on the new leader");

    // The old leader rejoins from its data dir and catches up.
    c.start(leader).await;
    let target = c.handle(new_leader).status().commit_index;
    c.wait_for("the old leader catches up", |s| {
        s.iter().all(|(_, st)| st.applied_index >= target)
    })
    .await;
    let got = read(&c.handle(leader), "after", Consistency::Stale).await;
    assert_eq!(got.as_deref(), Some(&b"failover"[..]));

    // Restart everything from disk: the values are still there.
    for i in 0..3 {
        c.stop(i).await;
    }
    for i in 0..3 {
        c.start(i).await;
    }
    let leader = c.agreed_leader().await;
    for i in 0..3 {
        let got = read(&c.handle(i), "hello", Consistency::Linearizable).await;
        assert_eq!(
            got.as_deref(),
            Some(&b"world"[..]),
            "node {} after restart",
            i + 1
        );
    }
    let got = read(&c.handle(leader), "after", Consistency::Lease).await;
    assert_eq!(got.as_deref(), Some(&b"failover"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_all_applied_in_one_order() {
    let mut c = Cluster::new("runtime-concurrent");
    for i in 0..3 {
        c.start(i).await;
    }
    let leader = c.agreed_leader().await;
    let h = c.handle(leader);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move {
                h.write(put(&format!("k{i:03}"), &format!("v{i}")), None)
                    .await
            })
        })
        .collect();
    let mut revisions = Vec::new();
    for t in tasks {
        let (applied, _) = t.await.expect("task").expect("write");
        if let Outcome::Put { revision, .. } = applied.outcome {
            revisions.push(revision);
        }
    }
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), 200, "every write got its own revision");
    let (page, _) = c
        .handle((leader + 1) % 3)
        .list(
            Bytes::from_static(b"k"),
            None,
            1000,
            Consistency::Linearizable,
        )
        .await
        .expect("list on a follower");
    assert_eq!(page.items.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_cluster_serves_and_recovers() {
    let dir = std::env::temp_dir().join(format!("rocinante-single-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut peers = BTreeMap::new();
    peers.insert(
        NodeId(1),
        MemberAddrs {
            grpc: format!("127.0.0.1:{}", free_port()),
            rest: "127.0.0.1:1".into(),
        },
    );
    let opts = NodeOptions::new(NodeId(1), CLUSTER_ID, "one".into(), peers, dir.clone());
    for round in 0..2 {
        let token = CancellationToken::new();
        let running = start(opts.clone(), token.clone()).await.expect("start");
        let mut w = running.handle.status_watch();
        // The `Ref` that `wait_for` returns holds the watch lock: drop it at once.
        let became_ready =
            tokio::time::timeout(WAIT, async { w.wait_for(|s| s.ready).await.is_ok() }).await;
        assert_eq!(became_ready, Ok(true), "round {round}: never ready");
        if round == 0 {
            running
                .handle
                .write(put("solo", "yes"), None)
                .await
                .unwrap_or_else(|e| panic!("write: {e:?} {:?}", running.handle.status()));
        }
        let got = read(&running.handle, "solo", Consistency::Linearizable).await;
        assert_eq!(got.as_deref(), Some(&b"yes"[..]), "round {round}");
        token.cancel();
        let stopped = tokio::time::timeout(WAIT, running.join).await;
        assert!(
            matches!(stopped, Ok(Ok(Ok(())))),
            "round {round}: {stopped:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_writes_fail_honestly_and_stale_reads_still_work() {
    let mut c = Cluster::new("runtime-noquorum");
    for o in c.opts.iter_mut() {
        o.request_timeout_ms = 1000;
    }
    for i in 0..3 {
        c.start(i).await;
    }
    let leader = c.agreed_leader().await;
    let h = c.handle(leader);
    h.write(put("k", "v1"), None)
        .await
        .expect("write with quorum");
    for i in 0..3 {
        if i != leader {
            c.stop(i).await;
        }
    }
    // The write cannot commit: it is either refused (NotLeader/Unavailable once check-quorum
    // deposed the leader: NOT applied) or times out (outcome unknown). Never Ok.
    match h.write(put("k", "v2"), None).await {
        Err(NodeError::Timeout | NodeError::NotLeader { .. } | NodeError::Unavailable(_)) => {}
        other => panic!("a write without a quorum answered {other:?}"),
    }
    // Linearizable reads cannot be confirmed either.
    assert!(
        h.get(Bytes::from_static(b"k"), Consistency::Linearizable)
            .await
            .is_err()
    );
    // A stale read serves the last applied value.
    let got = read(&h, "k", Consistency::Stale).await;
    assert_eq!(got.as_deref(), Some(&b"v1"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_answers_every_in_flight_request() {
    let mut c = Cluster::new("runtime-stop");
    for i in 0..3 {
        c.start(i).await;
    }
    let leader = c.agreed_leader().await;
    let h = c.handle(leader);
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move { h.write(put(&format!("s{i}"), "v"), None).await })
        })
        .collect();
    c.stop(leader).await;
    // Every writer got an answer (none hangs): success, known-not-applied, or unknown.
    let all = tokio::time::timeout(WAIT, async {
        for t in tasks {
            let _answer = t.await.expect("task");
        }
    })
    .await;
    assert!(all.is_ok(), "a write was left hanging by the stop");
    // A stopped node refuses at once.
    assert!(matches!(
        h.write(put("late", "v"), None).await,
        Err(NodeError::Unavailable(_))
    ));
}

/// Flip one byte in the middle of every non-empty file under `dir` (recursively).
fn corrupt_middle_of_files(dir: &std::path::Path) -> usize {
    let mut corrupted = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            corrupted += corrupt_middle_of_files(&path);
        } else if let Ok(mut bytes) = std::fs::read(&path)
            && bytes.len() > 64
        {
            let mid = bytes.len() / 3;
            bytes[mid] ^= 0xff;
            std::fs::write(&path, bytes).expect("rewrite");
            corrupted += 1;
        }
    }
    corrupted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_log_refuses_to_start_with_exit_code_3() {
    let dir = std::env::temp_dir().join(format!("rocinante-corrupt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut peers = BTreeMap::new();
    peers.insert(
        NodeId(1),
        MemberAddrs {
            grpc: format!("127.0.0.1:{}", free_port()),
            rest: "127.0.0.1:1".into(),
        },
    );
    let opts = NodeOptions::new(NodeId(1), CLUSTER_ID, "one".into(), peers, dir.clone());
    let token = CancellationToken::new();
    let running = start(opts.clone(), token.clone()).await.expect("start");
    let mut w = running.handle.status_watch();
    let ready = tokio::time::timeout(WAIT, async { w.wait_for(|s| s.ready).await.is_ok() }).await;
    assert_eq!(ready, Ok(true));
    for i in 0..50 {
        running
            .handle
            .write(put(&format!("k{i}"), &"x".repeat(100)), None)
            .await
            .expect("write");
    }
    token.cancel();
    let stopped = tokio::time::timeout(WAIT, running.join).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))));

    assert!(corrupt_middle_of_files(&dir) > 0, "no log files found");
    match start(opts, CancellationToken::new()).await {
        Err(e) => assert_eq!(e.exit_code(), 3, "unexpected error {e}"),
        Ok(_) => panic!("a node started on a corrupt log"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_when_the_leader_stops_under_load() {
    let mut c = Cluster::new("runtime-ack");
    for i in 0..3 {
        c.start(i).await;
    }
    let leader = c.agreed_leader().await;
    let h = c.handle(leader);
    // 16 writers stream writes; the leader stops in the middle.
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let h = h.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0..1000 {
                    let key = format!("w{w:02}-{n:04}");
                    match h.write(put(&key, "v"), None).await {
                        Ok(_) => acked.push(key),
                        Err(_) => break,
                    }
                }
                acked
            })
        })
        .collect();
    // Stop once some writes are acknowledged (bounded wait on the leader's applied index).
    let mut w = h.status_watch();
    let progressed = tokio::time::timeout(WAIT, async {
        w.wait_for(|s| s.applied_index.0 > 200).await.is_ok()
    })
    .await;
    assert_eq!(progressed, Ok(true));
    c.stop(leader).await;
    let mut acked = Vec::new();
    for t in writers {
        acked.extend(t.await.expect("writer"));
    }
    assert!(!acked.is_empty());
    assert!(acked.len() < 16_000, "the stop did not happen under load");
    let new_leader = c.agreed_leader().await;
    let (page, _) = c
        .handle(new_leader)
        .list(
            Bytes::from_static(b"w"),
            None,
            10_000,
            Consistency::Linearizable,
        )
        .await
        .expect("list");
    let present: std::collections::HashSet<Bytes> =
        page.items.into_iter().map(|kv| kv.key).collect();
    for key in &acked {
        assert!(
            present.contains(key.as_bytes()),
            "acknowledged write {key} lost"
        );
    }
}
