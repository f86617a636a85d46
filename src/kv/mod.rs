//! The replicated state machine: keys with revisions, applied from the log in order.

pub mod command;
