//! The runtime's face to the API layer: a cheap, cloneable handle that turns client requests
//! into messages to the one event loop and waits for their answers.
//!
//! Invariant: nothing here touches Raft or the store directly; every request is a message to
//! the loop (bounded queue: `requests_queued_max`; when it is full the caller gets
//! `NodeError::Unavailable` at once, never a hang).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::kv::command::{Applied, Idempotency, Op};
use crate::raft::{Index, NodeId, Role, Term};

use super::pending::{Read, Request};
use crate::transport::TransportStats;

/// How a read is served (API.md §3, §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// ReadIndex (thesis §6.4): confirmed leadership, then served at or after the read index.
    Linearizable,
    /// Served by a leader holding a lease (thesis §6.4.1) without a confirmation round.
    Lease,
    /// Served from this node's applied state, whatever its age.
    Stale,
}

/// What every KV answer reports in its headers (API.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnswerMeta {
    pub node_id: NodeId,
    pub leader_id: Option<NodeId>,
    pub term: Term,
    /// The commit index the answer reflects.
    pub raft_index: Index,
}

/// One key as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Bytes,
    pub value: Bytes,
    pub create_revision: u64,
    pub mod_revision: u64,
}

/// A page of a prefix listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListPage {
    /// The store's revision (last applied index) when the page was read.
    pub revision: u64,
    pub items: Vec<KeyValue>,
    pub more: bool,
}

/// A member as shown in `/v1/status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    pub id: NodeId,
    pub address: String,
    pub port: u16,
    /// "host:port"
    pub rest: String,
    pub voter: bool,
    /// Known only on the leader.
    pub match_index: Option<Index>,
}

/// A node's view of itself, refreshed by the loop every turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub name: String,
    pub role: Role,
    pub term: Term,
    /// The leader's id and its REST "host:port".
    pub leader: Option<(NodeId, String)>,
    pub commit_index: Index,
    pub applied_index: Index,
    pub last_log_index: Index,
    pub snapshot_index: Index,
    pub members: Vec<MemberStatus>,
    /// True once a leader is known and everything committed at start-up is applied (`/ready`).
    pub ready: bool,
}

/// Why a request did not get an answer from the state machine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// This node is not the leader; `leader` is the one it knows (id, REST "host:port"). The
    /// API layer forwards the request there, or answers 307 with `?redirect=true`. Nothing was
    /// applied.
    #[error("not the leader")]
    NotLeader { leader: Option<(NodeId, String)> },
    /// No leader or no quorum, or the loop's queue is full: NOT applied (503).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Proposed, but its commit was not seen within `request_timeout_ms`: outcome unknown (504).
    #[error("timed out; outcome unknown")]
    Timeout,
}

/// Why a membership change or leadership transfer did not happen (API.md §3 rows
/// `/v1/members`, `/v1/leader/transfer`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// Ask the leader (id, REST "host:port") instead.
    #[error("not the leader")]
    NotLeader { leader: Option<(NodeId, String)> },
    /// Another change is in progress (or this leader has not committed in its term yet): 409.
    #[error("a membership change is in progress")]
    ChangeInProgress,
    /// No member has this id: 404.
    #[error("unknown member {0}")]
    UnknownMember(NodeId),
    /// The transfer target is not a caught-up voter (or the transfer was abandoned): 409.
    #[error("{0} is not a caught-up voter")]
    NotCaughtUp(NodeId),
    /// The request makes no sense (400).
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Proposed but not seen committed in time: the change may still happen (504).
    #[error("timed out; outcome unknown")]
    Timeout,
}

/// Cloneable handle to the runtime. Every method is cancel-safe: dropping the future abandons
/// the wait, never the write (a proposed write may still be applied).
#[derive(Clone)]
pub struct NodeHandle {
    requests: mpsc::Sender<Request>,
    status: watch::Receiver<Status>,
    /// The loop answers `Timeout` at `request_timeout_ms`; the handle waits this much longer
    /// before answering it itself, in case the loop is stuck (e.g. in a hung fsync).
    wait_max: Duration,
    transport_stats: Arc<TransportStats>,
}

/// Slack between the loop's own deadline and the handle's safety-net deadline.
const HANDLE_DEADLINE_SLACK_MS: u64 = 500;

impl NodeHandle {
    pub(super) fn new(
        requests: mpsc::Sender<Request>,
        status: watch::Receiver<Status>,
        request_timeout_ms: u64,
        transport_stats: Arc<TransportStats>,
    ) -> NodeHandle {
        NodeHandle {
            requests,
            status,
            wait_max: Duration::from_millis(request_timeout_ms + HANDLE_DEADLINE_SLACK_MS),
            transport_stats,
        }
    }

    /// Hand `req` to the loop without waiting: a full queue or a stopped loop is
    /// `Unavailable` at once (nothing was proposed).
    fn submit(&self, req: Request) -> Result<(), NodeError> {
        self.requests.try_send(req).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                NodeError::Unavailable("node request queue is full".into())
            }
            mpsc::error::TrySendError::Closed(_) => {
                NodeError::Unavailable("node is stopping".into())
            }
        })
    }

    /// Wait for the loop's answer. `lost` is what a vanished answer means: for a write that
    /// reached the loop the outcome is unknown (`Timeout`); for a read, `Unavailable`.
    async fn wait<T>(
        &self,
        rx: oneshot::Receiver<Result<T, NodeError>>,
        lost: NodeError,
    ) -> Result<T, NodeError> {
        match tokio::time::timeout(self.wait_max, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(lost),
            Err(_) => Err(NodeError::Timeout),
        }
    }

    /// Propose a write and wait until it is applied (success), known lost (Unavailable), or
    /// the request timeout passes (Timeout).
    pub async fn write(
        &self,
        op: Op,
        idempotency: Option<Idempotency>,
    ) -> Result<(Applied, AnswerMeta), NodeError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Request::Write {
            op,
            idempotency,
            reply,
        })?;
        self.wait(rx, NodeError::Timeout).await
    }

    /// Read one key at the given consistency.
    pub async fn get(
        &self,
        key: Bytes,
        consistency: Consistency,
    ) -> Result<(Option<KeyValue>, AnswerMeta), NodeError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Request::Read {
            consistency,
            read: Read::Get { key, reply },
        })?;
        self.wait(rx, NodeError::Unavailable("node is stopping".into()))
            .await
    }

    /// List keys with `prefix`, sorted by key bytes, strictly after `start_after` when given,
    /// at most `limit` items.
    pub async fn list(
        &self,
        prefix: Bytes,
        start_after: Option<Bytes>,
        limit: usize,
        consistency: Consistency,
    ) -> Result<(ListPage, AnswerMeta), NodeError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Request::Read {
            consistency,
            read: Read::List {
                prefix,
                start_after,
                limit,
                reply,
            },
        })?;
        self.wait(rx, NodeError::Unavailable("node is stopping".into()))
            .await
    }

    /// Add a member (as a learner, or as a voter: learner first, promoted once caught up), or
    /// promote an existing learner (`voter`). Answers the members once committed.
    pub async fn add_member(
        &self,
        addrs: super::MemberAddrs,
        voter: bool,
    ) -> Result<(NodeId, Vec<MemberStatus>), AdminError> {
        let (reply, rx) = oneshot::channel();
        let req = super::members::AdminRequest::Add {
            addrs,
            voter,
            reply,
        };
        self.admin(req, rx).await
    }

    /// Remove a member (voter or learner). Answers the remaining members once committed.
    pub async fn remove_member(&self, id: NodeId) -> Result<Vec<MemberStatus>, AdminError> {
        let (reply, rx) = oneshot::channel();
        self.admin(super::members::AdminRequest::Remove { id, reply }, rx)
            .await
            .map(|(_, m)| m)
    }

    /// Hand leadership to voter `to` (thesis §3.10); answers once `to` leads.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<NodeId, AdminError> {
        let (reply, rx) = oneshot::channel();
        self.admin(super::members::AdminRequest::Transfer { to, reply }, rx)
            .await
            .map(|(id, _)| id)
    }

    async fn admin(
        &self,
        req: super::members::AdminRequest,
        rx: super::members::AdminReceiver,
    ) -> Result<(NodeId, Vec<MemberStatus>), AdminError> {
        self.submit(Request::Admin(req)).map_err(|e| match e {
            NodeError::Unavailable(m) => AdminError::Unavailable(m),
            _ => AdminError::Unavailable("node unavailable".into()),
        })?;
        // The loop answers at its own (longer) admin deadline; this one only guards a stuck loop.
        let wait = self.wait_max + Duration::from_millis(super::members::ADMIN_TIMEOUT_MS);
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(AdminError::Unavailable("node is stopping".into())),
            Err(_) => Err(AdminError::Timeout),
        }
    }

    /// The latest status the loop published (cheap: no message to the loop).
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A receiver that wakes whenever the loop publishes a changed status (for tests, the
    /// dashboard, and waiting for readiness without polling). Never hold its `borrow()` (or the
    /// `Ref` that `wait_for` returns) across an await: it is a lock the loop takes to publish,
    /// so holding it stalls the node. Clone what you need and drop the `Ref`.
    pub fn status_watch(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Counters of the node-to-node transport (drops, rejections, undecodable messages), for
    /// `/metrics`. Relaxed atomics: read them as statistics.
    pub fn transport_stats(&self) -> &TransportStats {
        &self.transport_stats
    }
}
