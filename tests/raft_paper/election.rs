//! Terms (§5.1), leader election (§5.2, §5.4.1), pre-vote (thesis §9.6), check-quorum
//! (thesis §6.2, §4.2.3) and what survives a restart (figure 2).

use super::harness::*;

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
    // The voter is past its startup lease (a restarted node refuses pre-votes at first) and
    // has not timed out itself: its timeout is drawn from a wide range.
    let mut voter_cfg = config(2, 3);
    voter_cfg.election_ticks_max = 1000;
    let mut voter = restored_node(voter_cfg, 1, &[1]);
    let min = voter.config().election_ticks_min;
    tick_n(&mut voter, min);
    assert_eq!(voter.role(), Role::Follower);
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

// Reference: thesis §6.4.1 / §4.2.3: a leader's lease counts on followers that heard from it
// recently; a follower that restarts cannot remember whether it did, so it assumes it did and
// refuses votes for its first election_ticks_min ticks.
#[test]
fn restarted_node_refuses_votes_at_first() {
    let restored = Restored {
        hard_state: HardState {
            current_term: Term(3),
            voted_for: None,
        },
        snapshot: None,
        entries: vec![entry(1, 3)],
    };
    let mut n = RaftNode::new(config(1, 3), restored);
    n.step(msg(2, 1, 4, vote(false, (1, 3))));
    assert_eq!(n.term(), Term(3), "ignored during the startup lease");
    assert!(msgs(&drive(&mut n)).is_empty());
    let min = n.config().election_ticks_min;
    for _ in 0..min {
        n.tick();
        n.step(msg(2, 1, 3, append((1, 3), vec![], 1)));
    }
    // Past the startup lease, but hearing from a leader: still in lease.
    n.step(msg(2, 1, 4, vote(false, (1, 3))));
    assert_eq!(n.term(), Term(3));
    let mut fresh = RaftNode::new(config(1, 3), Restored::default());
    fresh.step(msg(2, 1, 1, vote(false, (0, 0))));
    assert_eq!(
        fresh.hard_state().voted_for,
        Some(id(2)),
        "a brand-new node votes at once"
    );
}

// Reference: thesis §9.6 a server grants a pre-vote only if "it hasn't received a heartbeat
// from a valid leader for at least a baseline election timeout" (independent of check-quorum).
#[test]
fn pre_vote_refused_while_hearing_from_leader() {
    let mut cfg = config(1, 3);
    cfg.check_quorum = false;
    cfg.election_ticks_max = 1000;
    let min = cfg.election_ticks_min;
    let mut n = RaftNode::new(cfg, Restored::default());
    n.step(msg(2, 1, 1, append((0, 0), vec![], 0)));
    let granted = |n: &mut RaftNode| {
        n.step(msg(3, 1, 2, vote(true, (5, 1))));
        msgs(&drive(n)).iter().any(|m| {
            matches!(
                m.body,
                MessageBody::RequestVoteResponse {
                    vote_granted: true,
                    ..
                }
            )
        })
    };
    assert!(!granted(&mut n), "the leader was heard from just now");
    tick_n(&mut n, min);
    assert_eq!(n.role(), Role::Follower);
    assert!(granted(&mut n), "silent for a baseline election timeout");
    assert_eq!(n.term(), Term(1), "granting a pre-vote changes no term");
}

// Reference: thesis §3.10 TimeoutNow comes from the leader; from anyone else it is ignored, so
// a stray or forged message cannot make a follower depose a healthy leader.
#[test]
fn timeout_now_only_from_the_leader() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let term = c.node(1).term();
    c.node(2).step(Message {
        from: id(3),
        to: id(2),
        term,
        body: MessageBody::TimeoutNow,
    });
    assert_eq!(c.node(2).role(), Role::Follower);
    c.node(2).step(Message {
        from: id(1),
        to: id(2),
        term,
        body: MessageBody::TimeoutNow,
    });
    assert_eq!(c.node(2).role(), Role::Candidate);
    assert_eq!(c.node(2).term(), term.next());
}
