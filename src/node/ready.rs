//! Executing one `Ready`, in the one safe order (`raft::node::Ready`, DESIGN.md §2):
//! leader's early AppendEntries -> one append + one fsync -> messages that may acknowledge
//! what was just persisted -> apply committed entries and answer writers -> serve reads whose
//! read index is applied -> tell the core what was persisted and applied.
//!
//! A storage error returns at once, before any message that could acknowledge the failed
//! write leaves: the node stops (a failed fsync is never retried; the page cache may have
//! dropped the data while reporting success later).

use crate::raft::{EntryKind, Ready};

use super::NodeRunError;
use super::driver::Driver;
use super::handle::NodeError;
use super::pending::Read;

impl Driver {
    pub(super) fn execute(&mut self, rd: Ready) -> Result<(), NodeRunError> {
        // 1. Thesis §10.2.1: the leader replicates before its own fsync; it counts itself
        //    toward a quorum only once `persisted` below reports the write.
        self.transport.send(rd.messages_before_persist);
        // 2. An installed snapshot first (storage discards the entries it conflicts with),
        //    loaded into the store at once; then the group commit: the whole turn's hard
        //    state and entries, one write, one fsync.
        if let Some(meta) = &rd.snapshot {
            self.install_staged(meta)?;
        }
        // A membership change is in effect from its append (§4.1): reach new members now.
        self.learn_from_entries(&rd.entries);
        if !rd.snapshot_requests.is_empty() {
            self.start_snapshot_sends(rd.snapshot_requests);
        }
        if rd.hard_state.is_some() || !rd.entries.is_empty() {
            self.storage.append(rd.hard_state.as_ref(), &rd.entries)?;
        }
        // 3. Votes and AppendEntries acks may now leave: what they promise is on disk.
        self.transport.send(rd.messages);
        // 4. Apply in log order and answer the writers.
        let last_committed = rd.committed_entries.last().map(|e| e.index);
        for entry in rd.committed_entries {
            self.snapshots.applied_bytes += entry.data.len() as u64;
            assert!(
                entry.index > self.last_applied,
                "committed entries must arrive in order without repeats"
            );
            let outcome = match entry.kind {
                EntryKind::Normal => Some(self.store.apply(entry.index, &entry.data)),
                EntryKind::Noop | EntryKind::ConfChange => {
                    self.store.apply_noop(entry.index);
                    None
                }
            };
            self.last_applied = entry.index;
            self.last_applied_term = entry.term;
            let meta = self.meta();
            self.writes
                .applied(entry.index, entry.term, outcome.map(|a| (a, meta)));
        }
        // 5. Reads: confirmed read indexes, then serve every batch whose index is applied.
        for rs in rd.read_states {
            self.reads.confirmed(rs.id, rs.index);
        }
        for (id, _why) in rd.failed_reads {
            self.reads.failed(
                id,
                NodeError::Unavailable("leadership lost before the read was confirmed".into()),
            );
        }
        for read in self.reads.take_servable(self.last_applied) {
            self.serve(read);
        }
        // 6. Acknowledge to the core.
        if let Some(last) = rd.entries.last() {
            self.core.persisted(last.index, last.term);
        }
        if let Some(index) = last_committed {
            self.core.applied(index);
        }
        Ok(())
    }

    /// Answer a read from the store as it is now.
    pub(super) fn serve(&self, read: Read) {
        let meta = self.meta();
        match read {
            Read::Get { key, reply } => {
                let _ = reply.send(Ok((self.store.get(&key), meta)));
            }
            Read::List {
                prefix,
                start_after,
                limit,
                reply,
            } => {
                let page = self.store.list(&prefix, start_after.as_deref(), limit);
                let _ = reply.send(Ok((page, meta)));
            }
        }
    }
}
