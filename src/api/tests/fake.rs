//! The harness of the in-process API tests: a fake in-memory node that obeys the `NodeHandle`
//! contract (revisions are a counter standing in for Raft indexes), served on 127.0.0.1:0, and
//! raw HTTP/1.1 request helpers that show exactly what went over the wire.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::api::{ApiContext, serve_with};
use crate::kv::command::{Applied, Idempotency, Op, Outcome};
use crate::node::handle::{AnswerMeta, Consistency, KeyValue, ListPage, NodeError, Status};
use crate::raft::{Index, NodeId, Role, Term};

#[derive(Default)]
struct FakeState {
    data: BTreeMap<Bytes, KeyValue>,
    revision: u64,
    idempotency: HashMap<Bytes, (u64, Outcome)>,
}

#[derive(Clone)]
struct Fake {
    id: NodeId,
    /// `None`: this node leads. `Some(rest)`: a follower of the leader at `rest`.
    leader_rest: Option<String>,
    state: Arc<Mutex<FakeState>>,
}

impl Fake {
    fn meta(&self, index: u64) -> AnswerMeta {
        AnswerMeta {
            node_id: self.id,
            leader_id: Some(NodeId(1)),
            term: Term(3),
            raft_index: Index(index),
        }
    }

    fn not_leader(&self) -> Option<NodeError> {
        self.leader_rest.as_ref().map(|rest| NodeError::NotLeader {
            leader: Some((NodeId(1), rest.clone())),
        })
    }

    fn apply(&self, op: Op, idem: Option<Idempotency>) -> (Applied, AnswerMeta) {
        let mut s = self.state.lock().unwrap();
        if let Some(i) = &idem {
            if let Some((fp, outcome)) = s.idempotency.get(&i.key) {
                let outcome = if *fp == i.fingerprint {
                    outcome.clone()
                } else {
                    Outcome::IdempotencyKeyReused
                };
                let rev = s.revision;
                return (
                    Applied {
                        outcome,
                        replayed: *fp == i.fingerprint,
                    },
                    self.meta(rev),
                );
            }
        }
        s.revision += 1;
        let rev = s.revision;
        let (key, if_revision) = match &op {
            Op::Put {
                key, if_revision, ..
            }
            | Op::Delete { key, if_revision } => (key.clone(), *if_revision),
            Op::Tick => unreachable!(),
        };
        let current = s.data.get(&key).cloned();
        let outcome = match (if_revision, &current) {
            (Some(want), cur) if want != cur.as_ref().map_or(0, |c| c.mod_revision) => {
                Outcome::RevisionMismatch {
                    current_revision: cur.as_ref().map_or(0, |c| c.mod_revision),
                    current_value: cur.as_ref().map(|c| c.value.clone()),
                }
            }
            _ => match op {
                Op::Put { key, value, .. } => {
                    let create_revision = current.as_ref().map_or(rev, |c| c.create_revision);
                    s.data.insert(
                        key.clone(),
                        KeyValue {
                            key,
                            value,
                            create_revision,
                            mod_revision: rev,
                        },
                    );
                    Outcome::Put {
                        revision: rev,
                        prev_revision: current.map(|c| c.mod_revision),
                    }
                }
                _ => Outcome::Deleted {
                    revision: rev,
                    deleted: s.data.remove(&key).is_some(),
                },
            },
        };
        if let Some(i) = idem {
            s.idempotency
                .insert(i.key, (i.fingerprint, outcome.clone()));
        }
        (
            Applied {
                outcome,
                replayed: false,
            },
            self.meta(rev),
        )
    }
}

impl crate::api::Backend for Fake {
    async fn write(&self, op: Op, idem: Option<Idempotency>) -> crate::api::backend::WriteResult {
        if let Some(e) = self.not_leader() {
            return Err(e);
        }
        if matches!(&op, Op::Put { key, .. } if key.as_ref() == b"panic") {
            panic!("test panic in a handler");
        }
        if matches!(&op, Op::Put { key, .. } if key.as_ref() == b"slow") {
            return Err(NodeError::Timeout);
        }
        Ok(self.apply(op, idem))
    }

    async fn get(&self, key: Bytes, c: Consistency) -> crate::api::backend::GetResult {
        if c == Consistency::Linearizable {
            if let Some(e) = self.not_leader() {
                return Err(e);
            }
        }
        let s = self.state.lock().unwrap();
        Ok((s.data.get(&key).cloned(), self.meta(s.revision)))
    }

    async fn list(
        &self,
        prefix: Bytes,
        after: Option<Bytes>,
        limit: usize,
        c: Consistency,
    ) -> crate::api::backend::ListResult {
        if c == Consistency::Linearizable {
            if let Some(e) = self.not_leader() {
                return Err(e);
            }
        }
        let s = self.state.lock().unwrap();
        let mut items: Vec<KeyValue> = s
            .data
            .values()
            .filter(|kv| kv.key.starts_with(&prefix) && after.as_ref().is_none_or(|a| kv.key > *a))
            .take(limit + 1)
            .cloned()
            .collect();
        let more = items.len() > limit;
        items.truncate(limit);
        Ok((
            ListPage {
                revision: s.revision,
                items,
                more,
            },
            self.meta(s.revision),
        ))
    }

    fn status(&self) -> Status {
        let leader = self.leader_rest.clone().map(|rest| (NodeId(1), rest));
        Status {
            id: self.id,
            name: "test".into(),
            role: if self.leader_rest.is_some() {
                Role::Follower
            } else {
                Role::Leader
            },
            term: Term(3),
            leader,
            commit_index: Index(7),
            applied_index: Index(7),
            last_log_index: Index(7),
            snapshot_index: Index(0),
            members: vec![],
            ready: self.leader_rest.is_none(),
        }
    }
}

/// A served fake node; stops when dropped.
pub(super) struct Server {
    pub(super) addr: String,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub(super) async fn start(id: u64, leader_rest: Option<String>) -> Server {
    let ctx = ApiContext {
        max_value_bytes: 1024 * 1024,
        ..ApiContext::default()
    };
    start_with(id, leader_rest, ctx).await
}

/// A fake node served with the given API settings.
pub(super) async fn start_with(id: u64, leader_rest: Option<String>, ctx: ApiContext) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    let fake = Fake {
        id: NodeId(id),
        leader_rest,
        state: Arc::default(),
    };
    tokio::spawn(serve_with(listener, fake, ctx, stop.clone()));
    Server { addr, stop }
}

pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) head: String,
    pub(super) body: Vec<u8>,
}

impl Answer {
    pub(super) fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    pub(super) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Send raw bytes, read until the server closes (requests say `Connection: close`).
pub(super) async fn raw(addr: &str, request: &[u8]) -> Answer {
    raw_maybe_close(addr, request, false).await
}

/// With `close_write`, the client half-closes after sending (a truncated upload).
pub(super) async fn raw_maybe_close(addr: &str, request: &[u8], close_write: bool) -> Answer {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return Answer {
            status: 0,
            head: String::new(),
            body: Vec::new(),
        };
    };
    let _ = s.write_all(request).await;
    if close_write {
        let _ = s.shutdown().await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(out.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head,
        body: out[split..].to_vec(),
    }
}

pub(super) async fn req(
    addr: &str,
    method: &str,
    target: &str,
    headers: &str,
    body: &[u8],
) -> Answer {
    let mut r = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    raw(addr, &r).await
}
