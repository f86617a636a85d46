//! Reliability tests of real Rocinante clusters, checked the way Jepsen checks etcd.
//!
//! The checker (no cluster needed):
//! - `history`: the ops a run records (invocation, return or +infinity, what the client
//!   learned) and their JSON-lines file;
//! - `model`: one key of the KV store as a sequential specification with revisions;
//! - `checker`: Wing & Gong's search with Lowe's memoisation, per key, plus the global
//!   revision order; `checker_tests` over hand-written anomalies and `generator` histories.
//!
//! The harness (real `rocinante serve` processes):
//! - `net`: one network namespace per node behind a bridge, cuts with iptables (or loopback
//!   addresses when namespaces are unavailable);
//! - `cluster`: spec, processes, kill -9 / SIGSTOP / restart / torn WAL;
//! - `http`, `workload`: clients recording the register, set and idempotent workloads;
//! - `faults`: the nemesis; `run`: one bounded run and its verdict; `mutate`: faults injected
//!   into a recorded history; `harness_tests`: the short run (in `make test`), the long run
//!   (`make jepsen`), and a deliberately broken server when the binary has the switch.
//!
//! Needs for partitions: root, iproute2 (`ip netns`) and iptables; without them the harness
//! falls back to loopback with kill and pause faults only, and says so in its summary.

mod checker;
mod checker_tests;
mod cluster;
mod faults;
mod generator;
mod harness_tests;
mod history;
mod http;
mod model;
mod mutate;
mod net;
mod run;
mod workload;
