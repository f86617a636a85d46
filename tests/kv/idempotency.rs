//! Idempotency-Key: replay, reuse, expiry in leader time, bounds (API.md §3 "Retries are safe").

use rocinante::kv::command::{Applied, Command, Idempotency, Op, Outcome};
use rocinante::kv::{Store, StoreConfig};

use crate::*;

#[test]
fn idempotent_retry_replays_the_first_answer_and_changes_nothing() {
    let mut s = Store::new(config_window_ms(10_000));
    let first = apply(&mut s, 1, &idem_put(1_000, "tok", 42, "k", "v1"));
    assert_eq!(
        first,
        Applied {
            outcome: Outcome::Put {
                revision: 1,
                prev_revision: None
            },
            replayed: false
        }
    );
    outcome(&mut s, 2, put_op("k", "v2", None));
    let retry = apply(&mut s, 3, &idem_put(2_000, "tok", 42, "k", "v1"));
    assert_eq!(
        retry,
        Applied {
            outcome: first.outcome.clone(),
            replayed: true
        }
    );
    let kv = s.get(b"k").unwrap();
    assert_eq!(
        (kv.value, kv.mod_revision),
        (b("v2"), 2),
        "the retry was not applied again"
    );
    assert_eq!(s.revision(), 3);
}

#[test]
fn errors_are_remembered_too() {
    let mut s = Store::default();
    outcome(&mut s, 1, put_op("k", "a", None));
    let c = Command {
        leader_time_ms: 5,
        idempotency: idem("t", 1),
        op: put_op("k", "b", Some(0)),
    };
    let first = apply(&mut s, 2, &c);
    assert!(matches!(
        first.outcome,
        Outcome::RevisionMismatch {
            current_revision: 1,
            ..
        }
    ));
    outcome(&mut s, 3, del_op("k", None));
    let again = apply(&mut s, 4, &c);
    assert_eq!(
        again,
        Applied {
            outcome: first.outcome,
            replayed: true
        }
    );
    assert_eq!(
        s.get(b"k"),
        None,
        "replayed 409, the put-if-absent did not run"
    );
}

#[test]
fn same_key_other_request_is_refused_and_not_stored() {
    let mut s = Store::default();
    let first = apply(&mut s, 1, &idem_put(1_000, "tok", 1, "k", "v1"));
    let reused = apply(&mut s, 2, &idem_put(1_000, "tok", 2, "k", "other"));
    assert_eq!(
        reused,
        Applied {
            outcome: Outcome::IdempotencyKeyReused,
            replayed: false
        }
    );
    assert_eq!(s.get(b"k").unwrap().value, b("v1"));
    // The original record is intact: the first request still replays.
    let retry = apply(&mut s, 3, &idem_put(1_000, "tok", 1, "k", "v1"));
    assert_eq!(
        retry,
        Applied {
            outcome: first.outcome,
            replayed: true
        }
    );
    assert_eq!(s.idempotency_records(), 1);
}

#[test]
fn records_expire_by_leader_time_not_local_time() {
    let mut s = Store::new(config_window_ms(10_000));
    apply(&mut s, 1, &idem_put(1_000, "tok", 7, "k", "v1"));
    // Just inside the window: replayed.
    assert!(apply(&mut s, 2, &idem_put(10_999, "tok", 7, "k", "v1")).replayed);
    // The window has passed in leader time: the same request is a new write.
    let later = apply(&mut s, 3, &idem_put(11_000, "tok", 7, "k", "v1"));
    assert_eq!(
        later,
        Applied {
            outcome: Outcome::Put {
                revision: 3,
                prev_revision: Some(1)
            },
            replayed: false
        }
    );
    // ... and is remembered afresh from then.
    assert!(apply(&mut s, 4, &idem_put(11_001, "tok", 7, "k", "v1")).replayed);
}

#[test]
fn leader_clock_going_backwards_does_not_revive_records() {
    let mut s = Store::new(config_window_ms(1_000));
    apply(&mut s, 1, &idem_put(1_000, "tok", 7, "k", "v1"));
    apply(&mut s, 2, &cmd(5_000, Op::Tick));
    assert_eq!(s.idempotency_records(), 0, "the tick expired the record");
    // A new leader whose clock is behind: the store's clock stays at 5000.
    let c = idem_put(1_500, "tok", 7, "k", "v1");
    assert!(!apply(&mut s, 3, &c).replayed);
    assert_eq!(s.clock_ms(), 5_000);
}

#[test]
fn ticks_expire_old_records_with_bounded_work() {
    let mut s = Store::new(config_window_ms(1_000));
    for i in 0..1_000u64 {
        apply(&mut s, i + 1, &idem_put(i, &format!("t{i}"), i, "k", "v"));
    }
    assert_eq!(s.idempotency_records(), 1_000);
    apply(&mut s, 1_001, &cmd(10_000, Op::Tick));
    let left = s.idempotency_records();
    assert!(
        left > 0 && left < 1_000,
        "one apply does bounded work: {left} left"
    );
    // Expired but not yet popped records are not replayed.
    let retry = apply(&mut s, 1_002, &idem_put(10_000, "t999", 999, "k", "v"));
    assert!(!retry.replayed);
    for i in 0..10 {
        apply(&mut s, 1_003 + i, &cmd(10_000, Op::Tick));
    }
    assert_eq!(
        s.idempotency_records(),
        1,
        "only the fresh t999 record remains"
    );
}

#[test]
fn table_at_its_record_limit_evicts_the_oldest() {
    let config = StoreConfig {
        idempotency_records_max: 3,
        ..StoreConfig::default()
    };
    let mut s = Store::new(config);
    for i in 0..5u64 {
        apply(
            &mut s,
            i + 1,
            &idem_put(100, &format!("t{i}"), 0, &format!("k{i}"), "v"),
        );
    }
    assert_eq!(s.idempotency_records(), 3);
    assert!(
        !apply(&mut s, 6, &idem_put(100, "t0", 0, "k0", "v")).replayed,
        "t0 was evicted"
    );
    assert!(apply(&mut s, 7, &idem_put(100, "t4", 0, "k4", "v")).replayed);
}

#[test]
fn table_at_its_byte_limit_evicts_the_oldest() {
    let config = StoreConfig {
        idempotency_bytes_max: 300,
        ..StoreConfig::default()
    };
    let mut s = Store::new(config);
    for i in 0..10u64 {
        apply(
            &mut s,
            i + 1,
            &idem_put(100, &format!("t{i}"), 0, &format!("k{i}"), "v"),
        );
    }
    // Each record is charged its key, its outcome and 64 bytes of overhead: ~70 bytes.
    assert_eq!(s.idempotency_records(), 4);
    assert!(apply(&mut s, 11, &idem_put(100, "t9", 0, "k9", "v")).replayed);
}

#[test]
fn replay_lookup_matches_apply() {
    let mut s = Store::default();
    let first = apply(&mut s, 1, &idem_put(1_000, "tok", 1, "k", "v"));
    let key = Idempotency {
        key: b("tok"),
        fingerprint: 1,
    };
    assert_eq!(
        s.replay(&key),
        Some(Applied {
            outcome: first.outcome,
            replayed: true
        })
    );
    let other = Idempotency {
        key: b("tok"),
        fingerprint: 2,
    };
    assert_eq!(
        s.replay(&other).unwrap().outcome,
        Outcome::IdempotencyKeyReused
    );
    assert_eq!(
        s.replay(&Idempotency {
            key: b("nope"),
            fingerprint: 1
        }),
        None
    );
}
