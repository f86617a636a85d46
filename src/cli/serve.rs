//! `rocinante serve`: load and validate the spec (a bad one exits 2 before anything touches
//! the disk), pick this node's controller, bind its gRPC and REST ports, start the node and
//! the REST API, and run until SIGTERM/SIGINT (graceful stop, exit 0) or a fatal storage
//! error (exit 3).
//!
//! Choosing the controller: `--node N` (1-based), else the first controller whose gRPC and
//! REST ports both bind on this machine (the seed's behaviour, so one spec file serves every
//! member). Both listeners are bound before the node starts, so a taken port is reported
//! before any data directory is created.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use rocinante::api::{self, ApiContext};
use rocinante::config::{ClusterSpec, Controller, Fsync as SpecFsync};
use rocinante::node::{self, MemberAddrs, NodeOptions};
use rocinante::storage::Fsync;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct ServeArgs {
    /// The cluster spec (YAML, API.md §1).
    #[arg(long)]
    spec: PathBuf,
    /// Which controller of the spec this node is, 1-based.
    #[arg(long)]
    node: Option<usize>,
    /// Data directory (default: the spec's, else ./data/<id>).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long)]
    log_json: bool,
    /// Start empty outside the cluster and wait as a learner until a member adds this node
    /// (`rocinante members add`). The spec lists the cluster's members plus this node; the
    /// cluster's id is computed without this node, as the members computed it.
    #[arg(long)]
    join: bool,
}

/// Length of one Raft tick: the granularity of election timeouts and heartbeats.
const TICK_MS_MAX: u64 = 10;

pub fn run(args: ServeArgs) -> ExitCode {
    init_logs(args.log_json);
    let spec = match ClusterSpec::load(&args.spec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: bad spec: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(n) = args.node {
        if spec.controller(n).is_none() {
            eprintln!(
                "error: --node {n}: the spec has controllers 1..={}",
                spec.controllers.len()
            );
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(serve(spec, args));
    // The node thread and the network are stopped by now; don't wait on stray tasks.
    runtime.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}

fn init_logs(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Bind the controller's gRPC and REST ports.
async fn bind(c: &Controller) -> std::io::Result<(TcpListener, TcpListener)> {
    let grpc = TcpListener::bind(c.peer_addr()).await?;
    let rest = TcpListener::bind(c.rest_addr()).await?;
    Ok((grpc, rest))
}

/// `--node N`, or the first controller that binds.
async fn choose(
    spec: &ClusterSpec,
    n: Option<usize>,
) -> Result<(Controller, TcpListener, TcpListener), String> {
    let candidates: Vec<&Controller> = match n.and_then(|n| spec.controller(n)) {
        Some(c) => vec![c],
        None => spec.controllers.iter().collect(),
    };
    let mut last = String::new();
    for c in candidates {
        match bind(c).await {
            Ok((grpc, rest)) => return Ok((c.clone(), grpc, rest)),
            Err(e) => last = format!("{} (rest {}): {e}", c.peer_addr(), c.rest_addr()),
        }
    }
    Err(format!(
        "no controller of the spec can listen here; last: {last}"
    ))
}

fn node_options(spec: &ClusterSpec, me: &Controller, data_dir: PathBuf, join: bool) -> NodeOptions {
    let peers: BTreeMap<_, _> = spec
        .controllers
        .iter()
        .map(|c| {
            let addrs = MemberAddrs {
                grpc: c.peer_addr(),
                rest: c.rest_addr(),
            };
            (c.id(), addrs)
        })
        .collect();
    let cluster_id = if join {
        let mut founders = spec.clone();
        founders.controllers.retain(|c| c.id() != me.id());
        founders.cluster_id().0
    } else {
        spec.cluster_id().0
    };
    let mut o = NodeOptions::new(me.id(), cluster_id, spec.name.clone(), peers, data_dir);
    o.join = join;
    o.snapshot_threshold = spec.snapshot_threshold;
    // The spec's timing in ticks; the spec guarantees heartbeat < election min < max.
    let tick_ms = spec.heartbeat_ms.clamp(1, TICK_MS_MAX);
    o.tick_ms = tick_ms;
    o.heartbeat_ticks = (spec.heartbeat_ms / tick_ms).max(1);
    o.election_ticks_min = (spec.election_timeout_ms.min / tick_ms).max(o.heartbeat_ticks + 1);
    o.election_ticks_max = (spec.election_timeout_ms.max / tick_ms).max(o.election_ticks_min + 1);
    o.request_timeout_ms = spec.request_timeout_ms;
    o.idempotency_window_s = spec.idempotency_window_s;
    o.segment_bytes_max = spec.wal_segment_bytes;
    o.fsync = match spec.fsync {
        SpecFsync::Always => Fsync::Always,
        SpecFsync::Never => Fsync::Never,
    };
    o
}

fn api_context(spec: &ClusterSpec, me: &Controller) -> ApiContext {
    ApiContext {
        max_value_bytes: usize::try_from(spec.max_value_bytes).unwrap_or(usize::MAX),
        forward_timeout: Duration::from_millis(spec.request_timeout_ms.saturating_add(1000)),
        wwwroot: me.wwwroot.clone(),
        metrics_listen: me.metric.clone(),
        ..ApiContext::default()
    }
}

async fn serve(spec: ClusterSpec, args: ServeArgs) -> u8 {
    let (me, grpc, rest) = match choose(&spec, args.node).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| spec.node_data_dir(&me));
    let fresh = !data_dir.exists();
    if spec.fsync == SpecFsync::Never {
        let warning = "FSYNC IS OFF (fsync: never): acknowledged writes can be LOST on power failure. Benchmarks only.";
        eprintln!("\n*** WARNING: {warning} ***\n");
        tracing::warn!("{warning}");
    }
    if rocinante::api::unsafe_local_reads() {
        let warning = "ROCINANTE_UNSAFE_LOCAL_READS=1: linearizable reads are served from LOCAL state and may be STALE. Fault-injection tests only.";
        eprintln!("\n*** WARNING: {warning} ***\n");
        tracing::warn!("{warning}");
    }
    tracing::info!(id = %me.id(), grpc = %me.peer_addr(), rest = %me.rest_addr(),
        data_dir = %data_dir.display(), cluster = %spec.name, "starting node");
    let shutdown = CancellationToken::new();
    let opts = node_options(&spec, &me, data_dir.clone(), args.join);
    let running = match node::start_with_listener(opts, grpc, shutdown.clone()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "node failed to start");
            if fresh && spec.cleanup_on_failure && data_dir.exists() {
                // A half-initialised first start is removed (spec `cleanupOnFailure`).
                let _ = std::fs::remove_dir_all(&data_dir);
            }
            return u8::try_from(e.exit_code()).unwrap_or(1);
        }
    };
    let api = tokio::spawn(api::serve(
        rest,
        running.handle.clone(),
        api_context(&spec, &me),
        shutdown.clone(),
    ));
    let mut join = running.join;
    let outcome = tokio::select! {
        _ = stop_signal() => None,
        r = &mut join => Some(r),
    };
    shutdown.cancel();
    let result = match outcome {
        Some(r) => r,
        None => {
            tracing::info!("stopping: finishing in-flight requests");
            join.await
        }
    };
    let _ = api.await;
    match result {
        Ok(Ok(())) => {
            tracing::info!("stopped");
            0
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "node stopped on a fatal error");
            u8::try_from(e.exit_code()).unwrap_or(3)
        }
        Err(e) => {
            tracing::error!(error = %e, "node task failed");
            3
        }
    }
}

/// SIGTERM or SIGINT (Ctrl-C).
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // Without signal handlers the only way out is the node stopping by itself.
            std::future::pending::<()>().await;
        }
    }
}
