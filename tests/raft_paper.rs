//! One test per rule of the Raft paper ("In Search of an Understandable Consensus Algorithm")
//! and Ongaro's thesis, in the spirit of etcd's raft_paper_test: each test names the rule it
//! checks and would fail if the core broke that rule.
//!
//! The harness is deliberately tiny: a few nodes wired by handing each `Ready`'s messages to
//! their recipients synchronously, persisting by reporting `persisted` right away. The seeded
//! simulator with faults is `tests/simulation.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use rocinante::raft::{
    Config, Entry, EntryKind, HardState, Index, Message, MessageBody, NodeId, ProposeError,
    RaftNode, ReadFailure, ReadId, Ready, Restored, Role, Term,
};

fn id(n: u64) -> NodeId {
    NodeId(n)
}

fn ids(n: u64) -> Vec<NodeId> {
    (1..=n).map(NodeId).collect()
}

fn config(me: u64, n: u64) -> Config {
    Config::new(id(me), ids(n), 1000 + me)
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term: Term(term),
        index: Index(index),
        kind: EntryKind::Normal,
        data: Bytes::from(format!("{index}/{term}")),
    }
}

/// A node restored with `log` (terms of entries 1..) at `term`.
fn restored_node(cfg: Config, term: u64, log_terms: &[u64]) -> RaftNode {
    let entries = log_terms
        .iter()
        .enumerate()
        .map(|(i, &t)| entry(i as u64 + 1, t))
        .collect();
    let restored = Restored {
        hard_state: HardState {
            current_term: Term(term),
            voted_for: None,
        },
        snapshot: None,
        entries,
    };
    RaftNode::new(cfg, restored)
}

/// Run one `Ready` the way the runtime does (persist is instantaneous here) and return it.
fn drive(node: &mut RaftNode) -> Ready {
    let rd = node.ready();
    if let Some(last) = rd.entries.last() {
        node.persisted(last.index, last.term);
    }
    if let Some(last) = rd.committed_entries.last() {
        node.applied(last.index);
    }
    rd
}

/// All messages of a Ready, in send order.
fn msgs(rd: &Ready) -> Vec<Message> {
    rd.messages_before_persist
        .iter()
        .chain(rd.messages.iter())
        .cloned()
        .collect()
}

fn msg(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
    Message {
        from: id(from),
        to: id(to),
        term: Term(term),
        body,
    }
}

fn append(prev: (u64, u64), entries: Vec<Entry>, commit: u64) -> MessageBody {
    MessageBody::AppendEntries {
        prev_log_index: Index(prev.0),
        prev_log_term: Term(prev.1),
        entries,
        leader_commit: Index(commit),
        read_seq: 0,
    }
}

fn vote(pre_vote: bool, last: (u64, u64)) -> MessageBody {
    MessageBody::RequestVote {
        pre_vote,
        last_log_index: Index(last.0),
        last_log_term: Term(last.1),
        leadership_transfer: false,
    }
}

fn tick_n(node: &mut RaftNode, n: u64) {
    for _ in 0..n {
        node.tick();
    }
}

/// Decides which messages the network loses.
type DropRule = Box<dyn Fn(&Message) -> bool>;

/// Nodes wired together synchronously, with optional cut links and a record of what each
/// node applied.
struct Cluster {
    nodes: BTreeMap<NodeId, RaftNode>,
    /// Directed links that drop every message.
    cut: BTreeSet<(NodeId, NodeId)>,
    applied: BTreeMap<NodeId, Vec<Entry>>,
    reads: BTreeMap<NodeId, Vec<(ReadId, Index)>>,
    failed: BTreeMap<NodeId, Vec<(ReadId, ReadFailure)>>,
    /// Every message delivered, for counting.
    delivered: Vec<Message>,
    /// Messages for which this returns true are dropped (on top of `cut`).
    drop_if: Option<DropRule>,
}

impl Cluster {
    fn new(n: u64) -> Cluster {
        Cluster::with(n, |_| {})
    }

    fn with(n: u64, tweak: impl Fn(&mut Config)) -> Cluster {
        let nodes = (1..=n)
            .map(|i| {
                let mut cfg = config(i, n);
                tweak(&mut cfg);
                (id(i), RaftNode::new(cfg, Restored::default()))
            })
            .collect();
        Cluster {
            nodes,
            cut: BTreeSet::new(),
            applied: BTreeMap::new(),
            reads: BTreeMap::new(),
            failed: BTreeMap::new(),
            delivered: Vec::new(),
            drop_if: None,
        }
    }

    /// A cluster of already-built nodes (restored logs, custom configs).
    fn from_nodes(nodes: Vec<RaftNode>) -> Cluster {
        let mut c = Cluster::new(0);
        c.nodes = nodes.into_iter().map(|n| (n.id(), n)).collect();
        c
    }

    /// Hand `msgs` to their recipients (respecting cuts), without draining anyone's Ready.
    fn deliver(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            if self.cut.contains(&(m.from, m.to)) {
                continue;
            }
            if let Some(node) = self.nodes.get_mut(&m.to) {
                self.delivered.push(m.clone());
                node.step(m);
            }
        }
    }

    fn node(&mut self, n: u64) -> &mut RaftNode {
        self.nodes.get_mut(&id(n)).expect("node exists")
    }

    fn isolate(&mut self, n: u64) {
        for &other in self.nodes.keys() {
            if other != id(n) {
                self.cut.insert((id(n), other));
                self.cut.insert((other, id(n)));
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    /// Drain every node's Ready and deliver messages until the cluster is quiet.
    fn settle(&mut self) {
        let mut queue: VecDeque<Message> = VecDeque::new();
        for _round in 0..10_000 {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for nid in ids {
                let node = self.nodes.get_mut(&nid).expect("node exists");
                if !node.has_ready() {
                    continue;
                }
                let rd = drive(node);
                queue.extend(msgs(&rd));
                self.applied
                    .entry(nid)
                    .or_default()
                    .extend(rd.committed_entries);
                let reads = rd.read_states.iter().map(|r| (r.id, r.index));
                self.reads.entry(nid).or_default().extend(reads);
                self.failed.entry(nid).or_default().extend(rd.failed_reads);
            }
            if queue.is_empty() {
                return;
            }
            while let Some(m) = queue.pop_front() {
                if self.cut.contains(&(m.from, m.to))
                    || self.drop_if.as_ref().is_some_and(|f| f(&m))
                {
                    continue;
                }
                if let Some(node) = self.nodes.get_mut(&m.to) {
                    self.delivered.push(m.clone());
                    node.step(m);
                }
            }
        }
        panic!("cluster did not settle");
    }

    fn tick_all(&mut self, n: u64) {
        for _ in 0..n {
            for node in self.nodes.values_mut() {
                node.tick();
            }
            self.settle();
        }
    }

    /// Elect node `n` by making it campaign.
    fn elect(&mut self, n: u64) {
        self.node(n).campaign();
        self.settle();
        assert_eq!(
            self.node(n).role(),
            Role::Leader,
            "node {n} should have won"
        );
    }

    fn leaders(&self) -> Vec<NodeId> {
        let leaders = self.nodes.values().filter(|n| n.role() == Role::Leader);
        leaders.map(|n| n.id()).collect()
    }

    fn propose(&mut self, n: u64, data: &str) -> (Index, Term) {
        let r = self.node(n).propose(Bytes::from(data.to_string()));
        r.expect("leader accepts the proposal")
    }

    fn applied_data(&self, n: u64) -> Vec<Bytes> {
        let applied = self.applied.get(&id(n)).cloned().unwrap_or_default();
        let normal = applied.into_iter().filter(|e| e.kind == EntryKind::Normal);
        normal.map(|e| e.data).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// §5.1 Terms
// ---------------------------------------------------------------------------------------------

// Reference: §5.1 "If a server receives a request with a stale term number, it rejects the
// request" and "current terms are exchanged whenever servers communicate; if one server's
// current term is smaller than the other's, then it updates its current term to the larger".
#[test]
fn follower_updates_term_from_higher_term_message() {
    let mut n = RaftNode::new(config(1, 3), Restored::default());
    n.step(msg(2, 1, 5, append((0, 0), vec![], 0)));
    assert_eq!(n.term(), Term(5));
    assert_eq!(n.role(), Role::Follower);
    assert_eq!(n.leader(), Some(id(2)));
    let rd = drive(&mut n);
    assert_eq!(rd.hard_state.map(|h| h.current_term), Some(Term(5)));
}

// Reference: §5.1 "If a candidate or leader discovers that its term is out of date, it
// immediately reverts to follower state."
#[test]
fn candidate_and_leader_step_down_on_higher_term() {
    let mut cfg = config(1, 3);
    cfg.pre_vote = false;
    let mut cand = RaftNode::new(cfg, Restored::default());
    cand.campaign();
    assert_eq!(cand.role(), Role::Candidate);
    cand.step(msg(2, 1, 7, append((0, 0), vec![], 0)));
    assert_eq!((cand.role(), cand.term()), (Role::Follower, Term(7)));

    let mut c = Cluster::new(3);
    c.elect(1);
    let term = c.node(1).term();
    let newer = MessageBody::AppendEntriesResponse {
        success: false,
        last_index: Index(0),
        conflict_index: Index(0),
        conflict_term: Term(0),
        read_seq: 0,
    };
    c.node(1).step(msg(3, 1, term.0 + 1, newer));
    assert_eq!(c.node(1).role(), Role::Follower);
    assert_eq!(c.node(1).term(), term.next());
}

// Reference: §5.1 "If a server receives a request with a stale term number, it rejects the
// request." The answer carries the newer term so the stale leader steps down.
#[test]
fn stale_term_append_is_rejected_with_current_term() {
    let mut n = restored_node(config(1, 3), 4, &[1, 2]);
    n.step(msg(2, 1, 3, append((2, 2), vec![entry(3, 3)], 3)));
    assert_eq!(n.last_index(), Index(2), "stale entries are not appended");
    let rd = drive(&mut n);
    let out = msgs(&rd);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].term, Term(4));
    assert!(matches!(
        out[0].body,
        MessageBody::AppendEntriesResponse { success: false, .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// §5.2 Leader election
// ---------------------------------------------------------------------------------------------

// Reference: §5.2 "If a follower receives no communication over a period of time called the
// election timeout, then it ... begins an election ... increments its current term and
// transitions to candidate state ... votes for itself and issues RequestVote RPCs".
#[test]
fn follower_starts_election_on_timeout() {
    let mut cfg = config(1, 3);
    cfg.pre_vote = false;
    let max = cfg.election_ticks_max;
    let mut n = RaftNode::new(cfg, Restored::default());
    tick_n(&mut n, max);
    assert_eq!((n.role(), n.term()), (Role::Candidate, Term(1)));
    let rd = drive(&mut n);
    let hs = rd.hard_state.expect("term and vote must be persisted");
    assert_eq!(hs.voted_for, Some(id(1)));
    let mut to: Vec<u64> = rd.messages.iter().map(|m| m.to.0).collect();
    to.sort();
    assert_eq!(to, vec![2, 3]);
    assert!(
        rd.messages_before_persist.is_empty(),
        "votes leave after the fsync"
    );
    assert!(rd.messages.iter().all(|m| matches!(
        m.body,
        MessageBody::RequestVote {
            pre_vote: false,
            ..
        }
    )));
}

// Reference: §5.2 "Raft uses randomized election timeouts ... chosen randomly from a fixed
// interval". Timeouts stay within [min, max) and differ between nodes/seeds.
#[test]
fn election_timeout_is_randomized_within_range() {
    let mut seen = BTreeSet::new();
    for seed in 0..40 {
        let mut cfg = config(1, 3);
        cfg.pre_vote = false;
        cfg.seed = seed;
        let (min, max) = (cfg.election_ticks_min, cfg.election_ticks_max);
        let mut n = RaftNode::new(cfg, Restored::default());
        let mut ticks = 0;
        while n.role() == Role::Follower {
            n.tick();
            ticks += 1;
            assert!(ticks < max, "seed {seed}: no election by max ticks");
        }
        assert!(ticks >= min, "seed {seed}: election before min ticks");
        seen.insert(ticks);
    }
    assert!(seen.len() > 3, "timeouts are not randomized: {seen:?}");
}

// Reference: §5.2 "A candidate wins an election if it receives votes from a majority of the
// servers in the full cluster for the same term."
#[test]
fn candidate_becomes_leader_on_majority() {
    let mut c = Cluster::new(3);
    c.isolate(3);
    c.elect(1);
    assert_eq!(c.leaders(), vec![id(1)]);
    assert_eq!(c.node(2).leader(), Some(id(1)));
}

// Reference: §5.2 a candidate that cannot get a majority does not become leader, and once a
// majority rejected it, it returns to follower (it cannot win this term).
#[test]
fn candidate_without_majority_does_not_win() {
    let mut c = Cluster::with(3, |cfg| cfg.pre_vote = false);
    c.isolate(1);
    c.node(1).campaign();
    c.settle();
    assert_eq!(c.node(1).role(), Role::Candidate);
    let mut n = RaftNode::new(
        Config {
            pre_vote: false,
            ..config(1, 3)
        },
        Restored::default(),
    );
    n.campaign();
    let no = MessageBody::RequestVoteResponse {
        pre_vote: false,
        vote_granted: false,
    };
    n.step(msg(2, 1, 1, no.clone()));
    n.step(msg(3, 1, 1, no));
    assert_eq!(n.role(), Role::Follower);
    assert_eq!(n.term(), Term(1));
}

// Reference: §5.2 "Each server will vote for at most one candidate in a given term, on a
// first-come-first-served basis."
#[test]
fn vote_once_per_term() {
    let mut n = RaftNode::new(config(1, 3), Restored::default());
    n.step(msg(2, 1, 1, vote(false, (0, 0))));
    n.step(msg(3, 1, 1, vote(false, (0, 0))));
    n.step(msg(2, 1, 1, vote(false, (0, 0))));
    let rd = drive(&mut n);
    assert_eq!(rd.hard_state.and_then(|h| h.voted_for), Some(id(2)));
    let grants: Vec<(u64, bool)> = rd
        .messages
        .iter()
        .map(|m| match m.body {
            MessageBody::RequestVoteResponse { vote_granted, .. } => (m.to.0, vote_granted),
            _ => panic!("unexpected {m:?}"),
        })
        .collect();
    assert_eq!(grants, vec![(2, true), (3, false), (2, true)]);
    assert!(
        rd.messages_before_persist.is_empty(),
        "grants wait for the vote's fsync"
    );
}

// Reference: §5.4.1 "the voter denies its vote if its own log is more up-to-date than that of
// the candidate ... If the logs have last entries with different terms, then the log with the
// later term is more up-to-date. If the logs end with the same term, then whichever log is
// longer is more up-to-date."
#[test]
fn reject_vote_for_out_of_date_log() {
    let cases = [
        ((3, 1), false), // older last term, longer log
        ((2, 2), false), // same last term, shorter log
        ((3, 2), true),  // same last term, same length
        ((1, 3), true),  // newer last term, shorter log
    ];
    for (last, want) in cases {
        let mut n = restored_node(config(1, 3), 2, &[1, 2, 2]);
        n.step(msg(2, 1, 3, vote(false, last)));
        let rd = drive(&mut n);
        let granted = rd.messages.iter().any(|m| {
            matches!(
                m.body,
                MessageBody::RequestVoteResponse {
                    vote_granted: true,
                    ..
                }
            )
        });
        assert_eq!(granted, want, "candidate last (index, term) = {last:?}");
    }
}

// Reference: §5.2 "If many followers become candidates at the same time, votes could be split
// ... each candidate will time out and start a new election by incrementing its term".
#[test]
fn candidate_restarts_election_on_timeout() {
    let mut cfg = config(1, 3);
    cfg.pre_vote = false;
    let max = cfg.election_ticks_max;
    let mut n = RaftNode::new(cfg, Restored::default());
    n.campaign();
    assert_eq!(n.term(), Term(1));
    tick_n(&mut n, max);
    assert_eq!((n.role(), n.term()), (Role::Candidate, Term(2)));
}

// Reference: §5.2 "Leaders send periodic heartbeats (AppendEntries RPCs that carry no log
// entries) to all followers in order to maintain their authority."
#[test]
fn leader_sends_heartbeats() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let hb = c.node(1).config().heartbeat_ticks;
    tick_n(c.node(1), hb);
    let rd = drive(c.node(1));
    let mut to: Vec<u64> = rd
        .messages_before_persist
        .iter()
        .filter(
            |m| matches!(&m.body, MessageBody::AppendEntries { entries, .. } if entries.is_empty()),
        )
        .map(|m| m.to.0)
        .collect();
    to.sort();
    assert_eq!(to, vec![2, 3]);
}

// Reference: §5.2 "A server remains in follower state as long as it receives valid RPCs from a
// leader or candidate."
#[test]
fn heartbeats_keep_followers_from_timing_out() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let term = c.node(1).term();
    c.tick_all(100);
    assert_eq!(c.leaders(), vec![id(1)]);
    assert_eq!(c.node(2).term(), term);
}

// ---------------------------------------------------------------------------------------------
// §5.3 Log replication, §5.4 Safety
// ---------------------------------------------------------------------------------------------

// Reference: §5.3 "Once a leader has been elected ... it appends the command to its log as a
// new entry, then issues AppendEntries RPCs ... When the entry has been safely replicated ...
// the leader applies the entry to its state machine" and followers apply committed entries.
#[test]
fn leader_replicates_and_commits() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let (index, term) = c.propose(1, "x=1");
    c.settle();
    assert_eq!(c.node(1).commit_index(), index);
    c.tick_all(2); // a heartbeat carries the new commit_index to followers
    for n in 1..=3 {
        assert_eq!(c.applied_data(n), vec![Bytes::from("x=1")], "node {n}");
        let e = c.node(n).entries(index, index);
        assert_eq!(e[0].term, term);
    }
}

// Reference: §5.4.2 / §8 "a leader ... commit[s] a blank no-op entry into the log at the start
// of its term".
#[test]
fn new_leader_appends_noop() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let last = c.node(1).last_index();
    let e = c.node(1).entries(last, last);
    assert_eq!(e[0].kind, EntryKind::Noop);
    assert_eq!(e[0].term, c.node(1).term());
    assert_eq!(c.node(1).commit_index(), last, "the no-op commits");
}

// Reference: thesis §10.2.1 the leader may send entries before its own fsync, but counts
// itself toward the commit quorum only for what it has persisted. A lone voter therefore
// commits only after `persisted`.
#[test]
fn single_node_commits_only_after_persistence() {
    let mut n = RaftNode::new(config(1, 1), Restored::default());
    n.campaign();
    assert_eq!(n.role(), Role::Leader);
    let rd = n.ready();
    let noop = rd
        .entries
        .last()
        .cloned()
        .expect("the no-op is to be persisted");
    assert_eq!(n.commit_index(), Index(0), "nothing is durable yet");
    n.persisted(noop.index, noop.term);
    assert_eq!(n.commit_index(), noop.index);
    let (idx, term) = n.propose(Bytes::from("a")).expect("leader");
    let rd = n.ready();
    assert!(rd.committed_entries.iter().all(|e| e.index < idx));
    n.persisted(idx, term);
    let rd = n.ready();
    assert_eq!(rd.committed_entries.last().map(|e| e.index), Some(idx));
}

// Reference: thesis §10.2.1: with 3 nodes, one follower's ack and the leader's own persisted
// entry make a quorum; the leader's entry sent but not yet persisted does not count.
#[test]
fn leader_counts_itself_only_for_persisted_entries() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolate(3);
    let (idx, term) = c.propose(1, "a");
    // Deliver the AppendEntries to node 2 before the leader reports its own fsync.
    let rd = c.node(1).ready();
    assert!(!rd.entries.is_empty());
    for m in rd.messages_before_persist {
        if m.to == id(2) {
            c.node(2).step(m);
        }
    }
    let ack = msgs(&drive(c.node(2)));
    for m in ack {
        c.node(1).step(m);
    }
    assert!(
        c.node(1).commit_index() < idx,
        "only follower 2 has it durable: not a quorum of 3"
    );
    c.node(1).persisted(idx, term);
    assert_eq!(
        c.node(1).commit_index(),
        idx,
        "leader + follower 2 are a quorum"
    );
}

// ---------------------------------------------------------------------------------------------
// Thesis §9.6 Pre-vote, §6.2 / §4.2.3 check-quorum
// ---------------------------------------------------------------------------------------------

// Reference: thesis §9.6 "a candidate would first ask other servers whether its log was
// up-to-date enough to get their vote ... the Pre-Vote ... doesn't increment its term".
#[test]
fn pre_vote_does_not_bump_term() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let term = c.node(1).term();
    c.isolate(3);
    let max = c.node(3).config().election_ticks_max;
    c.tick_all(max * 5);
    assert_eq!(
        c.node(3).term(),
        term,
        "an isolated node's pre-votes never win a term"
    );
    assert_eq!(c.node(3).role(), Role::PreCandidate);
}

// Reference: thesis §9.6 "when it rejoins the cluster, it still won't be able to increment its
// term, since the other servers will have been receiving regular heartbeats from the leader":
// a rejoining partitioned node does not depose a healthy leader.
#[test]
fn rejoining_node_does_not_disrupt_leader() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let term = c.node(1).term();
    c.isolate(3);
    c.tick_all(60);
    c.heal();
    c.tick_all(60);
    assert_eq!(c.leaders(), vec![id(1)]);
    assert_eq!(c.node(1).term(), term);
    assert_eq!(c.node(3).leader(), Some(id(1)));
}

// ---------------------------------------------------------------------------------------------
// Thesis §3.10 leadership transfer
// ---------------------------------------------------------------------------------------------

// Reference: thesis §3.10 "the prior leader sends a TimeoutNow request to the target server
// ... the target server ... start[s] a new election" and proposals are held meanwhile.
#[test]
fn leadership_transfer_sends_timeout_now_and_target_wins() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.node(1).transfer_leadership(id(2));
    assert_eq!(
        c.node(1).propose(Bytes::from("x")),
        Err(ProposeError::Transferring)
    );
    c.settle();
    assert!(
        c.delivered
            .iter()
            .any(|m| m.body == MessageBody::TimeoutNow && m.to == id(2))
    );
    assert_eq!(c.leaders(), vec![id(2)]);
    assert_eq!(c.node(1).leader(), Some(id(2)));
}

fn ae_response(success: bool, last: u64, hint: (u64, u64), read_seq: u64) -> MessageBody {
    MessageBody::AppendEntriesResponse {
        success,
        last_index: Index(last),
        conflict_index: Index(hint.0),
        conflict_term: Term(hint.1),
        read_seq,
    }
}

fn no_pre_vote(me: u64, n: u64) -> Config {
    Config {
        pre_vote: false,
        ..config(me, n)
    }
}

/// Node 1 elected leader of a 3-node cluster by hand (votes stepped in directly), with its
/// no-op handed out and persisted but not yet sent anywhere.
fn lone_leader(log_terms: &[u64], term: u64) -> RaftNode {
    let mut n = restored_node(no_pre_vote(1, 3), term, log_terms);
    n.campaign();
    let yes = MessageBody::RequestVoteResponse {
        pre_vote: false,
        vote_granted: true,
    };
    n.step(msg(2, 1, term + 1, yes));
    assert_eq!(n.role(), Role::Leader);
    drive(&mut n);
    n
}

fn appends_to(rd: &Ready, to: u64) -> Vec<Vec<Entry>> {
    msgs(rd)
        .into_iter()
        .filter(|m| m.to == id(to))
        .filter_map(|m| match m.body {
            MessageBody::AppendEntries { entries, .. } => Some(entries),
            _ => None,
        })
        .collect()
}

// Reference: §5.3 "If a follower's log is inconsistent with the leader's, the AppendEntries
// consistency check will fail" — and the rejection carries the fast-backtracking hint.
#[test]
fn follower_rejects_on_log_mismatch_with_hint() {
    let mut n = restored_node(config(1, 3), 3, &[1, 2, 2, 2]);
    n.step(msg(2, 1, 3, append((4, 3), vec![entry(5, 3)], 5)));
    assert_eq!(n.last_index(), Index(4));
    let out = msgs(&drive(&mut n));
    assert_eq!(out[0].body, ae_response(false, 4, (2, 2), 0));
    n.step(msg(2, 1, 3, append((9, 3), vec![], 5)));
    let out = msgs(&drive(&mut n));
    assert_eq!(out[0].body, ae_response(false, 9, (5, 0), 0), "short log");
}

// Reference: §5.3 "If an existing entry conflicts with a new one (same index but different
// terms), delete the existing entry and all that follow it"; "Append any new entries not
// already in the log".
#[test]
fn follower_truncates_conflicting_entries() {
    let mut n = restored_node(config(1, 3), 3, &[1, 1, 2, 2]);
    n.step(msg(2, 1, 3, append((2, 1), vec![entry(3, 3)], 0)));
    assert_eq!(n.last_index(), Index(3));
    assert_eq!(n.entries(Index(3), Index(3))[0].term, Term(3));
    let rd = drive(&mut n);
    assert_eq!(rd.entries.first().map(|e| e.index), Some(Index(3)));
    assert_eq!(msgs(&rd)[0].body, ae_response(true, 3, (0, 0), 0));
    // Entries already present are not truncated by a stale, shorter AppendEntries (§5.3).
    n.step(msg(2, 1, 3, append((1, 1), vec![entry(2, 1)], 0)));
    assert_eq!(n.last_index(), Index(3));
}

// Reference: §5.3 "If leaderCommit > commitIndex, set commitIndex = min(leaderCommit, index of
// last new entry)".
#[test]
fn follower_commit_is_min_of_leader_commit_and_last_new_entry() {
    let mut n = restored_node(config(1, 3), 2, &[1, 1, 1, 1]);
    n.step(msg(2, 1, 2, append((1, 1), vec![entry(2, 1)], 4)));
    assert_eq!(
        n.commit_index(),
        Index(2),
        "entries 3 and 4 are not known to match"
    );
    n.step(msg(2, 1, 2, append((4, 1), vec![], 3)));
    assert_eq!(n.commit_index(), Index(3));
    let rd = drive(&mut n);
    let applied: Vec<u64> = rd.committed_entries.iter().map(|e| e.index.0).collect();
    assert_eq!(
        applied,
        vec![1, 2, 3],
        "each committed entry handed out once, in order"
    );
    assert!(drive(&mut n).committed_entries.is_empty());
}

// Reference: §5.4.2 (figure 8) "Raft never commits log entries from previous terms by counting
// replicas. Only log entries from the leader's current term are committed by counting".
#[test]
fn leader_commits_only_current_term_entries_by_counting() {
    let mut n = lone_leader(&[1, 2], 2);
    assert_eq!(n.term(), Term(3));
    n.step(msg(2, 1, 3, ae_response(true, 2, (0, 0), 0)));
    n.step(msg(3, 1, 3, ae_response(true, 2, (0, 0), 0)));
    assert_eq!(
        n.commit_index(),
        Index(0),
        "entry 2 is of term 2: not by counting"
    );
    n.step(msg(2, 1, 3, ae_response(true, 3, (0, 0), 0)));
    assert_eq!(
        n.commit_index(),
        Index(3),
        "the no-op of term 3 commits, and 2 with it"
    );
}

// Reference: §5.3 the optimisation "the follower can include the term of the conflicting entry
// and the first index it stores for that term ... one AppendEntries RPC will be required for
// each term with conflicting entries, rather than one RPC per entry".
#[test]
fn fast_backtracking_reaches_match_in_few_round_trips() {
    let mut leader_log = vec![1; 3];
    leader_log.extend([4; 50]);
    let mut stale_log = vec![1; 3];
    stale_log.extend([2; 60]);
    stale_log.extend([3; 40]);
    let nodes = vec![
        restored_node(no_pre_vote(1, 3), 4, &leader_log),
        restored_node(no_pre_vote(2, 3), 4, &stale_log),
        restored_node(no_pre_vote(3, 3), 4, &leader_log),
    ];
    let mut c = Cluster::from_nodes(nodes);
    c.elect(1);
    let rejections = c
        .delivered
        .iter()
        .filter(|m| {
            m.from == id(2)
                && matches!(
                    m.body,
                    MessageBody::AppendEntriesResponse { success: false, .. }
                )
        })
        .count();
    assert!(
        rejections <= 2,
        "{rejections} round trips to find the match"
    );
    let last = c.node(1).last_index();
    assert_eq!(c.node(2).last_index(), last);
    assert_eq!(
        c.node(2).entries(Index(1), last),
        c.node(1).entries(Index(1), last)
    );
}

// Reference: thesis §10.2 batching: every entry proposed in one turn travels in a single
// AppendEntries per follower.
#[test]
fn proposals_of_one_turn_are_batched_into_one_append_per_peer() {
    let mut c = Cluster::new(3);
    c.elect(1);
    for i in 0..10 {
        c.propose(1, &format!("k{i}"));
    }
    let rd = drive(c.node(1));
    for peer in [2, 3] {
        let appends = appends_to(&rd, peer);
        assert_eq!(appends.len(), 1, "peer {peer}");
        assert_eq!(appends[0].len(), 10);
    }
    assert_eq!(rd.entries.len(), 10, "one persist for the whole batch");
}

// Reference: thesis §10.2.2 pipelining with flow control: at most inflight_msgs_max
// AppendEntries unacknowledged per peer; at most msg_bytes_max per message.
#[test]
fn inflight_window_and_message_size_are_bounded() {
    let mut c = Cluster::with(3, |cfg| {
        cfg.inflight_msgs_max = 2;
        cfg.msg_bytes_max = 100;
    });
    c.elect(1);
    let mut sent = Vec::new();
    for round in 0..3 {
        c.propose(1, &format!("r{round}"));
        sent.push(appends_to(&drive(c.node(1)), 2).len());
    }
    assert_eq!(sent, vec![1, 1, 0], "window of 2 messages is full");
    let last_acked = c.node(1).last_index().0 - 2;
    let term = c.node(1).term().0;
    let ack = ae_response(true, last_acked, (0, 0), 0);
    c.node(1).step(msg(2, 1, term, ack));
    assert_eq!(
        appends_to(&drive(c.node(1)), 2).len(),
        1,
        "an ack frees a slot"
    );

    let mut c = Cluster::with(3, |cfg| cfg.msg_bytes_max = 100);
    c.elect(1);
    for i in 0..3 {
        c.propose(1, &format!("{i}{}", "x".repeat(60)));
    }
    let appends = appends_to(&drive(c.node(1)), 2);
    assert!(
        appends.len() >= 2,
        "84-byte entries cannot share a 100-byte message"
    );
    assert!(appends.iter().all(|es| es.len() == 1));
}

// Reference: §5.3 with thesis §10.2.1: a follower acknowledges only what is durable when the
// answer leaves. If a newer leader truncates entries in the same turn, the older answer that
// acknowledged them is withdrawn.
#[test]
fn follower_withdraws_acks_for_entries_truncated_in_same_turn() {
    let mut n = RaftNode::new(config(1, 3), Restored::default());
    n.step(msg(
        2,
        1,
        2,
        append((0, 0), vec![entry(1, 2), entry(2, 2)], 0),
    ));
    n.step(msg(3, 1, 3, append((1, 2), vec![entry(2, 3)], 0)));
    let rd = drive(&mut n);
    let acks: Vec<(u64, MessageBody)> = rd
        .messages
        .iter()
        .map(|m| (m.to.0, m.body.clone()))
        .collect();
    assert_eq!(acks, vec![(3, ae_response(true, 2, (0, 0), 0))]);
    assert_eq!(rd.entries.last().map(|e| e.term), Some(Term(3)));
}

// Reference: thesis §9.6: pre-votes never change anybody's term; a pre-vote *rejection*
// carries the voter's real term, and a real higher term demotes the pre-candidate (§5.1).
#[test]
fn pre_vote_responses_and_terms() {
    let mut n = restored_node(config(1, 3), 1, &[1]);
    n.campaign();
    assert_eq!((n.role(), n.term()), (Role::PreCandidate, Term(1)));
    let rd = drive(&mut n);
    assert!(
        rd.hard_state.is_none(),
        "a pre-vote changes nothing durable"
    );
    assert!(
        rd.messages.iter().all(|m| m.term == Term(2)
            && matches!(m.body, MessageBody::RequestVote { pre_vote: true, .. }))
    );
    // A voter receiving the pre-vote grants it without adopting term 2.
    let mut voter = restored_node(config(2, 3), 1, &[1]);
    voter.step(rd.messages[0].clone());
    assert_eq!(voter.term(), Term(1));
    let answer = msgs(&drive(&mut voter)).remove(0);
    assert_eq!(answer.term, Term(2), "a grant carries the proposed term");
    n.step(answer);
    assert_eq!(
        (n.role(), n.term()),
        (Role::Candidate, Term(2)),
        "pre-vote won"
    );

    let mut n = restored_node(config(1, 3), 1, &[1]);
    n.campaign();
    let no = MessageBody::RequestVoteResponse {
        pre_vote: true,
        vote_granted: false,
    };
    n.step(msg(3, 1, 5, no));
    assert_eq!((n.role(), n.term()), (Role::Follower, Term(5)));
}

// Reference: thesis §6.2 "a leader steps down if an election timeout elapses without a
// successful round of heartbeats to a majority of its cluster" (check-quorum).
#[test]
fn check_quorum_leader_steps_down_when_isolated() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolate(1);
    let min = c.node(1).config().election_ticks_min;
    for _ in 0..2 * min {
        c.node(1).tick();
        c.settle();
    }
    assert_eq!(c.node(1).role(), Role::Follower);
    assert_eq!(c.node(1).leader(), None);

    // Without check-quorum an isolated leader stays leader.
    let mut c = Cluster::with(3, |cfg| cfg.check_quorum = false);
    c.elect(1);
    c.isolate(1);
    for _ in 0..2 * min {
        c.node(1).tick();
        c.settle();
    }
    assert_eq!(c.node(1).role(), Role::Leader);
}

// Reference: thesis §4.2.3 "if a server receives a RequestVote request within the minimum
// election timeout of hearing from a current leader, it does not update its term or grant its
// vote" — unless the election was started by a leadership transfer (thesis §3.10).
#[test]
fn follower_in_lease_ignores_vote_requests_except_for_transfer() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let term = c.node(1).term().0;
    let last = (c.node(3).last_index().0, term);
    c.node(2).step(msg(3, 2, term + 1, vote(false, last)));
    assert_eq!(c.node(2).term(), Term(term));
    assert!(
        msgs(&drive(c.node(2))).is_empty(),
        "ignored, not even rejected"
    );
    let transfer = MessageBody::RequestVote {
        pre_vote: false,
        last_log_index: Index(last.0),
        last_log_term: Term(last.1),
        leadership_transfer: true,
    };
    c.node(2).step(msg(3, 2, term + 1, transfer));
    assert_eq!(c.node(2).term(), Term(term + 1));
    let out = msgs(&drive(c.node(2)));
    assert!(matches!(
        out[0].body,
        MessageBody::RequestVoteResponse {
            vote_granted: true,
            ..
        }
    ));
}

// Reference: thesis §6.4 "the leader ... sends heartbeats to all followers ... Once it
// receives acknowledgments from a majority, the leader knows it was still the leader when it
// recorded the read index". The read waits for a round sent after it arrived.
#[test]
fn read_index_waits_for_quorum_confirmation() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let commit = c.node(1).commit_index();
    c.isolate(2);
    c.isolate(3);
    c.node(1).read_index(ReadId(7)).expect("leader takes reads");
    c.settle();
    assert!(
        c.reads.get(&id(1)).is_none_or(|r| r.is_empty()),
        "no quorum yet"
    );
    c.heal();
    c.tick_all(c.nodes[&id(1)].config().heartbeat_ticks);
    assert_eq!(c.reads[&id(1)], vec![(ReadId(7), commit)]);
}

// Reference: thesis §6.4 "If the leader has not yet marked an entry from its current term
// committed, it waits until it has done so." Heartbeats alone do not release the read.
#[test]
fn read_index_waits_for_commit_in_current_term() {
    let mut c = Cluster::new(3);
    c.drop_if = Some(Box::new(
        |m| matches!(&m.body, MessageBody::AppendEntries { entries, .. } if !entries.is_empty()),
    ));
    c.elect(1);
    assert_eq!(
        c.node(1).commit_index(),
        Index(0),
        "the no-op cannot reach anyone"
    );
    c.node(1)
        .read_index(ReadId(1))
        .expect("deferred, not refused");
    c.tick_all(6);
    assert!(c.reads.get(&id(1)).is_none_or(|r| r.is_empty()));
    c.drop_if = None;
    c.tick_all(12);
    let noop = Index(1);
    assert_eq!(c.node(1).commit_index(), noop);
    assert_eq!(c.reads[&id(1)], vec![(ReadId(1), noop)]);
}

// Reference: thesis §6.4 "followers could ... request the current readIndex from the leader";
// reads fail when leadership is lost before confirmation.
#[test]
fn follower_read_index_through_leader_and_failure_on_leader_loss() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.tick_all(2);
    c.node(2)
        .read_index(ReadId(9))
        .expect("follower knows the leader");
    c.settle();
    let commit = c.node(1).commit_index();
    c.tick_all(2);
    assert_eq!(c.reads[&id(2)], vec![(ReadId(9), commit)]);

    c.isolate(1);
    c.node(1).read_index(ReadId(10)).expect("accepted");
    let min = c.node(1).config().election_ticks_min;
    for _ in 0..2 * min {
        c.node(1).tick();
        c.settle();
    }
    assert_eq!(
        c.failed[&id(1)],
        vec![(ReadId(10), ReadFailure::LeadershipLost)]
    );
}

// Reference: thesis §6.4.1 leases: the leader may answer reads locally while a quorum has
// heard from it within the minimum election timeout (less a margin for clock drift).
#[test]
fn lease_held_only_while_quorum_heard_recently() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.tick_all(2);
    assert!(c.node(1).has_lease());
    assert!(!c.node(2).has_lease(), "followers never hold a lease");
    c.isolate(1);
    let min = c.node(1).config().election_ticks_min;
    for _ in 0..min - 2 {
        c.node(1).tick();
        c.settle();
    }
    assert!(!c.node(1).has_lease());
    assert_eq!(
        c.node(1).role(),
        Role::Leader,
        "lease expires before check-quorum"
    );
}

// Reference: thesis §3.10 "If the transfer does not complete within an election timeout, the
// prior leader aborts the transfer and resumes accepting client requests."
#[test]
fn leadership_transfer_aborts_after_election_timeout() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolate(2);
    c.node(1).transfer_leadership(id(2));
    assert_eq!(c.node(1).transferring_to(), Some(id(2)));
    c.tick_all(c.nodes[&id(1)].config().election_ticks_min);
    assert_eq!(c.node(1).transferring_to(), None);
    assert_eq!(c.leaders(), vec![id(1)]);
    assert!(c.node(1).propose(Bytes::from("after")).is_ok());
}

// Reference: §5.1 "Servers retry RPCs if they do not receive a response ... RPCs are
// idempotent": a duplicated AppendEntries changes nothing.
#[test]
fn duplicate_append_entries_are_idempotent() {
    let mut n = RaftNode::new(config(1, 3), Restored::default());
    let m = msg(2, 1, 1, append((0, 0), vec![entry(1, 1), entry(2, 1)], 1));
    n.step(m.clone());
    drive(&mut n);
    n.step(m);
    let rd = drive(&mut n);
    assert!(rd.entries.is_empty(), "nothing new to persist");
    assert_eq!(n.last_index(), Index(2));
    assert_eq!(msgs(&rd)[0].body, ae_response(true, 2, (0, 0), 0));
}

// Reference: §5.1 figure 2 "persistent state on all servers": a restarted node keeps its term,
// its vote and its log, and so cannot vote twice in a term.
#[test]
fn restarted_node_keeps_term_vote_and_log() {
    let restored = Restored {
        hard_state: HardState {
            current_term: Term(5),
            voted_for: Some(id(2)),
        },
        snapshot: None,
        entries: vec![entry(1, 1), entry(2, 5)],
    };
    let mut n = RaftNode::new(config(1, 3), restored);
    assert_eq!(
        (n.term(), n.last_index(), n.commit_index()),
        (Term(5), Index(2), Index(0))
    );
    n.step(msg(3, 1, 5, vote(false, (9, 5))));
    let out = msgs(&drive(&mut n));
    assert!(matches!(
        out[0].body,
        MessageBody::RequestVoteResponse {
            vote_granted: false,
            ..
        }
    ));
}

// Reference: a client talking to a follower is redirected (§8 "if the client contacts a
// follower, the follower rejects the request and supplies information about the most recent
// leader"); limits refuse work with a named error rather than queueing without bound.
#[test]
fn proposals_redirected_on_follower_and_bounded_on_leader() {
    let mut c = Cluster::with(3, |cfg| cfg.uncommitted_entries_max = 3);
    c.elect(1);
    assert_eq!(
        c.node(2).propose(Bytes::from("x")),
        Err(ProposeError::NotLeader {
            leader: Some(id(1))
        })
    );
    c.isolate(1);
    for i in 0..3 {
        c.propose(1, &format!("{i}"));
    }
    assert_eq!(c.node(1).propose(Bytes::from("x")), Err(ProposeError::Busy));
}

// Reference: a peer controls what it sends; unknown senders, impossible indexes and malformed
// batches are dropped or answered, never a panic, and never corrupt the log.
#[test]
fn malformed_and_unknown_messages_are_handled_safely() {
    let mut n = restored_node(config(1, 3), 2, &[1, 2]);
    n.step(msg(99, 1, 9, append((0, 0), vec![entry(1, 9)], 1)));
    assert_eq!(n.term(), Term(2), "unknown sender ignored");
    n.step(msg(2, 1, 2, append((u64::MAX, 2), vec![], u64::MAX)));
    let out = msgs(&drive(&mut n));
    assert_eq!(out[0].body, ae_response(false, u64::MAX, (3, 0), 0));
    n.step(msg(
        2,
        1,
        2,
        append((u64::MAX, 2), vec![entry(u64::MAX, 2)], 0),
    ));
    n.step(msg(
        2,
        1,
        2,
        append((2, 2), vec![entry(3, 2), entry(5, 2)], 0),
    ));
    n.step(msg(2, 1, 2, append((2, 2), vec![entry(3, 7)], 0)));
    n.step(msg(
        2,
        1,
        2,
        append((2, 2), vec![entry(3, 2), entry(4, 1)], 0),
    ));
    assert_eq!(
        n.last_index(),
        Index(2),
        "malformed batches are not appended"
    );
    assert_eq!(n.commit_index(), Index(0));
    let read = MessageBody::ReadIndexResponse {
        id: ReadId(1),
        index: Some(Index(7)),
    };
    n.step(msg(2, 1, 2, read));
    let rd = drive(&mut n);
    assert!(
        rd.read_states.is_empty(),
        "an answer to a read we never asked for"
    );

    let mut l = lone_leader(&[1], 1);
    let term = l.term().0;
    l.step(msg(2, 1, term, ae_response(true, u64::MAX, (0, 0), 0)));
    l.step(msg(
        2,
        1,
        term,
        ae_response(false, u64::MAX, (u64::MAX, 9), 0),
    ));
    l.step(msg(3, 1, term, ae_response(true, 1, (0, 0), u64::MAX)));
    assert_eq!(l.commit_index(), Index(0));
    assert_eq!(l.role(), Role::Leader);
}

// Reference: thesis §4.2.1 learners (non-voting members) receive the log but never vote,
// campaign or count toward a quorum.
#[test]
fn learner_replicates_but_never_votes_or_campaigns() {
    let voters = ids(3);
    let nodes = (1..=4)
        .map(|i| {
            let mut cfg = Config::new(id(i), voters.clone(), 50 + i);
            cfg.learners = vec![id(4)];
            RaftNode::new(cfg, Restored::default())
        })
        .collect();
    let mut c = Cluster::from_nodes(nodes);
    assert_eq!(c.node(4).role(), Role::Learner);
    c.elect(1);
    let (idx, _) = c.propose(1, "x");
    c.tick_all(2);
    assert_eq!(c.node(4).commit_index(), idx);
    assert_eq!(c.applied_data(4), vec![Bytes::from("x")]);
    // The learner's ack does not make a quorum with the leader alone.
    c.isolate(2);
    c.isolate(3);
    let before = c.node(1).commit_index();
    let (idx, _) = c.propose(1, "y");
    c.tick_all(2);
    assert_eq!(c.node(4).last_index(), idx, "the learner has it");
    assert_eq!(c.node(1).commit_index(), before, "but it does not count");
    // Isolated from everyone, the learner never campaigns.
    c.heal();
    c.isolate(4);
    c.tick_all(60);
    assert_eq!(c.node(4).role(), Role::Learner);
    assert_eq!(c.node(4).term(), c.node(1).term());
}

// Reference: thesis §6.4 the confirming heartbeat round must start *after* the read arrived:
// acknowledgements of an earlier round prove nothing about leadership at the read's time.
#[test]
fn read_index_ignores_rounds_sent_before_the_read() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let hb = c.node(1).config().heartbeat_ticks;
    tick_n(c.node(1), hb);
    let early_round = msgs(&drive(c.node(1)));
    c.node(1).read_index(ReadId(3)).expect("leader");
    c.deliver(early_round);
    let acks = [2, 3]
        .iter()
        .flat_map(|&n| msgs(&drive(c.node(n))))
        .collect();
    c.deliver(acks);
    let rd = drive(c.node(1));
    assert!(
        rd.read_states.is_empty(),
        "confirmed by a round older than the read"
    );
    c.deliver(msgs(&rd));
    c.settle();
    assert_eq!(c.reads[&id(1)].len(), 1);
}
