//! Reliability tests of real Rocinante clusters, checked the way Jepsen checks etcd.
//!
//! - `history`, `model`, `checker`: a linearizability checker for the KV register (Wing & Gong
//!   search with Lowe's memoisation, per key), with its own tests in `checker_tests` over
//!   hand-written and generated (`generator`) histories.

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
