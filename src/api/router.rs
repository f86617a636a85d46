//! Routing: which handler answers a method and path (API.md §3), and the bounded set of route
//! names metrics are labelled with. Unknown paths are `404 not_found`; a known path with the
//! wrong method is `405 method_not_allowed` with `Allow`; rows of the contract that later
//! issues build (txn, watch, flows) are `501 not_implemented`.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::error::{ApiError, Body};
use super::{Backend, Shared, dashboard, info, kv, members};

/// The route name used as a metrics label: a fixed set, whatever the client sends.
pub fn route_label(method: &Method, path: &str) -> &'static str {
    match (path, method) {
        ("/", _) => "dashboard",
        ("/health", _) => "health",
        ("/ready", _) => "ready",
        ("/metrics", _) => "metrics",
        ("/v1/status", _) => "status",
        ("/v1/leader", _) => "leader",
        ("/v1/kv", _) => "kv_list",
        (p, &Method::GET) if p.starts_with("/v1/kv/") => "kv_get",
        (p, &Method::PUT) if p.starts_with("/v1/kv/") => "kv_put",
        (p, &Method::DELETE) if p.starts_with("/v1/kv/") => "kv_delete",
        (p, _) if p.starts_with("/v1/kv/") => "kv_other",
        ("/v1/members", _) => "members_add",
        (p, _) if p.starts_with("/v1/members/") => "members_remove",
        ("/v1/leader/transfer", _) => "leader_transfer",
        (p, _) if is_later_issue(p) => "not_implemented",
        _ => "not_found",
    }
}

fn is_later_issue(path: &str) -> bool {
    matches!(path, "/v1/txn" | "/v1/watch") || path == "/v1/flows" || path.starts_with("/v1/flows/")
}

/// Answer one request.
pub async fn dispatch<B: Backend>(
    shared: Arc<Shared<B>>,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let get = method == Method::GET;
    match path.as_str() {
        "/" if get => dashboard::page(&shared.ctx).await,
        "/health" if get => info::health(),
        "/ready" if get => info::ready(&shared.node),
        "/metrics" if get => shared.metrics.render(&shared.node.status()),
        "/v1/status" if get => info::status(&shared.node),
        "/v1/leader" if get => info::leader(&shared.node),
        "/v1/kv" if get => kv::list(&shared, req).await,
        "/v1/watch" if get => ApiError::not_implemented("GET /v1/watch").into_response(),
        "/" | "/health" | "/ready" | "/metrics" | "/v1/status" | "/v1/leader" | "/v1/watch" => {
            ApiError::method_not_allowed("GET").into_response()
        }
        "/v1/kv" => kv::with_status_meta(&shared, ApiError::method_not_allowed("GET")),
        p if p.starts_with("/v1/kv/") => match method {
            Method::GET => kv::get(&shared, req).await,
            Method::PUT => kv::write(&shared, req, kv::WriteKind::Put).await,
            Method::DELETE => kv::write(&shared, req, kv::WriteKind::Delete).await,
            _ => kv::with_status_meta(&shared, ApiError::method_not_allowed("GET, PUT, DELETE")),
        },
        "/v1/txn" if method == Method::POST => {
            kv::with_status_meta(&shared, ApiError::not_implemented("POST /v1/txn"))
        }
        "/v1/txn" => kv::with_status_meta(&shared, ApiError::method_not_allowed("POST")),
        "/v1/members" if method == Method::POST => members::add(&shared, req).await,
        "/v1/leader/transfer" if method == Method::POST => members::transfer(&shared, req).await,
        "/v1/members" | "/v1/leader/transfer" => {
            ApiError::method_not_allowed("POST").into_response()
        }
        p if p.starts_with("/v1/members/") => match method {
            Method::DELETE => members::remove(&shared, req).await,
            _ => ApiError::method_not_allowed("DELETE").into_response(),
        },
        p if is_later_issue(p) => ApiError::not_implemented("flow tables").into_response(),
        _ => ApiError::not_found(format!("no such path: {path}")).into_response(),
    }
}
