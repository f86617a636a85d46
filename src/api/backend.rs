//! The one seam between HTTP and the node: the four calls the REST layer makes, as a trait so
//! the whole HTTP surface can be tested in-process against a fake store. Production uses
//! `NodeHandle`; the trait adds no behaviour, only delegates.

use std::future::Future;

use bytes::Bytes;

use crate::kv::command::{Applied, Idempotency, Op};
use crate::node::MemberAddrs;
use crate::node::handle::{
    AdminError, AnswerMeta, Consistency, KeyValue, ListPage, MemberStatus, NodeError, NodeHandle,
    Status,
};
use crate::raft::NodeId;

pub type WriteResult = Result<(Applied, AnswerMeta), NodeError>;
pub type GetResult = Result<(Option<KeyValue>, AnswerMeta), NodeError>;
pub type ListResult = Result<(ListPage, AnswerMeta), NodeError>;
pub type MembersResult = Result<(NodeId, Vec<MemberStatus>), AdminError>;

/// What the API needs from a node (see `NodeHandle` for the meaning of each call).
pub trait Backend: Clone + Send + Sync + 'static {
    fn write(
        &self,
        op: Op,
        idempotency: Option<Idempotency>,
    ) -> impl Future<Output = WriteResult> + Send;
    fn get(&self, key: Bytes, consistency: Consistency) -> impl Future<Output = GetResult> + Send;
    fn list(
        &self,
        prefix: Bytes,
        start_after: Option<Bytes>,
        limit: usize,
        consistency: Consistency,
    ) -> impl Future<Output = ListResult> + Send;
    fn status(&self) -> Status;
    /// Membership and leadership (`NodeHandle::add_member` etc.). The defaults refuse, for
    /// test backends that have no cluster.
    fn add_member(
        &self,
        _addrs: MemberAddrs,
        _voter: bool,
    ) -> impl Future<Output = MembersResult> + Send {
        async { Err(AdminError::Unavailable("no membership here".into())) }
    }
    fn remove_member(&self, _id: NodeId) -> impl Future<Output = MembersResult> + Send {
        async { Err(AdminError::Unavailable("no membership here".into())) }
    }
    fn transfer_leader(&self, _to: NodeId) -> impl Future<Output = MembersResult> + Send {
        async {
            Err(AdminError::Unavailable(
                "no leadership transfer here".into(),
            ))
        }
    }
}

impl Backend for NodeHandle {
    fn write(
        &self,
        op: Op,
        idempotency: Option<Idempotency>,
    ) -> impl Future<Output = WriteResult> + Send {
        NodeHandle::write(self, op, idempotency)
    }

    fn get(&self, key: Bytes, consistency: Consistency) -> impl Future<Output = GetResult> + Send {
        NodeHandle::get(self, key, consistency)
    }

    fn list(
        &self,
        prefix: Bytes,
        start_after: Option<Bytes>,
        limit: usize,
        consistency: Consistency,
    ) -> impl Future<Output = ListResult> + Send {
        NodeHandle::list(self, prefix, start_after, limit, consistency)
    }

    fn status(&self) -> Status {
        NodeHandle::status(self)
    }

    fn add_member(
        &self,
        addrs: MemberAddrs,
        voter: bool,
    ) -> impl Future<Output = MembersResult> + Send {
        NodeHandle::add_member(self, addrs, voter)
    }

    fn remove_member(&self, id: NodeId) -> impl Future<Output = MembersResult> + Send {
        let h = self.clone();
        async move { h.remove_member(id).await.map(|m| (id, m)) }
    }

    fn transfer_leader(&self, to: NodeId) -> impl Future<Output = MembersResult> + Send {
        let h = self.clone();
        async move { h.transfer_leader(to).await.map(|id| (id, Vec::new())) }
    }
}
