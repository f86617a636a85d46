//! The client's HTTP plumbing: one pooled hyper connection pool, the endpoint list, the
//! cached leader, and one exchange with a bounded time and a bounded answer size.
//!
//! Leader discovery: the cached leader if any, else `GET /v1/leader` on each endpoint in turn
//! (starting from a rotating one), else the next endpoint round-robin (it forwards to the
//! leader itself). A `307` is followed to its `Location` host, at most `REDIRECTS_MAX` times.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{HeaderMap, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::ClientError;

/// Redirects followed within one try.
const REDIRECTS_MAX: usize = 3;
/// Largest answer body read, in bytes; a bigger one is an error.
const ANSWER_BYTES_MAX: usize = 256 * 1024 * 1024;

/// One HTTP answer, fully read.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Result<Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| ClientError::Http {
            status: self.status,
            code: "bad_answer".into(),
            message: format!("answer is not JSON: {e}"),
        })
    }

    pub fn header_u64(&self, name: &str) -> u64 {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// This (error) answer as a `ClientError`.
    pub fn error(&self) -> ClientError {
        let j: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        let text = |f: &str| j[f].as_str().unwrap_or("").to_string();
        match self.status {
            404 => ClientError::NotFound,
            409 if text("error") == "revision_mismatch" => ClientError::Conflict {
                current_revision: j["current_revision"].as_u64().unwrap_or(0),
                body: j,
            },
            503 => ClientError::Unavailable(text("message")),
            504 => ClientError::Timeout,
            status => ClientError::Http {
                status,
                code: text("error"),
                message: text("message"),
            },
        }
    }

    /// The `host:port` of a redirect's absolute `Location`.
    fn location_authority(&self) -> Option<String> {
        let loc = self.headers.get(hyper::header::LOCATION)?.to_str().ok()?;
        let uri: hyper::Uri = loc.parse().ok()?;
        uri.authority().map(|a| a.to_string())
    }
}

pub struct Transport {
    client: Client<HttpConnector, Full<Bytes>>,
    endpoints: Vec<String>,
    leader: Mutex<Option<String>>,
    next_endpoint: AtomicUsize,
    timeout: Duration,
}

impl Transport {
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Transport {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        connector.set_nodelay(true);
        Transport {
            client: Client::builder(TokioExecutor::new()).build(connector),
            endpoints,
            leader: Mutex::new(None),
            next_endpoint: AtomicUsize::new(0),
            timeout,
        }
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    pub fn forget_leader(&self) {
        if let Ok(mut l) = self.leader.lock() {
            *l = None;
        }
    }

    fn cached_leader(&self) -> Option<String> {
        self.leader.lock().ok().and_then(|l| l.clone())
    }

    fn next_endpoint(&self) -> String {
        let i = self.next_endpoint.fetch_add(1, Ordering::Relaxed);
        self.endpoints[i % self.endpoints.len()].clone()
    }

    /// Ask the endpoints who leads; remember and return the first answer.
    async fn discover_leader(&self) -> Option<String> {
        for _ in 0..self.endpoints.len() {
            let endpoint = self.next_endpoint();
            let Ok(a) = self
                .send_to(&endpoint, "GET", "/v1/leader", Bytes::new(), None)
                .await
            else {
                continue;
            };
            let rest = a
                .json()
                .ok()
                .and_then(|j| j["rest"].as_str().map(str::to_string));
            if let (200, Some(rest)) = (a.status, rest) {
                if let Ok(mut l) = self.leader.lock() {
                    *l = Some(rest.clone());
                }
                return Some(rest);
            }
        }
        None
    }

    /// Send to the leader (discovering it if needed), following redirects.
    pub async fn send_to_leader(
        &self,
        method: &str,
        target: &str,
        body: Bytes,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, ClientError> {
        let mut host = match self.cached_leader() {
            Some(l) => l,
            None => match self.discover_leader().await {
                Some(l) => l,
                None => self.next_endpoint(),
            },
        };
        for _ in 0..REDIRECTS_MAX {
            let a = self
                .send_to(&host, method, target, body.clone(), idempotency_key)
                .await?;
            match (a.status, a.location_authority()) {
                (307, Some(next)) => host = next,
                _ => return Ok(a),
            }
        }
        self.send_to(&host, method, target, body, idempotency_key)
            .await
    }

    /// One exchange with `host`, bounded by the request timeout.
    pub async fn send_to(
        &self,
        host: &str,
        method: &str,
        target: &str,
        body: Bytes,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, ClientError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{host}{target}"));
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| ClientError::BadEndpoints(format!("{host}: {e}")))?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| {
                if e.is_connect() {
                    ClientError::Unavailable(format!("cannot connect to {host}"))
                } else {
                    ClientError::Timeout
                }
            })?;
            let (head, body) = resp.into_parts();
            let body = Limited::new(body, ANSWER_BYTES_MAX)
                .collect()
                .await
                .map_err(|_| ClientError::Timeout)?
                .to_bytes();
            Ok(Answer {
                status: head.status.as_u16(),
                headers: head.headers,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout),
        }
    }
}

static KEY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh Idempotency-Key: process id, wall-clock nanoseconds and a counter. Unique enough
/// for one client's writes within the server's idempotency window; not secret.
pub fn new_idempotency_key() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = KEY_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("rc-{:x}-{nanos:x}-{n:x}", std::process::id())
}
