//! The key-value state machine against API.md §3: revisions, compare-and-set, deletes of absent
//! keys, list paging, Idempotency-Key replay / reuse / expiry in leader time, snapshots, the
//! determinism (same entries, same state, matching a model), plus the memory figure per key.
//! The byte formats' property tests live next to them, in src/kv/format_tests.rs.

use bytes::Bytes;
use rocinante::kv::command::{Applied, Command, Idempotency, Op, Outcome};
use rocinante::kv::{Store, StoreConfig};
use rocinante::raft::Index;

mod idempotency;
mod listing;
mod memory;
mod snapshot_model;

// Helpers shared by the modules.

pub fn config_window_ms(window_ms: u64) -> StoreConfig {
    StoreConfig {
        idempotency_window_ms: window_ms,
        ..StoreConfig::default()
    }
}

pub fn idem_put(time_ms: u64, key: &str, fp: u64, k: &str, v: &str) -> Command {
    Command {
        leader_time_ms: time_ms,
        idempotency: idem(key, fp),
        op: put_op(k, v, None),
    }
}

pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

pub fn cmd(time_ms: u64, op: Op) -> Command {
    Command {
        leader_time_ms: time_ms,
        idempotency: None,
        op,
    }
}

pub fn put_op(key: &str, value: &str, if_revision: Option<u64>) -> Op {
    Op::Put {
        key: b(key),
        value: b(value),
        if_revision,
    }
}

pub fn del_op(key: &str, if_revision: Option<u64>) -> Op {
    Op::Delete {
        key: b(key),
        if_revision,
    }
}

pub fn apply(store: &mut Store, index: u64, command: &Command) -> Applied {
    store.apply(Index(index), &command.encode())
}

pub fn outcome(store: &mut Store, index: u64, op: Op) -> Outcome {
    let applied = apply(store, index, &cmd(1_000, op));
    assert!(!applied.replayed);
    applied.outcome
}

pub fn idem(key: &str, fingerprint: u64) -> Option<Idempotency> {
    Some(Idempotency {
        key: b(key),
        fingerprint,
    })
}

#[test]
fn revisions_are_log_indexes_with_create_and_mod() {
    let mut s = Store::default();
    assert_eq!(
        outcome(&mut s, 3, put_op("a", "1", None)),
        Outcome::Put {
            revision: 3,
            prev_revision: None
        }
    );
    s.apply_noop(Index(4));
    assert_eq!(
        outcome(&mut s, 7, put_op("a", "2", None)),
        Outcome::Put {
            revision: 7,
            prev_revision: Some(3)
        }
    );
    let kv = s.get(b"a").unwrap();
    assert_eq!(
        (kv.value, kv.create_revision, kv.mod_revision),
        (b("2"), 3, 7)
    );
    assert_eq!(s.revision(), 7);
    s.apply_noop(Index(9));
    assert_eq!(s.revision(), 9);
    assert_eq!(s.list(b"", None, 10).revision, 9);
}

#[test]
fn delete_then_recreate_resets_create_revision() {
    let mut s = Store::default();
    outcome(&mut s, 1, put_op("k", "v", None));
    assert_eq!(
        outcome(&mut s, 2, del_op("k", None)),
        Outcome::Deleted {
            revision: 2,
            deleted: true
        }
    );
    assert_eq!(s.get(b"k"), None);
    assert_eq!(
        outcome(&mut s, 3, put_op("k", "w", None)),
        Outcome::Put {
            revision: 3,
            prev_revision: None
        }
    );
    assert_eq!(s.get(b"k").unwrap().create_revision, 3);
}

#[test]
fn delete_of_absent_key_is_a_committed_no_change() {
    let mut s = Store::default();
    assert_eq!(
        outcome(&mut s, 5, del_op("nope", None)),
        Outcome::Deleted {
            revision: 5,
            deleted: false
        }
    );
    assert_eq!(s.revision(), 5);
    assert!(s.is_empty());
}

#[test]
fn put_if_absent_first_writer_wins_loser_learns_winner() {
    let mut s = Store::default();
    assert_eq!(
        outcome(&mut s, 1, put_op("lock", "alice", Some(0))),
        Outcome::Put {
            revision: 1,
            prev_revision: None
        }
    );
    assert_eq!(
        outcome(&mut s, 2, put_op("lock", "bob", Some(0))),
        Outcome::RevisionMismatch {
            current_revision: 1,
            current_value: Some(b("alice"))
        }
    );
    assert_eq!(s.get(b"lock").unwrap().value, b("alice"));
}

#[test]
fn cas_on_mod_revision() {
    let mut s = Store::default();
    outcome(&mut s, 1, put_op("k", "v1", None));
    assert_eq!(
        outcome(&mut s, 2, put_op("k", "v2", Some(1))),
        Outcome::Put {
            revision: 2,
            prev_revision: Some(1)
        }
    );
    assert_eq!(
        outcome(&mut s, 3, put_op("k", "v3", Some(1))),
        Outcome::RevisionMismatch {
            current_revision: 2,
            current_value: Some(b("v2"))
        }
    );
    // A CAS against an absent key reports revision 0 and no value.
    assert_eq!(
        outcome(&mut s, 4, put_op("absent", "x", Some(9))),
        Outcome::RevisionMismatch {
            current_revision: 0,
            current_value: None
        }
    );
    assert_eq!(
        outcome(&mut s, 5, del_op("k", Some(1))),
        Outcome::RevisionMismatch {
            current_revision: 2,
            current_value: Some(b("v2"))
        }
    );
    assert_eq!(
        outcome(&mut s, 6, del_op("k", Some(2))),
        Outcome::Deleted {
            revision: 6,
            deleted: true
        }
    );
    // Delete "if absent" of an absent key holds and deletes nothing.
    assert_eq!(
        outcome(&mut s, 7, del_op("k", Some(0))),
        Outcome::Deleted {
            revision: 7,
            deleted: false
        }
    );
    assert_eq!(s.get(b"absent"), None);
}

#[test]
#[should_panic(expected = "applied in log order")]
fn applying_out_of_order_is_a_bug() {
    let mut s = Store::default();
    s.apply_noop(Index(5));
    s.apply_noop(Index(5));
}

#[test]
fn undecodable_entry_is_a_noop_on_every_member() {
    let mut a = Store::default();
    let mut b2 = Store::default();
    for s in [&mut a, &mut b2] {
        outcome(s, 1, put_op("k", "v", None));
        let applied = s.apply(Index(2), &[0xff, 1, 2, 3]);
        assert_eq!(
            applied,
            Applied {
                outcome: Outcome::Ticked,
                replayed: false
            }
        );
        assert_eq!(s.revision(), 2);
    }
    assert_eq!(a, b2);
    assert_eq!(a.get(b"k").unwrap().mod_revision, 1);
}
