//! Getting a request to the leader: a follower either proxies the whole request to the
//! leader's REST address (the default: the client never has to find the leader) or, with
//! `?redirect=true`, answers `307` with an absolute `Location` on the leader.
//!
//! Loop guard: a forwarded request carries `X-Rocinante-Forwarded: 1`; a node that is not the
//! leader answers such a request with 503 instead of forwarding it again, so a request crosses
//! at most one hop. Outcome rules: if the leader cannot be reached, nothing was sent and the
//! answer is 503 (not applied); if a forwarded write was sent but its answer did not come back
//! within `forward_timeout`, the answer is 504 (outcome unknown), as the contract demands.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use super::error::{ApiError, Body, json_response};
use super::kv::hex_id;
use super::{Backend, Shared};
use crate::raft::Role;

/// The loop-guard header on forwarded requests.
pub const FORWARDED_HEADER: &str = "x-rocinante-forwarded";
/// How long a connection to the leader may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A pooled HTTP client to the leader.
pub struct Forwarder {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl Forwarder {
    pub fn new(timeout: Duration) -> Forwarder {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Forwarder { client, timeout }
    }
}

pub fn is_forwarded(headers: &hyper::HeaderMap) -> bool {
    headers.contains_key(FORWARDED_HEADER)
}

/// With `?redirect=true`: a 307 to the leader if this node is a follower that knows one.
/// `None` means "serve it here" (this node leads, or no leader is known and the node's own
/// answer, 503, is the right one).
pub fn redirect_if_follower<B: Backend>(
    shared: &Arc<Shared<B>>,
    parts: &Parts,
) -> Option<Response<Body>> {
    let status = shared.node.status();
    if status.role == Role::Leader {
        return None;
    }
    let (_, rest) = status.leader.as_ref()?;
    let resp = redirect(parts, rest);
    Some(super::kv::with_meta(resp, &super::kv::status_meta(&status)))
}

/// `307 Temporary Redirect` to the same path and query on `leader_rest` ("host:port").
pub fn redirect(parts: &Parts, leader_rest: &str) -> Response<Body> {
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location = format!("http://{leader_rest}{path_and_query}");
    let mut resp = json_response(
        StatusCode::TEMPORARY_REDIRECT,
        &json!({"leader": {"rest": leader_rest}, "location": location}),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Proxy the request (its head and already-read `body`) to the leader and relay its answer,
/// streamed, with `X-Node-Id` rewritten to this node.
pub async fn forward<B: Backend>(
    shared: &Arc<Shared<B>>,
    parts: &Parts,
    body: Bytes,
    leader_rest: &str,
    is_write: bool,
) -> Result<Response<Body>, ApiError> {
    let request = build_request(parts, body, leader_rest)?;
    let forwarder = &shared.forwarder;
    let sent = tokio::time::timeout(forwarder.timeout, forwarder.client.request(request)).await;
    let answer = match sent {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) if e.is_connect() => {
            return Err(ApiError::unavailable(format!(
                "the leader at {leader_rest} is unreachable: {e}"
            )));
        }
        Ok(Err(e)) if is_write => {
            tracing::warn!(error = %e, leader = leader_rest, "forwarded write failed mid-flight");
            return Err(ApiError::timeout());
        }
        Ok(Err(e)) => return Err(ApiError::unavailable(format!("forwarding failed: {e}"))),
        Err(_) if is_write => return Err(ApiError::timeout()),
        Err(_) => return Err(ApiError::unavailable("the leader did not answer in time")),
    };
    shared.metrics.forwarded.inc();
    let (mut head, incoming) = answer.into_parts();
    head.headers.remove(header::CONNECTION);
    head.headers.remove(header::TRANSFER_ENCODING);
    head.headers.remove("keep-alive");
    head.headers
        .insert("x-node-id", hex_id(shared.node.status().id));
    Ok(Response::from_parts(head, incoming.boxed()))
}

fn build_request(
    parts: &Parts,
    body: Bytes,
    leader_rest: &str,
) -> Result<Request<Full<Bytes>>, ApiError> {
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri = format!("http://{leader_rest}{path_and_query}");
    let mut builder = Request::builder().method(parts.method.clone()).uri(uri);
    for (name, value) in &parts.headers {
        let hop_by_hop = name == header::CONNECTION
            || name == header::HOST
            || name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::TE
            || name == header::UPGRADE
            || name == header::EXPECT
            || name.as_str() == "keep-alive";
        if !hop_by_hop {
            builder = builder.header(name, value);
        }
    }
    builder = builder.header(FORWARDED_HEADER, "1");
    builder.body(Full::new(body)).map_err(|e| {
        ApiError::unavailable(format!(
            "the leader's address {leader_rest} is unusable: {e}"
        ))
    })
}
