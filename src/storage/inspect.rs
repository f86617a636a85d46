//! The operator's view of a data directory (`rocinante wal inspect DIR`): snapshots, segments
//! with their index ranges and record counts, the hard state, and any damage with the verdict
//! recovery would reach. Read-only: it never writes, cuts or deletes anything.
//!
//! Invariant: the verdict uses the same rules as `recovery.rs` (a torn tail is repairable only
//! at the end of the last segment with nothing valid after it; everything else is corruption,
//! exit code 3), so what an operator reads here is what the node will do on start.

use std::fmt::Write as _;
use std::path::Path;

use super::record::Record;
use super::recovery::{Replay, read_file};
use super::segment::{self, Damage};
use super::{StorageError, snapshot_file};
use crate::raft::Index;

/// Per-segment tallies for the report.
#[derive(Default)]
struct Tally {
    entries: u64,
    hard_states: u64,
    truncations: u64,
    min_index: Option<Index>,
    max_index: Option<Index>,
}

/// Build the report for `dir`. Errors only if the directory cannot be read; damage is part of
/// the report, not an error.
pub fn inspect(dir: &Path) -> Result<String, StorageError> {
    let mut out = String::new();
    let mut problems = Vec::new();
    let _ = writeln!(out, "data directory: {}", dir.display());
    let snapshot_index = report_snapshots(dir, &mut out, &mut problems)?;
    let segments = segment::list(dir)?;
    let _ = writeln!(out, "segments: {}", segments.len());
    let mut replay = Replay::default();
    let mut damaged = false;
    for (i, (first, path)) in segments.iter().enumerate() {
        let file = read_file(path)?;
        let mut tally = Tally::default();
        let mut sink = Replay::default();
        // After damage the log's state is unknown: later segments are tallied, not replayed.
        let target = if damaged { &mut sink } else { &mut replay };
        let outcome = segment::scan(*first, &file, |_, record| {
            count(&mut tally, &record);
            target.apply(record).map_err(|reason| (reason, true))
        });
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into());
        let range = match (tally.min_index, tally.max_index) {
            (Some(lo), Some(hi)) => format!("entries written {lo}..={hi}"),
            _ => "no entries".to_string(),
        };
        let _ = writeln!(
            out,
            "  {name}  {} bytes  {range}  ({} entry, {} hard state, {} truncate records)",
            file.len(),
            tally.entries,
            tally.hard_states,
            tally.truncations
        );
        if let Ok(Some(damage)) | Err(damage) = outcome {
            damaged = true;
            let last = i + 1 == segments.len();
            let verdict = describe_damage(&damage, last);
            let _ = writeln!(
                out,
                "    DAMAGE at offset {}: {}; {verdict}",
                damage.offset, damage.reason
            );
            if !(last && damage.is_torn_tail()) {
                problems.push(format!("{name} offset {}", damage.offset));
            }
        }
    }
    report_log(&mut out, &replay, snapshot_index, &mut problems);
    report_broken(dir, &mut out)?;
    let verdict = if problems.is_empty() {
        "node can start".to_string()
    } else {
        format!(
            "CORRUPT ({}): the node will refuse to start (exit code 3)",
            problems.join("; ")
        )
    };
    let _ = writeln!(out, "verdict: {verdict}");
    Ok(out)
}

fn count(tally: &mut Tally, record: &Record) {
    match record {
        Record::Entry(e) => {
            tally.entries += 1;
            tally.min_index = tally.min_index.min(Some(e.index)).or(Some(e.index));
            tally.max_index = tally.max_index.max(Some(e.index));
        }
        Record::HardState(_) => tally.hard_states += 1,
        Record::Truncate { .. } => tally.truncations += 1,
        Record::SegmentHeader { .. } => {}
    }
}

fn describe_damage(damage: &Damage, last: bool) -> String {
    if let Some(at) = damage.valid_record_after {
        return format!("a valid record follows at offset {at}: corruption");
    }
    if damage.malformed {
        return "checksum valid but content wrong: corruption".to_string();
    }
    if last {
        "torn tail: will be cut off (bytes kept as .broken) at next start".to_string()
    } else {
        "in a sealed segment: corruption".to_string()
    }
}

/// List snapshots, verifying the newest as recovery does. Returns its index (0 if none).
fn report_snapshots(
    dir: &Path,
    out: &mut String,
    problems: &mut Vec<String>,
) -> Result<Index, StorageError> {
    let (snapshots, temps) = snapshot_file::list(dir)?;
    let _ = writeln!(out, "snapshots: {}", snapshots.len());
    let mut newest = Index(0);
    for (n, (index, path)) in snapshots.iter().enumerate() {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into());
        if n + 1 < snapshots.len() {
            let _ = writeln!(
                out,
                "  {name}  older, unused (removed at the next snapshot)"
            );
            continue;
        }
        match snapshot_file::load(path, *index) {
            Ok((meta, data)) => {
                newest = meta.last_included_index;
                let _ = writeln!(
                    out,
                    "  {name}  last_included_index {} last_included_term {}  voters [{}]  learners [{}]  {} data bytes  checksum ok",
                    meta.last_included_index,
                    meta.last_included_term,
                    ids(&meta.voters),
                    ids(&meta.learners),
                    data.len()
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  DAMAGE: {e}");
                problems.push(format!("snapshot {name}"));
            }
        }
    }
    for temp in temps {
        let _ = writeln!(out, "  {}  unfinished temp file, ignored", temp.display());
    }
    Ok(newest)
}

fn ids(nodes: &[crate::raft::NodeId]) -> String {
    nodes
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn report_log(
    out: &mut String,
    replay: &Replay,
    snapshot_index: Index,
    problems: &mut Vec<String>,
) {
    let hs = replay.hard_state;
    let vote = hs
        .voted_for
        .map_or_else(|| "none".to_string(), |v| v.to_string());
    let _ = writeln!(
        out,
        "hard state: current_term {}  voted_for {vote}",
        hs.current_term
    );
    match (replay.base, replay.last_index()) {
        (Some(base), Some(last)) if base > snapshot_index => {
            let _ = writeln!(
                out,
                "log: entries {}..={last}, but snapshot ends at {snapshot_index}: GAP",
                base.next()
            );
            problems.push("log does not reach back to the snapshot".to_string());
        }
        (Some(_), Some(last)) if last > snapshot_index => {
            let _ = writeln!(
                out,
                "log: entries {}..={last} after the snapshot",
                snapshot_index.next()
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "log: no entries after the snapshot (index {snapshot_index})"
            );
        }
    }
}

fn report_broken(dir: &Path, out: &mut String) -> Result<(), StorageError> {
    let mut broken = Vec::new();
    for dirent in std::fs::read_dir(dir).map_err(super::fsio::io_err(dir))? {
        let dirent = dirent.map_err(super::fsio::io_err(dir))?;
        if dirent
            .file_name()
            .to_string_lossy()
            .contains(segment::BROKEN_SUFFIX)
        {
            broken.push(dirent.path());
        }
    }
    broken.sort();
    for path in broken {
        let _ = writeln!(
            out,
            "cut tail kept: {} (from an earlier repair)",
            path.display()
        );
    }
    Ok(())
}
