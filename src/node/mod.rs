//! The runtime: one tokio event loop that owns the Raft core, the storage and the state
//! machine, and executes each `Ready` in the order `raft::node::Ready` documents.

pub mod handle;
