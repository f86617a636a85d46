//! In-process tests of the whole HTTP surface against a fake in-memory node: status codes,
//! headers and bodies per API.md §3, malformed input, forwarding and redirects. The fake obeys
//! the `NodeHandle` contract (revisions are a counter standing in for Raft indexes).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{ApiContext, serve_with};
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

impl super::Backend for Fake {
    async fn write(&self, op: Op, idem: Option<Idempotency>) -> super::backend::WriteResult {
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

    async fn get(&self, key: Bytes, c: Consistency) -> super::backend::GetResult {
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
    ) -> super::backend::ListResult {
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
struct Server {
    addr: String,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(id: u64, leader_rest: Option<String>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    let fake = Fake {
        id: NodeId(id),
        leader_rest,
        state: Arc::default(),
    };
    let ctx = ApiContext {
        max_value_bytes: 1024 * 1024,
        ..ApiContext::default()
    };
    tokio::spawn(serve_with(listener, fake, ctx, stop.clone()));
    Server { addr, stop }
}

struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Send raw bytes, read until the server closes (requests say `Connection: close`).
async fn raw(addr: &str, request: &[u8]) -> Answer {
    raw_maybe_close(addr, request, false).await
}

/// With `close_write`, the client half-closes after sending (a truncated upload).
async fn raw_maybe_close(addr: &str, request: &[u8], close_write: bool) -> Answer {
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

async fn req(addr: &str, method: &str, target: &str, headers: &str, body: &[u8]) -> Answer {
    let mut r = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    raw(addr, &r).await
}

#[tokio::test]
async fn put_get_delete_with_headers() {
    let s = start(2, None).await;
    let a = req(&s.addr, "PUT", "/v1/kv/a%2Fb", "", b"v1").await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json(),
        serde_json::json!({"revision": 1, "prev_revision": null})
    );
    assert_eq!(a.header("x-node-id").as_deref(), Some("0000000000000002"));
    assert_eq!(a.header("x-leader-id").as_deref(), Some("0000000000000001"));
    assert_eq!(a.header("x-raft-term").as_deref(), Some("3"));
    let g = req(&s.addr, "GET", "/v1/kv/a/b", "", b"").await;
    assert_eq!((g.status, g.body.as_slice()), (200, &b"v1"[..]));
    assert_eq!(g.header("x-revision").as_deref(), Some("1"));
    assert_eq!(g.header("x-create-revision").as_deref(), Some("1"));
    assert!(g.header("x-raft-index").is_some());
    let d = req(&s.addr, "DELETE", "/v1/kv/a/b", "", b"").await;
    assert_eq!(
        d.json(),
        serde_json::json!({"revision": 2, "deleted": true})
    );
    let g = req(&s.addr, "GET", "/v1/kv/a/b", "", b"").await;
    assert_eq!(
        (g.status, g.json()["error"].as_str()),
        (404, Some("not_found"))
    );
    assert!(g.header("x-node-id").is_some());
}

#[tokio::test]
async fn compare_and_set_conflict_names_the_winner() {
    let s = start(2, None).await;
    assert_eq!(
        req(&s.addr, "PUT", "/v1/kv/k?if_revision=0", "", b"first")
            .await
            .status,
        200
    );
    let lost = req(&s.addr, "PUT", "/v1/kv/k?if_revision=0", "", b"second").await;
    assert_eq!(lost.status, 409);
    let j = lost.json();
    assert_eq!(
        (j["error"].as_str(), j["current_revision"].as_u64()),
        (Some("revision_mismatch"), Some(1))
    );
    assert_eq!(j["current_value"], "first");
    assert!(j["message"].is_string());
    let lost = req(&s.addr, "DELETE", "/v1/kv/none?if_revision=5", "", b"").await;
    assert_eq!(
        (lost.status, lost.json()["current_revision"].as_u64()),
        (409, Some(0))
    );
    assert!(lost.json().get("current_value").is_none());
}

#[tokio::test]
async fn list_pages_and_encodes_binary() {
    let s = start(2, None).await;
    for k in ["p/a", "p/b", "p/c", "q"] {
        req(&s.addr, "PUT", &format!("/v1/kv/{k}"), "", b"x").await;
    }
    req(&s.addr, "PUT", "/v1/kv/p/%FF", "", b"\x00\x01").await;
    let l = req(&s.addr, "GET", "/v1/kv?prefix=p/&limit=2", "", b"")
        .await
        .json();
    assert_eq!(l["items"].as_array().unwrap().len(), 2);
    assert_eq!(l["more"], true);
    let l = req(&s.addr, "GET", "/v1/kv?prefix=p/&start_after=p/c", "", b"")
        .await
        .json();
    let item = &l["items"][0];
    assert_eq!(
        (item["encoding"].as_str(), item["key"].as_str()),
        (Some("base64"), Some("cC//"))
    );
    assert_eq!(l["more"], false);
}

#[tokio::test]
async fn malformed_requests_get_their_4xx_and_the_node_keeps_serving() {
    let s = start(2, None).await;
    let big_key = format!("/v1/kv/{}", "k".repeat(5 * 1024));
    let huge_header = format!("X-Big: {}\r\n", "h".repeat(100 * 1024));
    let long_idem = format!("Idempotency-Key: {}\r\n", "i".repeat(129));
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "bad percent",
            "GET",
            "/v1/kv/a%zz".into(),
            400,
            "bad_request",
        ),
        ("empty key", "PUT", "/v1/kv/".into(), 400, "bad_request"),
        ("5 KiB key", "PUT", big_key, 400, "key_too_long"),
        (
            "negative",
            "PUT",
            "/v1/kv/a?if_revision=-1".into(),
            400,
            "bad_request",
        ),
        (
            "non-numeric",
            "GET",
            "/v1/kv?limit=abc".into(),
            400,
            "bad_request",
        ),
        (
            "over u64",
            "PUT",
            "/v1/kv/a?if_revision=18446744073709551616".into(),
            400,
            "bad_request",
        ),
        (
            "ttl zero",
            "PUT",
            "/v1/kv/a?ttl=0".into(),
            400,
            "bad_request",
        ),
        (
            "ttl later",
            "PUT",
            "/v1/kv/a?ttl=5".into(),
            400,
            "bad_request",
        ),
        (
            "consistency",
            "GET",
            "/v1/kv/a?consistency=eventual".into(),
            400,
            "bad_request",
        ),
        (
            "wrong method",
            "POST",
            "/v1/kv/a".into(),
            405,
            "method_not_allowed",
        ),
        (
            "unknown path",
            "GET",
            "/v2/nothing".into(),
            404,
            "not_found",
        ),
        (
            "later issue",
            "POST",
            "/v1/txn".into(),
            501,
            "not_implemented",
        ),
    ];
    for (what, method, target, status, code) in cases {
        let a = req(&s.addr, method, &target, "", b"").await;
        assert_eq!(
            (a.status, a.json()["error"].as_str()),
            (status, Some(code)),
            "{what}"
        );
        assert!(a.json()["message"].is_string(), "{what}");
    }
    let a = req(&s.addr, "POST", "/v1/kv/a", "", b"").await;
    assert_eq!(a.header("allow").as_deref(), Some("GET, PUT, DELETE"));
    let a = req(&s.addr, "PUT", "/v1/kv/a", &long_idem, b"").await;
    assert_eq!(a.status, 400);
    let a = req(
        &s.addr,
        "PUT",
        "/v1/kv/big",
        "",
        &vec![b'v'; 2 * 1024 * 1024],
    )
    .await;
    assert_eq!(
        (a.status, a.json()["error"].as_str()),
        (413, Some("value_too_large"))
    );
    let a = req(&s.addr, "GET", "/health", &huge_header, b"").await;
    assert_eq!(a.status, 431);
    let truncated = b"PUT /v1/kv/t HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort";
    let a = raw_maybe_close(&s.addr, truncated, true).await;
    assert!(
        a.status == 0 || a.status == 400,
        "truncated body: {}",
        a.status
    );
    let a = req(&s.addr, "PUT", "/v1/kv/panic", "", b"").await;
    assert_eq!(a.status, 500);
    assert_eq!(req(&s.addr, "GET", "/health", "", b"").await.status, 200);
    let a = req(&s.addr, "PUT", "/v1/kv/slow", "", b"").await;
    assert_eq!(
        (a.status, a.json()["outcome"].as_str()),
        (504, Some("unknown"))
    );
}

#[tokio::test]
async fn idempotency_key_replays_and_detects_reuse() {
    let s = start(2, None).await;
    let h = "Idempotency-Key: abc\r\n";
    let first = req(&s.addr, "PUT", "/v1/kv/i", h, b"v").await;
    let again = req(&s.addr, "PUT", "/v1/kv/i", h, b"v").await;
    assert_eq!(first.json(), again.json());
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    assert!(first.header("idempotent-replayed").is_none());
    let other = req(&s.addr, "PUT", "/v1/kv/i", h, b"w").await;
    assert_eq!(
        (other.status, other.json()["error"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
}

#[tokio::test]
async fn follower_forwards_and_redirects() {
    let leader = start(1, None).await;
    let follower = start(2, Some(leader.addr.clone())).await;
    let a = req(&follower.addr, "PUT", "/v1/kv/f", "", b"via").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-node-id").as_deref(), Some("0000000000000002"));
    let g = req(&leader.addr, "GET", "/v1/kv/f", "", b"").await;
    assert_eq!(g.body, b"via");
    let g = req(&follower.addr, "GET", "/v1/kv/f", "", b"").await;
    assert_eq!((g.status, g.body.as_slice()), (200, &b"via"[..]));
    let r = req(&follower.addr, "PUT", "/v1/kv/f?redirect=true", "", b"x").await;
    assert_eq!(r.status, 307);
    let want = format!("http://{}/v1/kv/f?redirect=true", leader.addr);
    assert_eq!(r.header("location"), Some(want));
    // A forwarded request that reaches a non-leader is not forwarded again.
    let f = req(
        &follower.addr,
        "PUT",
        "/v1/kv/f",
        "X-Rocinante-Forwarded: 1\r\n",
        b"x",
    )
    .await;
    assert_eq!((f.status, f.header("retry-after").is_some()), (503, true));
    // Stale reads are served where they land.
    let g = req(&follower.addr, "GET", "/v1/kv/f?consistency=stale", "", b"").await;
    assert_eq!(g.status, 404);
}

#[tokio::test]
async fn info_routes() {
    let leader = start(1, None).await;
    let follower = start(2, Some("127.0.0.1:1".into())).await;
    let st = req(&leader.addr, "GET", "/v1/status", "", b"").await.json();
    assert_eq!(
        (st["role"].as_str(), st["term"].as_u64()),
        (Some("leader"), Some(3))
    );
    assert_eq!(st["id"], "0000000000000001");
    assert_eq!(
        req(&follower.addr, "GET", "/ready", "", b"").await.status,
        503
    );
    assert_eq!(
        req(&leader.addr, "GET", "/ready", "", b"").await.status,
        200
    );
    let l = req(&follower.addr, "GET", "/v1/leader", "", b"")
        .await
        .json();
    assert_eq!(l["rest"], "127.0.0.1:1");
    let m = req(&leader.addr, "GET", "/metrics", "", b"").await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(text.contains("rocinante_raft_term 3"), "{text}");
    let d = req(&leader.addr, "GET", "/", "", b"").await;
    assert!(String::from_utf8_lossy(&d.body).contains("/v1/status"));
    // The leader at 127.0.0.1:1 is unreachable: nothing was sent, so 503 (not applied).
    let a = req(&follower.addr, "PUT", "/v1/kv/x", "", b"v").await;
    assert_eq!(a.status, 503);
}

#[tokio::test]
async fn the_metric_port_serves_only_metrics() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stop = CancellationToken::new();
    let fake = Fake {
        id: NodeId(1),
        leader_rest: None,
        state: Arc::default(),
    };
    let ctx = ApiContext {
        metrics_listen: Some(format!("127.0.0.1:{port}")),
        ..ApiContext::default()
    };
    tokio::spawn(serve_with(listener, fake, ctx, stop.clone()));
    let addr = format!("127.0.0.1:{port}");
    let mut answer = req(&addr, "GET", "/metrics", "", b"").await;
    // Poll (bounded) until the metrics listener is bound by the spawned server.
    for _ in 0..200 {
        if answer.status != 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        answer = req(&addr, "GET", "/metrics", "", b"").await;
    }
    assert_eq!(answer.status, 200);
    assert!(String::from_utf8_lossy(&answer.body).contains("rocinante_raft_term"));
    assert_eq!(req(&addr, "GET", "/v1/kv/a", "", b"").await.status, 404);
    stop.cancel();
}
