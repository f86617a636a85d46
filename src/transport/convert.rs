//! The ONE place where wire types (protobuf, `transport::pb`) become core types
//! (`raft::Message`) and back. The core never sees protobuf; nothing else converts.
//!
//! Invariants: encoding is total (every core message has a wire form); decoding never panics
//! on bad input: a missing `oneof`, an unknown `EntryKind` or an entry with kind `UNSPECIFIED`
//! is a `DecodeError`, and the caller drops that one message and counts it. Terms, indexes and
//! node ids are carried as plain `uint64`; their meaning is restored by the newtypes here.

use crate::raft::{Entry, EntryKind, Index, Message, MessageBody, NodeId, ReadId, Term};

use super::pb;
use super::pb::raft_message::Body;

/// Why a wire message could not become a core message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message has no body")]
    MissingBody,
    #[error("entry kind {0} is not valid")]
    BadEntryKind(i32),
}

/// Core -> wire, for one message (the batch header carries `from`/`to`).
pub fn encode_message(msg: &Message) -> pb::RaftMessage {
    pb::RaftMessage {
        term: msg.term.0,
        body: Some(encode_body(&msg.body)),
    }
}

fn encode_body(body: &MessageBody) -> Body {
    match body {
        MessageBody::RequestVote {
            pre_vote,
            last_log_index,
            last_log_term,
            leadership_transfer,
        } => Body::RequestVote(pb::RequestVote {
            pre_vote: *pre_vote,
            last_log_index: last_log_index.0,
            last_log_term: last_log_term.0,
            leadership_transfer: *leadership_transfer,
        }),
        MessageBody::RequestVoteResponse {
            pre_vote,
            vote_granted,
        } => Body::RequestVoteResponse(pb::RequestVoteResponse {
            pre_vote: *pre_vote,
            vote_granted: *vote_granted,
        }),
        MessageBody::AppendEntries { .. } | MessageBody::InstallSnapshot { .. } => {
            encode_bulk(body)
        }
        MessageBody::AppendEntriesResponse {
            success,
            last_index,
            conflict_index,
            conflict_term,
            read_seq,
        } => Body::AppendEntriesResponse(pb::AppendEntriesResponse {
            success: *success,
            last_index: last_index.0,
            conflict_index: conflict_index.0,
            conflict_term: conflict_term.0,
            read_seq: *read_seq,
        }),
        MessageBody::TimeoutNow => Body::TimeoutNow(pb::TimeoutNow {}),
        MessageBody::ReadIndexRequest { id } => {
            Body::ReadIndexRequest(pb::ReadIndexRequest { id: id.0 })
        }
        MessageBody::ReadIndexResponse { id, index } => {
            Body::ReadIndexResponse(pb::ReadIndexResponse {
                id: id.0,
                index: index.map(|i| i.0),
            })
        }
        MessageBody::InstallSnapshotResponse {
            last_included_index,
            next_offset,
            done,
        } => Body::InstallSnapshotResponse(pb::InstallSnapshotResponse {
            last_included_index: last_included_index.0,
            next_offset: *next_offset,
            done: *done,
        }),
    }
}

/// The two messages that carry payload bytes (entries, snapshot chunks). Payloads are `Bytes`
/// clones: reference counts, not copies.
fn encode_bulk(body: &MessageBody) -> Body {
    match body {
        MessageBody::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
            read_seq,
        } => Body::AppendEntries(pb::AppendEntries {
            prev_log_index: prev_log_index.0,
            prev_log_term: prev_log_term.0,
            entries: entries.iter().map(encode_entry).collect(),
            leader_commit: leader_commit.0,
            read_seq: *read_seq,
        }),
        MessageBody::InstallSnapshot {
            last_included_index,
            last_included_term,
            offset,
            data,
            done,
        } => Body::InstallSnapshot(pb::InstallSnapshot {
            last_included_index: last_included_index.0,
            last_included_term: last_included_term.0,
            offset: *offset,
            data: data.clone(),
            done: *done,
        }),
        other => unreachable!("encode_bulk called with {}", other.name()),
    }
}

/// The payload is a `Bytes` clone: a reference count, not a copy.
fn encode_entry(entry: &Entry) -> pb::Entry {
    let kind = match entry.kind {
        EntryKind::Normal => pb::EntryKind::Normal,
        EntryKind::Noop => pb::EntryKind::Noop,
        EntryKind::ConfChange => pb::EntryKind::ConfChange,
    };
    pb::Entry {
        term: entry.term.0,
        index: entry.index.0,
        kind: kind as i32,
        data: entry.data.clone(),
    }
}

/// Wire -> core, for one message of a batch from `from` to `to`. Takes the message by value
/// so entry payloads move (no copy).
pub fn decode_message(
    from: NodeId,
    to: NodeId,
    msg: pb::RaftMessage,
) -> Result<Message, DecodeError> {
    let body = decode_body(msg.body.ok_or(DecodeError::MissingBody)?)?;
    Ok(Message {
        from,
        to,
        term: Term(msg.term),
        body,
    })
}

fn decode_body(body: Body) -> Result<MessageBody, DecodeError> {
    Ok(match body {
        Body::RequestVote(m) => MessageBody::RequestVote {
            pre_vote: m.pre_vote,
            last_log_index: Index(m.last_log_index),
            last_log_term: Term(m.last_log_term),
            leadership_transfer: m.leadership_transfer,
        },
        Body::RequestVoteResponse(m) => MessageBody::RequestVoteResponse {
            pre_vote: m.pre_vote,
            vote_granted: m.vote_granted,
        },
        Body::AppendEntries(m) => MessageBody::AppendEntries {
            prev_log_index: Index(m.prev_log_index),
            prev_log_term: Term(m.prev_log_term),
            entries: m
                .entries
                .into_iter()
                .map(decode_entry)
                .collect::<Result<Vec<_>, _>>()?,
            leader_commit: Index(m.leader_commit),
            read_seq: m.read_seq,
        },
        Body::AppendEntriesResponse(m) => MessageBody::AppendEntriesResponse {
            success: m.success,
            last_index: Index(m.last_index),
            conflict_index: Index(m.conflict_index),
            conflict_term: Term(m.conflict_term),
            read_seq: m.read_seq,
        },
        Body::TimeoutNow(_) => MessageBody::TimeoutNow,
        Body::ReadIndexRequest(m) => MessageBody::ReadIndexRequest { id: ReadId(m.id) },
        Body::ReadIndexResponse(m) => MessageBody::ReadIndexResponse {
            id: ReadId(m.id),
            index: m.index.map(Index),
        },
        Body::InstallSnapshot(m) => MessageBody::InstallSnapshot {
            last_included_index: Index(m.last_included_index),
            last_included_term: Term(m.last_included_term),
            offset: m.offset,
            data: m.data,
            done: m.done,
        },
        Body::InstallSnapshotResponse(m) => MessageBody::InstallSnapshotResponse {
            last_included_index: Index(m.last_included_index),
            next_offset: m.next_offset,
            done: m.done,
        },
    })
}

fn decode_entry(entry: pb::Entry) -> Result<Entry, DecodeError> {
    let kind = match pb::EntryKind::try_from(entry.kind) {
        Ok(pb::EntryKind::Normal) => EntryKind::Normal,
        Ok(pb::EntryKind::Noop) => EntryKind::Noop,
        Ok(pb::EntryKind::ConfChange) => EntryKind::ConfChange,
        Ok(pb::EntryKind::Unspecified) | Err(_) => {
            return Err(DecodeError::BadEntryKind(entry.kind));
        }
    };
    Ok(Entry {
        term: Term(entry.term),
        index: Index(entry.index),
        kind,
        data: entry.data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn roundtrip(body: MessageBody) {
        let msg = Message {
            from: NodeId(7),
            to: NodeId(9),
            term: Term(42),
            body,
        };
        let wire = encode_message(&msg);
        assert_eq!(decode_message(NodeId(7), NodeId(9), wire), Ok(msg));
    }

    #[test]
    fn every_body_round_trips() {
        let entry = |i, kind| Entry {
            term: Term(3),
            index: Index(i),
            kind,
            data: Bytes::from_static(b"payload"),
        };
        roundtrip(MessageBody::RequestVote {
            pre_vote: true,
            last_log_index: Index(5),
            last_log_term: Term(2),
            leadership_transfer: true,
        });
        roundtrip(MessageBody::RequestVoteResponse {
            pre_vote: false,
            vote_granted: true,
        });
        roundtrip(MessageBody::AppendEntries {
            prev_log_index: Index(4),
            prev_log_term: Term(1),
            entries: vec![
                entry(5, EntryKind::Noop),
                entry(6, EntryKind::Normal),
                entry(7, EntryKind::ConfChange),
            ],
            leader_commit: Index(3),
            read_seq: 11,
        });
        roundtrip(MessageBody::AppendEntriesResponse {
            success: false,
            last_index: Index(9),
            conflict_index: Index(3),
            conflict_term: Term(1),
            read_seq: 12,
        });
        roundtrip(MessageBody::TimeoutNow);
        roundtrip(MessageBody::ReadIndexRequest { id: ReadId(77) });
        roundtrip(MessageBody::ReadIndexResponse {
            id: ReadId(77),
            index: Some(Index(10)),
        });
        roundtrip(MessageBody::ReadIndexResponse {
            id: ReadId(78),
            index: None,
        });
        roundtrip(MessageBody::InstallSnapshot {
            last_included_index: Index(100),
            last_included_term: Term(4),
            offset: 4096,
            data: Bytes::from_static(b"chunk"),
            done: false,
        });
        roundtrip(MessageBody::InstallSnapshotResponse {
            last_included_index: Index(100),
            next_offset: 8192,
            done: true,
        });
    }

    #[test]
    fn missing_body_is_an_error() {
        let wire = pb::RaftMessage {
            term: 1,
            body: None,
        };
        assert_eq!(
            decode_message(NodeId(1), NodeId(2), wire),
            Err(DecodeError::MissingBody)
        );
    }

    #[test]
    fn bad_entry_kinds_are_errors() {
        for kind in [0, 4, -1, i32::MAX] {
            let wire = pb::RaftMessage {
                term: 1,
                body: Some(Body::AppendEntries(pb::AppendEntries {
                    entries: vec![pb::Entry {
                        term: 1,
                        index: 1,
                        kind,
                        data: Bytes::new(),
                    }],
                    ..Default::default()
                })),
            };
            assert_eq!(
                decode_message(NodeId(1), NodeId(2), wire),
                Err(DecodeError::BadEntryKind(kind))
            );
        }
    }

    #[test]
    fn garbage_bytes_never_panic() {
        use prost::Message as _;
        // Deterministic pseudo-random garbage (xorshift, fixed seed).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..512usize {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            if let Ok(batch) = pb::MessageBatch::decode(bytes.as_slice()) {
                for m in batch.messages {
                    let _ = decode_message(NodeId(batch.from), NodeId(batch.to), m);
                }
            }
        }
    }
}
