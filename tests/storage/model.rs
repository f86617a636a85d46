//! Property test: random sequences of append / overwrite (§5.3 truncation) / snapshot /
//! compact / read / reopen / torn crash, checked against an in-memory model of the log.
//!
//! The model is the obvious one: a snapshot index, the entries after it, and a hard state. At
//! every reopen the recovered state must equal it; every read must return its slice. A torn
//! crash cuts the last batch at a random byte inside its entry records, and the model keeps
//! the batch's entries that were wholly written. Deterministic: a fixed proptest seed
//! (`SEED`); proptest prints the failing, shrunk sequence.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use rocinante::raft::{Entry, HardState, Index, SnapshotMeta, Term};
use rocinante::storage::{Fsync, Storage, StorageOptions};

use crate::{TempDir, entry, hs, segment_paths};

const SEED: u64 = 0x5EED_2026;
const SEGMENT_BYTES_MAX: u64 = 1024;
/// Frame header (9) + entry fixed fields (17).
const ENTRY_OVERHEAD: usize = 26;

#[derive(Clone, Debug)]
enum Op {
    /// Append `n` entries of `len` bytes after the last, with a new hard state if `vote`.
    Append {
        n: u64,
        len: usize,
        vote: bool,
    },
    /// A new leader overwrites from `back` entries before the end (bounded by the snapshot).
    Overwrite {
        back: u64,
        n: u64,
    },
    /// Snapshot `back` entries before the end, or `ahead` past it (installed from a leader);
    /// `conflict`: installed from a leader of a newer term, disagreeing with the log there.
    Snapshot {
        back: u64,
        ahead: u64,
        compact: bool,
        conflict: bool,
    },
    Compact {
        back: u64,
    },
    Read {
        from_back: u64,
        count: u64,
        bytes_max: u64,
    },
    Reopen,
    /// Tear the last batch `keep_permille`/1000 of the way into its entries, then reopen.
    TornCrash {
        keep_permille: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..6u64, 0..40usize, any::<bool>()).prop_map(|(n, len, vote)| Op::Append { n, len, vote }),
        2 => (0..12u64, 1..4u64).prop_map(|(back, n)| Op::Overwrite { back, n }),
        1 => (0..8u64, 0..3u64, any::<bool>(), 0..4u8).prop_map(|(back, ahead, compact, c)| {
            Op::Snapshot { back, ahead: if ahead == 2 { 5 } else { 0 }, compact, conflict: c == 0 }
        }),
        1 => (0..20u64).prop_map(|back| Op::Compact { back }),
        2 => (0..30u64, 1..10u64, 1..400u64)
            .prop_map(|(from_back, count, bytes_max)| Op::Read { from_back, count, bytes_max }),
        1 => Just(Op::Reopen),
        1 => (0..1000u64).prop_map(|keep_permille| Op::TornCrash { keep_permille }),
    ]
}

#[derive(Default)]
struct Model {
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    snapshot_index: u64,
    /// Entries after the snapshot.
    log: Vec<Entry>,
    hard_state: HardState,
    term: u64,
    /// The last append's first index and entry data lengths, while it is the file's tail.
    last_batch: Option<(u64, Vec<usize>)>,
}

impl Model {
    fn last(&self) -> u64 {
        self.snapshot_index + self.log.len() as u64
    }
    fn append(&mut self, entries: &[Entry]) {
        let first = entries[0].index.0;
        self.log
            .truncate((first - self.snapshot_index - 1) as usize);
        self.log.extend_from_slice(entries);
    }
}

fn open(dir: &Path) -> (Storage, rocinante::storage::Recovered) {
    let options = StorageOptions {
        segment_bytes_max: SEGMENT_BYTES_MAX,
        fsync: Fsync::Never,
    };
    Storage::open(dir, options).expect("open")
}

fn check_recovered(model: &Model, storage: &Storage, recovered: &rocinante::storage::Recovered) {
    assert_eq!(recovered.hard_state, model.hard_state);
    assert_eq!(recovered.snapshot, model.snapshot);
    assert_eq!(recovered.entries, model.log);
    assert_eq!(storage.last_index(), Index(model.last()));
}

fn step(dir: &Path, storage: &mut Storage, model: &mut Model, op: &Op) {
    let batch = model.last_batch.take();
    match *op {
        Op::Append { n, len, vote } => {
            let first = model.last() + 1;
            let batch: Vec<_> = (first..first + n)
                .map(|i| entry(model.term, i, len))
                .collect();
            let hard_state = vote.then(|| hs(model.term, Some(first)));
            storage.append(hard_state.as_ref(), &batch).expect("append");
            model.hard_state = hard_state.unwrap_or(model.hard_state);
            model.append(&batch);
            model.last_batch = Some((first, vec![len; n as usize]));
        }
        Op::Overwrite { back, n } => {
            model.term += 1;
            let first = model.last().saturating_sub(back).max(model.snapshot_index) + 1;
            let batch: Vec<_> = (first..first + n)
                .map(|i| entry(model.term, i, 9))
                .collect();
            let hard_state = hs(model.term, None);
            storage
                .append(Some(&hard_state), &batch)
                .expect("overwrite");
            model.hard_state = hard_state;
            model.append(&batch);
            model.last_batch = Some((first, vec![9; n as usize]));
        }
        Op::Snapshot {
            back,
            ahead,
            compact,
            conflict,
        } => snapshot(storage, model, (back, ahead), compact, conflict),
        Op::Compact { back } => {
            storage
                .compact(Index(model.last().saturating_sub(back)))
                .expect("compact");
        }
        Op::Read {
            from_back,
            count,
            bytes_max,
        } => read(storage, model, from_back, count, bytes_max),
        Op::Reopen => {
            let (reopened, recovered) = open(dir);
            *storage = reopened;
            check_recovered(model, storage, &recovered);
            assert!(recovered.repairs.is_empty(), "{:?}", recovered.repairs);
        }
        Op::TornCrash { keep_permille } => {
            if let Some((first, lens)) = batch {
                torn_crash(dir, storage, model, first, &lens, keep_permille);
            }
        }
    }
}

fn snapshot(
    storage: &mut Storage,
    model: &mut Model,
    at: (u64, u64),
    compact: bool,
    conflict: bool,
) {
    let index = model.last().saturating_sub(at.0) + at.1;
    if index == 0 || index < model.snapshot_index {
        return;
    }
    if conflict {
        model.term += 1;
    }
    let term = match (index.checked_sub(model.snapshot_index + 1), &model.snapshot) {
        _ if conflict => Term(model.term),
        (Some(at), _) if (at as usize) < model.log.len() => model.log[at as usize].term,
        (None, Some((meta, _))) => meta.last_included_term,
        _ => Term(model.term),
    };
    if conflict {
        // §7: the snapshot's last entry disagrees with the log, so the whole log goes.
        model.log.truncate((index - model.snapshot_index) as usize);
    }
    let meta = SnapshotMeta {
        last_included_index: Index(index),
        last_included_term: term,
        ..Default::default()
    };
    let data = format!("state at {index}").into_bytes();
    storage.save_snapshot(&meta, &data).expect("snapshot");
    let covered = ((index - model.snapshot_index) as usize).min(model.log.len());
    model.log.drain(..covered);
    model.snapshot_index = index;
    model.snapshot = Some((meta, data));
    if compact {
        storage.compact(Index(index)).expect("compact");
    }
}

fn read(storage: &Storage, model: &Model, from_back: u64, count: u64, bytes_max: u64) {
    let from = model
        .last()
        .saturating_sub(from_back)
        .max(model.snapshot_index + 1);
    let to = from + count - 1;
    let got = storage
        .entries(Index(from), Index(to), bytes_max)
        .expect("read");
    let mut want = Vec::new();
    let mut total = 0;
    for e in model
        .log
        .iter()
        .filter(|e| (from..=to).contains(&e.index.0))
    {
        if !want.is_empty() && total + e.size_bytes() > bytes_max {
            break;
        }
        total += e.size_bytes();
        want.push(e.clone());
    }
    assert_eq!(got, want, "entries({from}, {to}, {bytes_max})");
}

fn torn_crash(
    dir: &Path,
    storage: &mut Storage,
    model: &mut Model,
    first: u64,
    lens: &[usize],
    keep_permille: u64,
) {
    let entry_bytes: usize = lens.iter().map(|l| l + ENTRY_OVERHEAD).sum();
    let cut_back = entry_bytes - (entry_bytes as u64 * keep_permille / 1000) as usize;
    let segment = segment_paths(dir).pop().expect("segment");
    let len = std::fs::metadata(&segment).expect("stat").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open");
    file.set_len(len - cut_back as u64).expect("tear");
    // Entries of the batch wholly before the cut survive.
    let kept_bytes = entry_bytes - cut_back;
    let mut end = 0;
    let complete = lens.iter().take_while(|l| {
        end += *l + ENTRY_OVERHEAD;
        end <= kept_bytes
    });
    let survivors = complete.count() as u64;
    let keep = (first + survivors - 1).saturating_sub(model.snapshot_index);
    model.log.truncate(keep as usize);
    let (reopened, recovered) = open(dir);
    *storage = reopened;
    check_recovered(model, storage, &recovered);
}

#[test]
fn storage_matches_model() {
    let config = Config {
        cases: 256,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(SEED),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        let dir = TempDir::new("model");
        let (mut storage, _) = open(dir.path());
        let mut model = Model {
            term: 1,
            ..Model::default()
        };
        for op in &ops {
            step(dir.path(), &mut storage, &mut model, op);
        }
        step(dir.path(), &mut storage, &mut model, &Op::Reopen);
        Ok(())
    });
    if let Err(e) = result {
        panic!("seed {SEED:#x}: {e}");
    }
}
