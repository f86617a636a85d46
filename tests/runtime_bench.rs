//! A rough in-process throughput measurement of the runtime (no HTTP): a 3-node cluster on
//! 127.0.0.1 with fsync on, `WRITERS` tasks writing unique keys through the leader's handle for
//! `BENCH_SECS` seconds, then the same with linearizable reads. Ignored by default (it is a
//! measurement, not a check); run with
//! `cargo test --release --test runtime_bench -- --ignored --nocapture`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rocinante::kv::command::Op;
use rocinante::node::handle::Consistency;
use rocinante::node::{MemberAddrs, NodeOptions, start};
use rocinante::raft::{NodeId, Role};
use tokio_util::sync::CancellationToken;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Run `writers` tasks calling `op` until the deadline; returns (ops/s, p50 ms, p99 ms).
async fn drive<F, Fut>(writers: u64, secs: u64, op: F) -> (f64, f64, f64)
where
    F: Fn(u64, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let stop = stop.clone();
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    assert!(op(w, n).await, "operation failed");
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    n += 1;
                }
                lat
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        all.get(((all.len() as f64) * p) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    (all.len() as f64 / elapsed, pct(0.5), pct(0.99))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    let writers = env_u64("WRITERS", 64);
    let secs = env_u64("BENCH_SECS", 5);
    let dir = std::env::temp_dir().join(format!("rocinante-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let peers: BTreeMap<NodeId, MemberAddrs> = (1..=3u64)
        .map(|i| {
            let a = MemberAddrs {
                grpc: format!("127.0.0.1:{}", free_port()),
                rest: format!("127.0.0.1:{}", free_port()),
            };
            (NodeId(i), a)
        })
        .collect();
    let token = CancellationToken::new();
    let mut nodes = Vec::new();
    for i in 1..=3u64 {
        let o = NodeOptions::new(
            NodeId(i),
            1,
            "bench".into(),
            peers.clone(),
            dir.join(format!("n{i}")),
        );
        nodes.push(start(o, token.clone()).await.expect("start"));
    }
    let leader = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Some(n) = nodes
                .iter()
                .find(|n| n.handle.status().role == Role::Leader)
            {
                if n.handle.status().ready {
                    return n.handle.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("no leader");
    let value = Bytes::from(vec![b'v'; 128]);

    for w in [1, writers] {
        let h = leader.clone();
        let v = value.clone();
        let (rps, p50, p99) = drive(w, secs, move |w, n| {
            let h = h.clone();
            let v = v.clone();
            async move {
                let key = Bytes::from(format!("bench-{w:02}-{n:012}"));
                let op = Op::Put {
                    key,
                    value: v,
                    if_revision: None,
                };
                h.write(op, None).await.is_ok()
            }
        })
        .await;
        println!("put, {w:>2} writers: {rps:>9.0} ops/s  p50 {p50:.2} ms  p99 {p99:.2} ms");
    }
    let h = leader.clone();
    let (rps, p50, p99) = drive(writers, secs, move |_, _| {
        let h = h.clone();
        async move {
            h.get(
                Bytes::from_static(b"bench-00-000000000000"),
                Consistency::Linearizable,
            )
            .await
            .is_ok()
        }
    })
    .await;
    println!(
        "linearizable get, {writers} readers: {rps:>9.0} ops/s  p50 {p50:.2} ms  p99 {p99:.2} ms"
    );
    token.cancel();
    for n in nodes {
        let _ = n.join.await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
