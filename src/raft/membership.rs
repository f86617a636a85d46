//! Membership changes, one server at a time (thesis ch. 4): add a learner, promote a learner to
//! voter, remove a node.
//!
//! Rules, and where they are enforced:
//! * A configuration takes effect on a node as soon as its entry is *appended* to that node's
//!   log, committed or not (thesis §4.1); if the entry is later truncated (§5.3 conflict), the
//!   node reverts to the configuration before it (`ConfTracker::truncate`).
//! * One change at a time: a leader refuses a change while an earlier one is uncommitted, so
//!   any two consecutive configurations differ by one server and their majorities overlap.
//! * A new leader refuses changes until it has committed an entry of its own term (its no-op).
//!   Without this rule, single-server changes can lose a committed configuration (Ongaro's
//!   2015 raft-dev post "bug in single-server membership changes").
//! * Learners receive the log but never campaign and never count toward a quorum. A node
//!   answers vote requests whatever its own configuration says (thesis §4.1): it may be a
//!   voter in the candidate's newer configuration, and candidates count only their voters.
//! * A leader that removed itself keeps leading (without counting itself) until the removal
//!   is committed, then steps down (thesis §4.2.2).
//!
//! Invariant: `RaftNode::config.voters`/`learners` always equal `ConfTracker::current()`: the
//! base configuration (as of the latest snapshot, or the initial one) with every ConfChange
//! entry in the log applied in order.
//!
//! # Payload of a `EntryKind::ConfChange` entry (written by `ConfChange::encode`)
//!
//! ```text
//! byte 0       format version, 1
//! byte 1       operation: 1 add learner, 2 promote learner to voter, 3 remove node
//! bytes 2..10  the node id, u64 big-endian
//! bytes 10..   context: opaque to Raft; the runtime stores the member's addresses there
//! ```
//! No checksum: the WAL frame and the transport protect the entry as a whole. A payload that
//! does not decode is ignored by the core (it can only come from a faulty peer).

use bytes::{Bytes, BytesMut};

use super::node::{ProposeError, RaftNode};
use super::progress::Progress;
use super::role::RoleState;
use super::types::{Entry, EntryKind, Index, NodeId, SnapshotMeta, Term};

const FORMAT_VERSION: u8 = 1;
const HEADER_BYTES: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfChangeOp {
    /// Add a node that receives the log but does not vote (thesis §4.2.1 catch-up).
    AddLearner,
    /// Make a learner a voter.
    PromoteLearner,
    /// Remove a voter or a learner.
    RemoveNode,
}

/// One membership change, as carried by a `ConfChange` entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConfChange {
    pub op: ConfChangeOp,
    pub node: NodeId,
    /// The runtime's business (the member's addresses); Raft only carries it.
    pub context: Bytes,
}

impl ConfChange {
    /// The entry payload; format in the file header.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(HEADER_BYTES + self.context.len());
        b.extend_from_slice(&[FORMAT_VERSION, op_code(self.op)]);
        b.extend_from_slice(&self.node.0.to_be_bytes());
        b.extend_from_slice(&self.context);
        b.freeze()
    }

    /// Parses a payload; `None` if it is not a ConfChange of a known version.
    pub fn decode(data: &Bytes) -> Option<ConfChange> {
        if data.len() < HEADER_BYTES || data[0] != FORMAT_VERSION {
            return None;
        }
        let op = match data[1] {
            1 => ConfChangeOp::AddLearner,
            2 => ConfChangeOp::PromoteLearner,
            3 => ConfChangeOp::RemoveNode,
            _ => return None,
        };
        let mut id = [0u8; 8];
        id.copy_from_slice(&data[2..HEADER_BYTES]);
        Some(ConfChange {
            op,
            node: NodeId(u64::from_be_bytes(id)),
            context: data.slice(HEADER_BYTES..),
        })
    }
}

fn op_code(op: ConfChangeOp) -> u8 {
    match op {
        ConfChangeOp::AddLearner => 1,
        ConfChangeOp::PromoteLearner => 2,
        ConfChangeOp::RemoveNode => 3,
    }
}

/// Voters and learners, disjoint, each sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Membership {
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
}

impl Membership {
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Whether `cc` is a valid next step from this configuration (None) or why not.
    pub fn check(&self, cc: &ConfChange) -> Option<&'static str> {
        match cc.op {
            ConfChangeOp::AddLearner if cc.node == NodeId(0) => Some("node id 0 is reserved"),
            ConfChangeOp::AddLearner if self.contains(cc.node) => Some("already a member"),
            ConfChangeOp::PromoteLearner if !self.learners.contains(&cc.node) => {
                Some("not a learner")
            }
            ConfChangeOp::RemoveNode if !self.contains(cc.node) => Some("not a member"),
            ConfChangeOp::RemoveNode if self.voters == [cc.node] => Some("the last voter"),
            _ => None,
        }
    }

    /// Applies `cc`; an invalid change (only a faulty peer's log holds one) changes nothing.
    pub fn apply(&mut self, cc: &ConfChange) {
        if self.check(cc).is_some() {
            return;
        }
        match cc.op {
            ConfChangeOp::AddLearner => self.learners.push(cc.node),
            ConfChangeOp::PromoteLearner => {
                self.learners.retain(|&n| n != cc.node);
                self.voters.push(cc.node);
            }
            ConfChangeOp::RemoveNode => {
                self.learners.retain(|&n| n != cc.node);
                self.voters.retain(|&n| n != cc.node);
            }
        }
        self.voters.sort_unstable();
        self.learners.sort_unstable();
    }
}

/// The configuration at the log's base plus the ConfChange entries in the log after it.
/// Bounded by the log: one record per ConfChange entry held in memory.
#[derive(Clone, Debug, Default)]
pub(super) struct ConfTracker {
    base_index: Index,
    base: Membership,
    changes: Vec<(Index, ConfChange)>,
}

impl ConfTracker {
    pub(super) fn new(base_index: Index, base: Membership) -> ConfTracker {
        ConfTracker {
            base_index,
            base,
            changes: Vec::new(),
        }
    }

    /// The configuration with every tracked change applied (the one in effect, §4.1).
    pub(super) fn current(&self) -> Membership {
        self.at(Index(u64::MAX))
    }

    /// The configuration as of `index` (for a snapshot's metadata); `index >= base_index`.
    pub(super) fn at(&self, index: Index) -> Membership {
        let mut m = self.base.clone();
        for (_, cc) in self.changes.iter().filter(|(i, _)| *i <= index) {
            m.apply(cc);
        }
        m
    }

    /// Track the ConfChange entries among `entries` that are newer than any tracked one.
    pub(super) fn append(&mut self, entries: &[Entry]) {
        let last = self.changes.last().map_or(self.base_index, |c| c.0);
        for e in entries.iter().filter(|e| e.index > last) {
            if e.kind != EntryKind::ConfChange {
                continue;
            }
            if let Some(cc) = ConfChange::decode(&e.data) {
                self.changes.push((e.index, cc));
            }
        }
    }

    /// The log was truncated from `at` on: forget the changes there (thesis §4.1 revert).
    pub(super) fn truncate(&mut self, at: Index) {
        self.changes.retain(|(i, _)| *i < at);
    }

    /// A snapshot now covers everything up to `meta`'s index: it becomes the base.
    pub(super) fn rebase(&mut self, meta: &SnapshotMeta) {
        if meta.last_included_index < self.base_index {
            return;
        }
        self.base_index = meta.last_included_index;
        self.base = membership_of(meta);
        self.changes.retain(|(i, _)| *i > meta.last_included_index);
    }

    /// The index of the latest change in the log, if any.
    pub(super) fn last_change(&self) -> Option<Index> {
        self.changes.last().map(|c| c.0)
    }
}

pub(super) fn membership_of(meta: &SnapshotMeta) -> Membership {
    let mut m = Membership {
        voters: meta.voters.clone(),
        learners: meta.learners.clone(),
    };
    m.voters.sort_unstable();
    m.learners.sort_unstable();
    m
}

impl RaftNode {
    /// Propose a membership change (leader only), thesis ch. 4. Refused with
    /// `ConfChangeInProgress` while an earlier change is uncommitted or before this leader has
    /// committed an entry of its own term; with `InvalidConfChange` if it makes no sense from
    /// the current configuration. The change takes effect on this node at once (§4.1).
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<(Index, Term), ProposeError> {
        if matches!(self.role, RoleState::Leader(_)) {
            let commit = self.log.commit_index();
            if self.conf.last_change().is_some_and(|i| i > commit)
                || self.log.term_at(commit) != Some(self.current_term)
            {
                return Err(ProposeError::ConfChangeInProgress);
            }
            if let Some(reason) = self.conf.current().check(&cc) {
                return Err(ProposeError::InvalidConfChange { reason });
            }
        }
        self.append_proposal(EntryKind::ConfChange, cc.encode())
    }

    /// The membership in effect on this node (the latest appended configuration).
    pub fn membership(&self) -> Membership {
        self.conf.current()
    }

    /// The membership as of `index` (None below the latest snapshot, whose membership is the
    /// oldest this node knows).
    pub fn membership_at(&self, index: Index) -> Option<Membership> {
        (index >= self.snapshot.last_included_index).then(|| self.conf.at(index))
    }

    /// The index of the latest ConfChange entry in the log, if any is held in memory.
    pub fn last_conf_change(&self) -> Option<Index> {
        self.conf.last_change()
    }

    /// True while a membership change is appended but not known committed.
    pub fn conf_change_pending(&self) -> bool {
        self.conf
            .last_change()
            .is_some_and(|i| i > self.log.commit_index())
    }

    /// Entries were appended (or the log rebuilt): track their changes and adopt the result.
    pub(super) fn conf_appended(&mut self, entries: &[Entry]) {
        if entries.iter().any(|e| e.kind == EntryKind::ConfChange) {
            self.conf.append(entries);
            self.adopt_conf();
        }
    }

    /// The log was truncated at `at`: revert any change there (thesis §4.1).
    pub(super) fn conf_truncated(&mut self, at: Index) {
        if self.conf.last_change().is_some_and(|i| i >= at) {
            self.conf.truncate(at);
            self.adopt_conf();
        }
    }

    /// Make `config.voters/learners` the tracked configuration; a leader adds and removes
    /// peers' progress to match (a new peer is probed from the end of the log).
    pub(super) fn adopt_conf(&mut self) {
        let m = self.conf.current();
        self.config.voters = m.voters;
        self.config.learners = m.learners;
        let me = self.config.id;
        let next = self.log.last_index().next();
        let (msgs_max, bytes_max) = (
            self.config.inflight_msgs_max,
            self.config.inflight_bytes_max,
        );
        let members: Vec<NodeId> = self
            .config
            .voters
            .iter()
            .chain(&self.config.learners)
            .copied()
            .filter(|&p| p != me)
            .collect();
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        l.progress.retain(|p, _| members.contains(p));
        for p in members {
            l.progress
                .entry(p)
                .or_insert_with(|| Progress::new(next, msgs_max, bytes_max));
        }
        if l.transfer
            .as_ref()
            .is_some_and(|t| !self.config.voters.contains(&t.to))
        {
            l.transfer = None;
        }
    }

    /// Thesis §4.2.2: a leader that is no longer a voter steps down once the change removing
    /// it is committed (until then it manages the cluster without counting itself).
    pub(super) fn maybe_step_down_removed(&mut self) {
        if matches!(self.role, RoleState::Leader(_))
            && !self.is_voter()
            && !self.conf_change_pending()
        {
            self.become_follower(self.current_term, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_change_round_trips() {
        let cc = ConfChange {
            op: ConfChangeOp::PromoteLearner,
            node: NodeId(0xdead_beef_0000_0001),
            context: Bytes::from_static(b"127.0.0.1:35004"),
        };
        assert_eq!(ConfChange::decode(&cc.encode()), Some(cc));
        assert_eq!(ConfChange::decode(&Bytes::from_static(b"\x02\x01")), None);
        assert_eq!(
            ConfChange::decode(&Bytes::from_static(&[1, 9, 0, 0, 0, 0, 0, 0, 0, 1])),
            None
        );
    }

    #[test]
    fn membership_checks_and_applies_single_changes() {
        let mut m = Membership {
            voters: vec![NodeId(1), NodeId(2)],
            learners: vec![],
        };
        let cc = |op, n| ConfChange {
            op,
            node: NodeId(n),
            context: Bytes::new(),
        };
        assert!(m.check(&cc(ConfChangeOp::PromoteLearner, 3)).is_some());
        m.apply(&cc(ConfChangeOp::AddLearner, 3));
        assert_eq!(m.learners, vec![NodeId(3)]);
        m.apply(&cc(ConfChangeOp::PromoteLearner, 3));
        assert_eq!(m.voters, vec![NodeId(1), NodeId(2), NodeId(3)]);
        m.apply(&cc(ConfChangeOp::RemoveNode, 1));
        m.apply(&cc(ConfChangeOp::RemoveNode, 2));
        assert!(
            m.check(&cc(ConfChangeOp::RemoveNode, 3)).is_some(),
            "last voter"
        );
    }
}
