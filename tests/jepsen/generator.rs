//! Seeded generator of histories that are linearizable by construction: simulated clients run
//! ops against a reference KV store, each op taking effect at one instant inside its interval
//! (its linearization point), in global time order. Some ops lose their answer (unknown
//! outcome, return at +infinity), applied or not. The checker's tests use these as the
//! "must pass" population and mutate them into anomalies; the performance test uses them at
//! 20,000 ops.

use crate::history::{Input, Op, Output, RETURN_NEVER, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

pub struct GenConfig {
    pub seed: u64,
    pub ops: usize,
    pub keys: usize,
    pub clients: u32,
    /// Percent of ops whose answer is lost (unknown outcome).
    pub unknown_pct: u32,
}

/// A client's op between its call and its linearization point.
struct InFlight {
    client: u32,
    key: String,
    input: Input,
    call_ns: u64,
    /// The answer will be lost.
    lost: bool,
}

/// The reference store: per key (value, mod revision); one global revision counter.
#[derive(Default)]
struct Reference {
    keys: HashMap<String, (Value, u64)>,
    revision: u64,
}

impl Reference {
    fn apply(&mut self, key: &str, input: Input) -> Output {
        let current = self.keys.get(key).copied();
        let precondition_holds = |if_revision: Option<u64>| match if_revision {
            None => true,
            Some(0) => current.is_none(),
            Some(r) => current.is_some_and(|(_, cr)| cr == r),
        };
        match input {
            Input::Get | Input::LeaseGet => Output::Read(current),
            Input::Put { value, if_revision } => {
                if !precondition_holds(if_revision) {
                    return Output::Mismatch { current };
                }
                self.revision += 1;
                self.keys.insert(key.to_string(), (value, self.revision));
                Output::Written {
                    revision: self.revision,
                    prev_revision: current.map(|(_, r)| r),
                }
            }
            Input::Delete { if_revision } => {
                if !precondition_holds(if_revision) {
                    return Output::Mismatch { current };
                }
                self.revision += 1;
                self.keys.remove(key);
                Output::Deleted {
                    revision: self.revision,
                    deleted: current.is_some(),
                }
            }
        }
    }
}

fn random_input(rng: &mut StdRng, next_value: &mut Value, last_seen: Option<u64>) -> Input {
    match rng.random_range(0..100) {
        0..45 => Input::Get,
        45..75 => {
            *next_value += 1;
            Input::Put {
                value: *next_value,
                if_revision: None,
            }
        }
        75..93 => {
            *next_value += 1;
            Input::Put {
                value: *next_value,
                if_revision: Some(last_seen.unwrap_or(0)),
            }
        }
        _ => Input::Delete { if_revision: None },
    }
}

/// Generate a linearizable history.
pub fn linearizable_history(cfg: &GenConfig) -> Vec<Op> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut store = Reference::default();
    let mut next_value: Value = 0;
    let mut last_seen: HashMap<(u32, String), u64> = HashMap::new();
    let mut ops = Vec::with_capacity(cfg.ops);
    // (time, client, is_linearization_point); the op in flight per client.
    let mut queue: BinaryHeap<Reverse<(u64, u32, bool)>> = BinaryHeap::new();
    let mut in_flight: HashMap<u32, InFlight> = HashMap::new();
    for c in 0..cfg.clients {
        queue.push(Reverse((rng.random_range(0..1_000), c, false)));
    }
    let mut started = 0;
    while let Some(Reverse((now, client, is_lin))) = queue.pop() {
        if !is_lin {
            if started == cfg.ops {
                continue;
            }
            started += 1;
            let key = format!("k{}", rng.random_range(0..cfg.keys));
            let seen = last_seen.get(&(client, key.clone())).copied();
            let input = random_input(&mut rng, &mut next_value, seen);
            let lost = rng.random_range(0..100) < cfg.unknown_pct;
            in_flight.insert(
                client,
                InFlight {
                    client,
                    key,
                    input,
                    call_ns: now,
                    lost,
                },
            );
            queue.push(Reverse((now + rng.random_range(1..5_000), client, true)));
            continue;
        }
        let Some(f) = in_flight.remove(&client) else {
            continue;
        };
        // A lost answer: half the time the op never reached the store at all.
        let applied = !f.lost || rng.random_bool(0.5);
        let output = if applied {
            store.apply(&f.key, f.input)
        } else {
            Output::Unknown
        };
        let return_ns = if f.lost {
            RETURN_NEVER
        } else {
            now + rng.random_range(1..5_000)
        };
        if let Output::Read(Some((_, r))) | Output::Written { revision: r, .. } = output {
            last_seen.insert((client, f.key.clone()), r);
        }
        ops.push(Op {
            client: f.client,
            key: f.key,
            call_ns: f.call_ns,
            return_ns,
            input: f.input,
            output: if f.lost { Output::Unknown } else { output },
            node: 0,
        });
        let resume = if f.lost { now + 10_000 } else { return_ns };
        queue.push(Reverse((resume, client, false)));
    }
    ops
}
