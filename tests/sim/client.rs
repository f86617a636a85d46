//! The clients: proposals with unique payloads, linearizable reads, and administrative
//! requests (campaign, leadership transfer), all entering a node through its inbox like any
//! other input, so they are batched and lost with a crash like real requests.
//!
//! Outcomes are recorded in `Sim::proposals` / `Sim::reads`; a proposal is settled by the
//! checker's committed log (its index committed with its term: committed; with another term:
//! lost), never by trusting the node.

use bytes::Bytes;
use rocinante::raft::{Index, ProposeError, Term};

use super::cluster::{Input, Outcome, Proposal, ReadOutcome, ReadRequest, Sim, id};

impl Sim {
    /// Queues a proposal on `node`; returns its number in `proposals`.
    pub fn submit(&mut self, node: usize, data: Bytes) -> usize {
        let p = self.proposals.len();
        self.proposals.push(Proposal {
            node,
            data,
            outcome: Outcome::Queued,
        });
        self.input(node, Input::Propose(p));
        p
    }

    /// Proposes on `node` and returns the core's answer right away (6.5840's `Start`). Waits
    /// for the node's write in flight, if any, so the proposal is handled in its own turn.
    pub fn propose(
        &mut self,
        node: usize,
        data: impl Into<Bytes>,
    ) -> Result<(Index, Term), ProposeError> {
        self.settle(node);
        let p = self.submit(node, data.into());
        match &self.proposals[p].outcome {
            Outcome::Accepted(i, t) => Ok((*i, *t)),
            Outcome::Committed(i) => Ok((*i, self.checker.committed[i.0 as usize - 1].term)),
            Outcome::Lost => Err(ProposeError::NotLeader { leader: None }),
            Outcome::Rejected(e) => Err(e.clone()),
            Outcome::Queued | Outcome::Dropped => Err(ProposeError::NotLeader { leader: None }),
        }
    }

    /// Runs events until `node` has no write in flight.
    pub fn settle(&mut self, node: usize) {
        while self.nodes[node].inflight.is_some() {
            if !self.step() {
                break;
            }
        }
    }

    /// Asks `node` for a linearizable read; returns its number in `reads`.
    pub fn read(&mut self, node: usize) -> usize {
        let r = self.reads.len();
        self.reads.push(ReadRequest {
            node,
            incarnation: self.nodes[node].incarnation,
            required: self.checker.commit_index(),
            outcome: ReadOutcome::Queued,
        });
        self.input(node, Input::Read(r));
        r
    }

    pub fn transfer_leadership(&mut self, from: usize, to: usize) {
        self.log(format!("n{} TRANSFER leadership to n{}", from + 1, to + 1));
        self.input(from, Input::Transfer(id(to)));
    }

    pub fn campaign(&mut self, node: usize) {
        self.log(format!("n{} CAMPAIGN", node + 1));
        self.input(node, Input::Campaign);
    }
}
