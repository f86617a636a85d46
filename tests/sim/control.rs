//! The test-facing API, modelled on the MIT 6.5840 Raft lab's `config.go`: `check_one_leader`,
//! `check_no_leader`, `check_terms`, `n_committed`, `one`, `wait_committed`, `start`.
//!
//! Times scale with the core's defaults: an election timeout is 100-200 ms of virtual time here
//! (10-20 ticks of 10 ms) where the lab assumes up to 1 s. "Connected" means up and not
//! disconnected, as in the lab. Every helper fails the run (with the seed) instead of returning
//! an error, like the lab's `t.Fatalf`.

use bytes::Bytes;
use rocinante::raft::{Index, Role, Term};

use super::cluster::Sim;
use super::network::Time;

/// The longest election timeout with the default config (20 ticks of 10 ms).
pub const ELECTION_TIMEOUT_MS: Time = 200;

impl Sim {
    pub fn is_live(&self, node: usize) -> bool {
        self.is_up(node) && self.is_connected(node)
    }

    /// The node that is leader with the highest term among the live nodes, if any.
    pub fn leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.is_live(i))
            .filter_map(|i| {
                self.raft(i)
                    .filter(|r| r.role() == Role::Leader)
                    .map(|r| (r.term(), i))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// Waits for exactly one leader among the live nodes (in its term) and returns it.
    pub fn check_one_leader(&mut self) -> usize {
        for _ in 0..20 {
            let wait = self.rng_range(90, 110);
            self.run_for(wait);
            let mut by_term: std::collections::BTreeMap<Term, Vec<usize>> = Default::default();
            for i in (0..self.nodes.len()).filter(|&i| self.is_live(i)) {
                if let Some(r) = self.raft(i).filter(|r| r.role() == Role::Leader) {
                    by_term.entry(r.term()).or_default().push(i);
                }
            }
            if let Some((term, ls)) = by_term.iter().find(|(_, ls)| ls.len() > 1) {
                self.fail(&format!("term {term} has {} leaders: {ls:?}", ls.len()));
            }
            if let Some((_, ls)) = by_term.iter().next_back() {
                return ls[0];
            }
        }
        self.fail("expected one leader, got none")
    }

    /// No live node believes it is the leader.
    pub fn check_no_leader(&self) {
        for i in (0..self.nodes.len()).filter(|&i| self.is_live(i)) {
            if self.raft(i).is_some_and(|r| r.role() == Role::Leader) {
                self.fail(&format!(
                    "expected no leader among connected nodes, but n{} claims to be",
                    i + 1
                ));
            }
        }
    }

    /// All live nodes agree on the term; returns it.
    pub fn check_terms(&self) -> Term {
        let terms: Vec<Term> = (0..self.nodes.len())
            .filter(|&i| self.is_live(i))
            .filter_map(|i| self.raft(i).map(|r| r.term()))
            .collect();
        if terms.windows(2).any(|w| w[0] != w[1]) {
            self.fail(&format!("servers disagree on term: {terms:?}"));
        }
        terms.first().copied().unwrap_or_default()
    }

    /// How many running nodes applied `index`, and the payload there. Fails if two disagree.
    pub fn n_committed(&self, index: Index) -> (usize, Option<Bytes>) {
        let mut count = 0;
        let mut value: Option<Bytes> = None;
        for i in (0..self.nodes.len()).filter(|&i| self.is_up(i)) {
            if let Some(e) = self.nodes[i].applied_log.get(index.0 as usize - 1) {
                if value.as_ref().is_some_and(|v| *v != e.data) {
                    self.fail(&format!("committed values at {index} do not match"));
                }
                value = Some(e.data.clone());
                count += 1;
            }
        }
        (count, value)
    }

    /// 6.5840's `Start`: proposes on `node` if it is up; the index and term if it took it.
    pub fn start(&mut self, node: usize, data: impl Into<Bytes>) -> Option<(Index, Term)> {
        if !self.is_up(node) {
            return None;
        }
        self.propose(node, data).ok()
    }

    /// 6.5840's `one`: gets `data` committed on at least `expected` nodes, trying every live
    /// node as leader; with `retry`, proposes again if the first attempt was lost.
    pub fn one(&mut self, data: &str, expected: usize, retry: bool) -> Index {
        let t0 = self.now;
        let mut starts = 0;
        let want = Bytes::copy_from_slice(data.as_bytes());
        while self.now < t0 + 10_000 {
            let mut index = None;
            for _ in 0..self.nodes.len() {
                starts = (starts + 1) % self.nodes.len();
                if self.is_live(starts) {
                    if let Some((i, _)) = self.start(starts, want.clone()) {
                        index = Some(i);
                        break;
                    }
                }
            }
            if let Some(index) = index {
                let t1 = self.now;
                while self.now < t1 + 2_000 {
                    let (n, v) = self.n_committed(index);
                    if n > 0 && n >= expected && v.as_ref() == Some(&want) {
                        return index;
                    }
                    self.run_for(20);
                }
                if !retry {
                    self.fail(&format!("one({data}) failed to reach agreement"));
                }
            } else {
                self.run_for(50);
            }
        }
        self.fail(&format!("one({data}) failed to reach agreement in 10s"))
    }

    /// 6.5840's `wait`: until `index` is applied on `n` nodes. Gives up (None) when some node
    /// moved past `start_term`, since the entry may then never commit.
    pub fn wait_committed(
        &mut self,
        index: Index,
        n: usize,
        start_term: Option<Term>,
    ) -> Option<Bytes> {
        let mut pause = 10;
        for _ in 0..30 {
            if self.n_committed(index).0 >= n {
                break;
            }
            self.run_for(pause);
            pause = (pause * 2).min(1_000);
            if let Some(t) = start_term {
                if (0..self.nodes.len())
                    .filter_map(|i| self.raft(i))
                    .any(|r| r.term() > t)
                {
                    return None;
                }
            }
        }
        let (count, v) = self.n_committed(index);
        if count < n {
            self.fail(&format!(
                "only {count} decided for index {index}; wanted {n}"
            ));
        }
        v
    }

    /// A uniform draw from the simulation's RNG, so tests stay reproducible from the seed.
    pub fn rng_range(&mut self, lo: u64, hi: u64) -> u64 {
        use rand::Rng;
        self.rng.random_range(lo..hi)
    }
}
