//! Rocinante's seeded cluster simulator: N real Raft cores, a virtual clock, one seeded RNG and
//! an event queue, so that one seed reproduces one whole run byte for byte.
//!
//! How it fits together:
//! - `network` holds the event queue and the fault model (loss, duplication, delay and so
//!   reordering, partitions of any shape including one-way cuts);
//! - `storage` is each node's simulated durable storage: only what a `Ready` handed to it and
//!   the "fsync" completed survives a crash;
//! - `cluster` is the `Sim` and its event loop; `turn` executes each node's `Ready` in the
//!   documented order (raft/node.rs); `nemesis` crashes, restarts and partitions; `client`
//!   proposes and reads;
//! - `checker` checks the Raft safety properties (§5.2-§5.4, figure 3) after every step over
//!   the whole history, not just the final state;
//! - `control` is the test-facing API modelled on the MIT 6.5840 lab's config (`one`,
//!   `check_one_leader`, ...); `sweep` is the randomized nemesis used by the seed sweep;
//! - `trace` is the run's trace: hashed for determinism, kept for golden files and failures.
//!
//! Invariant of the whole simulator: nothing but `Sim::rng` decides anything random, and
//! events at the same virtual time run in the order they were scheduled.

pub mod checker;
pub mod client;
pub mod cluster;
pub mod control;
pub mod membership;
pub mod nemesis;
pub mod network;
pub mod snapshots;
pub mod storage;
pub mod sweep;
pub mod trace;
pub mod turn;

mod findings;
mod golden;
mod lab_3a;
mod lab_3b;
mod lab_3c;
mod lab_3d;
mod scenarios;
