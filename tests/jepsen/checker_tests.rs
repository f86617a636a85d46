//! The checker's own tests: hand-written histories that must pass (concurrency, unknown
//! outcomes, CAS races) and the classic anomalies that must fail, generated histories that
//! are linearizable by construction (and the same with one answer corrupted), and the speed
//! figure: 20,000 ops over 50 keys in seconds.

use crate::checker::{Limits, Verdict, check};
use crate::generator::{GenConfig, linearizable_history};
use crate::history::{Input, Op, Output, RETURN_NEVER};
use std::time::{Duration, Instant};

fn op(client: u32, call_ns: u64, return_ns: u64, input: Input, output: Output) -> Op {
    Op {
        client,
        key: "x".to_string(),
        call_ns,
        return_ns,
        input,
        output,
        node: 0,
    }
}

fn put(v: u64) -> Input {
    Input::Put {
        value: v,
        if_revision: None,
    }
}

fn cas(v: u64, if_revision: u64) -> Input {
    Input::Put {
        value: v,
        if_revision: Some(if_revision),
    }
}

fn written(revision: u64, prev: Option<u64>) -> Output {
    Output::Written {
        revision,
        prev_revision: prev,
    }
}

fn read(v: u64, r: u64) -> Output {
    Output::Read(Some((v, r)))
}

fn assert_ok(ops: &[Op]) {
    let verdict = check(ops, Limits::default());
    assert_eq!(verdict, Verdict::Linearizable, "history: {ops:#?}");
}

fn assert_violation(ops: &[Op]) {
    let verdict = check(ops, Limits::default());
    assert!(
        matches!(verdict, Verdict::NotLinearizable(_)),
        "expected a violation, got {verdict:?} for {ops:#?}"
    );
    println!("{verdict:?}");
}

#[test]
fn sequential_put_get_delete_passes() {
    assert_ok(&[
        op(0, 0, 10, Input::Get, Output::Read(None)),
        op(0, 20, 30, put(1), written(5, None)),
        op(0, 40, 50, Input::Get, read(1, 5)),
        op(
            0,
            60,
            70,
            Input::Delete { if_revision: None },
            Output::Deleted {
                revision: 7,
                deleted: true,
            },
        ),
        op(0, 80, 90, Input::Get, Output::Read(None)),
        op(
            0,
            95,
            99,
            Input::Delete { if_revision: None },
            Output::Deleted {
                revision: 9,
                deleted: false,
            },
        ),
    ]);
}

#[test]
fn concurrent_writes_may_be_read_in_either_order() {
    // Two overlapping puts; the reads, concurrent with both, see the second then the first's
    // revision order decides: rev 4 (value 2) before rev 6 (value 1).
    assert_ok(&[
        op(0, 0, 100, put(1), written(6, Some(4))),
        op(1, 10, 90, put(2), written(4, None)),
        op(2, 20, 30, Input::Get, read(2, 4)),
        op(3, 40, 110, Input::Get, read(1, 6)),
    ]);
}

#[test]
fn unknown_write_observed_later_passes_and_pins_its_revision() {
    assert_ok(&[
        op(0, 0, 10, put(1), written(3, None)),
        op(1, 20, RETURN_NEVER, put(2), Output::Unknown),
        op(2, 30, 40, Input::Get, read(1, 3)),
        op(2, 500, 510, Input::Get, read(2, 8)),
        op(3, 520, 530, cas(3, 8), written(9, Some(8))),
        op(2, 540, 550, Input::Get, read(3, 9)),
    ]);
}

#[test]
fn unknown_write_never_observed_passes() {
    assert_ok(&[
        op(0, 0, 10, put(1), written(3, None)),
        op(1, 20, RETURN_NEVER, put(2), Output::Unknown),
        op(
            1,
            25,
            RETURN_NEVER,
            Input::Delete { if_revision: None },
            Output::Unknown,
        ),
        op(2, 30, 40, Input::Get, read(1, 3)),
        op(2, 500, 510, Input::Get, read(1, 3)),
    ]);
}

#[test]
fn failed_writes_are_dropped() {
    assert_ok(&[
        op(0, 0, 10, put(1), written(3, None)),
        op(1, 20, 30, put(2), Output::Failed),
        op(2, 40, 50, Input::Get, read(1, 3)),
    ]);
}

#[test]
fn cas_race_one_winner_loser_learns_the_winner() {
    assert_ok(&[
        op(0, 0, 10, put(1), written(3, None)),
        op(1, 20, 60, cas(2, 3), written(5, Some(3))),
        op(
            2,
            25,
            70,
            cas(3, 3),
            Output::Mismatch {
                current: Some((2, 5)),
            },
        ),
        op(3, 80, 90, Input::Get, read(2, 5)),
    ]);
}

#[test]
fn put_if_absent_and_unknown_cas_pass() {
    assert_ok(&[
        op(0, 0, 10, cas(1, 0), written(2, None)),
        op(
            1,
            20,
            30,
            cas(9, 0),
            Output::Mismatch {
                current: Some((1, 2)),
            },
        ),
        op(2, 40, RETURN_NEVER, cas(5, 2), Output::Unknown),
        op(3, 50, 60, Input::Get, read(5, 11)),
    ]);
}

#[test]
fn stale_read_fails() {
    // Value 2 was acknowledged before the read began; the read still sees value 1.
    assert_violation(&[
        op(0, 0, 10, put(1), written(3, None)),
        op(0, 20, 30, put(2), written(4, Some(3))),
        op(1, 40, 50, Input::Get, read(1, 3)),
    ]);
}

#[test]
fn lost_acknowledged_write_fails() {
    // An acknowledged put, then reads find the key absent: the write vanished.
    assert_violation(&[
        op(0, 0, 10, put(1), written(3, None)),
        op(1, 20, 30, Input::Get, Output::Read(None)),
    ]);
}

#[test]
fn read_of_never_written_value_fails() {
    assert_violation(&[
        op(0, 0, 10, put(1), written(3, None)),
        op(1, 20, 30, Input::Get, read(77, 3)),
    ]);
}

#[test]
fn two_successful_cas_from_one_revision_fail() {
    assert_violation(&[
        op(0, 0, 10, put(1), written(3, None)),
        op(1, 20, 60, cas(2, 3), written(5, Some(3))),
        op(2, 25, 70, cas(3, 3), written(6, Some(3))),
    ]);
}

#[test]
fn two_successful_put_if_absent_fail() {
    assert_violation(&[
        op(1, 20, 60, cas(2, 0), written(5, None)),
        op(2, 25, 70, cas(3, 0), written(6, None)),
    ]);
}

#[test]
fn read_going_back_in_time_fails() {
    // Two concurrent writes; one reader sees the newer, a later reader the older.
    assert_violation(&[
        op(0, 0, 100, put(1), written(3, None)),
        op(1, 0, 100, put(2), written(4, Some(3))),
        op(2, 10, 20, Input::Get, read(2, 4)),
        op(3, 30, 40, Input::Get, read(1, 3)),
    ]);
}

#[test]
fn wrong_revision_on_a_read_fails() {
    assert_violation(&[
        op(0, 0, 10, put(1), written(3, None)),
        op(1, 20, 30, Input::Get, read(1, 4)),
    ]);
}

#[test]
fn revisions_going_backwards_across_keys_fail() {
    let mut a = op(0, 0, 10, put(1), written(8, None));
    a.key = "a".into();
    let mut b = op(1, 20, 30, put(2), written(5, None));
    b.key = "b".into();
    assert_violation(&[a, b]);
}

#[test]
fn generated_linearizable_histories_pass() {
    for seed in 1..=40 {
        let ops = linearizable_history(&GenConfig {
            seed,
            ops: 600,
            keys: 3,
            clients: 8,
            unknown_pct: 6,
        });
        let verdict = check(&ops, Limits::default());
        assert_eq!(verdict, Verdict::Linearizable, "generator seed {seed}");
    }
}

/// Corrupt one read in a generated history into the value the key held before: a stale read.
/// The checker must notice in (almost) every history; a read of the latest value a moment ago
/// can be legal when a concurrent write overlaps it, so count detections.
#[test]
fn generated_histories_with_one_stale_read_fail() {
    let mut detected = 0;
    let mut corrupted = 0;
    for seed in 1..=40 {
        let mut ops = linearizable_history(&GenConfig {
            seed,
            ops: 400,
            keys: 2,
            clients: 6,
            unknown_pct: 0,
        });
        // Find a read whose answer had a predecessor value on that key, strictly earlier.
        let Some((i, stale)) = find_stale_candidate(&ops) else {
            continue;
        };
        ops[i].output = Output::Read(Some(stale));
        corrupted += 1;
        if matches!(check(&ops, Limits::default()), Verdict::NotLinearizable(_)) {
            detected += 1;
        }
    }
    assert!(
        corrupted >= 30,
        "generator gave too few candidates: {corrupted}"
    );
    assert_eq!(
        detected, corrupted,
        "every stale read (older than a completed write) must fail"
    );
}

/// A read R and an older (value, revision) of its key written by an op that completed, followed
/// by another completed write that also finished before R was invoked: so R must not see it.
fn find_stale_candidate(ops: &[Op]) -> Option<(usize, (u64, u64))> {
    for (i, r) in ops.iter().enumerate() {
        if !matches!(r.output, Output::Read(Some(_))) {
            continue;
        }
        let mut writes: Vec<&Op> = ops
            .iter()
            .filter(|w| w.key == r.key && w.return_ns < r.call_ns)
            .filter(|w| matches!(w.output, Output::Written { .. }))
            .collect();
        writes.sort_by_key(|w| w.return_ns);
        if writes.len() < 2 {
            continue;
        }
        let old = writes[writes.len() - 2];
        let newer = writes[writes.len() - 1];
        let (Input::Put { value, .. }, Output::Written { revision, .. }) = (old.input, old.output)
        else {
            continue;
        };
        let Output::Written {
            revision: newer_rev,
            ..
        } = newer.output
        else {
            continue;
        };
        if newer_rev > revision && Output::Read(Some((value, revision))) != r.output {
            return Some((i, (value, revision)));
        }
    }
    None
}

/// 20,000 ops over 50 keys at three contention levels: 16 clients with 3% unknown answers,
/// 64 clients with 10% unknown, and 400 clients (about 8 in flight on every key at once) with
/// 10% unknown, the shape of a partition-heavy run.
#[test]
fn twenty_thousand_ops_over_fifty_keys_in_seconds() {
    for (clients, unknown_pct) in [(16, 3), (64, 10), (400, 10)] {
        let ops = linearizable_history(&GenConfig {
            seed: 7,
            ops: 20_000,
            keys: 50,
            clients,
            unknown_pct,
        });
        assert_eq!(ops.len(), 20_000);
        let started = Instant::now();
        let verdict = check(&ops, Limits::default());
        let took = started.elapsed();
        println!(
            "checker: 20000 ops, 50 keys, {clients} clients, {unknown_pct}% unknown: {took:?}"
        );
        assert_eq!(verdict, Verdict::Linearizable);
        assert!(took < Duration::from_secs(10), "checker took {took:?}");
    }
}

#[test]
fn history_round_trips_through_jsonl_and_still_checks() {
    let ops = linearizable_history(&GenConfig {
        seed: 3,
        ops: 300,
        keys: 4,
        clients: 5,
        unknown_pct: 10,
    });
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("jepsen-roundtrip.jsonl");
    crate::history::write_jsonl(&path, &ops).expect("write history");
    let back = crate::history::read_jsonl(&path).expect("read history");
    assert_eq!(back, ops);
    assert_eq!(check(&back, Limits::default()), Verdict::Linearizable);
}
