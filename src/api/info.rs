//! The node's own view: `/v1/status`, `/v1/leader`, `/health`, `/ready` (API.md §3). Served by
//! any node from the status the runtime last published; never forwarded, never blocking.

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::Backend;
use super::error::{ApiError, Body, json_response};
use crate::node::handle::Status;
use crate::raft::Role;

/// The contract's role names; a pre-vote candidate (thesis §9.6) is shown as a candidate.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::PreCandidate | Role::Candidate => "candidate",
        Role::Learner => "learner",
    }
}

pub fn status_json(s: &Status) -> Value {
    let members: Vec<Value> = s
        .members
        .iter()
        .map(|m| {
            let mut v = json!({
                "id": m.id.to_string(),
                "address": m.address,
                "port": m.port,
                "rest": m.rest,
                "voter": m.voter,
            });
            if let (Some(match_index), Value::Object(obj)) = (m.match_index, &mut v) {
                obj.insert("match_index".into(), json!(match_index.0));
            }
            v
        })
        .collect();
    json!({
        "id": s.id.to_string(),
        "name": s.name,
        "role": role_name(s.role),
        "term": s.term.0,
        "leader": s.leader.as_ref().map(|(id, rest)| json!({"id": id.to_string(), "rest": rest})),
        "commit_index": s.commit_index.0,
        "applied_index": s.applied_index.0,
        "last_log_index": s.last_log_index.0,
        "snapshot_index": s.snapshot_index.0,
        "members": members,
        "ready": s.ready,
    })
}

/// `GET /v1/status`. Cross-origin readable, so the dashboard served by one node can poll
/// every member.
pub fn status<B: Backend>(node: &B) -> Response<Body> {
    let mut resp = json_response(StatusCode::OK, &status_json(&node.status()));
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

/// `GET /v1/leader`: the leader this node knows, or 503.
pub fn leader<B: Backend>(node: &B) -> Response<Body> {
    match node.status().leader {
        Some((id, rest)) => {
            json_response(StatusCode::OK, &json!({"id": id.to_string(), "rest": rest}))
        }
        None => ApiError::unavailable("no leader is known").into_response(),
    }
}

/// `GET /health`: the process serves.
pub fn health() -> Response<Body> {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

/// `GET /ready`: a leader is known and everything committed at start-up is applied.
pub fn ready<B: Backend>(node: &B) -> Response<Body> {
    if node.status().ready {
        json_response(StatusCode::OK, &json!({"status": "ready"}))
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "no leader known yet, or still applying the log committed at start-up",
        )
        .into_response()
    }
}
