//! A crash tears the last write: the segment ends anywhere inside the last batch. For every
//! such byte offset, recovery must start (never an error) and yield exactly the records that
//! were fully written, and the repair must itself be durable.

use std::path::Path;

use rocinante::raft::{Entry, HardState, Index};

use crate::{TempDir, entries, entry, hs, open, segment_paths};

/// Frame header (9) + entry fixed fields (17).
const ENTRY_OVERHEAD: u64 = 26;
const HARD_STATE_RECORD: u64 = 26;
const TRUNCATE_RECORD: u64 = 17;
const SEGMENT_HEADER_RECORD: u64 = 29;
/// Segment header record (29) + hard state record (26), at the start of every segment.
const PREAMBLE: u64 = 55;

fn copy_dir(from: &Path, to: &Path) {
    for dirent in std::fs::read_dir(from).expect("read dir") {
        let dirent = dirent.expect("dirent");
        std::fs::copy(dirent.path(), to.join(dirent.file_name())).expect("copy");
    }
}

/// The last batch: optional hard state, entries (maybe overwriting a suffix), and the log and
/// hard state before it.
struct Case {
    name: &'static str,
    segment_bytes_max: u64,
    setup: Vec<(Option<HardState>, Vec<Entry>)>,
    last: (Option<HardState>, Vec<Entry>),
    /// Tear from the start of the last segment (a crash while rolling) instead of the batch.
    from_segment_start: bool,
}

fn run(case: Case) {
    let source = TempDir::new(case.name);
    let (mut storage, _) = open(source.path(), case.segment_bytes_max);
    let mut log: Vec<Entry> = Vec::new();
    let mut hard_state = HardState::default();
    for (h, batch) in &case.setup {
        storage.append(h.as_ref(), batch).expect("setup append");
        apply(&mut log, batch);
        hard_state = h.unwrap_or(hard_state);
    }
    let (last_hs, last_entries) = &case.last;
    let truncates = last_entries
        .first()
        .is_some_and(|e| e.index.0 != log.len() as u64 + 1);
    storage
        .append(last_hs.as_ref(), last_entries)
        .expect("last append");
    drop(storage);

    // Byte offsets (within the last segment) at which each record of the last batch ends.
    let segment = segment_paths(source.path()).pop().expect("a segment");
    let full = std::fs::read(&segment).expect("read segment");
    let mut ends = Vec::new();
    let mut at = 0;
    if truncates {
        at += TRUNCATE_RECORD;
        ends.push(at);
    }
    if last_hs.is_some() {
        at += HARD_STATE_RECORD;
        ends.push(at);
    }
    for e in last_entries {
        at += ENTRY_OVERHEAD + e.data.len() as u64;
        ends.push(at);
    }
    let start = full.len() as u64 - at;
    let first_cut = if case.from_segment_start {
        assert_eq!(
            start, PREAMBLE,
            "{}: the last batch must open a fresh segment",
            case.name
        );
        0
    } else {
        start
    };
    for cut in first_cut..=full.len() as u64 {
        let complete = ends.iter().filter(|&&end| start + end <= cut).count();
        let (want_log, want_hs) = expected(&log, hard_state, &case.last, truncates, complete);
        // Cuts at a record boundary leave nothing to repair.
        let boundary = cut == start
            || ends.iter().any(|&end| start + end == cut)
            || case.from_segment_start && [0, SEGMENT_HEADER_RECORD].contains(&cut);
        check_cut(
            &case,
            source.path(),
            &segment,
            &full,
            cut,
            &want_log,
            want_hs,
            boundary,
        );
    }
}

fn apply(log: &mut Vec<Entry>, batch: &[Entry]) {
    if let Some(first) = batch.first() {
        log.truncate(first.index.0 as usize - 1);
        log.extend_from_slice(batch);
    }
}

/// The log and hard state after the first `complete` records of the last batch.
fn expected(
    log: &[Entry],
    hard_state: HardState,
    last: &(Option<HardState>, Vec<Entry>),
    truncates: bool,
    mut complete: usize,
) -> (Vec<Entry>, HardState) {
    let mut log = log.to_vec();
    let mut hard_state = hard_state;
    if truncates && complete > 0 {
        complete -= 1;
        log.truncate(last.1[0].index.0 as usize - 1);
    }
    if let Some(h) = last.0 {
        if complete > 0 {
            complete -= 1;
            hard_state = h;
        }
    }
    log.extend_from_slice(&last.1[..complete]);
    (log, hard_state)
}

#[allow(clippy::too_many_arguments)]
fn check_cut(
    case: &Case,
    source: &Path,
    segment: &Path,
    full: &[u8],
    cut: u64,
    want_log: &[Entry],
    want_hs: HardState,
    boundary: bool,
) {
    let name = format!("{} cut at {cut}", case.name);
    let dir = TempDir::new("torn-cut");
    copy_dir(source, dir.path());
    let torn = dir.path().join(segment.file_name().expect("file name"));
    std::fs::write(&torn, &full[..cut as usize]).expect("tear");
    let (mut storage, recovered) = open(dir.path(), case.segment_bytes_max);
    assert_eq!(recovered.entries, want_log, "{name}");
    assert_eq!(recovered.hard_state, want_hs, "{name}");
    assert_eq!(
        recovered.repairs.is_empty(),
        boundary,
        "{name}: {:?}",
        recovered.repairs
    );
    if !boundary {
        let mut broken = torn.as_os_str().to_owned();
        broken.push(".broken");
        let kept = std::fs::read(&broken).expect("cut bytes kept");
        let valid = cut as usize - kept.len();
        assert!(!kept.is_empty(), "{name}");
        assert_eq!(
            kept,
            &full[valid..cut as usize],
            "{name}: .broken holds the cut bytes"
        );
    }
    // The repaired log takes new appends and recovers them: the repair itself was durable.
    let next = want_log.last().map_or(1, |e| e.index.0 + 1);
    storage
        .append(None, &[entry(9, next, 5)])
        .expect("append after repair");
    assert_eq!(storage.last_index(), Index(next));
    drop(storage);
    let (_, again) = open(dir.path(), case.segment_bytes_max);
    assert_eq!(
        again.entries.len(),
        want_log.len() + 1,
        "{name}: after reopen"
    );
    assert_eq!(again.hard_state, want_hs, "{name}");
    assert!(again.repairs.is_empty(), "{name}: {:?}", again.repairs);
}

#[test]
fn tear_last_batch_at_every_offset() {
    let mut last = entries(2, 6, 8, 0);
    last[1] = entry(2, 7, 33);
    run(Case {
        name: "plain",
        segment_bytes_max: 1 << 20,
        setup: vec![(Some(hs(1, Some(4))), entries(1, 1, 5, 12))],
        last: (Some(hs(2, Some(5))), last),
        from_segment_start: false,
    });
}

#[test]
fn tear_last_batch_with_truncation_at_every_offset() {
    run(Case {
        name: "truncation",
        segment_bytes_max: 1 << 20,
        setup: vec![(Some(hs(1, None)), entries(1, 1, 8, 10))],
        last: (Some(hs(2, Some(3))), entries(2, 5, 7, 10)),
        from_segment_start: false,
    });
}

#[test]
fn tear_a_freshly_rolled_segment_at_every_offset() {
    // The setup fills the first segment past its limit, so the last append rolls first: the
    // tear covers the new segment's preamble (a crash while rolling) and the batch.
    run(Case {
        name: "rolled",
        segment_bytes_max: 100,
        setup: vec![(Some(hs(1, Some(2))), entries(1, 1, 3, 30))],
        last: (None, entries(1, 4, 6, 7)),
        from_segment_start: true,
    });
}
