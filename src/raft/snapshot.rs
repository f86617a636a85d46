//! Snapshots and log compaction (§7), split so that the snapshot's bytes never pass through
//! the core: the core decides *when* and *what* (an index, a term, a membership); the runtime
//! owns the bytes (serializing the state machine, the files, the chunked transfer).
//!
//! Compaction, on any node: the runtime snapshots its state machine at an applied index
//! (`snapshot_meta` gives the metadata to store with it), saves it durably, then calls
//! `compact`; the core forgets its log up to that index, less `compaction_tail_entries` kept
//! for slow followers (a follower just behind is cheaper to feed entries than a snapshot).
//!
//! Sending (leader): a peer whose `next_index` is at or below the log's offset can only be
//! brought up to date by a snapshot. Its progress enters Snapshot mode and the peer appears in
//! `Ready::snapshot_requests`; the runtime streams its latest snapshot to it in
//! `InstallSnapshot` chunks (term from `term()`), resuming from the `next_offset` the peer
//! answers. Every `InstallSnapshotResponse` is also stepped into the core: a partial one shows
//! the transfer is alive, the final one (sent by the follower's core once the snapshot is
//! durable) moves the peer's match_index to the snapshot and probing resumes after it. The
//! runtime reports a broken transfer with `report_snapshot(peer, false)`.
//!
//! Receiving (follower): each chunk is stepped into the core first, which applies the term
//! rules (§5.1) and resets the election timer; `accepts_snapshot_from` then says whether the
//! chunk comes from the current leader. When all chunks are in, the runtime calls
//! `install_snapshot`; the core resets its log (keeping a matching suffix, §7), emits the
//! metadata in `Ready::snapshot` (persist it, then load it into the state machine before
//! applying anything after it), and queues the final acknowledgement behind the persist step.
//!
//! Invariants: `self.snapshot` is the latest snapshot this node made durable or is making
//! durable in the current `Ready`; the log's offset is at or below its index.

use super::membership::membership_of;
use super::message::MessageBody;
use super::node::RaftNode;
use super::progress::Mode;
use super::role::RoleState;
use super::types::{Index, NodeId, SnapshotMeta, Term};

impl RaftNode {
    /// The metadata for a snapshot of the state machine at `index`: its term and the membership
    /// as of it. `None` unless `index` is applied (handed out in `committed_entries`) and newer
    /// than the latest snapshot.
    pub fn snapshot_meta(&self, index: Index) -> Option<SnapshotMeta> {
        if index <= self.snapshot.last_included_index || index > self.log.applied_sent() {
            return None;
        }
        let term = self.log.term_at(index)?;
        let m = self.conf.at(index);
        Some(SnapshotMeta {
            last_included_index: index,
            last_included_term: term,
            voters: m.voters,
            learners: m.learners,
        })
    }

    /// The latest snapshot this node holds (index 0 when none).
    pub fn snapshot(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    /// The runtime has durably saved a snapshot described by `meta` (from `snapshot_meta`):
    /// compact the log up to it, keeping `compaction_tail_entries` before it. Returns the new
    /// first index of the in-memory log (storage may compact up to just before it). A snapshot
    /// older than the latest one is ignored.
    pub fn compact(&mut self, meta: SnapshotMeta) -> Index {
        let index = meta.last_included_index;
        if index > self.snapshot.last_included_index {
            assert!(
                index <= self.log.applied_sent(),
                "a snapshot at {index} covers entries not yet applied"
            );
            self.conf.rebase(&meta);
            self.snapshot = meta;
        }
        let tail = self.config.compaction_tail_entries;
        let up_to = Index(self.snapshot.last_included_index.0.saturating_sub(tail));
        self.log.compact_to(up_to);
        self.log.first_index()
    }

    /// True if an `InstallSnapshot` chunk from `from` at `term` (already `step`ped) comes from
    /// the leader this node follows in its current term: only then may the runtime keep it.
    pub fn accepts_snapshot_from(&self, from: NodeId, term: Term) -> bool {
        term == self.current_term
            && self.leader == Some(from)
            && matches!(self.role, RoleState::Follower)
    }

    /// The runtime received every chunk of the snapshot `meta` from `from`, the leader of
    /// `term`. Returns false if it is not to be installed (no longer from our leader, or older
    /// than our commit index: we hold all of it already); the runtime then drops the bytes.
    /// Otherwise `Ready::snapshot` carries `meta`: persist it, load it, then go on (§7).
    /// Either way the leader is told we hold everything up to its index.
    pub fn install_snapshot(&mut self, from: NodeId, term: Term, meta: SnapshotMeta) -> bool {
        if !self.accepts_snapshot_from(from, term) {
            return false;
        }
        let index = meta.last_included_index;
        let installed = index > self.log.commit_index();
        if installed {
            self.log.install_snapshot(index, meta.last_included_term);
            let mut conf = super::membership::ConfTracker::new(index, membership_of(&meta));
            conf.append(self.log.all());
            self.conf = conf;
            self.adopt_conf();
            self.last_applied = index;
            self.snapshot = meta.clone();
            self.pending_snapshot = Some(meta);
        }
        // Sent behind the persist step: the leader counts it as durable here.
        self.send(
            from,
            MessageBody::InstallSnapshotResponse {
                last_included_index: index,
                next_offset: 0,
                done: true,
            },
        );
        installed
    }

    /// The runtime's word on a transfer it was asked for: `false` if it broke (the core asks
    /// again after `election_ticks_min` ticks), `true` if the last chunk was acknowledged (the
    /// acknowledgement itself also moves the peer on when stepped).
    pub fn report_snapshot(&mut self, peer: NodeId, ok: bool) {
        let retry = self.config.election_ticks_min;
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let Some(pr) = l.progress.get_mut(&peer) else {
            return;
        };
        if pr.mode == Mode::Snapshot && !ok {
            pr.snapshot_wait_ticks = retry;
        }
    }

    /// A follower's chunk (§7 receiver): the term was handled by `step_term`; a candidate
    /// learns of the leader, and the transfer keeps the election timer from firing.
    pub(super) fn handle_install_snapshot(&mut self, from: NodeId, term: Term) {
        match self.role {
            RoleState::Leader(_) => return,
            RoleState::PreCandidate { .. } | RoleState::Candidate { .. } => {
                self.become_follower(term, Some(from))
            }
            RoleState::Follower => self.set_leader(Some(from)),
        }
        self.election_elapsed = 0;
    }

    /// The leader's side of an `InstallSnapshotResponse`.
    pub(super) fn handle_install_snapshot_response(
        &mut self,
        from: NodeId,
        index: Index,
        done: bool,
    ) {
        let timeout = self.config.snapshot_timeout_ticks;
        let last = self.log.last_index();
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let Some(pr) = l.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        if !done {
            if pr.mode == Mode::Snapshot {
                pr.snapshot_wait_ticks = timeout;
            }
            return;
        }
        if index > last {
            return; // about entries we never had: malformed
        }
        pr.snapshot_installed(index);
        self.maybe_send_timeout_now(from);
    }

    /// Leader tick: count down peers waiting in Snapshot mode; at zero the next `ready()`
    /// asks the runtime (again).
    pub(super) fn tick_snapshots(&mut self) {
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        for pr in l.progress.values_mut().filter(|p| p.mode == Mode::Snapshot) {
            pr.snapshot_wait_ticks = pr.snapshot_wait_ticks.saturating_sub(1);
        }
    }

    /// In `flush_leader`: peers that fell behind the log's offset enter Snapshot mode, and every
    /// peer whose wait ran out is requested from the runtime (its wait restarts at
    /// `snapshot_timeout_ticks`).
    pub(super) fn request_snapshots(&mut self) {
        let timeout = self.config.snapshot_timeout_ticks;
        let first = self.log.first_index();
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        for (&peer, pr) in l.progress.iter_mut() {
            if pr.mode != Mode::Snapshot && pr.next_index < first {
                pr.become_snapshot();
            }
            if pr.mode == Mode::Snapshot && pr.snapshot_wait_ticks == 0 {
                pr.snapshot_wait_ticks = timeout;
                self.snapshot_requests.push(peer);
            }
        }
    }

    /// True if `request_snapshots` would enter a peer into Snapshot mode or ask for one.
    pub(super) fn snapshot_requests_due(&self) -> bool {
        let first = self.log.first_index();
        let RoleState::Leader(l) = &self.role else {
            return false;
        };
        l.progress.values().any(|p| match p.mode {
            Mode::Snapshot => p.snapshot_wait_ticks == 0,
            _ => p.next_index < first,
        })
    }
}
