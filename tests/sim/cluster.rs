//! The `Sim`: N real Raft cores on a virtual clock, driven by one event queue and one seeded
//! RNG, each with a simulated durable storage, executing every `Ready` in the documented order.
//!
//! A node's turn (DESIGN.md §2, executed in `turn.rs`): feed it everything in its inbox, take
//! one `Ready`, send `messages_before_persist`, start the write ("fsync", which takes virtual
//! time), and only when the write completes: mark it durable, send `messages`, apply
//! `committed_entries`, serve reads, then call `persisted`/`applied`. Inputs that arrive while
//! the write is in flight wait in the inbox and are fed together at the next turn (that is
//! where batching happens). A crash can land at any point: a write in flight keeps only a
//! random prefix (see `storage`), and the messages and applies of that `Ready` never happen.
//!
//! Invariants: the checker runs after every `ready()`, every write, every send and every apply;
//! `nodes[i].log` is exactly what node i's Readys said its log is; the node ids are 1..=N.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rocinante::raft::{
    Config, Entry, Index, Message, MessageBody, NodeId, ProposeError, RaftNode, ReadError,
    ReadState, Ready, Term,
};

use super::checker::{Checker, Observed};
use super::network::{Drop, Event, EventQueue, Network, Time};
use super::snapshots::{Incoming, Outgoing};
use super::storage::DurableStorage;
use super::trace::{self, Trace};

/// A turn that keeps producing Readys this many times without settling is a livelock.
/// Delivered messages kept for replay (a sample, oldest dropped first).
const OLD_MESSAGES_MAX: usize = 128;

pub(crate) const TURNS_MAX: usize = 10_000;

/// How a simulation is set up. `Options::new(nodes, seed)` gives the defaults.
pub struct Options {
    /// Voters, ids 1..=nodes.
    pub nodes: usize,
    /// Learners of the initial configuration, ids after the voters' (thesis §4.2.1): they
    /// replicate the log but never vote, campaign or count toward a quorum.
    pub learners: usize,
    pub seed: u64,
    /// Virtual length of one core tick: 10 ms, so the default 10-20 tick election timeout is
    /// 100-200 ms and heartbeats go every 20 ms.
    pub tick_ms: Time,
    /// How long a write ("fsync") takes; a crash during it loses part of it.
    pub fsync_ms_min: Time,
    pub fsync_ms_max: Time,
    /// Adjusts each node's Config (node index, config).
    pub configure: Option<fn(usize, &mut Config)>,
    /// Keep every trace line (golden tests; `SIM_TRACE=1` prints it all on failure).
    pub keep_trace: bool,
    /// Every committed Normal payload must be unique (clients never retry).
    pub unique_payloads: bool,
    /// Printed on failure: the one command that replays this run.
    pub replay: String,
    /// Fault injection into the simulator itself, to prove the checker bites: at each crash
    /// the disk also loses up to 3 entries it had acknowledged as durable (a lying fsync).
    pub lying_disk: bool,
    /// Each node snapshots and compacts once its applied index passes its last snapshot by
    /// this many entries (`None`: never, the log grows).
    pub snapshot_every: Option<u64>,
    /// Bytes per InstallSnapshot chunk (small, so transfers take several chunks).
    pub snapshot_chunk_bytes: usize,
    /// Nodes with an index at or above this start outside the cluster, empty, as joiners
    /// (learners-to-be, `rocinante serve --join`); `None`: every node is a voter.
    pub initial_voters: Option<usize>,
    /// The sweep's nemesis also removes, adds and promotes nodes.
    pub membership_changes: bool,
    /// Overrides of the core's defaults, the same on every node.
    pub tuning: Option<Tuning>,
    /// Check lease reads (`has_lease`); `SIM_LEASE_CHECK=0` turns it off.
    pub lease_check: bool,
    /// The storage writes a Ready's entries before its hard state, so a torn write can keep
    /// entries of a term the durable hard state has not reached (the sweep picks it per seed:
    /// the core must not depend on the storage's record order).
    pub hard_state_last: bool,
}

/// Core parameters the sweep varies per seed, to reach the code paths that the defaults
/// never do (one message in flight, one entry per message, tiny queues, no pre-vote...).
#[derive(Clone, Debug)]
pub struct Tuning {
    pub pre_vote: bool,
    pub check_quorum: bool,
    pub election_ticks_min: u64,
    pub election_ticks_max: u64,
    pub heartbeat_ticks: u64,
    pub inflight_msgs_max: usize,
    pub inflight_bytes_max: u64,
    pub msg_bytes_max: u64,
    pub uncommitted_entries_max: usize,
    pub pending_reads_max: usize,
    pub committed_bytes_max: u64,
}

impl Tuning {
    pub fn random(rng: &mut StdRng) -> Tuning {
        let election_ticks_min = rng.random_range(5..15);
        Tuning {
            pre_vote: rng.random_bool(0.7),
            check_quorum: rng.random_bool(0.7),
            election_ticks_min,
            election_ticks_max: election_ticks_min + rng.random_range(3..15),
            heartbeat_ticks: rng.random_range(1..=(election_ticks_min / 3).max(1)),
            inflight_msgs_max: rng.random_range(1..8),
            inflight_bytes_max: rng.random_range(30..3_000),
            msg_bytes_max: rng.random_range(1..500),
            uncommitted_entries_max: rng.random_range(1..50),
            pending_reads_max: rng.random_range(1..10),
            committed_bytes_max: rng.random_range(1..1_000),
        }
    }

    fn apply(&self, c: &mut Config) {
        c.pre_vote = self.pre_vote;
        c.check_quorum = self.check_quorum;
        c.election_ticks_min = self.election_ticks_min;
        c.election_ticks_max = self.election_ticks_max;
        c.heartbeat_ticks = self.heartbeat_ticks;
        c.inflight_msgs_max = self.inflight_msgs_max;
        c.inflight_bytes_max = self.inflight_bytes_max;
        c.msg_bytes_max = self.msg_bytes_max;
        c.uncommitted_entries_max = self.uncommitted_entries_max;
        c.pending_reads_max = self.pending_reads_max;
        c.committed_bytes_max = self.committed_bytes_max;
    }
}

impl Options {
    /// `nodes` voters (ids 1..=nodes), no learners.
    pub fn new(nodes: usize, seed: u64) -> Options {
        Options {
            nodes,
            seed,
            tick_ms: 10,
            fsync_ms_min: 1,
            fsync_ms_max: 2,
            configure: None,
            keep_trace: std::env::var("SIM_TRACE").is_ok_and(|v| v == "1"),
            unique_payloads: false,
            replay: String::from("cargo test --test simulation <this test> -- --nocapture"),
            lying_disk: false,
            snapshot_every: None,
            snapshot_chunk_bytes: 16,
            initial_voters: None,
            membership_changes: false,
            learners: 0,
            tuning: None,
            lease_check: !std::env::var("SIM_LEASE_CHECK").is_ok_and(|v| v == "0"),
            hard_state_last: false,
        }
    }
}

/// One input waiting for a node's next turn.
pub(crate) enum Input {
    Msg(Message),
    Tick,
    Propose(usize),
    Read(usize),
    Transfer(NodeId),
    Campaign,
    /// A membership change proposed by an operator.
    ConfChange(rocinante::raft::ConfChange),
}

/// What became of a client proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Waiting in the node's inbox.
    Queued,
    Rejected(ProposeError),
    /// The leader gave it this index and term; not yet known committed.
    Accepted(Index, Term),
    Committed(Index),
    /// Its index was committed with another entry.
    Lost,
    /// The node crashed before it took the proposal (the client sees a broken connection).
    Dropped,
}

pub struct Proposal {
    pub node: usize,
    pub data: Bytes,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    Queued,
    Rejected(ReadError),
    Pending,
    Served(Index),
    Failed,
    Dropped,
}

pub struct ReadRequest {
    pub node: usize,
    pub incarnation: u32,
    /// The cluster-wide commit index when the read was requested: it must see at least this.
    pub required: Index,
    pub outcome: ReadOutcome,
}

/// Message counters (the 6.5840 RPC-count test and the backup test read them).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Requests sent (RequestVote, AppendEntries, TimeoutNow, ReadIndexRequest): "RPCs".
    pub rpcs: u64,
    pub messages: u64,
    /// Entry bytes carried by AppendEntries.
    pub entry_bytes: u64,
    pub append_rejects: u64,
    pub crashes: usize,
    /// Snapshots taken (saved and compacted) and installed from a leader.
    pub snapshots_taken: u64,
    pub snapshots_installed: u64,
    /// Snapshot chunks sent, and membership changes a leader accepted.
    pub snapshot_chunks: u64,
    pub conf_changes: u64,
    pub delivered: u64,
}

pub struct SimNode {
    pub raft: Option<RaftNode>,
    /// Bumped at each crash; a write completion of an older incarnation is ignored.
    pub incarnation: u32,
    pub storage: DurableStorage,
    /// The in-memory log, as the node's Readys described it.
    pub log: Vec<Entry>,
    /// The Ready whose write is in flight.
    pub(crate) inflight: Option<Ready>,
    pub(crate) inbox: VecDeque<Input>,
    pub seen: Observed,
    /// Entries applied in this incarnation (position i - 1 holds index i).
    pub applied_log: Vec<Entry>,
    pub(crate) waiting_reads: Vec<ReadState>,
    /// False freezes the node's clock (golden scenarios).
    pub ticking: bool,
    /// State digest after applying index i, at position i - 1 (see `storage::digest`).
    pub digests: Vec<u64>,
    /// Snapshot transfers this node streams, per peer (`snapshots.rs`).
    pub outgoing: BTreeMap<NodeId, Outgoing>,
    /// The snapshot this node is receiving.
    pub incoming: Option<Incoming>,
    /// An installed snapshot's state, waiting for its `Ready::snapshot`.
    pub staged: Option<(rocinante::raft::SnapshotMeta, u64)>,
    /// The clock of this incarnation was frozen at some point: its time no longer advances
    /// with the others', so lease reads (which assume it does) are not checked on it.
    pub clock_skewed: bool,
}

/// Decides, per message sent, whether it may go (golden scenarios script losses with it).
pub type MessageFilter = Box<dyn Fn(&Message) -> bool>;

pub struct Sim {
    pub opts: Options,
    pub now: Time,
    pub rng: StdRng,
    pub queue: EventQueue,
    pub net: Network,
    pub nodes: Vec<SimNode>,
    pub checker: Checker,
    pub trace: Trace,
    pub proposals: Vec<Proposal>,
    pub(crate) accepted_at: BTreeMap<Index, Vec<usize>>,
    pub reads: Vec<ReadRequest>,
    pub stats: Stats,
    /// Messages for which this returns false are dropped at send (golden scenarios).
    pub filter: Option<MessageFilter>,
    /// A sample of delivered messages, replayed by the nemesis long after (stale terms).
    pub(crate) old_messages: VecDeque<Message>,
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with quiet failures (for tests that expect the checker to fire): a failure unwinds
/// with its message as a `String` payload instead of printing a panic.
pub fn expect_failures<T>(
    f: impl FnOnce() -> T + std::panic::UnwindSafe,
) -> std::thread::Result<T> {
    QUIET.with(|q| q.set(true));
    let r = std::panic::catch_unwind(f);
    QUIET.with(|q| q.set(false));
    r
}

/// splitmix64: derives independent per-node seeds from the simulation seed.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub fn id(node: usize) -> NodeId {
    NodeId(node as u64 + 1)
}

pub fn index_of(id: NodeId) -> usize {
    id.0 as usize - 1
}

impl Sim {
    pub fn new(opts: Options) -> Sim {
        let n = opts.nodes + opts.learners;
        let mut sim = Sim {
            now: 0,
            rng: StdRng::seed_from_u64(opts.seed),
            queue: EventQueue::default(),
            net: Network::new(n),
            nodes: Vec::with_capacity(n),
            checker: Checker::new(opts.nodes, opts.unique_payloads),
            trace: Trace::new(opts.keep_trace),
            proposals: Vec::new(),
            accepted_at: BTreeMap::new(),
            reads: Vec::new(),
            stats: Stats::default(),
            filter: None,
            old_messages: VecDeque::new(),
            opts,
        };
        for i in 0..n {
            let raft = RaftNode::new(sim.config(i, 0), Default::default());
            sim.nodes.push(SimNode {
                raft: Some(raft),
                incarnation: 0,
                storage: DurableStorage::default(),
                log: Vec::new(),
                inflight: None,
                inbox: VecDeque::new(),
                seen: Observed::default(),
                applied_log: Vec::new(),
                waiting_reads: Vec::new(),
                ticking: true,
                digests: Vec::new(),
                outgoing: BTreeMap::new(),
                incoming: None,
                staged: None,
                clock_skewed: false,
            });
            // Nodes' clocks are not in phase, as on real machines.
            let phase = sim.rng.random_range(0..sim.opts.tick_ms);
            sim.queue.push(phase, Event::Tick(i));
        }
        sim
    }

    pub(crate) fn config(&self, node: usize, incarnation: u32) -> Config {
        let k = self.opts.initial_voters.unwrap_or(self.opts.nodes);
        let voters = (0..k.min(self.opts.nodes)).map(id).collect();
        let mut learners: Vec<NodeId> = (self.opts.nodes..self.opts.nodes + self.opts.learners)
            .map(id)
            .collect();
        if node >= k && node < self.opts.nodes {
            // A joiner: it knows the cluster, and waits as a learner until a member adds it.
            learners.push(id(node));
        }
        let seed = mix(self.opts.seed ^ mix(node as u64) ^ mix(u64::from(incarnation) << 32));
        let mut c = Config::new(id(node), voters, seed);
        c.learners = learners;
        if let Some(t) = &self.opts.tuning {
            t.apply(&mut c);
        }
        if let Some(f) = self.opts.configure {
            f(node, &mut c);
        }
        if let Err(e) = c.validate() {
            self.fail(&format!("invalid config for n{}: {e} ({c:?})", node + 1));
        }
        c
    }

    /// Fails the run: the seed, the replay command and the tail of the trace. Under
    /// `expect_failures` the failure unwinds quietly with the message as its payload.
    pub fn fail(&self, what: &str) -> ! {
        if QUIET.with(|q| q.get()) {
            std::panic::resume_unwind(Box::new(format!("seed {}: {what}", self.opts.seed)));
        }
        if let Some(all) = self
            .trace
            .full()
            .filter(|_| std::env::var("SIM_TRACE").is_ok_and(|v| v == "1"))
        {
            eprintln!("full trace:\n{}", all.join("\n"));
        }
        panic!(
            "SIMULATION FAILURE at {}ms, seed {} ({} nodes): {what}\nreplay: {}\nlast trace lines:\n{}",
            self.now,
            self.opts.seed,
            self.opts.nodes,
            self.opts.replay,
            self.trace.recent()
        )
    }

    pub fn check<T>(&self, r: Result<T, String>) -> T {
        r.unwrap_or_else(|e| self.fail(&e))
    }

    pub fn log(&mut self, text: String) {
        self.trace.line(self.now, text);
    }

    pub fn is_up(&self, node: usize) -> bool {
        self.nodes[node].raft.is_some()
    }

    pub fn raft(&self, node: usize) -> Option<&RaftNode> {
        self.nodes[node].raft.as_ref()
    }

    // ---- the event loop ----

    /// Runs the next event; false when there is none.
    pub fn step(&mut self) -> bool {
        let Some((at, event)) = self.queue.pop() else {
            return false;
        };
        self.now = at;
        match event {
            Event::Tick(n) => {
                self.queue.push(at + self.opts.tick_ms, Event::Tick(n));
                if self.nodes[n].ticking {
                    self.input(n, Input::Tick);
                }
            }
            Event::Deliver(msg) => self.deliver(msg),
            Event::PersistDone { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation {
                    if let Some(rd) = self.nodes[node].inflight.take() {
                        self.finish_ready(node, rd);
                        self.run_turns(node);
                    }
                }
            }
        }
        true
    }

    /// Runs every event up to and including virtual time `t`.
    pub fn run_until(&mut self, t: Time) {
        while self.queue.peek_time().is_some_and(|at| at <= t) {
            self.step();
        }
        self.now = self.now.max(t);
    }

    pub fn run_for(&mut self, ms: Time) {
        self.run_until(self.now + ms);
    }

    /// Runs until `done` holds (checked every millisecond of virtual time) or `limit_ms` passed.
    pub fn run_until_true(&mut self, limit_ms: Time, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now + limit_ms;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.run_for(1);
        }
        done(self)
    }

    fn deliver(&mut self, msg: Message) {
        let (from, to) = (index_of(msg.from), index_of(msg.to));
        if !self.net.link_open(from, to) {
            self.log(format!("{} DROPPED (cut)", trace::message(&msg)));
        } else if !self.is_up(to) {
            self.log(format!(
                "{} DROPPED (n{} down)",
                trace::message(&msg),
                to + 1
            ));
        } else {
            self.log(trace::message(&msg));
            // Keep every 16th delivered message for the nemesis to replay much later.
            self.stats.delivered += 1;
            if self.stats.delivered % 16 == 0 {
                if self.old_messages.len() == OLD_MESSAGES_MAX {
                    self.old_messages.pop_front();
                }
                self.old_messages.push_back(msg.clone());
            }
            self.input(to, Input::Msg(msg));
        }
    }

    pub(crate) fn send(&mut self, msg: Message) {
        let (from, to) = (index_of(msg.from), index_of(msg.to));
        if msg.to == super::nemesis::STRANGER {
            // Heard (thesis §4.1), but nothing reaches a node outside the cluster.
            self.log(format!("{} DROPPED (stranger)", trace::message(&msg)));
            return;
        }
        if to >= self.nodes.len() {
            self.fail(&format!("n{} sent to unknown node {}", from + 1, msg.to.0));
        }
        self.stats.messages += 1;
        match &msg.body {
            MessageBody::AppendEntries { entries, .. } => {
                self.stats.rpcs += 1;
                self.stats.entry_bytes += entries.iter().map(|e| e.data.len() as u64).sum::<u64>();
            }
            MessageBody::AppendEntriesResponse { success: false, .. } => {
                self.stats.append_rejects += 1
            }
            MessageBody::RequestVote { .. }
            | MessageBody::InstallSnapshot { .. }
            | MessageBody::TimeoutNow
            | MessageBody::ReadIndexRequest { .. } => self.stats.rpcs += 1,
            _ => {}
        }
        if self.filter.as_ref().is_some_and(|f| !f(&msg)) {
            self.log(format!("{} DROPPED (filter)", trace::message(&msg)));
            return;
        }
        match self.net.route(&mut self.rng, self.now, from, to) {
            Err(Drop::Cut) => self.log(format!("{} DROPPED (cut)", trace::message(&msg))),
            Err(Drop::Lost) => self.log(format!("{} DROPPED (lost)", trace::message(&msg))),
            Ok(delays) => {
                for at in delays {
                    self.queue.push(at, Event::Deliver(msg.clone()));
                }
            }
        }
    }

    // ---- a node's turn ----

    pub(crate) fn input(&mut self, n: usize, input: Input) {
        if !self.is_up(n) {
            self.drop_input(input);
            return;
        }
        self.nodes[n].inbox.push_back(input);
        if self.nodes[n].inflight.is_none() {
            self.run_turns(n);
        }
    }

    pub(crate) fn drop_input(&mut self, input: Input) {
        match input {
            Input::Propose(p) => self.proposals[p].outcome = Outcome::Dropped,
            Input::Read(r) => self.reads[r].outcome = ReadOutcome::Dropped,
            _ => {}
        }
    }
}
