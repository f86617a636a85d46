//! Log replication (§5.3), commitment (§5.4.2, figure 8), the leader's early send (thesis
//! §10.2.1), batching and flow control (thesis §10.2).

use super::harness::*;

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
