//! Faults the simulator can inject: crash and restart, partitions of any shape (including an
//! isolated leader and one-way cuts), and the network's loss/duplication/delay settings.
//!
//! A crash is abrupt: whatever the node held in memory is gone, its inbox with it. If a write
//! was in flight, a random prefix of its record stream (hard state, then entries) survives, as
//! a WAL that repairs its torn tail would keep; that Ready's messages are never sent. A restart
//! builds a new `RaftNode` from exactly what is durable (`Restored`, no snapshot yet).

use rand::Rng;
use rocinante::raft::{Index, RaftNode};

use super::checker::Observed;
use super::cluster::{Outcome, ReadOutcome, Sim};
use super::network::NetConfig;

/// The id of the node outside the cluster that `inject_stranger` impersonates.
pub const STRANGER: rocinante::raft::NodeId = rocinante::raft::NodeId(0xdead);

impl Sim {
    /// Crashes `node` now (no-op if it is down).
    pub fn crash(&mut self, node: usize) {
        if !self.is_up(node) {
            return;
        }
        self.stats.crashes += 1;
        let mut lost = String::new();
        if let Some(rd) = self.nodes[node].inflight.take() {
            // Cut point in the record stream. Hard state first (the default): 0 keeps nothing,
            // c >= 1 keeps the hard state and the first c - 1 entries. Hard state last: the
            // first min(c, len) entries, and the hard state only when c = len + 1.
            let len = rd.entries.len();
            let cut = self.rng.random_range(0..=len + 1);
            let (hs, keep) = match (self.opts.hard_state_last, cut) {
                (false, 0) => (None, 0),
                (false, c) => (rd.hard_state, c - 1),
                (true, c) if c == len + 1 => (rd.hard_state, len),
                (true, c) => (None, c),
            };
            if cut > 0 && rd.snapshot.is_some() {
                // An installed snapshot is the first record of the stream.
                self.persist_snapshot(node, &rd);
            }
            let removed = self.nodes[node].storage.write(hs, &rd.entries, keep);
            let r = self.checker.on_persist(node, hs, &removed);
            self.check(r);
            lost = format!(
                " (write in flight: kept {keep} of {len} entries, hard state {})",
                if hs.is_some() || rd.hard_state.is_none() {
                    "kept"
                } else {
                    "lost"
                }
            );
        }
        if self.opts.lying_disk {
            let lie = self.rng.random_range(0..=3usize);
            let d = &mut self.nodes[node].storage.entries;
            d.truncate(d.len().saturating_sub(lie));
            if d.is_empty() && lie > 0 {
                // Lying about a snapshot too: the log restarts at nothing.
                self.nodes[node].storage.snapshot = None;
                self.nodes[node].storage.offset = rocinante::raft::Index(0);
            }
            lost.push_str(&format!(" (lying disk: lost {lie} durable entries)"));
        }
        let n = &mut self.nodes[node];
        n.raft = None;
        n.incarnation += 1;
        n.log.clear();
        n.seen = Observed::default();
        n.applied_log.clear();
        n.digests.clear();
        n.waiting_reads.clear();
        n.outgoing.clear();
        n.incoming = None;
        n.staged = None;
        let inbox = std::mem::take(&mut n.inbox);
        for input in inbox {
            self.drop_input(input);
        }
        for r in self.reads.iter_mut().filter(|r| r.node == node) {
            if matches!(r.outcome, ReadOutcome::Pending | ReadOutcome::Queued) {
                r.outcome = ReadOutcome::Dropped;
            }
        }
        for p in self.proposals.iter_mut().filter(|p| p.node == node) {
            if p.outcome == Outcome::Queued {
                p.outcome = Outcome::Dropped;
            }
        }
        self.log(format!("CRASH n{}{lost}", node + 1));
    }

    /// Restarts `node` from its durable storage (no-op if it is up).
    pub fn restart(&mut self, node: usize) {
        if self.is_up(node) {
            return;
        }
        let config = self.config(node, self.nodes[node].incarnation);
        let restored = self.nodes[node].storage.restored();
        let raft = RaftNode::new(config, restored);
        let r = self.checker.on_restart(node, raft.hard_state());
        self.check(r);
        let hs = raft.hard_state();
        let snap = self.nodes[node].storage.snapshot.clone();
        let snap_index = snap
            .as_ref()
            .map_or(Index(0), |(m, _)| m.last_included_index);
        let mut log = self.checker.committed[..snap_index.0 as usize].to_vec();
        log.extend_from_slice(&self.nodes[node].storage.entries);
        self.nodes[node].log = log;
        if let Some((m, state)) = snap {
            self.load_snapshot(node, m.last_included_index, state);
        }
        let n = &mut self.nodes[node];
        n.raft = Some(raft);
        n.clock_skewed = !n.ticking;
        let len = n.log.len();
        self.log(format!(
            "RESTART n{} term={} vote={} log={len}",
            node + 1,
            hs.current_term,
            hs.voted_for
                .map_or("none".to_string(), |v| format!("n{}", v.0))
        ));
        self.run_turns(node);
    }

    /// 6.5840's disconnect: nothing reaches or leaves `node` (messages in flight included).
    pub fn disconnect(&mut self, node: usize) {
        self.net.set_connected(node, false);
        self.log(format!("DISCONNECT n{}", node + 1));
    }

    pub fn connect(&mut self, node: usize) {
        self.net.set_connected(node, true);
        self.log(format!("CONNECT n{}", node + 1));
    }

    pub fn is_connected(&self, node: usize) -> bool {
        self.net.is_connected(node)
    }

    /// Cuts the one-way link from -> to (an asymmetric partition).
    pub fn cut(&mut self, from: usize, to: usize) {
        self.net.set_link(from, to, false);
        self.log(format!("CUT n{} -> n{}", from + 1, to + 1));
    }

    pub fn uncut(&mut self, from: usize, to: usize) {
        self.net.set_link(from, to, true);
        self.log(format!("UNCUT n{} -> n{}", from + 1, to + 1));
    }

    /// Splits the cluster in two: `side[i]` is node i's side.
    pub fn partition(&mut self, side: &[bool]) {
        self.net.partition(side);
        let show: Vec<String> = side
            .iter()
            .enumerate()
            .map(|(i, s)| format!("n{}:{}", i + 1, u8::from(*s)))
            .collect();
        self.log(format!("PARTITION {}", show.join(" ")));
    }

    /// Heals every partition and cut.
    pub fn heal(&mut self) {
        self.net.heal();
        self.log("HEAL".to_string());
    }

    /// 6.5840's unreliable network (loss, duplicates, short random delays) or a reliable one.
    pub fn set_unreliable(&mut self, unreliable: bool) {
        self.net.config = if unreliable {
            NetConfig::unreliable()
        } else {
            NetConfig::reliable()
        };
        self.log(format!("NET unreliable={unreliable}"));
    }

    /// 6.5840's long reordering: two thirds of messages are held back much longer. labrpc
    /// holds them 200 + rand(1 + rand(2000)) ms against the lab's 1 s election timeout; scaled
    /// to ours (200 ms), 40 + rand(1 + rand(400)).
    pub fn set_long_reordering(&mut self, on: bool) {
        self.net.config.long_delay = if on { 0.66 } else { 0.0 };
        self.net.config.long_delay_ms_min = 40;
        self.net.config.long_delay_ms_extra_max = 400;
        self.log(format!("NET long_reordering={on}"));
    }

    /// Freezes or resumes `node`'s clock.
    pub fn set_ticking(&mut self, node: usize, ticking: bool) {
        self.nodes[node].ticking = ticking;
        self.nodes[node].clock_skewed |= !ticking;
    }

    /// Delivers again `k` messages delivered long ago (a network that held a copy for
    /// seconds): stale terms, old indexes, old read ids. The core must ignore what is stale.
    pub fn replay_old(&mut self, k: usize) {
        for _ in 0..k.min(self.old_messages.len()) {
            let i = self.rng.random_range(0..self.old_messages.len());
            let msg = self.old_messages[i].clone();
            self.log(format!("REPLAY {}", super::trace::message(&msg)));
            self.queue
                .push(self.now, super::network::Event::Deliver(msg));
        }
    }

    /// A message from a node outside the cluster (a misconfigured peer, or a leader of a
    /// configuration this node has not seen). The core hears it (thesis §4.1: a server accepts
    /// AppendEntries from a leader outside its configuration); whatever it says, safety must
    /// hold, and its answers go nowhere (the transport is what keeps real strangers out).
    pub fn inject_stranger(&mut self) {
        let Some(mut msg) = self.old_messages.back().cloned() else {
            return;
        };
        msg.from = STRANGER;
        msg.term = rocinante::raft::Term(msg.term.0 + self.rng.random_range(0..3));
        self.log(format!("STRANGER {}", super::trace::message(&msg)));
        let to = super::cluster::index_of(msg.to);
        self.input(to, super::cluster::Input::Msg(msg));
    }
}
