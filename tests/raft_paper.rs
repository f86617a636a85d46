//! One test per rule of the Raft paper ("In Search of an Understandable Consensus Algorithm")
//! and Ongaro's thesis, in the spirit of etcd's raft_paper_test: each test names the rule it
//! checks and would fail if the core broke that rule.
//!
//! The harness is deliberately tiny: a few nodes wired by handing each `Ready`'s messages to
//! their recipients synchronously, persisting by reporting `persisted` right away. The seeded
//! simulator with faults is `tests/simulation.rs`.
//!
//! Files: `raft_paper/election.rs`, `replication.rs`, `reads.rs`, `robustness.rs`; the harness
//! is `raft_paper/harness.rs`.

#[path = "raft_paper/harness.rs"]
mod harness;

#[path = "raft_paper/election.rs"]
mod election;
#[path = "raft_paper/reads.rs"]
mod reads;
#[path = "raft_paper/replication.rs"]
mod replication;
#[path = "raft_paper/robustness.rs"]
mod robustness;
