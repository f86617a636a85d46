//! The runtime's half of snapshots (§7, see `raft/snapshot.rs` for the split): taking them,
//! writing them off the loop, compacting, streaming them to followers in chunks and installing
//! the ones a leader sends.
//!
//! Taking: once `last_applied` passes the latest snapshot by `snapshot_threshold` entries (or
//! `snapshot_threshold_bytes` of entry payloads were applied since the last one), the
//! loop serializes the store at its applied index (in the loop: a copy of the state, so later
//! applies cannot leak into it) and a helper thread writes and fsyncs the file. When the write
//! is durable, the core compacts its log (`RaftNode::compact`) and storage deletes the segments
//! before it. At most one write is in flight; an installed snapshot waits for it (both would
//! touch the snapshot files).
//!
//! Sending: for each peer in `Ready::snapshot_requests`, the leader streams its latest snapshot
//! as `InstallSnapshot` messages of `snapshot_chunk_bytes`, one chunk in flight per peer, the
//! next one at the `next_offset` the follower answers. So a lost chunk or a broken connection
//! resumes from the follower's offset (resent after `SNAPSHOT_RESEND_MS` without an answer).
//! A transfer with no progress for `snapshot_transfer_timeout_ms` is abandoned and reported to
//! the core, which asks again later. That timeout measures the transfer only (progress is any
//! advance of the follower's offset); the time the follower then takes to load the snapshot is
//! bounded by the core's `snapshot_timeout_ticks`, which waits for the final acknowledgement.
//!
//! Receiving: each chunk is stepped into the core first (term rules, election timer), kept only
//! if the core says it comes from the current leader and its offset is the next expected one,
//! and answered with the next offset. Until the last chunk the follower keeps serving stale
//! reads from its old state. The assembled snapshot goes to `RaftNode::install_snapshot`; the
//! `Ready` that carries it persists it before anything else and loads it into the store.
//!
//! # Formats
//!
//! The snapshot *payload* (what storage saves as the snapshot's data), written by
//! `encode_payload`:
//!
//! ```text
//!   4 bytes  magic "RSN1"
//!   u32 LE   member count; per member: u64 LE id, u16 LE + bytes gRPC "host:port",
//!            u16 LE + bytes REST "host:port"
//!   rest     the store's snapshot (`kv::snapshot`)
//! ```
//! A payload without the magic is a bare store snapshot (written before this format). The
//! member addresses are there because a member added by a membership change is in no spec:
//! a node restarting from a snapshot learns where its peers listen from it.
//!
//! The *transfer* (the bytes `InstallSnapshot` chunks carry), written by `encode_transfer`:
//! `u64 LE index, u64 LE term, u32 LE voter count, voters (u64 LE each), u32 LE learner
//! count, learners`, then the payload. Neither format has a checksum: the snapshot file has
//! one, the transfer relies on TCP and HTTP/2 framing.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::kv::Store;
use crate::raft::{Index, Message, MessageBody, NodeId, SnapshotMeta};
use crate::storage::{StorageError, snapshot_file};

use super::driver::Driver;
use super::{MemberAddrs, NodeRunError};

/// A chunk without an answer for this long is sent again from the follower's last offset.
const SNAPSHOT_RESEND_MS: u64 = 500;
const PAYLOAD_MAGIC: &[u8; 4] = b"RSN1";
/// A snapshot being received may grow to this many bytes; a chunk that would pass it ends
/// the transfer (it is dropped, the leader times out and starts over). A guard against a
/// faulty peer, far above any snapshot this store makes (1M keys of 128 bytes: 143 MiB).
const INCOMING_SNAPSHOT_BYTES_MAX: usize = 16 << 30;

/// A write of a snapshot file running on a helper thread.
struct Writing {
    meta: SnapshotMeta,
    payload: Bytes,
    thread: std::thread::JoinHandle<Result<(), StorageError>>,
}

/// A leader's transfer to one follower.
struct Outgoing {
    index: Index,
    term: crate::raft::Term,
    blob: Bytes,
    /// The offset the follower last asked for.
    offset: u64,
    last_progress: Instant,
    last_sent: Instant,
}

/// A follower's snapshot being assembled. Bounded by the leader's snapshot size.
struct Incoming {
    from: NodeId,
    term: crate::raft::Term,
    index: Index,
    buf: BytesMut,
}

struct Staged {
    meta: SnapshotMeta,
    payload: Bytes,
    store: Store,
    peers: BTreeMap<NodeId, MemberAddrs>,
}

/// The loop's snapshot state.
#[derive(Default)]
pub(super) struct Snapshots {
    /// The latest durable snapshot and its payload (sent to followers that need it).
    latest: Option<(SnapshotMeta, Bytes)>,
    /// `latest` in the transfer format, built at the first send and shared by every
    /// transfer of it (so N followers cost one copy, not N).
    latest_blob: Option<(Index, Bytes)>,
    writing: Option<Writing>,
    outgoing: HashMap<NodeId, Outgoing>,
    incoming: Option<Incoming>,
    /// Entry payload bytes applied since the latest snapshot was started (the byte threshold).
    pub(super) applied_bytes: u64,
    /// Installed by the core, waiting for the `Ready` that persists it: its metadata, payload,
    /// the store decoded from it and the member addresses it carries.
    staged: Option<Staged>,
}

impl Snapshots {
    pub(super) fn new(latest: Option<(SnapshotMeta, Bytes)>) -> Snapshots {
        Snapshots {
            latest,
            ..Snapshots::default()
        }
    }
}

/// The payload of a snapshot: member addresses, then the store (format in the file header).
pub(super) fn encode_payload(peers: &BTreeMap<NodeId, MemberAddrs>, store: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(store.len() + 64 * peers.len() + 8);
    out.extend_from_slice(PAYLOAD_MAGIC);
    out.extend_from_slice(&(peers.len() as u32).to_le_bytes());
    for (id, a) in peers {
        out.extend_from_slice(&id.0.to_le_bytes());
        for s in [&a.grpc, &a.rest] {
            let b = s.as_bytes();
            let len = b.len().min(u16::MAX as usize);
            out.extend_from_slice(&(len as u16).to_le_bytes());
            out.extend_from_slice(&b[..len]);
        }
    }
    out.extend_from_slice(store);
    out
}

/// Splits a payload into member addresses and store bytes; `None` if it is truncated.
pub(super) fn decode_payload(data: &[u8]) -> Option<(BTreeMap<NodeId, MemberAddrs>, &[u8])> {
    let mut peers = BTreeMap::new();
    let Some(mut rest) = data.strip_prefix(PAYLOAD_MAGIC.as_slice()) else {
        return Some((peers, data));
    };
    let mut take = |n: usize| -> Option<&[u8]> {
        let (a, b) = (rest.get(..n)?, rest.get(n..)?);
        rest = b;
        Some(a)
    };
    let count = u32::from_le_bytes(take(4)?.try_into().ok()?);
    for _ in 0..count {
        let id = NodeId(u64::from_le_bytes(take(8)?.try_into().ok()?));
        let mut strs = Vec::with_capacity(2);
        for _ in 0..2 {
            let len = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
            strs.push(String::from_utf8_lossy(take(len)?).into_owned());
        }
        let rest_addr = strs.pop()?;
        let grpc = strs.pop()?;
        peers.insert(
            id,
            MemberAddrs {
                grpc,
                rest: rest_addr,
            },
        );
    }
    Some((peers, rest))
}

fn encode_transfer(meta: &SnapshotMeta, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + 32);
    b.extend_from_slice(&meta.last_included_index.0.to_le_bytes());
    b.extend_from_slice(&meta.last_included_term.0.to_le_bytes());
    for set in [&meta.voters, &meta.learners] {
        b.extend_from_slice(&(set.len() as u32).to_le_bytes());
        set.iter()
            .for_each(|n| b.extend_from_slice(&n.0.to_le_bytes()));
    }
    b.extend_from_slice(payload);
    b.freeze()
}

fn decode_transfer(blob: Bytes) -> Option<(SnapshotMeta, Bytes)> {
    let mut at = 0usize;
    let u64_at = |at: &mut usize| -> Option<u64> {
        let v = u64::from_le_bytes(blob.get(*at..*at + 8)?.try_into().ok()?);
        *at += 8;
        Some(v)
    };
    let index = Index(u64_at(&mut at)?);
    let term = crate::raft::Term(u64_at(&mut at)?);
    let mut sets = [Vec::new(), Vec::new()];
    for set in &mut sets {
        let n = u32::from_le_bytes(blob.get(at..at + 4)?.try_into().ok()?);
        at += 4;
        for _ in 0..n {
            set.push(NodeId(u64_at(&mut at)?));
        }
    }
    let [voters, learners] = sets;
    let meta = SnapshotMeta {
        last_included_index: index,
        last_included_term: term,
        voters,
        learners,
    };
    Some((meta, blob.slice(at..)))
}

impl Driver {
    /// After a turn: finish a write that completed (compact), or start one if due.
    pub(super) fn maybe_snapshot(&mut self) -> Result<(), NodeRunError> {
        if self
            .snapshots
            .writing
            .as_ref()
            .is_some_and(|w| w.thread.is_finished())
        {
            self.finish_snapshot_write()?;
        }
        let threshold = self.opts.snapshot_threshold;
        let due = self.last_applied.0 >= self.snapshot_index.0.saturating_add(threshold)
            || self.snapshots.applied_bytes >= self.opts.snapshot_threshold_bytes;
        if !due || self.snapshots.writing.is_some() {
            return Ok(());
        }
        let Some(meta) = self.core.snapshot_meta(self.last_applied) else {
            return Ok(());
        };
        let started = Instant::now();
        self.snapshots.applied_bytes = 0;
        let payload = Bytes::from(encode_payload(&self.peers, &self.store.snapshot_bytes()));
        tracing::info!(node = %self.opts.id, index = %meta.last_included_index,
            bytes = payload.len(), serialize_ms = started.elapsed().as_millis() as u64,
            "snapshot: writing");
        let dir = self.storage.dir().to_path_buf();
        let (m, p) = (meta.clone(), payload.clone());
        let thread = std::thread::Builder::new()
            .name("snapshot-write".into())
            .spawn(move || snapshot_file::save(&dir, &m, &p).map(|_| ()))
            .map_err(|e| {
                NodeRunError::Storage(StorageError::Io {
                    path: self.storage.dir().to_path_buf(),
                    source: e,
                })
            })?;
        self.snapshots.writing = Some(Writing {
            meta,
            payload,
            thread,
        });
        Ok(())
    }

    /// Wait for the write in flight (if any), then compact up to it. A failed write is fatal,
    /// like a failed fsync of the log.
    pub(super) fn finish_snapshot_write(&mut self) -> Result<(), NodeRunError> {
        let Some(w) = self.snapshots.writing.take() else {
            return Ok(());
        };
        match w.thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(NodeRunError::Storage(e)),
            Err(_) => return Err(NodeRunError::LoopDied("snapshot writer panicked".into())),
        }
        let index = w.meta.last_included_index;
        self.storage.snapshot_written(&w.meta);
        let first = self.core.compact(w.meta.clone());
        self.storage.compact(first.prev())?;
        if index > self.snapshot_index {
            self.snapshot_index = index;
            self.snapshots.latest = Some((w.meta, w.payload));
        }
        tracing::info!(node = %self.opts.id, %index, "snapshot: durable, log compacted");
        Ok(())
    }

    /// `Ready::snapshot_requests`: start streaming the latest snapshot to each peer.
    pub(super) fn start_snapshot_sends(&mut self, peers: Vec<NodeId>) {
        let Some((meta, payload)) = self.snapshots.latest.clone() else {
            tracing::warn!(node = %self.opts.id, "asked to send a snapshot before having one");
            return;
        };
        let index = meta.last_included_index;
        let blob = match &self.snapshots.latest_blob {
            Some((i, b)) if *i == index => b.clone(),
            _ => {
                let b = encode_transfer(&meta, &payload);
                self.snapshots.latest_blob = Some((index, b.clone()));
                b
            }
        };
        let now = Instant::now();
        for peer in peers {
            if self.snapshots.outgoing.contains_key(&peer) {
                continue;
            }
            tracing::info!(node = %self.opts.id, %peer, index = %meta.last_included_index,
                bytes = payload.len(), "snapshot: streaming to a follower");
            self.snapshots.outgoing.insert(
                peer,
                Outgoing {
                    index: meta.last_included_index,
                    term: meta.last_included_term,
                    blob: blob.clone(),
                    offset: 0,
                    last_progress: now,
                    last_sent: now,
                },
            );
            self.send_chunk(peer);
        }
    }

    fn send_chunk(&mut self, peer: NodeId) {
        let chunk = self.opts.snapshot_chunk_bytes.max(1) as u64;
        let (from, term) = (self.opts.id, self.core.term());
        let Some(t) = self.snapshots.outgoing.get_mut(&peer) else {
            return;
        };
        let len = t.blob.len() as u64;
        let start = t.offset.min(len);
        let end = (start + chunk).min(len);
        t.last_sent = Instant::now();
        let msg = Message {
            from,
            to: peer,
            term,
            body: MessageBody::InstallSnapshot {
                last_included_index: t.index,
                last_included_term: t.term,
                offset: start,
                data: t.blob.slice(start as usize..end as usize),
                done: end == len,
            },
        };
        self.transport.send([msg]);
    }

    /// Every turn on a leader: resend stalled chunks, abandon dead transfers.
    pub(super) fn tick_snapshot_sends(&mut self) {
        let timeout = Duration::from_millis(self.opts.snapshot_transfer_timeout_ms);
        let resend = Duration::from_millis(SNAPSHOT_RESEND_MS);
        let leading = self.core.role() == crate::raft::Role::Leader;
        let now = Instant::now();
        let peers: Vec<NodeId> = self.snapshots.outgoing.keys().copied().collect();
        for peer in peers {
            let Some(t) = self.snapshots.outgoing.get(&peer) else {
                continue;
            };
            if !leading || now.duration_since(t.last_progress) > timeout {
                self.snapshots.outgoing.remove(&peer);
                tracing::warn!(node = %self.opts.id, %peer, "snapshot: transfer abandoned");
                self.core.report_snapshot(peer, false);
            } else if now.duration_since(t.last_sent) > resend {
                self.send_chunk(peer);
            }
        }
    }

    /// A snapshot message arrived (already stepped into the core).
    pub(super) fn on_snapshot_message(&mut self, msg: Message) {
        match msg.body {
            MessageBody::InstallSnapshotResponse {
                last_included_index,
                next_offset,
                done,
            } => {
                let leading = self.core.term() == msg.term;
                let Some(t) = self.snapshots.outgoing.get_mut(&msg.from) else {
                    return;
                };
                if t.index != last_included_index {
                    return;
                }
                if done || !leading {
                    self.snapshots.outgoing.remove(&msg.from);
                    return;
                }
                if next_offset > t.offset {
                    t.last_progress = Instant::now();
                }
                t.offset = next_offset;
                self.send_chunk(msg.from);
            }
            MessageBody::InstallSnapshot { .. } => self.on_snapshot_chunk(msg),
            _ => {}
        }
    }

    fn on_snapshot_chunk(&mut self, msg: Message) {
        let MessageBody::InstallSnapshot {
            last_included_index,
            offset,
            data,
            done,
            ..
        } = msg.body
        else {
            return;
        };
        if !self.core.accepts_snapshot_from(msg.from, msg.term) {
            return;
        }
        let fresh = self.snapshots.incoming.as_ref().is_none_or(|i| {
            i.from != msg.from || i.term != msg.term || i.index != last_included_index
        });
        if fresh {
            self.snapshots.incoming = Some(Incoming {
                from: msg.from,
                term: msg.term,
                index: last_included_index,
                buf: BytesMut::new(),
            });
        }
        let Some(inc) = self.snapshots.incoming.as_mut() else {
            return;
        };
        if inc.buf.len() + data.len() > INCOMING_SNAPSHOT_BYTES_MAX {
            tracing::warn!(node = %self.opts.id, "snapshot: transfer too large, dropped");
            self.snapshots.incoming = None;
            return;
        }
        if offset == inc.buf.len() as u64 {
            inc.buf.extend_from_slice(&data);
        }
        let next_offset = inc.buf.len() as u64;
        if !(done && offset + data.len() as u64 == next_offset) {
            let reply = Message {
                from: self.opts.id,
                to: msg.from,
                term: self.core.term(),
                body: MessageBody::InstallSnapshotResponse {
                    last_included_index,
                    next_offset,
                    done: false,
                },
            };
            self.transport.send([reply]);
            return;
        }
        if let Some(inc) = self.snapshots.incoming.take() {
            self.stage_snapshot(msg.from, msg.term, inc);
        }
    }

    /// Every chunk is in: decode it before the core resets its log (a snapshot that does not
    /// load is dropped, and the leader times out and sends it again, instead of leaving us
    /// without a state), then hand its metadata to the core.
    fn stage_snapshot(&mut self, from: NodeId, term: crate::raft::Term, inc: Incoming) {
        let index = inc.index;
        let Some((meta, payload)) = decode_transfer(inc.buf.freeze()) else {
            tracing::warn!(node = %self.opts.id, "snapshot: undecodable transfer dropped");
            return;
        };
        if meta.last_included_index != index {
            return;
        }
        let started = Instant::now();
        let Some((peers, store_bytes)) = decode_payload(&payload) else {
            tracing::warn!(node = %self.opts.id, "snapshot: undecodable payload dropped");
            return;
        };
        let store = match Store::restore_with(self.store.config(), store_bytes) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(node = %self.opts.id, error = %e, "snapshot: bad store dropped");
                return;
            }
        };
        if self.core.install_snapshot(from, term, meta.clone()) {
            tracing::info!(node = %self.opts.id, %index, bytes = payload.len(),
                decode_ms = started.elapsed().as_millis() as u64, "snapshot: received, installing");
            self.snapshots.staged = Some(Staged {
                meta,
                payload,
                store,
                peers,
            });
        }
    }

    /// `Ready::snapshot`: persist the staged snapshot (after any local write in flight), then
    /// load it into the store (§7). Writers waiting on this follower have nothing to wait for.
    pub(super) fn install_staged(&mut self, meta: &SnapshotMeta) -> Result<(), NodeRunError> {
        let staged = self.snapshots.staged.take();
        let Some(s) = staged.filter(|s| s.meta == *meta) else {
            // The core only emits what `install_snapshot` accepted, which we staged.
            panic!("Ready.snapshot without its staged data");
        };
        self.finish_snapshot_write()?;
        let started = Instant::now();
        let (m, payload) = (s.meta, s.payload);
        self.storage.save_snapshot(&m, &payload)?;
        self.store = s.store;
        self.snapshots.applied_bytes = 0;
        for (id, a) in s.peers {
            self.learn_member(id, a);
        }
        let index = m.last_included_index;
        self.last_applied = index;
        self.snapshot_index = index;
        let first = self.core.compact(m.clone());
        self.storage.compact(first.prev())?;
        self.snapshots.latest = Some((m, payload));
        tracing::info!(node = %self.opts.id, %index,
            load_ms = started.elapsed().as_millis() as u64, "snapshot: installed and loaded");
        Ok(())
    }
}

/// The store from the recovered snapshot (or empty), the snapshot's metadata and payload,
/// and the member addresses it carries (added to `peers`). A snapshot that does not decode is
/// corruption: the node must not run on it.
#[allow(clippy::type_complexity)]
pub(super) fn restore_store(
    opts: &super::NodeOptions,
    snapshot: Option<(crate::raft::SnapshotMeta, Vec<u8>)>,
    peers: &mut BTreeMap<NodeId, MemberAddrs>,
) -> Result<
    (
        Store,
        Option<crate::raft::SnapshotMeta>,
        Option<(crate::raft::SnapshotMeta, Bytes)>,
    ),
    super::NodeStartError,
> {
    let config = crate::kv::StoreConfig::with_window_s(opts.idempotency_window_s);
    let corrupt = |reason: String| {
        super::NodeStartError::Storage(StorageError::Corrupt {
            path: opts.data_dir.clone(),
            offset: 0,
            reason,
        })
    };
    let Some((meta, data)) = snapshot else {
        return Ok((Store::new(config), None, None));
    };
    let (known, store_bytes) =
        decode_payload(&data).ok_or_else(|| corrupt("snapshot payload does not decode".into()))?;
    let store = Store::restore_with(config, store_bytes)
        .map_err(|e| corrupt(format!("snapshot does not decode: {e}")))?;
    for (id, a) in known {
        peers.entry(id).or_insert(a);
    }
    let latest = Some((meta.clone(), Bytes::from(data)));
    Ok((store, Some(meta), latest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_and_transfer_round_trip() {
        let peers = BTreeMap::from([(
            NodeId(7),
            MemberAddrs {
                grpc: "10.0.0.7:35007".into(),
                rest: "10.0.0.7:8007".into(),
            },
        )]);
        let payload = encode_payload(&peers, b"store bytes");
        let (back, store) = decode_payload(&payload).expect("decodes");
        assert_eq!((back, store), (peers, b"store bytes".as_slice()));
        // A bare store snapshot (no magic) is accepted as is; a truncated payload is not.
        assert_eq!(
            decode_payload(b"\x01abc").map(|p| p.1),
            Some(b"\x01abc".as_slice())
        );
        assert!(decode_payload(&payload[..10]).is_none());
        let meta = SnapshotMeta {
            last_included_index: Index(42),
            last_included_term: crate::raft::Term(3),
            voters: vec![NodeId(1), NodeId(2)],
            learners: vec![NodeId(9)],
        };
        let (m, p) = decode_transfer(encode_transfer(&meta, &payload)).expect("decodes");
        assert_eq!((m, p.as_ref()), (meta, payload.as_slice()));
        assert!(decode_transfer(Bytes::from_static(b"short")).is_none());
    }
}
