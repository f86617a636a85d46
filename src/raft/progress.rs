//! What a leader knows about one peer's log (§5.3 "volatile state on leaders"), and how fast it
//! may send to it.
//!
//! Two modes, after etcd's raft:
//! * **Probe**: the leader does not know where the peer's log matches its own. It sends one
//!   AppendEntries at `next_index`, then waits (`probe_sent`) for the answer, backing
//!   `next_index` off with the follower's conflict hint on each rejection (fast backtracking).
//!   A heartbeat answer also ends the wait, which retries a lost probe.
//! * **Replicate**: the peer matched once; the leader streams entries optimistically, advancing
//!   `next_index` as it sends, with at most `inflight_msgs_max` messages and
//!   `inflight_bytes_max` entry bytes unacknowledged. A rejection falls back to Probe.
//!
//! Invariants: `match_index < next_index`; every in-flight message ends in
//! `(match_index, next_index)`; in Probe mode nothing is tracked in flight.

use std::collections::VecDeque;

use super::types::{Index, Term};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Probe,
    Replicate,
    Snapshot,
}

/// The in-flight window of a peer in Replicate mode: one record per AppendEntries carrying
/// entries and not yet acknowledged. At `msgs_max` records or `bytes_max` bytes the window is
/// full and the leader stops sending entries to that peer until acknowledgements free room.
#[derive(Clone, Debug)]
pub struct Inflights {
    /// (last index carried, entry bytes carried), in send order.
    sent: VecDeque<(Index, u64)>,
    bytes: u64,
    msgs_max: usize,
    bytes_max: u64,
}

impl Inflights {
    pub fn new(msgs_max: usize, bytes_max: u64) -> Inflights {
        Inflights {
            sent: VecDeque::new(),
            bytes: 0,
            msgs_max: msgs_max.max(1),
            bytes_max,
        }
    }

    pub fn full(&self) -> bool {
        self.sent.len() >= self.msgs_max || self.bytes >= self.bytes_max
    }

    pub fn add(&mut self, last: Index, bytes: u64) {
        assert!(!self.full(), "sending into a full in-flight window");
        self.sent.push_back((last, bytes));
        self.bytes += bytes;
    }

    /// Everything up to `index` was acknowledged.
    pub fn free_to(&mut self, index: Index) {
        while let Some(&(last, bytes)) = self.sent.front() {
            if last > index {
                break;
            }
            self.bytes -= bytes;
            self.sent.pop_front();
        }
    }

    pub fn reset(&mut self) {
        self.sent.clear();
        self.bytes = 0;
    }

    pub fn count(&self) -> usize {
        self.sent.len()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to be replicated (and persisted) on the peer; only grows within a
    /// term. Always `< next_index`.
    pub match_index: Index,
    /// Next index to send. Always in `[match_index + 1, leader's last_index + 1]`.
    pub next_index: Index,
    pub mode: Mode,
    /// Probe mode only: a probe is out; send nothing more until an answer arrives.
    pub probe_sent: bool,
    pub inflights: Inflights,
    /// The peer answered something since the last check-quorum round (thesis §6.2).
    pub recent_active: bool,
    /// Highest `read_seq` the peer echoed in this term (ReadIndex, thesis §6.4).
    pub acked_seq: u64,
    /// Replicate mode: match_index at the previous heartbeat round, and how many rounds in a
    /// row it stayed there with entries in flight (a lost AppendEntries; see `heartbeat_round`).
    match_at_heartbeat: Index,
    stalled_rounds: u64,
    /// Snapshot mode only: ticks left before the leader asks the runtime for the snapshot
    /// (again). 0 means "ask at the next `ready()`".
    pub snapshot_wait_ticks: u64,
}

impl Progress {
    /// A fresh view at leader election: nothing matched, next_index just past the leader's log
    /// (§5.3: "initialized to leader last log index + 1").
    pub fn new(next_index: Index, inflight_msgs_max: usize, inflight_bytes_max: u64) -> Progress {
        Progress {
            match_index: Index(0),
            next_index,
            mode: Mode::Probe,
            probe_sent: false,
            inflights: Inflights::new(inflight_msgs_max, inflight_bytes_max),
            recent_active: false,
            acked_seq: 0,
            match_at_heartbeat: Index(0),
            stalled_rounds: 0,
            snapshot_wait_ticks: 0,
        }
    }

    /// True if the leader may send entries now.
    pub fn can_send(&self) -> bool {
        match self.mode {
            Mode::Probe => !self.probe_sent,
            Mode::Replicate => !self.inflights.full(),
            Mode::Snapshot => false,
        }
    }

    /// Record an AppendEntries carrying entries up to `last` (`bytes` of them) just sent.
    pub fn sent_entries(&mut self, last: Index, bytes: u64) {
        match self.mode {
            Mode::Probe => self.probe_sent = true,
            Mode::Replicate => {
                self.inflights.add(last, bytes);
                self.next_index = last.next();
            }
            Mode::Snapshot => {}
        }
    }

    /// Called at every heartbeat round. Heartbeats are anchored at match_index, so they cannot
    /// reveal a lost AppendEntries in Replicate mode; instead, after `stalled_rounds_max` rounds
    /// without match_index moving while entries are in flight, the peer falls back to Probe and
    /// the entries are sent again from match_index + 1 (a retransmission timeout).
    pub fn heartbeat_round(&mut self, stalled_rounds_max: u64) {
        if self.mode == Mode::Replicate && self.inflights.count() > 0 {
            if self.match_index == self.match_at_heartbeat {
                self.stalled_rounds += 1;
            } else {
                self.stalled_rounds = 0;
            }
            if self.stalled_rounds >= stalled_rounds_max {
                self.become_probe(self.match_index.next());
            }
        } else {
            self.stalled_rounds = 0;
        }
        self.match_at_heartbeat = self.match_index;
    }

    /// The peer needs a snapshot (its next_index is compacted away): stop sending entries.
    pub fn become_snapshot(&mut self) {
        self.mode = Mode::Snapshot;
        self.probe_sent = false;
        self.stalled_rounds = 0;
        self.inflights.reset();
        self.snapshot_wait_ticks = 0;
    }

    /// The peer installed a snapshot ending at `index` (it acknowledged it after making it
    /// durable): it matches up to there; probe just after it.
    pub fn snapshot_installed(&mut self, index: Index) {
        if index > self.match_index {
            self.match_index = index;
        }
        if self.mode == Mode::Snapshot || self.next_index <= index {
            self.become_probe(index.next());
        }
    }

    pub(super) fn become_probe(&mut self, next_index: Index) {
        self.mode = Mode::Probe;
        self.probe_sent = false;
        self.stalled_rounds = 0;
        self.inflights.reset();
        self.next_index = next_index.max(self.match_index.next());
    }

    /// A success answer says the peer matches up to `index`. Returns true if it was news.
    pub fn ack(&mut self, index: Index) -> bool {
        self.probe_sent = false;
        if index <= self.match_index {
            return false;
        }
        self.match_index = index;
        if self.mode == Mode::Snapshot {
            // A heartbeat answer: news about match_index, but the transfer goes on.
            self.next_index = self.next_index.max(index.next());
            return true;
        }
        self.next_index = self.next_index.max(index.next());
        self.inflights.free_to(index);
        if self.mode == Mode::Probe {
            // The match point is found: stream from here on.
            self.mode = Mode::Replicate;
            self.next_index = index.next();
            self.inflights.reset();
        }
        true
    }

    /// A rejection of an AppendEntries whose prev_log_index was `rejected`, with the next
    /// index to try computed from the follower's hint. Returns false for a stale rejection
    /// (of a message older than what we already know matched, or not the outstanding probe).
    pub fn reject(&mut self, rejected: Index, hint_next: Index) -> bool {
        if self.mode == Mode::Snapshot {
            return false;
        }
        let stale = rejected <= self.match_index
            || (self.mode == Mode::Probe && rejected != self.next_index.prev());
        if stale {
            // The peer is alive: a lost probe is retried (as a heartbeat's success would; a
            // heartbeat anchored at a compacted log's offset may be rejected instead).
            if self.mode == Mode::Probe {
                self.probe_sent = false;
            }
            return false;
        }
        self.become_probe(hint_next.min(rejected));
        true
    }
}

/// The leader's computation of the next index to try after a rejection (6.5840 fast
/// backtracking): if the leader holds entries of `conflict_term`, just after its last one;
/// otherwise the follower's first index of that term (or its log end when the term is 0).
pub fn backtrack_hint(
    conflict_index: Index,
    conflict_term: Term,
    leader_last_of_term: Option<Index>,
) -> Index {
    if conflict_term == Term(0) {
        return conflict_index;
    }
    match leader_last_of_term {
        Some(i) => i.next(),
        None => conflict_index,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflight_window_bounds_count_and_bytes() {
        let mut w = Inflights::new(2, 100);
        w.add(Index(1), 10);
        assert!(!w.full());
        w.add(Index(2), 10);
        assert!(w.full(), "two messages is the count limit");
        w.free_to(Index(1));
        assert_eq!((w.count(), w.bytes()), (1, 10));
        w.add(Index(5), 95);
        assert!(w.full(), "105 bytes is over the byte limit");
        w.free_to(Index(5));
        assert_eq!((w.count(), w.bytes()), (0, 0));
    }

    #[test]
    fn probe_sends_one_then_waits_and_switches_on_ack() {
        let mut p = Progress::new(Index(11), 4, 1 << 20);
        assert!(p.can_send());
        p.sent_entries(Index(11), 30);
        assert!(!p.can_send(), "probe waits for the answer");
        assert_eq!(
            p.next_index,
            Index(11),
            "probe does not advance optimistically"
        );
        assert!(p.ack(Index(11)));
        assert_eq!(p.mode, Mode::Replicate);
        assert_eq!((p.match_index, p.next_index), (Index(11), Index(12)));
    }

    #[test]
    fn replicate_pipelines_until_window_full() {
        let mut p = Progress::new(Index(1), 2, 1 << 20);
        p.ack(Index(0));
        p.mode = Mode::Replicate;
        p.sent_entries(Index(3), 10);
        p.sent_entries(Index(6), 10);
        assert_eq!(p.next_index, Index(7));
        assert!(!p.can_send());
        p.ack(Index(3));
        assert!(p.can_send());
    }

    #[test]
    fn rejection_falls_back_to_probe_and_ignores_stale() {
        let mut p = Progress::new(Index(1), 8, 1 << 20);
        p.ack(Index(5));
        p.sent_entries(Index(9), 10);
        assert!(!p.reject(Index(4), Index(2)), "stale: below match_index");
        assert!(p.reject(Index(7), Index(6)));
        assert_eq!(p.mode, Mode::Probe);
        assert_eq!(p.next_index, Index(6));
        // In probe mode only the answer to the outstanding probe (prev = next_index - 1) counts.
        assert!(!p.reject(Index(7), Index(1)));
        // The hint never moves next_index to or below match_index.
        p.next_index = Index(7);
        assert!(p.reject(Index(6), Index(1)));
        assert_eq!(p.next_index, Index(6), "clamped to match_index + 1");
    }

    #[test]
    fn stalled_replication_falls_back_to_probe() {
        let mut p = Progress::new(Index(1), 8, 1 << 20);
        p.ack(Index(2));
        p.sent_entries(Index(5), 10);
        p.heartbeat_round(2);
        assert_eq!(
            p.mode,
            Mode::Replicate,
            "one round without progress is normal latency"
        );
        p.heartbeat_round(2);
        p.heartbeat_round(2);
        assert_eq!(p.mode, Mode::Probe);
        assert_eq!(p.next_index, Index(3), "resend from match_index + 1");
    }

    #[test]
    fn backtrack_uses_leader_term_knowledge() {
        assert_eq!(backtrack_hint(Index(4), Term(0), None), Index(4));
        assert_eq!(backtrack_hint(Index(4), Term(3), Some(Index(6))), Index(7));
        assert_eq!(backtrack_hint(Index(4), Term(3), None), Index(4));
    }
}
