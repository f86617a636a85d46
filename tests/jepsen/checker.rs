//! The linearizability checker: Wing & Gong's search with Lowe's memoisation, the way
//! Porcupine does it, over the per-key model in `model.rs`.
//!
//! Linearizability is local (Herlihy & Wing), so the history is split per key and each key is
//! checked alone. For one key the ops become a list of call and return events sorted by time
//! (calls before returns at equal times, so touching intervals count as concurrent). The search
//! walks the list: at a call it tries to linearize that op now (the model accepts its answer),
//! lifting its call and return out of the list; at a return whose op is not yet linearized it
//! backtracks, undoing the last choice and trying the next candidate. A set of (linearized ops
//! as a bitset, model state) already explored is cached: reaching it again cannot succeed
//! where it failed before (Lowe), which turns the exponential search into one that is fast on
//! real histories.
//!
//! Ops with unknown outcome return at +infinity: they may be linearized anywhere after their
//! call, including "never" (after every other op); the search stops with success as soon as
//! every op with a known answer is linearized. Failed ops are known not applied and dropped.
//!
//! Across keys the checker adds one cheap global rule the per-key check cannot see: revisions
//! are Raft indexes, so an ok write that returned before another ok write was invoked has the
//! smaller revision, and no two ok writes share one.

use crate::history::{Op, Output, RETURN_NEVER};
use crate::model::{KeyState, step};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// The verdict on a whole history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// A violation, with a human explanation naming the key and the ops involved.
    NotLinearizable(String),
    /// The search ran out of its time budget on some key: nothing proven either way.
    Unknown(String),
}

/// Bounds on the search, so a pathological history ends the run instead of hanging CI.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock budget for one key's search.
    pub per_key_time_max: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_key_time_max: Duration::from_secs(60),
        }
    }
}

/// Check a whole history: the global revision rule, then every key.
pub fn check(ops: &[Op], limits: Limits) -> Verdict {
    let live: Vec<&Op> = ops
        .iter()
        .filter(|op| op.output != Output::Failed)
        .collect();
    if let Some(problem) = check_revision_order(&live) {
        return Verdict::NotLinearizable(problem);
    }
    let mut per_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in live {
        per_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut unknown = None;
    for (key, key_ops) in per_key {
        match check_key(&key_ops, limits) {
            KeyVerdict::Ok => {}
            KeyVerdict::Violation(why) => {
                return Verdict::NotLinearizable(format!("key {key:?}: {why}"));
            }
            KeyVerdict::OutOfTime => {
                unknown = Some(format!("key {key:?}: search budget exhausted"))
            }
        }
    }
    match unknown {
        Some(why) => Verdict::Unknown(why),
        None => Verdict::Linearizable,
    }
}

/// The revision of an ok write, if `op` is one.
fn write_revision(op: &Op) -> Option<u64> {
    match op.output {
        Output::Written { revision, .. } | Output::Deleted { revision, .. } => Some(revision),
        _ => None,
    }
}

/// Ok writes in real-time order must have increasing revisions, and revisions are never
/// shared (each write is its own log entry; the harness sends no transactions).
fn check_revision_order(ops: &[&Op]) -> Option<String> {
    let mut writes: Vec<(&Op, u64)> = ops
        .iter()
        .filter_map(|op| write_revision(op).map(|r| (*op, r)))
        .collect();
    let mut seen = std::collections::HashMap::new();
    for (op, r) in &writes {
        if let Some(other) = seen.insert(*r, *op) {
            return Some(format!(
                "two ok writes share revision {r}: {other:?} and {op:?}"
            ));
        }
    }
    // Prefix maxima of revisions by return time; each write's revision must exceed the maximum
    // over writes that returned strictly before it was invoked.
    writes.sort_by_key(|(op, _)| op.return_ns);
    let mut prefix_max: Vec<(u64, u64, usize)> = Vec::with_capacity(writes.len());
    let mut best: Option<(u64, usize)> = None;
    for (i, (op, r)) in writes.iter().enumerate() {
        if best.is_none_or(|(b, _)| *r > b) {
            best = Some((*r, i));
        }
        let (b, at) = best.unwrap_or((0, 0));
        prefix_max.push((op.return_ns, b, at));
    }
    for (op, r) in &writes {
        let before = prefix_max.partition_point(|(ret, _, _)| *ret < op.call_ns);
        if before == 0 {
            continue;
        }
        let (_, b, at) = prefix_max[before - 1];
        if b >= *r {
            return Some(format!(
                "revision went backwards in real time: {:?} returned revision {b} before {op:?} was invoked and got {r}",
                writes[at].0
            ));
        }
    }
    None
}

enum KeyVerdict {
    Ok,
    Violation(String),
    OutOfTime,
}

/// One event of the doubly linked list the search walks. Index 0 is the head sentinel.
#[derive(Clone, Copy)]
struct Event {
    /// Index into the key's op list.
    op: usize,
    is_call: bool,
    /// For a call: the index of its return event.
    partner: usize,
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;

/// The op list of one key as the linked event list, head sentinel at 0.
fn build_events(ops: &[&Op]) -> Vec<Event> {
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        order.push((op.call_ns, true, i));
        order.push((op.return_ns, false, i));
    }
    // Calls before returns at equal times: (time, !is_call) sorts calls (false) first.
    order.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
    let mut events = vec![Event {
        op: NIL,
        is_call: false,
        partner: NIL,
        prev: NIL,
        next: NIL,
    }];
    let mut return_at = vec![NIL; ops.len()];
    for &(_, is_call, i) in &order {
        let at = events.len();
        let prev = at - 1;
        events[prev].next = at;
        events.push(Event {
            op: i,
            is_call,
            partner: NIL,
            prev,
            next: NIL,
        });
        if !is_call {
            return_at[i] = at;
        }
    }
    for e in events.iter_mut().skip(1) {
        if e.is_call {
            e.partner = return_at[e.op];
        }
    }
    events
}

/// Remove a call and its return from the list (they are linearized).
fn lift(events: &mut [Event], call: usize) {
    for at in [call, events[call].partner] {
        let Event { prev, next, .. } = events[at];
        events[prev].next = next;
        if next != NIL {
            events[next].prev = prev;
        }
    }
}

/// Undo `lift`, in reverse order.
fn unlift(events: &mut [Event], call: usize) {
    for at in [events[call].partner, call] {
        let Event { prev, next, .. } = events[at];
        events[prev].next = at;
        if next != NIL {
            events[next].prev = at;
        }
    }
}

/// The set of linearized ops of one key.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bitset(Box<[u64]>);

impl Bitset {
    fn new(n: usize) -> Bitset {
        Bitset(vec![0; n.div_ceil(64)].into_boxed_slice())
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Wing & Gong with Lowe's cache for one key.
fn check_key(ops: &[&Op], limits: Limits) -> KeyVerdict {
    let started = Instant::now();
    let mut events = build_events(ops);
    let mut must_linearize = ops.iter().filter(|op| op.return_ns != RETURN_NEVER).count();
    let mut linearized = Bitset::new(ops.len());
    let mut cache: HashSet<(Bitset, KeyState)> = HashSet::new();
    let mut calls: Vec<(usize, KeyState)> = Vec::new();
    let mut state = KeyState::default();
    // The deepest point reached, for the explanation of a failure.
    let mut deepest: (usize, usize) = (0, NIL);
    let mut entry = events[0].next;
    let mut steps: u64 = 0;
    while must_linearize > 0 {
        steps += 1;
        if steps % 4096 == 0 && started.elapsed() > limits.per_key_time_max {
            return KeyVerdict::OutOfTime;
        }
        assert!(
            entry != NIL,
            "the list ends with a return while ops are pending"
        );
        let event = events[entry];
        if event.is_call {
            let op = ops[event.op];
            if let Some(next_state) = step(state, op.input, op.output) {
                let mut next_set = linearized.clone();
                next_set.set(event.op);
                if cache.insert((next_set.clone(), next_state)) {
                    calls.push((entry, state));
                    state = next_state;
                    linearized = next_set;
                    if op.return_ns != RETURN_NEVER {
                        must_linearize -= 1;
                    }
                    lift(&mut events, entry);
                    entry = events[0].next;
                    continue;
                }
            }
            entry = event.next;
        } else {
            // A return whose op is not linearized: every candidate before it failed. Backtrack.
            if calls.len() >= deepest.0 {
                deepest = (calls.len(), event.op);
            }
            let Some((call, prior)) = calls.pop() else {
                return KeyVerdict::Violation(explain(ops, deepest));
            };
            let op = events[call].op;
            linearized.clear(op);
            if ops[op].return_ns != RETURN_NEVER {
                must_linearize += 1;
            }
            state = prior;
            unlift(&mut events, call);
            entry = events[call].next;
        }
    }
    KeyVerdict::Ok
}

/// Name the op that could not be linearized at the deepest point the search reached.
fn explain(ops: &[&Op], (depth, op): (usize, usize)) -> String {
    let stuck = ops
        .get(op)
        .map_or_else(|| "?".to_string(), |op| format!("{op:?}"));
    format!(
        "no linearization of {} ops; the search linearized at most {depth} before it could not \
         place {stuck}",
        ops.len()
    )
}
