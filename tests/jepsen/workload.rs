//! The client side of a run: threads that send requests through the REST API to random nodes
//! and record every op with the time it was invoked and the time it returned.
//!
//! Three workloads share the cluster (disjoint key spaces):
//! - register: get (a fifth of them `consistency=lease`) / put / compare-and-set / delete on
//!   a few hot keys `r0..`; checked for linearizability.
//! - set: every client inserts unique keys `s<client>-<n>`; at the end every acknowledged
//!   insert must be listed, and no insert answered `503` (known not applied) may be.
//! - idempotent: puts on hot keys `i0..` with an `Idempotency-Key`, retried with the same key
//!   to random nodes while the outcome is unknown; one logical op per key, so a write applied
//!   twice shows up as its value at two revisions, which the checker rejects.
//!
//! How answers become outcomes (API.md §3): could not connect or `503`: failed (not applied);
//! sent but no answer, `504`, or an answer the contract does not allow: unknown; `200` / `404`
//! / `409`: ok, with what they say. Answers outside the contract are also counted in
//! `Stats::odd` and fail the run.

use crate::history::{Input, Op, Output, RETURN_NEVER, Value};
use crate::http::{self, Answer, Fate, Timeouts};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Hot keys of the register and idempotent workloads: few, so ops on one key overlap a lot.
pub const REGISTER_KEYS: usize = 4;
/// Attempts of one idempotent logical op before it is left unknown.
const IDEMPOTENT_ATTEMPTS_MAX: u32 = 6;
/// Share of idempotent puts sent once more after their definitive answer.
const DUPLICATE_SHARE: f64 = 0.3;
/// Unexpected answers kept verbatim for the report (the count is always exact).
const ODD_KEPT_MAX: usize = 20;

#[derive(Default, Debug)]
pub struct Stats {
    /// HTTP status (0 = no answer, 1 = not sent) -> count.
    pub statuses: BTreeMap<u16, u64>,
    pub odd_count: u64,
    pub odd: Vec<String>,
    /// Answers carrying `Idempotent-Replayed: true`.
    pub replayed: u64,
    /// Logical idempotent ops that needed more than one attempt.
    pub retried: u64,
    /// Deliberate duplicates of answered idempotent puts that got the original answer back.
    pub duplicates_replayed: u64,
}

/// What the set workload learned, per inserted key.
#[derive(Default, Debug)]
pub struct SetLedger {
    pub acked: Vec<String>,
    pub failed: Vec<String>,
    pub unknown: Vec<String>,
}

pub struct Shared {
    pub started: Instant,
    pub stop: AtomicBool,
    pub addrs: Vec<SocketAddr>,
    pub timeouts: Timeouts,
    pub ops: Mutex<Vec<Op>>,
    pub stats: Mutex<Stats>,
    pub set: Mutex<SetLedger>,
}

impl Shared {
    pub fn new(addrs: Vec<SocketAddr>, timeouts: Timeouts) -> Shared {
        Shared {
            started: Instant::now(),
            stop: AtomicBool::new(false),
            addrs,
            timeouts,
            ops: Mutex::new(Vec::new()),
            stats: Mutex::new(Stats::default()),
            set: Mutex::new(SetLedger::default()),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    fn record(&self, op: Op) {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    fn note_status(&self, sent: &Fate) {
        let code = match sent {
            Fate::NotSent => 1,
            Fate::NoAnswer => 0,
            Fate::Answered(a) => a.status,
        };
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        *stats.statuses.entry(code).or_default() += 1;
        if let Fate::Answered(a) = sent {
            if a.header("idempotent-replayed") == Some("true") {
                stats.replayed += 1;
            }
        }
    }

    fn note_odd(&self, what: String) {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.odd_count += 1;
        if stats.odd.len() < ODD_KEPT_MAX {
            stats.odd.push(what);
        }
    }
}

/// A value as the workloads write it: decimal digits. Anything else reads as `u64::MAX`.
fn parse_value(bytes: &[u8]) -> Value {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Turn one request's fate into the op's output (see the file comment).
fn classify(shared: &Shared, input: Input, sent: &Fate, what: &str) -> Output {
    shared.note_status(sent);
    let answer = match sent {
        Fate::NotSent => return Output::Failed,
        Fate::NoAnswer => return Output::Unknown,
        Fate::Answered(a) => a,
    };
    let parsed = match (input, answer.status) {
        (_, 503) => Some(Output::Failed),
        (_, 504) => Some(Output::Unknown),
        (Input::Get | Input::LeaseGet, 200) => answer
            .header("x-revision")
            .and_then(|r| r.parse().ok())
            .map(|r| Output::Read(Some((parse_value(&answer.body), r)))),
        (Input::Get | Input::LeaseGet, 404) => Some(Output::Read(None)),
        (Input::Put { .. }, 200) => answer.json().and_then(|j| {
            Some(Output::Written {
                revision: j["revision"].as_u64()?,
                prev_revision: j["prev_revision"].as_u64(),
            })
        }),
        (Input::Delete { .. }, 200) => answer.json().and_then(|j| {
            Some(Output::Deleted {
                revision: j["revision"].as_u64()?,
                deleted: j["deleted"].as_bool()?,
            })
        }),
        (Input::Put { .. } | Input::Delete { .. }, 409) => mismatch(answer),
        _ => None,
    };
    parsed.unwrap_or_else(|| {
        shared.note_odd(format!(
            "{what}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        ));
        Output::Unknown
    })
}

fn mismatch(answer: &Answer) -> Option<Output> {
    let j = answer.json()?;
    if j["error"] != "revision_mismatch" {
        return None;
    }
    let c = j["current_revision"].as_u64()?;
    if c == 0 {
        return Some(Output::Mismatch { current: None });
    }
    let v = j["current_value"]
        .as_str()
        .map_or(u64::MAX, |s| parse_value(s.as_bytes()));
    Some(Output::Mismatch {
        current: Some((v, c)),
    })
}

/// Send one KV request for `input` on `key` to `addr`.
fn send(shared: &Shared, addr: SocketAddr, key: &str, input: Input, idem: Option<&str>) -> Fate {
    let headers: Vec<(&str, &str)> = idem.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    let query = |if_revision: Option<u64>| {
        if_revision.map_or(String::new(), |r| format!("?if_revision={r}"))
    };
    let (method, target, body) = match input {
        Input::Get => ("GET", format!("/v1/kv/{key}"), String::new()),
        Input::LeaseGet => (
            "GET",
            format!("/v1/kv/{key}?consistency=lease"),
            String::new(),
        ),
        Input::Put { value, if_revision } => (
            "PUT",
            format!("/v1/kv/{key}{}", query(if_revision)),
            value.to_string(),
        ),
        Input::Delete { if_revision } => (
            "DELETE",
            format!("/v1/kv/{key}{}", query(if_revision)),
            String::new(),
        ),
    };
    http::request(
        addr,
        method,
        &target,
        &headers,
        body.as_bytes(),
        shared.timeouts,
    )
}

/// Remember the revision a client last saw per key, for its next compare-and-set.
fn learn(seen: &mut HashMap<String, u64>, key: &str, output: Output) {
    let r = match output {
        Output::Read(Some((_, r))) | Output::Written { revision: r, .. } => r,
        Output::Read(None) | Output::Deleted { .. } | Output::Mismatch { current: None } => 0,
        Output::Mismatch {
            current: Some((_, r)),
        } => r,
        _ => return,
    };
    seen.insert(key.to_string(), r);
}

/// Pacing between ops, so clients do not starve the nodes of CPU on a 2-core machine (this
/// is load shaping, not synchronisation: nothing waits for anything to happen).
fn think(rng: &mut StdRng) {
    std::thread::sleep(Duration::from_millis(rng.random_range(2..12)));
}

fn next_value(client: u32, counter: &mut u64) -> Value {
    *counter += 1;
    u64::from(client) * 1_000_000_000 + *counter
}

/// One register client: random ops on the hot keys through random nodes until stopped.
pub fn register_client(shared: &Shared, client: u32, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut counter = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let node = rng.random_range(0..shared.addrs.len());
        let key = format!("r{}", rng.random_range(0..REGISTER_KEYS));
        let input = match rng.random_range(0..100) {
            0..40 => Input::Get,
            40..50 => Input::LeaseGet,
            50..75 => Input::Put {
                value: next_value(client, &mut counter),
                if_revision: None,
            },
            75..95 => Input::Put {
                value: next_value(client, &mut counter),
                if_revision: Some(seen.get(&key).copied().unwrap_or(0)),
            },
            _ => Input::Delete { if_revision: None },
        };
        let call_ns = shared.now_ns();
        let sent = send(shared, shared.addrs[node], &key, input, None);
        let output = classify(shared, input, &sent, &key);
        let return_ns = if output == Output::Unknown {
            RETURN_NEVER
        } else {
            shared.now_ns()
        };
        learn(&mut seen, &key, output);
        shared.record(Op {
            client,
            key,
            call_ns,
            return_ns,
            input,
            output,
            node: node as u32 + 1,
        });
        think(&mut rng);
    }
}

/// One set client: inserts unique keys until stopped. Inserts are ops in the history too.
pub fn set_client(shared: &Shared, client: u32, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut counter = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let node = rng.random_range(0..shared.addrs.len());
        let value = next_value(client, &mut counter);
        let key = format!("s{value}");
        let input = Input::Put {
            value,
            if_revision: None,
        };
        let call_ns = shared.now_ns();
        let sent = send(shared, shared.addrs[node], &key, input, None);
        let output = classify(shared, input, &sent, &key);
        let return_ns = if output == Output::Unknown {
            RETURN_NEVER
        } else {
            shared.now_ns()
        };
        {
            let mut set = shared.set.lock().unwrap_or_else(|e| e.into_inner());
            match output {
                Output::Written { .. } => set.acked.push(key.clone()),
                Output::Failed => set.failed.push(key.clone()),
                _ => set.unknown.push(key.clone()),
            }
        }
        shared.record(Op {
            client,
            key,
            call_ns,
            return_ns,
            input,
            output,
            node: node as u32 + 1,
        });
        think(&mut rng);
    }
}

/// One idempotent client: half its ops are reads of the hot keys (so a doubly applied write
/// is seen at its second revision); each logical put carries a fresh Idempotency-Key and is
/// retried with it, to random nodes, while its outcome is unknown.
pub fn idempotent_client(shared: &Shared, client: u32, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut counter = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let key = format!("i{}", rng.random_range(0..REGISTER_KEYS));
        let (node, input, call_ns, output) = if rng.random_bool(0.5) {
            let node = rng.random_range(0..shared.addrs.len());
            let call_ns = shared.now_ns();
            let sent = send(shared, shared.addrs[node], &key, Input::Get, None);
            (
                node,
                Input::Get,
                call_ns,
                classify(shared, Input::Get, &sent, &key),
            )
        } else {
            let value = next_value(client, &mut counter);
            let input = Input::Put {
                value,
                if_revision: None,
            };
            let call_ns = shared.now_ns();
            let (node, output) = idempotent_put(
                shared,
                &mut rng,
                &key,
                input,
                &format!("jepsen-{client}-{counter}"),
            );
            (node, input, call_ns, output)
        };
        let return_ns = if output == Output::Unknown {
            RETURN_NEVER
        } else {
            shared.now_ns()
        };
        shared.record(Op {
            client,
            key,
            call_ns,
            return_ns,
            input,
            output,
            node: node as u32 + 1,
        });
        think(&mut rng);
    }
}

/// Send a put with `idem` until an answer is definitive (or attempts run out): the logical
/// op's node (the last one tried) and output.
fn idempotent_put(
    shared: &Shared,
    rng: &mut StdRng,
    key: &str,
    input: Input,
    idem: &str,
) -> (usize, Output) {
    let mut output = Output::Failed;
    let mut node = 0;
    for attempt in 0..IDEMPOTENT_ATTEMPTS_MAX {
        node = rng.random_range(0..shared.addrs.len());
        let sent = send(shared, shared.addrs[node], key, input, Some(idem));
        match classify(shared, input, &sent, key) {
            // Not applied by this attempt; an earlier unknown one may still apply.
            Output::Failed => {}
            Output::Unknown => output = Output::Unknown,
            definitive => {
                if attempt > 0 {
                    shared
                        .stats
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .retried += 1;
                }
                if rng.random_bool(DUPLICATE_SHARE) {
                    duplicate(shared, rng, key, input, idem, definitive);
                }
                return (node, definitive);
            }
        }
        // A stop request ends the retries: the op stays unknown (or failed).
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    (node, output)
}

/// Send a request that already has a definitive answer once more, with the same
/// Idempotency-Key, as a client whose answer was lost would: any answer but `503`, no answer
/// or the original one (replayed, never applied again) breaks the contract.
fn duplicate(
    shared: &Shared,
    rng: &mut StdRng,
    key: &str,
    input: Input,
    idem: &str,
    original: Output,
) {
    let node = rng.random_range(0..shared.addrs.len());
    let sent = send(shared, shared.addrs[node], key, input, Some(idem));
    let again = classify(shared, input, &sent, key);
    let mut stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
    match again {
        Output::Failed | Output::Unknown => {}
        same if same == original => stats.duplicates_replayed += 1,
        other => {
            drop(stats);
            shared.note_odd(format!(
                "{key}: duplicate with {idem} answered {other:?}, first {original:?}"
            ));
        }
    }
}

/// After healing: read every hot key through every node (recorded as ops of client `client`).
pub fn final_reads(shared: &Shared, client: u32) {
    for prefix in ["r", "i"] {
        for k in 0..REGISTER_KEYS {
            let key = format!("{prefix}{k}");
            for (node, addr) in shared.addrs.iter().enumerate() {
                let call_ns = shared.now_ns();
                let sent = send(shared, *addr, &key, Input::Get, None);
                let output = classify(shared, Input::Get, &sent, &key);
                let return_ns = if output == Output::Unknown {
                    RETURN_NEVER
                } else {
                    shared.now_ns()
                };
                shared.record(Op {
                    client,
                    key: key.clone(),
                    call_ns,
                    return_ns,
                    input: Input::Get,
                    output,
                    node: node as u32 + 1,
                });
            }
        }
    }
}

/// Every key under prefix `s` through `addr`, paging with `start_after`. `None` if any page
/// failed.
pub fn list_set(shared: &Shared, addr: SocketAddr) -> Option<Vec<String>> {
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let target = match &after {
            None => "/v1/kv?prefix=s&limit=10000".to_string(),
            Some(k) => format!("/v1/kv?prefix=s&limit=10000&start_after={k}"),
        };
        let Fate::Answered(a) = http::request(addr, "GET", &target, &[], b"", shared.timeouts)
        else {
            return None;
        };
        let j = a.json().filter(|_| a.status == 200)?;
        for item in j["items"].as_array()? {
            keys.push(item["key"].as_str()?.to_string());
        }
        if j["more"].as_bool() != Some(true) {
            return Some(keys);
        }
        after = keys.last().cloned();
    }
}
