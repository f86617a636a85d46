//! `/v1/kv` handlers: PUT, GET and DELETE of one key, and the prefix listing (API.md §3).
//!
//! Invariants: every answer under `/v1/kv` carries `X-Node-Id`, `X-Leader-Id`, `X-Raft-Term`
//! and `X-Raft-Index`, errors included; the request body is read with a hard limit
//! (`max_value_bytes`) and never buffered past it; a write is handed to the node at most once
//! per HTTP request (a retry is the client's decision, made safe by `Idempotency-Key`).

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::body::read_limited;
use super::error::{ApiError, Body, full, json_response};
use super::parse::{self, Query};
use super::{Backend, Shared, forward};
use crate::kv::command::{Applied, Idempotency, Op, Outcome};
use crate::node::handle::{AnswerMeta, Consistency, KeyValue, ListPage, NodeError, Status};
use crate::raft::NodeId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    Put,
    Delete,
}

/// PUT or DELETE `/v1/kv/{key}`.
pub async fn write<B: Backend>(
    shared: &Arc<Shared<B>>,
    req: Request<Incoming>,
    kind: WriteKind,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let checked = (|| {
        let key = key_of(&parts)?;
        let query = Query::parse(parts.uri.query())?;
        if kind == WriteKind::Put {
            query.reject_ttl()?;
        }
        let if_revision = query.u64("if_revision")?;
        let idempotency_key = parse::idempotency_key(&parts.headers)?;
        Ok::<_, ApiError>((key, if_revision, idempotency_key, query.redirect()?))
    })();
    let (key, if_revision, idempotency_key, redirect) = match checked {
        Ok(c) => c,
        Err(e) => return with_status_meta(shared, e),
    };
    if redirect {
        if let Some(resp) = forward::redirect_if_follower(shared, &parts) {
            return resp;
        }
    }
    let expects_continue = parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let ctx = &shared.ctx;
    let limit = (ctx.max_value_bytes, ctx.body_read_timeout);
    let body = match read_limited(body, limit.0, limit.1, expects_continue).await {
        Ok(b) => b,
        Err(e) => return with_status_meta(shared, e),
    };
    let idempotency = idempotency_key.map(|key| Idempotency {
        key,
        fingerprint: parse::fingerprint(
            parts.method.as_str(),
            parts.uri.path(),
            parts.uri.query().unwrap_or(""),
            &body,
        ),
    });
    let op = match kind {
        WriteKind::Put => Op::Put {
            key,
            value: body.clone(),
            if_revision,
        },
        WriteKind::Delete => Op::Delete { key, if_revision },
    };
    match shared.node.write(op, idempotency).await {
        Ok((applied, meta)) => with_meta(write_answer(applied), &meta),
        Err(e) => node_error(shared, e, &parts, body, redirect, true).await,
    }
}

/// Map an applied write to its HTTP answer (API.md §3 PUT/DELETE rows).
fn write_answer(applied: Applied) -> Response<Body> {
    let mut resp = match applied.outcome {
        Outcome::Put {
            revision,
            prev_revision,
        } => json_response(
            StatusCode::OK,
            &json!({"revision": revision, "prev_revision": prev_revision}),
        ),
        Outcome::Deleted { revision, deleted } => json_response(
            StatusCode::OK,
            &json!({"revision": revision, "deleted": deleted}),
        ),
        Outcome::RevisionMismatch {
            current_revision,
            current_value,
        } => {
            let mut e = ApiError::new(
                StatusCode::CONFLICT,
                "revision_mismatch",
                "the key's revision does not match if_revision",
            )
            .with("current_revision", json!(current_revision));
            if let Some(value) = current_value {
                binary_fields(&mut e.extra, None, Some(("current_value", &value[..])));
            }
            e.into_response()
        }
        Outcome::IdempotencyKeyReused => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
        )
        .into_response(),
        Outcome::Ticked => {
            ApiError::internal("a client write was answered as a tick").into_response()
        }
    };
    if applied.replayed {
        resp.headers_mut().insert(
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
    resp
}

/// GET `/v1/kv/{key}`: the value as the body, revisions in headers.
pub async fn get<B: Backend>(shared: &Arc<Shared<B>>, req: Request<Incoming>) -> Response<Body> {
    let (parts, _body) = req.into_parts();
    let checked = (|| {
        let key = key_of(&parts)?;
        let query = Query::parse(parts.uri.query())?;
        Ok::<_, ApiError>((key, query.consistency()?, query.redirect()?))
    })();
    let (key, consistency, redirect) = match checked {
        Ok(c) => c,
        Err(e) => return with_status_meta(shared, e),
    };
    // `redirect` applies to linearizable reads only; lease and stale reads are served where
    // they land (forwarded, invisibly, if this node cannot serve them).
    let redirect = redirect && consistency == Consistency::Linearizable;
    if redirect {
        if let Some(resp) = forward::redirect_if_follower(shared, &parts) {
            return resp;
        }
    }
    match shared.node.get(key, consistency).await {
        Ok((Some(kv), meta)) => with_meta(value_answer(kv), &meta),
        Ok((None, meta)) => with_meta(ApiError::not_found("key not found").into_response(), &meta),
        Err(e) => node_error(shared, e, &parts, Bytes::new(), redirect, false).await,
    }
}

fn value_answer(kv: KeyValue) -> Response<Body> {
    let mut resp = Response::new(full(kv.value));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert("x-revision", HeaderValue::from(kv.mod_revision));
    h.insert("x-create-revision", HeaderValue::from(kv.create_revision));
    resp
}

/// GET `/v1/kv?prefix=P&limit=N&start_after=K`.
pub async fn list<B: Backend>(shared: &Arc<Shared<B>>, req: Request<Incoming>) -> Response<Body> {
    let (parts, _body) = req.into_parts();
    let checked = (|| {
        let query = Query::parse(parts.uri.query())?;
        let prefix = Bytes::copy_from_slice(query.get("prefix").unwrap_or_default());
        if prefix.len() > parse::KEY_BYTES_MAX {
            return Err(ApiError::key_too_long(prefix.len()));
        }
        let start_after = query
            .get("start_after")
            .map(|k| parse::check_key(k.to_vec()))
            .transpose()?;
        let limit = query.limit()?;
        Ok::<_, ApiError>((
            prefix,
            start_after,
            limit,
            query.consistency()?,
            query.redirect()?,
        ))
    })();
    let (prefix, start_after, limit, consistency, redirect) = match checked {
        Ok(c) => c,
        Err(e) => return with_status_meta(shared, e),
    };
    let redirect = redirect && consistency == Consistency::Linearizable;
    if redirect {
        if let Some(resp) = forward::redirect_if_follower(shared, &parts) {
            return resp;
        }
    }
    match shared
        .node
        .list(prefix, start_after, limit, consistency)
        .await
    {
        Ok((page, meta)) => with_meta(list_answer(page), &meta),
        Err(e) => node_error(shared, e, &parts, Bytes::new(), redirect, false).await,
    }
}

fn list_answer(page: ListPage) -> Response<Body> {
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|kv| {
            let mut item = Map::new();
            binary_fields(
                &mut item,
                Some(("key", &kv.key[..])),
                Some(("value", &kv.value[..])),
            );
            item.insert("revision".into(), json!(kv.mod_revision));
            item.insert("create_revision".into(), json!(kv.create_revision));
            Value::Object(item)
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"revision": page.revision, "items": items, "more": page.more}),
    )
}

/// Key and/or value into a JSON object: UTF-8 strings when both are valid UTF-8, else both
/// base64 with `"encoding": "base64"` on the object (API.md §3, "Binary data in JSON").
pub fn binary_fields(
    obj: &mut Map<String, Value>,
    key: Option<(&str, &[u8])>,
    value: Option<(&str, &[u8])>,
) {
    use base64::Engine;
    let fields = [key, value];
    let all_utf8 = fields
        .iter()
        .flatten()
        .all(|(_, b)| std::str::from_utf8(b).is_ok());
    for (name, bytes) in fields.into_iter().flatten() {
        let text = if all_utf8 {
            String::from_utf8_lossy(bytes).into_owned()
        } else {
            base64::engine::general_purpose::STANDARD.encode(bytes)
        };
        obj.insert(name.to_string(), Value::String(text));
    }
    if !all_utf8 {
        obj.insert("encoding".into(), json!("base64"));
    }
}

/// A `NodeError` to its answer: forward to the leader, redirect to it, or 503/504.
async fn node_error<B: Backend>(
    shared: &Arc<Shared<B>>,
    error: NodeError,
    parts: &Parts,
    body: Bytes,
    redirect: bool,
    is_write: bool,
) -> Response<Body> {
    let leader = match error {
        NodeError::NotLeader { leader: Some(l) } => l,
        NodeError::NotLeader { leader: None } => {
            return with_status_meta(shared, ApiError::unavailable("no leader is known"));
        }
        NodeError::Unavailable(why) => return with_status_meta(shared, ApiError::unavailable(why)),
        NodeError::Timeout => return with_status_meta(shared, ApiError::timeout()),
    };
    if forward::is_forwarded(&parts.headers) {
        // A forwarded request reaching a non-leader: stop here rather than bounce (the
        // leader changed while it travelled). Nothing was applied.
        let e = ApiError::unavailable("forwarded to a node that is no longer the leader");
        return with_status_meta(shared, e);
    }
    if redirect {
        return with_status_meta_resp(shared, forward::redirect(parts, &leader.1));
    }
    match forward::forward(shared, parts, body, &leader.1, is_write).await {
        Ok(resp) => resp,
        Err(e) => with_status_meta(shared, e),
    }
}

fn key_of(parts: &Parts) -> Result<Bytes, ApiError> {
    let raw = parts.uri.path().strip_prefix("/v1/kv/").unwrap_or("");
    parse::key_from_path(raw)
}

/// This node's view as answer metadata, for answers the node itself did not produce.
pub fn status_meta(status: &Status) -> AnswerMeta {
    AnswerMeta {
        node_id: status.id,
        leader_id: status.leader.as_ref().map(|(id, _)| *id),
        term: status.term,
        raft_index: status.commit_index,
    }
}

/// An error under `/v1/kv` or `/v1/txn`, with the KV headers from this node's status.
pub fn with_status_meta<B: Backend>(shared: &Arc<Shared<B>>, e: ApiError) -> Response<Body> {
    with_status_meta_resp(shared, e.into_response())
}

fn with_status_meta_resp<B: Backend>(
    shared: &Arc<Shared<B>>,
    resp: Response<Body>,
) -> Response<Body> {
    with_meta(resp, &status_meta(&shared.node.status()))
}

/// Set the four KV headers. An unknown leader is shown as id 0 ("no node", see `NodeId`).
pub fn with_meta(mut resp: Response<Body>, meta: &AnswerMeta) -> Response<Body> {
    let h = resp.headers_mut();
    h.insert("x-node-id", hex_id(meta.node_id));
    h.insert("x-leader-id", hex_id(meta.leader_id.unwrap_or(NodeId(0))));
    h.insert("x-raft-term", HeaderValue::from(meta.term.0));
    h.insert("x-raft-index", HeaderValue::from(meta.raft_index.0));
    resp
}

pub fn hex_id(id: NodeId) -> HeaderValue {
    // 16 hex digits are always a valid header value.
    HeaderValue::from_str(&id.to_string()).unwrap_or(HeaderValue::from_static("0000000000000000"))
}
