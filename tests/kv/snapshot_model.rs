//! Snapshots round-trip and reject damage; random streams give equal stores and match a model.

use bytes::Bytes;
use rocinante::kv::Store;
use rocinante::kv::command::{Command, Idempotency, Op, Outcome};
use rocinante::raft::Index;

use crate::*;
use proptest::prelude::*;

fn busy_store() -> Store {
    let mut s = Store::new(config_window_ms(5_000));
    let mut index = 0;
    let mut next = || {
        index += 2; // gaps: other entries (no-ops, membership) took the odd indexes
        index
    };
    for i in 0..50u64 {
        let key = format!("key/{:03}", i % 37);
        let c = Command {
            leader_time_ms: 1_000 + i * 100,
            idempotency: if i % 3 == 0 {
                idem(&format!("tok{i}"), i)
            } else {
                None
            },
            op: if i % 7 == 0 {
                del_op(&key, None)
            } else {
                put_op(&key, &"x".repeat(i as usize), None)
            },
        };
        let idx = next();
        apply(&mut s, idx, &c);
    }
    let idx = next();
    let c = Command {
        leader_time_ms: 9_000,
        idempotency: idem("mm", 1),
        op: put_op("key/001", "y", Some(0)),
    };
    apply(&mut s, idx, &c);
    let idx = next();
    s.apply_noop(Index(idx));
    s
}

#[test]
fn snapshot_round_trip_restores_everything() {
    let s = busy_store();
    let bytes = s.snapshot_bytes();
    let restored = Store::restore_with(s.config(), &bytes).unwrap();
    assert_eq!(restored.snapshot_bytes(), bytes);
    assert_eq!(restored.revision(), s.revision());
    assert_eq!(restored.clock_ms(), s.clock_ms());
    assert_eq!(restored.list(b"", None, 1_000), s.list(b"", None, 1_000));
    assert_eq!(restored.idempotency_records(), s.idempotency_records());
    assert!(s.idempotency_records() > 0);
    // Both continue identically: replays, expiries and new writes.
    let mut a = s.clone();
    let mut b2 = restored;
    let mut index = s.revision();
    for (t, c) in [
        (9_100, idem_put(9_100, "tok48", 48, "key/011", "zz")),
        (9_200, idem_put(9_200, "mm", 1, "key/001", "y")),
        (20_000, idem_put(20_000, "tok45", 45, "key/008", "new")),
    ] {
        index += 1;
        assert_eq!(
            apply(&mut a, index, &c),
            apply(&mut b2, index, &c),
            "at leader time {t}"
        );
    }
    assert_eq!(a.snapshot_bytes(), b2.snapshot_bytes());
}

#[test]
fn snapshot_of_empty_store_round_trips() {
    let s = Store::default();
    let r = Store::restore(&s.snapshot_bytes()).unwrap();
    assert_eq!(r, s);
}

#[test]
fn every_truncated_snapshot_is_rejected() {
    let bytes = busy_store().snapshot_bytes();
    for len in 0..bytes.len() {
        assert!(
            Store::restore(&bytes[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Store::restore(&longer).is_err());
}

#[test]
fn snapshot_with_bad_revisions_is_rejected() {
    let mut s = Store::default();
    outcome(&mut s, 1, put_op("k", "v", None));
    let mut bytes = s.snapshot_bytes();
    // Layout: version, revision=1, clock, count=1, key "k", value "v", create=1, mod=1, 0.
    assert_eq!(bytes[1], 1);
    bytes[1] = 0; // revision 0 < mod_revision 1
    assert!(Store::restore(&bytes).is_err());
}

/// One step of a random stream: (time step, idempotency token, key, op kind / value, if_revision).
type Step = (u64, Option<u8>, u8, u8, Option<u64>);

fn arb_stream() -> impl Strategy<Value = Vec<Step>> {
    // (time step, idempotency token, key, op kind / value, if_revision)
    proptest::collection::vec(
        (
            0..3_000u64,
            proptest::option::of(0..6u8),
            0..8u8,
            any::<u8>(),
            proptest::option::of(0..12u64),
        ),
        1..120,
    )
}

const SEED: u64 = 0x5107_e5ee_d000_0002;

/// Proptest with a fixed seed so CI runs are reproducible; `PROPTEST_RNG_SEED=N` explores
/// others. A failure prints the shrunk input, which reproduces it on its own.
fn fixed_seed() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if matches!(config.rng_seed, proptest::test_runner::RngSeed::Random) {
        config.rng_seed = proptest::test_runner::RngSeed::Fixed(SEED);
    }
    config
}

proptest! {
    #![proptest_config(fixed_seed())]

    #[test]
    fn same_entries_same_state(stream in arb_stream()) {
        let config = config_window_ms(2_000);
        let (mut a, mut b2) = (Store::new(config), Store::new(config));
        let mut model = std::collections::BTreeMap::<Vec<u8>, (Vec<u8>, u64, u64)>::new();
        let mut time = 0;
        for (i, (step, token, key, kind, if_rev)) in stream.into_iter().enumerate() {
            time += step;
            let index = i as u64 + 1;
            let key = vec![b'k', key];
            let op = match kind % 3 {
                0 => Op::Delete { key: Bytes::from(key.clone()), if_revision: if_rev },
                _ => Op::Put { key: Bytes::from(key.clone()), value: Bytes::from(vec![kind; 3]), if_revision: if_rev },
            };
            let c = Command {
                leader_time_ms: time,
                idempotency: token.map(|t| Idempotency { key: Bytes::from(vec![t]), fingerprint: u64::from(kind % 2) }),
                op,
            };
            let data = c.encode();
            let ra = a.apply(Index(index), &data);
            let rb = b2.apply(Index(index), &data);
            prop_assert_eq!(&ra, &rb);
            if !ra.replayed && ra.outcome != Outcome::IdempotencyKeyReused {
                check_model(&mut model, index, &c.op, &ra.outcome)?;
            }
        }
        prop_assert_eq!(&a, &b2);
        prop_assert_eq!(a.snapshot_bytes(), b2.snapshot_bytes());
        let all = a.list(b"", None, 100);
        let got: Vec<_> = all.items.iter().map(|kv| (kv.key.to_vec(), (kv.value.to_vec(), kv.create_revision, kv.mod_revision))).collect();
        let want: Vec<_> = model.into_iter().collect();
        prop_assert_eq!(got, want);
    }
}

/// The model: what API.md §3 says a fresh (non-replayed) put or delete does.
fn check_model(
    model: &mut std::collections::BTreeMap<Vec<u8>, (Vec<u8>, u64, u64)>,
    index: u64,
    op: &Op,
    got: &Outcome,
) -> Result<(), TestCaseError> {
    let (key, if_revision) = match op {
        Op::Put {
            key, if_revision, ..
        }
        | Op::Delete { key, if_revision } => (key.to_vec(), *if_revision),
        Op::Tick => return Ok(()),
    };
    let current = model.get(&key).cloned();
    let current_revision = current.as_ref().map_or(0, |c| c.2);
    if if_revision.is_some_and(|want| want != current_revision) {
        let want = Outcome::RevisionMismatch {
            current_revision,
            current_value: current.map(|c| Bytes::from(c.0)),
        };
        prop_assert_eq!(got, &want);
        return Ok(());
    }
    let want = match op {
        Op::Put { value, .. } => {
            let create = current.as_ref().map_or(index, |c| c.1);
            model.insert(key, (value.to_vec(), create, index));
            Outcome::Put {
                revision: index,
                prev_revision: current.map(|c| c.2),
            }
        }
        _ => Outcome::Deleted {
            revision: index,
            deleted: model.remove(&key).is_some(),
        },
    };
    prop_assert_eq!(got, &want);
    Ok(())
}
