//! The records a segment holds, and their payload encodings (inside the frame of `frame.rs`).
//! Pure: encoding writes into a caller's buffer; decoding borrows or slices the caller's bytes.
//!
//! Invariant: a payload that passed its frame CRC but does not parse (wrong size, unknown entry
//! kind) is reported as an error, never skipped: a valid CRC over nonsense means a bug or a
//! format from another version, and the log must not be guessed at.
//!
//! ## Record kinds and payloads (all integers little-endian)
//!
//! ```text
//! kind 1  Entry          term u64 | index u64 | entry_kind u8 | data (rest of the payload)
//!                        entry_kind: 0 Normal, 1 Noop, 2 ConfChange. 17 bytes + data.
//! kind 2  HardState      current_term u64 | has_vote u8 (0 or 1) | voted_for u64 (0 if none)
//!                        17 bytes. The last one in log order is the node's hard state (§5.1).
//! kind 3  Truncate       last_kept u64. Every entry written before this record with an index
//!                        above last_kept is void (a §5.3 conflict), and the next entry must be
//!                        last_kept + 1. If last_kept is past the last entry, the log restarts
//!                        after it (entries up to last_kept are covered by a snapshot).
//! kind 4  SegmentHeader  magic "ROCIWAL\0" (8 bytes) | version u32 (=1) | first_index u64.
//!                        20 bytes. First record of every segment; first_index equals the
//!                        number in the file name, so a renamed or misplaced file is caught.
//! ```
//!
//! Not protected here: whether the values make sense for Raft (a term going down, an index
//! gap). `recovery.rs` checks index contiguity; terms are the core's business.

use bytes::Bytes;

use crate::raft::{Entry, EntryKind, HardState, Index, NodeId, Term};

pub const KIND_ENTRY: u8 = 1;
pub const KIND_HARD_STATE: u8 = 2;
pub const KIND_TRUNCATE: u8 = 3;
pub const KIND_SEGMENT_HEADER: u8 = 4;

/// Identifies a Rocinante segment file; the trailing NUL keeps it 8 bytes.
pub const SEGMENT_MAGIC: &[u8; 8] = b"ROCIWAL\0";
/// Format version written in every segment header. Bump it (and the goldens) on any change.
pub const FORMAT_VERSION: u32 = 1;

/// Payload bytes of an entry record before its data.
pub const ENTRY_FIXED_BYTES: usize = 17;

/// One decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Entry(Entry),
    HardState(HardState),
    Truncate { last_kept: Index },
    SegmentHeader { first_index: Index },
}

pub fn encode_entry(buf: &mut Vec<u8>, entry: &Entry) {
    super::frame::encode(buf, KIND_ENTRY, |b| {
        b.extend_from_slice(&entry.term.0.to_le_bytes());
        b.extend_from_slice(&entry.index.0.to_le_bytes());
        b.push(entry_kind_byte(entry.kind));
        b.extend_from_slice(&entry.data);
    });
}

pub fn encode_hard_state(buf: &mut Vec<u8>, hs: &HardState) {
    super::frame::encode(buf, KIND_HARD_STATE, |b| {
        b.extend_from_slice(&hs.current_term.0.to_le_bytes());
        b.push(u8::from(hs.voted_for.is_some()));
        b.extend_from_slice(&hs.voted_for.map_or(0, |n| n.0).to_le_bytes());
    });
}

pub fn encode_truncate(buf: &mut Vec<u8>, last_kept: Index) {
    super::frame::encode(buf, KIND_TRUNCATE, |b| {
        b.extend_from_slice(&last_kept.0.to_le_bytes())
    });
}

pub fn encode_segment_header(buf: &mut Vec<u8>, first_index: Index) {
    super::frame::encode(buf, KIND_SEGMENT_HEADER, |b| {
        b.extend_from_slice(SEGMENT_MAGIC);
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&first_index.0.to_le_bytes());
    });
}

fn entry_kind_byte(kind: EntryKind) -> u8 {
    match kind {
        EntryKind::Normal => 0,
        EntryKind::Noop => 1,
        EntryKind::ConfChange => 2,
    }
}

fn u64_at(p: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&p[at..at + 8]);
    u64::from_le_bytes(raw)
}

/// Parse a record whose frame was valid. `payload` is given as a slice of `file` (a `Bytes`
/// holding the whole segment) so entry data is a zero-copy slice of it: recovery of a large log
/// allocates once per segment, not once per entry.
pub fn parse(kind: u8, file: &Bytes, payload: &[u8]) -> Result<Record, &'static str> {
    match kind {
        KIND_ENTRY => {
            if payload.len() < ENTRY_FIXED_BYTES {
                return Err("entry record too short");
            }
            let kind = match payload[16] {
                0 => EntryKind::Normal,
                1 => EntryKind::Noop,
                2 => EntryKind::ConfChange,
                _ => return Err("unknown entry kind"),
            };
            Ok(Record::Entry(Entry {
                term: Term(u64_at(payload, 0)),
                index: Index(u64_at(payload, 8)),
                kind,
                data: file.slice_ref(&payload[ENTRY_FIXED_BYTES..]),
            }))
        }
        KIND_HARD_STATE => {
            if payload.len() != 17 || payload[8] > 1 {
                return Err("malformed hard state record");
            }
            let voted_for = (payload[8] == 1).then(|| NodeId(u64_at(payload, 9)));
            Ok(Record::HardState(HardState {
                current_term: Term(u64_at(payload, 0)),
                voted_for,
            }))
        }
        KIND_TRUNCATE => {
            if payload.len() != 8 {
                return Err("malformed truncate record");
            }
            Ok(Record::Truncate {
                last_kept: Index(u64_at(payload, 0)),
            })
        }
        KIND_SEGMENT_HEADER => {
            if payload.len() != 20 || &payload[..8] != SEGMENT_MAGIC {
                return Err("not a Rocinante segment header");
            }
            if u32::from_le_bytes([payload[8], payload[9], payload[10], payload[11]])
                != FORMAT_VERSION
            {
                return Err("unsupported segment format version");
            }
            Ok(Record::SegmentHeader {
                first_index: Index(u64_at(payload, 12)),
            })
        }
        _ => Err("unknown record kind"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::frame::{Decoded, decode};

    fn round_trip(buf: Vec<u8>) -> Record {
        let file = Bytes::from(buf);
        match decode(&file) {
            Decoded::Record { kind, payload, len } => {
                assert_eq!(len, file.len());
                parse(kind, &file, payload).expect("parses")
            }
            other => panic!("not a record: {other:?}"),
        }
    }

    #[test]
    fn every_record_kind_round_trips() {
        let entry = Entry {
            term: Term(7),
            index: Index(42),
            kind: EntryKind::ConfChange,
            data: Bytes::from_static(b"data"),
        };
        let mut buf = Vec::new();
        encode_entry(&mut buf, &entry);
        assert_eq!(round_trip(buf), Record::Entry(entry));

        for voted_for in [None, Some(NodeId(0)), Some(NodeId(u64::MAX))] {
            let hs = HardState {
                current_term: Term(3),
                voted_for,
            };
            let mut buf = Vec::new();
            encode_hard_state(&mut buf, &hs);
            assert_eq!(round_trip(buf), Record::HardState(hs));
        }

        let mut buf = Vec::new();
        encode_truncate(&mut buf, Index(9));
        assert_eq!(
            round_trip(buf),
            Record::Truncate {
                last_kept: Index(9)
            }
        );

        let mut buf = Vec::new();
        encode_segment_header(&mut buf, Index(1));
        assert_eq!(
            round_trip(buf),
            Record::SegmentHeader {
                first_index: Index(1)
            }
        );
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let file = Bytes::from_static(&[0u8; 3]);
        assert!(parse(KIND_ENTRY, &file, &file[..]).is_err());
        assert!(parse(KIND_HARD_STATE, &file, &file[..]).is_err());
        assert!(parse(KIND_TRUNCATE, &file, &file[..]).is_err());
        assert!(parse(KIND_SEGMENT_HEADER, &file, &file[..]).is_err());
        assert!(parse(99, &file, &file[..]).is_err());
    }
}
