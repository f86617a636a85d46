//! The simulated network and the event queue.
//!
//! Time is virtual milliseconds. Events are ordered by (time, scheduling sequence number), so
//! two events at the same time run in the order they were scheduled: the run depends only on
//! the seed. The fault model decides, per message and with the simulator's one RNG, whether it
//! is lost, duplicated, or delayed (random delays reorder messages). Partitions are a set of
//! cut directed links plus a per-node "disconnected" flag (the 6.5840 lab's `disconnect`): a
//! message crosses only if its link is open both when it is sent and when it arrives.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};

use rand::Rng;
use rand::rngs::StdRng;
use rocinante::raft::Message;

pub type Time = u64;

/// What can happen at a point in virtual time.
pub enum Event {
    /// One tick of `node`'s logical clock (then the next one is scheduled).
    Tick(usize),
    /// A message arrives at `msg.to`.
    Deliver(Message),
    /// The "fsync" of the `Ready` in flight on `node` completes, if the node has not crashed
    /// (restarted) since: `incarnation` tells stale completions apart.
    PersistDone { node: usize, incarnation: u32 },
}

struct Scheduled {
    at: Time,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A min-queue of events by (time, sequence).
#[derive(Default)]
pub struct EventQueue {
    heap: BinaryHeap<Scheduled>,
    seq: u64,
}

impl EventQueue {
    pub fn push(&mut self, at: Time, event: Event) {
        self.seq += 1;
        self.heap.push(Scheduled {
            at,
            seq: self.seq,
            event,
        });
    }
    pub fn peek_time(&self) -> Option<Time> {
        self.heap.peek().map(|s| s.at)
    }
    pub fn pop(&mut self) -> Option<(Time, Event)> {
        self.heap.pop().map(|s| (s.at, s.event))
    }
}

/// The fault model's knobs. Probabilities are per message.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub loss: f64,
    pub duplicate: f64,
    pub delay_ms_min: Time,
    pub delay_ms_max: Time,
    /// Probability that a message is held back much longer (6.5840's "long reordering"): by
    /// `long_delay_ms_min` plus a skewed draw, uniform in [0, uniform in [0, extra max]], as
    /// labrpc does (most long delays are short, a few are very long).
    pub long_delay: f64,
    pub long_delay_ms_min: Time,
    pub long_delay_ms_extra_max: Time,
    /// Each link delivers in send order (a TCP connection); otherwise random delays reorder.
    pub fifo: bool,
}

impl NetConfig {
    /// A LAN over TCP: every message arrives after 1-5 ms, in order, none lost or duplicated.
    pub fn reliable() -> NetConfig {
        NetConfig {
            loss: 0.0,
            duplicate: 0.0,
            delay_ms_min: 1,
            delay_ms_max: 5,
            long_delay: 0.0,
            long_delay_ms_min: 0,
            long_delay_ms_extra_max: 0,
            fifo: true,
        }
    }
    /// 6.5840's unreliable network: 10% loss, delays up to 27 ms; plus 5% duplicates.
    pub fn unreliable() -> NetConfig {
        NetConfig {
            loss: 0.1,
            duplicate: 0.05,
            delay_ms_min: 0,
            delay_ms_max: 27,
            long_delay: 0.0,
            long_delay_ms_min: 0,
            long_delay_ms_extra_max: 0,
            fifo: false,
        }
    }
}

/// Why a message did not arrive (for the trace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    Cut,
    Lost,
}

pub struct Network {
    pub config: NetConfig,
    /// Directed links (from, to) that are cut.
    cut: HashSet<(usize, usize)>,
    /// Nodes cut off from everybody (in both directions).
    disconnected: Vec<bool>,
    /// Latest delivery time scheduled on each link (for FIFO links).
    last_arrival: HashMap<(usize, usize), Time>,
}

impl Network {
    pub fn new(nodes: usize) -> Network {
        Network {
            config: NetConfig::reliable(),
            cut: HashSet::new(),
            disconnected: vec![false; nodes],
            last_arrival: HashMap::new(),
        }
    }

    pub fn link_open(&self, from: usize, to: usize) -> bool {
        !self.disconnected[from] && !self.disconnected[to] && !self.cut.contains(&(from, to))
    }

    pub fn is_connected(&self, node: usize) -> bool {
        !self.disconnected[node]
    }

    pub fn set_connected(&mut self, node: usize, connected: bool) {
        self.disconnected[node] = !connected;
    }

    /// Cuts (or reopens) the one-way link from -> to.
    pub fn set_link(&mut self, from: usize, to: usize, open: bool) {
        if open {
            self.cut.remove(&(from, to));
        } else {
            self.cut.insert((from, to));
        }
    }

    /// Splits the cluster: links between the two sides are cut both ways, links within a side
    /// are opened. `side[i]` says which side node i is on.
    pub fn partition(&mut self, side: &[bool]) {
        self.cut.clear();
        for a in 0..side.len() {
            for b in 0..side.len() {
                if side[a] != side[b] {
                    self.cut.insert((a, b));
                }
            }
        }
    }

    /// Heals every cut and reconnects every node.
    pub fn heal(&mut self) {
        self.cut.clear();
        self.disconnected.iter_mut().for_each(|d| *d = false);
    }

    /// Decides the fate of one message sent at `now`: the arrival times of the copies that
    /// will arrive (two if duplicated), or why it was dropped.
    pub fn route(
        &mut self,
        rng: &mut StdRng,
        now: Time,
        from: usize,
        to: usize,
    ) -> Result<Vec<Time>, Drop> {
        if !self.link_open(from, to) {
            return Err(Drop::Cut);
        }
        let c = &self.config;
        if c.loss > 0.0 && rng.random_bool(c.loss) {
            return Err(Drop::Lost);
        }
        let copies = if c.duplicate > 0.0 && rng.random_bool(c.duplicate) {
            2
        } else {
            1
        };
        let mut delays = Vec::with_capacity(copies);
        for _ in 0..copies {
            let mut d = rng.random_range(c.delay_ms_min..=c.delay_ms_max);
            if c.long_delay > 0.0 && rng.random_bool(c.long_delay) {
                let extra = rng.random_range(0..=c.long_delay_ms_extra_max);
                d += c.long_delay_ms_min + rng.random_range(0..=extra);
            }
            let mut at = now + d;
            if c.fifo {
                let last = self.last_arrival.entry((from, to)).or_insert(0);
                at = at.max(*last);
                *last = at;
            }
            delays.push(at);
        }
        Ok(delays)
    }
}
