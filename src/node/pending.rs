//! Client requests as the loop sees them, and the ones waiting for Raft: proposed writes
//! waiting for their entry to be applied, and linearizable reads waiting for a read index.
//!
//! Invariants. A write is answered exactly once: `Ok` when its (index, term) is applied;
//! `Unavailable` when its index is applied with another term (the entry was overwritten, so it
//! is known NOT applied; §5.4 Leader Completeness: a committed entry is never overwritten);
//! `Timeout` at its deadline (outcome unknown). A read batch is served once its read index is
//! applied (thesis §6.4), or failed. Bounds: writes are bounded by the core's
//! `uncommitted_entries_max`, reads by its `pending_reads_max`; both by their deadlines.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::kv::command::{Applied, Idempotency, Op};
use crate::raft::{Index, ReadId, Term};

use super::handle::{AnswerMeta, Consistency, KeyValue, ListPage, NodeError};

pub(super) type WriteReply = oneshot::Sender<Result<(Applied, AnswerMeta), NodeError>>;
pub(super) type GetReply = oneshot::Sender<Result<(Option<KeyValue>, AnswerMeta), NodeError>>;
pub(super) type ListReply = oneshot::Sender<Result<(ListPage, AnswerMeta), NodeError>>;

/// A request from a `NodeHandle` to the loop.
pub(super) enum Request {
    Write {
        op: Op,
        idempotency: Option<Idempotency>,
        reply: WriteReply,
    },
    Read {
        consistency: Consistency,
        read: Read,
    },
    /// Membership changes and leadership transfer (`members.rs`).
    Admin(super::members::AdminRequest),
}

/// A read and where its answer goes.
pub(super) enum Read {
    Get {
        key: Bytes,
        reply: GetReply,
    },
    List {
        prefix: Bytes,
        start_after: Option<Bytes>,
        limit: usize,
        reply: ListReply,
    },
}

impl Read {
    pub(super) fn fail(self, err: NodeError) {
        // A send fails only when the caller gave up waiting: nothing to do.
        match self {
            Read::Get { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            Read::List { reply, .. } => {
                let _ = reply.send(Err(err));
            }
        }
    }
}

struct PendingWrite {
    term: Term,
    reply: WriteReply,
}

/// Proposed writes by index, plus their deadlines in proposal order.
#[derive(Default)]
pub(super) struct PendingWrites {
    by_index: HashMap<Index, PendingWrite>,
    /// Deadlines only grow (one fixed timeout), so the front is always the next to expire.
    deadlines: VecDeque<(Instant, Index, Term)>,
}

impl PendingWrites {
    /// Track a write proposed at (index, term). If an older write waited on the same index,
    /// this leader's log no longer holds it, so it was never committed (Leader Completeness,
    /// §5.4.1): it is answered `Unavailable`.
    pub(super) fn insert(
        &mut self,
        index: Index,
        term: Term,
        reply: WriteReply,
        deadline: Instant,
    ) {
        if let Some(old) = self.by_index.insert(index, PendingWrite { term, reply }) {
            let _ = old.reply.send(Err(NodeError::Unavailable(
                "entry was replaced by a newer leader's entry".into(),
            )));
        }
        self.deadlines.push_back((deadline, index, term));
    }

    /// The entry at `index` with `term` was applied: the waiting write, if any, gets the
    /// outcome; a write waiting at that index with another term learns it was lost.
    pub(super) fn applied(
        &mut self,
        index: Index,
        term: Term,
        outcome: Option<(Applied, AnswerMeta)>,
    ) {
        let Some(w) = self.by_index.remove(&index) else {
            return;
        };
        let answer = match outcome {
            Some(ok) if w.term == term => Ok(ok),
            _ => Err(NodeError::Unavailable(
                "entry was replaced by a newer leader's entry".into(),
            )),
        };
        let _ = w.reply.send(answer);
    }

    /// Answer `Timeout` to every write whose deadline has passed.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, index, term)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if self.by_index.get(&index).is_some_and(|w| w.term == term)
                && let Some(w) = self.by_index.remove(&index)
            {
                let _ = w.reply.send(Err(NodeError::Timeout));
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_index.is_empty()
    }

    /// Answer every write with `err` (shutdown, fatal error).
    pub(super) fn fail_all(&mut self, err: NodeError) {
        for (_, w) in self.by_index.drain() {
            let _ = w.reply.send(Err(err.clone()));
        }
        self.deadlines.clear();
    }
}

/// One turn's linearizable reads: they share one ReadId and one read index.
struct ReadBatch {
    deadline: Instant,
    /// Set once the read index is known; served when applied >= index.
    index: Option<Index>,
    reads: Vec<Read>,
}

/// Linearizable read batches by ReadId (ids grow with time, so the first is the oldest).
#[derive(Default)]
pub(super) struct PendingReads {
    batches: BTreeMap<ReadId, ReadBatch>,
}

impl PendingReads {
    pub(super) fn insert(&mut self, id: ReadId, reads: Vec<Read>, deadline: Instant) {
        self.batches.insert(
            id,
            ReadBatch {
                deadline,
                index: None,
                reads,
            },
        );
    }

    /// The core confirmed read index `index` for batch `id`.
    pub(super) fn confirmed(&mut self, id: ReadId, index: Index) {
        if let Some(b) = self.batches.get_mut(&id) {
            b.index = Some(index);
        }
    }

    pub(super) fn failed(&mut self, id: ReadId, err: NodeError) {
        if let Some(b) = self.batches.remove(&id) {
            for r in b.reads {
                r.fail(err.clone());
            }
        }
    }

    /// Remove and return every read whose read index is at or below `applied`.
    pub(super) fn take_servable(&mut self, applied: Index) -> Vec<Read> {
        let ids: Vec<ReadId> = self
            .batches
            .iter()
            .filter(|(_, b)| b.index.is_some_and(|i| i <= applied))
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::new();
        for id in ids {
            if let Some(b) = self.batches.remove(&id) {
                out.extend(b.reads);
            }
        }
        out
    }

    /// Answer `Timeout` to every batch whose deadline has passed.
    pub(super) fn expire(&mut self, now: Instant) {
        let expired: Vec<ReadId> = self
            .batches
            .iter()
            .filter(|(_, b)| b.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.failed(id, NodeError::Timeout);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    pub(super) fn fail_all(&mut self, err: NodeError) {
        let ids: Vec<ReadId> = self.batches.keys().copied().collect();
        for id in ids {
            self.failed(id, err.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::command::Outcome;
    use crate::raft::NodeId;
    use std::time::Duration;

    fn meta() -> AnswerMeta {
        AnswerMeta {
            node_id: NodeId(1),
            leader_id: Some(NodeId(1)),
            term: Term(2),
            raft_index: Index(5),
        }
    }

    fn applied() -> Applied {
        Applied {
            outcome: Outcome::Ticked,
            replayed: false,
        }
    }

    #[test]
    fn write_succeeds_only_with_its_term() {
        let now = Instant::now();
        let mut w = PendingWrites::default();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        w.insert(Index(5), Term(2), tx1, now);
        w.insert(Index(6), Term(2), tx2, now);
        w.applied(Index(5), Term(2), Some((applied(), meta())));
        w.applied(Index(6), Term(3), Some((applied(), meta())));
        assert!(matches!(rx1.try_recv(), Ok(Ok(_))));
        assert!(matches!(rx2.try_recv(), Ok(Err(NodeError::Unavailable(_)))));
        assert!(w.is_empty());
    }

    #[test]
    fn replaced_write_is_unavailable_and_deadline_times_out() {
        let now = Instant::now();
        let mut w = PendingWrites::default();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        w.insert(Index(5), Term(2), tx1, now);
        w.insert(Index(5), Term(4), tx2, now + Duration::from_secs(1));
        assert!(matches!(rx1.try_recv(), Ok(Err(NodeError::Unavailable(_)))));
        // The stale deadline of (5, 2) must not time out the new write at (5, 4).
        w.expire(now);
        assert!(rx2.try_recv().is_err());
        w.expire(now + Duration::from_secs(1));
        assert!(matches!(rx2.try_recv(), Ok(Err(NodeError::Timeout))));
    }

    #[test]
    fn reads_wait_for_their_index() {
        let now = Instant::now();
        let mut r = PendingReads::default();
        let (tx, mut rx) = oneshot::channel();
        let read = Read::Get {
            key: Bytes::from_static(b"k"),
            reply: tx,
        };
        r.insert(ReadId(1), vec![read], now + Duration::from_secs(1));
        assert!(r.take_servable(Index(100)).is_empty(), "no read index yet");
        r.confirmed(ReadId(1), Index(7));
        assert!(r.take_servable(Index(6)).is_empty());
        let servable = r.take_servable(Index(7));
        assert_eq!(servable.len(), 1);
        for s in servable {
            s.fail(NodeError::Timeout);
        }
        assert!(matches!(rx.try_recv(), Ok(Err(NodeError::Timeout))));
        assert!(r.is_empty());
    }
}
