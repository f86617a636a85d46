//! The node's published view of itself (`handle::Status`), rebuilt in place by the loop at the
//! end of every turn and read by the API layer through a watch channel without touching the
//! loop.

use crate::raft::{Index, NodeId, Role, Term};

use super::NodeOptions;
use super::handle::{MemberStatus, Status};

/// The status before the loop's first turn: a follower that knows no leader.
pub(super) fn initial(opts: &NodeOptions) -> Status {
    let members = opts
        .peers
        .iter()
        .map(|(id, a)| {
            let (address, port) = split_host_port(&a.grpc);
            MemberStatus {
                id: *id,
                address,
                port,
                rest: a.rest.clone(),
                voter: opts.voters.contains(id),
                match_index: None,
            }
        })
        .collect();
    Status {
        id: opts.id,
        name: opts.name.clone(),
        role: Role::Follower,
        term: Term(0),
        leader: None,
        commit_index: Index(0),
        applied_index: Index(0),
        last_log_index: Index(0),
        snapshot_index: Index(0),
        members,
        ready: false,
    }
}

/// "host:port" -> (host, port); a malformed address shows as (whole string, 0).
fn split_host_port(addr: &str) -> (String, u16) {
    match addr.rsplit_once(':') {
        Some((host, port)) => match port.parse() {
            Ok(p) => (host.trim_matches(['[', ']']).to_string(), p),
            Err(_) => (addr.to_string(), 0),
        },
        None => (addr.to_string(), 0),
    }
}

/// The fields the loop refreshes each turn.
pub(super) struct Snapshot<'a> {
    pub role: Role,
    pub term: Term,
    pub leader: Option<(NodeId, &'a str)>,
    pub commit_index: Index,
    pub applied_index: Index,
    pub last_log_index: Index,
    pub snapshot_index: Index,
    pub ready: bool,
    /// The leader's match_index per peer (empty on a follower).
    pub progress: &'a [(NodeId, Index)],
}

/// Update `status` in place; returns whether anything changed (so watchers wake only then).
pub(super) fn refresh(status: &mut Status, s: &Snapshot<'_>) -> bool {
    let leader_same = match (&status.leader, s.leader) {
        (None, None) => true,
        (Some((a, _)), Some((b, _))) => *a == b,
        _ => false,
    };
    let mut changed = !leader_same
        || status.role != s.role
        || status.term != s.term
        || status.commit_index != s.commit_index
        || status.applied_index != s.applied_index
        || status.last_log_index != s.last_log_index
        || status.snapshot_index != s.snapshot_index
        || status.ready != s.ready;
    if !leader_same {
        status.leader = s.leader.map(|(id, rest)| (id, rest.to_string()));
    }
    status.role = s.role;
    status.term = s.term;
    status.commit_index = s.commit_index;
    status.applied_index = s.applied_index;
    status.last_log_index = s.last_log_index;
    status.snapshot_index = s.snapshot_index;
    status.ready = s.ready;
    for m in status.members.iter_mut() {
        let match_index = if s.role == Role::Leader {
            if m.id == status.id {
                Some(s.last_log_index)
            } else {
                s.progress
                    .iter()
                    .find(|(id, _)| *id == m.id)
                    .map(|(_, i)| *i)
            }
        } else {
            None
        };
        if m.match_index != match_index {
            m.match_index = match_index;
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn host_port_split() {
        assert_eq!(
            split_host_port("127.0.0.1:35001"),
            ("127.0.0.1".into(), 35001)
        );
        assert_eq!(split_host_port("[::1]:80"), ("::1".into(), 80));
        assert_eq!(split_host_port("nohost"), ("nohost".into(), 0));
        assert_eq!(split_host_port("h:notaport"), ("h:notaport".into(), 0));
    }
}
