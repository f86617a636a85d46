//! The simulated runtime's half of snapshots (§7): taking them, streaming them in chunks,
//! assembling and installing them, exactly as `raft/snapshot.rs` asks a runtime to.
//!
//! - Taking: after applying, a node whose applied index passed its last snapshot by
//!   `Options::snapshot_every` entries saves a snapshot at its applied index (durable at once;
//!   the real runtime writes in the background and calls `compact` only once it is durable,
//!   which is what the core sees here too) and compacts.
//! - Sending: for each peer in `Ready::snapshot_requests` with no transfer running, the leader
//!   streams its durable snapshot, one chunk of `Options::snapshot_chunk_bytes` at a time,
//!   the next chunk at the `next_offset` the peer answers (so a lost chunk or answer is resumed
//!   from the peer's offset after `SNAPSHOT_RESEND_MS`). A transfer with no answer for
//!   `SNAPSHOT_TRANSFER_MS` is abandoned and reported failed.
//! - Receiving: chunks are stepped into the core, kept only if `accepts_snapshot_from` says so
//!   and their offset is the next expected one; the assembled snapshot goes to
//!   `install_snapshot`; `Ready::snapshot` persists it and then loads it.
//!
//! A snapshot's bytes are its metadata, the digest of its state (`storage::digest`) and filler
//! so that a transfer takes several chunks. Every snapshot that is saved, loaded or restarted
//! from is checked against the committed log's digest at its index.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rocinante::raft::{Index, Message, MessageBody, NodeId, SnapshotMeta, Term};

use super::cluster::{Sim, id};
use super::network::Time;

/// A transfer with no answer for this long is abandoned (the runtime's transfer timeout).
pub const SNAPSHOT_TRANSFER_MS: Time = 400;
/// A chunk with no answer for this long is sent again from the peer's last offset.
pub const SNAPSHOT_RESEND_MS: Time = 60;

/// A leader's running transfer to one peer.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub meta: SnapshotMeta,
    pub data: Bytes,
    /// The offset the peer last asked for.
    pub offset: u64,
    pub last_answer: Time,
    pub last_sent: Time,
}

/// A follower's snapshot being assembled.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub from: NodeId,
    pub term: Term,
    pub index: Index,
    pub buf: BytesMut,
}

/// Snapshot bytes (format of the simulator only): index, term, state digest, voters, learners
/// (each a count then ids, all u64 little-endian), then `index % 5 * 8` filler bytes.
pub fn encode(meta: &SnapshotMeta, state: u64) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u64_le(meta.last_included_index.0);
    b.put_u64_le(meta.last_included_term.0);
    b.put_u64_le(state);
    for set in [&meta.voters, &meta.learners] {
        b.put_u64_le(set.len() as u64);
        set.iter().for_each(|n| b.put_u64_le(n.0));
    }
    b.put_bytes(0xAB, (meta.last_included_index.0 % 5 * 8) as usize);
    b.freeze()
}

pub fn decode(mut b: &[u8]) -> Option<(SnapshotMeta, u64)> {
    let mut get = || (b.remaining() >= 8).then(|| b.get_u64_le());
    let index = Index(get()?);
    let term = Term(get()?);
    let state = get()?;
    let mut sets = [Vec::new(), Vec::new()];
    for set in &mut sets {
        for _ in 0..get()? {
            set.push(NodeId(get()?));
        }
    }
    let [voters, learners] = sets;
    Some((
        SnapshotMeta {
            last_included_index: index,
            last_included_term: term,
            voters,
            learners,
        },
        state,
    ))
}

impl Sim {
    /// The committed log's digest at `index` must be `state`: a snapshot holds exactly the
    /// committed prefix (State Machine Safety for snapshots).
    pub(crate) fn check_snapshot_state(&self, n: usize, what: &str, index: Index, state: u64) {
        match self.checker.digest_at(index) {
            Some(d) if d == state => {}
            other => self.fail(&format!(
                "n{} {what} a snapshot at {index} whose state {state:x} is not the committed log's ({other:x?})",
                n + 1
            )),
        }
    }

    /// After applying: snapshot and compact if the applied index passed the threshold.
    pub(crate) fn maybe_take_snapshot(&mut self, n: usize) {
        let Some(every) = self.opts.snapshot_every else {
            return;
        };
        let applied = self.nodes[n].seen.applied;
        let Some(raft) = self.nodes[n].raft.as_ref() else {
            return;
        };
        if applied.0 < raft.snapshot().last_included_index.0 + every {
            return;
        }
        let Some(meta) = raft.snapshot_meta(applied) else {
            return;
        };
        let state = self.nodes[n].digests[applied.0 as usize - 1];
        self.check_snapshot_state(n, "took", applied, state);
        let removed = self.nodes[n].storage.save_snapshot(&meta, state);
        assert!(removed.is_empty(), "a local snapshot matches the log");
        self.log(format!("n{} snapshot at {applied}", n + 1));
        self.stats.snapshots_taken += 1;
        if let Some(raft) = self.nodes[n].raft.as_mut() {
            raft.compact(meta);
        }
    }

    /// `Ready::snapshot_requests` on leader `n`.
    pub(crate) fn start_transfers(&mut self, n: usize, peers: Vec<NodeId>) {
        for peer in peers {
            if self.nodes[n].outgoing.contains_key(&peer) {
                continue;
            }
            let Some((meta, state)) = self.nodes[n].storage.snapshot.clone() else {
                self.fail(&format!(
                    "n{} asked to send a snapshot it does not have",
                    n + 1
                ));
            };
            self.log(format!(
                "n{} streams snapshot {} to n{}",
                n + 1,
                meta.last_included_index,
                peer.0
            ));
            let t = Outgoing {
                data: encode(&meta, state),
                meta,
                offset: 0,
                last_answer: self.now,
                last_sent: self.now,
            };
            self.nodes[n].outgoing.insert(peer, t);
            self.send_chunk(n, peer);
        }
    }

    fn send_chunk(&mut self, n: usize, peer: NodeId) {
        let Some(term) = self.raft(n).map(|r| r.term()) else {
            return;
        };
        let chunk = self.opts.snapshot_chunk_bytes as u64;
        let now = self.now;
        let Some(t) = self.nodes[n].outgoing.get_mut(&peer) else {
            return;
        };
        let len = t.data.len() as u64;
        let start = t.offset.min(len);
        let end = (start + chunk).min(len);
        t.last_sent = now;
        self.stats.snapshot_chunks += 1;
        let msg = Message {
            from: id(n),
            to: peer,
            term,
            body: MessageBody::InstallSnapshot {
                last_included_index: t.meta.last_included_index,
                last_included_term: t.meta.last_included_term,
                offset: start,
                data: t.data.slice(start as usize..end as usize),
                done: end == len,
            },
        };
        self.send(msg);
    }

    /// An `InstallSnapshotResponse` reached leader `n` (after the core stepped it).
    pub(crate) fn on_snapshot_response(&mut self, n: usize, m: &Message) {
        let MessageBody::InstallSnapshotResponse {
            last_included_index,
            next_offset,
            done,
        } = m.body
        else {
            return;
        };
        let leading = self.raft(n).is_some_and(|r| r.term() == m.term);
        let Some(t) = self.nodes[n].outgoing.get_mut(&m.from) else {
            return;
        };
        if t.meta.last_included_index != last_included_index {
            return;
        }
        if done || !leading {
            self.nodes[n].outgoing.remove(&m.from);
            return;
        }
        t.last_answer = self.now;
        t.offset = next_offset;
        self.send_chunk(n, m.from);
    }

    /// At each tick of leader `n`: resend stalled chunks, abandon dead transfers.
    pub(crate) fn tick_transfers(&mut self, n: usize) {
        let now = self.now;
        let peers: Vec<NodeId> = self.nodes[n].outgoing.keys().copied().collect();
        for peer in peers {
            let t = &self.nodes[n].outgoing[&peer];
            let leading = self
                .raft(n)
                .is_some_and(|r| r.role() == rocinante::raft::Role::Leader);
            if !leading || now - t.last_answer > SNAPSHOT_TRANSFER_MS {
                self.nodes[n].outgoing.remove(&peer);
                self.log(format!(
                    "n{} snapshot transfer to n{} failed",
                    n + 1,
                    peer.0
                ));
                if let Some(r) = self.nodes[n].raft.as_mut() {
                    r.report_snapshot(peer, false);
                }
            } else if now - t.last_sent > SNAPSHOT_RESEND_MS {
                self.send_chunk(n, peer);
            }
        }
    }

    /// An `InstallSnapshot` chunk reached follower `n` (after the core stepped it).
    pub(crate) fn on_snapshot_chunk(&mut self, n: usize, m: Message) {
        let MessageBody::InstallSnapshot {
            last_included_index,
            offset,
            data,
            done,
            ..
        } = m.body
        else {
            return;
        };
        let Some(raft) = self.nodes[n].raft.as_ref() else {
            return;
        };
        if !raft.accepts_snapshot_from(m.from, m.term) {
            return;
        }
        let term = raft.term();
        let node = &mut self.nodes[n];
        let fresh = node
            .incoming
            .as_ref()
            .is_none_or(|i| i.from != m.from || i.term != m.term || i.index != last_included_index);
        if fresh {
            node.incoming = Some(Incoming {
                from: m.from,
                term: m.term,
                index: last_included_index,
                buf: BytesMut::new(),
            });
        }
        let Some(inc) = node.incoming.as_mut() else {
            return;
        };
        if offset == inc.buf.len() as u64 {
            inc.buf.extend_from_slice(&data);
        }
        let complete = done && offset + data.len() as u64 == inc.buf.len() as u64;
        let next_offset = inc.buf.len() as u64;
        if !complete {
            self.send(Message {
                from: id(n),
                to: m.from,
                term,
                body: MessageBody::InstallSnapshotResponse {
                    last_included_index,
                    next_offset,
                    done: false,
                },
            });
            return;
        }
        if let Some(inc) = self.nodes[n].incoming.take() {
            self.install_incoming(n, inc);
        }
    }

    /// Every chunk of `inc` arrived on node `n`: hand it to the core.
    fn install_incoming(&mut self, n: usize, inc: Incoming) {
        let Some((meta, state)) = decode(&inc.buf) else {
            self.fail(&format!("n{} assembled an undecodable snapshot", n + 1));
        };
        if meta.last_included_index != inc.index {
            self.fail(&format!("n{} assembled the wrong snapshot", n + 1));
        }
        let Some(raft) = self.nodes[n].raft.as_mut() else {
            return;
        };
        if raft.install_snapshot(inc.from, inc.term, meta.clone()) {
            let index = meta.last_included_index;
            self.log(format!(
                "n{} installs snapshot {index} from n{}",
                n + 1,
                inc.from.0
            ));
            self.nodes[n].staged = Some((meta, state));
            self.stats.snapshots_installed += 1;
        }
    }

    /// The logical log after `Ready::snapshot` installs `meta` on node `n`: the committed prefix
    /// up to it, plus the suffix after it if the log held its last entry with its term.
    pub(crate) fn install_in_log(&mut self, n: usize, meta: &SnapshotMeta) {
        let index = meta.last_included_index;
        let k = index.0 as usize;
        let log = &self.nodes[n].log;
        let keep = log
            .get(k.wrapping_sub(1))
            .is_some_and(|e| e.term == meta.last_included_term);
        let removed: Vec<_> = if keep {
            Vec::new()
        } else {
            log.iter().skip(k).cloned().collect()
        };
        for r in &removed {
            if self.checker.committed.get(r.index.0 as usize - 1) == Some(r) {
                self.fail(&format!(
                    "n{} installing snapshot {index} discards committed {}",
                    n + 1,
                    r.index
                ));
            }
        }
        let prefix = self.checker.committed[..k].to_vec();
        let node = &mut self.nodes[n];
        if keep {
            node.log.splice(..k, prefix);
        } else {
            node.log = prefix;
        }
    }

    /// Step 4 for an installed snapshot (or a restart from one): the state machine holds the
    /// committed prefix up to it.
    pub(crate) fn load_snapshot(&mut self, n: usize, index: Index, state: u64) {
        self.check_snapshot_state(n, "loads", index, state);
        let k = index.0 as usize;
        let prefix = self.checker.committed[..k].to_vec();
        let digests = self.checker.digests()[..k].to_vec();
        let node = &mut self.nodes[n];
        node.applied_log = prefix;
        node.digests = digests;
        node.seen.applied = index;
    }
}
