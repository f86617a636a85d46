//! The replicated state machine: keys with revisions, applied from the log in order.
//!
//! Reading order: `command` (what a log entry asks for and what it answered, and their byte
//! formats), `store` (the deterministic state machine), `idempotency` (the at-most-once table),
//! `snapshot` (the store's snapshot format), `codec` (the varint primitives under all of them).

mod codec;
pub mod command;
#[cfg(test)]
mod format_tests;
mod idempotency;
mod snapshot;
pub mod store;

pub use codec::DecodeError;
pub use store::{Store, StoreConfig};
