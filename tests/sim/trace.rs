//! The run's trace: one line per delivered (or dropped) message and per node event, in
//! virtual-time order.
//!
//! Every line is fed to a hasher with fixed keys, so two runs of one seed can be compared by a
//! single number (the determinism check). The last lines are kept for failure reports; all
//! lines are kept only when a golden test asks for them, so the sweep pays no memory for it.

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hasher};

use rocinante::raft::{Entry, EntryKind, Message, MessageBody, NodeId};

/// Lines kept for a failure report (the tail of the run).
const RECENT_LINES_MAX: usize = 80;

pub struct Trace {
    hasher: DefaultHasher,
    recent: VecDeque<String>,
    /// Every line, when recording for a golden file.
    full: Option<Vec<String>>,
    pub lines_count: u64,
}

impl Trace {
    pub fn new(keep_all: bool) -> Trace {
        Trace {
            hasher: DefaultHasher::new(),
            recent: VecDeque::with_capacity(RECENT_LINES_MAX),
            full: keep_all.then(Vec::new),
            lines_count: 0,
        }
    }

    /// Records one line at virtual time `now_ms`.
    pub fn line(&mut self, now_ms: u64, text: String) {
        let line = format!("[{now_ms:>6}ms] {text}");
        self.hasher.write(line.as_bytes());
        self.hasher.write_u8(b'\n');
        self.lines_count += 1;
        if self.recent.len() == RECENT_LINES_MAX {
            self.recent.pop_front();
        }
        if let Some(full) = &mut self.full {
            full.push(line.clone());
        }
        self.recent.push_back(line);
    }

    pub fn hash(&self) -> u64 {
        self.hasher.finish()
    }

    pub fn recent(&self) -> String {
        self.recent.iter().map(|l| format!("  {l}\n")).collect()
    }

    pub fn full(&self) -> Option<&[String]> {
        self.full.as_deref()
    }
}

/// Node ids in the simulator are 1..=N; they are shown as `n1`..`nN`.
pub fn node(id: NodeId) -> String {
    format!("n{}", id.0)
}

pub fn entry(e: &Entry) -> String {
    let kind = match e.kind {
        // Payloads are shown up to 16 bytes (the sweep pads some to test byte limits).
        EntryKind::Normal => String::from_utf8_lossy(&e.data[..e.data.len().min(16)]).into_owned(),
        EntryKind::Noop => "noop".to_string(),
        EntryKind::ConfChange => "conf".to_string(),
    };
    format!("{}/{}:{}", e.index, e.term, kind)
}

fn entries(es: &[Entry]) -> String {
    const SHOWN_MAX: usize = 4;
    let mut parts: Vec<String> = es.iter().take(SHOWN_MAX).map(entry).collect();
    if es.len() > SHOWN_MAX {
        parts.push(format!("..+{}", es.len() - SHOWN_MAX));
    }
    format!("[{}]", parts.join(" "))
}

/// One message, readable: `n1->n2 AppendEntries t=2 prev=3/1 [4/2:x] commit=3 seq=7`.
pub fn message(m: &Message) -> String {
    let head = format!(
        "{}->{} {} t={}",
        node(m.from),
        node(m.to),
        m.body.name(),
        m.term
    );
    let body = match &m.body {
        MessageBody::RequestVote {
            last_log_index,
            last_log_term,
            leadership_transfer,
            ..
        } => {
            let transfer = if *leadership_transfer {
                " transfer"
            } else {
                ""
            };
            format!("last={last_log_index}/{last_log_term}{transfer}")
        }
        MessageBody::RequestVoteResponse { vote_granted, .. } => format!("granted={vote_granted}"),
        MessageBody::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries: es,
            leader_commit,
            read_seq,
        } => format!(
            "prev={prev_log_index}/{prev_log_term} {} commit={leader_commit} seq={read_seq}",
            entries(es)
        ),
        MessageBody::AppendEntriesResponse {
            success,
            last_index,
            conflict_index,
            conflict_term,
            read_seq,
        } => {
            if *success {
                format!("ok last={last_index} seq={read_seq}")
            } else {
                format!("reject hint={conflict_index}/{conflict_term} seq={read_seq}")
            }
        }
        MessageBody::TimeoutNow => String::new(),
        MessageBody::ReadIndexRequest { id } => format!("read={}", id.0),
        MessageBody::ReadIndexResponse { id, index } => match index {
            Some(i) => format!("read={} index={i}", id.0),
            None => format!("read={} failed", id.0),
        },
        MessageBody::InstallSnapshot {
            last_included_index,
            offset,
            done,
            ..
        } => format!("upto={last_included_index} off={offset} done={done}"),
        MessageBody::InstallSnapshotResponse {
            next_offset, done, ..
        } => {
            format!("next={next_offset} done={done}")
        }
    };
    if body.is_empty() {
        head
    } else {
        format!("{head} {body}")
    }
}
