//! Linearizable reads by ReadIndex (thesis §6.4), leases (thesis §6.4.1) and leadership
//! transfer (thesis §3.10).

use super::harness::*;

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

// Reference: thesis §6.4 follower reads: a forwarded read whose request or answer was lost
// fails after an election timeout instead of waiting forever, even while the leader lives.
#[test]
fn forwarded_read_fails_when_unanswered() {
    let mut n = RaftNode::new(config(2, 3), Restored::default());
    let heartbeat = msg(1, 2, 1, append((0, 0), vec![], 0));
    n.step(heartbeat.clone());
    n.read_index(ReadId(5)).expect("leader known");
    let rd = drive(&mut n);
    assert_eq!(
        rd.messages[rd.messages.len() - 1].body,
        MessageBody::ReadIndexRequest { id: ReadId(5) }
    );
    let max = n.config().election_ticks_max;
    let mut failed = Vec::new();
    for _ in 0..max {
        n.tick();
        n.step(heartbeat.clone());
        failed.extend(drive(&mut n).failed_reads);
    }
    assert_eq!(n.leader(), Some(id(1)), "the leader was never lost");
    assert_eq!(failed, vec![(ReadId(5), ReadFailure::LeadershipLost)]);
}

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
