//! Raft, from the paper ("In Search of an Understandable Consensus Algorithm", Ongaro and
//! Ousterhout) and Ongaro's thesis, as a pure deterministic state machine.
//!
//! No I/O, no clock, no global RNG lives here: the runtime passes in ticks, messages and
//! proposals, and drains a `Ready` (see `node.rs` for the contract and its execution order).

mod election;
mod log;
pub mod message;
pub mod node;
pub mod progress;
pub mod quorum;
pub mod read_index;
mod replication;
mod role;
pub mod types;

pub use message::{Message, MessageBody, ReadId};
pub use node::{
    Config, ConfigError, ProposeError, RaftNode, ReadError, ReadFailure, ReadState, Ready,
    Restored, SoftState,
};
pub use types::{Entry, EntryKind, HardState, Index, NodeId, Role, SnapshotMeta, Term};
