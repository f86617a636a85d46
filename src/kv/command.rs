//! The payloads of `Normal` log entries: what a client asked for, and what applying it answered.
//!
//! The encoding (`Command::encode` / `Command::decode`) is part of the on-disk format: it is in
//! every WAL segment and snapshot, so it is versioned and documented byte by byte next to the
//! encoder. Decoding untrusted bytes never panics.
//!
//! Neither encoding carries a checksum: the WAL frame and the snapshot file around them do.
//! They do not protect against a valid-looking but wrong value either; the CRCs outside them are
//! what catch corruption.

use bytes::Bytes;

pub use super::codec::DecodeError;
use super::codec::{Reader, put_bytes, put_u64_le, put_varint};

/// An `Idempotency-Key` is 1..=128 bytes (API.md §3); the decoder enforces it.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;
/// The only `Command` format so far. A new format gets a new number; old ones stay decodable
/// for as long as a WAL or snapshot written with them may exist.
const COMMAND_VERSION: u8 = 1;
/// The only `Outcome` format so far.
const OUTCOME_VERSION: u8 = 1;

/// A write, as proposed to Raft. Reads do not go through the log (ReadIndex instead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Leader's wall-clock time in milliseconds since the Unix epoch when it proposed this
    /// entry: the one clock every member uses for TTLs and idempotency windows, so expiry is
    /// deterministic (API.md §4).
    pub leader_time_ms: u64,
    /// `Idempotency-Key` and a fingerprint of the whole request (method, path, query, body),
    /// when the client sent one (API.md §3, "Retries are safe").
    pub idempotency: Option<Idempotency>,
    pub op: Op,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idempotency {
    /// 1..=128 bytes.
    pub key: Bytes,
    /// A hash of method, path, query and body: the same key with another fingerprint is a
    /// `422 idempotency_key_reused`.
    pub fingerprint: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `if_revision`: `Some(0)` = must not exist, `Some(r)` = mod revision must be `r`.
    Put {
        key: Bytes,
        value: Bytes,
        if_revision: Option<u64>,
    },
    Delete {
        key: Bytes,
        if_revision: Option<u64>,
    },
    /// Leader-time housekeeping (expire idempotency records older than the window). Carries
    /// no client; always succeeds.
    Tick,
}

/// The outcome of applying one `Command`: deterministic on every member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Put {
        revision: u64,
        prev_revision: Option<u64>,
    },
    Deleted {
        revision: u64,
        deleted: bool,
    },
    /// Compare-and-set failed: the key's current mod revision (0 = absent) and value.
    RevisionMismatch {
        current_revision: u64,
        current_value: Option<Bytes>,
    },
    /// Same Idempotency-Key, different request.
    IdempotencyKeyReused,
    Ticked,
}

/// What the runtime hands back to the waiting client: the outcome, and whether it is a replay
/// of an earlier answer for the same Idempotency-Key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub outcome: Outcome,
    pub replayed: bool,
}

// Command format, version 1 (all varints are canonical unsigned LEB128, see `codec`):
//
//   byte 0        version = 1
//   varint        leader_time_ms
//   byte          flags: bit 0 = idempotency present, bit 1 = if_revision present;
//                 the other bits must be 0
//   [if bit 0]    varint key_len (1..=128), key bytes, 8 bytes fingerprint (u64 little-endian)
//   byte          op tag: 1 = Put, 2 = Delete, 3 = Tick
//   Put           varint key_len, key bytes, varint value_len, value bytes
//   Delete        varint key_len, key bytes
//   [if bit 1]    varint if_revision (Put and Delete only; a Tick with bit 1 is invalid)
//   end           no trailing bytes
//
// A Put of a 16-byte key and 128-byte value without options is 1+6+1+1+1+16+2+128 = 156 bytes.
const FLAG_IDEMPOTENCY: u8 = 0b01;
const FLAG_IF_REVISION: u8 = 0b10;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_TICK: u8 = 3;

impl Command {
    /// The version-1 encoding described above. The caller (the API layer) has checked the
    /// Idempotency-Key length: a key outside 1..=128 bytes would encode but not decode, and
    /// the entry would then apply as a no-op on every member.
    pub fn encode(&self) -> Vec<u8> {
        let (key_len, value_len) = match &self.op {
            Op::Put { key, value, .. } => (key.len(), value.len()),
            Op::Delete { key, .. } => (key.len(), 0),
            Op::Tick => (0, 0),
        };
        let mut out = Vec::with_capacity(40 + key_len + value_len);
        out.push(COMMAND_VERSION);
        put_varint(&mut out, self.leader_time_ms);
        let if_revision = match &self.op {
            Op::Put { if_revision, .. } | Op::Delete { if_revision, .. } => *if_revision,
            Op::Tick => None,
        };
        let mut flags = 0;
        if self.idempotency.is_some() {
            flags |= FLAG_IDEMPOTENCY;
        }
        if if_revision.is_some() {
            flags |= FLAG_IF_REVISION;
        }
        out.push(flags);
        if let Some(idem) = &self.idempotency {
            put_bytes(&mut out, &idem.key);
            put_u64_le(&mut out, idem.fingerprint);
        }
        match &self.op {
            Op::Put { key, value, .. } => {
                out.push(OP_PUT);
                put_bytes(&mut out, key);
                put_bytes(&mut out, value);
            }
            Op::Delete { key, .. } => {
                out.push(OP_DELETE);
                put_bytes(&mut out, key);
            }
            Op::Tick => out.push(OP_TICK),
        }
        if let Some(rev) = if_revision {
            put_varint(&mut out, rev);
        }
        out
    }

    /// Decode untrusted bytes (a WAL entry, a snapshot, a peer's message). Never panics;
    /// accepts exactly the outputs of `encode`.
    pub fn decode(data: &[u8]) -> Result<Command, DecodeError> {
        CommandRef::decode(data).map(|c| c.to_owned())
    }
}

/// A decoded `Command` that borrows its bytes from the entry, so the store copies a key or
/// value once (into its own exact-size allocation) rather than twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CommandRef<'a> {
    pub leader_time_ms: u64,
    /// (key, fingerprint)
    pub idempotency: Option<(&'a [u8], u64)>,
    pub op: OpRef<'a>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpRef<'a> {
    Put {
        key: &'a [u8],
        value: &'a [u8],
        if_revision: Option<u64>,
    },
    Delete {
        key: &'a [u8],
        if_revision: Option<u64>,
    },
    Tick,
}

impl<'a> CommandRef<'a> {
    /// The decoder behind `Command::decode` (format above).
    pub(crate) fn decode(data: &'a [u8]) -> Result<CommandRef<'a>, DecodeError> {
        let mut r = Reader::new(data);
        let version = r.u8("command version")?;
        if version != COMMAND_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "command",
                version,
            });
        }
        let leader_time_ms = r.varint("leader_time_ms")?;
        let flags = r.u8("command flags")?;
        if flags & !(FLAG_IDEMPOTENCY | FLAG_IF_REVISION) != 0 {
            return Err(DecodeError::Invalid("command flags"));
        }
        let idempotency = if flags & FLAG_IDEMPOTENCY != 0 {
            let key = r.bytes("idempotency key")?;
            if key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
                return Err(DecodeError::Invalid("idempotency key length"));
            }
            Some((key, r.u64_le("idempotency fingerprint")?))
        } else {
            None
        };
        let if_revision = |r: &mut Reader<'_>| match flags & FLAG_IF_REVISION {
            0 => Ok(None),
            _ => r.varint("if_revision").map(Some),
        };
        let op = match r.u8("op tag")? {
            OP_PUT => {
                let key = r.bytes("put key")?;
                let value = r.bytes("put value")?;
                OpRef::Put {
                    key,
                    value,
                    if_revision: if_revision(&mut r)?,
                }
            }
            OP_DELETE => {
                let key = r.bytes("delete key")?;
                OpRef::Delete {
                    key,
                    if_revision: if_revision(&mut r)?,
                }
            }
            OP_TICK if flags & FLAG_IF_REVISION != 0 => {
                return Err(DecodeError::Invalid("if_revision on a tick"));
            }
            OP_TICK => OpRef::Tick,
            tag => return Err(DecodeError::UnknownTag { what: "op", tag }),
        };
        r.finish()?;
        Ok(CommandRef {
            leader_time_ms,
            idempotency,
            op,
        })
    }

    pub(crate) fn to_owned(self) -> Command {
        let copy = Bytes::copy_from_slice;
        let op = match self.op {
            OpRef::Put {
                key,
                value,
                if_revision,
            } => Op::Put {
                key: copy(key),
                value: copy(value),
                if_revision,
            },
            OpRef::Delete { key, if_revision } => Op::Delete {
                key: copy(key),
                if_revision,
            },
            OpRef::Tick => Op::Tick,
        };
        Command {
            leader_time_ms: self.leader_time_ms,
            idempotency: self.idempotency.map(|(key, fingerprint)| Idempotency {
                key: copy(key),
                fingerprint,
            }),
            op,
        }
    }
}

// Outcome format, version 1 (stored in the idempotency table, hence in snapshots):
//
//   byte 0        version = 1
//   byte          tag: 1 = Put, 2 = Deleted, 3 = RevisionMismatch, 4 = IdempotencyKeyReused,
//                 5 = Ticked
//   Put           varint revision, byte has_prev (0/1), [varint prev_revision]
//   Deleted       varint revision, byte deleted (0/1)
//   RevisionMismatch  varint current_revision, byte has_value (0/1), [varint len, value bytes]
//   IdempotencyKeyReused, Ticked: nothing more
//   end           no trailing bytes
const OUTCOME_PUT: u8 = 1;
const OUTCOME_DELETED: u8 = 2;
const OUTCOME_MISMATCH: u8 = 3;
const OUTCOME_REUSED: u8 = 4;
const OUTCOME_TICKED: u8 = 5;

impl Outcome {
    /// The version-1 encoding described above.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.push(OUTCOME_VERSION);
        match self {
            Outcome::Put {
                revision,
                prev_revision,
            } => {
                out.push(OUTCOME_PUT);
                put_varint(&mut out, *revision);
                put_option(&mut out, *prev_revision);
            }
            Outcome::Deleted { revision, deleted } => {
                out.push(OUTCOME_DELETED);
                put_varint(&mut out, *revision);
                out.push(u8::from(*deleted));
            }
            Outcome::RevisionMismatch {
                current_revision,
                current_value,
            } => {
                out.push(OUTCOME_MISMATCH);
                put_varint(&mut out, *current_revision);
                out.push(u8::from(current_value.is_some()));
                if let Some(v) = current_value {
                    put_bytes(&mut out, v);
                }
            }
            Outcome::IdempotencyKeyReused => out.push(OUTCOME_REUSED),
            Outcome::Ticked => out.push(OUTCOME_TICKED),
        }
        out
    }

    /// Decode untrusted bytes; never panics; accepts exactly the outputs of `encode`.
    pub fn decode(data: &[u8]) -> Result<Outcome, DecodeError> {
        let mut r = Reader::new(data);
        let version = r.u8("outcome version")?;
        if version != OUTCOME_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "outcome",
                version,
            });
        }
        let outcome = match r.u8("outcome tag")? {
            OUTCOME_PUT => {
                let revision = r.varint("put revision")?;
                let prev_revision = match r.bool("has prev_revision")? {
                    true => Some(r.varint("prev_revision")?),
                    false => None,
                };
                Outcome::Put {
                    revision,
                    prev_revision,
                }
            }
            OUTCOME_DELETED => {
                let revision = r.varint("delete revision")?;
                let deleted = r.bool("deleted")?;
                Outcome::Deleted { revision, deleted }
            }
            OUTCOME_MISMATCH => {
                let current_revision = r.varint("current_revision")?;
                let current_value = match r.bool("has current_value")? {
                    true => Some(Bytes::copy_from_slice(r.bytes("current_value")?)),
                    false => None,
                };
                Outcome::RevisionMismatch {
                    current_revision,
                    current_value,
                }
            }
            OUTCOME_REUSED => Outcome::IdempotencyKeyReused,
            OUTCOME_TICKED => Outcome::Ticked,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "outcome",
                    tag,
                });
            }
        };
        r.finish()?;
        Ok(outcome)
    }
}

fn put_option(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => {
            out.push(1);
            put_varint(out, v);
        }
        None => out.push(0),
    }
}
