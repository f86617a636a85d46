//! The paper tests' harness: builders for nodes and messages, and `Cluster`, a few nodes
//! wired by handing each `Ready`'s messages to their recipients synchronously (persisting is
//! instantaneous: `persisted` is reported right away). The seeded simulator with faults is
//! `tests/simulation.rs`.

pub use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub use bytes::Bytes;
pub use rocinante::raft::{
    Config, Entry, EntryKind, HardState, Index, Message, MessageBody, NodeId, ProposeError,
    RaftNode, ReadFailure, ReadId, Ready, Restored, Role, Term,
};

pub fn id(n: u64) -> NodeId {
    NodeId(n)
}

pub fn ids(n: u64) -> Vec<NodeId> {
    (1..=n).map(NodeId).collect()
}

pub fn config(me: u64, n: u64) -> Config {
    Config::new(id(me), ids(n), 1000 + me)
}

pub fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term: Term(term),
        index: Index(index),
        kind: EntryKind::Normal,
        data: Bytes::from(format!("{index}/{term}")),
    }
}

/// A node restored with `log` (terms of entries 1..) at `term`. Check-quorum is off: with it,
/// a restarted node refuses votes for its first `election_ticks_min` ticks (tested on its own
/// in `restarted_node_refuses_votes_at_first`), which would hide the rule under test.
pub fn restored_node(mut cfg: Config, term: u64, log_terms: &[u64]) -> RaftNode {
    cfg.check_quorum = false;
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
pub fn drive(node: &mut RaftNode) -> Ready {
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
pub fn msgs(rd: &Ready) -> Vec<Message> {
    rd.messages_before_persist
        .iter()
        .chain(rd.messages.iter())
        .cloned()
        .collect()
}

pub fn msg(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
    Message {
        from: id(from),
        to: id(to),
        term: Term(term),
        body,
    }
}

pub fn append(prev: (u64, u64), entries: Vec<Entry>, commit: u64) -> MessageBody {
    MessageBody::AppendEntries {
        prev_log_index: Index(prev.0),
        prev_log_term: Term(prev.1),
        entries,
        leader_commit: Index(commit),
        read_seq: 0,
    }
}

pub fn vote(pre_vote: bool, last: (u64, u64)) -> MessageBody {
    MessageBody::RequestVote {
        pre_vote,
        last_log_index: Index(last.0),
        last_log_term: Term(last.1),
        leadership_transfer: false,
    }
}

pub fn tick_n(node: &mut RaftNode, n: u64) {
    for _ in 0..n {
        node.tick();
    }
}

/// Decides which messages the network loses.
pub type DropRule = Box<dyn Fn(&Message) -> bool>;

/// Nodes wired together synchronously, with optional cut links and a record of what each
/// node applied.
pub struct Cluster {
    pub nodes: BTreeMap<NodeId, RaftNode>,
    /// Directed links that drop every message.
    pub cut: BTreeSet<(NodeId, NodeId)>,
    pub applied: BTreeMap<NodeId, Vec<Entry>>,
    pub reads: BTreeMap<NodeId, Vec<(ReadId, Index)>>,
    pub failed: BTreeMap<NodeId, Vec<(ReadId, ReadFailure)>>,
    /// Every message delivered, for counting.
    pub delivered: Vec<Message>,
    /// Messages for which this returns true are dropped (on top of `cut`).
    pub drop_if: Option<DropRule>,
}

impl Cluster {
    pub fn new(n: u64) -> Cluster {
        Cluster::with(n, |_| {})
    }

    pub fn with(n: u64, tweak: impl Fn(&mut Config)) -> Cluster {
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
    pub fn from_nodes(nodes: Vec<RaftNode>) -> Cluster {
        let mut c = Cluster::new(0);
        c.nodes = nodes.into_iter().map(|n| (n.id(), n)).collect();
        c
    }

    /// Hand `msgs` to their recipients (respecting cuts), without draining anyone's Ready.
    pub fn deliver(&mut self, msgs: Vec<Message>) {
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

    pub fn node(&mut self, n: u64) -> &mut RaftNode {
        self.nodes.get_mut(&id(n)).expect("node exists")
    }

    pub fn isolate(&mut self, n: u64) {
        for &other in self.nodes.keys() {
            if other != id(n) {
                self.cut.insert((id(n), other));
                self.cut.insert((other, id(n)));
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Drain every node's Ready and deliver messages until the cluster is quiet.
    pub fn settle(&mut self) {
        let mut queue: VecDeque<Message> = VecDeque::new();
        for _round in 0..10_000 {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for nid in ids {
                let node = self.nodes.get_mut(&nid).expect("node exists");
                if !node.has_ready() {
                    continue;
                }
                let rd = drive(node);
                assert!(!rd.is_empty(), "has_ready() promised a non-empty Ready");
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

    pub fn tick_all(&mut self, n: u64) {
        for _ in 0..n {
            for node in self.nodes.values_mut() {
                node.tick();
            }
            self.settle();
        }
    }

    /// Elect node `n` by making it campaign.
    pub fn elect(&mut self, n: u64) {
        self.node(n).campaign();
        self.settle();
        assert_eq!(
            self.node(n).role(),
            Role::Leader,
            "node {n} should have won"
        );
    }

    pub fn leaders(&self) -> Vec<NodeId> {
        let leaders = self.nodes.values().filter(|n| n.role() == Role::Leader);
        leaders.map(|n| n.id()).collect()
    }

    pub fn propose(&mut self, n: u64, data: &str) -> (Index, Term) {
        let r = self.node(n).propose(Bytes::from(data.to_string()));
        r.expect("leader accepts the proposal")
    }

    pub fn applied_data(&self, n: u64) -> Vec<Bytes> {
        let applied = self.applied.get(&id(n)).cloned().unwrap_or_default();
        let normal = applied.into_iter().filter(|e| e.kind == EntryKind::Normal);
        normal.map(|e| e.data).collect()
    }
}

pub fn ae_response(success: bool, last: u64, hint: (u64, u64), read_seq: u64) -> MessageBody {
    MessageBody::AppendEntriesResponse {
        success,
        last_index: Index(last),
        conflict_index: Index(hint.0),
        conflict_term: Term(hint.1),
        read_seq,
    }
}

pub fn no_pre_vote(me: u64, n: u64) -> Config {
    Config {
        pre_vote: false,
        ..config(me, n)
    }
}

/// Node 1 elected leader of a 3-node cluster by hand (votes stepped in directly), with its
/// no-op handed out and persisted but not yet sent anywhere.
pub fn lone_leader(log_terms: &[u64], term: u64) -> RaftNode {
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

pub fn appends_to(rd: &Ready, to: u64) -> Vec<Vec<Entry>> {
    msgs(rd)
        .into_iter()
        .filter(|m| m.to == id(to))
        .filter_map(|m| match m.body {
            MessageBody::AppendEntries { entries, .. } => Some(entries),
            _ => None,
        })
        .collect()
}
