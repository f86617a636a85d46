//! Rocinante: a replicated key-value server on a hand-written Raft.
//!
//! Reading order: `raft` (the algorithm, pure), `storage` (the durable log), `kv` (the state
//! machine), `node` (the runtime that ties them together), `transport` and `api` (the edges).

pub mod api;
pub mod client;
pub mod config;
pub mod kv;
pub mod node;
pub mod raft;
pub mod storage;
pub mod transport;
