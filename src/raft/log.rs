//! The in-memory Raft log (§5.3): every entry after the last snapshot, plus the bookkeeping of
//! which of them storage has made durable and which the state machine has been handed.
//!
//! The core keeps the whole log since the last snapshot in memory; at restart the runtime passes
//! it back through `Restored`. Positions, all 1-based, relate as follows (the invariants every
//! method keeps, checked by `check`):
//!
//! ```text
//!   snapshot_index <= persisted_index < unstable_from <= last_index + 1
//!   snapshot_index <= applied_sent <= commit_index <= last_index
//! ```
//!
//! * `snapshot_index`/`snapshot_term`: the offset. Entries up to it live only in the snapshot
//!   (§7); `term_at(snapshot_index)` still answers, so the consistency check works at the edge.
//! * `persisted_index`: storage reported every entry up to here durable (`RaftNode::persisted`).
//! * `unstable_from`: the first entry not yet handed to the runtime in `Ready::entries`.
//!   Entries in `[persisted_index + 1, unstable_from)` are in storage's hands but not confirmed.
//! * `commit_index`: known committed (§5.3, §5.4.2). Volatile: restarts from the snapshot.
//! * `applied_sent`: the last entry handed out in `Ready::committed_entries` (each exactly once).

use super::types::{Entry, Index, Term};

pub(super) struct RaftLog {
    snapshot_index: Index,
    snapshot_term: Term,
    /// `entries[i].index == snapshot_index + 1 + i`, terms never decrease along the vector.
    entries: Vec<Entry>,
    persisted_index: Index,
    unstable_from: Index,
    commit_index: Index,
    applied_sent: Index,
}

/// A follower's AppendEntries could not be applied because it contradicts committed entries:
/// only a faulty or malicious peer sends that, so the message is dropped.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ConflictsWithCommitted;

impl RaftLog {
    /// A log restored from storage: everything given is durable, nothing is known committed
    /// beyond the snapshot (commit_index is volatile state, §5 figure 2).
    pub(super) fn restore(snapshot_index: Index, snapshot_term: Term, entries: Vec<Entry>) -> Self {
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index.0,
                snapshot_index.0 + 1 + i as u64,
                "restored entries must be contiguous after the snapshot"
            );
        }
        let last = Index(snapshot_index.0 + entries.len() as u64);
        let log = RaftLog {
            snapshot_index,
            snapshot_term,
            entries,
            persisted_index: last,
            unstable_from: last.next(),
            commit_index: snapshot_index,
            applied_sent: snapshot_index,
        };
        log.check();
        log
    }

    /// The invariants in the file header; cheap enough to run after every mutation.
    fn check(&self) {
        let last = self.last_index();
        assert!(self.snapshot_index <= self.persisted_index);
        assert!(self.persisted_index < self.unstable_from && self.unstable_from <= last.next());
        assert!(self.snapshot_index <= self.applied_sent && self.applied_sent <= self.commit_index);
        assert!(self.commit_index <= last, "commit_index beyond the log");
    }

    pub(super) fn last_index(&self) -> Index {
        Index(self.snapshot_index.0 + self.entries.len() as u64)
    }

    pub(super) fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot_term, |e| e.term)
    }

    pub(super) fn commit_index(&self) -> Index {
        self.commit_index
    }

    pub(super) fn persisted_index(&self) -> Index {
        self.persisted_index
    }

    /// The term of the entry at `index`, if this log still knows it (None when compacted away
    /// below the snapshot or beyond the end).
    pub(super) fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.entry(index).map(|e| e.term)
    }

    fn entry(&self, index: Index) -> Option<&Entry> {
        if index <= self.snapshot_index {
            return None;
        }
        let offset = (index.0 - self.snapshot_index.0 - 1) as usize;
        self.entries.get(offset)
    }

    /// Entries in `[from, to]`, stopping once `bytes_max` is reached (always at least one entry
    /// when the range is non-empty, so a huge entry still makes progress).
    pub(super) fn slice(&self, from: Index, to: Index, bytes_max: u64) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let from = from.max(self.snapshot_index.next());
        let mut i = from;
        while i <= to {
            let Some(e) = self.entry(i) else { break };
            bytes += e.size_bytes();
            if !out.is_empty() && bytes > bytes_max {
                break;
            }
            out.push(e.clone());
            i = i.next();
        }
        out
    }

    /// §5.4.1: a candidate's log is at least as up to date as ours if its last term is higher,
    /// or equal with an index at least as large.
    pub(super) fn is_up_to_date(&self, last_log_index: Index, last_log_term: Term) -> bool {
        last_log_term > self.last_term()
            || (last_log_term == self.last_term() && last_log_index >= self.last_index())
    }

    /// The leader appends one new entry of its own term at the end (§5.3).
    pub(super) fn append(&mut self, entry: Entry) {
        assert_eq!(
            entry.index,
            self.last_index().next(),
            "leader appends at the end"
        );
        assert!(
            entry.term >= self.last_term(),
            "terms never decrease along the log"
        );
        self.entries.push(entry);
    }

    /// A follower takes the leader's entries following a matching `prev_log_index` (§5.3
    /// receiver rules 3 and 4): entries it already holds are skipped, the first conflicting
    /// entry and everything after it is deleted, the rest appended. Returns the index the log
    /// was truncated at, if it was. The caller has checked the entries are contiguous from
    /// `prev_log_index + 1` with non-decreasing terms.
    pub(super) fn merge(
        &mut self,
        entries: &[Entry],
    ) -> Result<Option<Index>, ConflictsWithCommitted> {
        let Some(first_new) = entries
            .iter()
            .position(|e| self.term_at(e.index) != Some(e.term))
        else {
            return Ok(None);
        };
        let at = entries[first_new].index;
        if at <= self.commit_index {
            return Err(ConflictsWithCommitted);
        }
        let mut truncated = None;
        if at <= self.last_index() {
            self.entries
                .truncate((at.0 - self.snapshot_index.0 - 1) as usize);
            self.persisted_index = self.persisted_index.min(at.prev());
            self.unstable_from = self.unstable_from.min(at);
            truncated = Some(at);
        }
        self.entries.extend_from_slice(&entries[first_new..]);
        self.check();
        Ok(truncated)
    }

    /// Fast-backtracking hint for a rejected AppendEntries at `prev_log_index` (thesis §5.3's
    /// optimisation, in the 6.5840 form): `(conflict_index, conflict_term)` where the log is too
    /// short gives `(last_index + 1, 0)`, otherwise the term we hold at `prev_log_index` and the
    /// first index we hold of that term.
    pub(super) fn conflict_hint(&self, prev_log_index: Index) -> (Index, Term) {
        if prev_log_index > self.last_index() {
            return (self.last_index().next(), Term(0));
        }
        let Some(term) = self.term_at(prev_log_index) else {
            // Below our snapshot: everything there is committed, so start right after it.
            return (self.snapshot_index.next(), Term(0));
        };
        let mut first = prev_log_index;
        while first > self.snapshot_index.next() && self.term_at(first.prev()) == Some(term) {
            first = first.prev();
        }
        (first, term)
    }

    /// The last index holding an entry of `term`, searching back from `from` (the leader's side
    /// of fast backtracking).
    pub(super) fn last_index_of_term(&self, term: Term, from: Index) -> Option<Index> {
        let mut i = from.min(self.last_index());
        loop {
            match self.term_at(i) {
                Some(t) if t == term => return Some(i),
                Some(t) if t < term => return None,
                Some(_) if i > self.snapshot_index => i = i.prev(),
                _ => return None,
            }
        }
    }

    pub(super) fn has_unstable(&self) -> bool {
        self.unstable_from <= self.last_index()
    }

    /// Entries not yet handed to storage, marked handed. Storage truncates at the first one's
    /// index before appending (it may rewrite entries a leader change replaced).
    pub(super) fn take_unstable(&mut self) -> Vec<Entry> {
        let out = self.slice(self.unstable_from, self.last_index(), u64::MAX);
        self.unstable_from = self.last_index().next();
        out
    }

    /// Storage made the log durable up to `index`, whose entry had `term`. Ignored if the entry
    /// was replaced meanwhile (the term differs) or was never handed out.
    pub(super) fn persisted_to(&mut self, index: Index, term: Term) -> bool {
        if index <= self.persisted_index || index >= self.unstable_from {
            return false;
        }
        if self.term_at(index) != Some(term) {
            return false;
        }
        self.persisted_index = index;
        self.check();
        true
    }

    /// Advance commit_index (never backwards, never past the log).
    pub(super) fn commit_to(&mut self, index: Index) -> bool {
        let index = index.min(self.last_index());
        if index <= self.commit_index {
            return false;
        }
        self.commit_index = index;
        true
    }

    pub(super) fn has_committed_to_send(&self) -> bool {
        self.applied_sent < self.commit_index
    }

    /// The next committed entries to apply, at most `bytes_max` of them (at least one), each
    /// handed out exactly once, in order.
    pub(super) fn take_committed(&mut self, bytes_max: u64) -> Vec<Entry> {
        let out = self.slice(self.applied_sent.next(), self.commit_index, bytes_max);
        if let Some(e) = out.last() {
            self.applied_sent = e.index;
        }
        out
    }

    pub(super) fn applied_sent(&self) -> Index {
        self.applied_sent
    }

    /// The log's offset: the last index no longer held in memory (a snapshot covers it).
    pub(super) fn first_index(&self) -> Index {
        self.snapshot_index.next()
    }

    /// The offset and its term: the oldest point the log can anchor an AppendEntries at.
    pub(super) fn offset(&self) -> (Index, Term) {
        (self.snapshot_index, self.snapshot_term)
    }

    /// Log compaction (§7): forget every entry up to `index`, which a durable snapshot covers.
    /// Clamped to what is both persisted and handed to the state machine (never drop what
    /// storage or the state machine still needs from us). Returns the new offset.
    pub(super) fn compact_to(&mut self, index: Index) -> Index {
        let index = index.min(self.persisted_index).min(self.applied_sent);
        if index <= self.snapshot_index {
            return self.snapshot_index;
        }
        let Some(term) = self.term_at(index) else {
            return self.snapshot_index;
        };
        let drop = (index.0 - self.snapshot_index.0) as usize;
        self.entries.drain(..drop);
        self.snapshot_index = index;
        self.snapshot_term = term;
        self.check();
        index
    }

    /// An installed snapshot (§7, InstallSnapshot receiver rules 6 and 7): if the log holds the
    /// snapshot's last entry with the same term, the entries after it are kept; otherwise the
    /// whole log is discarded. Everything up to `index` is committed and handed to the state
    /// machine (which loads the snapshot). Returns true if a suffix was kept.
    pub(super) fn install_snapshot(&mut self, index: Index, term: Term) -> bool {
        let keep = index > self.snapshot_index && self.term_at(index) == Some(term);
        if keep {
            let drop = (index.0 - self.snapshot_index.0) as usize;
            self.entries.drain(..drop);
        } else {
            self.entries.clear();
        }
        self.snapshot_index = index;
        self.snapshot_term = term;
        // The runtime makes the snapshot durable before the rest of the Ready (see `Ready`).
        self.persisted_index = self.persisted_index.max(index);
        self.unstable_from = self.unstable_from.max(index.next());
        if !keep {
            self.persisted_index = index;
            self.unstable_from = index.next();
        }
        self.commit_index = self.commit_index.max(index);
        self.applied_sent = index;
        self.check();
        keep
    }

    /// Every entry still in memory (membership replay at start-up and after an install).
    pub(super) fn all(&self) -> &[Entry] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::EntryKind;

    fn e(index: u64, term: u64) -> Entry {
        Entry {
            term: Term(term),
            index: Index(index),
            kind: EntryKind::Normal,
            data: bytes::Bytes::new(),
        }
    }

    #[test]
    fn merge_truncates_conflicts_and_rewinds_unstable() {
        let mut log = RaftLog::restore(Index(0), Term(0), vec![e(1, 1), e(2, 1), e(3, 1)]);
        assert_eq!(log.merge(&[e(2, 1), e(3, 2), e(4, 2)]), Ok(Some(Index(3))));
        assert_eq!(log.last_index(), Index(4));
        assert_eq!(log.persisted_index(), Index(2));
        let unstable = log.take_unstable();
        assert_eq!(unstable.first().map(|e| e.index), Some(Index(3)));
        // A stale persisted report for the replaced entry 3 (term 1) is ignored.
        assert!(!log.persisted_to(Index(3), Term(1)));
        assert!(log.persisted_to(Index(4), Term(2)));
    }

    #[test]
    fn merge_refuses_to_rewrite_committed_entries() {
        let mut log = RaftLog::restore(Index(0), Term(0), vec![e(1, 1), e(2, 1)]);
        log.commit_to(Index(2));
        assert_eq!(log.merge(&[e(2, 3)]), Err(ConflictsWithCommitted));
        assert_eq!(log.term_at(Index(2)), Some(Term(1)));
    }

    #[test]
    fn conflict_hint_points_at_first_index_of_term() {
        let log = RaftLog::restore(Index(0), Term(0), vec![e(1, 1), e(2, 2), e(3, 2), e(4, 2)]);
        assert_eq!(log.conflict_hint(Index(4)), (Index(2), Term(2)));
        assert_eq!(log.conflict_hint(Index(9)), (Index(5), Term(0)));
        assert_eq!(log.last_index_of_term(Term(1), Index(4)), Some(Index(1)));
        assert_eq!(log.last_index_of_term(Term(3), Index(4)), None);
    }
}
