//! A node's turn: the `Ready` contract of `raft/node.rs` executed step by step, with the
//! checker run at every step.
//!
//! Feed the node everything in its inbox, take one `Ready`, check its entries against the
//! node's log (Log Matching, Leader Append-Only), send `messages_before_persist` (only a
//! leader's AppendEntries may be there), start the write; when the write completes: make it
//! durable, send `messages` (checking that what they acknowledge is durable), apply
//! `committed_entries` (State Machine Safety), serve the reads whose index is applied
//! (ReadIndex safety), and report `persisted`/`applied`. Repeat until the node has nothing
//! ready. A node with a write in flight takes no input: inputs wait in its inbox.

use rand::Rng;
use rocinante::raft::{Entry, Index, MessageBody, ReadId, ReadState, Ready, Role};

use super::checker;
use super::cluster::{Input, Outcome, ReadOutcome, Sim, TURNS_MAX, index_of};
use super::network::Event;
use super::storage::DurableStorage;
use super::trace;

impl Sim {
    pub(crate) fn run_turns(&mut self, n: usize) {
        for _ in 0..TURNS_MAX {
            if !self.is_up(n) || self.nodes[n].inflight.is_some() {
                return;
            }
            let inputs = std::mem::take(&mut self.nodes[n].inbox);
            for input in inputs {
                self.feed(n, input);
            }
            let Some(raft) = self.nodes[n].raft.as_mut() else {
                return;
            };
            if !raft.has_ready() {
                self.observe(n);
                return;
            }
            let rd = raft.ready();
            if rd.is_empty() {
                self.fail(&format!(
                    "n{}: has_ready() was true but ready() was empty",
                    n + 1
                ));
            }
            self.begin_ready(n, rd);
        }
        self.fail(&format!(
            "n{} produced {TURNS_MAX} Readys in a row without settling",
            n + 1
        ));
    }

    fn feed(&mut self, n: usize, input: Input) {
        let Some(raft) = self.nodes[n].raft.as_mut() else {
            return;
        };
        match input {
            Input::Msg(m) => match &m.body {
                MessageBody::InstallSnapshot { .. } => {
                    raft.step(m.clone());
                    self.on_snapshot_chunk(n, m);
                }
                MessageBody::InstallSnapshotResponse { .. } => {
                    raft.step(m.clone());
                    self.on_snapshot_response(n, &m);
                }
                _ => raft.step(m),
            },
            Input::Tick => {
                raft.tick();
                self.tick_transfers(n);
            }
            Input::Campaign => raft.campaign(),
            Input::ConfChange(cc) => {
                let r = raft.propose_conf_change(cc.clone());
                self.log(format!(
                    "n{} conf change {:?} n{}: {r:?}",
                    n + 1,
                    cc.op,
                    cc.node.0
                ));
                if r.is_ok() {
                    self.stats.conf_changes += 1;
                }
            }
            Input::Transfer(to) => raft.transfer_leadership(to),
            Input::Propose(p) => {
                let result = raft.propose(self.proposals[p].data.clone());
                let data = String::from_utf8_lossy(&self.proposals[p].data).into_owned();
                match result {
                    Ok((index, term)) => {
                        self.log(format!("n{} propose {data} -> {index}/{term}", n + 1));
                        self.proposals[p].outcome = Outcome::Accepted(index, term);
                        self.accepted_at.entry(index).or_default().push(p);
                        if index <= self.checker.commit_index() {
                            self.resolve(index);
                        }
                    }
                    Err(e) => {
                        self.log(format!("n{} propose {data} rejected: {e}", n + 1));
                        self.proposals[p].outcome = Outcome::Rejected(e);
                    }
                }
            }
            Input::Read(r) => match raft.read_index(ReadId(r as u64)) {
                Ok(()) => {
                    self.reads[r].outcome = ReadOutcome::Pending;
                    self.reads[r].required = self.checker.commit_index();
                    self.log(format!(
                        "n{} read r{r} requested (cluster commit {})",
                        n + 1,
                        self.reads[r].required
                    ));
                }
                Err(e) => {
                    self.log(format!("n{} read r{r} rejected: {e}", n + 1));
                    self.reads[r].outcome = ReadOutcome::Rejected(e);
                }
            },
        }
    }

    fn begin_ready(&mut self, n: usize, rd: Ready) {
        if let Some(ss) = rd.soft_state {
            let leader = ss.leader.map_or("none".to_string(), trace::node);
            self.log(format!(
                "n{} is {:?} t={} leader={leader} commit={}",
                n + 1,
                ss.role,
                ss.term,
                ss.commit_index
            ));
        }
        if let Some(meta) = &rd.snapshot {
            self.install_in_log(n, meta);
        }
        if !rd.snapshot_requests.is_empty() {
            self.start_transfers(n, rd.snapshot_requests.clone());
        }
        let node = &mut self.nodes[n];
        let Some(raft) = node.raft.as_ref() else {
            return;
        };
        let (role, term) = (raft.role(), raft.term());
        if let Some(first) = rd
            .entries
            .first()
            .filter(|e| e.index.0 as usize <= node.log.len())
        {
            let text = format!("n{} log truncated from {}", n + 1, first.index);
            self.trace.line(self.now, text);
        }
        let node = &mut self.nodes[n];
        let r = self
            .checker
            .on_append(n, role, term, &mut node.log, &rd.entries);
        self.check(r);
        self.observe(n);
        for m in &rd.messages_before_persist {
            if !matches!(m.body, MessageBody::AppendEntries { .. }) || role != Role::Leader {
                self.fail(&format!(
                    "n{} ({role:?}) put {} in messages_before_persist",
                    n + 1,
                    m.body.name()
                ));
            }
        }
        for m in rd.messages_before_persist.clone() {
            let r = self
                .checker
                .on_send(n, &m, &self.nodes[n].storage, &self.nodes[n].log);
            self.check(r);
            self.send(m);
        }
        if rd.hard_state.is_none() && rd.entries.is_empty() && rd.snapshot.is_none() {
            self.finish_ready(n, rd);
            return;
        }
        let fsync = self
            .rng
            .random_range(self.opts.fsync_ms_min..=self.opts.fsync_ms_max);
        if fsync == 0 {
            self.finish_ready(n, rd);
        } else {
            let incarnation = self.nodes[n].incarnation;
            self.nodes[n].inflight = Some(rd);
            self.queue.push(
                self.now + fsync,
                Event::PersistDone {
                    node: n,
                    incarnation,
                },
            );
        }
    }

    /// Steps 2-6 of the Ready contract, once the write completed.
    pub(crate) fn finish_ready(&mut self, n: usize, rd: Ready) {
        let staged = self.persist_snapshot(n, &rd);
        let removed = self.nodes[n]
            .storage
            .write(rd.hard_state, &rd.entries, rd.entries.len());
        let r = self.checker.on_persist(n, rd.hard_state, &removed);
        self.check(r);
        for m in rd.messages {
            let r = self
                .checker
                .on_send(n, &m, &self.nodes[n].storage, &self.nodes[n].log);
            self.check(r);
            self.send(m);
        }
        if let Some((meta, state)) = staged {
            self.load_snapshot(n, meta.last_included_index, state);
        }
        self.apply(n, &rd.committed_entries);
        for rs in &rd.read_states {
            let r = rs.id.0 as usize;
            let ok = self.reads.get(r).is_some_and(|q| {
                q.node == n
                    && q.incarnation == self.nodes[n].incarnation
                    && q.outcome == ReadOutcome::Pending
            });
            if !ok {
                self.fail(&format!(
                    "n{} got a read state for read {r}, which is not pending on it",
                    n + 1
                ));
            }
            self.nodes[n].waiting_reads.push(*rs);
        }
        for (id, why) in &rd.failed_reads {
            self.log(format!("n{} read r{} failed: {why:?}", n + 1, id.0));
            if let Some(q) = self.reads.get_mut(id.0 as usize) {
                q.outcome = ReadOutcome::Failed;
            }
        }
        self.serve_reads(n);
        let applied = self.nodes[n].seen.applied;
        let Some(raft) = self.nodes[n].raft.as_mut() else {
            return;
        };
        if let Some(last) = rd.entries.last() {
            raft.persisted(last.index, last.term);
        }
        if !rd.committed_entries.is_empty() {
            raft.applied(applied);
            self.maybe_take_snapshot(n);
        }
    }

    /// Step 2's first part: an installed snapshot is saved before the rest of the Ready.
    /// Returns it (meta and state) for step 4, which loads it.
    pub(crate) fn persist_snapshot(
        &mut self,
        n: usize,
        rd: &Ready,
    ) -> Option<(rocinante::raft::SnapshotMeta, u64)> {
        let meta = rd.snapshot.as_ref()?;
        let staged = self.nodes[n].staged.take();
        let Some((m, state)) = staged.filter(|(m, _)| m == meta) else {
            self.fail(&format!(
                "n{} Ready.snapshot without a staged snapshot",
                n + 1
            ));
        };
        let removed = self.nodes[n].storage.save_snapshot(&m, state);
        let r = self.checker.on_persist(n, None, &removed);
        self.check(r);
        Some((m, state))
    }

    fn apply(&mut self, n: usize, entries: &[Entry]) {
        let mut seen = self.nodes[n].seen;
        let r = self.checker.on_apply(n, &mut seen, entries);
        self.check(r);
        self.nodes[n].seen = seen;
        for e in entries {
            self.log(format!("n{} apply {}", n + 1, trace::entry(e)));
            let prev = self.nodes[n].digests.last().copied().unwrap_or(0);
            self.nodes[n].digests.push(super::storage::digest(prev, e));
        }
        self.nodes[n].applied_log.extend_from_slice(entries);
    }

    fn serve_reads(&mut self, n: usize) {
        let seen = self.nodes[n].seen;
        let (ready, waiting): (Vec<ReadState>, Vec<ReadState>) =
            std::mem::take(&mut self.nodes[n].waiting_reads)
                .into_iter()
                .partition(|rs| rs.index <= seen.applied);
        self.nodes[n].waiting_reads = waiting;
        for rs in ready {
            let r = rs.id.0 as usize;
            let c = checker::check_read(n, r as u64, self.reads[r].required, rs.index, &seen);
            self.check(c);
            self.reads[r].outcome = ReadOutcome::Served(rs.index);
            self.log(format!("n{} read r{r} served at {}", n + 1, rs.index));
        }
    }

    /// Checks the node's state after a `ready()` (or when it has nothing ready).
    pub(crate) fn observe(&mut self, n: usize) {
        let Some(raft) = self.nodes[n].raft.as_ref() else {
            return;
        };
        let (role, term, commit, last) = (
            raft.role(),
            raft.term(),
            raft.commit_index(),
            raft.last_index(),
        );
        // The configuration the commit was decided under is the current one, or one from just
        // before a change appended since (thesis §4.1), or one in effect at a newly committed
        // index: a quorum of any of them is accepted.
        let to_ids = |m: rocinante::raft::Membership| -> Vec<usize> {
            m.voters.iter().map(|&v| index_of(v)).collect()
        };
        let mut voters = vec![to_ids(raft.membership())];
        let mut at = vec![raft.last_conf_change().map_or(Index(0), |i| i.prev())];
        at.extend((self.nodes[n].seen.commit.0 + 1..=commit.0).map(Index));
        for i in at {
            if let Some(m) = raft.membership_at(i).map(to_ids) {
                if !voters.contains(&m) {
                    voters.push(m);
                }
            }
        }
        let mut seen = self.nodes[n].seen;
        let durable: Vec<&DurableStorage> = self.nodes.iter().map(|x| &x.storage).collect();
        let r = self.checker.on_observe(
            n,
            role,
            term,
            commit,
            last,
            &self.nodes[n].log,
            &mut seen,
            &durable,
            &voters,
        );
        let newly = self.check(r);
        if seen.commit > self.nodes[n].seen.commit {
            self.log(format!("n{} commit={}", n + 1, seen.commit));
        }
        self.nodes[n].seen = seen;
        let advanced = !newly.is_empty();
        for k in newly {
            self.resolve(Index(k as u64 + 1));
        }
        if advanced {
            (0..self.nodes.len()).for_each(|i| self.check_lease(i));
        } else {
            self.check_lease(n);
        }
        self.check_match_index(n);
    }

    /// The leader of the latest term believes each peer's log matches its own up to
    /// `match_index` (§5.3); that peer acknowledged it only once durable, and no leader can
    /// make it truncate those entries since (any other leader has a lower term). So the peer's
    /// durable log holds the leader's entry at `match_index` (and, by Log Matching, all before
    /// it). A follower that drops acknowledged entries (say, on a stale, shorter
    /// AppendEntries) fails here.
    fn check_match_index(&self, n: usize) {
        let Some(raft) = self.raft(n) else { return };
        if raft.role() != Role::Leader || self.checker.latest_leader_term() != Some(raft.term()) {
            return;
        }
        let log = &self.nodes[n].log;
        for (peer, m) in raft.progress() {
            let p = super::cluster::index_of(peer);
            if m.0 == 0 || p == n {
                continue;
            }
            let k = m.0 as usize - 1;
            // A peer's snapshot covers only committed entries, which this leader holds.
            if !log.get(k).is_some_and(|e| self.nodes[p].storage.holds(e)) {
                self.fail(&format!(
                    "leader n{} (term {}) has match_index {m} for n{}, whose durable log has {:?} there",
                    n + 1,
                    raft.term(),
                    p + 1,
                    self.nodes[p].storage.get(m).map(trace::entry)
                ));
            }
        }
    }

    /// Lease reads (thesis §6.4.1): while `has_lease()` holds, the node may serve a read from
    /// its own state at its commit index, so that index must cover everything committed
    /// anywhere in the cluster. Checked whenever the node is observed or the cluster-wide
    /// commit index moves.
    /// A node whose clock was frozen (golden scenarios) is exempt: leases assume clocks that
    /// advance at about the same rate. `SIM_LEASE_CHECK=0` turns the check off, to hunt for
    /// other bugs while a lease finding is open (SIM_FINDINGS.md).
    fn check_lease(&self, n: usize) {
        if !self.opts.lease_check {
            return;
        }
        let Some(raft) = self.raft(n).filter(|_| !self.nodes[n].clock_skewed) else {
            return;
        };
        if raft.has_lease() && raft.commit_index() < self.checker.commit_index() {
            self.fail(&format!(
                "lease read: n{} holds a lease (term {}) at commit {} but {} is committed",
                n + 1,
                raft.term(),
                raft.commit_index(),
                self.checker.commit_index()
            ));
        }
    }

    /// Index `i` is committed: settle the proposals that were given it.
    fn resolve(&mut self, i: Index) {
        let committed = self.checker.committed[i.0 as usize - 1].clone();
        for p in self.accepted_at.remove(&i).unwrap_or_default() {
            let Outcome::Accepted(_, term) = self.proposals[p].outcome else {
                continue;
            };
            if term != committed.term {
                self.proposals[p].outcome = Outcome::Lost;
            } else if committed.data != self.proposals[p].data {
                self.fail(&format!(
                    "proposal {p} was given {i}/{term} but {} was committed there",
                    trace::entry(&committed)
                ));
            } else {
                self.proposals[p].outcome = Outcome::Committed(i);
            }
        }
    }
}
