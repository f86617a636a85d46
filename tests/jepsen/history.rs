//! A history of client operations against the KV register, as the checker reads it and as the
//! harness records it: one `Op` per logical request, with its invocation and return times and
//! what the client learned.
//!
//! Invariants: `call_ns <= return_ns`; an op whose outcome is unknown (a timeout, a dropped
//! connection, a `504`) has `return_ns == RETURN_NEVER`, because it may take effect at any time
//! after its invocation (Jepsen's `:info`). A failed op (`503`, connection refused before the
//! request was sent) is known not to have been applied: the checker drops it.
//!
//! On disk (`target/jepsen/<run>/history.jsonl`) a history is JSON lines, one `Op` per line,
//! in the serde shape of the types below; the file carries no checksum and no schema version:
//! it is a test artefact read back by the same build.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::Path;

/// Values written by the workloads are unique decimal numbers, so a value is a `u64`. A read
/// of bytes that are not such a number is recorded as `u64::MAX`, which no write uses.
pub type Value = u64;
/// `return_ns` of an op whose outcome is unknown: it never returned, as far as the checker knows.
pub const RETURN_NEVER: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Input {
    /// `GET /v1/kv/{key}` (linearizable by default).
    Get,
    /// `GET /v1/kv/{key}?consistency=lease`: linearizable too while clocks drift less than
    /// the lease margin (API.md §5), which holds on one machine; checked like `Get`.
    LeaseGet,
    /// `PUT /v1/kv/{key}`, optionally `?if_revision=R` (0 = must not exist).
    Put {
        value: Value,
        if_revision: Option<u64>,
    },
    /// `DELETE /v1/kv/{key}`, optionally `?if_revision=R`.
    Delete { if_revision: Option<u64> },
}

/// What the client learned. `Read` carries the value and its mod revision (`X-Revision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Output {
    /// Timeout, `504`, connection reset after sending: may or may not have been applied.
    Unknown,
    /// `503`, connect refused: known not applied.
    Failed,
    /// `200` on a GET (`Some((value, mod_revision))`) or `404` (`None`).
    Read(Option<(Value, u64)>),
    /// `200` on a PUT.
    Written {
        revision: u64,
        prev_revision: Option<u64>,
    },
    /// `200` on a DELETE.
    Deleted { revision: u64, deleted: bool },
    /// `409 revision_mismatch`: the key's current value and mod revision (`None` = absent).
    Mismatch { current: Option<(Value, u64)> },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The client (logical process) that issued it; a client has one op in flight at a time.
    pub client: u32,
    pub key: String,
    /// Nanoseconds since the start of the run (monotonic clock).
    pub call_ns: u64,
    /// Nanoseconds since the start of the run, or `RETURN_NEVER`.
    pub return_ns: u64,
    pub input: Input,
    pub output: Output,
    /// The node the request was sent to (1-based), for the report only.
    #[serde(default)]
    pub node: u32,
}

/// Write a history as JSON lines.
pub fn write_jsonl(path: &Path, ops: &[Op]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for op in ops {
        serde_json::to_writer(&mut out, op)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Read a history written by `write_jsonl`.
pub fn read_jsonl(path: &Path) -> std::io::Result<Vec<Op>> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut ops = Vec::new();
    for line in file.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        ops.push(serde_json::from_str(&line)?);
    }
    Ok(ops)
}
