//! Error answers and response building: every failure the API reports becomes one `ApiError`,
//! and every error body is JSON `{"error": CODE, "message": TEXT, ...extra}` (API.md §3).
//!
//! Invariant: the status code says who is at fault. 4xx: the client (never 500 for a client
//! mistake); 503: nothing was applied, retry later; 504: the outcome is unknown; 500: a bug
//! here (a handler panicked or the runtime broke a documented promise).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Response, StatusCode, header};
use serde_json::{Map, Value, json};

/// The body type of every answer: a buffered body for our own answers, or a leader's streamed
/// body passed through when a request is forwarded.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Seconds a 503 asks the client to wait (`Retry-After`): about one election timeout.
pub const RETRY_AFTER_S: u32 = 1;

#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// The machine-readable `error` field.
    pub code: &'static str,
    pub message: String,
    /// Extra fields merged into the body (`current_revision`, `outcome`, ...).
    pub extra: Map<String, Value>,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: Map::new(),
            allow: None,
        }
    }

    pub fn with(mut self, field: &str, value: Value) -> ApiError {
        self.extra.insert(field.to_string(), value);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn key_too_long(len: usize) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "key_too_long",
            format!("key is {len} bytes; the limit is 4096"),
        )
    }

    pub fn value_too_large(max: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "value_too_large",
            format!("value is larger than max_value_bytes ({max})"),
        )
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn method_not_allowed(allow: &'static str) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("this path allows {allow}"),
        );
        e.allow = Some(allow);
        e
    }

    pub fn not_implemented(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            format!("{what} is not implemented yet"),
        )
    }

    /// No leader, no quorum, or a full queue: the request was NOT applied.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// Proposed but not seen committed in time: it may still be applied.
    pub fn timeout() -> ApiError {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "the write was proposed but its commit was not seen in time; it may still be applied",
        )
        .with("outcome", json!("unknown"))
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn into_response(self) -> Response<Body> {
        let mut body = Map::new();
        body.insert("error".into(), json!(self.code));
        body.insert("message".into(), json!(self.message));
        body.extend(self.extra);
        let mut resp = json_response(self.status, &Value::Object(body));
        if let Some(allow) = self.allow {
            resp.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static(allow));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(RETRY_AFTER_S),
            );
        }
        resp
    }
}

/// A buffered body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    // Serialising a `Value` cannot fail (its keys are strings).
    let text = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}
