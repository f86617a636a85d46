//! Membership and leadership rows of API.md §3: `POST /v1/members`, `DELETE /v1/members/{id}`,
//! `POST /v1/leader/transfer?to=ID`. Parsing and status codes only; the runtime does the work
//! (`node::members`). A follower forwards these to the leader like a write (or answers 307
//! with `?redirect=true`).
//!
//! Answers: 200 once the change is committed (`{"id", "members"}` / `{"members"}` /
//! `{"leader"}`); 409 `change_in_progress` while another change is pending; 404 `not_found`
//! for an unknown member id; 409 `not_caught_up` for a transfer target that is not a caught-up
//! voter; 400 `bad_request` for a malformed body or id; 503/504 as for writes.

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use super::body::read_limited;
use super::error::{ApiError, Body, json_response};
use super::parse::Query;
use super::{Backend, Shared, forward};
use crate::node::MemberAddrs;
use crate::node::handle::{AdminError, MemberStatus};
use crate::raft::NodeId;

/// A member-add body is a few hundred bytes at most.
const MEMBER_BODY_BYTES_MAX: usize = 4096;

/// `POST /v1/members` with `{"address","port","rest","voter"}`.
pub async fn add<B: Backend>(shared: &Arc<Shared<B>>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let timeout = shared.ctx.body_read_timeout;
    let body = match read_limited(body, MEMBER_BODY_BYTES_MAX, timeout, false).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let (addrs, voter) = match parse_member(&body) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let result = shared.node.add_member(addrs, voter).await;
    match result {
        Ok((id, members)) => json_response(
            StatusCode::OK,
            &json!({"id": id.to_string(), "members": members_json(&members)}),
        ),
        Err(e) => admin_error(shared, e, &parts, body).await,
    }
}

/// `DELETE /v1/members/{id}`.
pub async fn remove<B: Backend>(shared: &Arc<Shared<B>>, req: Request<Incoming>) -> Response<Body> {
    let (parts, _body) = req.into_parts();
    let raw = parts.uri.path().strip_prefix("/v1/members/").unwrap_or("");
    let id = match parse_id(raw) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    match shared.node.remove_member(id).await {
        Ok((_, members)) => {
            json_response(StatusCode::OK, &json!({"members": members_json(&members)}))
        }
        Err(e) => admin_error(shared, e, &parts, Bytes::new()).await,
    }
}

/// `POST /v1/leader/transfer?to=ID`.
pub async fn transfer<B: Backend>(
    shared: &Arc<Shared<B>>,
    req: Request<Incoming>,
) -> Response<Body> {
    let (parts, _body) = req.into_parts();
    let to = Query::parse(parts.uri.query()).and_then(|q| {
        let raw = q
            .get("to")
            .ok_or_else(|| ApiError::bad_request("missing ?to=ID"))?;
        parse_id(&String::from_utf8_lossy(raw))
    });
    let to = match to {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    match shared.node.transfer_leader(to).await {
        Ok((id, _)) => json_response(StatusCode::OK, &json!({"leader": id.to_string()})),
        Err(e) => admin_error(shared, e, &parts, Bytes::new()).await,
    }
}

/// The body of `POST /v1/members`.
fn parse_member(body: &[u8]) -> Result<(MemberAddrs, bool), ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("body is not JSON: {e}")))?;
    let address = v
        .get("address")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty() && !a.contains(['\n', '/']))
        .ok_or_else(|| ApiError::bad_request("\"address\" must be a non-empty host string"))?;
    let port = |name: &str| {
        v.get(name)
            .and_then(Value::as_u64)
            .filter(|p| (1..=65535).contains(p))
            .ok_or_else(|| ApiError::bad_request(format!("\"{name}\" must be a port 1..=65535")))
    };
    let (grpc, rest) = (port("port")?, port("rest")?);
    let voter = match v.get("voter") {
        None => false,
        Some(b) => b
            .as_bool()
            .ok_or_else(|| ApiError::bad_request("\"voter\" must be a boolean"))?,
    };
    let addrs = MemberAddrs {
        grpc: format!("{address}:{grpc}"),
        rest: format!("{address}:{rest}"),
    };
    Ok((addrs, voter))
}

/// A member id: 16 hex digits (API.md §1).
fn parse_id(raw: &str) -> Result<NodeId, ApiError> {
    if raw.len() != 16 {
        return Err(ApiError::bad_request("a member id is 16 hex digits"));
    }
    u64::from_str_radix(raw, 16)
        .map(NodeId)
        .map_err(|_| ApiError::bad_request("a member id is 16 hex digits"))
}

fn members_json(members: &[MemberStatus]) -> Vec<Value> {
    members
        .iter()
        .map(|m| {
            json!({"id": m.id.to_string(), "address": m.address, "port": m.port,
                "rest": m.rest, "voter": m.voter})
        })
        .collect()
}

/// Map a refused change to its status; a follower forwards to the leader.
async fn admin_error<B: Backend>(
    shared: &Arc<Shared<B>>,
    error: AdminError,
    parts: &Parts,
    body: Bytes,
) -> Response<Body> {
    let e = match error {
        AdminError::NotLeader {
            leader: Some((_, rest)),
        } => {
            if forward::is_forwarded(&parts.headers) {
                ApiError::unavailable("forwarded to a node that is no longer the leader")
            } else if matches!(
                Query::parse(parts.uri.query()).and_then(|q| q.redirect()),
                Ok(true)
            ) {
                return forward::redirect(parts, &rest);
            } else {
                match forward::forward(shared, parts, body, &rest, true).await {
                    Ok(resp) => return resp,
                    Err(e) => e,
                }
            }
        }
        AdminError::NotLeader { leader: None } => ApiError::unavailable("no leader is known"),
        AdminError::ChangeInProgress => ApiError::new(
            StatusCode::CONFLICT,
            "change_in_progress",
            "another membership change is in progress; retry shortly",
        ),
        AdminError::UnknownMember(id) => ApiError::not_found(format!("no member {id}")),
        AdminError::NotCaughtUp(id) => ApiError::new(
            StatusCode::CONFLICT,
            "not_caught_up",
            format!("{id} is not a caught-up voter"),
        ),
        AdminError::Invalid(why) => ApiError::bad_request(why),
        AdminError::Unavailable(why) => ApiError::unavailable(why),
        AdminError::Timeout => ApiError::timeout(),
    };
    e.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_bodies_and_ids() {
        let (a, voter) =
            parse_member(br#"{"address":"10.0.0.4","port":35004,"rest":8004,"voter":true}"#)
                .expect("valid");
        assert_eq!(a.grpc, "10.0.0.4:35004");
        assert_eq!(a.rest, "10.0.0.4:8004");
        assert!(voter);
        assert!(parse_member(br#"{"address":"h","port":0,"rest":1}"#).is_err());
        assert!(parse_member(br#"{"address":"","port":1,"rest":1}"#).is_err());
        assert!(parse_member(br#"{"address":"h","port":1,"rest":1,"voter":"yes"}"#).is_err());
        assert!(parse_member(b"not json").is_err());
        assert_eq!(parse_id("00000000000000ff").ok(), Some(NodeId(255)));
        assert!(parse_id("ff").is_err());
        assert!(parse_id("zzzzzzzzzzzzzzzz").is_err());
    }
}
