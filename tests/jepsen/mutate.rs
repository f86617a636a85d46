//! Deliberate faults injected into a history recorded from a real run, to show that the
//! checker catches what a broken server would produce. Each function returns the damaged
//! history and a description, or `None` if the history has no suitable spot.
//!
//! - `stale_read`: one read answered from an old state, as a follower serving "linearizable"
//!   reads from its local applied state would (the value of a write that was already
//!   overwritten by another acknowledged write before the read began).
//! - `double_apply`: one read shows an idempotent write's value at a second revision, as a
//!   retry applied twice would.

use crate::history::{Input, Op, Output};

/// The ok writes on `key` that returned before `before_ns`, by revision.
fn writes_before<'a>(ops: &'a [Op], key: &str, before_ns: u64) -> Vec<(&'a Op, u64, u64)> {
    let mut writes: Vec<(&Op, u64, u64)> = ops
        .iter()
        .filter(|w| w.key == key && w.return_ns < before_ns)
        .filter_map(|w| match (w.input, w.output) {
            (Input::Put { value, .. }, Output::Written { revision, .. }) => {
                Some((w, value, revision))
            }
            _ => None,
        })
        .collect();
    writes.sort_by_key(|(_, _, r)| *r);
    writes
}

/// Indexes from the middle of the history on, then the first half: a read in the thick of the
/// run, with concurrent ops around it, is the harder case for the checker.
fn from_middle(n: usize) -> impl Iterator<Item = usize> {
    (n / 2..n).chain(0..n / 2)
}

pub fn stale_read(ops: &[Op]) -> Option<(Vec<Op>, String)> {
    for i in from_middle(ops.len()) {
        let read = &ops[i];
        let Output::Read(Some((seen, _))) = read.output else {
            continue;
        };
        if !read.key.starts_with('r') {
            continue;
        }
        let writes = writes_before(ops, &read.key, read.call_ns);
        let [.., (_, old_value, old_rev), (_, _, _)] = writes.as_slice() else {
            continue;
        };
        if *old_value == seen {
            continue;
        }
        let mut damaged = ops.to_vec();
        damaged[i].output = Output::Read(Some((*old_value, *old_rev)));
        let why = format!(
            "read #{i} of {} answered ({old_value}, rev {old_rev}) instead of ({seen}, ...)",
            read.key
        );
        return Some((damaged, why));
    }
    None
}

pub fn double_apply(ops: &[Op]) -> Option<(Vec<Op>, String)> {
    for i in from_middle(ops.len()) {
        let read = &ops[i];
        let Output::Read(Some((seen, seen_rev))) = read.output else {
            continue;
        };
        if !read.key.starts_with('i') {
            continue;
        }
        let writes = writes_before(ops, &read.key, read.call_ns);
        let Some((_, value, rev)) = writes
            .iter()
            .rev()
            .find(|(_, v, r)| *v != seen && *r < seen_rev)
        else {
            continue;
        };
        let mut damaged = ops.to_vec();
        damaged[i].output = Output::Read(Some((*value, seen_rev)));
        let why = format!(
            "read #{i} of {} shows value {value} (written at rev {rev}) again at rev {seen_rev}",
            read.key
        );
        return Some((damaged, why));
    }
    None
}
