//! The one seam between HTTP and the node: the four calls the REST layer makes, as a trait so
//! the whole HTTP surface can be tested in-process against a fake store. Production uses
//! `NodeHandle`; the trait adds no behaviour, only delegates.

use std::future::Future;

use bytes::Bytes;

use crate::kv::command::{Applied, Idempotency, Op};
use crate::node::handle::{
    AnswerMeta, Consistency, KeyValue, ListPage, NodeError, NodeHandle, Status,
};

pub type WriteResult = Result<(Applied, AnswerMeta), NodeError>;
pub type GetResult = Result<(Option<KeyValue>, AnswerMeta), NodeError>;
pub type ListResult = Result<(ListPage, AnswerMeta), NodeError>;

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
}
