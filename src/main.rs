//! The `rocinante` binary (API.md §2): `serve` runs one node of a cluster spec; `put`, `get`,
//! `del`, `list` and `status` are REST clients that find the leader themselves; `wal inspect`
//! prints what is in a data directory.
//!
//! Exit codes: 0 success; 1 the operation failed (not found, conflict, unavailable, a port
//! already taken); 2 bad usage or a bad spec (nothing written to disk); 3 storage corruption
//! or a storage failure while running.

#[path = "cli/serve.rs"]
mod serve;

use std::process::ExitCode;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use rocinante::client::{Client, ClientError, RetryPolicy};
use rocinante::config::ClusterSpec;

#[derive(Parser)]
#[command(
    name = "rocinante",
    version,
    about = "A replicated key-value server on a hand-written Raft"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node of the cluster described by a spec.
    Serve(serve::ServeArgs),
    /// Set KEY to VALUE.
    Put {
        key: String,
        value: String,
        /// Compare-and-set on the key's mod revision (0: only if absent).
        #[arg(long)]
        if_revision: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// Print KEY's value (exit 1 when absent).
    Get {
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete KEY; prints 1 if it existed, 0 if not.
    Del {
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Print every key under PREFIX with its value, one per line, tab-separated.
    List {
        #[arg(default_value = "")]
        prefix: String,
        #[command(flatten)]
        target: Target,
    },
    /// One table: every member, role, term, commit/applied index, lag.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Membership changes (API.md §2): `members add ADDRESS:PORT --rest PORT [--learner]`,
    /// `members remove ID`.
    Members {
        #[command(subcommand)]
        command: MembersCommand,
    },
    /// Leadership: `leader transfer ID`.
    Leader {
        #[command(subcommand)]
        command: LeaderCommand,
    },
    /// Write-ahead log tools.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
}

#[derive(Subcommand)]
enum MembersCommand {
    /// Add a node: as a voter (added as a learner, promoted once caught up), or a learner.
    Add {
        /// The new node's node-to-node address, `ADDRESS:PORT` (its id is FNV-1a 64 of it).
        endpoint: String,
        /// The new node's REST port (same address).
        #[arg(long)]
        rest: u16,
        /// Add it as a learner only (receives the log, never votes).
        #[arg(long)]
        learner: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Remove a node (voter or learner) by its 16-hex-digit id.
    Remove {
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum LeaderCommand {
    /// Hand leadership to the voter with this 16-hex-digit id.
    Transfer {
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum WalCommand {
    /// Describe a node's data directory (read-only).
    Inspect { dir: std::path::PathBuf },
}

/// Where a client command sends its requests.
#[derive(Args)]
struct Target {
    /// REST addresses, comma-separated (default: the members of spec/cluster3.yaml).
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Take the REST addresses from a cluster spec.
    #[arg(long, conflicts_with = "endpoints")]
    spec: Option<std::path::PathBuf>,
}

/// The REST addresses of `spec/cluster3.yaml`, for when no target is given.
const DEFAULT_ENDPOINTS: [&str; 3] = ["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"];

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Wal {
            command: WalCommand::Inspect { dir },
        } => wal_inspect(&dir),
        command => client_command(command),
    }
}

fn wal_inspect(dir: &std::path::Path) -> ExitCode {
    match rocinante::storage::inspect::inspect(dir) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn client_command(command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run_client(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(2)
        }
        Err(CliError::Failed(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(1)
        }
    }
}

enum CliError {
    /// Exit code 2.
    Usage(String),
    /// Exit code 1.
    Failed(String),
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        match e {
            ClientError::BadEndpoints(m) => CliError::Usage(m),
            other => CliError::Failed(other.to_string()),
        }
    }
}

fn client_for(target: &Target) -> Result<Client, CliError> {
    let endpoints = match &target.spec {
        Some(path) => {
            let spec = ClusterSpec::load(path).map_err(|e| CliError::Usage(e.to_string()))?;
            spec.controllers.iter().map(|c| c.rest_addr()).collect()
        }
        None if target.endpoints.is_empty() => {
            DEFAULT_ENDPOINTS.iter().map(|e| e.to_string()).collect()
        }
        None => target.endpoints.clone(),
    };
    Ok(Client::new(endpoints, RetryPolicy::default())?)
}

async fn run_client(command: Command) -> Result<(), CliError> {
    match command {
        Command::Put {
            key,
            value,
            if_revision,
            target,
        } => {
            let client = client_for(&target)?;
            let r = client
                .put(key.as_bytes(), Bytes::from(value), if_revision)
                .await?;
            println!("OK revision {}", r.revision);
        }
        Command::Get { key, target } => {
            let client = client_for(&target)?;
            match client.get(key.as_bytes()).await? {
                Some(v) => println!("{}", String::from_utf8_lossy(&v.value)),
                None => return Err(CliError::Failed(format!("{key}: not found"))),
            }
        }
        Command::Del { key, target } => {
            let client = client_for(&target)?;
            let existed = client.delete(key.as_bytes(), None).await?;
            println!("{}", u8::from(existed));
        }
        Command::List { prefix, target } => list(&client_for(&target)?, &prefix).await?,
        Command::Status { target } => status(&client_for(&target)?).await?,
        Command::Members { command } => members(command).await?,
        Command::Leader {
            command: LeaderCommand::Transfer { id, target },
        } => {
            let client = admin_client_for(&target)?;
            let j = client.transfer_leader(&id).await?;
            println!("leader {}", j["leader"].as_str().unwrap_or(&id));
        }
        Command::Serve(_) | Command::Wal { .. } => {
            return Err(CliError::Usage("not a client command".into()));
        }
    }
    Ok(())
}

/// A client for membership commands: a join may stream a large snapshot before it answers.
fn admin_client_for(target: &Target) -> Result<Client, CliError> {
    let endpoints = client_for(target)?.endpoints().to_vec();
    let policy = RetryPolicy {
        request_timeout: std::time::Duration::from_secs(70),
        ..RetryPolicy::default()
    };
    Ok(Client::new(endpoints, policy)?)
}

async fn members(command: MembersCommand) -> Result<(), CliError> {
    let j = match command {
        MembersCommand::Add {
            endpoint,
            rest,
            learner,
            target,
        } => {
            let (address, port) = endpoint
                .rsplit_once(':')
                .and_then(|(a, p)| Some((a, p.parse::<u16>().ok()?)))
                .filter(|(a, p)| !a.is_empty() && *p > 0)
                .ok_or_else(|| CliError::Usage(format!("{endpoint}: expected ADDRESS:PORT")))?;
            let client = admin_client_for(&target)?;
            let j = client.add_member(address, port, rest, !learner).await?;
            println!("added {}", j["id"].as_str().unwrap_or("?"));
            j
        }
        MembersCommand::Remove { id, target } => {
            let client = admin_client_for(&target)?;
            let j = client.remove_member(&id).await?;
            println!("removed {id}");
            j
        }
    };
    for m in j["members"].as_array().into_iter().flatten() {
        println!(
            "{}\t{}:{}\trest {}\t{}",
            m["id"].as_str().unwrap_or("?"),
            m["address"].as_str().unwrap_or("?"),
            m["port"],
            m["rest"].as_str().unwrap_or("?"),
            if m["voter"].as_bool() == Some(true) {
                "voter"
            } else {
                "learner"
            }
        );
    }
    Ok(())
}

/// Page through every key under `prefix`.
async fn list(client: &Client, prefix: &str) -> Result<(), CliError> {
    let mut after: Option<Bytes> = None;
    loop {
        let (items, more) = client
            .list(prefix.as_bytes(), 1000, after.as_deref())
            .await?;
        for item in &items {
            println!(
                "{}\t{}",
                String::from_utf8_lossy(&item.key),
                String::from_utf8_lossy(&item.value)
            );
        }
        match items.last() {
            Some(last) if more => after = Some(last.key.clone()),
            _ => return Ok(()),
        }
    }
}

/// The status table: members from the first endpoint that answers, then each member's own
/// `/v1/status`. Lag = the highest commit index seen minus the member's applied index.
async fn status(client: &Client) -> Result<(), CliError> {
    let mut members: Vec<(String, String)> = Vec::new();
    for endpoint in client.endpoints() {
        if let Ok(s) = client.status_of(endpoint).await {
            for m in s["members"].as_array().into_iter().flatten() {
                let id = m["id"].as_str().unwrap_or("?").to_string();
                members.push((id, m["rest"].as_str().unwrap_or("").to_string()));
            }
            break;
        }
    }
    if members.is_empty() {
        return Err(CliError::Failed("no endpoint answered /v1/status".into()));
    }
    let mut views = Vec::new();
    for (_, rest) in &members {
        views.push(client.status_of(rest).await.ok());
    }
    let max_commit = views
        .iter()
        .flatten()
        .filter_map(|v| v["commit_index"].as_u64())
        .max();
    println!(
        "{:<18} {:<22} {:<10} {:>6} {:>10} {:>10} {:>6}",
        "ID", "REST", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG"
    );
    for ((id, rest), view) in members.iter().zip(&views) {
        match view {
            Some(v) => {
                let applied = v["applied_index"].as_u64().unwrap_or(0);
                println!(
                    "{:<18} {:<22} {:<10} {:>6} {:>10} {:>10} {:>6}",
                    id,
                    rest,
                    v["role"].as_str().unwrap_or("?"),
                    v["term"].as_u64().unwrap_or(0),
                    v["commit_index"].as_u64().unwrap_or(0),
                    applied,
                    max_commit.unwrap_or(0).saturating_sub(applied)
                );
            }
            None => println!("{id:<18} {rest:<22} unreachable"),
        }
    }
    Ok(())
}
