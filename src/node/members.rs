//! The runtime's half of membership (thesis ch. 4) and leadership transfer (thesis §3.10):
//! the operator's requests, the addresses of members, and answering once a change is done.
//!
//! Addresses: a member added by a change is in no spec, so the `AddLearner` entry carries its
//! addresses in the ConfChange context (format below). Every node learns them as soon as the
//! entry is in its log (a leader must reach the new learner at once, and a configuration is in
//! effect from its append, §4.1): the transport starts a sender and accepts the new sender's
//! batches. Snapshots carry the addresses too (`snapshot.rs`).
//!
//! Requests, one at a time (a second one gets `ChangeInProgress`, as the core refuses a second
//! change): *add* proposes `AddLearner`; with `voter` it then waits until the learner has
//! caught up (its match_index reaches the commit index, thesis §4.2.1) and proposes
//! `PromoteLearner`; an existing learner is promoted directly. *Remove* proposes `RemoveNode`.
//! Each is answered once applied here, by checking the membership it produced, or `Timeout`
//! after `ADMIN_TIMEOUT_MS` (a join that streams a large snapshot takes a while). *Transfer*
//! calls `transfer_leadership` and answers once the target leads, `NotCaughtUp` if the core
//! abandoned it.
//!
//! Context format (written by `encode_context`): UTF-8 `grpc "host:port"`, `\n`, REST
//! `"host:port"`. No checksum (the log entry is protected by the WAL and the transport).

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::config::fnv1a_64;
use crate::raft::{
    ConfChange, ConfChangeOp, Entry, EntryKind, Index, NodeId, ProposeError, Role, Term,
};

use super::MemberAddrs;
use super::driver::Driver;
use super::handle::{AdminError, MemberStatus};

/// How long a membership change or transfer may take before it is answered `Timeout`.
pub const ADMIN_TIMEOUT_MS: u64 = 60_000;

pub(super) type AdminAnswer = Result<(NodeId, Vec<MemberStatus>), AdminError>;
pub(super) type AdminReply = oneshot::Sender<AdminAnswer>;
pub(super) type AdminReceiver = oneshot::Receiver<AdminAnswer>;

/// A membership or leadership request from a `NodeHandle`.
pub enum AdminRequest {
    Add {
        addrs: MemberAddrs,
        voter: bool,
        reply: AdminReply,
    },
    Remove {
        id: NodeId,
        reply: AdminReply,
    },
    Transfer {
        to: NodeId,
        reply: AdminReply,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Goal {
    Learner,
    Voter,
    Removed,
    Leader,
}

/// The request being carried out.
pub(super) struct PendingAdmin {
    target: NodeId,
    goal: Goal,
    /// The entry proposed for it, while it is not yet applied.
    proposed: Option<(Index, Term)>,
    reply: AdminReply,
    deadline: Instant,
}

pub(super) fn encode_context(a: &MemberAddrs) -> Bytes {
    Bytes::from(format!("{}\n{}", a.grpc, a.rest))
}

pub(super) fn decode_context(b: &[u8]) -> Option<MemberAddrs> {
    let s = std::str::from_utf8(b).ok()?;
    let (grpc, rest) = s.split_once('\n')?;
    Some(MemberAddrs {
        grpc: grpc.to_string(),
        rest: rest.to_string(),
    })
}

/// A member's id: FNV-1a 64 of its gRPC "address:port" (API.md §1).
pub fn member_id(grpc: &str) -> NodeId {
    NodeId(fnv1a_64(grpc.as_bytes()))
}

impl Driver {
    /// Know where `id` listens: send to it, accept from it, show it.
    pub(super) fn learn_member(&mut self, id: NodeId, addrs: MemberAddrs) {
        if id != self.opts.id {
            self.transport.add_peer(id, addrs.grpc.clone());
        }
        match self.members.write() {
            Ok(mut m) => m.insert(id),
            Err(poisoned) => poisoned.into_inner().insert(id),
        };
        self.peers.entry(id).or_insert(addrs);
    }

    /// Entries just appended: learn the addresses of members they add (§4.1).
    pub(super) fn learn_from_entries(&mut self, entries: &[Entry]) {
        for e in entries.iter().filter(|e| e.kind == EntryKind::ConfChange) {
            let Some(cc) = ConfChange::decode(&e.data) else {
                continue;
            };
            if cc.op != ConfChangeOp::AddLearner {
                continue;
            }
            if let Some(addrs) = decode_context(&cc.context) {
                self.learn_member(cc.node, addrs);
            }
        }
    }

    /// Every member with its addresses and role, as `/v1/status` shows them.
    pub(super) fn member_statuses(&self) -> Vec<MemberStatus> {
        let m = self.core.membership();
        let progress = self.core.progress();
        m.voters
            .iter()
            .map(|id| (id, true))
            .chain(m.learners.iter().map(|id| (id, false)))
            .map(|(id, voter)| {
                let a = self.peers.get(id);
                let grpc = a.map_or(String::new(), |a| a.grpc.clone());
                let (address, port) = split(&grpc);
                MemberStatus {
                    id: *id,
                    address,
                    port,
                    rest: a.map_or(String::new(), |a| a.rest.clone()),
                    voter,
                    match_index: progress.iter().find(|(p, _)| p == id).map(|(_, i)| *i),
                }
            })
            .collect()
    }

    pub(super) fn on_admin(&mut self, req: AdminRequest) {
        let (reply, target, goal, addrs) = match req {
            AdminRequest::Add {
                addrs,
                voter,
                reply,
            } => {
                let goal = if voter { Goal::Voter } else { Goal::Learner };
                (reply, member_id(&addrs.grpc), goal, Some(addrs))
            }
            AdminRequest::Remove { id, reply } => (reply, id, Goal::Removed, None),
            AdminRequest::Transfer { to, reply } => (reply, to, Goal::Leader, None),
        };
        if self.core.role() != Role::Leader {
            let leader = self.leader_addr();
            let _ = reply.send(Err(AdminError::NotLeader { leader }));
            return;
        }
        if self.admin.is_some() {
            let _ = reply.send(Err(AdminError::ChangeInProgress));
            return;
        }
        let m = self.core.membership();
        let refuse = match goal {
            Goal::Removed if !m.voters.contains(&target) && !m.learners.contains(&target) => {
                Some(AdminError::UnknownMember(target))
            }
            Goal::Leader if !m.voters.contains(&target) => Some(AdminError::NotCaughtUp(target)),
            Goal::Learner if m.voters.contains(&target) => Some(AdminError::Invalid(
                "already a voter (demotion is not supported)".into(),
            )),
            _ => None,
        };
        if let Some(e) = refuse {
            let _ = reply.send(Err(e));
            return;
        }
        if let Some(a) = addrs {
            self.learn_member(target, a);
        }
        if goal == Goal::Leader {
            self.core.transfer_leadership(target);
        }
        self.admin = Some(PendingAdmin {
            target,
            goal,
            proposed: None,
            reply,
            deadline: Instant::now() + Duration::from_millis(ADMIN_TIMEOUT_MS),
        });
        self.check_admin();
    }

    /// Every turn: move the pending request on, or answer it.
    pub(super) fn check_admin(&mut self) {
        let Some(mut p) = self.admin.take() else {
            return;
        };
        match self.advance_admin(&mut p) {
            Ok(true) => self.answer_admin(p, Ok(())),
            Ok(false) if Instant::now() >= p.deadline => {
                self.answer_admin(p, Err(AdminError::Timeout))
            }
            Ok(false) => self.admin = Some(p),
            Err(e) => self.answer_admin(p, Err(e)),
        }
    }

    fn answer_admin(&mut self, p: PendingAdmin, r: Result<(), AdminError>) {
        let answer = r.map(|()| (p.target, self.member_statuses()));
        let _ = p.reply.send(answer);
    }

    /// One step toward the goal: `Ok(true)` when reached, `Ok(false)` to wait.
    fn advance_admin(&mut self, p: &mut PendingAdmin) -> Result<bool, AdminError> {
        let m = self.core.membership();
        if let Some((index, _)) = p.proposed {
            if self.last_applied < index {
                return Ok(false);
            }
        }
        let t = p.target;
        let done = match p.goal {
            Goal::Learner => m.learners.contains(&t),
            Goal::Voter => m.voters.contains(&t),
            Goal::Removed => !m.voters.contains(&t) && !m.learners.contains(&t),
            Goal::Leader => self.core.leader() == Some(t),
        };
        if done && !self.core.conf_change_pending() {
            return Ok(true);
        }
        if p.goal == Goal::Leader {
            if self.core.role() == Role::Leader && self.core.transferring_to().is_none() {
                return Err(AdminError::NotCaughtUp(t));
            }
            return Ok(false);
        }
        if self.core.role() != Role::Leader {
            return Err(AdminError::Unavailable(
                "leadership lost during the change; it may or may not be applied".into(),
            ));
        }
        if self.core.conf_change_pending() {
            return Ok(false);
        }
        let op = match p.goal {
            Goal::Removed => ConfChangeOp::RemoveNode,
            _ if !m.learners.contains(&t) && !m.voters.contains(&t) => ConfChangeOp::AddLearner,
            // Thesis §4.2.1: promote only a learner that has caught up.
            Goal::Voter if self.caught_up(t) => ConfChangeOp::PromoteLearner,
            _ => return Ok(false),
        };
        let context = match (op, self.peers.get(&t)) {
            (ConfChangeOp::AddLearner, Some(a)) => encode_context(a),
            _ => Bytes::new(),
        };
        let cc = ConfChange {
            op,
            node: t,
            context,
        };
        match self.core.propose_conf_change(cc) {
            Ok(at) => {
                p.proposed = Some(at);
                Ok(false)
            }
            Err(ProposeError::ConfChangeInProgress) => Ok(false),
            Err(ProposeError::InvalidConfChange { reason }) => {
                Err(AdminError::Invalid(reason.to_string()))
            }
            Err(e) => Err(AdminError::Unavailable(e.to_string())),
        }
    }

    /// The learner's match_index has reached the commit index.
    fn caught_up(&self, id: NodeId) -> bool {
        let commit = self.core.commit_index();
        self.core
            .progress()
            .iter()
            .any(|(p, m)| *p == id && *m >= commit)
    }
}

/// "host:port" -> (host, port); unparseable: (whole, 0).
fn split(addr: &str) -> (String, u16) {
    match addr.rsplit_once(':') {
        Some((h, p)) => match p.parse() {
            Ok(p) => (h.trim_matches(['[', ']']).to_string(), p),
            Err(_) => (addr.to_string(), 0),
        },
        None => (addr.to_string(), 0),
    }
}
