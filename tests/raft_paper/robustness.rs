//! Input a peer or client controls: redirects and limits, malformed messages, learners.

use super::harness::*;

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

// Reference: thesis §4.1: "a server accepts AppendEntries requests from a leader that is not
// part of the server's latest configuration. Otherwise, a new server could never be added to
// the cluster" (nor could a node that missed its own re-addition ever catch up).
#[test]
fn a_leader_outside_our_configuration_is_followed() {
    let mut n = restored_node(config(1, 3), 2, &[1, 2]);
    n.step(msg(9, 1, 3, append((2, 2), vec![entry(3, 3)], 3)));
    assert_eq!((n.term(), n.leader()), (Term(3), Some(id(9))));
    let out = msgs(&drive(&mut n));
    assert_eq!(out[0].body, ae_response(true, 3, (0, 0), 0));
    assert_eq!(n.commit_index(), Index(3));
}

// Reference: a peer controls what it sends; unknown senders, impossible indexes and malformed
// batches are dropped or answered, never a panic, and never corrupt the log.
#[test]
fn malformed_and_unknown_messages_are_handled_safely() {
    let mut n = restored_node(config(1, 3), 2, &[1, 2]);
    n.step(msg(0, 1, 9, append((0, 0), vec![entry(1, 9)], 1)));
    assert_eq!(n.term(), Term(2), "the reserved id 0 is ignored");
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

// Reference: thesis §4.2.1 learners (non-voting members) receive the log but never campaign
// or count toward a quorum (an election or a commit).
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

// Reference: every queue has a named limit (HELPERS.md): pending reads are bounded by
// pending_reads_max, and a read without a known leader is refused at once.
#[test]
fn reads_are_bounded_and_need_a_leader() {
    let mut lonely = RaftNode::new(config(1, 3), Restored::default());
    assert_eq!(
        lonely.read_index(ReadId(1)),
        Err(rocinante::raft::ReadError::NoLeader)
    );
    let mut c = Cluster::with(3, |cfg| cfg.pending_reads_max = 2);
    c.elect(1);
    c.isolate(1);
    assert!(c.node(1).read_index(ReadId(1)).is_ok());
    assert!(c.node(1).read_index(ReadId(2)).is_ok());
    assert_eq!(
        c.node(1).read_index(ReadId(3)),
        Err(rocinante::raft::ReadError::Busy)
    );
}

// Reference: §5.2 "election timeouts are chosen randomly from a fixed interval" which must be
// non-empty and above the heartbeat interval; a bad configuration is an error, not a panic
// deep inside the core.
#[test]
fn config_validation_rejects_unworkable_settings() {
    use rocinante::raft::ConfigError;
    assert_eq!(config(1, 3).validate(), Ok(()));
    let bad = |f: fn(&mut Config)| {
        let mut cfg = config(1, 3);
        f(&mut cfg);
        cfg.validate()
    };
    assert_eq!(
        bad(|c| c.election_ticks_max = c.election_ticks_min),
        Err(ConfigError::ElectionTicks)
    );
    assert_eq!(
        bad(|c| c.heartbeat_ticks = c.election_ticks_min),
        Err(ConfigError::HeartbeatTicks)
    );
    assert_eq!(bad(|c| c.id = NodeId(0)), Err(ConfigError::ZeroId));
    assert_eq!(
        bad(|c| c.learners = vec![NodeId(2)]),
        Err(ConfigError::VoterAndLearner)
    );
    assert_eq!(bad(|c| c.inflight_msgs_max = 0), Err(ConfigError::Limits));
}
