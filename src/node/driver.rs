//! The event loop: each turn takes what arrived (bounded per turn), steps the core with all of
//! it, takes ONE `Ready` and executes it (`ready.rs`), then publishes the status.
//!
//! Turn order: wait until something arrives, a tick is due, or the core already has a Ready
//! -> drain inputs (peer batches, client requests) up to `turn_batches_max` /
//! `turn_requests_max` -> fire due ticks -> one `read_index` for all linearizable reads of the
//! turn -> housekeeping proposal when due -> execute one Ready -> expire deadlines -> publish.
//! Everything that arrives while a turn runs (including during its fsync) is the next turn's
//! batch: that is the group commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;

use crate::kv::Store;
use crate::kv::command::{Command, Idempotency, Op};
use crate::raft::{
    Config, Index, Membership, Message, MessageBody, NodeId, ProposeError, RaftNode, ReadError,
    ReadId, Restored, Role, Term,
};
use crate::storage::{Storage, StorageOptions};
use crate::transport::Transport;

use super::MemberAddrs;
use super::handle::{AnswerMeta, Consistency, NodeError, Status};
use super::members::PendingAdmin;
use super::pending::{PendingReads, PendingWrites, Read, Request, WriteReply};
use super::snapshot::{Snapshots, restore_store};
use super::status::{self, Snapshot};
use super::{NodeOptions, NodeRunError, NodeStartError};

/// At most this many ticks are fired in one turn after a stall (a long fsync); the rest are
/// skipped, so a stalled node does not fire a burst of election timeouts at once.
const CATCH_UP_TICKS_MAX: u32 = 3;

/// What `start` hands to the loop thread.
pub(super) struct Parts {
    pub opts: Arc<NodeOptions>,
    pub transport: Transport,
    pub inbox: mpsc::Receiver<Vec<Message>>,
    pub requests: mpsc::Receiver<Request>,
    pub status: watch::Sender<Status>,
    pub members: crate::transport::server::Members,
}

/// The loop's state. Only this thread touches `core`, `storage` and `store`.
pub(super) struct Driver {
    pub(super) opts: Arc<NodeOptions>,
    pub(super) core: RaftNode,
    pub(super) storage: Storage,
    pub(super) store: Store,
    pub(super) transport: Transport,
    inbox: mpsc::Receiver<Vec<Message>>,
    requests: mpsc::Receiver<Request>,
    status: watch::Sender<Status>,
    pub(super) writes: PendingWrites,
    pub(super) reads: PendingReads,
    /// This turn's linearizable reads, sent to the core as one ReadIndex request.
    read_batch: Vec<Read>,
    next_read_id: u64,
    /// Index of the last entry applied to `store` (`last_applied`, §5.3 figure 2).
    pub(super) last_applied: Index,
    pub(super) snapshot_index: Index,
    /// The commit index seen when a leader first became known: `ready` once applied.
    startup_commit: Option<Index>,
    /// Term of the entry at `last_applied`. A leader knows the commit index only once an
    /// entry of its own term is committed (thesis §6.4), so it is ready only once that
    /// entry is applied too.
    pub(super) last_applied_term: Term,
    /// The last `leader_time_ms` stamped: stamps never go backwards on this leader.
    last_stamp_ms: u64,
    next_housekeeping: Instant,
    /// Where every known member listens: the spec's, plus members added by changes.
    pub(super) peers: BTreeMap<NodeId, MemberAddrs>,
    /// The senders the gRPC service accepts (shared with it; grown with `peers`).
    pub(super) members: crate::transport::server::Members,
    pub(super) snapshots: Snapshots,
    /// The membership change or transfer being carried out (`members.rs`).
    pub(super) admin: Option<PendingAdmin>,
    /// The membership last published in the status.
    published_membership: Option<Membership>,
}

/// Build the loop on this (dedicated) thread and run it to completion.
pub(super) fn run_on_this_thread(
    parts: Parts,
    shutdown: CancellationToken,
    init: oneshot::Sender<Result<(), NodeStartError>>,
) -> Result<(), NodeRunError> {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = init.send(Err(NodeStartError::Thread(e)));
            return Ok(());
        }
    };
    let driver = match Driver::recover(parts) {
        Ok(d) => d,
        Err(e) => {
            let _ = init.send(Err(e));
            return Ok(());
        }
    };
    let _ = init.send(Ok(()));
    rt.block_on(driver.run(shutdown))
}

impl Driver {
    /// Open storage and rebuild the core from what it recovered. The store starts from the
    /// latest snapshot (or empty): the core hands every committed entry after it again once it
    /// learns the commit index, and they are re-applied in order.
    fn recover(parts: Parts) -> Result<Driver, NodeStartError> {
        let opts = parts.opts;
        let storage_options = StorageOptions {
            segment_bytes_max: opts.segment_bytes_max,
            fsync: opts.fsync,
        };
        let (storage, recovered) = Storage::open(&opts.data_dir, storage_options)?;
        for repair in &recovered.repairs {
            tracing::warn!(node = %opts.id, "storage repair: {repair}");
        }
        let mut peers = opts.peers.clone();
        let (store, snapshot, latest) = restore_store(&opts, recovered.snapshot, &mut peers)?;
        let snapshot_index = snapshot
            .as_ref()
            .map(|m| m.last_included_index)
            .unwrap_or_default();
        tracing::info!(
            node = %opts.id,
            term = %recovered.hard_state.current_term,
            snapshot_index = %snapshot_index,
            entries = recovered.entries.len(),
            "recovered"
        );
        let restored = Restored {
            hard_state: recovered.hard_state,
            snapshot,
            entries: recovered.entries,
        };
        let entries = restored.entries.clone();
        let core = RaftNode::new(core_config(&opts), restored);
        let mut d = Driver {
            next_housekeeping: Instant::now()
                + Duration::from_millis(opts.housekeeping_interval_ms),
            opts,
            core,
            storage,
            store,
            transport: parts.transport,
            inbox: parts.inbox,
            requests: parts.requests,
            status: parts.status,
            writes: PendingWrites::default(),
            reads: PendingReads::default(),
            read_batch: Vec::new(),
            next_read_id: 1,
            last_applied: snapshot_index,
            snapshot_index,
            startup_commit: None,
            last_applied_term: Term(0),
            last_stamp_ms: 0,
            peers: BTreeMap::new(),
            members: parts.members,
            snapshots: Snapshots::new(latest),
            admin: None,
            published_membership: None,
        };
        // Members known from the spec, the snapshot and the log (ConfChange contexts).
        for (id, a) in peers {
            d.learn_member(id, a);
        }
        d.learn_from_entries(&entries);
        Ok(d)
    }

    async fn run(mut self, shutdown: CancellationToken) -> Result<(), NodeRunError> {
        let tick = Duration::from_millis(self.opts.tick_ms);
        let mut next_tick = tokio::time::Instant::now() + tick;
        let result = loop {
            // Checked every turn: a core that always has a Ready must not delay the stop.
            if shutdown.is_cancelled() {
                break Ok(());
            }
            if !self.core.has_ready() {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break Ok(()),
                    _ = sleep_until(next_tick) => {}
                    Some(batch) = self.inbox.recv() => self.step_batch(batch),
                    Some(req) = self.requests.recv() => self.on_request(req),
                }
            }
            if let Err(e) = self.turn(&mut next_tick, tick, true) {
                break Err(e);
            }
        };
        match result {
            Ok(()) => self.graceful_stop(tick).await,
            Err(e) => {
                tracing::error!(node = %self.opts.id, error = %e, "fatal storage error; stopping");
                // Entries may already be on followers: the outcome of every write is unknown.
                self.writes.fail_all(NodeError::Timeout);
                self.reads
                    .fail_all(NodeError::Unavailable("node stopped".into()));
                Err(e)
            }
        }
    }

    /// One turn after the wake-up: drain, tick, read index, housekeeping, Ready, deadlines.
    fn turn(
        &mut self,
        next_tick: &mut tokio::time::Instant,
        tick: Duration,
        accept_requests: bool,
    ) -> Result<(), NodeRunError> {
        self.drain_inputs(accept_requests);
        self.fire_due_ticks(next_tick, tick);
        self.flush_read_batch();
        self.housekeeping();
        if self.core.has_ready() {
            let rd = self.core.ready();
            self.execute(rd)?;
        }
        self.maybe_snapshot()?;
        self.tick_snapshot_sends();
        self.check_admin();
        let now = Instant::now();
        self.writes.expire(now);
        self.reads.expire(now);
        self.publish_status();
        Ok(())
    }

    fn drain_inputs(&mut self, accept_requests: bool) {
        for _ in 0..self.opts.turn_batches_max {
            match self.inbox.try_recv() {
                Ok(batch) => self.step_batch(batch),
                Err(_) => break,
            }
        }
        if !accept_requests {
            return;
        }
        for _ in 0..self.opts.turn_requests_max {
            match self.requests.try_recv() {
                Ok(req) => self.on_request(req),
                Err(_) => break,
            }
        }
    }

    fn step_batch(&mut self, batch: Vec<Message>) {
        for msg in batch {
            match msg.body {
                MessageBody::InstallSnapshot { .. }
                | MessageBody::InstallSnapshotResponse { .. } => {
                    self.core.step(msg.clone());
                    self.on_snapshot_message(msg);
                }
                _ => self.core.step(msg),
            }
        }
    }

    fn fire_due_ticks(&mut self, next_tick: &mut tokio::time::Instant, tick: Duration) {
        let now = tokio::time::Instant::now();
        let mut fired = 0;
        while *next_tick <= now {
            if fired < CATCH_UP_TICKS_MAX {
                self.core.tick();
                fired += 1;
            }
            *next_tick += tick;
        }
    }

    fn on_request(&mut self, req: Request) {
        match req {
            Request::Write {
                op,
                idempotency,
                reply,
            } => self.propose(op, idempotency, Some(reply)),
            Request::Read { consistency, read } => match consistency {
                Consistency::Linearizable => self.read_batch.push(read),
                Consistency::Lease => {
                    // Besides the lease (thesis §6.4.1), a new leader must have applied an
                    // entry of its own term: before that it may not know everything committed.
                    if self.core.role() == Role::Leader
                        && self.core.has_lease()
                        && self.last_applied_term == self.core.term()
                    {
                        self.serve(read);
                    } else {
                        read.fail(NodeError::NotLeader {
                            leader: self.leader_addr(),
                        });
                    }
                }
                Consistency::Stale => self.serve(read),
            },
            Request::Admin(req) => self.on_admin(req),
        }
    }

    /// Propose a write (stamped with this leader's clock) or answer why not at once.
    fn propose(&mut self, op: Op, idempotency: Option<Idempotency>, reply: Option<WriteReply>) {
        let refuse = |reply: Option<WriteReply>, err: NodeError| {
            if let Some(r) = reply {
                let _ = r.send(Err(err));
            }
        };
        if self.core.role() != Role::Leader {
            let leader = self.leader_addr();
            return refuse(reply, NodeError::NotLeader { leader });
        }
        // A retry whose answer is already applied is answered from the store without a new
        // entry: the record is committed state, so the answer is the one the first got.
        if let Some(idem) = &idempotency
            && let Some(applied) = self.store.replay(idem)
        {
            if let Some(r) = reply {
                let _ = r.send(Ok((applied, self.meta())));
            }
            return;
        }
        let cmd = Command {
            leader_time_ms: self.stamp_ms(),
            idempotency,
            op,
        };
        let data = Bytes::from(cmd.encode());
        match self.core.propose(data) {
            Ok((index, term)) => {
                if let Some(r) = reply {
                    let deadline = Instant::now() + self.request_timeout();
                    self.writes.insert(index, term, r, deadline);
                }
            }
            Err(ProposeError::NotLeader { leader }) => {
                let leader = leader.and_then(|id| self.rest_of(id));
                refuse(reply, NodeError::NotLeader { leader })
            }
            Err(ProposeError::Transferring) => refuse(
                reply,
                NodeError::Unavailable("leadership transfer in progress".into()),
            ),
            Err(ProposeError::Busy) => refuse(
                reply,
                NodeError::Unavailable("too many uncommitted writes".into()),
            ),
            // Only membership changes get these; a Normal proposal never does.
            Err(
                e @ (ProposeError::ConfChangeInProgress | ProposeError::InvalidConfChange { .. }),
            ) => refuse(reply, NodeError::Unavailable(e.to_string())),
        }
    }

    /// Every linearizable read of this turn joins one ReadIndex round (thesis §6.4).
    fn flush_read_batch(&mut self) {
        if self.read_batch.is_empty() {
            return;
        }
        let reads = std::mem::take(&mut self.read_batch);
        let id = ReadId(self.next_read_id);
        self.next_read_id += 1;
        match self.core.read_index(id) {
            Ok(()) => {
                let deadline = Instant::now() + self.request_timeout();
                self.reads.insert(id, reads, deadline);
            }
            Err(e) => {
                let err = match e {
                    ReadError::NoLeader => NodeError::Unavailable("no leader known".into()),
                    ReadError::Busy => NodeError::Unavailable("too many pending reads".into()),
                };
                for r in reads {
                    r.fail(err.clone());
                }
            }
        }
    }

    /// A leader periodically proposes `Op::Tick` so idempotency records expire everywhere at
    /// the same log position (the state machine only knows time through the log).
    fn housekeeping(&mut self) {
        let now = Instant::now();
        if now < self.next_housekeeping {
            return;
        }
        self.next_housekeeping = now + Duration::from_millis(self.opts.housekeeping_interval_ms);
        if self.core.role() == Role::Leader {
            self.propose(Op::Tick, None, None);
        }
    }

    fn stamp_ms(&mut self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.last_stamp_ms = self.last_stamp_ms.max(now);
        self.last_stamp_ms
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.opts.request_timeout_ms)
    }

    pub(super) fn rest_of(&self, id: NodeId) -> Option<(NodeId, String)> {
        self.peers.get(&id).map(|a| (id, a.rest.clone()))
    }

    pub(super) fn leader_addr(&self) -> Option<(NodeId, String)> {
        self.core.leader().and_then(|id| self.rest_of(id))
    }

    pub(super) fn meta(&self) -> AnswerMeta {
        AnswerMeta {
            node_id: self.opts.id,
            leader_id: self.core.leader(),
            term: self.core.term(),
            raft_index: self.core.commit_index(),
        }
    }

    fn publish_status(&mut self) {
        let leader = self.core.leader();
        if leader.is_some() && self.startup_commit.is_none() {
            self.startup_commit = Some(self.core.commit_index());
        }
        let role = self.core.role();
        let ready = match role {
            Role::Leader => self.last_applied_term == self.core.term(),
            _ => leader.is_some() && self.startup_commit.is_some_and(|c| self.last_applied >= c),
        };
        let progress = if role == Role::Leader {
            self.core.progress()
        } else {
            Vec::new()
        };
        let snap = Snapshot {
            role,
            term: self.core.term(),
            leader: leader.and_then(|id| self.peers.get(&id).map(|a| (id, a.rest.as_str()))),
            commit_index: self.core.commit_index(),
            applied_index: self.last_applied,
            last_log_index: self.core.last_index(),
            snapshot_index: self.snapshot_index,
            ready,
            progress: &progress,
        };
        let membership = self.core.membership();
        let members = (self.published_membership.as_ref() != Some(&membership))
            .then(|| self.member_statuses());
        self.published_membership = Some(membership);
        self.status.send_if_modified(|s| {
            let changed = members.is_some();
            if let Some(m) = members {
                s.members = m;
            }
            status::refresh(s, &snap) || changed
        });
    }

    /// Stop accepting, let in-flight requests finish (up to `shutdown_grace_ms`), answer the
    /// rest, and return. Every append already fsynced, so there is nothing left to flush.
    async fn graceful_stop(&mut self, tick: Duration) -> Result<(), NodeRunError> {
        self.requests.close();
        while let Ok(req) = self.requests.try_recv() {
            refuse_stopping(req);
        }
        self.hand_over_leadership();
        let grace =
            tokio::time::Instant::now() + Duration::from_millis(self.opts.shutdown_grace_ms);
        let mut next_tick = tokio::time::Instant::now() + tick;
        while tokio::time::Instant::now() < grace
            && (!self.writes.is_empty() || !self.reads.is_empty() || self.transferring())
        {
            if !self.core.has_ready() {
                tokio::select! {
                    _ = sleep_until(next_tick.min(grace)) => {}
                    Some(batch) = self.inbox.recv() => self.step_batch(batch),
                }
            }
            self.turn(&mut next_tick, tick, false)?;
        }
        self.writes.fail_all(NodeError::Timeout);
        self.reads
            .fail_all(NodeError::Unavailable("node is stopping".into()));
        self.finish_snapshot_write()?;
        tracing::info!(node = %self.opts.id, "stopped");
        Ok(())
    }

    /// A leader that stops hands leadership to its most caught-up peer (thesis §3.10), so the
    /// cluster does not wait an election timeout.
    fn hand_over_leadership(&mut self) {
        if self.core.role() != Role::Leader {
            return;
        }
        let best = self
            .core
            .progress()
            .into_iter()
            .filter(|(id, _)| *id != self.opts.id && self.core.membership().voters.contains(id))
            .max_by_key(|(_, m)| *m);
        if let Some((to, _)) = best {
            self.core.transfer_leadership(to);
        }
    }

    fn transferring(&self) -> bool {
        self.core.transferring_to().is_some()
    }
}

fn refuse_stopping(req: Request) {
    let err = NodeError::Unavailable("node is stopping".into());
    match req {
        Request::Write { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Request::Read { read, .. } => read.fail(err),
        Request::Admin(_) => {} // dropping the reply answers "node is stopping"
    }
}

fn core_config(opts: &NodeOptions) -> Config {
    let seed = opts.seed.unwrap_or_else(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        opts.id.0 ^ nanos
    });
    let mut config = Config::new(opts.id, opts.voters.clone(), seed);
    if opts.join {
        // A joiner knows the cluster's voters and waits as a learner until it is added
        // (a snapshot or the log then brings the real membership).
        config.voters.retain(|v| *v != opts.id);
        config.learners = vec![opts.id];
    }
    config.compaction_tail_entries = opts.compaction_tail_entries;
    // The core asks for a snapshot again if the runtime's transfer went silent for twice
    // the runtime's own transfer timeout.
    config.snapshot_timeout_ticks =
        (2 * opts.snapshot_transfer_timeout_ms / opts.tick_ms.max(1)).max(1);
    config.election_ticks_min = opts.election_ticks_min;
    config.election_ticks_max = opts.election_ticks_max;
    config.heartbeat_ticks = opts.heartbeat_ticks;
    config.uncommitted_entries_max = opts.uncommitted_entries_max;
    config
}
